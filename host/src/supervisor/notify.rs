//! systemd's notify protocol (`Type=notify`): `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`
//! and `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`.
//!
//! Runs in: the supervisor only. The variables are read once and removed from the environment, so
//! children (and anything plugins start) cannot speak for the host. Sending never blocks and
//! never fails the host: a lost datagram is logged at debug level.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `$WATCHDOG_USEC`, when the watchdog is on for this process.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`, then unsets them.
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok());
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // Called at the start of `steward run`, before any plugin code: still single-threaded.
            std::env::remove_var(v);
        }
        let target = path.and_then(|p| {
            use std::os::unix::ffi::OsStrExt;
            let bytes = p.as_bytes();
            let addr = if let Some(name) = bytes.strip_prefix(b"@") {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            } else {
                SocketAddr::from_pathname(std::path::Path::new(&p)).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            sock.set_nonblocking(true).ok()?;
            Some((sock, addr))
        });
        let watchdog_every = usec.filter(|u| *u > 0 && for_us).map(|u| Duration::from_micros(u / 2));
        Notifier {
            target,
            watchdog_every: watchdog_every.filter(|_| true),
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (lines separated by `\n`).
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("cannot notify the service manager: {e}");
            }
        }
    }

    /// `RELOADING=1` with the monotonic timestamp systemd asks for.
    pub fn reloading(&self) {
        let us = crate::shared::shmem::monotonic_ns() / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={us}"));
    }
}
