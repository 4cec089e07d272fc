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
            "an isolated worker or connection handler cannot launch workers (a launch writes shared memory, which its process maps read-only)",
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

/// The room in `HandleStatus::reason`: the bytes from it to `errno`, the field after it.
const REASON_CAP: usize =
    std::mem::offset_of!(abi::HandleStatus, errno) - std::mem::offset_of!(abi::HandleStatus, reason);

/// Writes a handle's outcome for the plugin.
///
/// The struct may be an older plugin's, shorter than this host's: `size` is read first, and no
/// field past it is read or written (`errno` came later; a struct that ends before it is one
/// built before it existed). Hence raw field pointers, never a reference to the whole struct.
///
/// # Safety
/// `out` is null or points to a `HandleStatus` prefix of at least the size it claims.
unsafe fn handle_out(
    r: Result<crate::shared::handles::HandleState, crate::shared::handles::HandleFail>,
    out: *mut abi::HandleStatus,
) -> Status {
    use crate::shared::handles::{HandleFail, HandleState};
    if out.is_null() {
        return abi::STATUS_INVALID;
    }
    // SAFETY: non-null, and `size` is the first field of every version of the struct.
    let size = unsafe { std::ptr::addr_of!((*out).size).read() } as usize;
    // review: handle status size (the fields every version has, up to `errno`)
    if size < std::mem::offset_of!(abi::HandleStatus, errno) {
        return abi::STATUS_INVALID;
    }
    let has_errno = size >= std::mem::offset_of!(abi::HandleStatus, errno) + std::mem::size_of::<i32>();
    let st = match r {
        Ok(st) => st,
        Err(HandleFail::Stale) => return abi::STATUS_STALE,
        Err(HandleFail::TimedOut) => return abi::STATUS_TIMED_OUT,
        Err(HandleFail::Terminate) => return abi::STATUS_TERMINATE,
        Err(HandleFail::Unavailable) => return abi::STATUS_UNAVAILABLE,
    };
    let (phase, pid, errno, reason) = match &st {
        HandleState::NotYetStarted => (abi::HANDLE_NOT_STARTED, 0, 0, ""),
        HandleState::Running { pid } => (abi::HANDLE_RUNNING, *pid, 0, ""),
        HandleState::Stopped { reason, errno } => (abi::HANDLE_STOPPED, 0, errno.unwrap_or(0), reason.as_str()),
    };
    let mut n = reason.len().min(REASON_CAP);
    while !reason.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: every field written lies inside the `size` bytes the plugin vouched for (checked
    // above: all before `errno`, and `errno` only when `has_errno`); `reason` holds at least `n`
    // bytes (`n` is at most its room); the plugin's struct is the ABI's `repr(C)` type, so each
    // field pointer is aligned; `reason` is copied from a Rust string, which cannot overlap it.
    unsafe {
        std::ptr::addr_of_mut!((*out).phase).write(phase);
        std::ptr::addr_of_mut!((*out).pid).write(pid);
        std::ptr::addr_of_mut!((*out).reason_len).write(n as u32);
        let dst = std::ptr::addr_of_mut!((*out).reason).cast::<u8>();
        std::ptr::copy_nonoverlapping(reason.as_ptr(), dst, n);
        if has_errno {
            std::ptr::addr_of_mut!((*out).errno).write(errno);
        }
    }
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

// review: handle status size
#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::handles::{HandleState, LaunchFail};

    fn blank(size: usize) -> abi::HandleStatus {
        abi::HandleStatus {
            size: size as u32,
            phase: 99,
            pid: 0,
            reason_len: 0,
            reason: [0; 256],
            errno: 77,
        }
    }

    fn stopped() -> Result<HandleState, crate::shared::handles::HandleFail> {
        Ok(HandleState::Stopped {
            reason: "launch failed: Resource temporarily unavailable".into(),
            errno: Some(libc::EAGAIN),
        })
    }

    #[test]
    fn a_handle_status_from_before_errno_is_filled_up_to_its_size() {
        // A plugin built before `errno` passes a struct that ends where `errno` begins: served,
        // and the bytes past its end (here the sentinel in `errno`) are never written.
        let old = std::mem::offset_of!(abi::HandleStatus, errno);
        let mut out = blank(old);
        // SAFETY: a whole struct, so every field the call may write is there.
        assert_eq!(unsafe { handle_out(stopped(), &mut out) }, abi::STATUS_OK);
        assert_eq!(out.phase, abi::HANDLE_STOPPED);
        assert_eq!(
            &out.reason[..out.reason_len as usize],
            b"launch failed: Resource temporarily unavailable"
        );
        assert_eq!(out.errno, 77);
        assert_eq!(REASON_CAP, out.reason.len());
        // This host's size: `errno` too.
        let mut out = blank(std::mem::size_of::<abi::HandleStatus>());
        // SAFETY: as above.
        assert_eq!(unsafe { handle_out(stopped(), &mut out) }, abi::STATUS_OK);
        assert_eq!(out.errno, libc::EAGAIN);
        // Shorter than any version, or null: refused, nothing written.
        let mut out = blank(old - 1);
        // SAFETY: as above.
        assert_eq!(unsafe { handle_out(stopped(), &mut out) }, abi::STATUS_INVALID);
        assert_eq!(out.phase, 99);
        // SAFETY: null is refused before any access.
        assert_eq!(
            unsafe { handle_out(stopped(), std::ptr::null_mut()) },
            abi::STATUS_INVALID
        );
    }

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
            let mut out = abi::LaunchAnswer::new();
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
