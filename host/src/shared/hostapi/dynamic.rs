//! The host table's dynamic-worker calls (issue 14: dynamic workers): `launch_worker` and the
//! worker-handle calls, converting between the ABI's structs and [`crate::shared::handles`].
//!
//! Runs in: workers (the calls answer `STATUS_UNAVAILABLE` in a process that has no segment).
//! Every pointer comes from plugin code: each is checked for null and for the size its struct
//! claims before it is written.

use std::ffi::c_void;

use steward::abi::{self, Status, Str};

use super::spec_from_abi;

pub(super) unsafe extern "C" fn host_launch_worker(
    _ctx: *mut c_void,
    plugin: Str,
    spec: *const abi::WorkerSpec,
    answer: *mut abi::LaunchAnswer,
) -> Status {
    // SAFETY: the plugin's pointers, passed on as they came.
    unsafe { launch_worker(plugin, spec, std::ptr::null(), std::ptr::null(), answer) }
}

// issue 14: notifications
pub(super) unsafe extern "C" fn host_launch_worker_ext(
    _ctx: *mut c_void,
    plugin: Str,
    spec: *const abi::WorkerSpec,
    ext: *const abi::WorkerSpecExt,
    answer: *mut abi::LaunchAnswer,
) -> Status {
    if ext.is_null() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: the plugin's pointers, passed on as they came.
    unsafe { launch_worker(plugin, spec, ext, std::ptr::null(), answer) }
}

// issue 14: queue
/// The queue timeout `opts` asks for: `Err` for a malformed struct or unknown flags.
///
/// # Safety
/// `opts` is null or points to a `LaunchOpts` of at least the size it claims.
unsafe fn queue_timeout(opts: *const abi::LaunchOpts) -> Result<Option<std::time::Duration>, Status> {
    // SAFETY: per this function's contract.
    let Some(o) = (unsafe { opts.as_ref() }) else {
        return Ok(None);
    };
    if (o.size as usize) < std::mem::size_of::<abi::LaunchOpts>() || o.flags & !abi::LAUNCH_QUEUE != 0 {
        return Err(abi::STATUS_INVALID);
    }
    Ok((o.flags & abi::LAUNCH_QUEUE != 0).then(|| std::time::Duration::from_micros(o.queue_timeout_us)))
}

/// `launch_worker_ext` with launch options (`ext` may be null here).
pub(super) unsafe extern "C" fn host_launch_worker_opts(
    _ctx: *mut c_void,
    plugin: Str,
    spec: *const abi::WorkerSpec,
    ext: *const abi::WorkerSpecExt,
    opts: *const abi::LaunchOpts,
    answer: *mut abi::LaunchAnswer,
) -> Status {
    // SAFETY: the plugin's pointers, passed on as they came.
    unsafe { launch_worker(plugin, spec, ext, opts, answer) }
}

/// Every launch call: `ext` null for `launch_worker`, `opts` null but for `launch_worker_opts`.
///
/// # Safety
/// The plugin's pointers per the ABI: `spec`, `ext` and `opts` null or valid for the call (`opts`
/// of at least the size it claims), `answer` null or a `LaunchAnswer` of at least the size it
/// claims.
unsafe fn launch_worker(
    plugin: Str,
    spec: *const abi::WorkerSpec,
    ext: *const abi::WorkerSpecExt,
    opts: *const abi::LaunchOpts,
    answer: *mut abi::LaunchAnswer,
) -> Status {
    use crate::shared::handles::launch;
    // SAFETY: the plugin's answer struct, checked for null and for the size it claims.
    let Some(out) = (unsafe { answer.as_mut() }) else {
        return abi::STATUS_INVALID;
    };
    if (out.size as usize) < std::mem::size_of::<abi::LaunchAnswer>() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: the plugin's pointers, valid for the call.
    let spec = match unsafe { spec_from_abi(plugin, spec, ext) } {
        Ok(s) => s,
        Err(st) => {
            write_message(
                out,
                "the registration is malformed (a name, the entry or the restart policy)",
            );
            return st;
        }
    };
    // issue 15: isolated
    if crate::shared::isolation::active() {
        write_message(
            out,
            "an isolated worker cannot launch workers (a launch writes shared memory, which its process maps read-only)",
        );
        return abi::STATUS_UNAVAILABLE;
    }
    // SAFETY: the plugin's options struct, null or of the size it claims.
    let queue_timeout = match unsafe { queue_timeout(opts) } {
        Ok(q) => q,
        Err(st) => {
            write_message(out, "the launch options are malformed (size or unknown flags)");
            return st;
        }
    };
    match launch(&spec, queue_timeout) {
        Ok((slot, generation)) => {
            out.slot = slot;
            out.generation = generation;
            out.message_len = 0;
            abi::STATUS_OK
        }
        Err(e) => refusal(&e, out),
    }
}

fn write_message(out: &mut abi::LaunchAnswer, m: &str) {
    let n = m.len().min(out.message.len());
    out.message[..n].copy_from_slice(&m.as_bytes()[..n]);
    out.message_len = n as u32;
}

/// Writes a refused launch into the plugin's answer: what the SDK cannot know (the reason or the
/// name, and the counts of a full pool); returns the status. The SDK words the error from these
/// (`steward::__launch_error`), as the host's own `LaunchFail` does.
fn refusal(e: &crate::shared::handles::LaunchFail, out: &mut abi::LaunchAnswer) -> Status {
    use crate::shared::handles::LaunchFail;
    write_message(out, &e.detail());
    match *e {
        LaunchFail::NoFreeSlot { used, max } => {
            out.used = used;
            out.max = max;
            abi::STATUS_NO_FREE_SLOT
        }
        LaunchFail::Invalid(_) => abi::STATUS_INVALID,
        // issue 14: notifications
        LaunchFail::DuplicateName(_) => abi::STATUS_DUPLICATE,
        LaunchFail::UnknownStartAfter(_) => abi::STATUS_NOT_FOUND,
        LaunchFail::HostNotRunning => abi::STATUS_HOST_NOT_RUNNING,
        LaunchFail::TimedOut(_) => abi::STATUS_TIMED_OUT,
        LaunchFail::Unavailable => abi::STATUS_UNAVAILABLE,
        LaunchFail::Terminate => abi::STATUS_TERMINATE,
    }
}

/// Writes a handle's outcome for the plugin.
///
/// # Safety
/// `out` is null or points to a `HandleStatus` of at least the size it claims.
unsafe fn handle_out(
    r: Result<crate::shared::handles::HandleState, crate::shared::handles::HandleFail>,
    out: *mut abi::HandleStatus,
) -> Status {
    use crate::shared::handles::{HandleFail, HandleState};
    // SAFETY: per this function's contract.
    let Some(out) = (unsafe { out.as_mut() }) else {
        return abi::STATUS_INVALID;
    };
    if (out.size as usize) < std::mem::size_of::<abi::HandleStatus>() {
        return abi::STATUS_INVALID;
    }
    let st = match r {
        Ok(st) => st,
        Err(HandleFail::Stale) => return abi::STATUS_STALE,
        Err(HandleFail::TimedOut) => return abi::STATUS_TIMED_OUT,
        Err(HandleFail::Terminate) => return abi::STATUS_TERMINATE,
        Err(HandleFail::Unavailable) => return abi::STATUS_UNAVAILABLE,
    };
    out.pid = 0;
    out.reason_len = 0;
    out.errno = 0;
    out.phase = match st {
        HandleState::NotYetStarted => abi::HANDLE_NOT_STARTED,
        HandleState::Running { pid } => {
            out.pid = pid;
            abi::HANDLE_RUNNING
        }
        HandleState::Stopped { reason, errno } => {
            out.errno = errno.unwrap_or(0);
            let mut n = reason.len().min(out.reason.len());
            while !reason.is_char_boundary(n) {
                n -= 1;
            }
            out.reason[..n].copy_from_slice(&reason.as_bytes()[..n]);
            out.reason_len = n as u32;
            abi::HANDLE_STOPPED
        }
    };
    abi::STATUS_OK
}

pub(super) unsafe extern "C" fn host_handle_status(
    _ctx: *mut c_void,
    slot: u32,
    generation: u64,
    out: *mut abi::HandleStatus,
) -> Status {
    // SAFETY: the plugin's struct, per the ABI.
    unsafe { handle_out(crate::shared::handles::status(slot, generation), out) }
}

pub(super) unsafe extern "C" fn host_handle_wait(
    _ctx: *mut c_void,
    slot: u32,
    generation: u64,
    what: u32,
    timeout_us: u64,
    out: *mut abi::HandleStatus,
) -> Status {
    let shutdown = match what {
        abi::HANDLE_WAIT_STARTUP => false,
        abi::HANDLE_WAIT_SHUTDOWN => true,
        _ => return abi::STATUS_INVALID,
    };
    let timeout = std::time::Duration::from_micros(timeout_us);
    // SAFETY: the plugin's struct, per the ABI.
    unsafe { handle_out(crate::shared::handles::wait(slot, generation, shutdown, timeout), out) }
}

pub(super) unsafe extern "C" fn host_handle_terminate(_ctx: *mut c_void, slot: u32, generation: u64) -> Status {
    match crate::shared::handles::terminate(slot, generation) {
        Ok(()) => abi::STATUS_OK,
        Err(crate::shared::handles::HandleFail::Stale) => abi::STATUS_STALE,
        Err(_) => abi::STATUS_UNAVAILABLE,
    }
}

// issue 14: control
pub(super) unsafe extern "C" fn host_handle_by_name(
    _ctx: *mut c_void,
    name: abi::Str,
    slot: *mut u32,
    generation: *mut u64,
) -> Status {
    if slot.is_null() || generation.is_null() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: the plugin's string, valid for the call per the ABI; copied before use.
    let Some(name) = (unsafe { name.to_str() }).map(str::to_owned) else {
        return abi::STATUS_BAD_NAME;
    };
    match crate::shared::handles::by_name(&name) {
        Ok(Some((s, g))) => {
            // SAFETY: checked non-null; the plugin's out-parameters, per the ABI.
            unsafe {
                slot.write(s);
                generation.write(g);
            }
            abi::STATUS_OK
        }
        Ok(None) => abi::STATUS_NOT_FOUND,
        Err(crate::shared::handles::ByNameFail::Ambiguous { .. }) => abi::STATUS_DUPLICATE,
        Err(crate::shared::handles::ByNameFail::Unavailable) => abi::STATUS_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::handles::LaunchFail;

    /// A refusal reaches the plugin in the host's words, once: the SDK's error built from the
    /// answer says exactly what the host's own error says (an `Invalid` used to arrive as
    /// "invalid dynamic worker: invalid dynamic worker: ...").
    #[test]
    fn a_refused_launch_reads_the_same_in_the_plugin_as_in_the_host() {
        let fails = [
            LaunchFail::NoFreeSlot { used: 8, max: 8 },
            LaunchFail::Invalid("a worker named \"w\" is already registered".into()),
            LaunchFail::HostNotRunning,
            LaunchFail::Unavailable,
            LaunchFail::TimedOut(std::time::Duration::from_secs(10)),
            LaunchFail::DuplicateName("w".into()),
            LaunchFail::UnknownStartAfter("loader".into()),
            LaunchFail::Terminate,
        ];
        for e in fails {
            let mut out = abi::LaunchAnswer {
                size: std::mem::size_of::<abi::LaunchAnswer>() as u32,
                slot: 0,
                generation: 0,
                used: 0,
                max: 0,
                message: [0; 256],
                message_len: 0,
            };
            let st = refusal(&e, &mut out);
            let message = String::from_utf8_lossy(&out.message[..out.message_len as usize]).into_owned();
            let seen = steward::__launch_error(st, message, out.used, out.max).to_string();
            if let LaunchFail::TimedOut(_) = e {
                // The SDK has no word of its own for it: it shows the host's with the status.
                assert!(seen.ends_with(&e.to_string()), "{seen}");
            } else {
                assert_eq!(seen, e.to_string());
            }
        }
        assert_eq!(
            LaunchFail::Invalid("bad".into()).to_string(),
            "invalid dynamic worker: bad"
        );
    }
}
