//! Dynamic-worker benchmarks and the no-growth check (issue 14: benchmarks).
//!
//! Runs in: testkit worker processes. `testkit_dynbench` (`entry=testkit_dynbench`) is a
//! launcher; `testkit_dyn_stamp` is the dynamic worker it launches. They share the region
//! `testkit_dynbench` (requested when the setting `dynbench` is true): word 0 is the latest
//! launch's latency in nanoseconds, written by the launched worker, 0 until it ran.
//!
//! Options of `testkit_dynbench` (in its worker spec, after the entry):
//! - `launch=N`: N times, stamps `CLOCK_MONOTONIC` into the launched worker's `arg`, launches,
//!   and waits until the worker wrote its latency (the time from that stamp to the first line of
//!   its entry), then terminates it and waits for its shutdown; lets `pace=US` microseconds pass
//!   between launches (default 10 ms, so an exec-mode spare is ready again). Logs one line
//!   `dynlaunch n=N median_us=M p99_us=P max_us=X` (fractional microseconds).
//! - `cycles=N`: runs 10 warm-up cycles (launch, wait for startup, terminate, wait for
//!   shutdown), logs `dyncycle warm`, waits for its trigger file to say `go`, runs N cycles, and
//!   logs `dyncycle done N in MS ms`. Whoever watches the host reads the processes' fds and
//!   memory before the trigger and after the line.
//!
//! Either way the launcher then waits until it is told to stop. Any launch or handle error ends
//! it with the error, named.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward::{
    BackgroundWorker, EntryPoint, InitError, Registrar, RestartPolicy, WaitResult, Worker, WorkerError, WorkerHandle,
    WorkerStatus,
};

use crate::{fatal, monotonic_ns};

const REGION: &str = "testkit_dynbench";
/// How long any one step may take before the benchmark gives up, naming the step.
const STEP: Duration = Duration::from_secs(10);
const WARM_UP: usize = 10;

/// Init: the setting and, when it is on, the region.
pub fn request(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    let on = reg.define_bool(
        "dynbench",
        false,
        "request the region of the dynamic-worker benchmarks (testkit_dynbench)",
    )?;
    if on {
        reg.request_region(REGION, 64)?;
    }
    Ok(())
}

fn stamp_word(w: &Worker) -> Result<&'static AtomicU64, WorkerError> {
    w.region(REGION).map_err(fatal)?.get::<AtomicU64>().map_err(fatal)
}

fn dyn_worker(name: String, arg: u64) -> BackgroundWorker {
    BackgroundWorker::new(name, EntryPoint::new("testkit", "testkit_dyn_stamp"))
        .restart(RestartPolicy::never())
        .arg(arg)
}

fn started(h: WorkerHandle, what: &str) -> Result<(), WorkerError> {
    match h
        .wait_for_startup(STEP)
        .map_err(|e| fatal(format!("{what}: wait_for_startup: {e}")))?
    {
        WorkerStatus::Running { .. } => Ok(()),
        other => Err(fatal(format!("{what} did not start: {other:?}"))),
    }
}

fn stopped(h: WorkerHandle, what: &str) -> Result<(), WorkerError> {
    h.terminate().map_err(|e| fatal(format!("{what}: terminate: {e}")))?;
    match h
        .wait_for_shutdown(STEP)
        .map_err(|e| fatal(format!("{what}: wait_for_shutdown: {e}")))?
    {
        WorkerStatus::Stopped { .. } => Ok(()),
        other => Err(fatal(format!("{what} did not stop: {other:?}"))),
    }
}

/// One full cycle: launch, wait for startup, terminate, wait for shutdown.
fn cycle(w: &Worker, i: usize) -> Result<(), WorkerError> {
    let what = format!("dc-{i}");
    let h = w
        .launch(dyn_worker(what.clone(), 0))
        .map_err(|e| fatal(format!("{what}: launch: {e}")))?;
    started(h, &what)?;
    stopped(h, &what)
}

fn opt(extra: &str, key: &str) -> Option<u64> {
    extra
        .split(':')
        .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
}

fn idle(w: &Worker) {
    while !matches!(
        w.wait(Duration::from_secs(3600)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
}

fn testkit_dynbench(w: &mut Worker) -> Result<(), WorkerError> {
    let extra = String::from_utf8_lossy(w.extra()).into_owned();
    if let Some(n) = opt(&extra, "launch") {
        let pace = Duration::from_micros(opt(&extra, "pace").unwrap_or(10_000));
        let word = stamp_word(w)?;
        let mut us = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            // The whole pace: the launcher's latch is set when a worker it launched starts or
            // stops, which ends a `wait` early.
            let until = Instant::now() + pace;
            while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                if w.wait(left).should_stop() {
                    return Ok(());
                }
            }
            let what = format!("dl-{i}");
            word.store(0, Ordering::SeqCst);
            let t0 = monotonic_ns();
            let h = w
                .launch(dyn_worker(what.clone(), t0))
                .map_err(|e| fatal(format!("{what}: launch: {e}")))?;
            started(h, &what)?;
            // The worker writes its figure first thing, but "running" can be seen just before.
            // Sleep, never spin: a launcher spinning on the worker's CPU would hold the worker
            // off until the scheduler preempts it, and that wait would count as launch time.
            let deadline = Instant::now() + STEP;
            let ns = loop {
                match word.load(Ordering::SeqCst) {
                    0 if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(20)),
                    0 => return Err(fatal(format!("{what} never wrote its stamp"))),
                    ns => break ns,
                }
            };
            us.push(ns as f64 / 1e3);
            stopped(h, &what)?;
        }
        us.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| us[((us.len() as f64 - 1.0) * p).round() as usize];
        tracing::info!(
            "dynlaunch n={} median_us={:.1} p99_us={:.1} max_us={:.1}",
            us.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    } else if let Some(n) = opt(&extra, "cycles") {
        for i in 0..WARM_UP {
            cycle(w, i)?;
        }
        tracing::info!("dyncycle warm");
        let dir: String = w.setting("trigger_dir").map_err(fatal)?;
        let trigger = PathBuf::from(dir).join(w.name());
        loop {
            if w.wait(Duration::from_millis(5)).should_stop() {
                return Ok(());
            }
            if std::fs::read_to_string(&trigger).is_ok_and(|t| t.trim() == "go") {
                let _ = std::fs::remove_file(&trigger);
                break;
            }
        }
        let t = Instant::now();
        for i in 0..n as usize {
            cycle(w, WARM_UP + i)?;
        }
        tracing::info!("dyncycle done {n} in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    } else {
        return Err(fatal("testkit_dynbench needs launch=N or cycles=N"));
    }
    idle(w);
    Ok(())
}
steward::worker_entry!(testkit_dynbench);

/// The launched worker: reads the clock first thing, and when its `arg` holds a launcher's stamp,
/// writes the difference to word 0; then waits until it is told to stop.
fn testkit_dyn_stamp(w: &mut Worker) -> Result<(), WorkerError> {
    let now = monotonic_ns();
    if w.arg() != 0 {
        stamp_word(w)?.store(now.saturating_sub(w.arg()).max(1), Ordering::SeqCst);
    }
    idle(w);
    Ok(())
}
steward::worker_entry!(testkit_dyn_stamp);
