//! The connection server: one child per control connection, serving its client's requests.
//!
//! Runs in: connection children, forked (or executed) by the supervisor for one accepted client
//! socket each. A connection child serves its client's requests until the client closes, or sends
//! no request within [`REQUEST_TIMEOUT`] of the last answer; in the reserved connection slot (the
//! last one) it serves only `status` and `stop`. Every request byte is untrusted. It is also a
//! requester of dynamic workers (`launch`, `terminate`; see [`launch`]), through the request
//! slot at its child slot's index.

pub mod answer;
// issue 14: control
pub mod launch;
pub mod request;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::child::connection::request::Request;
use crate::child::exit_clean;
use crate::shared::handoff::{ChildEnv, ClientSocket};
use crate::shared::protocol::ChildSlot;

/// The longest request line a server reads.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a connection child waits for each request before it closes the connection, so idle
/// clients cannot hold every connection slot (PostgreSQL's `authentication_timeout`; decision 61).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one protocol line; the caller decides what a failed write means.
pub fn write_line(stream: &mut UnixStream, v: &serde_json::Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// The client's side of a connection, read against a deadline for the whole next request: a
/// timeout per `read` alone would let a client that trickles a byte every few seconds hold its
/// connection slot forever.
struct Deadline {
    stream: UnixStream,
    until: std::time::Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Serves one control connection. `reserved`: this child holds the connection slot kept for
/// `status` and `stop`, and refuses every other request.
pub fn connection_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, client: ClientSocket, reserved: bool) -> i32 {
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let mut stream = UnixStream::from(client.fd);
    let me = nix::unistd::getuid();
    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) if cred.uid() == me.as_raw() || cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(
                "refused a control connection from uid {} (host runs as uid {})",
                cred.uid(),
                me
            );
            let _ = write_line(
                &mut stream,
                &answer::error("permission denied: only the host's user or root may control it"),
            );
            exit_clean(slot, 0, "");
        }
        Err(e) => {
            tracing::warn!("cannot read peer credentials: {e}");
            exit_clean(slot, 0, "");
        }
    }
    let Ok(read_half) = stream.try_clone() else {
        exit_clean(slot, 0, "")
    };
    let mut reader = BufReader::new(Deadline {
        stream: read_half,
        until: std::time::Instant::now(),
    });
    // Each request must arrive whole within the timeout of the connection being served or of
    // the previous answer (PostgreSQL's `authentication_timeout`): an idle client gives its slot
    // back. Empty lines are not requests and do not extend it.
    let mut answered = true;
    loop {
        if answered {
            reader.get_mut().until = std::time::Instant::now() + REQUEST_TIMEOUT;
            answered = false;
        }
        let mut buf = Vec::new();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                tracing::debug!("closing an idle control connection");
                let _ = write_line(
                    &mut stream,
                    &answer::error(&format!(
                        "no request within {}s: closing the connection",
                        REQUEST_TIMEOUT.as_secs()
                    )),
                );
                break;
            }
            Err(_) => break,
            Ok(_) => {}
        }
        if buf.len() > MAX_LINE {
            let _ = write_line(&mut stream, &answer::error("request line too long"));
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let answer = match request::parse_request(line) {
            Ok(r) if reserved && !matches!(r, Request::Status | Request::Stop(_)) => answer::error(&format!(
                "too many connections (max_connections = {}): this connection has the slot reserved for status and stop",
                env.cfg.max_connections
            )),
            Ok(Request::Status) => match serde_json::to_value(answer::status_from_segment(env.segment)) {
                Ok(v) => answer::ok(v),
                Err(e) => answer::error(&e.to_string()),
            },
            Ok(Request::Reload { config }) => {
                answer::serve_reload(env.segment, env.host_pid, &env.cfg.path, config.as_deref())
            }
            Ok(Request::Show { name }) => answer::serve_show(env.segment, name.as_deref()),
            // issue 14: control
            Ok(Request::Launch(req)) => launch::serve_launch(req),
            Ok(Request::Terminate { name, wait }) => launch::serve_terminate(&name, wait),
            Ok(Request::Stop(mode)) => {
                let _ = write_line(
                    &mut stream,
                    &answer::ok(serde_json::json!({"stopping": mode.as_str(), "pid": env.host_pid})),
                );
                tracing::info!("{} shutdown requested over the control socket", mode.as_str());
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(env.host_pid), mode.signal());
                answered = true;
                continue;
            }
            Err(msg) => answer::error(&msg),
        };
        if write_line(&mut stream, &answer).is_err() {
            break;
        }
        answered = true;
    }
    exit_clean(slot, 0, "")
}
