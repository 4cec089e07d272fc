//! testkit's connection handler (issue 15: connections): `testkit.echo`.
//!
//! Runs in: a client child per connection. Each request line gets one answer line: `pid` (this
//! child's pid), `peer` (the peer as the host described it), `segv` (crashes with SIGSEGV), and
//! anything else is echoed back.

use std::io::{Read, Write};

use steward::{entry, Connection, ConnectionHandler, InitError, Registrar, WorkerError};

pub fn register(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.register_handler(ConnectionHandler::new("echo", entry!(testkit_echo)))?;
    Ok(())
}

fn testkit_echo(c: &mut Connection) -> Result<(), WorkerError> {
    let mut pending = Vec::new();
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
                other => other.to_owned(),
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
