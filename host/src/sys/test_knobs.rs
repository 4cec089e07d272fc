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
    // review: notifications
    let ms = std::env::var(TEST_PUBLISH_RUNNING_DELAY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .min(10_000);
    PUBLISH_RUNNING_DELAY_MS.store(ms, Ordering::Relaxed);
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

// review: notifications
/// The test-only environment variable that makes the supervisor wait, before it publishes that a
/// dynamic worker runs, so the worker's entry has run first: the order in which a launcher must
/// still be told of the start (see [`test_publish_running_delay`]).
pub const TEST_PUBLISH_RUNNING_DELAY_ENV: &str = "STEWARD_TEST_PUBLISH_RUNNING_DELAY_MS";

/// Milliseconds read from [`TEST_PUBLISH_RUNNING_DELAY_ENV`] by [`load_test_knobs`]; 0 when unset.
static PUBLISH_RUNNING_DELAY_MS: AtomicU32 = AtomicU32::new(0);

/// Test-only: waits the configured delay in the supervisor before it publishes a dynamic
/// worker's `running`.
pub fn test_publish_running_delay() {
    let ms = PUBLISH_RUNNING_DELAY_MS.load(Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }
}

// issue 14: queue
/// The test-only environment variable that makes worker launches fail before the fork, the
/// spawn or the spare hand-off: `ERRNO[:COUNT[:AFTER]]` fails COUNT launches (default: every
/// one) with ERRNO (`EAGAIN`, `ENOMEM`, `EMFILE`, `ENFILE` or a number), after letting the first
/// AFTER launches (default 0) through. Read by the supervisor only, which does every launch.
pub const TEST_LAUNCH_FAIL_ENV: &str = "STEWARD_TEST_LAUNCH_FAIL";

/// The errno the knob injects (0: off).
static LAUNCH_FAIL_ERRNO: AtomicU32 = AtomicU32::new(0);
/// Launches still to fail.
static LAUNCH_FAIL_LEFT: AtomicU32 = AtomicU32::new(0);
/// Launches still to let through before failing any.
static LAUNCH_FAIL_AFTER: AtomicU32 = AtomicU32::new(0);

/// Parses [`TEST_LAUNCH_FAIL_ENV`]'s value: `(errno, count, after)`, or why not.
pub fn parse_launch_fail(v: &str) -> Result<(i32, u32, u32), String> {
    let mut parts = v.trim().split(':');
    let errno = match parts.next().unwrap_or_default() {
        "EAGAIN" => libc::EAGAIN,
        "ENOMEM" => libc::ENOMEM,
        "EMFILE" => libc::EMFILE,
        "ENFILE" => libc::ENFILE,
        n => n
            .parse::<i32>()
            .ok()
            .filter(|e| (1..4096).contains(e))
            .ok_or_else(|| format!("{n:?} is not EAGAIN, ENOMEM, EMFILE, ENFILE or an errno from 1 to 4095"))?,
    };
    let mut number = |what: &str, default: u32| match parts.next() {
        None => Ok(default),
        Some(n) => n.parse::<u32>().map_err(|_| format!("{what} {n:?} is not a number")),
    };
    let count = number("count", u32::MAX)?;
    let after = number("after", 0)?;
    if parts.next().is_some() {
        return Err("more than ERRNO:COUNT:AFTER".into());
    }
    Ok((errno, count, after))
}

/// Reads [`TEST_LAUNCH_FAIL_ENV`] (the supervisor, once, before its first launch). Returns what
/// was set, for the supervisor to warn about, or why the value is refused.
pub fn load_launch_fail() -> Option<Result<(i32, u32, u32), String>> {
    let v = std::env::var(TEST_LAUNCH_FAIL_ENV).ok()?;
    let parsed = parse_launch_fail(&v);
    if let Ok((errno, count, after)) = parsed {
        LAUNCH_FAIL_ERRNO.store(errno as u32, Ordering::Relaxed);
        LAUNCH_FAIL_LEFT.store(count, Ordering::Relaxed);
        LAUNCH_FAIL_AFTER.store(after, Ordering::Relaxed);
    }
    Some(parsed)
}

/// Test-only: the error the next worker launch fails with, if the knob says so (counts it).
pub fn test_launch_failure() -> Option<std::io::Error> {
    let errno = LAUNCH_FAIL_ERRNO.load(Ordering::Relaxed);
    if errno == 0 {
        return None;
    }
    // Only the supervisor's thread launches: plain loads and stores are enough.
    let after = LAUNCH_FAIL_AFTER.load(Ordering::Relaxed);
    if after > 0 {
        LAUNCH_FAIL_AFTER.store(after - 1, Ordering::Relaxed);
        return None;
    }
    let left = LAUNCH_FAIL_LEFT.load(Ordering::Relaxed);
    if left == 0 {
        return None;
    }
    if left != u32::MAX {
        LAUNCH_FAIL_LEFT.store(left - 1, Ordering::Relaxed);
    }
    Some(std::io::Error::from_raw_os_error(errno as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launch_failure_knob_parses_names_numbers_counts_and_refuses_the_rest() {
        assert_eq!(parse_launch_fail("EAGAIN"), Ok((libc::EAGAIN, u32::MAX, 0)));
        assert_eq!(parse_launch_fail("ENOMEM:1"), Ok((libc::ENOMEM, 1, 0)));
        assert_eq!(parse_launch_fail("11:2:3"), Ok((11, 2, 3)));
        for bad in ["", "EWHAT", "0", "11:x", "11:1:y", "11:1:1:1"] {
            assert!(parse_launch_fail(bad).is_err(), "{bad:?}");
        }
    }
}
