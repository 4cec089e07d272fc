//! A child slot: the record a child shares with the supervisor, read by the supervisor only
//! through one bounded copy ([`ChildSlot::report`]).
//!
//! Runs in: the supervisor (hand-off and report) and every child that attaches to shared memory
//! (its own slot; a spare also the worker's slot it takes over).
//!
//! Invariants: the fields are private, so each write is one of the named steps below and every
//! read by the supervisor is a [`ChildReport`]; a state word is only ever stored through its code
//! ([`ChildSlotState`]); a slot the supervisor frees has its spare fields cleared, so the next
//! tenant starts from zero.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::latch::{ActivityCell, LatchCell};
use super::{pid_in_range, ChildSlotState, Code, DecodeError};
use crate::shared::shmem::{Text, REASON_LEN};

/// One child's slot in the segment. See `shmem`'s header for who writes what when.
#[repr(C)]
pub struct ChildSlot {
    state: AtomicU32,
    pid: AtomicI32,
    /// `CLOCK_MONOTONIC` nanoseconds when the supervisor decided to launch (supervisor writes).
    launched_at_ns: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds when the child was about to call its entry (child writes;
    /// 0 until then). Only for status: never trusted for a decision.
    entered_at_ns: AtomicU64,
    /// For a spare child's slot only: 0 while it waits, else the worker slot it is handed plus
    /// one (the supervisor writes it and wakes the spare with `FUTEX_WAKE` on this word).
    assign: AtomicU32,
    /// For a spare child's slot only: 1 once it has loaded the plugins and waits (the spare
    /// writes it; the supervisor hands work only to ready spares).
    ready: AtomicU32,
    reason: Text<REASON_LEN>,
    // issue 14: latches
    /// The latch of the process in this slot (see [`LatchCell`]).
    latch: LatchCell,
    /// The activity line of the worker in this slot (worker writes; connection children read).
    activity: ActivityCell,
    // issue 14: locks
    /// How many plugin locks the child holds or waits for (the child writes: one more before it
    /// tries a lock, one less after it released it). Non-zero at any exit makes the exit a crash
    /// (the child keeps its dead-man flag set; see `child::exit_clean`).
    locks_held: AtomicU32,
    // issue 14: readiness
    /// 1 once the worker in this slot declared itself ready, or its entry ran when
    /// `notify_entry` asked for that (the child writes; the supervisor clears it before each
    /// launch and reads it after SIGUSR1).
    declared_ready: AtomicU32,
    /// 1: the worker launched into this slot reports its entry running as readiness, because
    /// others start after it (the supervisor writes it before the launch).
    notify_entry: AtomicU32,
    // issue 15: status listeners
    /// For a client child's slot only: the listener whose client it serves plus one, 0 for none
    /// (the supervisor writes it once the child started, and clears it when it frees the slot).
    serving: AtomicU32,
}

/// What a child slot said when the supervisor looked: a private copy, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildReport {
    pub state: Result<ChildSlotState, DecodeError>,
    /// The pid written there, when it is in the kernel's range. A claim, not proof: see
    /// [`super::admit_pid`].
    pub pid: Option<i32>,
    /// At most [`REASON_LEN`] bytes, invalid UTF-8 replaced.
    pub reason: String,
    /// Microseconds from the launch decision to the entry running, once the child got there.
    pub launch_us: Option<u64>,
    /// A spare's slot: the spare has loaded its plugins and waits.
    pub ready: bool,
    /// A spare's slot: the worker slot the supervisor handed it, if any.
    pub assigned: Option<u32>,
    /// Plugin locks the child held or waited for when it was looked at.
    pub locks_held: u32,
    /// The worker declared itself ready (any value but 0 and 1 reads as not ready).
    pub declared_ready: bool,
    // issue 15: status listeners
    /// A client child's slot: the index of the listener it serves, if any (unchecked against
    /// the listeners: the reader bounds it).
    pub serving: Option<u32>,
}

impl ChildReport {
    /// The dead-man flag: a child that ended without putting its slot back to `Assigned` (which
    /// it does only on a clean exit) crashed, whatever its exit code. As PostgreSQL's postmaster
    /// treats a child slot in any other state, a slot whose state is not a known code counts as
    /// set: a child that scribbled over it may have scribbled elsewhere.
    pub fn dead_man(&self) -> bool {
        self.state != Ok(ChildSlotState::Assigned)
    }

    /// Whether a child has this slot (or a garbled state says it might).
    pub fn in_use(&self) -> bool {
        self.state != Ok(ChildSlotState::Free)
    }

    /// Whether the process `pid` claimed this slot as its own running child (a spare taking over a
    /// worker's slot).
    pub fn claimed_by(&self, pid: i32) -> bool {
        self.state == Ok(ChildSlotState::Active) && self.pid == Some(pid)
    }
}

impl ChildSlot {
    /// The one read of a slot: a bounded copy that no later write by the child can change.
    pub fn report(&self) -> ChildReport {
        let state = ChildSlotState::decode(self.state.load(Ordering::Acquire));
        let pid = self.pid.load(Ordering::Relaxed);
        let (launched, entered) = (
            self.launched_at_ns.load(Ordering::Relaxed),
            self.entered_at_ns.load(Ordering::Relaxed),
        );
        ChildReport {
            state,
            pid: pid_in_range(pid).then_some(pid),
            reason: self.reason.load(),
            launch_us: (launched != 0 && entered >= launched).then(|| (entered - launched) / 1000),
            ready: self.ready.load(Ordering::Acquire) == 1,
            assigned: self.assign.load(Ordering::Acquire).checked_sub(1),
            locks_held: self.locks_held.load(Ordering::Acquire),
            declared_ready: self.declared_ready.load(Ordering::Acquire) == 1,
            serving: self.serving.load(Ordering::Acquire).checked_sub(1),
        }
    }

    // ---- the supervisor's side ----

    /// Records when the supervisor decided to launch this slot's child, clearing the child's
    /// entry time and readiness of a previous tenant; `notify_entry` asks the new worker to
    /// report its entry running as readiness.
    pub fn prepare_launch(&self, now_ns: u64, notify_entry: bool) {
        self.declared_ready.store(0, Ordering::Relaxed);
        self.notify_entry.store(notify_entry as u32, Ordering::Relaxed);
        self.activity.clear();
        self.entered_at_ns.store(0, Ordering::Relaxed);
        self.launched_at_ns.store(now_ns, Ordering::Relaxed);
    }

    /// Gives the slot to a child about to start, with no reason yet, and a new latch tenancy
    /// (every latch handle to an earlier tenant is stale from here on).
    pub fn assign(&self) {
        self.latch.new_tenant();
        self.reason.store("");
        self.locks_held.store(0, Ordering::Relaxed);
        self.state.encode_store(ChildSlotState::Assigned);
    }

    /// Records the pid of the process the supervisor handed this slot to (a spare, before it
    /// claims the slot itself).
    pub fn expect_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Takes the slot back (supervisor only), with the spare fields cleared for the next tenant.
    /// The tenant is gone: no latch set may signal its pid, and its activity line goes.
    pub fn free(&self) {
        self.latch.owner_gone();
        self.activity.clear();
        self.assign.store(0, Ordering::Relaxed);
        self.ready.store(0, Ordering::Relaxed);
        self.serving.store(0, Ordering::Relaxed);
        self.state.encode_store(ChildSlotState::Free);
    }

    /// Hands worker slot `worker_slot` to the spare waiting on this slot, and wakes it.
    pub fn hand_over(&self, worker_slot: u32) {
        self.assign.store(worker_slot + 1, Ordering::Release);
        crate::sys::futex_wake(&self.assign);
    }

    // issue 15: status listeners
    /// Records that the client child in this slot serves listener `listener` (for `status`).
    pub fn serve_listener(&self, listener: u32) {
        self.serving.store(listener.saturating_add(1), Ordering::Release);
    }

    /// Forgets the pid of the slot's last tenant, before a fork helper whose kernel writes the new
    /// one ([`ChildSlot::pid_word`]).
    pub fn clear_pid(&self) {
        self.pid.store(0, Ordering::Release);
    }

    /// The word a sibling fork has the kernel write the new child's pid into
    /// (`CLONE_PARENT_SETTID`), so a worker a killed fork helper did not report is still known.
    pub fn pid_word(&self) -> &AtomicI32 {
        &self.pid
    }

    // ---- the child's side ----

    /// Sets the dead-man flag: this process runs in the slot from now on.
    pub fn activate(&self) {
        self.pid.store(std::process::id() as i32, Ordering::Relaxed);
        self.reason.store("");
        self.state.encode_store(ChildSlotState::Active);
    }

    /// Clears the dead-man flag before a clean exit, leaving the reason for the supervisor.
    pub fn deactivate(&self, reason: &str) {
        self.reason.store(reason);
        self.state.encode_store(ChildSlotState::Assigned);
    }

    /// Leaves a reason in a slot this process has not claimed (a spare failing as the worker it
    /// was handed).
    pub fn set_reason(&self, reason: &str) {
        self.reason.store(reason);
    }

    /// Records that the child is about to call its entry.
    pub fn mark_entered(&self, now_ns: u64) {
        self.entered_at_ns.store(now_ns, Ordering::Relaxed);
        // issue 14: notifications
        // Pairs with `ask_entry_notice`: the child reads `notify_entry` after this, the
        // supervisor reads the entry time after its store, so one of them sees the other.
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    // issue 14: notifications
    /// The supervisor asks a worker already launched to report its entry running (it became a
    /// target another worker starts after); true when the entry has already run, which the
    /// child may then never report.
    pub fn ask_entry_notice(&self) -> bool {
        self.notify_entry.store(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.entered_at_ns.load(Ordering::Relaxed) != 0
    }

    // issue 14: readiness
    /// Declares the worker in this slot ready; true only for the first call of this tenancy
    /// (the caller then wakes the supervisor).
    pub fn declare_ready(&self) -> bool {
        self.declared_ready.swap(1, Ordering::AcqRel) == 0
    }

    /// Whether the supervisor asked this worker to report its entry running as readiness.
    pub fn notifies_entry(&self) -> bool {
        self.notify_entry.load(Ordering::Relaxed) == 1
    }

    /// A spare: plugins loaded, ready for a worker.
    pub fn mark_ready(&self) {
        self.ready.store(1, Ordering::Release);
    }

    /// A spare: the worker slot it was handed, if any yet (unchecked: the caller bounds it).
    pub fn assigned(&self) -> Option<u32> {
        self.assign.load(Ordering::Acquire).checked_sub(1)
    }

    /// The slot's latch (its owner's side, and any setter's).
    pub fn latch(&self) -> &LatchCell {
        &self.latch
    }

    /// The slot's activity line (the worker writes it; connection children read it).
    pub fn activity(&self) -> &ActivityCell {
        &self.activity
    }

    /// The count of plugin locks this child holds or waits for: the lock calls of its runtime
    /// add and subtract on it, and a clean exit checks it.
    pub fn locks_held(&self) -> &AtomicU32 {
        &self.locks_held
    }

    /// A spare: blocks until [`ChildSlot::hand_over`] (or a signal) wakes it, or `timeout`
    /// passed.
    pub fn wait_for_hand_over(&self, timeout: Option<std::time::Duration>) {
        crate::sys::futex_wait(&self.assign, 0, timeout);
    }
}

/// A state word's one store: the value goes through its type's code.
trait EncodeStore {
    fn encode_store<T: Code>(&self, v: T);
}

impl EncodeStore for AtomicU32 {
    fn encode_store<T: Code>(&self, v: T) {
        self.store(v.encode(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::protocol::PID_MAX;

    fn zeroed_slot() -> Box<ChildSlot> {
        // SAFETY: every field is an atomic or an array of them, valid as all zeroes (as a fresh
        // segment holds them).
        Box::new(unsafe { std::mem::zeroed() })
    }

    #[test]
    fn a_child_slot_reports_each_step_of_its_hand_off() {
        let s = zeroed_slot();
        assert_eq!(s.report().state, Ok(ChildSlotState::Free));
        assert!(!s.report().in_use());
        s.prepare_launch(1_000_000, false);
        s.assign();
        let r = s.report();
        assert_eq!(
            (r.state, r.pid, r.launch_us),
            (Ok(ChildSlotState::Assigned), None, None)
        );
        assert!(!r.dead_man() && r.in_use());
        s.activate();
        s.mark_entered(3_000_000);
        let r = s.report();
        assert!(r.dead_man());
        assert!(r.claimed_by(std::process::id() as i32));
        assert_eq!(r.launch_us, Some(2000));
        s.locks_held().fetch_add(2, Ordering::AcqRel);
        assert_eq!(s.report().locks_held, 2);
        s.locks_held().fetch_sub(2, Ordering::AcqRel);
        s.deactivate("done here");
        let r = s.report();
        assert!(!r.dead_man());
        assert_eq!(r.reason, "done here");
        s.free();
        assert_eq!(s.report().state, Ok(ChildSlotState::Free));
        // A new tenant starts holding nothing, whatever the last one left.
        s.locks_held().store(5, Ordering::Relaxed);
        s.assign();
        assert_eq!(s.report().locks_held, 0);
    }

    #[test]
    fn readiness_is_declared_once_per_launch_and_a_scribble_is_not_readiness() {
        let s = zeroed_slot();
        s.prepare_launch(1, true);
        assert!(s.notifies_entry() && !s.report().declared_ready);
        assert!(s.declare_ready());
        assert!(!s.declare_ready(), "only the first declaration wakes the supervisor");
        assert!(s.report().declared_ready);
        // The next launch starts from not ready, whatever the last tenant left.
        s.prepare_launch(2, false);
        assert!(!s.notifies_entry() && !s.report().declared_ready);
        s.declared_ready.store(7, Ordering::Relaxed);
        assert!(!s.report().declared_ready);
    }

    #[test]
    fn a_spare_slot_carries_readiness_and_the_hand_over() {
        let s = zeroed_slot();
        s.assign();
        assert!(!s.report().ready);
        s.mark_ready();
        assert!(s.report().ready);
        assert_eq!(s.assigned(), None);
        s.hand_over(7);
        assert_eq!((s.assigned(), s.report().assigned), (Some(7), Some(7)));
        s.free();
        let r = s.report();
        assert_eq!((r.ready, r.assigned), (false, None));
    }

    // issue 15: status listeners
    #[test]
    fn a_client_slot_says_which_listener_it_serves_until_it_is_freed() {
        let s = zeroed_slot();
        s.assign();
        assert_eq!(s.report().serving, None);
        s.serve_listener(2);
        assert_eq!(s.report().serving, Some(2));
        s.free();
        assert_eq!(s.report().serving, None);
    }

    /// Everything in a child slot is the child's to scribble on: the report never takes a value
    /// outside its bounds, and a state word that holds no known code counts as the dead-man flag.
    #[test]
    fn a_scribbled_child_slot_reads_as_bounded_values_and_a_set_dead_man_flag() {
        let s = zeroed_slot();
        s.state.store(9, Ordering::Relaxed);
        s.pid.store(1, Ordering::Relaxed);
        s.launched_at_ns.store(5, Ordering::Relaxed);
        s.entered_at_ns.store(4, Ordering::Relaxed);
        s.ready.store(2, Ordering::Relaxed);
        s.reason.store_bytes(&[0xff; REASON_LEN]);
        let r = s.report();
        assert_eq!(
            r.state,
            Err(DecodeError {
                what: "child slot state",
                value: 9
            })
        );
        assert!(r.dead_man() && r.in_use());
        assert!(!r.claimed_by(1));
        assert_eq!((r.pid, r.launch_us, r.ready), (None, None, false));
        assert!(r.reason.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
        for pid in [0, -5, PID_MAX + 1] {
            s.pid.store(pid, Ordering::Relaxed);
            assert_eq!(s.report().pid, None, "{pid}");
        }
        s.pid.store(PID_MAX, Ordering::Relaxed);
        assert_eq!(s.report().pid, Some(PID_MAX));
    }
}
