//! Runtime figures: the uncontended lock and the latch wake-up, each with its floor.
//!
//! Runs in: the benchmark process; the measured loops run in testkit workers, which log their
//! figures, and the latch floor in a process this one forks.

use std::time::Duration;

use steward_tests::*;

use crate::common::*;

/// One worker takes and releases a lock `n` times with nobody else around, then does the same with
/// a compare-and-swap and a release store on a word of the same shared region (the floor).
/// Returns (ns per pair, floor ns per pair).
pub fn lock_pair(mode: Mode, n: u32) -> (f64, f64) {
    let h = Host::start(
        Spec::new(mode)
            .testkit(&format!("lb:entry=testkit_locker:never:bench={n}"))
            .setting("testkit", "locks = \"on\""),
    );
    let log = h.wait_log("lock bench: ", Duration::from_secs(120));
    let line = log.lines().find(|l| l.contains("lock bench: ")).unwrap_or_default();
    let num = |after: &str| -> f64 {
        line.split(after)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let r = (num("lock bench: "), num("floor "));
    stop_fast(h);
    r
}

/// Latch set to wake across processes: testkit's ping-pong pair (`testkit_latch_setter` stamps
/// `CLOCK_MONOTONIC` and sets the sleeping `testkit_latch_waiter`'s latch, which measures when its
/// `wait` returned `Latch`), median of one batch of `samples`.
pub fn latch_wake(mode: Mode, samples: usize) -> f64 {
    let h = Host::start(
        Spec::new(mode)
            .testkit("pong:entry=testkit_latch_waiter,ping:entry=testkit_latch_setter")
            .setting("testkit", &format!("latch_batch = {samples}"))
            .setting("testkit", "trigger_dir = \"\""),
    );
    wait_log_count(&h, "latch batch 1 ", 1, Duration::from_secs(120));
    let log = h.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("latch batch 1 "))
        .expect("a batch line");
    let at = line.find("median_us=").expect("a median") + "median_us=".len();
    let median: f64 = line[at..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    stop_fast(h);
    median
}

/// The floor of `latch_wake`: a forked process asleep in `ppoll` on an eventfd, woken by a write
/// from this process, with the same pacing (500 us) and the same clock; median in microseconds.
pub fn latch_floor(samples: usize) -> f64 {
    use std::sync::atomic::Ordering;
    let page = SharedWords::new(samples + 1);
    let word = |i: usize| page.u64(i);
    // SAFETY: eventfd returns new fds or -1 (checked).
    let (a, b) = unsafe { (libc::eventfd(0, libc::EFD_CLOEXEC), libc::eventfd(0, libc::EFD_CLOEXEC)) };
    assert!(a >= 0 && b >= 0, "eventfd");
    let mut buf = 0u64;
    let one = 1u64;
    // SAFETY: the child only calls ppoll, read, write, clock_gettime and _exit on fds and memory
    // it inherited, then exits without returning.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        for i in 0..samples {
            let mut p = libc::pollfd {
                fd: a,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd and an empty mask on the stack.
            unsafe {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::ppoll(&mut p, 1, std::ptr::null(), &none);
                libc::read(a, (&mut buf as *mut u64).cast(), 8);
            }
            word(i + 1).store(
                now_ns().saturating_sub(word(0).load(Ordering::SeqCst)),
                Ordering::SeqCst,
            );
            // SAFETY: an 8-byte write from a local to our eventfd.
            unsafe { libc::write(b, (&one as *const u64).cast(), 8) };
        }
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(0) };
    }
    for _ in 0..samples {
        std::thread::sleep(Duration::from_micros(500));
        word(0).store(now_ns(), Ordering::SeqCst);
        let mut p = libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: 8-byte writes and reads from locals on our eventfds; one pollfd on the stack.
        unsafe {
            libc::write(a, (&one as *const u64).cast(), 8);
            libc::poll(&mut p, 1, 10_000);
            libc::read(b, (&mut buf as *mut u64).cast(), 8);
        }
    }
    let mut v: Vec<f64> = (1..=samples)
        .map(|i| word(i).load(Ordering::SeqCst) as f64 / 1e3)
        .collect();
    // SAFETY: reaping our child and closing our fds (the page is unmapped when it drops).
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(a);
        libc::close(b);
    }
    median(&mut v)
}
