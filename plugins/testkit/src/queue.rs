//! Dynamic-worker slots, the queue and launch failures (issue 14: queue): entries that fill the
//! dynamic slots, wait in the host's queue, and see an injected launch failure.
//!
//! Runs in: the testkit worker processes that run these entries.
//!
//! - `testkit_queuer` (`entry=testkit_queuer`): launches `dynamic` workers `dyn-K` (restart
//!   `never`) and waits for each to start, logs `filled N`; launches one more without a queue
//!   three times and logs the quickest refusal, `refused in US us (best of 3): ERROR`; then launches `dyn-queued` with a 10 s queue timeout
//!   while a thread of its own waits for the trigger `terminate` and then terminates `dyn-0`
//!   through its handle (logs `terminated dyn-0 at NS`, CLOCK_MONOTONIC); logs `queued launch
//!   ok at NS` (or `queued launch failed: ERROR`); then launches `dyn-expire` with a 300 ms queue
//!   timeout and logs `expired in US us: ERROR`; then launches `dyn-cancel` with a 30 s queue
//!   timeout, logs `waiting in the queue` first, and `cancelled: ERROR` when a SIGTERM cancels it.
//! - `testkit_filler` (`entry=testkit_filler`): launches `fill-K` workers until one is refused,
//!   logs `filled K: ERROR`, then waits until stopped.
//! - `testkit_failer` (`entry=testkit_failer`): `dynamic` times, launches `dyn-fail-K` and waits
//!   for its start; logs the quickest, `launch failed errno=E in US us (best of N): REASON` (the
//!   wait as the launcher measured it); then launches `dyn-ok` and logs `next launch running in
//!   slot S`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use steward::{BackgroundWorker, EntryPoint, RestartPolicy, WaitResult, Worker, WorkerError, WorkerStatus};

use super::{fatal, monotonic_ns, POLL};

fn child(name: String) -> BackgroundWorker {
    BackgroundWorker::new(name, EntryPoint::new("testkit", "testkit_dyn_child")).restart(RestartPolicy::never())
}

fn wait_until_stopped(w: &mut Worker) {
    while !matches!(
        w.wait(Duration::from_secs(60)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
}

fn testkit_queuer(w: &mut Worker) -> Result<(), WorkerError> {
    let n: i64 = w.setting("dynamic").map_err(fatal)?;
    let trigger_dir: String = w.setting("trigger_dir").map_err(fatal)?;
    let trigger = PathBuf::from(trigger_dir).join(w.name());
    let t = Duration::from_secs(10);
    let mut handles = Vec::new();
    for i in 0..n {
        let h = w.launch(child(format!("dyn-{i}"))).map_err(fatal)?;
        match h.wait_for_startup(t).map_err(fatal)? {
            WorkerStatus::Running { .. } => handles.push(h),
            other => return Err(fatal(format!("dyn-{i} did not start: {other:?}"))),
        }
    }
    tracing::info!("filled {n}");
    // The best of three: the refusal's own cost, not a moment the machine was busy elsewhere.
    let mut best: Option<(u128, String)> = None;
    for _ in 0..3 {
        let asked = Instant::now();
        match w.launch(child("dyn-refused".into())) {
            Ok(h) => tracing::error!("launched one too many: {h:?}"),
            Err(e) => {
                let us = asked.elapsed().as_micros();
                if best.as_ref().is_none_or(|(b, _)| us < *b) {
                    best = Some((us, e.to_string()));
                }
            }
        }
    }
    if let Some((us, e)) = best {
        tracing::info!("refused in {us} us (best of 3): {e}");
    }
    // The terminate comes from another thread while this one waits in the queue.
    let first = *handles.first().ok_or_else(|| fatal("dynamic = 0"))?;
    let terminator = std::thread::spawn(move || {
        while !trigger.exists() {
            std::thread::sleep(POLL);
        }
        match first.terminate() {
            Ok(()) => tracing::info!("terminated dyn-0 at {}", monotonic_ns()),
            Err(e) => tracing::error!("terminate dyn-0: {e}"),
        }
    });
    match w.launch(child("dyn-queued".into()).queue_timeout(t)) {
        Ok(_) => tracing::info!("queued launch ok at {}", monotonic_ns()),
        Err(e) => tracing::error!("queued launch failed: {e}"),
    }
    let _ = terminator.join();
    let asked = Instant::now();
    match w.launch(child("dyn-expire".into()).queue_timeout(Duration::from_millis(300))) {
        Ok(h) => tracing::error!("a full host launched {h:?}"),
        Err(e) => tracing::info!("expired in {} us: {e}", asked.elapsed().as_micros()),
    }
    tracing::info!("waiting in the queue");
    match w.launch(child("dyn-cancel".into()).queue_timeout(Duration::from_secs(30))) {
        Ok(h) => tracing::error!("a full host launched {h:?}"),
        Err(e) => tracing::info!("cancelled: {e}"),
    }
    wait_until_stopped(w);
    Ok(())
}
steward::worker_entry!(testkit_queuer);

fn testkit_filler(w: &mut Worker) -> Result<(), WorkerError> {
    let mut k = 0;
    let refusal = loop {
        match w.launch(child(format!("fill-{k}"))) {
            Ok(_) => k += 1,
            Err(e) => break e,
        }
        if k > 1000 {
            return Err(fatal("never refused"));
        }
    };
    tracing::info!("filled {k}: {refusal}");
    wait_until_stopped(w);
    Ok(())
}
steward::worker_entry!(testkit_filler);

fn testkit_failer(w: &mut Worker) -> Result<(), WorkerError> {
    let t = Duration::from_secs(10);
    let tries: i64 = w.setting("dynamic").map_err(fatal)?;
    // The best of `dynamic` tries (each launch fails, by the knob): the answer's own latency, not
    // a moment the machine was busy elsewhere.
    let mut best: Option<(u128, i32, String)> = None;
    for k in 0..tries.max(1) {
        let asked = Instant::now();
        let failed = w.launch(child(format!("dyn-fail-{k}"))).map_err(fatal)?;
        match failed.wait_for_startup(t).map_err(fatal)? {
            WorkerStatus::Stopped { reason, errno, .. } => {
                let us = asked.elapsed().as_micros();
                if best.as_ref().is_none_or(|(b, _, _)| us < *b) {
                    best = Some((us, errno.unwrap_or(0), reason));
                }
            }
            other => tracing::error!("dyn-fail-{k}: {other:?}"),
        }
    }
    if let Some((us, errno, reason)) = best {
        tracing::info!("launch failed errno={errno} in {us} us (best of {tries}): {reason}");
    }
    let ok = w.launch(child("dyn-ok".into())).map_err(fatal)?;
    match ok.wait_for_startup(t).map_err(fatal)? {
        WorkerStatus::Running { .. } => tracing::info!("next launch running in slot {}", ok.slot()),
        other => tracing::error!("dyn-ok: {other:?}"),
    }
    wait_until_stopped(w);
    Ok(())
}
steward::worker_entry!(testkit_failer);
