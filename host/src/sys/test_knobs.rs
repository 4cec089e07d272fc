//! Test-only knobs read from the environment once per process (`getenv`), and the delay one of
//! them puts into a new worker (`nanosleep`, through `std::thread::sleep`). Zero and inert unless a
//! test sets the variable.
//!
//! Runs in: the supervisor (reads the knobs before its first fork), exec-mode children (read them
//! at their start) and new workers (the delay).

use std::sync::atomic::{AtomicU32, Ordering};

/// The test-only environment variable that delays every new worker process just before it installs
/// its own signal handlers, while its signals are still blocked (see [`test_child_signal_delay`]).
pub const TEST_CHILD_SIGNAL_DELAY_ENV: &str = "STEWARD_TEST_CHILD_SIGNAL_DELAY_MS";

/// Milliseconds read from [`TEST_CHILD_SIGNAL_DELAY_ENV`] by [`load_test_knobs`]; 0 when unset.
static CHILD_SIGNAL_DELAY_MS: AtomicU32 = AtomicU32::new(0);

/// Reads the test-only knobs from the environment, once per process (the supervisor before its
/// first fork, an exec-mode child at its start), so that no launch pays for reading them.
/// Values above 10 s are capped: a typo must not hold every child for hours.
pub fn load_test_knobs() {
    let ms = std::env::var(TEST_CHILD_SIGNAL_DELAY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .min(10_000);
    CHILD_SIGNAL_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// Test-only: waits the configured delay in a new worker process at the point where a signal used to be
/// lost (after the fork or exec, before the child's own handlers are installed). A test sends
/// signals then and checks that each is handled once the handlers are in place.
pub fn test_child_signal_delay() {
    let ms = CHILD_SIGNAL_DELAY_MS.load(Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }
}
