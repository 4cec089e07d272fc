//! Isolated workers and connection handlers (issue 15: isolated): whether this process is one,
//! and how it gives up its writable view of the segment.
//!
//! Runs in: every child that runs plugin code (the flag is read by the host functions plugin
//! code calls) and, for [`enter`], an isolated worker child or an isolated handler's client
//! child (issue 15: isolated handlers) before any plugin code runs in it (before plugin loading
//! in exec mode, before its entry in fork mode).
//!
//! Invariant: once [`enter`] returned, the process has no writable mapping of the segment and no
//! read-write descriptor of it, so any store into the segment faults (SIGSEGV) and is this
//! process's own crash. Every host function that would write the segment asks [`active`] first
//! and answers `STATUS_ISOLATED` instead of faulting.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::shared::shmem::Segment;

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The isolated process's child slot plus one (0: none): where its latch cell is.
static OWN_SLOT: AtomicU32 = AtomicU32::new(0);

/// Whether this process is isolated (a worker or a client child): its segment mapping is
/// read-only.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The child slot of this isolated process (`None` when it is not one, or has no slot).
pub fn own_child_slot() -> Option<u32> {
    OWN_SLOT.load(Ordering::Relaxed).checked_sub(1)
}

/// Makes this process's mapping of `segment` read-only (same address) and its descriptor a
/// read-only one, and marks the process isolated, in `child_slot`.
pub fn enter(segment: &Segment, child_slot: Option<u32>) -> std::io::Result<()> {
    ACTIVE.store(true, Ordering::Relaxed);
    OWN_SLOT.store(child_slot.map_or(0, |s| s + 1), Ordering::Relaxed);
    // SAFETY: `base..base + size` is exactly `segment`'s own `MAP_SHARED` mapping of its memfd
    // from offset 0, and the child is single-threaded here (no plugin code has run), so nothing
    // writes through it while it changes.
    unsafe { crate::sys::remap_read_only(segment.base(), segment.layout.size as usize, segment.fd()) }
}
