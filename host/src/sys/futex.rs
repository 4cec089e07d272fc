//! Sleeping on a word in shared memory: `futex(2)` with `FUTEX_WAIT` and `FUTEX_WAKE` (shared,
//! not `FUTEX_PRIVATE_FLAG`).
//!
//! Runs in: spares (waiting for their hand-off), the supervisor (handing work to one), and
//! workers (waiting for a lock in the segment, waking its waiters).

use std::sync::atomic::AtomicU32;

use rustix::event::Timespec;
use rustix::thread::futex;

/// `futex(FUTEX_WAIT)` on a word in shared memory: sleeps while `*word == expected`, at most
/// `timeout` (`None`: until woken or interrupted by a signal). Spurious returns are fine; callers
/// re-check.
///
/// Not `FUTEX_PRIVATE_FLAG`: the word lives in the shared segment and another process (the
/// supervisor) wakes it; a private futex is keyed by this process's address space and would never
/// see that wake.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos() as _,
    });
    // EAGAIN (the word already changed), EINTR and ETIMEDOUT all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// `futex(FUTEX_WAKE)` on a shared word (see [`futex_wait`]): wakes one waiter. Never blocks.
pub fn futex_wake(word: &AtomicU32) {
    // Fails only for a bad address or flags; `word` is a live reference and the flags are fixed.
    let _ = futex::wake(word, futex::Flags::empty(), 1);
}

/// `futex(FUTEX_WAKE)` on a shared word, waking every waiter (a lock's release: each waiter
/// re-checks the lock word and goes back to sleep if it still cannot have it). Never blocks.
pub fn futex_wake_all(word: &AtomicU32) {
    // As in `futex_wake`: cannot fail for a live reference and fixed flags. The kernel reads the
    // count as a signed int, so `u32::MAX` would be -1 and wake one waiter only.
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pidfd::wait_pid_exit;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    #[test]
    fn futex_wait_returns_when_the_word_differs_or_the_timeout_passes() {
        let word = AtomicU32::new(1);
        let start = Instant::now();
        futex_wait(&word, 0, Some(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        let start = Instant::now();
        futex_wait(&word, 1, Some(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    /// The spare's wait: another process wakes the word in shared memory. A private futex is
    /// keyed by the waiter's address space, so this would hang until the test gives up on it.
    #[test]
    fn futex_wake_reaches_a_waiter_in_another_process() {
        const LEN: usize = 4096;
        // SAFETY: a fresh shared anonymous mapping, unmapped at the end of the test.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        // SAFETY: the mapping is page-aligned, zeroed and lives until the munmap below; both
        // words are only accessed atomically.
        let (word, ready) = unsafe { (&*(map as *const AtomicU32), &*(map as *const AtomicU32).add(1)) };
        // SAFETY: the child only reads and writes atomics, makes futex system calls (no
        // allocation, no lock) and ends with _exit, as a child of a threaded process must.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            ready.store(1, Ordering::SeqCst);
            while word.load(Ordering::SeqCst) == 0 {
                // Untimed, as a spare waits: only the wake can end this.
                futex_wait(word, 0, None);
            }
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(0) };
        }
        // Wake only once the child sleeps in its futex wait, so the wake is what ends it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let sleeping = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S')))
        };
        while !(ready.load(Ordering::SeqCst) == 1 && sleeping()) {
            assert!(Instant::now() < deadline, "the child never went to sleep");
            std::thread::yield_now();
        }
        word.store(1, Ordering::SeqCst);
        futex_wake(word);
        let exited = wait_pid_exit(pid, Duration::from_secs(10));
        if !matches!(exited, Ok(true)) {
            // SAFETY: this test's own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        // SAFETY: nothing refers to the mapping any more.
        unsafe { libc::munmap(map, LEN) };
        assert!(
            matches!(exited, Ok(true)),
            "the wake did not reach the other process: {exited:?}"
        );
    }
}
