//! Pids that children claim: the only way one reaches the supervisor's tables.
//!
//! Runs in: the supervisor (and the fork helper, which writes [`fork_record`]s).
//!
//! Invariants: a pid from a child slot is kept only if the kernel names the supervisor as its
//! parent; a pid from the fork helper's pipe (private to the two) without that look; any pid only
//! once per batch and only if the supervisor does not track it already ([`admit_pid`]).

use super::pid_in_range;

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

/// The last check before the supervisor tracks a pid a child claimed for `slot`. Today only the
/// fork helper's workers are known by a pid a child reports (a spare is handed work under the pid
/// the supervisor started it with); any later path that takes a pid from a child goes through
/// here too. A pid the supervisor already tracks (another worker, a spare, an adopted
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
    use crate::shared::protocol::PID_MAX;

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

    /// Even through its private pipe, the helper cannot hand over init or a number no pid has.
    #[test]
    fn a_reported_pid_outside_the_kernels_range_is_malformed() {
        let records = [rec(4, 1), rec(5, PID_MAX + 1)].concat();
        let out = run(&[4, 5], &records, &[], &[1, PID_MAX + 1]);
        assert_eq!(
            out[0],
            (
                4,
                Err("the fork helper reported 1 for child slot 4, neither a pid nor an errno".into())
            )
        );
        assert!(out[1].1.as_ref().unwrap_err().contains("neither a pid nor an errno"));
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
