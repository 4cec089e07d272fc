//! Links the plugin with a 2 MiB maximum page size, so that its code segment gets a 2 MiB window
//! of its own and a fork-mode supervisor moves it onto a huge page: forked workers then take no
//! page faults for it (plugin author guide, "Fork mode and huge pages").

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,max-page-size=0x200000");
}
