//! Dynamic-worker figures (issue 14): `dynlaunch`, a worker's request to the launched worker's
//! entry running, with two floors from the same run; and `dyncycle1000`, a thousand launch and
//! wait cycles from one launcher, with what the supervisor and the launcher hold before and after.
//!
//! Runs in: the benchmark process. The timed loops run in testkit workers (`testkit_dynbench`,
//! see `plugins/testkit/src/dynbench.rs`), which log their figures; the floors run in processes
//! this one forks, every one of them reaped before the function returns.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use steward_tests::*;

use crate::common::*;

/// Microseconds between launches, as testkit's default: long enough for an exec-mode spare to be
/// ready again, which is the case the exec target is about.
const PACE_US: u64 = 10_000;

/// `dynlaunch`: `samples` launches from a worker, each timed from the launcher's
/// `CLOCK_MONOTONIC` stamp just before `Worker::launch` (passed to the new worker in its `arg`)
/// to the clock read first thing in the new worker's entry. Returns (median, p99) in ms.
pub fn dynlaunch(mode: Mode, samples: usize) -> (f64, f64) {
    let h = Host::start(
        Spec::new(mode)
            .testkit(&format!(
                "dl:entry=testkit_dynbench:never:launch={samples}:pace={PACE_US}"
            ))
            .setting("testkit", "dynbench = true")
            .host("max_worker_processes = 2"),
    );
    let timeout = Duration::from_secs(30 + samples as u64 / 10);
    let log = h.wait_log("dynlaunch n=", timeout);
    let line = log.lines().find(|l| l.contains("dynlaunch n=")).unwrap_or_default();
    let num = |key: &str| -> f64 {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let r = (num("median_us=") / 1e3, num("p99_us=") / 1e3);
    stop_fast(h);
    r
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: FUTEX_WAIT/FUTEX_WAKE on a valid, aligned word of a shared mapping; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// Floor of `dynlaunch` for a hand-off: a process forked beforehand sleeps in `FUTEX_WAIT`; this
/// one stamps the clock, stores the new round and wakes it; the sleeper reads the clock first
/// thing. Paced as `dynlaunch`'s launches (at most 2 ms apart, so the floor stays short).
/// Returns the median in ms.
pub fn handoff_floor(samples: usize) -> f64 {
    // Word 0: the round (futex); word 1: the stamp (u64 at index 1); results from index 2.
    let page = SharedWords::new(samples + 2);
    // SAFETY: the child only uses atomics, futex, clock_gettime and _exit, then exits without
    // returning.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        for i in 0..samples {
            let round = i as u32 + 1;
            while page.u32(0).load(Ordering::Acquire) < round {
                futex(page.u32(0), libc::FUTEX_WAIT, round - 1);
            }
            let now = now_ns();
            page.u64(2 + i)
                .store(now.saturating_sub(page.u64(1).load(Ordering::SeqCst)), Ordering::SeqCst);
        }
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(0) };
    }
    for i in 0..samples {
        std::thread::sleep(Duration::from_micros(PACE_US.min(2000)));
        page.u64(1).store(now_ns(), Ordering::SeqCst);
        page.u32(0).store(i as u32 + 1, Ordering::Release);
        futex(page.u32(0), libc::FUTEX_WAKE, 1);
        while page.u64(2 + i).load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
    }
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    let mut v: Vec<f64> = (0..samples)
        .map(|i| page.u64(2 + i).load(Ordering::SeqCst) as f64 / 1e6)
        .collect();
    median(&mut v)
}

/// Floor of `dynlaunch` in fork mode: this process stamps the clock and calls `fork`; the child
/// reads the clock first thing, stores the difference and exits; this one reaps it. Returns the
/// median in ms. This process is smaller than the supervisor, so its fork is cheaper.
pub fn fork_floor(samples: usize) -> f64 {
    let page = SharedWords::new(samples);
    for i in 0..samples {
        std::thread::sleep(Duration::from_micros(PACE_US.min(2000)));
        let t0 = now_ns();
        // SAFETY: the child only reads the clock, stores to the shared page and calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            page.u64(i).store(now_ns().saturating_sub(t0).max(1), Ordering::SeqCst);
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let mut v: Vec<f64> = (0..samples)
        .map(|i| page.u64(i).load(Ordering::SeqCst) as f64 / 1e6)
        .collect();
    median(&mut v)
}

/// What `dyncycle` saw: the supervisor's and the launcher's holdings before and after the
/// cycles, the dynamic workers left in status, and the cycles' wall time.
pub struct Cycles {
    pub supervisor: (Holdings, Holdings),
    pub launcher: (Holdings, Holdings),
    pub left: usize,
    pub ms: f64,
}

impl Cycles {
    /// The figure's pass rule: no fd grew, no dynamic worker is left, and neither process's
    /// resident memory grew by 256 KiB or more.
    pub fn passes(&self) -> bool {
        let grew = |(a, b): (Holdings, Holdings)| b.fds > a.fds || b.rss_kib >= a.rss_kib + 256;
        !grew(self.supervisor) && !grew(self.launcher) && self.left == 0
    }
}

/// `dyncycle1000`: one launcher runs `n` cycles of launch, wait for startup, terminate, wait
/// for shutdown (after ten warm-up cycles); the holdings are read from `/proc` before the first
/// and after the last.
pub fn dyncycle(mode: Mode, n: usize) -> Cycles {
    let h = Host::start(
        Spec::new(mode)
            .testkit(&format!("dc:entry=testkit_dynbench:never:cycles={n}"))
            .setting("testkit", "dynbench = true")
            .host("max_worker_processes = 2"),
    );
    let timeout = Duration::from_secs(60 + n as u64 / 10);
    h.wait_log("dyncycle warm", timeout);
    let s = h.status();
    let (sup, launcher) = (s.host.pid as i32, find(&s, "dc").pid.expect("the launcher runs"));
    let settle = Duration::from_secs(5);
    let before = (Holdings::settled(sup, settle), Holdings::settled(launcher, settle));
    h.trigger("dc", "go");
    let log = h.wait_log(&format!("dyncycle done {n} in "), timeout);
    let ms = log
        .lines()
        .find_map(|l| l.split(&format!("dyncycle done {n} in ")).nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    // The launcher saw the last worker stopped through its handle, which the supervisor
    // publishes in the turn that frees the slot: nothing may be left by now.
    let left = h.status().workers.iter().filter(|w| w.name.starts_with("dc-")).count();
    let after = (Holdings::settled(sup, settle), Holdings::settled(launcher, settle));
    stop_fast(h);
    Cycles {
        supervisor: (before.0, after.0),
        launcher: (before.1, after.1),
        left,
        ms,
    }
}
