//! testkit's misbehaving connection handlers (review of plugin connections): rejection writers
//! that misbehave, and a session that forges its launch request.
//!
//! Runs in: client children (`hold`, the serving side of `wild` and `stuck`; `forger`) and
//! dead-end children (the rejection writers).
//!
//! - `testkit.wild`: serves by holding the connection until the client closes; its rejection
//!   writer stores `0xA5` bytes over the first 8 bytes (the header's magic) of its mapping of the
//!   host's segment (found in `/proc/self/maps`), then answers `wrote`. In a dead-end whose
//!   mapping is read-only the store faults and nothing is answered.
//! - `testkit.stuck`: serves as `wild`; its rejection writer logs `rejection writer stuck` and
//!   never returns, ignoring nothing: only the dead-end's deadline (or a signal) ends it.
//! - `testkit.forger`: calls the host's `launch_worker` directly, naming the plugin `kvstore`
//!   instead of its own, answers `launched` or `refused: MESSAGE`, and ends.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use steward::{abi, entry, Connection, ConnectionHandler, InitError, Registrar, Rejection, WorkerError};

pub fn register(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.register_handler(ConnectionHandler::new("wild", entry!(testkit_hold)).rejection(entry!(testkit_wild_refusal)))?;
    reg.register_handler(
        ConnectionHandler::new("stuck", entry!(testkit_hold)).rejection(entry!(testkit_stuck_refusal)),
    )?;
    reg.register_handler(ConnectionHandler::new("forger", entry!(testkit_forger)))?;
    Ok(())
}

steward::connection_entry!(testkit_hold);
steward::rejection_entry!(testkit_wild_refusal);
steward::rejection_entry!(testkit_stuck_refusal);
steward::__export_entry!(
    testkit_forger,
    "steward_connection_entry__",
    steward::abi::CONN_MAGIC,
    crate::refusals::forge
);

/// Holds the connection until the client closes it (or the host ends it).
fn testkit_hold(c: &mut Connection) -> Result<(), WorkerError> {
    let mut buf = [0u8; 64];
    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    Ok(())
}

/// The start of this process's mapping of the host's segment.
fn segment_mapping() -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.contains("steward-shmem"))?;
    let (range, _) = line.split_once(' ')?;
    let (a, _) = range.split_once('-')?;
    usize::from_str_radix(a, 16).ok()
}

fn testkit_wild_refusal(r: &mut Rejection) {
    let Some(start) = segment_mapping() else {
        let _ = r.write_all(b"no segment mapped\n");
        return;
    };
    for i in 0..8 {
        // SAFETY: deliberately a wild store into shared memory this code does not own: the
        // host must have made it fault.
        unsafe { ((start + i) as *mut u8).write_volatile(0xA5) };
    }
    let _ = r.write_all(b"wrote\n");
}

fn testkit_stuck_refusal(_r: &mut Rejection) {
    tracing::info!("rejection writer stuck");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Stands in for the SDK's `__run_connection`, to reach the host's table as hostile code could.
fn testkit_forger() {}

/// # Safety
/// `api` is the table the host passed to the entry.
pub(crate) unsafe fn forge(api: *const abi::WorkerApi, _f: fn()) -> i32 {
    // SAFETY: the host's table, valid for the process's life; its `host` table too.
    let (api, host) = unsafe { (&*api, &*(*api).host) };
    // SAFETY: the host passed the client socket's fd in `arg`; this entry owns it now.
    let mut sock = unsafe { std::fs::File::from_raw_fd(api.arg as i32) };
    let spec = abi::WorkerSpec {
        name: abi::Str::new("forged"),
        worker_type: abi::Str::EMPTY,
        library: abi::Str::new("kvstore"),
        function: abi::Str::new("testkit_dyn_child"),
        start_time: abi::START_HOST_START,
        restart_kind: abi::RESTART_NEVER,
        restart_delay_us: 0,
        arg: 0,
        extra: std::ptr::null(),
        extra_len: 0,
        backoff_factor_milli: 0,
        crash_loop_max: 0,
        restart_cap_us: 0,
        restart_reset_us: 0,
        crash_loop_window_us: 0,
    };
    let mut answer = abi::LaunchAnswer::new();
    // SAFETY: the host's own function with its context; the spec's strings and the answer
    // outlive the call.
    let st = unsafe { (host.launch_worker)(host.ctx, abi::Str::new("kvstore"), &spec, &mut answer) };
    let n = (answer.message_len as usize).min(answer.message.len());
    let line = match st {
        abi::STATUS_OK => "launched\n".to_owned(),
        _ => format!("refused: {}\n", String::from_utf8_lossy(&answer.message[..n])),
    };
    let _ = sock.write_all(line.as_bytes());
    0
}
