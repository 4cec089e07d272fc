//! The shared-memory protocol: every number that stands for a state, a kind or a policy between
//! processes, and the one way the supervisor reads what a child may have written.
//!
//! Runs in: the supervisor (writes host states, worker status, hand-offs; reads child reports)
//! and every child (writes its own child slot; connection children decode status).
//!
//! Invariants:
//! - Every enum that crosses a process boundary as a number implements [`Code`], whose table is
//!   written once, below, with the `codes!` macro: nothing else in the host writes or reads those
//!   numbers. Decoding a number nobody encodes is a [`DecodeError`] that names the kind of value,
//!   never a panic and never a valid-looking default.
//! - The codes plugins send through the ABI (start times, restart kinds) are the ABI's own
//!   constants (`steward::abi`); a test pins them.
//! - A [`ChildSlot`]'s fields are private to this module. The supervisor reads a slot only through
//!   [`ChildSlot::report`], one bounded, checked copy; each side writes it only through the method
//!   named for its step of the hand-off (see the table in `shmem`'s header).
//! - A pid a child claims becomes one the supervisor tracks (and so may later signal) only through
//!   [`admit_pid`] (and, for the fork helper's batch, [`fork_helper_results`]): inside the
//!   kernel's pid range, not one it already tracks, and when shared memory is the only witness, a
//!   process whose parent is the supervisor.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use steward::abi;

use crate::config::LaunchMode;
use crate::lifecycle::{ExitStatus, WorkerState};
use crate::registry::{RestartPolicy, StartTime};
use crate::shmem::{Text, REASON_LEN};

/// A number read where only known codes belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value}")]
pub struct DecodeError {
    /// What the number stands for (`host state`, `worker state`, ...).
    pub what: &'static str,
    pub value: i64,
}

/// An enum stored or sent as a `u32`.
pub trait Code: Sized + Copy + 'static {
    /// What a value of this type is, for error messages.
    const WHAT: &'static str;
    /// Every value, in code order (for tests and for listing).
    const ALL: &'static [Self];
    fn encode(self) -> u32;
    fn decode(v: u32) -> Result<Self, DecodeError>;
}

/// Writes the one table of codes for an enum: `encode` and `decode` both come from it, so they
/// cannot disagree.
macro_rules! codes {
    ($ty:ty, $what:literal, { $($variant:path => $code:expr),+ $(,)? }) => {
        impl Code for $ty {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($variant),+];
            fn encode(self) -> u32 {
                match self {
                    $($variant => $code),+
                }
            }
            fn decode(v: u32) -> Result<Self, DecodeError> {
                $(if v == $code {
                    return Ok($variant);
                })+
                Err(DecodeError { what: $what, value: v.into() })
            }
        }
    };
}

/// Host states as the segment stores them and status names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    Init,
    Startup,
    Consistent,
    Running,
    Recovering,
    Stopping,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Init => "init",
            HostState::Startup => "startup",
            HostState::Consistent => "consistent",
            HostState::Running => "running",
            HostState::Recovering => "recovering",
            HostState::Stopping => "stopping",
        }
    }
}

codes!(HostState, "host state", {
    HostState::Init => 0,
    HostState::Startup => 1,
    HostState::Consistent => 2,
    HostState::Running => 3,
    HostState::Recovering => 4,
    HostState::Stopping => 5,
});

codes!(WorkerState, "worker state", {
    WorkerState::NotStarted => 0,
    WorkerState::Running => 1,
    WorkerState::WaitingRestart => 2,
    WorkerState::Stopped => 3,
    WorkerState::Failed => 4,
});

// The ABI's numbers: a plugin built with the SDK sends them, and the segment keeps them.
codes!(StartTime, "start time", {
    StartTime::HostStart => abi::START_HOST_START,
    StartTime::Consistent => abi::START_CONSISTENT,
    StartTime::Running => abi::START_RUNNING,
});

codes!(LaunchMode, "launch mode", {
    LaunchMode::Fork => 0,
    LaunchMode::Exec => 1,
});

/// Where a child slot is in its hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildSlotState {
    /// No child has it; only the supervisor takes it.
    Free,
    /// The supervisor gave it to a child about to start, or the child ended its work cleanly.
    Assigned,
    /// The child runs: its dead-man flag is set.
    Active,
}

codes!(ChildSlotState, "child slot state", {
    ChildSlotState::Free => 0,
    ChildSlotState::Assigned => 1,
    ChildSlotState::Active => 2,
});

/// The kind of a restart policy, as the ABI numbers it (`WorkerSpec::restart_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartKind {
    Never,
    After,
    Backoff,
}

codes!(RestartKind, "restart kind", {
    RestartKind::Never => abi::RESTART_NEVER,
    RestartKind::After => abi::RESTART_AFTER,
    RestartKind::Backoff => abi::RESTART_BACKOFF,
});

impl RestartKind {
    pub fn of(p: &RestartPolicy) -> RestartKind {
        match p {
            RestartPolicy::Never => RestartKind::Never,
            RestartPolicy::After(_) => RestartKind::After,
            RestartPolicy::Backoff { .. } => RestartKind::Backoff,
        }
    }
}

/// The restart policy an ABI worker spec asks for. Only the kind is decoded here; the bounds of
/// the delays are the registry's to check (`Registry::add_worker`).
pub fn restart_policy(spec: &abi::WorkerSpec) -> Result<RestartPolicy, DecodeError> {
    let us = std::time::Duration::from_micros;
    Ok(match RestartKind::decode(spec.restart_kind)? {
        RestartKind::Never => RestartPolicy::Never,
        RestartKind::After => RestartPolicy::After(us(spec.restart_delay_us)),
        RestartKind::Backoff => RestartPolicy::Backoff {
            initial: us(spec.restart_delay_us),
            factor_milli: spec.backoff_factor_milli,
            cap: us(spec.restart_cap_us),
            reset_after: us(spec.restart_reset_us),
        },
    })
}

/// The kind half of a stored exit: `0` means no exit is stored.
const EXIT_NONE: u32 = 0;
const EXIT_CODE: u32 = 1;
const EXIT_SIGNAL: u32 = 2;
/// The largest signal number Linux has (`SIGRTMAX`).
const MAX_SIGNAL: i32 = 64;

/// Encodes an exit, or its absence, as the (kind, value) pair status cells store.
pub fn encode_exit(e: Option<ExitStatus>) -> (u32, i32) {
    match e {
        None => (EXIT_NONE, 0),
        Some(ExitStatus::Code(c)) => (EXIT_CODE, c),
        Some(ExitStatus::Signal(s)) => (EXIT_SIGNAL, s),
    }
}

/// Decodes a stored exit. Only what a wait status can say is accepted: a code from 0 to 255, a
/// signal from 1 to `SIGRTMAX`.
pub fn decode_exit(kind: u32, value: i32) -> Result<Option<ExitStatus>, DecodeError> {
    match kind {
        EXIT_NONE => Ok(None),
        EXIT_CODE if (0..=255).contains(&value) => Ok(Some(ExitStatus::Code(value))),
        EXIT_SIGNAL if (1..=MAX_SIGNAL).contains(&value) => Ok(Some(ExitStatus::Signal(value))),
        EXIT_CODE => Err(DecodeError {
            what: "exit code",
            value: value.into(),
        }),
        EXIT_SIGNAL => Err(DecodeError {
            what: "exit signal",
            value: value.into(),
        }),
        _ => Err(DecodeError {
            what: "exit kind",
            value: kind.into(),
        }),
    }
}

/// Linux's `PID_MAX_LIMIT` on 64-bit systems: no pid is larger.
pub const PID_MAX: i32 = 4 * 1024 * 1024;

/// A pid as a claim must look: above 1 (init is never the supervisor's child) and within the
/// kernel's range.
pub fn pid_in_range(pid: i32) -> bool {
    (2..=PID_MAX).contains(&pid)
}

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
}

/// What a child slot said when the supervisor looked: a private copy, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildReport {
    pub state: Result<ChildSlotState, DecodeError>,
    /// The pid written there, when it is in the kernel's range. A claim, not proof: see
    /// [`admit_pid`].
    pub pid: Option<i32>,
    /// At most [`REASON_LEN`] bytes, invalid UTF-8 replaced.
    pub reason: String,
    /// Microseconds from the launch decision to the entry running, once the child got there.
    pub launch_us: Option<u64>,
    /// A spare's slot: the spare has loaded its plugins and waits.
    pub ready: bool,
    /// A spare's slot: the worker slot the supervisor handed it, if any.
    pub assigned: Option<u32>,
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
        }
    }

    // ---- the supervisor's side ----

    /// Records when the supervisor decided to launch this slot's child, clearing the child's
    /// entry time of a previous tenant.
    pub fn prepare_launch(&self, now_ns: u64) {
        self.entered_at_ns.store(0, Ordering::Relaxed);
        self.launched_at_ns.store(now_ns, Ordering::Relaxed);
    }

    /// Gives the slot to a child about to start, with no reason yet.
    pub fn assign(&self) {
        self.reason.store("");
        self.state.encode_store(ChildSlotState::Assigned);
    }

    /// Records the pid of the process the supervisor handed this slot to (a spare, before it
    /// claims the slot itself).
    pub fn expect_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Takes the slot back (supervisor only), with the spare fields cleared for the next tenant.
    pub fn free(&self) {
        self.assign.store(0, Ordering::Relaxed);
        self.ready.store(0, Ordering::Relaxed);
        self.state.encode_store(ChildSlotState::Free);
    }

    /// Hands worker slot `worker_slot` to the spare waiting on this slot, and wakes it.
    pub fn hand_over(&self, worker_slot: u32) {
        self.assign.store(worker_slot + 1, Ordering::Release);
        crate::sys::futex_wake(&self.assign);
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
    }

    /// A spare: plugins loaded, ready for a worker.
    pub fn mark_ready(&self) {
        self.ready.store(1, Ordering::Release);
    }

    /// A spare: the worker slot it was handed, if any yet (unchecked: the caller bounds it).
    pub fn assigned(&self) -> Option<u32> {
        self.assign.load(Ordering::Acquire).checked_sub(1)
    }

    /// A spare: blocks until [`ChildSlot::hand_over`] (or a signal) wakes it.
    pub fn wait_for_hand_over(&self) {
        crate::sys::futex_wait(&self.assign, 0, None);
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

/// Why a pid that a fork helper reported, or that a child slot holds, is not taken as a new
/// child's.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("child slot {slot} claims pid {pid}, which is not a child of the supervisor")]
    NotOwnChild { slot: u32, pid: i32 },
    #[error("child slot {slot} claims pid {pid}, already claimed for child slot {other}")]
    Duplicate { slot: u32, pid: i32, other: u32 },
    #[error("child slot {slot} claims pid {pid}, which is another child of the supervisor")]
    Tracked { slot: u32, pid: i32 },
    #[error("the fork helper reported {value} for child slot {slot}, neither a pid nor an errno")]
    Malformed { slot: u32, value: i32 },
    #[error("the fork helper ended early (wait status {status:#x})")]
    HelperEnded { status: i32 },
}

/// The last check before the supervisor tracks a pid a child claimed for `slot` (a spare, a
/// worker's slot, the fork helper): one it already tracks (another worker, a spare, an adopted
/// process) was forged in shared memory, and tracking it twice would let one child's exit be
/// taken for another's. `tracked` answers from the supervisor's own tables.
pub fn admit_pid(slot: u32, pid: i32, tracked: impl Fn(i32) -> bool) -> Result<i32, ClaimError> {
    if !pid_in_range(pid) {
        return Err(ClaimError::NotOwnChild { slot, pid });
    }
    if tracked(pid) {
        return Err(ClaimError::Tracked { slot, pid });
    }
    Ok(pid)
}

/// The fork helper's record for one slot: 8 bytes, the slot, then the pid or minus the errno (a
/// pipe takes 8 bytes at once, so a record is never torn).
pub fn fork_record(slot: u32, result: Result<i32, i32>) -> [u8; 8] {
    let v = match result {
        Ok(pid) => pid,
        Err(errno) => -errno,
    };
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&slot.to_ne_bytes());
    rec[4..].copy_from_slice(&v.to_ne_bytes());
    rec
}

/// Turns a fork helper's records ([`fork_record`]) into one result per slot of `batch`.
///
/// A record for a slot outside the batch, or a second record for a slot, is dropped; a slot the
/// helper did not report falls back to `slot_pid`, which reads shared memory that every worker
/// can write. A pid from there is kept only if `is_own_child` confirms the supervisor is its
/// parent, and any pid only if no other slot of the batch has it, so a forged one can never make
/// the supervisor signal a process that is not its child. A worker created but refused here is
/// still the supervisor's child: its next scan finds it as an adopted process, so it is neither
/// lost nor left running. The caller still checks each pid with [`admit_pid`].
pub fn fork_helper_results(
    batch: &[u32],
    records: &[u8],
    slot_pid: impl Fn(u32) -> Option<i32>,
    is_own_child: impl Fn(i32) -> bool,
    status: i32,
) -> Vec<(u32, std::io::Result<i32>)> {
    let mut reported: Vec<(u32, i32)> = Vec::with_capacity(batch.len());
    for rec in records.chunks_exact(8) {
        let slot = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let v = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
        if !batch.contains(&slot) {
            tracing::warn!("ignoring a fork helper's report for child slot {slot}, which it was not given");
            continue;
        }
        if reported.iter().any(|(s, _)| *s == slot) {
            tracing::warn!("ignoring a fork helper's second report for child slot {slot}");
            continue;
        }
        reported.push((slot, v));
    }
    let mut out: Vec<(u32, std::io::Result<i32>)> = Vec::with_capacity(batch.len());
    for &slot in batch {
        // Only a pid read from shared memory costs a look at /proc: the helper's pipe is private
        // to it and the supervisor (its workers close every fd they were not given), so what
        // arrives there was written by the supervisor's own code, and a batch of hundreds is not
        // slowed by hundreds of file reads.
        let (result, from_slot) = match reported.iter().find(|(s, _)| *s == slot).map(|(_, v)| *v) {
            Some(v) if pid_in_range(v) => (Ok(v), false),
            // An errno, as the helper writes it: minus a positive value below 4096.
            Some(v) if (-4095..0).contains(&v) => (Err(std::io::Error::from_raw_os_error(-v)), false),
            Some(value) => (Err(std::io::Error::other(ClaimError::Malformed { slot, value })), false),
            None => match slot_pid(slot) {
                Some(pid) => (Ok(pid), true),
                None => (Err(std::io::Error::other(ClaimError::HelperEnded { status })), false),
            },
        };
        let result = result.and_then(|pid| {
            if let Some(other) = out.iter().find(|(_, r)| r.as_ref().is_ok_and(|p| *p == pid)) {
                let other = other.0;
                return Err(std::io::Error::other(ClaimError::Duplicate { slot, pid, other }));
            }
            if from_slot && !is_own_child(pid) {
                return Err(std::io::Error::other(ClaimError::NotOwnChild { slot, pid }));
            }
            Ok(pid)
        });
        out.push((slot, result));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Code + PartialEq + std::fmt::Debug>() {
        let mut seen = Vec::new();
        for &v in T::ALL {
            let c = v.encode();
            assert!(!seen.contains(&c), "{}: code {c} used twice", T::WHAT);
            seen.push(c);
            assert_eq!(T::decode(c), Ok(v), "{}", T::WHAT);
        }
        // The smallest number no value uses, and the largest: refused, named.
        let unused = (0..).find(|c| !seen.contains(c)).expect("a free code");
        for bad in [unused, u32::MAX] {
            let e = T::decode(bad).unwrap_err();
            assert_eq!(
                e,
                DecodeError {
                    what: T::WHAT,
                    value: bad.into()
                }
            );
            assert_eq!(e.to_string(), format!("unknown {} {bad}", T::WHAT));
        }
    }

    #[test]
    fn every_code_round_trips_and_unknown_codes_are_refused() {
        round_trips::<HostState>();
        round_trips::<WorkerState>();
        round_trips::<StartTime>();
        round_trips::<LaunchMode>();
        round_trips::<ChildSlotState>();
        round_trips::<RestartKind>();
        assert_eq!(HostState::ALL.len(), 6);
        assert_eq!(WorkerState::ALL.len(), 5);
    }

    /// A plugin built with the SDK sends the ABI's numbers; the host must read them as the ABI
    /// means them.
    #[test]
    fn abi_codes_are_the_abis_constants() {
        assert_eq!(StartTime::HostStart.encode(), abi::START_HOST_START);
        assert_eq!(StartTime::Consistent.encode(), abi::START_CONSISTENT);
        assert_eq!(StartTime::Running.encode(), abi::START_RUNNING);
        assert_eq!(RestartKind::Never.encode(), abi::RESTART_NEVER);
        assert_eq!(RestartKind::After.encode(), abi::RESTART_AFTER);
        assert_eq!(RestartKind::Backoff.encode(), abi::RESTART_BACKOFF);
    }

    fn spec(kind: u32) -> abi::WorkerSpec {
        abi::WorkerSpec {
            name: abi::Str::EMPTY,
            worker_type: abi::Str::EMPTY,
            library: abi::Str::EMPTY,
            function: abi::Str::EMPTY,
            start_time: abi::START_RUNNING,
            restart_kind: kind,
            restart_delay_us: 10,
            arg: 0,
            extra: std::ptr::null(),
            extra_len: 0,
            backoff_factor_milli: 2000,
            crash_loop_max: 0,
            restart_cap_us: 40,
            restart_reset_us: 50,
            crash_loop_window_us: 0,
        }
    }

    #[test]
    fn restart_policies_decode_from_the_abi_by_kind() {
        let us = std::time::Duration::from_micros;
        for &kind in RestartKind::ALL {
            let p = restart_policy(&spec(kind.encode())).unwrap();
            assert_eq!(RestartKind::of(&p), kind);
        }
        assert_eq!(
            restart_policy(&spec(abi::RESTART_AFTER)),
            Ok(RestartPolicy::After(us(10)))
        );
        assert_eq!(
            restart_policy(&spec(abi::RESTART_BACKOFF)),
            Ok(RestartPolicy::Backoff {
                initial: us(10),
                factor_milli: 2000,
                cap: us(40),
                reset_after: us(50)
            })
        );
        assert_eq!(
            restart_policy(&spec(7)),
            Err(DecodeError {
                what: "restart kind",
                value: 7
            })
        );
    }

    #[test]
    fn exits_round_trip_and_what_no_wait_status_says_is_refused() {
        for e in [
            None,
            Some(ExitStatus::Code(0)),
            Some(ExitStatus::Code(255)),
            Some(ExitStatus::Signal(1)),
            Some(ExitStatus::Signal(64)),
        ] {
            let (k, v) = encode_exit(e);
            assert_eq!(decode_exit(k, v), Ok(e));
        }
        let refused = |k, v| decode_exit(k, v).unwrap_err().to_string();
        assert_eq!(refused(1, 256), "unknown exit code 256");
        assert_eq!(refused(1, -1), "unknown exit code -1");
        assert_eq!(refused(2, 0), "unknown exit signal 0");
        assert_eq!(refused(2, 65), "unknown exit signal 65");
        assert_eq!(refused(3, 1), "unknown exit kind 3");
    }

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
        s.prepare_launch(1_000_000);
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
        s.deactivate("done here");
        let r = s.report();
        assert!(!r.dead_man());
        assert_eq!(r.reason, "done here");
        s.free();
        assert_eq!(s.report().state, Ok(ChildSlotState::Free));
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

    /// A pid a spare (or any child) claims is checked against the supervisor's own tables before
    /// it is tracked: a pid already tracked, or out of range, is refused with the slot named.
    #[test]
    fn a_claimed_pid_is_admitted_only_if_the_supervisor_does_not_track_it() {
        let tracked = [100, 200];
        let is_tracked = |p| tracked.contains(&p);
        assert_eq!(admit_pid(3, 300, is_tracked).unwrap(), 300);
        assert_eq!(
            admit_pid(3, 200, is_tracked).unwrap_err().to_string(),
            "child slot 3 claims pid 200, which is another child of the supervisor"
        );
        for pid in [0, 1, -7, PID_MAX + 1] {
            assert_eq!(
                admit_pid(4, pid, is_tracked).unwrap_err().to_string(),
                format!("child slot 4 claims pid {pid}, which is not a child of the supervisor")
            );
        }
    }

    /// Results as (slot, pid or the error's text), for comparing.
    fn run(batch: &[u32], records: &[u8], in_slots: &[(u32, i32)], own: &[i32]) -> Vec<(u32, Result<i32, String>)> {
        let slot_pid = |s| {
            in_slots
                .iter()
                .find(|(x, _)| *x == s)
                .map(|(_, p)| *p)
                .filter(|p| pid_in_range(*p))
        };
        fork_helper_results(batch, records, slot_pid, |p| own.contains(&p), 0x9)
            .into_iter()
            .map(|(s, r)| (s, r.map_err(|e| e.to_string())))
            .collect()
    }

    fn rec(slot: u32, v: i32) -> [u8; 8] {
        fork_record(slot, if v < 0 { Err(-v) } else { Ok(v) })
    }

    #[test]
    fn reported_pids_of_own_children_are_kept_and_errnos_become_errors() {
        let records = [rec(4, 100), rec(5, -libc::EAGAIN)].concat();
        let out = run(&[4, 5], &records, &[], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(out[1].0, 5);
        let e = out[1].1.as_ref().unwrap_err();
        assert!(e.contains("Resource temporarily unavailable"), "{e}");
    }

    /// A worker may overwrite any child slot with any pid: one the supervisor did not create is
    /// refused, so it is never tracked, and so never signalled.
    #[test]
    fn a_pid_that_is_not_the_supervisors_child_is_refused() {
        // The helper reported slot 4 and ended before slot 5; slot 5 names a process that is not
        // the supervisor's child.
        let out = run(&[4, 5], &rec(4, 100), &[(5, 77)], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err("child slot 5 claims pid 77, which is not a child of the supervisor".into())
            )
        );
        // Init, or anything out of range, never gets as far as the check.
        let out = run(&[5], &[], &[(5, 1)], &[1]);
        assert_eq!(out[0], (5, Err("the fork helper ended early (wait status 0x9)".into())));
        // The helper's own report comes through its private pipe and is taken without a look
        // at /proc (here: a pid the check would refuse).
        let out = run(&[4], &rec(4, 100), &[], &[]);
        assert_eq!(out[0], (4, Ok(100)));
    }

    #[test]
    fn one_pid_is_taken_for_one_slot_only() {
        // Slot 5's worker wrote slot 4's pid into its own slot before the helper reported it.
        let out = run(&[4, 5], &rec(4, 100), &[(5, 100)], &[100]);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err("child slot 5 claims pid 100, already claimed for child slot 4".into())
            )
        );
    }

    #[test]
    fn records_for_other_slots_twice_or_out_of_range_are_ignored() {
        let raw = |slot: u32, v: i32| {
            let mut r = slot.to_ne_bytes().to_vec();
            r.extend_from_slice(&v.to_ne_bytes());
            r
        };
        let records = [raw(9, 300), raw(4, 100), raw(4, 200), raw(5, i32::MIN), raw(6, 0)].concat();
        let out = run(&[4, 5, 6, 7], &records, &[], &[100, 200, 300]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], (4, Ok(100)));
        assert_eq!(
            out[1],
            (
                5,
                Err(format!(
                    "the fork helper reported {} for child slot 5, neither a pid nor an errno",
                    i32::MIN
                ))
            )
        );
        assert!(out[2].1.as_ref().unwrap_err().contains("reported 0 for child slot 6"));
        // Not reported, and nothing in its slot.
        assert_eq!(out[3], (7, Err("the fork helper ended early (wait status 0x9)".into())));
    }
}
