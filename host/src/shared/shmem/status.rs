//! Status publishing: what the supervisor tells connection children, under seqlocks.
//!
//! Runs in: the supervisor (the only writer: [`StatusCell::publish`], [`Published::publish`]) and
//! connection children (readers: [`StatusCell::read`], [`Published::read`]).
//!
//! Invariants: one writer per cell; a reader retries while the sequence number is odd or moved,
//! and gives up after a bounded number of tries (the writer may have died); every code a cell
//! holds is encoded and decoded through [`crate::shared::protocol`], and a cell holding one the
//! supervisor never writes reads as an error, never as a plausible status.

use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::{Text, REASON_LEN};
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::protocol::{decode_exit, encode_exit, Code, DecodeError};

/// The longest document [`Published`] holds.
pub const INFO_LEN: usize = 64 * 1024;

/// A JSON document only the supervisor writes, under a seqlock like [`StatusCell`]'s; connection
/// children copy it out.
#[repr(C)]
pub struct Published {
    seq: AtomicU64,
    text: Text<INFO_LEN>,
}

impl Published {
    /// Replaces the document (supervisor only: a single writer). Cut at `INFO_LEN` bytes: the
    /// writer keeps it shorter.
    pub fn publish(&self, doc: &str) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.text.store(doc);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy, or `None` when none was seen in a bounded number of tries (the writer
    /// may have died mid-write).
    pub fn read(&self) -> Option<Vec<u8>> {
        for _ in 0..10_000 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let bytes = self.text.load_bytes();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return Some(bytes);
            }
        }
        None
    }
}

/// How many past exits status keeps per worker.
pub const EXIT_HISTORY: usize = 5;

/// One past exit in a status cell.
#[repr(C)]
pub struct ExitRecord {
    kind: AtomicU32,
    value: AtomicI32,
    at_ms: AtomicU64,
    reason: Text<128>,
}

/// The supervisor-written status of one worker slot.
#[repr(C)]
pub struct StatusCell {
    seq: AtomicU64,
    state: AtomicU32,
    restarts: AtomicU32,
    pid: AtomicI32,
    exit_kind: AtomicU32,
    exit_value: AtomicI32,
    _pad: AtomicU32,
    started_at_ms: AtomicU64,
    exit_at_ms: AtomicU64,
    next_restart_at_ms: AtomicU64,
    /// Stored plus one, so that zeroed memory reads as "none".
    last_launch_us: AtomicU64,
    reason: Text<REASON_LEN>,
    n_history: AtomicU32,
    history: [ExitRecord; EXIT_HISTORY],
    // issue 14: readiness
    /// The worker a not-yet-started worker waits for (`worker A ready`); empty for none.
    waiting_for: Text<WAITING_FOR_LEN>,
    // issue 14: dynamic workers
    /// The generation of the worker this status is of (0: none yet), so a handle can tell its
    /// worker from a later tenant of the slot.
    generation: AtomicU64,
    // issue 14: queue
    /// The errno of the launch that failed, for a dynamic worker stopped by it (0: none).
    launch_errno: AtomicU32,
    _pad_errno: AtomicU32,
}

/// The longest `waiting_for` a status cell holds: "worker ", a name, " (failed)".
pub const WAITING_FOR_LEN: usize = 128;

/// A snapshot of one worker's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub state: WorkerState,
    pub restarts: u32,
    pub pid: Option<i32>,
    pub started_at_ms: Option<u64>,
    pub last_exit: Option<(ExitStatus, u64, String)>,
    pub next_restart_at_ms: Option<u64>,
    pub last_launch_us: Option<u64>,
    /// Past exits, newest first (at most [`EXIT_HISTORY`]).
    pub history: Vec<(ExitStatus, u64, String)>,
    /// For a worker not started yet: the worker it starts after that is not ready.
    pub waiting_for: Option<String>,
    /// The worker's generation (its key's): what a handle compares with its own.
    pub generation: u64,
    // issue 14: queue
    /// The errno of the launch that stopped a dynamic worker.
    pub launch_errno: Option<i32>,
}

impl StatusCell {
    /// Publishes a new status (supervisor only: a single writer).
    pub fn publish(&self, s: &StatusSnapshot) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.state.store(s.state.encode(), Ordering::Relaxed);
        self.restarts.store(s.restarts, Ordering::Relaxed);
        self.pid.store(s.pid.unwrap_or(0), Ordering::Relaxed);
        self.started_at_ms
            .store(s.started_at_ms.unwrap_or(0), Ordering::Relaxed);
        self.next_restart_at_ms
            .store(s.next_restart_at_ms.unwrap_or(0), Ordering::Relaxed);
        self.last_launch_us
            .store(s.last_launch_us.map_or(0, |v| v.saturating_add(1)), Ordering::Relaxed);
        let n = s.history.len().min(EXIT_HISTORY);
        for (rec, (st, at, reason)) in self.history.iter().zip(&s.history) {
            let (k, v) = encode_exit(Some(*st));
            rec.kind.store(k, Ordering::Relaxed);
            rec.value.store(v, Ordering::Relaxed);
            rec.at_ms.store(*at, Ordering::Relaxed);
            rec.reason.store(reason);
        }
        self.n_history.store(n as u32, Ordering::Relaxed);
        self.waiting_for.store(s.waiting_for.as_deref().unwrap_or(""));
        self.generation.store(s.generation, Ordering::Relaxed);
        self.launch_errno
            .store(s.launch_errno.unwrap_or(0) as u32, Ordering::Relaxed);
        let (k, v) = encode_exit(s.last_exit.as_ref().map(|(st, _, _)| *st));
        self.exit_kind.store(k, Ordering::Relaxed);
        if let Some((_, at, reason)) = &s.last_exit {
            self.exit_value.store(v, Ordering::Relaxed);
            self.exit_at_ms.store(*at, Ordering::Relaxed);
            self.reason.store(reason);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Reads a consistent snapshot (retries while the supervisor is writing; gives up after a
    /// bounded number of tries and returns what it saw, since the writer may have died). A code
    /// the supervisor never writes (a state, an exit) makes the whole snapshot an error: any
    /// process may have scribbled over the cell.
    pub fn read(&self) -> Result<StatusSnapshot, DecodeError> {
        let mut snap = None;
        for _ in 0..10_000 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let seen = self.read_once();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return seen;
            }
            snap = Some(seen);
        }
        snap.unwrap_or_else(|| self.read_once())
    }

    /// One pass over the fields, to be checked against the sequence number by [`Self::read`].
    fn read_once(&self) -> Result<StatusSnapshot, DecodeError> {
        let nz = |v: u64| (v != 0).then_some(v);
        let pid = self.pid.load(Ordering::Relaxed);
        let n = (self.n_history.load(Ordering::Relaxed) as usize).min(EXIT_HISTORY);
        let history = self.history[..n]
            .iter()
            .map(|r| {
                let (kind, value) = (r.kind.load(Ordering::Relaxed), r.value.load(Ordering::Relaxed));
                // A history record always holds an exit: "none" is as unknown as any other code.
                let st = decode_exit(kind, value)?.ok_or(DecodeError {
                    what: "exit kind",
                    value: kind.into(),
                })?;
                Ok((st, r.at_ms.load(Ordering::Relaxed), r.reason.load()))
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let last_exit = decode_exit(
            self.exit_kind.load(Ordering::Relaxed),
            self.exit_value.load(Ordering::Relaxed),
        )?
        .map(|st| (st, self.exit_at_ms.load(Ordering::Relaxed), self.reason.load()));
        Ok(StatusSnapshot {
            state: WorkerState::decode(self.state.load(Ordering::Relaxed))?,
            restarts: self.restarts.load(Ordering::Relaxed),
            pid: crate::shared::protocol::pid_in_range(pid).then_some(pid),
            started_at_ms: nz(self.started_at_ms.load(Ordering::Relaxed)),
            next_restart_at_ms: nz(self.next_restart_at_ms.load(Ordering::Relaxed)),
            last_launch_us: self.last_launch_us.load(Ordering::Relaxed).checked_sub(1),
            history,
            last_exit,
            waiting_for: Some(self.waiting_for.load()).filter(|w| !w.is_empty()),
            generation: self.generation.load(Ordering::Relaxed),
            launch_errno: Some(self.launch_errno.load(Ordering::Relaxed) as i32).filter(|&e| e != 0),
        })
    }
}
impl StatusCell {
    /// Where the worker-state word lies within a cell.
    pub const STATE_OFFSET: usize = std::mem::offset_of!(StatusCell, state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_seqlock() {
        let c: StatusCell = unsafe { std::mem::zeroed() };
        let s = StatusSnapshot {
            state: WorkerState::Failed,
            restarts: 3,
            pid: None,
            started_at_ms: Some(5),
            last_exit: Some((ExitStatus::Code(2), 9, "bad".into())),
            next_restart_at_ms: None,
            last_launch_us: Some(42),
            history: vec![
                (ExitStatus::Signal(11), 7, "crashed".into()),
                (ExitStatus::Code(1), 3, "again".into()),
            ],
            waiting_for: Some("worker a ready".into()),
            generation: 7,
            launch_errno: Some(11),
        };
        c.publish(&s);
        assert_eq!(c.read(), Ok(s));
    }

    /// Any process may write the status cells: a connection child that finds a code the
    /// supervisor never writes says so instead of showing a plausible status.
    #[test]
    fn a_scribbled_status_cell_reads_as_an_error() {
        // SAFETY: all atomics, valid as zeroes (as in a fresh segment).
        let c: StatusCell = unsafe { std::mem::zeroed() };
        c.publish(&StatusSnapshot::default());
        assert!(c.read().is_ok());
        c.state.store(77, Ordering::Relaxed);
        assert_eq!(c.read().unwrap_err().to_string(), "unknown worker state 77");
        c.state.store(0, Ordering::Relaxed);
        c.exit_kind.store(1, Ordering::Relaxed);
        c.exit_value.store(-3, Ordering::Relaxed);
        assert_eq!(c.read().unwrap_err().to_string(), "unknown exit code -3");
        c.exit_kind.store(0, Ordering::Relaxed);
        c.n_history.store(1, Ordering::Relaxed);
        assert_eq!(c.read().unwrap_err().to_string(), "unknown exit kind 0");
    }
}
