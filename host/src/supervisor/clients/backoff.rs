//! What a listener does when `accept(2)` fails: [`after_failed_accept`] sorts the errors, and
//! for want of a resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), where the waiting client
//! stays queued so polling the listener again at once would report it readable again and the
//! loop would spin, the listener rests ([`AcceptBackoff`]).
//!
//! Runs in: the supervisor, one [`AcceptBackoff`] per listener and one for the control socket.
//!
//! Invariants: after a failure the listener is left out of the poll set for [`PAUSE`] (the rest
//! of the loop goes on: the control socket, exits, launches, the other listeners), and the
//! failure is logged at most once per [`WARN_EVERY`] per listener, with the count of the ones not
//! logged since.

use std::time::{Duration, Instant};

/// What to do after `accept(2)` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailedAccept {
    /// `EAGAIN`: no client waits; back to the poll.
    Empty,
    /// The error was about one client, whose connection has left the queue (or a signal): call
    /// `accept` again at once, without a rest or a warning.
    Retry,
    /// Out of a resource, or an error not known to be about one client: the listener rests.
    Rest,
}

/// Sorts an `accept(2)` error. Linux passes a new connection's pending network errors through
/// `accept` (`EPROTO`, `ENOPROTOOPT`, `ENETDOWN`, `ENONET`, `EHOSTDOWN`, `EHOSTUNREACH`,
/// `ENETUNREACH`, `EOPNOTSUPP`, and `EPERM` when a firewall refused it) and says to treat them
/// like `EAGAIN` by retrying; `ECONNABORTED` (a client gone while queued) and `EINTR` are the
/// same. None of them leaves the client queued, so none is a reason to rest.
pub fn after_failed_accept(e: &std::io::Error) -> AfterFailedAccept {
    use nix::errno::Errno;
    let Some(errno) = e.raw_os_error().map(Errno::from_raw) else {
        return AfterFailedAccept::Rest;
    };
    match errno {
        Errno::EAGAIN => AfterFailedAccept::Empty,
        Errno::EINTR
        | Errno::ECONNABORTED
        | Errno::EPROTO
        | Errno::ENOPROTOOPT
        | Errno::ENETDOWN
        | Errno::ENONET
        | Errno::EHOSTDOWN
        | Errno::EHOSTUNREACH
        | Errno::ENETUNREACH
        | Errno::EOPNOTSUPP
        | Errno::EPERM => AfterFailedAccept::Retry,
        _ => AfterFailedAccept::Rest,
    }
}

/// How long a listener is not polled after `accept` failed.
pub const PAUSE: Duration = Duration::from_millis(100);
/// At most one warning per listener this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct AcceptBackoff {
    paused_until: Option<Instant>,
    warned_at: Option<Instant>,
    /// Failures since the last warning that were not logged.
    unlogged: u64,
}

impl AcceptBackoff {
    /// Records a failed `accept` at `now`: the listener pauses, and the answer is whether to log
    /// it, with how many failures went unlogged before it.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.paused_until = Some(now + PAUSE);
        if self.warned_at.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.warned_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// [`AcceptBackoff::failed`], and the warning when it is due: `accept on WHAT failed: ...`.
    pub fn failed_and_warn(&mut self, now: Instant, what: impl std::fmt::Display, e: &std::io::Error) {
        if let Some(unlogged) = self.failed(now) {
            let more = match unlogged {
                0 => String::new(),
                n => format!(" ({n} more failures since the last warning)"),
            };
            tracing::warn!(
                "accept on {what} failed: {e}; not accepting there for {} ms{more}",
                PAUSE.as_millis()
            );
        }
    }

    /// Whether the listener is left out of the poll set at `now`.
    pub fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// When a pause in force at `now` ends.
    pub fn resumes_at(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|t| now < *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's own network error or an aborted client is retried at once; only a want
    /// of resources, or an error not known to be about one client, rests the listener.
    #[test]
    fn accept_errors_are_sorted() {
        use nix::errno::Errno;
        let of = |e: Errno| after_failed_accept(&std::io::Error::from_raw_os_error(e as i32));
        assert_eq!(of(Errno::EAGAIN), AfterFailedAccept::Empty);
        assert_eq!(of(Errno::EWOULDBLOCK), AfterFailedAccept::Empty);
        for e in [
            Errno::EINTR,
            Errno::ECONNABORTED,
            Errno::EPROTO,
            Errno::ENOPROTOOPT,
            Errno::ENETDOWN,
            Errno::ENONET,
            Errno::EHOSTDOWN,
            Errno::EHOSTUNREACH,
            Errno::ENETUNREACH,
            Errno::EOPNOTSUPP,
            Errno::EPERM,
        ] {
            assert_eq!(of(e), AfterFailedAccept::Retry, "{e}");
        }
        for e in [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::ENOMEM,
            Errno::EBADF,
            Errno::EINVAL,
        ] {
            assert_eq!(of(e), AfterFailedAccept::Rest, "{e}");
        }
        assert_eq!(
            after_failed_accept(&std::io::Error::other("no errno")),
            AfterFailedAccept::Rest
        );
    }

    /// A failing listener is paused for 100 ms after each failure and logged once per 10 s, with
    /// the count of the failures in between.
    #[test]
    fn a_failing_accept_pauses_the_listener_and_logs_rarely() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        assert!(!b.paused(t0));
        assert_eq!(b.failed(t0), Some(0));
        assert!(b.paused(t0 + PAUSE / 2));
        assert_eq!(b.resumes_at(t0), Some(t0 + PAUSE));
        assert!(!b.paused(t0 + PAUSE));
        assert_eq!(b.resumes_at(t0 + PAUSE), None);
        let mut t = t0;
        for _ in 0..50 {
            t += PAUSE;
            assert_eq!(b.failed(t), None, "logged again within {WARN_EVERY:?}");
            assert!(b.paused(t));
        }
        assert_eq!(b.failed(t0 + WARN_EVERY), Some(50));
        assert_eq!(b.failed(t0 + WARN_EVERY + PAUSE), None);
    }
}
