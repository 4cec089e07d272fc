//! Links the `steward` binary with a 2 MiB maximum page size, so that its code segment gets
//! 2 MiB-aligned windows of its own and the supervisor can move it onto huge pages in fork mode
//! (see `src/sys/hugetext.rs`).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=0x200000");
}
