//! testkit's connection handler (issue 15: connections): `testkit.echo`.
//!
//! Runs in: a client child per connection. Each request line gets one answer line: `pid` (this
//! child's pid), `peer` (the peer as the host described it), `segv` (crashes with SIGSEGV),
//! `launch NAME` (launches a dynamic worker `NAME` running `testkit_dyn_child`, answers
//! `started PID`), `stop` (terminates the last one launched, answers `stopped`), and anything
//! else is echoed back.
//!
//! Isolated handlers (issue 15: isolated handlers): `testkit.iso_echo` is the same handler
//! registered with `.isolated()`. Both also answer `bump` (adds one to the handlers' word, the
//! last of the `testkit` region, and answers `bumped to N`: a write into the segment, which
//! faults in an isolated client child), `peek` (answers `counter is N`, read only), `abort`
//! (dies by SIGABRT), `lock` (takes and drops the lock `counter` when `locks = "on"`, answering
//! `took lock` or `lock refused: ERROR`), `set_latch` (sets its own latch, answering
//! `set: true`, or `set: false` where a set is refused, as in an isolated process), `latch`
//! (answers its latch handle, raw), `set_raw RAW` (sets that latch, answering `set: BOOL`) and
//! `wait_latch` (waits up to 10 s, answering the `WaitResult`, `Latch` when its latch was set).

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use std::time::Duration;

use steward::{
    entry, BackgroundWorker, Connection, ConnectionHandler, InitError, LatchHandle, Registrar, WorkerError,
    WorkerHandle, WorkerStatus,
};

use super::testkit_dyn_child;

// issue 15: isolated handlers
/// The handlers' word of the `testkit` region: its last, past every worker's.
const HANDLERS_WORD: usize = super::MAX_WORKERS as usize - 1;

pub fn register(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.register_handler(ConnectionHandler::new("echo", entry!(testkit_echo)))?;
    // issue 15: isolated handlers
    reg.register_handler(ConnectionHandler::new("iso_echo", entry!(testkit_echo)).isolated())?;
    Ok(())
}

fn testkit_echo(c: &mut Connection) -> Result<(), WorkerError> {
    let mut pending = Vec::new();
    let mut launched: Option<WorkerHandle> = None;
    let mut buf = [0u8; 256];
    loop {
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..pos]).into_owned();
            let answer = match line.as_str() {
                "pid" => std::process::id().to_string(),
                "peer" => format!("{:?}", c.peer()),
                "segv" => {
                    // SAFETY: deliberately unsound: this handler exists to crash with SIGSEGV.
                    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
                    unreachable!()
                }
                // issue 15: isolated handlers
                "bump" | "peek" => {
                    let region = c.region("testkit").map_err(super::fatal)?;
                    let word = region
                        .atomic_u64(HANDLERS_WORD)
                        .ok_or_else(|| super::fatal("the testkit region is too small"))?;
                    match line.as_str() {
                        "bump" => format!("bumped to {}", word.fetch_add(1, Ordering::SeqCst) + 1),
                        _ => format!("counter is {}", word.load(Ordering::SeqCst)),
                    }
                }
                "abort" => std::process::abort(),
                "lock" => match c.lock("counter") {
                    Ok(l) => {
                        drop(l.exclusive());
                        "took lock".to_owned()
                    }
                    Err(e) => format!("lock refused: {e}"),
                },
                "set_latch" => format!("set: {}", c.latch().set()),
                "latch" => c.latch().to_raw().to_string(),
                "wait_latch" => format!("{:?}", c.wait(Duration::from_secs(10))),
                "stop" => match launched.take() {
                    Some(h) => match h
                        .terminate()
                        .and_then(|()| h.wait_for_shutdown(Duration::from_secs(10)))
                    {
                        Ok(WorkerStatus::Stopped { .. }) => "stopped".to_owned(),
                        other => format!("error {other:?}"),
                    },
                    None => "error nothing launched".to_owned(),
                },
                other if other.starts_with("set_raw ") => {
                    let raw = other["set_raw ".len()..].trim().parse().unwrap_or(0);
                    format!("set: {}", LatchHandle::from_raw(raw).set())
                }
                other => match other.strip_prefix("launch ") {
                    Some(name) => match c.launch(BackgroundWorker::new(name, entry!(testkit_dyn_child))) {
                        Ok(h) => {
                            launched = Some(h);
                            match h.wait_for_startup(Duration::from_secs(10)) {
                                Ok(WorkerStatus::Running { pid }) => format!("started {pid}"),
                                other => format!("error {other:?}"),
                            }
                        }
                        Err(e) => format!("error {e}"),
                    },
                    None => other.to_owned(),
                },
            };
            if c.write_all(format!("{answer}\n").as_bytes()).is_err() {
                return Ok(());
            }
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}
steward::connection_entry!(testkit_echo);
