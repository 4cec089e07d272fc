//! A plugin header that claims another ABI major version, as a plugin built with an incompatible
//! SDK would. The host must refuse it before calling its init.

use steward::abi;

unsafe extern "C" fn init(_host: *const abi::HostApi) -> abi::Status {
    // Never called: the host checks the header first.
    std::process::abort()
}

#[no_mangle]
#[used]
pub static steward_plugin_header: abi::PluginHeader = abi::PluginHeader {
    magic: abi::PLUGIN_MAGIC,
    abi_major: abi::ABI_MAJOR + 1,
    abi_minor: 0,
    header_size: std::mem::size_of::<abi::PluginHeader>() as u32,
    fingerprint: abi::LAYOUT_FINGERPRINT,
    name: abi::Str::new("oldabi"),
    version: abi::Str::new("0.0.1"),
    sdk_version: abi::Str::new("99.0.0"),
    init,
};
