//! The host table's connection-handler registration (issue 15: connections).
//!
//! Runs in: the supervisor during preload (a no-op in an exec-mode child's attach init, as
//! every registration). The spec comes from plugin code: checked for null and for the size it
//! claims before a field is read.

use std::ffi::c_void;

use steward::abi::{self, Status, Str};

use super::{guarded, register, text};
use crate::shared::registry::HandlerSpec;

pub(super) unsafe extern "C" fn host_register_connection_handler(
    _ctx: *mut c_void,
    plugin: Str,
    spec: *const abi::HandlerSpec,
) -> Status {
    guarded(|| {
        // SAFETY: the plugin's spec, valid for the call; null is refused.
        let Some(spec) = (unsafe { spec.as_ref() }) else {
            return abi::STATUS_INVALID;
        };
        if (spec.size as usize) < abi::HANDLER_SPEC_SIZE_1 {
            return abi::STATUS_INVALID;
        }
        // issue 15: isolated handlers
        let Some(isolated) = isolated_of(spec.flags) else {
            return abi::STATUS_INVALID;
        };
        // SAFETY: views valid for the call, as the ABI requires of callers.
        let (Some(plugin), Some(name), Some(library), Some(function), Some(reject)) = (unsafe {
            (
                text(plugin),
                text(spec.name),
                text(spec.library),
                text(spec.function),
                text(spec.reject_function),
            )
        }) else {
            return abi::STATUS_BAD_NAME;
        };
        let h = HandlerSpec {
            plugin: plugin.to_owned(),
            name: name.to_owned(),
            library: if library.is_empty() { plugin } else { library }.to_owned(),
            function: function.to_owned(),
            reject: (!reject.is_empty()).then(|| reject.to_owned()),
            // issue 15: isolated handlers
            isolated,
        };
        register(|r| r.add_handler(h))
    })
}

// issue 15: isolated handlers
/// Whether a handler's `flags` ask for isolation; `None` for a bit this host does not know: a
/// plugin built for a later host, refused rather than ignored (an ignored bit could be a promise
/// the host does not keep).
fn isolated_of(flags: u32) -> Option<bool> {
    (flags & !abi::HANDLER_ISOLATED == 0).then_some(flags & abi::HANDLER_ISOLATED != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 15: isolated handlers
    /// The host reads the flags itself: isolation is known, any other bit refused.
    #[test]
    fn the_isolated_flag_is_known_and_other_bits_refused() {
        assert_eq!(isolated_of(0), Some(false));
        assert_eq!(isolated_of(abi::HANDLER_ISOLATED), Some(true));
        assert_eq!(isolated_of(1 << 1), None);
        assert_eq!(isolated_of(abi::HANDLER_ISOLATED | 1 << 31), None);
    }
}
