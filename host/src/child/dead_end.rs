//! A dead-end child: answers a connection the host cannot serve (too many connections, shutting
//! down, recovering) with one error line, and closes.
//!
//! Runs in: dead-end children, which map no shared memory and run no plugin code.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::child::connection::answer;
use crate::child::connection::write_line;
use crate::shared::handoff::ClientSocket;

pub fn dead_end_main(client: ClientSocket, message: &str, state: Option<&str>) {
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let mut stream = UnixStream::from(client.fd);
    let mut answer = answer::error(message);
    if let Some(state) = state {
        answer["state"] = state.into();
    }
    let _ = write_line(&mut stream, &answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the line before the socket goes away; never wait long.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
