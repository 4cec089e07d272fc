//! A plugin whose header symbol holds only the fixed 16-byte prefix yet claims, in its
//! `header_size`, every field of the current header, as a hand-written or truncated header might.
//! The host must go by the symbol's size and refuse it before reading past the prefix.

use steward::abi;

/// The prefix every version of `PluginHeader` starts with, and nothing after it.
#[repr(C)]
pub struct Prefix {
    magic: [u8; 8],
    abi_major: u16,
    abi_minor: u16,
    header_size: u32,
}

#[no_mangle]
#[used]
pub static steward_plugin_header: Prefix = Prefix {
    magic: abi::PLUGIN_MAGIC,
    abi_major: abi::ABI_MAJOR,
    abi_minor: abi::ABI_MINOR,
    header_size: std::mem::size_of::<abi::PluginHeader>() as u32,
};
