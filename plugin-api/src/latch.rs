//! Latches: a per-process flag any process of the host can set to wake the owner's
//! [`crate::Worker::wait`] (PostgreSQL's `SetLatch`/`WaitLatch`).
//!
//! Runs in: any plugin code. A [`LatchHandle`] is plain data (a child slot and that slot's
//! tenancy), so it can be stored in a region and used from another process; setting it goes
//! through the host, which checks that the slot still has the tenant the handle was taken from.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi;

/// Set once this process asked for its latch: from then on `Worker::wait` may return
/// [`crate::WaitResult::Latch`]. A worker that never takes its latch keeps the `wait` of ABI 1.0,
/// so a `while w.wait(d) == WaitResult::Timeout` loop keeps its meaning.
static LATCH_USED: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_used() {
    LATCH_USED.store(true, Ordering::Relaxed);
}

pub(crate) fn used() -> bool {
    LATCH_USED.load(Ordering::Relaxed)
}

/// A handle on one process's latch: `Copy`, 8 bytes, meaningful in every process of the host
/// (store it in a region with [`LatchHandle::to_raw`], or in an [`AtomicLatchHandle`]).
///
/// Once the host has seen the process it names end, the handle is stale: [`LatchHandle::set`]
/// does nothing and returns `false`; it never wakes a later process in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct LatchHandle(u64);

impl LatchHandle {
    /// A handle that names no latch (what an all-zero region holds): setting it returns `false`.
    pub const NONE: LatchHandle = LatchHandle(0);

    /// The handle as a number, to store in shared memory.
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// A handle from [`LatchHandle::to_raw`]'s number. Any number is safe: the host checks it.
    pub fn from_raw(raw: u64) -> LatchHandle {
        LatchHandle(raw)
    }

    /// Whether this is [`LatchHandle::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// Sets the latch, waking its owner's `wait` (or making its latch fd readable). Sets
    /// coalesce: several before the owner looks wake it once. Returns `false` when the handle is
    /// stale or [`LatchHandle::NONE`], the host has no latches (ABI 1.0), or the caller is an
    /// isolated worker or connection handler (a set writes shared memory; see
    /// `BackgroundWorker::isolated`); `true` otherwise.
    /// Callable from any thread of any process of the host.
    pub fn set(self) -> bool {
        if self.0 == 0 {
            return false;
        }
        let Some(h) = crate::host() else { return false };
        if !h.has(std::mem::offset_of!(abi::HostApi, latch_set) + std::mem::size_of::<usize>()) {
            return false;
        }
        // SAFETY: the host's function with its own context; the table has this field (checked).
        unsafe { (h.latch_set)(h.ctx, self.0) == abi::STATUS_OK }
    }
}

/// A [`LatchHandle`] in shared memory: an `AtomicU64` holding its raw number, all zeros being
/// [`LatchHandle::NONE`]. Place it in a region (for example over [`crate::Region::atomic_u64`]'s
/// word with [`AtomicLatchHandle::from_atomic`]).
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct AtomicLatchHandle(AtomicU64);

impl AtomicLatchHandle {
    pub const fn new(h: LatchHandle) -> AtomicLatchHandle {
        AtomicLatchHandle(AtomicU64::new(h.0))
    }
    /// Views a region's atomic word as a latch handle.
    pub fn from_atomic(a: &AtomicU64) -> &AtomicLatchHandle {
        // SAFETY: `AtomicLatchHandle` is a transparent wrapper of `AtomicU64`.
        unsafe { &*(a as *const AtomicU64 as *const AtomicLatchHandle) }
    }
    pub fn load(&self) -> LatchHandle {
        LatchHandle(self.0.load(Ordering::Acquire))
    }
    pub fn store(&self, h: LatchHandle) {
        self.0.store(h.0, Ordering::Release)
    }
}
