//! Worker handles by name (issue 14: control): the scan of the worker slots behind
//! `WorkerHandle::by_name` and `steward terminate NAME`.
//!
//! Runs in: any process attached to the segment (workers, connection children).
//!
//! Owns: nothing; it reads worker slots the supervisor writes.
//!
//! Invariants: every byte read is untrusted and bounded; a slot is taken only when one tenant
//! held it through the whole read (see [`live_named`]); a stopped or failed worker is not live;
//! a name two live workers share gives no handle.

use std::sync::atomic::Ordering;

use super::attached;
use crate::shared::lifecycle::WorkerState;
use crate::shared::shmem::Segment;

/// Why [`by_name`] gave no handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByNameFail {
    #[error("worker handles work only in processes attached to the segment (workers, connection children)")]
    Unavailable,
    #[error("{name:?} names more than one live worker (slots {slots:?}): not resolved to one of them")]
    Ambiguous { name: String, slots: Vec<u32> },
}

/// How many times [`by_name_in`] reads a slot again when a writer moved under it.
const BY_NAME_TRIES: u32 = 8;

/// The handle of the live worker named `name` (static or dynamic), from this process's mapping.
pub fn by_name(name: &str) -> Result<Option<(u32, u64)>, ByNameFail> {
    let (seg, _) = attached().ok_or(ByNameFail::Unavailable)?;
    by_name_in(seg, name)
}

/// As [`by_name`], in `seg`: scans the worker slots in use. Every name is a bounded copy out of
/// the segment, and a slot whose status does not read (a writer mid-update, or scribbled bytes)
/// is passed over rather than trusted. A worker that stopped or failed is not live, and a name
/// two live workers share is refused rather than resolved to the first.
pub fn by_name_in(seg: &Segment, name: &str) -> Result<Option<(u32, u64)>, ByNameFail> {
    if name.is_empty() || name.len() > steward::abi::MAX_NAME_LEN {
        return Ok(None);
    }
    let found: Vec<(u32, u64)> = (0..seg.layout.n_worker_slots)
        .filter_map(|i| live_named(seg, i, name.as_bytes()))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(ByNameFail::Ambiguous {
            name: name.to_owned(),
            slots: many.iter().map(|(i, _)| *i).collect(),
        }),
    }
}

/// Worker slot `i`'s handle if one tenant, live and named `name`, held it through the whole
/// read. `in_use`, the name and the status are three writes the supervisor makes one after the
/// other (`publish_launched`: name, then the status with the new generation, then `in_use`,
/// release; `retire_worker` clears `in_use` first), so the reader brackets them: generation,
/// `in_use`, name, `in_use`, generation. The same generation at both ends with `in_use` set at
/// both reads means no retire or reuse happened in between, so the name read is this tenant's.
fn live_named(seg: &Segment, i: u32, name: &[u8]) -> Option<(u32, u64)> {
    let s = seg.worker_slot(i);
    for _ in 0..BY_NAME_TRIES {
        let Ok(first) = s.status.read() else { continue };
        if s.in_use.load(Ordering::Acquire) == 0 {
            return None;
        }
        let matches = s.name.load_bytes() == name;
        between_reads();
        let still = s.in_use.load(Ordering::Acquire) != 0;
        let Ok(second) = s.status.read() else { continue };
        if !still {
            return None;
        }
        if first.generation != second.generation {
            continue;
        }
        let live = !matches!(second.state, WorkerState::Stopped | WorkerState::Failed);
        return (matches && live && second.generation != 0).then_some((i, second.generation));
    }
    None
}

#[cfg(test)]
thread_local! {
    /// A test's writer, run by [`live_named`] between its reads to force an interleaving.
    static BETWEEN: std::cell::RefCell<Option<Box<dyn FnMut()>>> = const { std::cell::RefCell::new(None) };
}

fn between_reads() {
    #[cfg(test)]
    BETWEEN.with(|b| {
        if let Some(f) = b.borrow_mut().as_mut() {
            f()
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::registry::WorkerSpec;

    fn segment(n: u32) -> Segment {
        let layout = crate::shared::shmem::Layout::compute(&crate::shared::registry::Registry::default(), n, 1);
        let cfg =
            crate::shared::config::Config::parse(std::path::Path::new("t.toml"), "[host]\npreload_plugins = []\n")
                .unwrap();
        Segment::create(&layout, &[], &[], &cfg, 1, 0).unwrap()
    }

    fn set_status(seg: &Segment, i: u32, generation: u64, state: WorkerState) {
        seg.worker_slot(i)
            .status
            .publish(&crate::shared::shmem::StatusSnapshot {
                generation,
                state,
                ..Default::default()
            });
    }

    fn named(name: &str) -> WorkerSpec {
        let mut w = super::super::tests::spec();
        w.name = name.into();
        w
    }

    #[test]
    fn by_name_never_pairs_a_name_with_another_tenants_generation() {
        let seg = segment(2);
        // Slot 1 holds "w" (generation 7). While the reader is between its reads, the worker
        // stops and the slot gets a new tenant "x" (generation 9), published in the
        // supervisor's order: retire, registration, status, hand-over.
        seg.publish_launched(1, &named("w"), "control");
        set_status(&seg, 1, 7, WorkerState::Running);
        let seg_ref: &'static Segment = Box::leak(Box::new(seg));
        let mut once = Some(());
        BETWEEN.with(|b| {
            *b.borrow_mut() = Some(Box::new(move || {
                if once.take().is_some() {
                    seg_ref.retire_worker(1);
                    seg_ref.write_registration(1, &named("x"), "control");
                    set_status(seg_ref, 1, 9, WorkerState::Running);
                    seg_ref.hand_over(1);
                }
            }))
        });
        let got = by_name_in(seg_ref, "w");
        BETWEEN.with(|b| *b.borrow_mut() = None);
        assert_eq!(got, Ok(None), "the handle of x given for w");
        assert_eq!(by_name_in(seg_ref, "x"), Ok(Some((1, 9))));
    }

    #[test]
    fn a_reused_slot_shows_its_new_name_only_with_its_new_generation() {
        // Each state the supervisor's publication of a new tenant passes through.
        let seg = segment(2);
        seg.publish_launched(1, &named("w"), "control");
        set_status(&seg, 1, 7, WorkerState::Stopped);
        seg.retire_worker(1);
        seg.write_registration(1, &named("x"), "control");
        assert_eq!(by_name_in(&seg, "x"), Ok(None));
        set_status(&seg, 1, 9, WorkerState::NotStarted);
        assert_eq!(by_name_in(&seg, "x"), Ok(None));
        seg.hand_over(1);
        assert_eq!(by_name_in(&seg, "x"), Ok(Some((1, 9))));
    }

    #[test]
    fn by_name_passes_over_a_slot_retired_while_it_read() {
        let seg = segment(2);
        seg.publish_launched(1, &named("job"), "control");
        set_status(&seg, 1, 9, WorkerState::Running);
        let seg_ref: &'static Segment = Box::leak(Box::new(seg));
        BETWEEN.with(|b| *b.borrow_mut() = Some(Box::new(move || seg_ref.retire_worker(1))));
        let got = by_name_in(seg_ref, "job");
        BETWEEN.with(|b| *b.borrow_mut() = None);
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn by_name_skips_stopped_workers_and_refuses_an_ambiguous_name() {
        let seg = segment(4);
        for (i, state) in [
            (0, WorkerState::Stopped),
            (1, WorkerState::Failed),
            (2, WorkerState::Running),
        ] {
            seg.publish_launched(i, &named("w"), "");
            set_status(&seg, i, 10 + i as u64, state);
        }
        // A stopped static worker keeps `in_use`, but does not shadow the live one.
        assert_eq!(by_name_in(&seg, "w"), Ok(Some((2, 12))));
        set_status(&seg, 2, 12, WorkerState::Stopped);
        assert_eq!(by_name_in(&seg, "w"), Ok(None));
        set_status(&seg, 2, 12, WorkerState::Running);
        seg.publish_launched(3, &named("w"), "control");
        set_status(&seg, 3, 13, WorkerState::Starting);
        let e = by_name_in(&seg, "w").unwrap_err();
        assert_eq!(
            e,
            ByNameFail::Ambiguous {
                name: "w".into(),
                slots: vec![2, 3]
            }
        );
        assert!(e.to_string().contains("slots [2, 3]"), "{e}");
    }
}
