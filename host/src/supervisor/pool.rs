//! The child-slot pool: which child slot of the segment each new child gets.
//!
//! Runs in: the supervisor only. It performs no system call after [`ChildSlotPool::new`], takes
//! no lock and never reads shared memory: it is the supervisor's private account of which slots
//! it has handed out, and the segment's own per-slot state stays what children see.
//!
//! Owns: one bit per slot, in use or free, for each kind of child:
//!
//! | kind | slots | child slots ([`Layout`]) |
//! |---|---|---|
//! | worker | `n_worker_slots`: the static workers', then room for dynamic ones | `[0, W)`, worker slot `i` is child slot `i` |
//! | connection | `max_connections` ordinary, then the reserved ones | `[W, W + C)`, reserved at the end |
//! | startup | one | `W + C` |
//! | spare | the spare children's (both launch modes) | `W + C + 1 ..` |
//! | client | `max_client_connections` when there are listeners | after the spares' |
//! | dead-end | the control socket's `2 C + 8`, then the clients' `2 clients + 8`; no shared slot | none |
//!
//! Invariants:
//! - Every count comes from the layout computed once from the frozen registry and the config
//!   ([`Layout::for_host`]) and never changes; a pool's slots map to the segment's child slots
//!   exactly as [`Layout`] numbers them.
//! - A kind's pool hands out only its own slots, so no kind can starve another: a flood of
//!   connections or dead-ends leaves every worker slot, the startup slot and the spares' free.
//! - `acquire(Worker)` hands out only the slots past the static workers': a static worker's slot
//!   is its own even while it waits to restart, and is taken by [`ChildSlotPool::acquire_worker`].
//! - An ordinary connection slot is always taken before a reserved one, so the reserved ones stay
//!   free for an operator's `status` or `stop` for as long as possible.
//! - A slot is handed out by `acquire*` and given back by [`ChildSlotPool::release`], once. A
//!   [`ChildSlotId`] can only be made by this module and carries its kind, so a slot cannot be
//!   released as another kind's; releasing a free slot, or an id from a pool with another layout,
//!   returns an error and changes nothing (and fails a `debug_assert` in debug builds): a wrong
//!   book in the supervisor is logged, never a panic that takes the host down.
//! - Bits past a kind's last slot are always clear.
//!
//! Cost (decision 86): no allocation after `new`. Taking a given worker slot and releasing are a
//! few instructions; `acquire(kind)` and `in_use(kind)` test one 64-bit word per 64 slots of the
//! kind (16 words for a thousand workers), lowest slot first.
//!
//! The bits live in a [`PrivateVec`], which `fork` does not copy: the supervisor writes them on
//! every launch and every exit, and a page it shares copy-on-write with the child it just forked
//! would cost a page fault and a 4 KiB copy on each of those writes (2.5 to 3 us here, about 2 %
//! of a launch; decision 87).

use crate::shared::handoff::ChildKind;
use crate::shared::shmem::Layout;
use crate::supervisor::private::PrivateVec;

mod dead_ends;

pub use dead_ends::dead_end_capacity;

/// One kind's run of bits.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// The child slot of the span's first bit (meaningless for dead-ends, which have none).
    base: u32,
    /// Slots of the kind.
    len: u32,
    /// The first of the span's words in [`ChildSlotPool::bits`]; a span never shares a word.
    word: u32,
}

impl Span {
    fn words(self) -> std::ops::Range<usize> {
        self.word as usize..(self.word + self.len.div_ceil(64)) as usize
    }
}

/// A slot the pool handed out: its kind and, for every kind but dead-ends, its child slot in the
/// segment. Made only by [`ChildSlotPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildSlotId {
    kind: ChildKind,
    /// The child slot; for a dead-end, its place among the dead-ends.
    index: u32,
}

impl ChildSlotId {
    pub fn kind(self) -> ChildKind {
        self.kind
    }

    /// The child slot in the segment; `None` for a dead-end child, which maps no shared memory.
    pub fn child_slot(self) -> Option<u32> {
        (self.kind != ChildKind::DeadEnd).then_some(self.index)
    }

    /// The worker slot, for a worker's slot (the same number as its child slot).
    pub fn worker_slot(self) -> Option<u32> {
        (self.kind == ChildKind::Worker).then_some(self.index)
    }
}

impl std::fmt::Display for ChildSlotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.child_slot() {
            Some(s) => write!(f, "{} child slot {s}", self.kind.info().name),
            None => write!(f, "{} {} (no child slot)", self.kind.info().name, self.index),
        }
    }
}

/// A release the pool refused: the caller's bookkeeping is wrong, and the pool is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0} is not in use: released twice, or never acquired")]
    NotInUse(ChildSlotId),
    #[error("{0} is not one of this pool's slots of its kind")]
    NotOurs(ChildSlotId),
}

/// The supervisor's child slots, pooled by kind (see the module header).
pub struct ChildSlotPool {
    /// By [`kind_index`].
    spans: [Span; 6],
    /// Worker slots below this belong to the static workers.
    n_static_workers: u32,
    /// Connection slots below this (counted from the span's start) are ordinary; the rest are
    /// reserved.
    ordinary_connections: u32,
    /// Dead-end slots below this are the control socket's; the rest its listeners' clients'.
    control_dead_ends: u32,
    bits: PrivateVec<u64>,
}

/// Where each kind's span is in [`ChildSlotPool::spans`]; exhaustive, so a new kind of child
/// has to be given a pool.
fn kind_index(kind: ChildKind) -> usize {
    match kind {
        ChildKind::Worker => 0,
        ChildKind::Connection => 1,
        ChildKind::Startup => 2,
        ChildKind::Spare => 3,
        ChildKind::DeadEnd => 4,
        ChildKind::Client => 5,
    }
}

impl ChildSlotPool {
    /// The pool of a host: the reserved connection slots the control socket keeps for `status`
    /// and `stop`, and spares (in both launch modes).
    pub fn for_host(layout: &Layout) -> std::io::Result<ChildSlotPool> {
        ChildSlotPool::new(layout, crate::shared::control::RESERVED_CONNECTIONS, true)
    }

    /// A pool with every slot free: the last `reserved_connections` of the layout's connection
    /// slots (at most all of them) are reserved, and the spares' slots are used only if `spares`.
    pub fn new(layout: &Layout, reserved_connections: u32, spares: bool) -> std::io::Result<ChildSlotPool> {
        let w = layout.n_worker_slots;
        let c = layout.n_connection_slots;
        let control_dead_ends = dead_end_capacity(c);
        let lens = [
            (0, w),
            (layout.connection_child_slot(0), c),
            (layout.startup_child_slot(), 1),
            (
                layout.spare_child_slot(0),
                if spares { layout.n_spare_slots } else { 0 },
            ),
            (0, control_dead_ends + dead_ends::client_capacity(layout.n_client_slots)),
            (layout.client_child_slot(0), layout.n_client_slots),
        ];
        let mut word = 0;
        let spans = lens.map(|(base, len)| {
            let s = Span { base, len, word };
            word += len.div_ceil(64);
            s
        });
        Ok(ChildSlotPool {
            spans,
            n_static_workers: layout.n_static_workers.min(w),
            ordinary_connections: c - reserved_connections.min(c),
            control_dead_ends,
            bits: PrivateVec::from_vec(vec![0; word as usize])?,
        })
    }

    fn span(&self, kind: ChildKind) -> Span {
        self.spans[kind_index(kind)]
    }

    /// How many slots of `kind` there are.
    pub fn capacity(&self, kind: ChildKind) -> u32 {
        self.span(kind).len
    }

    /// How many slots of `kind` are handed out.
    pub fn in_use(&self, kind: ChildKind) -> u32 {
        // Bits past the span's end are clear, so whole words can be counted.
        self.bits[self.span(kind).words()].iter().map(|w| w.count_ones()).sum()
    }

    /// How many of the connection slots are reserved for an operator's `status` and `stop`.
    pub fn reserved_connections(&self) -> u32 {
        self.span(ChildKind::Connection).len - self.ordinary_connections
    }

    /// Whether `id` is a reserved connection slot (taken only when every ordinary one was).
    pub fn is_reserved(&self, id: ChildSlotId) -> bool {
        let s = self.span(ChildKind::Connection);
        id.kind == ChildKind::Connection && (s.base + self.ordinary_connections..s.base + s.len).contains(&id.index)
    }

    /// Takes the lowest free slot of `kind`: for a worker, one past the static workers'; for a
    /// connection, an ordinary one, or a reserved one when every ordinary one is taken; for a
    /// dead-end, one of the control socket's. `None` when the kind has none free.
    pub fn acquire(&mut self, kind: ChildKind) -> Option<ChildSlotId> {
        let s = self.span(kind);
        let pos = match kind {
            ChildKind::Worker => self.next(s, self.n_static_workers, s.len, false),
            ChildKind::Connection => self
                .next(s, 0, self.ordinary_connections, false)
                .or_else(|| self.next(s, self.ordinary_connections, s.len, false)),
            ChildKind::DeadEnd => self.next(s, 0, self.control_dead_ends, false),
            ChildKind::Startup | ChildKind::Spare | ChildKind::Client => self.next(s, 0, s.len, false),
        }?;
        self.set(s, pos, true);
        Some(self.id(kind, s, pos))
    }

    /// Takes the child slot of worker slot `worker_slot` (a static worker's, or a dynamic worker
    /// slot a requester filled). `None` if it is taken or past the worker slots.
    pub fn acquire_worker(&mut self, worker_slot: u32) -> Option<ChildSlotId> {
        let s = self.span(ChildKind::Worker);
        if worker_slot >= s.len || self.get(s, worker_slot) {
            return None;
        }
        self.set(s, worker_slot, true);
        Some(self.id(ChildKind::Worker, s, worker_slot))
    }

    /// Gives `id`'s slot back to its kind's pool. Misuse (a slot already free, an id from a pool
    /// with another layout) leaves the pool unchanged and returns why, for the caller to log; in
    /// debug builds it also fails an assertion, since it means the supervisor's books are wrong.
    pub fn release(&mut self, id: ChildSlotId) -> Result<(), ReleaseError> {
        let r = self.free(id);
        debug_assert!(r.is_ok(), "child-slot pool misuse: {r:?}");
        r
    }

    /// [`ChildSlotPool::release`] without the assertion.
    fn free(&mut self, id: ChildSlotId) -> Result<(), ReleaseError> {
        let s = self.span(id.kind);
        let pos = match id.kind {
            ChildKind::DeadEnd => Some(id.index),
            _ => id.index.checked_sub(s.base),
        }
        .filter(|p| *p < s.len)
        .ok_or(ReleaseError::NotOurs(id))?;
        if !self.get(s, pos) {
            return Err(ReleaseError::NotInUse(id));
        }
        self.set(s, pos, false);
        Ok(())
    }

    /// Whether `id`'s slot is handed out.
    pub fn is_in_use(&self, id: ChildSlotId) -> bool {
        let s = self.span(id.kind);
        let pos = match id.kind {
            ChildKind::DeadEnd => Some(id.index),
            _ => id.index.checked_sub(s.base),
        };
        pos.is_some_and(|p| p < s.len && self.get(s, p))
    }

    /// The free slots of `kind`, lowest first, without allocating (for a worker, every free
    /// worker slot, the static workers' too).
    pub fn free_slots(&self, kind: ChildKind) -> Slots<'_> {
        self.slots(kind, false)
    }

    /// The handed-out slots of `kind`, lowest first, without allocating.
    pub fn used_slots(&self, kind: ChildKind) -> Slots<'_> {
        self.slots(kind, true)
    }

    fn slots(&self, kind: ChildKind, used: bool) -> Slots<'_> {
        Slots {
            pool: self,
            kind,
            span: self.span(kind),
            pos: 0,
            used,
        }
    }

    fn id(&self, kind: ChildKind, s: Span, pos: u32) -> ChildSlotId {
        let index = match kind {
            ChildKind::DeadEnd => pos,
            _ => s.base + pos,
        };
        ChildSlotId { kind, index }
    }

    fn get(&self, s: Span, pos: u32) -> bool {
        self.bits[(s.word + pos / 64) as usize] & (1 << (pos % 64)) != 0
    }

    fn set(&mut self, s: Span, pos: u32, used: bool) {
        let w = &mut self.bits[(s.word + pos / 64) as usize];
        if used {
            *w |= 1 << (pos % 64);
        } else {
            *w &= !(1 << (pos % 64));
        }
    }

    /// The first position in `[from, to)` of span `s` whose bit is `used`.
    fn next(&self, s: Span, from: u32, to: u32, used: bool) -> Option<u32> {
        let mut pos = from;
        while pos < to {
            let w = self.bits[(s.word + pos / 64) as usize];
            let want = if used { w } else { !w } >> (pos % 64);
            if want != 0 {
                let found = pos + want.trailing_zeros();
                return (found < to).then_some(found);
            }
            pos = (pos / 64 + 1) * 64;
        }
        None
    }
}

/// The free or the handed-out slots of one kind (see [`ChildSlotPool::free_slots`]).
pub struct Slots<'a> {
    pool: &'a ChildSlotPool,
    kind: ChildKind,
    span: Span,
    pos: u32,
    used: bool,
}

impl Iterator for Slots<'_> {
    type Item = ChildSlotId;

    fn next(&mut self) -> Option<ChildSlotId> {
        let pos = self.pool.next(self.span, self.pos, self.span.len, self.used)?;
        self.pos = pos + 1;
        Some(self.pool.id(self.kind, self.span, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::config::Config;
    use crate::shared::registry::{Registry, RestartPolicy, StartTime, WorkerSpec};

    const KINDS: [ChildKind; 5] = [
        ChildKind::Worker,
        ChildKind::Connection,
        ChildKind::Startup,
        ChildKind::Spare,
        ChildKind::DeadEnd,
    ];

    fn registry(static_workers: usize) -> Registry {
        let mut reg = Registry::default();
        for i in 0..static_workers {
            reg.add_worker(WorkerSpec {
                name: format!("w{i}"),
                worker_type: "t".into(),
                plugin: "p".into(),
                library: "p".into(),
                function: "main_loop".into(),
                start_time: StartTime::Running,
                restart: RestartPolicy::Never,
                crash_loop: None,
                arg: 0,
                extra: vec![],
                needs_ready: false,
                isolated: false,
                start_after: vec![],
                stop_with_launcher: false,
            })
            .unwrap();
        }
        reg.freeze();
        reg
    }

    /// The layout and pool of a host with these settings, as [`ChildSlotPool::for_host`] makes
    /// them (with spares only for `mode` exec, so the pool without them stays covered), but also
    /// for `max_connections = 0`, which the config refuses and the layout allows.
    fn host(
        static_workers: usize,
        max_worker_processes: u32,
        max_connections: u32,
        mode: &str,
    ) -> (Layout, ChildSlotPool) {
        let reserved = crate::shared::control::RESERVED_CONNECTIONS;
        let layout = Layout::compute(
            &registry(static_workers),
            max_worker_processes,
            max_connections + reserved,
        );
        let pool = ChildSlotPool::new(&layout, reserved, mode == "exec").unwrap();
        (layout, pool)
    }

    fn drain(pool: &mut ChildSlotPool, kind: ChildKind) -> Vec<ChildSlotId> {
        std::iter::from_fn(|| pool.acquire(kind)).collect()
    }

    fn slots(ids: &[ChildSlotId]) -> Vec<Option<u32>> {
        ids.iter().map(|id| id.child_slot()).collect()
    }

    #[test]
    fn slots_map_to_the_child_slots_the_layout_numbers() {
        let reserved_n = crate::shared::control::RESERVED_CONNECTIONS;
        // (static workers, dynamic worker slots, connection slots with the reserved, spares)
        for (statics, dynamic, n_conn, spares) in [
            (3, 8, 4 + reserved_n, true),
            (3, 8, 4 + reserved_n, false),
            (0, 0, reserved_n, true),
            (2, 0, reserved_n, false),
            (0, 0, 0, true),
            (1, 3, 0, false),
            (70, 100, 130, true),
        ] {
            let layout = Layout::compute(&registry(statics), dynamic, n_conn);
            let mut pool = ChildSlotPool::new(&layout, reserved_n, spares).unwrap();
            let at = format!("{statics} static, {dynamic} dynamic, {n_conn} connection slots, spares {spares}");
            assert_eq!(layout.n_worker_slots, statics as u32 + dynamic, "{at}");

            // Every worker slot is its own child slot.
            let workers: Vec<_> = (0..layout.n_worker_slots)
                .map(|i| pool.acquire_worker(i).unwrap())
                .collect();
            for (i, id) in workers.iter().enumerate() {
                assert_eq!(
                    (id.child_slot(), id.worker_slot()),
                    (Some(i as u32), Some(i as u32)),
                    "{at}"
                );
            }
            assert_eq!(pool.acquire_worker(layout.n_worker_slots), None, "{at}");

            let conn = drain(&mut pool, ChildKind::Connection);
            let want: Vec<_> = (0..n_conn).map(|i| Some(layout.connection_child_slot(i))).collect();
            assert_eq!(slots(&conn), want, "{at}");
            // The reserved ones are the last, as the connection child tells them.
            let ordinary = n_conn.saturating_sub(reserved_n) as usize;
            let reserved: Vec<_> = conn.iter().map(|id| pool.is_reserved(*id)).collect();
            let want: Vec<_> = (0..conn.len()).map(|i| i >= ordinary).collect();
            assert_eq!(reserved, want, "{at}");

            let startup = drain(&mut pool, ChildKind::Startup);
            assert_eq!(slots(&startup), [Some(layout.startup_child_slot())], "{at}");

            let spare = drain(&mut pool, ChildKind::Spare);
            let want: Vec<_> = match spares {
                true => (0..layout.n_spare_slots)
                    .map(|k| Some(layout.spare_child_slot(k)))
                    .collect(),
                false => vec![],
            };
            assert_eq!(slots(&spare), want, "{at}");

            // Together the kinds use every child slot the segment has (but the spares' when
            // there are none), and none twice.
            let mut all: Vec<u32> = [workers, conn, startup, spare]
                .concat()
                .iter()
                .filter_map(|id| id.child_slot())
                .collect();
            all.sort();
            all.dedup();
            let n_child = layout.n_worker_slots + layout.n_connection_slots + 1 + layout.n_spare_slots;
            let unused = if spares { 0 } else { layout.n_spare_slots };
            assert_eq!(all.len() as u32, n_child - unused, "{at}");
            assert!(all.iter().all(|s| *s < n_child), "{at}");

            let dead = drain(&mut pool, ChildKind::DeadEnd);
            assert_eq!(dead.len() as u32, dead_end_capacity(n_conn), "{at}");
            assert!(dead.iter().all(|id| id.child_slot().is_none()), "{at}");
        }
    }

    #[test]
    fn a_host_reserves_connections_for_the_operator_and_has_spares_in_both_modes() {
        for mode in ["fork", "exec"] {
            let text = format!("[host]\npreload_plugins = []\nmax_connections = 3\nlaunch_mode = \"{mode}\"\n");
            let cfg = Config::parse(std::path::Path::new("steward.toml"), &text).unwrap();
            let layout = Layout::for_host(&registry(2), &cfg);
            let pool = ChildSlotPool::for_host(&layout).unwrap();
            let reserved = crate::shared::control::RESERVED_CONNECTIONS;
            assert_eq!(pool.capacity(ChildKind::Connection), 3 + reserved, "{mode}");
            assert_eq!(pool.reserved_connections(), reserved, "{mode}");
            assert_eq!(pool.capacity(ChildKind::Spare), layout.n_spare_slots, "{mode}");
            assert_eq!(pool.capacity(ChildKind::Worker), layout.n_worker_slots, "{mode}");
        }
    }

    #[test]
    fn each_kind_is_bounded_by_its_own_count() {
        let (layout, mut pool) = host(2, 5, 3, "exec");
        let want = [
            (ChildKind::Worker, 7),
            (ChildKind::Connection, 3 + crate::shared::control::RESERVED_CONNECTIONS),
            (ChildKind::Startup, 1),
            (ChildKind::Spare, layout.n_spare_slots),
            (ChildKind::DeadEnd, dead_end_capacity(layout.n_connection_slots)),
        ];
        for (kind, n) in want {
            assert_eq!(pool.capacity(kind), n, "{kind:?}");
            for i in 0..n {
                assert_eq!(pool.in_use(kind), i, "{kind:?}");
                let id = match kind {
                    ChildKind::Worker => pool.acquire_worker(i),
                    _ => pool.acquire(kind),
                };
                assert_eq!(id.map(|id| id.kind()), Some(kind));
            }
            assert_eq!(pool.in_use(kind), n, "{kind:?}");
            assert_eq!(pool.acquire(kind), None, "{kind:?} past its count");
            assert_eq!(pool.free_slots(kind).count(), 0, "{kind:?}");
        }
    }

    #[test]
    fn reserved_connection_slots_are_taken_last() {
        let (layout, mut pool) = host(0, 0, 3, "fork");
        assert_eq!(
            pool.reserved_connections(),
            crate::shared::control::RESERVED_CONNECTIONS
        );
        let ordinary = [0, 1, 2].map(|_| pool.acquire(ChildKind::Connection).unwrap());
        assert!(ordinary.iter().all(|id| !pool.is_reserved(*id)));
        let reserved = pool.acquire(ChildKind::Connection).unwrap();
        assert!(pool.is_reserved(reserved));
        assert_eq!(reserved.child_slot(), Some(layout.connection_child_slot(3)));
        assert_eq!(pool.acquire(ChildKind::Connection), None);

        // With an ordinary slot and the reserved one free again, the ordinary one goes first.
        pool.release(reserved).unwrap();
        pool.release(ordinary[1]).unwrap();
        assert_eq!(pool.acquire(ChildKind::Connection), Some(ordinary[1]));
        assert_eq!(pool.acquire(ChildKind::Connection), Some(reserved));

        // No ordinary connections at all: the reserved one still serves the operator.
        let (_, mut pool) = host(0, 0, 0, "fork");
        let id = pool.acquire(ChildKind::Connection).unwrap();
        assert!(pool.is_reserved(id));
    }

    #[test]
    fn a_released_slot_is_reused_lowest_first() {
        let (_, mut pool) = host(0, 200, 0, "fork");
        let ids = drain(&mut pool, ChildKind::Worker);
        assert_eq!(ids.len(), 200);
        // Across word boundaries: 3, 64, 130 come back in order whatever order they were freed in.
        for i in [130, 3, 64] {
            pool.release(ids[i]).unwrap();
        }
        assert_eq!(pool.in_use(ChildKind::Worker), 197);
        let free: Vec<_> = pool.free_slots(ChildKind::Worker).map(|id| id.worker_slot()).collect();
        assert_eq!(free, [Some(3), Some(64), Some(130)]);
        assert_eq!(pool.used_slots(ChildKind::Worker).count(), 197);
        assert_eq!(drain(&mut pool, ChildKind::Worker), [ids[3], ids[64], ids[130]]);

        let d = pool.acquire(ChildKind::DeadEnd).unwrap();
        pool.release(d).unwrap();
        assert_eq!(pool.acquire(ChildKind::DeadEnd), Some(d));
    }

    #[test]
    fn dynamic_workers_never_get_a_static_workers_slot() {
        let (_, mut pool) = host(3, 2, 1, "fork");
        // All three static workers wait to restart: their slots are free but not for anyone else.
        assert_eq!(slots(&drain(&mut pool, ChildKind::Worker)), [Some(3), Some(4)]);
        assert_eq!(pool.free_slots(ChildKind::Worker).count(), 3);
        for i in 0..3 {
            assert_eq!(pool.acquire_worker(i).and_then(|id| id.worker_slot()), Some(i));
            assert_eq!(pool.acquire_worker(i), None, "worker slot {i} is taken");
        }
    }

    #[test]
    fn no_kind_starves_another() {
        let (layout, mut pool) = host(4, 4, 2, "exec");
        // A flood of clients: every connection slot and every dead-end taken.
        drain(&mut pool, ChildKind::Connection);
        drain(&mut pool, ChildKind::DeadEnd);
        assert_eq!(pool.acquire(ChildKind::Connection), None);
        assert!(pool.acquire(ChildKind::Startup).is_some());
        assert_eq!(drain(&mut pool, ChildKind::Spare).len() as u32, layout.n_spare_slots);
        assert_eq!(drain(&mut pool, ChildKind::Worker).len(), 4);
        assert!((0..4).all(|i| pool.acquire_worker(i).is_some()));

        // And the other way round: every worker running leaves connections their slots.
        let (layout, mut pool) = host(4, 4, 2, "exec");
        assert!((0..layout.n_worker_slots).all(|i| pool.acquire_worker(i).is_some()));
        drain(&mut pool, ChildKind::Spare);
        assert_eq!(
            drain(&mut pool, ChildKind::Connection).len() as u32,
            layout.n_connection_slots
        );
    }

    #[test]
    fn misuse_changes_nothing_and_says_why() {
        let (_, mut pool) = host(1, 1, 1, "exec");
        let w = pool.acquire_worker(0).unwrap();
        let c = pool.acquire(ChildKind::Connection).unwrap();
        pool.free(w).unwrap();
        assert_eq!(pool.free(w), Err(ReleaseError::NotInUse(w)));
        assert!(pool.free(w).unwrap_err().to_string().contains("worker child slot 0"));
        assert_eq!(pool.in_use(ChildKind::Worker), 0);
        assert!(pool.is_in_use(c));

        // An id of a pool with a bigger layout names slots this one does not have.
        let (_, mut big) = host(1, 50, 50, "exec");
        let far = big.acquire_worker(40).unwrap();
        assert_eq!(pool.free(far), Err(ReleaseError::NotOurs(far)));
        let far = drain(&mut big, ChildKind::Connection).pop().unwrap();
        assert_eq!(pool.free(far), Err(ReleaseError::NotOurs(far)));
        assert!(!pool.is_in_use(far));
        // A dead-end never names a child slot, so it cannot be mistaken for one.
        let d = pool.acquire(ChildKind::DeadEnd).unwrap();
        assert_eq!(d.child_slot(), None);
        assert!(d.to_string().contains("no child slot"));
        assert!(pool.is_in_use(c));
        assert_eq!(pool.in_use(ChildKind::Connection), 1);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "child-slot pool misuse")]
    fn releasing_twice_is_loud_in_debug_builds() {
        let (_, mut pool) = host(1, 0, 0, "fork");
        let w = pool.acquire_worker(0).unwrap();
        pool.release(w).unwrap();
        let _ = pool.release(w);
    }

    /// A mixed run against a plain list of flags per kind.
    #[test]
    fn agrees_with_a_list_of_flags_through_a_long_mixed_run() {
        let (_, mut pool) = host(5, 90, 70, "exec");
        let mut model: Vec<Vec<bool>> = KINDS.iter().map(|k| vec![false; pool.capacity(*k) as usize]).collect();
        let mut held: Vec<ChildSlotId> = Vec::new();
        let mut x: u64 = 7;
        for step in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let kind = KINDS[(x >> 33) as usize % KINDS.len()];
            let k = kind_index(kind);
            let pos_of = |id: ChildSlotId, pool: &ChildSlotPool| match id.kind() {
                ChildKind::DeadEnd => id.index,
                _ => id.index - pool.span(id.kind()).base,
            };
            match (x >> 40) % 4 {
                0 | 1 => {
                    let got = pool.acquire(kind);
                    let from = if kind == ChildKind::Worker { 5 } else { 0 };
                    let flags = &mut model[k];
                    let ordinary = if kind == ChildKind::Connection { 70 } else { flags.len() };
                    let want = (from..ordinary)
                        .find(|i| !flags[*i])
                        .or_else(|| (ordinary..flags.len()).find(|i| !flags[*i]));
                    assert_eq!(got.map(|id| pos_of(id, &pool) as usize), want, "step {step}");
                    if let (Some(id), Some(i)) = (got, want) {
                        flags[i] = true;
                        held.push(id);
                    }
                }
                2 if kind == ChildKind::Worker => {
                    let i = (x >> 20) as u32 % 95;
                    let got = pool.acquire_worker(i);
                    assert_eq!(got.is_some(), !model[k][i as usize], "step {step}");
                    if let Some(id) = got {
                        model[k][i as usize] = true;
                        held.push(id);
                    }
                }
                _ if !held.is_empty() => {
                    let id = held.swap_remove((x >> 20) as usize % held.len());
                    let i = pos_of(id, &pool) as usize;
                    pool.release(id).unwrap();
                    model[kind_index(id.kind())][i] = false;
                }
                _ => {}
            }
            if step % 97 == 0 {
                for kind in KINDS {
                    let flags = &model[kind_index(kind)];
                    assert_eq!(pool.in_use(kind) as usize, flags.iter().filter(|f| **f).count());
                    let free: Vec<_> = pool.free_slots(kind).map(|id| pos_of(id, &pool) as usize).collect();
                    let want: Vec<_> = (0..flags.len()).filter(|i| !flags[*i]).collect();
                    assert_eq!(free, want, "{kind:?} at step {step}");
                }
            }
        }
    }
}
