//! testkit's connection handler (issue 15: connections): `testkit.echo`.
//!
//! Runs in: a client child per connection. Each request line gets one answer line: `pid` (this
//! child's pid), `peer` (the peer as the host described it), `segv` (crashes with SIGSEGV),
//! `launch NAME` (launches a dynamic worker `NAME` running `testkit_dyn_child`, answers
//! `started PID`), `stop` (terminates the last one launched, answers `stopped`), and anything
//! else is echoed back.

use std::io::{Read, Write};

use std::time::Duration;

use steward::{
    entry, BackgroundWorker, Connection, ConnectionHandler, InitError, Registrar, WorkerError, WorkerHandle,
    WorkerStatus,
};

use super::testkit_dyn_child;

pub fn register(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.register_handler(ConnectionHandler::new("echo", entry!(testkit_echo)))?;
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
