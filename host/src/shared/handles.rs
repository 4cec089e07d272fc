//! Dynamic workers, both sides of the request, and worker handles.
//!
//! Runs in: workers (the requester side of `launch_worker`, and every handle call: a handle is
//! plain data, so any worker may use one another worker stored in a region), connection
//! children (`steward launch` and `steward terminate`: the same calls, the launcher shown as
//! `control`) and the supervisor (the intake side: [`take_request`] and [`answer`]). In a
//! process that never attached (the supervisor, init) the handle calls answer
//! `STATUS_UNAVAILABLE`.
//!
//! Owns: the request slots (one per worker slot and per connection slot, each at its child
//! slot's index, so the child in slot `i` has request slot `i` to itself) and how a handle
//! reads its worker's status.
//!
//! The request path (PostgreSQL's `RegisterDynamicBackgroundWorker` hand-off, applied to a slot
//! the requester owns): the worker writes its registration into its own request slot as a
//! bounded JSON document, stores `(seq + 1, REQUESTED)` (release) and sends SIGUSR1 to the
//! supervisor, the same wake-up `set_ready` uses. The supervisor, on SIGUSR1, looks at the
//! request slots of running workers only, copies the bounded bytes out, decodes and validates
//! them as it would a registration in init (every byte is untrusted), adds the worker to its
//! table, publishes the registration to the worker slot, and answers with one compare-and-swap
//! `(seq, REQUESTED) -> (seq, ANSWERED)` plus `FUTEX_WAKE`. The requester waits on the word with a
//! deadline; at the deadline it tries `(seq, REQUESTED) -> (seq, CANCELLED)`, and if that fails
//! the answer has arrived. The request's `seq` and its state share one word, so every transition
//! names the request it is about: an answer to a request its requester cancelled and replaced
//! can neither land in the new request nor wipe it (the supervisor frees only
//! `(seq, CANCELLED)`, by compare-and-swap, never by a plain store), and a copy of the bytes
//! taken while the word changed is dropped (the word is read again after the copy, as a seqlock
//! reader does). One atomic operation decides between an answer and a cancel, so neither side
//! can wedge the other.
//! A request with a queue timeout (issue 14: queue) may wait in the supervisor's queue, still
//! `REQUESTED`; its requester's deadline is the queue timeout plus a margin, and a SIGTERM cancels
//! it the same way. [`answer`] tells the supervisor whether the requester got the answer, so an
//! adoption nobody waits for any more is undone.
//!
//! Handles: `(slot, generation)`. The supervisor publishes each worker's status with its
//! generation under the status cell's seqlock; a handle whose generation is not the one
//! published is stale, so a later tenant of the slot is never mistaken for the handle's worker.
//! Waiters sleep on the worker slot's `events` futex, which the supervisor bumps on every publish
//! and the worker bumps when its entry runs.
//!
//! Invariants: the requester writes only its own request slot, and reads the answer only after
//! it saw its own `(seq, ANSWERED)` (acquire); the supervisor writes a request slot only through
//! [`answer`] and [`drop_request`], each a compare-and-swap or swap on the word that keeps `seq`,
//! and never trusts a length, code or pid it finds there. A requester that finds the word in any
//! state but its own `REQUESTED` or `ANSWERED` gives up with an error rather than wait.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::shared::lifecycle::WorkerState;
use crate::shared::registry::{validate_worker, WorkerSpec};
use crate::shared::shmem::{Segment, Text};

/// Request slot states: the low [`STATE_BITS`] of the slot's word, above them the request's
/// `seq`.
pub const REQ_FREE: u32 = 0;
pub const REQ_REQUESTED: u32 = 1;
pub const REQ_ANSWERED: u32 = 2;
pub const REQ_CANCELLED: u32 = 3;
/// How many low bits of the word hold the state.
const STATE_BITS: u32 = 2;
/// The state's bits in a request slot's word (for tests that read a live segment's bytes).
pub const REQ_STATE_MASK: u32 = (1 << STATE_BITS) - 1;
const STATE_MASK: u32 = REQ_STATE_MASK;

/// The word for request `seq` in `state` (`seq` wraps: a requester would need 2^30 requests
/// while the supervisor holds one copy for an old one to be mistaken for the new).
fn word(seq: u32, state: u32) -> u32 {
    (seq << STATE_BITS) | (state & STATE_MASK)
}

/// The word's `(seq, state)`.
fn split(w: u32) -> (u32, u32) {
    (w >> STATE_BITS, w & STATE_MASK)
}

/// Answer kinds.
const ANSWER_ADOPTED: u32 = 1;
const ANSWER_NO_FREE_SLOT: u32 = 2;
const ANSWER_INVALID: u32 = 3;
const ANSWER_HOST_NOT_RUNNING: u32 = 4;
// issue 14: notifications
const ANSWER_DUPLICATE_NAME: u32 = 5;
const ANSWER_UNKNOWN_START_AFTER: u32 = 6;

/// The longest registration document a request carries: room for every field at its longest
/// (a unit test holds the encoding to it).
pub const SPEC_LEN: usize = 6144;
/// How long a requester waits for its answer before it cancels the request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
// issue 14: queue
/// What a queued requester waits beyond its queue timeout: the supervisor answers an expired
/// request at its next deadline, so the answer normally comes first, within milliseconds. The
/// margin only bounds a supervisor that is slow to get there (a loaded machine), and a generous
/// one costs nothing otherwise: it keeps such a request's answer `NoFreeSlot`, not `TimedOut`.
const QUEUE_MARGIN: Duration = Duration::from_secs(5);
/// The longest queue timeout (as the longest restart delay).
pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_micros(steward::abi::MAX_RESTART_DELAY_US);

/// One worker's dynamic-worker request and its answer.
#[repr(C)]
pub struct RequestSlot {
    /// `seq << STATE_BITS | state`: see [`word`].
    state: AtomicU32,
    kind: AtomicU32,
    used: AtomicU32,
    max: AtomicU32,
    slot: AtomicU32,
    generation: AtomicU64,
    message: Text<256>,
    spec: Text<SPEC_LEN>,
    // issue 14: queue
    /// How long the request may wait for a free slot, in microseconds (0: not at all).
    queue_timeout_us: AtomicU64,
}

/// The supervisor's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Adopted {
        slot: u32,
        generation: u64,
    },
    NoFreeSlot {
        used: u32,
        max: u32,
    },
    Invalid(String),
    HostNotRunning,
    // issue 14: notifications
    /// A worker of this name is in the host (static, or dynamic and not retired).
    DuplicateName(String),
    /// A `start_after` name that is no worker's.
    UnknownStartAfter(String),
}

/// Why a launch did not give a handle (requester side). Worded by the SDK's `LaunchError`, the
/// error the plugin gets, so the host's log and the plugin say the same thing from one source;
/// the answer carries only [`LaunchFail::detail`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchFail {
    #[error("{}", steward::LaunchError::NoFreeSlot { used: *used, max: *max })]
    NoFreeSlot { used: u32, max: u32 },
    #[error("{}", steward::LaunchError::Invalid(.0.clone()))]
    Invalid(String),
    #[error("{}", steward::LaunchError::HostNotRunning)]
    HostNotRunning,
    #[error("no answer from the supervisor within {0:?}")]
    TimedOut(Duration),
    #[error("{}", steward::LaunchError::Unavailable(NOT_A_REQUESTER.to_owned()))]
    Unavailable,
    // issue 14: notifications
    #[error("{}", steward::LaunchError::DuplicateName(.0.clone()))]
    DuplicateName(String),
    #[error("{}", steward::LaunchError::UnknownStartAfter(.0.clone()))]
    UnknownStartAfter(String),
    // issue 14: queue
    #[error("{}", steward::LaunchError::Terminate)]
    Terminate,
}

/// Why [`LaunchFail::Unavailable`]: the detail the SDK's words frame.
const NOT_A_REQUESTER: &str = "only workers, startup hooks and connection children request them";

impl LaunchFail {
    /// What the launch answer's message carries: what the SDK's `LaunchError` cannot know. For
    /// `Invalid` and `Unavailable` the reason alone and for `DuplicateName` and
    /// `UnknownStartAfter` the name alone (the SDK's words frame them), else the whole message.
    pub fn detail(&self) -> String {
        match self {
            LaunchFail::Invalid(reason) => reason.clone(),
            LaunchFail::Unavailable => NOT_A_REQUESTER.to_owned(),
            LaunchFail::DuplicateName(name) | LaunchFail::UnknownStartAfter(name) => name.clone(),
            other => other.to_string(),
        }
    }
}

/// What a handle says about its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleState {
    NotYetStarted,
    Running {
        pid: i32,
    },
    Stopped {
        reason: String,
        // issue 14: queue
        /// The errno of the launch that failed, when that is why it stopped.
        errno: Option<i32>,
    },
}

/// Why a handle call gave no status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleFail {
    #[error("the handle is stale: its slot has another tenant")]
    Stale,
    #[error("timed out")]
    TimedOut,
    #[error("this process was asked to stop")]
    Terminate,
    #[error("worker handles work only in processes attached to the segment (workers, connection children)")]
    Unavailable,
}

/// What this process needs to request and to use handles.
struct Attached {
    segment: *const Segment,
    /// This process's own child slot (its request slot), if it is a worker or a connection child.
    own_slot: Option<u32>,
    host_pid: i32,
    /// Whether this process was asked to stop (its SIGTERM flag).
    should_stop: fn() -> bool,
}

// SAFETY: `segment` is the child's mapping, leaked for the life of the process (see `attach`);
// every field a handle touches in it is an atomic, so any thread may use it.
unsafe impl Send for Attached {}
// SAFETY: as above; `Attached` itself is never written after `attach`.
unsafe impl Sync for Attached {}

static ATTACHED: OnceLock<Attached> = OnceLock::new();
/// One request at a time per process: the request slot is the process's own.
static REQUESTING: Mutex<()> = Mutex::new(());

/// Makes handles usable in this process (once, when a worker's runtime or a connection child
/// starts); `own_slot` is its child slot, which is its request slot. `segment` must stay mapped until the process exits, as a child's does: a
/// child ends with `exit` from inside its role, never returning past the mapping's owner.
pub fn attach(segment: &Segment, own_slot: Option<u32>, host_pid: i32, should_stop: fn() -> bool) {
    let _ = ATTACHED.set(Attached {
        segment: segment as *const Segment,
        own_slot,
        host_pid,
        should_stop,
    });
}

fn attached() -> Option<(&'static Segment, &'static Attached)> {
    let a = ATTACHED.get()?;
    // SAFETY: `attach`'s contract: the segment outlives every call made after it.
    Some((unsafe { &*a.segment }, a))
}

fn ring(host_pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), nix::sys::signal::Signal::SIGUSR1);
}

/// Launches a dynamic worker from this worker: writes the request, wakes the supervisor, waits
/// for the answer. With `queue_timeout`, the request may wait that long for a free slot; the
/// requester waits a margin more for the answer, and a SIGTERM meanwhile cancels the request.
pub fn launch(spec: &WorkerSpec, queue_timeout: Option<Duration>) -> Result<(u32, u64), LaunchFail> {
    let (seg, a) = attached().ok_or(LaunchFail::Unavailable)?;
    let own = a.own_slot.ok_or(LaunchFail::Unavailable)?;
    validate_worker(spec).map_err(|e| LaunchFail::Invalid(e.to_string()))?;
    let queue_timeout = queue_timeout.filter(|d| !d.is_zero());
    if let Some(d) = queue_timeout.filter(|d| *d > MAX_QUEUE_TIMEOUT) {
        return Err(LaunchFail::Invalid(format!(
            "worker {:?}: queue timeout {d:?} is longer than the limit of one week",
            spec.name
        )));
    }
    let doc = encode(spec).map_err(LaunchFail::Invalid)?;
    let _one = REQUESTING.lock().unwrap_or_else(|e| e.into_inner());
    let r = seg.request_slot(own);
    let seq = write_request(r, &doc, queue_timeout);
    ring(a.host_pid);
    let waits = queue_timeout.map_or(ANSWER_TIMEOUT, |d| d + QUEUE_MARGIN);
    await_answer(r, seq, waits, || queue_timeout.is_some() && (a.should_stop)())?;
    read_answer(r, seq)
}

/// Waits up to `waits` for the answer to request `seq` in `r`, cancelling it at the deadline or
/// when `stop` says so (a queued requester asked to stop gives up its place).
fn await_answer(r: &RequestSlot, seq: u32, waits: Duration, stop: impl Fn() -> bool) -> Result<(), LaunchFail> {
    let deadline = Instant::now() + waits;
    let requested = word(seq, REQ_REQUESTED);
    let answered = word(seq, REQ_ANSWERED);
    loop {
        let w = r.state.load(Ordering::Acquire);
        if w == answered {
            return Ok(());
        }
        if w != requested {
            // Dropped by the supervisor (this process is not a requester it serves) or written
            // by someone else: no answer will come, so waiting for one would never end.
            return Err(gone(w));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // The futex wait ends with EINTR on a signal: a wait with a timeout is not restarted.
        let stop = stop();
        if left.is_zero() || stop {
            return match r.state.compare_exchange(
                requested,
                word(seq, REQ_CANCELLED),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) if stop => Err(LaunchFail::Terminate),
                Ok(_) => Err(LaunchFail::TimedOut(waits)),
                // The answer came in the same instant: it wins.
                Err(w) if w == answered => Ok(()),
                Err(w) => Err(gone(w)),
            };
        }
        // EINTR (a signal) and a wake-up both mean "look again".
        crate::sys::futex_wait(&r.state, w, Some(left));
    }
}

/// The request's word became `w`, neither its `REQUESTED` nor its `ANSWERED`: the supervisor
/// dropped it unanswered (as it does while the host is not running for this process).
fn gone(w: u32) -> LaunchFail {
    tracing::debug!("the request slot changed under the request (word {w:#x}): no answer will come");
    LaunchFail::HostNotRunning
}

/// Reads the answer to request `seq`, which `r` holds (`ANSWERED`), and frees the slot.
fn read_answer(r: &RequestSlot, seq: u32) -> Result<(u32, u64), LaunchFail> {
    let kind = r.kind.load(Ordering::Relaxed);
    let answer = match kind {
        ANSWER_ADOPTED => Ok((r.slot.load(Ordering::Relaxed), r.generation.load(Ordering::Relaxed))),
        ANSWER_NO_FREE_SLOT => Err(LaunchFail::NoFreeSlot {
            used: r.used.load(Ordering::Relaxed),
            max: r.max.load(Ordering::Relaxed),
        }),
        ANSWER_HOST_NOT_RUNNING => Err(LaunchFail::HostNotRunning),
        ANSWER_DUPLICATE_NAME => Err(LaunchFail::DuplicateName(r.message.load())),
        ANSWER_UNKNOWN_START_AFTER => Err(LaunchFail::UnknownStartAfter(r.message.load())),
        _ => Err(LaunchFail::Invalid(r.message.load())),
    };
    // Only this request's answer is freed; the supervisor touches an answered word no more.
    let _ = r.state.compare_exchange(
        word(seq, REQ_ANSWERED),
        word(seq, REQ_FREE),
        Ordering::Release,
        Ordering::Relaxed,
    );
    answer
}

/// Fills `r` with a request (the registration document `doc` from [`encode`]) and publishes it
/// (`(seq + 1, REQUESTED)`, release); returns its `seq`. The caller then wakes the supervisor.
pub fn write_request(r: &RequestSlot, doc: &[u8], queue_timeout: Option<Duration>) -> u32 {
    let (old, _) = split(r.state.load(Ordering::Relaxed));
    // The word left the old request's `REQUESTED` before these writes (a cancel or an answer):
    // a supervisor copying the old bytes sees the word changed when it reads it again.
    std::sync::atomic::fence(Ordering::Release);
    r.spec.store_bytes(doc);
    r.queue_timeout_us
        .store(queue_timeout.map_or(0, |d| d.as_micros() as u64), Ordering::Relaxed);
    let seq = split(word(old.wrapping_add(1), 0)).0;
    r.state.store(word(seq, REQ_REQUESTED), Ordering::Release);
    seq
}

/// The state of `r` (`REQ_*`), for tests that look at a live segment.
pub fn request_state(r: &RequestSlot) -> u32 {
    split(r.state.load(Ordering::Acquire)).1
}

/// The registration as the bounded document a request carries.
pub fn encode(spec: &WorkerSpec) -> Result<Vec<u8>, String> {
    let doc = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    if doc.len() > SPEC_LEN {
        return Err(format!("registration of {} bytes; at most {SPEC_LEN}", doc.len()));
    }
    Ok(doc)
}

/// A request as the supervisor took it: its `seq`, the registration (decoded from a bounded
/// copy and validated, or why it is refused) and its queue timeout (bounded).
pub type Taken = (u32, Result<WorkerSpec, String>, Option<Duration>);

/// Supervisor: the request in `r`, if one waits.
pub fn take_request(r: &RequestSlot) -> Option<Taken> {
    take_request_with(r, || {})
}

/// [`take_request`], running `between` after the copy and before the word is read again (the
/// unit tests' hook into that window).
fn take_request_with(r: &RequestSlot, between: impl FnOnce()) -> Option<Taken> {
    let w = r.state.load(Ordering::Acquire);
    let (seq, state) = split(w);
    if state != REQ_REQUESTED {
        return None;
    }
    let bytes = r.spec.load_bytes();
    let queue_timeout_us = r.queue_timeout_us.load(Ordering::Relaxed);
    between();
    // A requester that cancelled and asked again may have rewritten the bytes during the copy:
    // then the word moved on, and the copy is dropped (the new request rang again).
    std::sync::atomic::fence(Ordering::Acquire);
    if r.state.load(Ordering::Relaxed) != w {
        return None;
    }
    // Untrusted: a value past the limit is cut to it, never an overflow in the core's clock.
    let queue_timeout = Some(Duration::from_micros(queue_timeout_us))
        .filter(|d| !d.is_zero())
        .map(|d| d.min(MAX_QUEUE_TIMEOUT));
    Some((seq, decode(&bytes), queue_timeout))
}

/// Decodes and validates a request's registration (untrusted bytes); the error names the field.
pub fn decode(bytes: &[u8]) -> Result<WorkerSpec, String> {
    let spec: WorkerSpec = serde_json::from_slice(bytes).map_err(|e| format!("the request does not decode: {e}"))?;
    // issue 15: isolated (a request is untrusted bytes: the field is refused, not trusted)
    if spec.isolated {
        return Err(format!("worker {:?}: isolation is for static workers", spec.name));
    }
    validate_worker(&spec).map_err(|e| e.to_string())?;
    Ok(spec)
}

/// Supervisor: answers the request `seq` in `r`, or frees the slot if its requester cancelled.
/// Returns whether the requester gets the answer: `false` when it gave up (cancelled, or asked
/// again since), so an adopted worker has nobody holding its handle.
#[must_use]
pub fn answer(r: &RequestSlot, seq: u32, a: &Answer) -> bool {
    let (now_seq, state) = split(r.state.load(Ordering::Acquire));
    if now_seq != seq {
        // The requester gave up and asked again since: the newer request gets its own answer.
        return false;
    }
    if state != REQ_REQUESTED {
        // Cancelled: free it, unless the requester moved on to a newer request meanwhile.
        free_cancelled(r, seq);
        return false;
    }
    write_answer(r, a);
    deliver(r, seq)
}

/// Writes the answer's fields; they are read only after [`deliver`] publishes them.
fn write_answer(r: &RequestSlot, a: &Answer) {
    let (kind, slot, generation, used, max, message) = match a {
        Answer::Adopted { slot, generation } => (ANSWER_ADOPTED, *slot, *generation, 0, 0, ""),
        Answer::NoFreeSlot { used, max } => (ANSWER_NO_FREE_SLOT, 0, 0, *used, *max, ""),
        Answer::Invalid(m) => (ANSWER_INVALID, 0, 0, 0, 0, m.as_str()),
        Answer::HostNotRunning => (ANSWER_HOST_NOT_RUNNING, 0, 0, 0, 0, ""),
        Answer::DuplicateName(n) => (ANSWER_DUPLICATE_NAME, 0, 0, 0, 0, n.as_str()),
        Answer::UnknownStartAfter(n) => (ANSWER_UNKNOWN_START_AFTER, 0, 0, 0, 0, n.as_str()),
    };
    r.kind.store(kind, Ordering::Relaxed);
    r.slot.store(slot, Ordering::Relaxed);
    r.generation.store(generation, Ordering::Relaxed);
    r.used.store(used, Ordering::Relaxed);
    r.max.store(max, Ordering::Relaxed);
    r.message.store(message);
}

/// Publishes the answer written to request `seq`, or frees the request if it was cancelled;
/// returns whether the requester gets it.
fn deliver(r: &RequestSlot, seq: u32) -> bool {
    let delivered = r
        .state
        .compare_exchange(
            word(seq, REQ_REQUESTED),
            word(seq, REQ_ANSWERED),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if !delivered {
        // Cancelled in the meantime: nobody waits for this answer. A newer request (another
        // `seq`) or a scribbled word is left as it is.
        free_cancelled(r, seq);
    }
    crate::sys::futex_wake(&r.state);
    delivered
}

/// Frees request `seq` if its requester cancelled it, and only then.
fn free_cancelled(r: &RequestSlot, seq: u32) {
    let _ = r.state.compare_exchange(
        word(seq, REQ_CANCELLED),
        word(seq, REQ_FREE),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// Supervisor: drops a request whose requester is not a running worker (or not the process
/// about to be launched in the slot). The `seq` stays, so a requester still waiting sees its
/// request is gone rather than a free slot it could mistake for nothing having happened.
pub fn drop_request(r: &RequestSlot) {
    let w = r.state.load(Ordering::Acquire);
    let (seq, state) = split(w);
    if state != REQ_FREE
        && r.state
            .compare_exchange(w, word(seq, REQ_FREE), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        crate::sys::futex_wake(&r.state);
    }
}

// issue 14: notifications
/// The launcher's latch, kept from the entry until `set_ready` for a `needs_ready` worker.
static LAUNCHER_AT_READY: AtomicU64 = AtomicU64::new(0);

/// A worker's entry is about to run in worker slot `i`: whoever waits on its handle looks again,
/// and its launcher's latch is set, unless the worker declares readiness, which is its start.
pub fn entry_runs(seg: &Segment, i: u32) {
    bump_events(seg, i);
    let ws = seg.worker_slot(i);
    let launcher = ws.launcher_latch.load(Ordering::Acquire);
    if launcher == 0 {
        return;
    }
    if ws.notify.load(Ordering::Relaxed) & crate::shared::shmem::NOTIFY_AT_READY != 0 {
        LAUNCHER_AT_READY.store(launcher, Ordering::Relaxed);
    } else {
        // A stale handle (the launcher exited) sets nothing.
        let _ = crate::shared::latch::set(launcher);
    }
}

/// This worker declared itself ready: handle waiters look again, and a launcher that waits for
/// the readiness is told.
pub fn declared_ready() {
    let Some((seg, a)) = attached() else { return };
    let Some(own) = a.own_slot.filter(|&i| i < seg.layout.n_worker_slots) else {
        return;
    };
    bump_events(seg, own);
    let launcher = LAUNCHER_AT_READY.swap(0, Ordering::Relaxed);
    if launcher != 0 {
        let _ = crate::shared::latch::set(launcher);
    }
}

/// Tells everyone waiting on worker slot `i`'s handle to look again.
pub fn bump_events(seg: &Segment, i: u32) {
    let ev = &seg.worker_slot(i).events;
    ev.fetch_add(1, Ordering::Release);
    crate::sys::futex_wake_all(ev);
}

/// The status of the worker `(slot, generation)` names.
pub fn status(slot: u32, generation: u64) -> Result<HandleState, HandleFail> {
    let (seg, _) = attached().ok_or(HandleFail::Unavailable)?;
    status_in(seg, slot, generation)
}

/// As [`status`], in `seg`.
pub fn status_in(seg: &Segment, slot: u32, generation: u64) -> Result<HandleState, HandleFail> {
    if slot >= seg.layout.n_worker_slots || generation == 0 {
        return Err(HandleFail::Stale);
    }
    let snap = seg.worker_slot(slot).status.read().map_err(|_| HandleFail::Stale)?;
    if snap.generation != generation {
        return Err(HandleFail::Stale);
    }
    Ok(match snap.state {
        // issue 14: notifications
        // A `needs_ready` worker is running once its process declared itself ready: read from
        // its child slot, so a launcher woken by that declaration sees it before the supervisor
        // has published it.
        state @ (WorkerState::Running | WorkerState::Starting) => {
            // Running once the process runs the entry: a launch that fails to resolve its entry
            // never shows as running. An isolated worker cannot write its slot to say so; for it
            // running is the supervisor's adoption of its latch for this pid, made right after
            // the launch and undone at the reap (its entry may not have started yet).
            let cs = seg.child_slot(slot);
            let r = cs.report();
            let ready = state == WorkerState::Running || r.declared_ready;
            match snap.pid {
                Some(pid) if ready && r.launch_us.is_some() && r.claimed_by(pid) => HandleState::Running { pid },
                Some(pid) if ready && cs.latch().adopted_for(pid) => HandleState::Running { pid },
                _ => HandleState::NotYetStarted,
            }
        }
        WorkerState::Stopped | WorkerState::Failed => HandleState::Stopped {
            errno: snap.launch_errno,
            reason: snap
                .last_exit
                .map(|(_, _, reason)| reason)
                .unwrap_or_else(|| "stopped before it started".into()),
        },
        _ => HandleState::NotYetStarted,
    })
}

/// Waits up to `timeout` for the worker to run its entry or stop (`shutdown` false), or to stop.
pub fn wait(slot: u32, generation: u64, shutdown: bool, timeout: Duration) -> Result<HandleState, HandleFail> {
    let (seg, a) = attached().ok_or(HandleFail::Unavailable)?;
    if slot >= seg.layout.n_worker_slots {
        return Err(HandleFail::Stale);
    }
    let events = &seg.worker_slot(slot).events;
    let deadline = Instant::now() + timeout;
    loop {
        let seen = events.load(Ordering::Acquire);
        let st = status_in(seg, slot, generation)?;
        let done = match st {
            HandleState::Stopped { .. } => true,
            HandleState::Running { .. } => !shutdown,
            HandleState::NotYetStarted => false,
        };
        if done {
            return Ok(st);
        }
        if (a.should_stop)() {
            return Err(HandleFail::Terminate);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandleFail::TimedOut);
        }
        crate::sys::futex_wait(events, seen, Some(left));
    }
}

/// Asks the supervisor to stop the worker for good. A stopped worker gives `Ok`.
pub fn terminate(slot: u32, generation: u64) -> Result<(), HandleFail> {
    let (seg, a) = attached().ok_or(HandleFail::Unavailable)?;
    // issue 15: isolated (the request is a store into the worker slot)
    if crate::shared::isolation::active() {
        return Err(HandleFail::Unavailable);
    }
    if let HandleState::Stopped { .. } = status_in(seg, slot, generation)? {
        return Ok(());
    }
    seg.worker_slot(slot).terminate_gen.store(generation, Ordering::Release);
    ring(a.host_pid);
    Ok(())
}

// issue 14: control
mod by_name;
pub use by_name::{by_name, by_name_in, ByNameFail};

#[cfg(test)]
mod tests;
