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
//! - A [`ChildSlot`]'s fields are private to its module (`protocol/child_slot.rs`). The supervisor reads a slot only through
//!   [`ChildSlot::report`], one bounded, checked copy; each side writes it only through the method
//!   named for its step of the hand-off (see the table in `shmem`'s header).
//! - A pid a child claims becomes one the supervisor tracks (and so may later signal) only through
//!   [`admit_pid`] (and, for the fork helper's batch, [`fork_helper_results`]): inside the
//!   kernel's pid range, not one it already tracks, and when shared memory is the only witness, a
//!   process whose parent is the supervisor.

use steward::abi;

use crate::shared::config::LaunchMode;
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::registry::{Backoff, RestartPolicy, StartTime};

mod child_slot;
mod claims;
pub mod latch;

pub use child_slot::{ChildReport, ChildSlot};
pub use claims::{admit_pid, fork_helper_results, fork_record, ClaimError};

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
    // issue 14: readiness
    WorkerState::Starting => 5,
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
            RestartPolicy::Backoff(_) => RestartKind::Backoff,
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
        RestartKind::Backoff => RestartPolicy::Backoff(Backoff {
            initial: us(spec.restart_delay_us),
            factor_milli: spec.backoff_factor_milli,
            cap: us(spec.restart_cap_us),
            reset_after: us(spec.restart_reset_us),
        }),
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
        assert_eq!(WorkerState::ALL.len(), 6);
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
            Ok(RestartPolicy::Backoff(Backoff {
                initial: us(10),
                factor_milli: 2000,
                cap: us(40),
                reset_after: us(50)
            }))
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
}
