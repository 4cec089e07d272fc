//! A shared library that is not a Steward plugin: it exports a function but no plugin header.
//! The host must refuse it with a clear error.

#[no_mangle]
pub extern "C" fn foreign_add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
