//! Setting a latch from any process that maps the segment (the host side of
//! `LatchHandle::set`), and this process's own latch.
//!
//! Runs in: workers and the startup child (the only children that run plugin code, so the only
//! ones that attach here). In the supervisor and in processes that never attached, a set answers
//! `STATUS_UNAVAILABLE`: the supervisor never sets a latch through plugin code.
//!
//! Waking an owner is a `SIGURG` to its pid (whose handler writes the owner's eventfd), or a write
//! to this process's eventfd when the owner is this process. `SIGURG` and not `SIGUSR1`: the
//! user signals stay the plugin's (a plugin's own handler must not break latches, pg_cron #15),
//! and `SIGURG`'s default action is to ignore it, so a stray one harms no process. The owner pid
//! is the owner's claim in shared memory: it is checked for range, and the supervisor (which is
//! never an owner) is never signalled.

use std::os::fd::RawFd;
use std::sync::OnceLock;

use steward::abi;

use crate::shared::protocol::latch::{decode_handle, SetOutcome};
use crate::shared::protocol::ChildSlot;
use crate::shared::shmem::Segment;

/// Where this process finds every child slot, and its own latch's eventfd.
struct Attached {
    /// The first child slot in this process's mapping.
    slots: *const ChildSlot,
    /// How many child slots the layout this process computed or checked has.
    n_slots: u32,
    own_pid: i32,
    own_fd: RawFd,
    host_pid: i32,
}

// SAFETY: `slots` points into the `MAP_SHARED` segment, which a child maps once and never unmaps
// before it exits; every field of a `ChildSlot` is an atomic, so any thread may use it.
unsafe impl Send for Attached {}
// SAFETY: as above; the struct itself is never written after `attach`.
unsafe impl Sync for Attached {}

static ATTACHED: OnceLock<Attached> = OnceLock::new();

/// Makes latches settable from this process (once, when the runtime starts): `own_fd` is the
/// eventfd this process's `SIGURG` handler writes.
pub fn attach(segment: &Segment, own_fd: RawFd, host_pid: i32) {
    let n_slots = segment.layout.n_child_slots();
    let _ = ATTACHED.set(Attached {
        slots: segment.child_slot(0),
        n_slots,
        own_pid: std::process::id() as i32,
        own_fd,
        host_pid,
    });
}

/// Sets the latch `raw` names: `STATUS_OK` (set, or already set), `STATUS_STALE` (no such slot,
/// or another tenancy), `STATUS_UNAVAILABLE` (this process has no segment).
pub fn set(raw: u64) -> abi::Status {
    let Some(a) = ATTACHED.get() else {
        return abi::STATUS_UNAVAILABLE;
    };
    // issue 15: isolated
    // A set is a store into the target's cell; an isolated process maps the segment read-only.
    if crate::shared::isolation::active() {
        return abi::STATUS_ISOLATED;
    }
    let Some((slot, epoch)) = decode_handle(raw).filter(|(s, _)| *s < a.n_slots) else {
        return abi::STATUS_STALE;
    };
    // SAFETY: `slot` is below the slot count of this process's own layout, so the slot lies
    // inside the mapping, which lives until the process exits (see `Attached`).
    let cell = unsafe { &*a.slots.add(slot as usize) }.latch();
    match cell.set(epoch) {
        SetOutcome::Stale => abi::STATUS_STALE,
        SetOutcome::AlreadySet | SetOutcome::Set { wake: None } => abi::STATUS_OK,
        SetOutcome::Set { wake: Some(pid) } => {
            if pid == a.own_pid {
                wake_fd(a.own_fd);
            } else if pid != a.host_pid {
                // Fails only for a process that is gone (its slot is about to be freed) or one
                // this user may not signal: either way nobody is waiting for this wake-up.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGURG);
            }
            abi::STATUS_OK
        }
    }
}

/// Writes one to an eventfd. Async-signal-safe (the latch's signal handlers call it).
pub fn wake_fd(fd: RawFd) {
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; an eventfd takes exactly 8 bytes, from a local.
        // A full counter (EAGAIN) already means "readable".
        unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    }
}
