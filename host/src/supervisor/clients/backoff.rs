//! What a listener does when `accept(2)` fails for want of a resource (`EMFILE`, `ENFILE`,
//! `ENOBUFS`, `ENOMEM`): the waiting client stays queued, so polling the listener again at once
//! would report it readable again and the loop would spin.
//!
//! Runs in: the supervisor, one [`AcceptBackoff`] per listener and one for the control socket.
//!
//! Invariants: after a failure the listener is left out of the poll set for [`PAUSE`] (the rest
//! of the loop goes on: the control socket, exits, launches, the other listeners), and the
//! failure is logged at most once per [`WARN_EVERY`] per listener, with the count of the ones not
//! logged since.

use std::time::{Duration, Instant};

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
