//! `asynclatch`: async code in a worker, woken by its latch.
//!
//! Runs in: the supervisor (init) and the two worker processes, `asynclatch-waiter` and
//! `asynclatch-setter`.
//!
//! The waiter runs a current-thread tokio runtime and awaits its latch fd with
//! `tokio::io::unix::AsyncFd`; the runtime lives in the waiter's process only (created after the
//! fork or exec), so the supervisor never runs tokio. The setter wakes the waiter `sets` times
//! through the handle the waiter stored in the `asynclatch` region, and waits for each wake-up
//! to be answered before the next set, so no two sets coalesce and the waiter logs exactly one
//! `tokio task woke on latch N` line per set. SIGTERM makes the same fd readable: the waiter sees
//! `should_stop()` and returns, with no SIGKILL needed.
//!
//! Invariants: the region's handles are only ever set, never trusted: a stale or zero handle's
//! `set()` does nothing. The waiter counts a wake-up only when `reset_latch()` says the latch was
//! set, so wake-ups for terminate or reload are not counted.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steward::{
    entry, AtomicLatchHandle, BackgroundWorker, InitError, LatchHandle, Registrar, RestartPolicy, Worker, WorkerError,
};
use tokio::io::unix::AsyncFd;

steward::plugin! { name: "asynclatch", init: init }

steward::shareable! {
    /// What the two workers share, in the region `asynclatch`.
    #[repr(C)]
    struct Shared {
        /// The waiter's latch handle (`LatchHandle::to_raw`), 0 until it has published it.
        waiter: AtomicU64,
        /// The setter's latch handle, which the waiter sets to answer.
        setter: AtomicU64,
        /// How many latch wake-ups the waiter has counted.
        wakes: AtomicU64,
    }
}

fn init(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.define_int(
        "sets",
        10,
        0..=1_000_000,
        "how many times the setter sets the waiter's latch",
    )?;
    reg.request_region("asynclatch", std::mem::size_of::<Shared>() as u64)?;
    reg.register_background_worker(
        BackgroundWorker::new("asynclatch-waiter", entry!(asynclatch_waiter))
            .worker_type("asynclatch")
            .restart(RestartPolicy::after(Duration::from_secs(1))),
    )?;
    reg.register_background_worker(
        BackgroundWorker::new("asynclatch-setter", entry!(asynclatch_setter))
            .worker_type("asynclatch")
            .restart(RestartPolicy::after(Duration::from_secs(1))),
    )?;
    Ok(())
}

fn fatal(e: impl std::fmt::Display) -> WorkerError {
    WorkerError::fatal(e.to_string())
}

fn shared(w: &Worker) -> Result<&'static Shared, WorkerError> {
    w.region("asynclatch").map_err(fatal)?.get::<Shared>().map_err(fatal)
}

fn asynclatch_waiter(w: &mut Worker) -> Result<(), WorkerError> {
    let shared = shared(w)?;
    let fd = w.latch_fd().ok_or_else(|| fatal("this host has no latch fd"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| fatal(format!("tokio runtime: {e}")))?;
    rt.block_on(await_latch(w, shared, fd))
}
steward::worker_entry!(asynclatch_waiter);

/// The tokio task: one await on the latch fd per wake-up.
async fn await_latch(w: &Worker, shared: &Shared, fd: BorrowedFd<'static>) -> Result<(), WorkerError> {
    // Registered for readability only; dropping the AsyncFd only deregisters it (a BorrowedFd
    // closes nothing).
    // SAFETY: the host keeps its latch eventfd open, as the same descriptor, until this process
    // exits (`Worker::latch_fd`), which outlives the AsyncFd; a BorrowedFd always gives back the
    // same number.
    let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| fatal(format!("registering the latch fd with tokio: {e}")))?;
    // Publish the handle before looking for the setter's: the setter stores its handle before
    // looking for ours, so (both SeqCst) at least one of the two sees the other and the first
    // set cannot be missed.
    AtomicLatchHandle::from_atomic(&shared.waiter).store(w.latch());
    LatchHandle::from_raw(shared.setter.load(Ordering::SeqCst)).set();
    tracing::info!("tokio task awaiting the latch fd");
    // A restarted waiter goes on counting where its predecessor stopped.
    let mut wakes = shared.wakes.load(Ordering::SeqCst);
    loop {
        let mut ready = afd.readable().await.map_err(|e| fatal(format!("latch fd: {e}")))?;
        // Without the clear, `readable()` would answer at once forever. A set after the reset
        // writes the fd again: a new event, which this clear (of the reported one only) keeps.
        ready.clear_ready();
        if w.reset_latch() {
            wakes += 1;
            tracing::info!("tokio task woke on latch {wakes}");
            shared.wakes.store(wakes, Ordering::SeqCst);
            LatchHandle::from_raw(shared.setter.load(Ordering::SeqCst)).set();
        }
        if w.should_stop() {
            tracing::info!("tokio task saw the stop request after {wakes} wake-ups");
            return Ok(());
        }
    }
}

fn asynclatch_setter(w: &mut Worker) -> Result<(), WorkerError> {
    let shared = shared(w)?;
    let sets = w.setting::<i64>("sets").map_err(fatal)? as u64;
    shared.setter.store(w.latch().to_raw(), Ordering::SeqCst);
    let mut done = shared.wakes.load(Ordering::SeqCst);
    let mut last = LatchHandle::NONE;
    loop {
        let waiter = LatchHandle::from_raw(shared.waiter.load(Ordering::SeqCst));
        let answered = shared.wakes.load(Ordering::SeqCst);
        if answered < done && waiter != last {
            // The set went to a waiter that has since been replaced (its handle went stale):
            // set its successor, which publishes a new handle and wakes us.
            last = waiter;
            waiter.set();
            continue;
        }
        // Set only once the previous set was answered (and the waiter is there at all): sets
        // that came before the waiter looked would coalesce into one wake-up.
        if done < sets && !waiter.is_none() && answered >= done {
            last = waiter;
            done += 1;
            let set = waiter.set();
            tracing::info!("set the waiter's latch {done}: {set}");
            if done == sets {
                tracing::info!("all {sets} sets made");
            }
            continue;
        }
        match w.wait(Duration::from_secs(60)) {
            r if r.should_stop() => return Ok(()),
            // A latch set, the timeout, a reload (or a reason a later SDK adds): look again.
            _ => {}
        }
    }
}
steward::worker_entry!(asynclatch_setter);
