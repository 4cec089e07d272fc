//! Types that may live in a shared-memory region: [`Shareable`] and the [`shareable!`] macro.
//!
//! Runs in: a plugin's compiler (the checks) and its workers ([`crate::Region::get`]).
//!
//! A region is bytes that other processes change at any moment, that start as all zeroes, and
//! that a crash reset zeroes again. A type may be viewed there only if every bit pattern is a
//! valid value of it (another process may have written anything), all zeroes included, if every
//! change goes through atomic operations (`&T` is all a worker gets, and every process has one),
//! and if it holds no pointer (each process maps the segment at its own address).
//!
//! [`shareable!`]: crate::shareable!

use std::sync::atomic::{AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

/// A type that may be viewed in a shared-memory region with [`crate::Region::get`].
///
/// Implemented for the integer atomics, [`crate::AtomicLatchHandle`] and arrays of shareable
/// types. For your own structs,
/// declare them with [`crate::shareable!`], which checks every field. `AtomicBool` is not
/// shareable (a byte other than 0 or 1 is not a valid `bool`, and another process may write one),
/// and neither is `AtomicPtr` (an address means nothing in another process).
///
/// # Safety
/// An implementor must be valid for every bit pattern of its size (all zeroes included), allow
/// changes through `&Self` only by atomic operations, hold no pointer or reference, and need no
/// `Drop`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in a shared-memory region",
    note = "use integer atomics, arrays of them, or a struct declared with `steward::shareable!`"
)]
pub unsafe trait Shareable: Sync {}

macro_rules! shareable_atomics {
    ($($t:ty),*) => {$(
        // SAFETY: an integer atomic is valid for every bit pattern, changes only atomically
        // through `&self`, and holds no pointer.
        unsafe impl Shareable for $t {}
    )*};
}

shareable_atomics!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);

// SAFETY: an array has no padding of its own and is valid exactly when each element is.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {}

// SAFETY: `#[repr(transparent)]` over an `AtomicU64`; every value is a handle (a garbled one is
// stale or names nothing, which the host checks on `set`), and it changes only atomically.
unsafe impl Shareable for crate::AtomicLatchHandle {}

/// Declares a `#[repr(C)]` struct whose fields are all [`Shareable`], and marks it shareable so
/// that [`crate::Region::get`] can view a region as it. The `#[repr(C)]` is required (it fixes
/// the layout every process and plugin build agrees on), and each field's type is checked at
/// compile time.
///
/// ```
/// use std::sync::atomic::{AtomicU32, AtomicU64};
///
/// steward::shareable! {
///     /// What the workers of this plugin share.
///     #[repr(C)]
///     pub struct Shared {
///         pub counter: AtomicU64,
///         pub per_worker: [AtomicU32; 16],
///     }
/// }
/// ```
///
/// A field that is not shareable is refused:
///
/// ```compile_fail
/// steward::shareable! {
///     #[repr(C)]
///     pub struct Plain {
///         pub counter: u64,
///     }
/// }
/// ```
///
/// ```compile_fail
/// steward::shareable! {
///     #[repr(C)]
///     pub struct Flag {
///         pub done: std::sync::atomic::AtomicBool,
///     }
/// }
/// ```
///
/// ```compile_fail
/// steward::shareable! {
///     #[repr(C)]
///     pub struct Pointer {
///         pub name: &'static str,
///     }
/// }
/// ```
///
/// and so is a struct without `#[repr(C)]`:
///
/// ```compile_fail
/// steward::shareable! {
///     pub struct Unordered {
///         pub a: std::sync::atomic::AtomicU64,
///     }
/// }
/// ```
///
/// A type that is not shareable cannot be viewed in a region at all:
///
/// ```compile_fail
/// fn view(r: steward::Region) {
///     let _ = r.get::<std::cell::Cell<u64>>();
/// }
/// ```
#[macro_export]
macro_rules! shareable {
    (
        $(#[doc = $doc:literal])*
        #[repr(C)]
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[repr(C)]
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $fty ),*
        }

        // SAFETY: `#[repr(C)]` with every field `Shareable` (checked just below): valid for every
        // bit pattern (padding has no validity), changed only through the fields' atomics, and
        // holding no pointer.
        unsafe impl $crate::Shareable for $name {}

        const _: () = {
            fn __steward_field_is_shareable<T: $crate::Shareable>() {}
            #[allow(dead_code)]
            fn __steward_check_fields() {
                $( __steward_field_is_shareable::<$fty>(); )*
            }
        };
    };
}
