//! `worker_spi`: PostgreSQL's sample background worker, ported to Steward as the plugin author
//! guide's worked example.
//!
//! Runs in: the supervisor (init), the startup child (the segment init hook) and the worker
//! processes: `total_workers` static workers `worker_spi N`, the `worker_spi launcher`, and the
//! short-lived dynamic worker `worker_spi dynamic` the launcher starts on request.
//!
//! What each part shows:
//!
//! - **init** defines the settings (`total_workers` restart-only, because init registers that
//!   many workers; `naptime` and `launch_every` reloadable), requests the region `worker_spi`
//!   and the lock `counters`, registers the segment init hook and the static workers.
//! - **the segment init hook** runs on every new segment (start-up and each crash reset) before
//!   any worker: it writes a start marker and the number of counters in use, so a worker that
//!   finds the marker knows the region was set up for this segment.
//! - **`worker_spi N`** wakes every `naptime`, adds one to `counters[N]` and to `total` under the
//!   exclusive lock `counters` (a two-word update nobody may see half done), and shows what it
//!   does with `set_activity`. Worker 0 also asks the launcher for a dynamic worker every
//!   `launch_every` rounds: it bumps a request counter in the region and sets the launcher's
//!   latch, whose handle the launcher published there.
//! - **the launcher** sleeps on its latch; for a request it launches `worker_spi dynamic`, waits
//!   for it to start, lets it run for a naptime, terminates it and waits for it to stop, logging
//!   each step. It keeps the dynamic worker's handle in the region, so a restarted launcher can
//!   stop a dynamic worker its predecessor left running.
//! - **`worker_spi dynamic`** reads the counters under the lock taken shared and checks that
//!   they add up to `total`.
//!
//! Invariants: `total` equals the sum of `counters[..workers]` whenever nobody holds `counters`
//! exclusively; only worker N writes `counters[N]`; only the launcher writes `served`, the kept
//! handle and `launcher`. Everything in the region is zero again after a crash reset, until the
//! segment init hook runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward::{
    entry, BackgroundWorker, HandleError, InitError, LatchHandle, Registrar, RestartPolicy, SegmentInit, WaitResult,
    Worker, WorkerError, WorkerHandle, WorkerStatus,
};

steward::plugin! { name: "worker_spi", init: init }

/// The most static workers `total_workers` may ask for (the size of the counter array).
const MAX_WORKERS: usize = 32;
/// The region all workers share, and the lock that guards its counters.
const REGION: &str = "worker_spi";
const LOCK: &str = "counters";
/// The dynamic worker's name and type (a host-wide unique name: the launcher runs one at a time).
const DYNAMIC: &str = "worker_spi dynamic";
/// What the segment init hook writes into `marker`.
const SEGMENT_MARKER: u64 = 0x5350_495f_494e_4954; // "SPI_INIT"
/// How long the launcher waits for its dynamic worker to start or to stop before giving up on
/// it: a bound on a failure, never reached in normal operation.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest nap: a `naptime` of zero would make the workers spin.
const MIN_NAPTIME: Duration = Duration::from_millis(1);

steward::shareable! {
    /// The region `worker_spi`: the same bytes in every process of the host, zeroed on each new
    /// segment. Plain atomics only, so any process may read it at any time; the multi-word
    /// update of the counters is made under the lock `counters`.
    #[repr(C)]
    struct Shared {
        /// `SEGMENT_MARKER` once the segment init hook ran on this segment.
        marker: AtomicU64,
        /// How many counters are in use: `total_workers` when the segment was set up.
        workers: AtomicU64,
        /// The sum of every counter (under `counters`).
        total: AtomicU64,
        /// Launch requests made by worker 0, and the last one the launcher served.
        requested: AtomicU64,
        served: AtomicU64,
        /// The launcher's latch handle (`LatchHandle::to_raw`), 0 until it published it.
        launcher: AtomicU64,
        /// The running dynamic worker's handle (`WorkerHandle::to_raw`), generation 0 when none.
        dynamic_slot: AtomicU64,
        dynamic_generation: AtomicU64,
        /// Each static worker's count of rounds (under `counters`).
        counters: [AtomicU64; MAX_WORKERS],
    }
}

fn init(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    // Init registers one worker per counter, so a new value could only take effect at a restart.
    let total = reg.restart_only(|reg| {
        reg.define_int(
            "total_workers",
            2,
            1..=MAX_WORKERS as i64,
            "number of static worker_spi workers",
        )
    })?;
    reg.define_duration(
        "naptime",
        Duration::from_secs(1),
        "how long each worker sleeps between rounds (at least 1ms)",
    )?;
    reg.define_int(
        "launch_every",
        10,
        0..=1_000_000,
        "worker_spi 0 asks the launcher for a dynamic worker every this many rounds (0: never)",
    )?;
    reg.request_region(REGION, std::mem::size_of::<Shared>() as u64)?;
    reg.request_lock(LOCK)?;
    reg.on_segment_init(entry!(worker_spi_init_segment))?;
    for i in 0..total {
        // The index travels in `arg`; the defaults (start once the host is running, restart
        // after a second) suit these workers.
        reg.register_background_worker(
            BackgroundWorker::new(format!("worker_spi {i}"), entry!(worker_spi_main))
                .worker_type("worker_spi")
                .arg(i as u64),
        )?;
    }
    reg.register_background_worker(
        BackgroundWorker::new("worker_spi launcher", entry!(worker_spi_launcher))
            .worker_type("worker_spi launcher")
            .restart(RestartPolicy::after(Duration::from_secs(1))),
    )?;
    Ok(())
}

fn fatal(e: impl std::fmt::Display) -> WorkerError {
    WorkerError::fatal(e.to_string())
}

/// The shared region, typed.
fn shared(w: &Worker) -> Result<&'static Shared, WorkerError> {
    w.region(REGION).map_err(fatal)?.get::<Shared>().map_err(fatal)
}

fn naptime(w: &Worker) -> Result<Duration, WorkerError> {
    let d: Duration = w.setting("naptime").map_err(fatal)?;
    Ok(d.max(MIN_NAPTIME))
}

/// On every new segment, before any worker starts: the region is all zeroes here.
fn worker_spi_init_segment(s: &mut SegmentInit) -> Result<(), String> {
    let shared = s
        .region(REGION)
        .and_then(|r| r.get::<Shared>())
        .map_err(|e| e.to_string())?;
    let total: i64 = s.setting("total_workers").map_err(|e| e.to_string())?;
    shared.workers.store(total as u64, Ordering::Relaxed);
    // Release: a worker that reads the marker (acquire) sees `workers` too.
    shared.marker.store(SEGMENT_MARKER, Ordering::Release);
    tracing::info!("segment initialised with {total} counters");
    Ok(())
}
steward::segment_init!(worker_spi_init_segment);

/// `worker_spi N`: one counter, one round per naptime.
fn worker_spi_main(w: &mut Worker) -> Result<(), WorkerError> {
    let index = w.arg() as usize;
    let shared = shared(w)?;
    // The host runs segment init hooks before any worker, so this holds on every segment; a
    // worker that found otherwise would be counting in a region nobody set up.
    if shared.marker.load(Ordering::Acquire) != SEGMENT_MARKER {
        return Err(fatal(
            "the region has no start marker: the segment init hook did not run",
        ));
    }
    if index >= shared.workers.load(Ordering::Relaxed) as usize {
        return Err(fatal(format!("index {index} is past the counters in use")));
    }
    let counters = w.lock(LOCK).map_err(fatal)?;
    let mut naptime = naptime(w)?;
    let mut launch_every: i64 = w.setting("launch_every").map_err(fatal)?;
    // A restarted worker goes on from the count its predecessor left.
    let mut count = shared.counters[index].load(Ordering::Relaxed);
    let mut rounds = 0u64;
    tracing::info!("started with naptime {naptime:?}");
    loop {
        w.set_activity(&format!("naptime {naptime:?}, counter {count}"));
        match w.wait(naptime) {
            WaitResult::Timeout => {
                count = {
                    // Both words change under the lock, so a reader holding it shared always
                    // sees `total` equal to the sum of the counters.
                    let _guard = counters.exclusive();
                    let n = shared.counters[index].load(Ordering::Relaxed) + 1;
                    shared.counters[index].store(n, Ordering::Relaxed);
                    let t = shared.total.load(Ordering::Relaxed);
                    shared.total.store(t + 1, Ordering::Relaxed);
                    n
                };
                rounds += 1;
                if index == 0 && launch_every > 0 && rounds.is_multiple_of(launch_every as u64) {
                    request_launch(shared);
                }
            }
            WaitResult::Reload => {
                // A reload wakes the nap at once; the next nap has the new length.
                naptime = naptime_or(w, naptime);
                launch_every = w.setting("launch_every").unwrap_or(launch_every);
                tracing::info!("reloaded: naptime {naptime:?}, launch_every {launch_every}");
            }
            r if r.should_stop() => return Ok(()),
            // This worker never takes its latch; any other reason to wake is not for it.
            _ => {}
        }
    }
}
steward::worker_entry!(worker_spi_main);

/// The new `naptime` after a reload, or `old` when it cannot be read (the supervisor validated
/// the file, but it may have changed again since).
fn naptime_or(w: &Worker, old: Duration) -> Duration {
    naptime(w).unwrap_or_else(|e| {
        tracing::warn!("keeping naptime {old:?}: {e}");
        old
    })
}

/// Asks the launcher for a dynamic worker: the request is counted in the region first, then the
/// launcher's latch is set. The launcher publishes its latch before it looks at the count (both
/// sequentially consistent), so either it sees this request or this set wakes it: none is lost,
/// even while the launcher restarts.
fn request_launch(shared: &Shared) {
    let request = shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
    let woke = LatchHandle::from_raw(shared.launcher.load(Ordering::SeqCst)).set();
    tracing::debug!("asked the launcher for a dynamic worker (request {request}, latch set: {woke})");
}

/// `worker_spi launcher`: launches a dynamic worker per request, one at a time.
fn worker_spi_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let shared = shared(w)?;
    let mut naptime = naptime(w)?;
    stop_leftover(shared);
    shared.launcher.store(w.latch().to_raw(), Ordering::SeqCst);
    tracing::info!("waiting for launch requests");
    loop {
        // Requests coalesce, as latch sets do: however many came since the last cycle, the
        // launcher serves the newest once.
        let requested = shared.requested.load(Ordering::SeqCst);
        if requested > shared.served.load(Ordering::Relaxed) {
            shared.served.store(requested, Ordering::Relaxed);
            if !serve(w, shared, requested, &mut naptime) {
                return Ok(());
            }
            continue;
        }
        w.set_activity(&format!("waiting for a launch request ({requested} served)"));
        match w.wait(Duration::from_secs(3600)) {
            WaitResult::Latch | WaitResult::Timeout => {}
            WaitResult::Reload => naptime = naptime_or(w, naptime),
            r if r.should_stop() => return Ok(()),
            _ => {}
        }
    }
}
steward::worker_entry!(worker_spi_launcher);

/// One launch cycle for `request`: launch, wait for the start, let it run for a naptime,
/// terminate, wait for the stop. Failures are logged and end the cycle; `false` means this
/// launcher was asked to stop meanwhile (after terminating its dynamic worker).
fn serve(w: &Worker, shared: &Shared, request: u64, naptime: &mut Duration) -> bool {
    w.set_activity(&format!("request {request}: launching {DYNAMIC}"));
    let dynamic = BackgroundWorker::new(DYNAMIC, entry!(worker_spi_dynamic))
        .worker_type(DYNAMIC)
        .arg(request)
        // Terminated by the launcher: never restarted, whatever its exit.
        .restart(RestartPolicy::never())
        // And terminated by the host if this launcher's process ends first (a restart or a
        // crash), so no dynamic worker outlives the launcher that would have stopped it.
        .stop_with_launcher();
    // Every slot taken, or the host recovering from a crash, is an answer, not a wedge: log it
    // and wait for the next request.
    let handle = match w.launch(dynamic) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("request {request}: could not launch {DYNAMIC}: {e}");
            return true;
        }
    };
    keep(shared, Some(handle));
    tracing::info!(
        "request {request}: launched {DYNAMIC} (slot {}, generation {})",
        handle.slot(),
        handle.generation()
    );

    w.set_activity(&format!("request {request}: waiting for {DYNAMIC} to start"));
    let pid = match handle.wait_for_startup(HANDLE_TIMEOUT) {
        Ok(WorkerStatus::Running { pid }) => pid,
        // A launch that failed after `launch` returned (fork failed, the entry did not
        // resolve) comes back here, with the reason; its slot is already free.
        Ok(WorkerStatus::Stopped { reason, .. }) => {
            tracing::warn!("request {request}: {DYNAMIC} stopped before it started: {reason}");
            keep(shared, None);
            return true;
        }
        Ok(other) => {
            tracing::warn!("request {request}: {DYNAMIC} did not start: {other:?}");
            return finish(w, shared, request, handle);
        }
        Err(HandleError::Terminate) => {
            finish(w, shared, request, handle);
            return false;
        }
        Err(e) => {
            tracing::warn!("request {request}: waiting for {DYNAMIC} to start: {e}");
            return finish(w, shared, request, handle);
        }
    };
    tracing::info!("request {request}: {DYNAMIC} started (pid {pid})");

    // Let it run for the naptime in force now; a reload meanwhile changes the next cycle's.
    w.set_activity(&format!(
        "request {request}: letting {DYNAMIC} (pid {pid}) run for {naptime:?}"
    ));
    let stop_requested = !nap(w, *naptime, naptime);
    let finished = finish(w, shared, request, handle);
    finished && !stop_requested
}

/// Terminates the dynamic worker and waits for it to stop; `false` when this launcher was asked
/// to stop while it waited.
fn finish(w: &Worker, shared: &Shared, request: u64, handle: WorkerHandle) -> bool {
    w.set_activity(&format!("request {request}: terminating {DYNAMIC}"));
    match handle.terminate() {
        Ok(()) => tracing::info!("request {request}: terminated {DYNAMIC}"),
        Err(e) => tracing::warn!("request {request}: terminating {DYNAMIC}: {e}"),
    }
    w.set_activity(&format!("request {request}: waiting for {DYNAMIC} to stop"));
    let went_on = match handle.wait_for_shutdown(HANDLE_TIMEOUT) {
        Ok(WorkerStatus::Stopped { reason, .. }) => {
            tracing::info!("request {request}: {DYNAMIC} stopped ({reason})");
            true
        }
        // Stale: the worker stopped and its slot already has a new tenant.
        Err(HandleError::Stale) => {
            tracing::info!("request {request}: {DYNAMIC} stopped (its slot is reused)");
            true
        }
        // The host stops the dynamic worker too (it was terminated already).
        Err(HandleError::Terminate) => false,
        other => {
            tracing::warn!("request {request}: waiting for {DYNAMIC} to stop: {other:?}");
            true
        }
    };
    keep(shared, None);
    went_on
}

/// Sleeps for `d` through latch sets (requests stay counted in the region) and reloads (which
/// update `naptime` for later); `false` when the worker is asked to stop.
fn nap(w: &Worker, d: Duration, naptime: &mut Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match w.wait(left) {
            WaitResult::Timeout => return true,
            WaitResult::Reload => *naptime = naptime_or(w, *naptime),
            r if r.should_stop() => return false,
            _ => {}
        }
    }
}

/// Keeps the dynamic worker's handle in the region (or clears it). Only the launcher writes
/// these two words and only it reads them, one process after another, so no lock is needed.
fn keep(shared: &Shared, handle: Option<WorkerHandle>) {
    let (slot, generation) = handle.map_or((0, 0), WorkerHandle::to_raw);
    shared.dynamic_slot.store(slot as u64, Ordering::Relaxed);
    shared.dynamic_generation.store(generation, Ordering::Release);
}

/// A dynamic worker that a previous launcher process left (it was restarted mid-cycle): the host
/// terminates it (`stop_with_launcher`), and the handle kept in the region, which still works
/// from this process, waits for it to be gone before another of the same name is launched. A
/// stale handle means that worker is gone already.
fn stop_leftover(shared: &Shared) {
    let generation = shared.dynamic_generation.load(Ordering::Acquire);
    if generation == 0 {
        return;
    }
    let handle = WorkerHandle::from_raw(shared.dynamic_slot.load(Ordering::Relaxed) as u32, generation);
    if handle.terminate().is_ok() {
        let outcome = handle.wait_for_shutdown(HANDLE_TIMEOUT);
        tracing::info!("stopped the {DYNAMIC} a previous launcher left running: {outcome:?}");
    }
    keep(shared, None);
}

/// `worker_spi dynamic`: checks, under the lock taken shared, that the counters add up.
fn worker_spi_dynamic(w: &mut Worker) -> Result<(), WorkerError> {
    let shared = shared(w)?;
    let counters = w.lock(LOCK).map_err(fatal)?;
    let mut naptime = naptime(w)?;
    let request = w.arg();
    loop {
        let (total, sum, workers) = {
            // Shared: any number of readers at once, no static worker halfway through a round.
            let _guard = counters.shared();
            let workers = (shared.workers.load(Ordering::Relaxed) as usize).min(MAX_WORKERS);
            let sum: u64 = shared.counters[..workers]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            (shared.total.load(Ordering::Relaxed), sum, workers)
        };
        if total != sum {
            tracing::error!("counters disagree: total {total}, sum {sum}");
        }
        w.set_activity(&format!("request {request}: total {total} over {workers} counters"));
        tracing::info!("request {request}: total {total} over {workers} counters");
        match w.wait(naptime) {
            WaitResult::Reload => naptime = naptime_or(w, naptime),
            r if r.should_stop() => return Ok(()),
            _ => {}
        }
    }
}
steward::worker_entry!(worker_spi_dynamic);
