//! The loop's side of the dynamic-worker queue (issue 14: queue): answering a request, and
//! stopping a worker whose requester gave up in the instant it was adopted; the test-only
//! launch-failure knob.
//!
//! Runs in: the supervisor. The decisions are the core's (`core/queue.rs`); this carries them
//! out against the segment.

use super::core::{Actions, Event, WorkerKey};
use super::{now, Supervisor};
use crate::shared::handles::Answer;

impl Supervisor {
    /// Answers request `seq` in the request slot of worker slot `to`. An `Adopted` answer the
    /// requester no longer waits for (it cancelled at its deadline in that instant, or asked
    /// again) leaves a worker nobody holds a handle to: the core stops it before it runs.
    pub(super) fn answer(&mut self, to: u32, seq: u32, answer: &Answer, out: &mut Actions) {
        let delivered = crate::shared::handles::answer(self.segment.request_slot(to), seq, answer);
        if let (false, Answer::Adopted { slot, generation }) = (delivered, answer) {
            let key = WorkerKey {
                slot: *slot,
                generation: *generation,
            };
            self.core.handle(Event::RequestCancelled { key }, now(), out);
        }
    }

    /// Publishes how many requests wait in the queue, for status.
    pub(super) fn publish_queued(&self) {
        self.segment
            .header()
            .dyn_queued
            .store(self.core.queued() as u32, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads the test-only launch-failure knob (before the first launch) and says loudly that it is
/// set: it makes worker launches fail on purpose.
pub(super) fn load_launch_fail_knob() {
    match crate::sys::load_launch_fail() {
        Some(Ok((errno, count, after))) => tracing::warn!(
            "{} is set (a test-only knob, never for production): {} worker launches after the first {after} fail with {}",
            crate::sys::TEST_LAUNCH_FAIL_ENV,
            if count == u32::MAX {
                "all".to_owned()
            } else {
                count.to_string()
            },
            std::io::Error::from_raw_os_error(errno)
        ),
        Some(Err(why)) => tracing::error!(
            "{} is ignored: {why} (expected ERRNO[:COUNT[:AFTER]])",
            crate::sys::TEST_LAUNCH_FAIL_ENV
        ),
        None => {}
    }
    // review: notifications
    if std::env::var_os(crate::sys::TEST_PUBLISH_RUNNING_DELAY_ENV).is_some() {
        tracing::warn!(
            "{} is set (a test-only knob, never for production): the supervisor waits before it publishes a dynamic worker's start",
            crate::sys::TEST_PUBLISH_RUNNING_DELAY_ENV
        );
    }
}
