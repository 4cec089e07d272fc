//! Lifecycle figures: start, the control round trip, restarts, launch latency, crash recovery,
//! fast shutdown, and the CPU time of a start and stop of 1000 workers.
//!
//! Runs in: the benchmark process, which starts real hosts and reads their logs and status.

use std::time::{Duration, Instant};

use steward_tests::*;

use crate::common::*;

/// `steward run` started to `n` worker entries running (each logs "up" on entry).
pub fn start_to_running(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let spec = workers_spec(mode, n);
        let t0 = Instant::now();
        let h = Host::spawn(spec);
        let t1 = wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        v.push((t1 - t0).as_secs_f64() * 1e3);
        // The next run must not start while the kernel still tears this host's processes down:
        // a fast shutdown returns once the supervisor has reaped every one of them.
        stop_fast(h);
    }
    median(&mut v)
}

/// Connect, `status`, full answer, measured in this client.
pub fn control_round_trip(mode: Mode, n: usize) -> (f64, f64) {
    let h = Host::start(Spec::new(mode).plugin("hello").host("max_connections = 256"));
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let t0 = Instant::now();
        let ok = Client::connect(&h.socket()).and_then(|mut c| c.status()).is_ok();
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if ok {
            v.push(dt);
        }
    }
    (median(&mut v), pct(&mut v, 0.99))
}

/// A worker that exits 1 as soon as it starts, with a zero restart delay: the time per cycle
/// (exit, reap, relaunch, entry running, exit) bounds "exit 1 to replacement running" from above.
pub fn restart_cycle(mode: Mode, window: Duration) -> f64 {
    let h = Host::start(
        Spec::new(mode)
            .testkit("cyc:exit_at_start=1")
            .setting("testkit", "restart_delay = \"0ms\"")
            .host("log_level = \"error\""),
    );
    let r0 = h.worker("cyc").restarts;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let r1 = h.worker("cyc").restarts;
    let dt = t0.elapsed();
    dt.as_secs_f64() * 1e3 / (r1 - r0).max(1) as f64
}

/// The supervisor's decision to launch to the worker's entry running (`launch_us` in status),
/// over many restarts of one worker that exits 1 at once and is restarted after 5 ms, so that
/// the machine is not saturated by the measurement itself.
pub fn launch_latency(mode: Mode, samples: usize) -> (f64, f64) {
    let h = Host::start(
        Spec::new(mode)
            .testkit("l0:exit_at_start=1")
            .setting("testkit", "restart_delay = \"5ms\"")
            .host("log_level = \"error\""),
    );
    // One sample per (worker, restart count): the latency of the launch that count refers to.
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < samples && Instant::now() < deadline {
        for w in h.status().workers {
            if let Some(us) = w.launch_us {
                seen.insert((w.name.clone(), w.restarts), us as f64 / 1e3);
            }
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(seen.len() >= samples / 4, "only {} launch samples in 60 s", seen.len());
    let mut v: Vec<f64> = seen.into_values().collect();
    (median(&mut v), pct(&mut v, 0.99))
}

/// One worker of 50 crashes (SIGSEGV sent at t0) to all 50 entries running again (each logs
/// "up" on entry, so the count of "up" lines reaches 100).
pub fn crash_recovery(mode: Mode, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let h = Host::start(workers_spec(mode, 50).setting("testkit", "restart_delay = \"0ms\""));
        let mut ups = LogWatch::new(&h, "testkit: up");
        ups.wait_for(50, Duration::from_secs(30), &h);
        let victim = h.worker("w17").pid.expect("running");
        let t0 = Instant::now();
        // SAFETY: signalling a worker of the host this benchmark started.
        unsafe { libc::kill(victim, libc::SIGSEGV) };
        let t1 = ups.wait_for(100, Duration::from_secs(30), &h);
        v.push((t1 - t0).as_secs_f64() * 1e3);
        stop_fast(h);
    }
    median(&mut v)
}

/// Fast shutdown (SIGINT at t0) with `n` workers running, to the host's exit.
pub fn fast_shutdown(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let mut h = Host::spawn(workers_spec(mode, n));
        wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        let mut child = h.child.take().expect("host process");
        let t0 = Instant::now();
        h.signal(libc::SIGINT);
        let st = child.wait().expect("wait for the host");
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(st.success(), "fast shutdown exit status {st}");
    }
    median(&mut v)
}

/// CPU time of this process's waited-for descendants so far, in ms.
pub fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// The CPU time (user and system, every process of the host: supervisor, fork helpers, workers)
/// of a start of `n` workers to all running followed by a fast shutdown. Unlike wall-clock
/// figures this hardly depends on what else the machine does, so it shows a change in the work
/// Steward asks of the kernel even when the machine's speed drifts.
pub fn start_stop_cpu(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let before = children_cpu_ms();
        let h = Host::spawn(workers_spec(mode, n));
        wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        stop_fast(h);
        v.push(children_cpu_ms() - before);
    }
    median(&mut v)
}
