//! The cells behind latches and activity lines, kept in each child slot: [`LatchCell`] (is the
//! latch set, is its owner asleep on it, who owns it, which tenancy of the slot) and
//! [`ActivityCell`] (one line of a worker's own state, for status).
//!
//! Runs in: every child that maps the segment (an owner arms and waits on its own cell; any child
//! sets another's), and the supervisor, which starts each tenancy ([`LatchCell::new_tenant`]) and
//! ends it when it reaps the owner ([`LatchCell::owner_gone`]).
//!
//! Invariants:
//! - `word` holds the slot's tenancy (epoch, high 32 bits) and the set flag (bit 0) in one atomic,
//!   so a set is one compare-and-swap that either hits the tenant its handle names or nothing: a
//!   stale handle never sets a new tenant's latch. An isolated tenancy, whose owner cannot reset
//!   the flag, counts its sets in bits 1..32 of the same word instead, so a set is counted by one
//!   compare-and-swap that checks the epoch too: a stale set never counts on the next tenant.
//! - The set flag is only cleared by the owner (`take`) or a new tenancy; a set that comes before
//!   the owner waits is kept. Sets coalesce.
//! - PostgreSQL's `maybe_sleeping` handshake: the setter sets the flag, then (after a `SeqCst`
//!   fence) reads `waiting`; the owner stores `waiting`, then (after a fence) reads the flag. One
//!   of them sees the other, so a set is never lost and a busy owner costs no signal.
//! - Everything here is writable by every child: the owner pid is a claim, checked for range
//!   before anyone signals it; the activity text is bounded and read under a seqlock with a
//!   bounded number of tries.

use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::pid_in_range;
use crate::shared::shmem::Text;

/// Longest activity line, in bytes.
pub const ACTIVITY_LEN: usize = 256;

const SET: u64 = 1;
// issue 15: isolated
/// One set of an isolated tenancy, counted in `word` above the flag.
const ONE_SET: u64 = 2;
/// The bits of `word` that count an isolated tenancy's sets.
const SETS: u64 = 0xFFFF_FFFE;

/// A latch's raw handle: the child slot plus one (so 0 is "no latch") in the low half, the
/// tenancy's epoch in the high half.
pub fn encode_handle(child_slot: u32, epoch: u32) -> u64 {
    ((epoch as u64) << 32) | (child_slot as u64 + 1)
}

/// The child slot and epoch a raw handle names, or `None` for 0 (and for a slot number that
/// cannot be one).
pub fn decode_handle(raw: u64) -> Option<(u32, u32)> {
    let slot = (raw as u32).checked_sub(1)?;
    Some((slot, (raw >> 32) as u32))
}

/// What a set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The handle names an earlier (or no) tenancy: nothing was touched.
    Stale,
    /// The latch was already set: the owner has not looked yet and will see it.
    AlreadySet,
    /// The latch is set now; the owner must be woken: `Some(pid)` when it sleeps on the latch or
    /// asked to be signalled on every set (and claims a pid in range), `None` when it is busy and
    /// will see the flag before it sleeps.
    Set { wake: Option<i32> },
}

/// One child slot's latch. All zeros (a fresh segment) is "epoch 0, not set, no owner".
#[repr(C, align(64))]
pub struct LatchCell {
    /// `epoch << 32 | sets << 1 | set` (`sets`: an isolated tenancy's count of sets).
    word: AtomicU64,
    /// 1 while the owner sleeps in `wait` on this latch.
    waiting: AtomicU32,
    /// 1 once the owner handed out its latch fd: every set must signal it, since it may be
    /// asleep in code the host does not see (an async runtime's poll).
    always_signal: AtomicU32,
    /// The owner's pid (0: none; the supervisor clears it when it reaps the owner).
    owner_pid: AtomicI32,
    // issue 15: isolated
    /// Non-zero: the tenancy's owner is an isolated worker, this pid, adopted by the supervisor
    /// (the owner maps the cell read-only and cannot claim it, nor reset the flag). Sets then
    /// count in `word` and always signal this pid; the owner remembers privately how many it
    /// has seen.
    isolated_pid: AtomicU32,
}

impl LatchCell {
    // ---- the supervisor's side ----

    /// Starts a new tenancy of the slot: a new epoch (never 0, so no handle taken from a zeroed
    /// slot matches), the flag clear, no owner yet. Every handle to an earlier tenancy is stale
    /// from here on.
    pub fn new_tenant(&self) {
        self.isolated_pid.store(0, Ordering::Relaxed);
        self.owner_pid.store(0, Ordering::Relaxed);
        self.waiting.store(0, Ordering::Relaxed);
        self.always_signal.store(0, Ordering::Relaxed);
        self.next_epoch();
    }

    /// The owner was reaped: its tenancy ends (every handle to it is stale: a set answers so
    /// instead of setting a latch nobody will read), and no set may signal its pid, which the
    /// kernel may give to another process.
    pub fn owner_gone(&self) {
        self.isolated_pid.store(0, Ordering::Release);
        self.owner_pid.store(0, Ordering::Release);
        self.next_epoch();
    }

    /// Moves to the next epoch (never 0), with the flag clear.
    fn next_epoch(&self) {
        let epoch = (self.word.load(Ordering::Relaxed) >> 32) as u32;
        let next = epoch.wrapping_add(1).max(1);
        self.word.store((next as u64) << 32, Ordering::SeqCst);
    }

    // issue 15: isolated
    /// Makes the isolated process `pid` the owner of this tenancy, for it (it cannot write the
    /// cell), and wakes it if it waits for that in [`LatchCell::wait_adopted`].
    pub fn adopt_isolated(&self, pid: i32) {
        self.owner_pid.store(pid, Ordering::SeqCst);
        self.isolated_pid.store(pid as u32, Ordering::SeqCst);
        crate::sys::futex_wake_all(&self.isolated_pid);
    }

    /// An isolated owner, read-only: waits up to `timeout` until the supervisor adopted this
    /// tenancy for `pid` (from then on every set signals it). Returns whether it did.
    pub fn wait_adopted(&self, pid: i32, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let now = self.isolated_pid.load(Ordering::SeqCst);
            if now == pid as u32 {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            crate::sys::futex_wait(&self.isolated_pid, now, Some(left));
        }
    }

    /// Whether the supervisor adopted this tenancy for the isolated process `pid`: it launched
    /// `pid` isolated and has not reaped it (a reap clears the adoption). What a handle counts as
    /// "running" for an isolated worker, which cannot write its own slot to say its entry runs.
    pub fn adopted_for(&self, pid: i32) -> bool {
        pid > 0 && self.isolated_pid.load(Ordering::Acquire) == pid as u32
    }

    /// An isolated owner, read-only: the tenancy's epoch (what its handles carry) and the number
    /// of sets so far.
    pub fn isolated_view(&self) -> (u32, u32) {
        let word = self.word.load(Ordering::SeqCst);
        ((word >> 32) as u32, ((word & SETS) >> 1) as u32)
    }

    // issue 14: notifications
    /// The tenancy the slot has now (the supervisor names a launcher's latch with it).
    pub fn epoch(&self) -> u32 {
        (self.word.load(Ordering::Acquire) >> 32) as u32
    }

    /// Sets the latch of the slot's current tenancy (the supervisor, for a launcher it knows is
    /// alive from its own table); says whether the owner must be woken. The caller signals the
    /// pid it knows, never `owner_pid`.
    pub fn set_current(&self) -> bool {
        match self.set(self.epoch()) {
            SetOutcome::Set { .. } => {
                self.waiting.load(Ordering::SeqCst) != 0 || self.always_signal.load(Ordering::SeqCst) != 0
            }
            SetOutcome::Stale | SetOutcome::AlreadySet => false,
        }
    }

    // ---- the owner's side ----

    /// Makes the calling process the owner; returns the epoch its handles carry.
    pub fn claim(&self, pid: i32) -> u32 {
        self.owner_pid.store(pid, Ordering::SeqCst);
        (self.word.load(Ordering::Acquire) >> 32) as u32
    }

    /// Resets the flag; returns whether it was set.
    pub fn take(&self) -> bool {
        self.word.fetch_and(!SET, Ordering::AcqRel) & SET != 0
    }

    /// About to sleep: announces it, then looks at the flag once more. `true` means it is set
    /// (the caller does not sleep, and calls [`LatchCell::end_wait`]).
    pub fn begin_wait(&self) -> bool {
        self.waiting.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.word.load(Ordering::SeqCst) & SET != 0
    }

    /// Whether the flag is set (without resetting it).
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::SeqCst) & SET != 0
    }

    /// Awake again (or never slept).
    pub fn end_wait(&self) {
        self.waiting.store(0, Ordering::Relaxed);
    }

    /// From now on every set signals the owner (its latch fd is in other hands).
    pub fn signal_always(&self) {
        self.always_signal.store(1, Ordering::SeqCst);
    }

    // ---- anyone's side ----

    /// Sets the latch if the slot still has the tenancy `epoch`, and says whom to wake.
    pub fn set(&self, epoch: u32) -> SetOutcome {
        // issue 15: isolated
        // An isolated owner cannot reset the flag, so its sets are counted instead, and each one
        // signals it: it compares the count with the last it saw before every sleep, and the
        // signal (whose handler writes its eventfd) wakes a sleep that began after that check.
        let isolated = self.isolated_pid.load(Ordering::SeqCst);
        if isolated != 0 {
            // One compare-and-swap checks the epoch and counts: a tenancy that ended between a
            // separate check and the count would otherwise get the stale set.
            let mut cur = self.word.load(Ordering::SeqCst);
            loop {
                if (cur >> 32) as u32 != epoch || epoch == 0 {
                    return SetOutcome::Stale;
                }
                before_count();
                let next = (cur & !SETS) | (cur.wrapping_add(ONE_SET) & SETS);
                match self
                    .word
                    .compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            let pid = isolated as i32;
            return SetOutcome::Set {
                wake: pid_in_range(pid).then_some(pid),
            };
        }
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            if (cur >> 32) as u32 != epoch || epoch == 0 {
                return SetOutcome::Stale;
            }
            if cur & SET != 0 {
                return SetOutcome::AlreadySet;
            }
            match self
                .word
                .compare_exchange_weak(cur, cur | SET, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        fence(Ordering::SeqCst);
        let asleep = self.waiting.load(Ordering::SeqCst) != 0 || self.always_signal.load(Ordering::SeqCst) != 0;
        let pid = self.owner_pid.load(Ordering::Acquire);
        SetOutcome::Set {
            wake: (asleep && pid_in_range(pid)).then_some(pid),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// A test's writer, run by an isolated set between its epoch check and its count.
    static BEFORE_COUNT: std::cell::RefCell<Option<Box<dyn FnMut()>>> = const { std::cell::RefCell::new(None) };
}

fn before_count() {
    #[cfg(test)]
    BEFORE_COUNT.with(|b| {
        if let Some(mut f) = b.borrow_mut().take() {
            f()
        }
    });
}

/// One line of a worker's own state, written by the worker (its own child slot), read by
/// connection children for status, cleared by the supervisor before each launch.
#[repr(C)]
pub struct ActivityCell {
    /// Odd while the writer is in the middle of a store.
    seq: AtomicU32,
    text: Text<ACTIVITY_LEN>,
}

/// How often a reader retries a cell whose writer keeps changing it before it gives up.
const ACTIVITY_TRIES: u32 = 64;

impl ActivityCell {
    /// Stores `text` after [`bound_activity`]. Only the slot's own process calls it (one writer:
    /// plugin threads calling at once are serialised by the runtime).
    pub fn store(&self, text: &str) {
        let line = bound_activity(text);
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.text.store(&line);
        self.seq.store((s | 1).wrapping_add(1), Ordering::Release);
    }

    /// Empties the cell (the supervisor, before a launch and after the process ended).
    pub fn clear(&self) {
        self.text.store("");
    }

    /// The line, or `None` when empty or when the writer changed it on every try.
    pub fn read(&self) -> Option<String> {
        for _ in 0..ACTIVITY_TRIES {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let text = self.text.load();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                // Bounded again: the writer is untrusted and may have skipped `store`'s checks.
                let line = bound_activity(&text);
                return (!line.is_empty()).then_some(line);
            }
        }
        None
    }
}

/// The first line of `text`, control characters replaced by U+FFFD, cut to [`ACTIVITY_LEN`]
/// bytes at a character boundary.
pub fn bound_activity(text: &str) -> String {
    let first = text.split(['\n', '\r']).next().unwrap_or("");
    let mut out = String::with_capacity(first.len().min(ACTIVITY_LEN));
    for c in first.chars() {
        let c = if c.is_control() { char::REPLACEMENT_CHARACTER } else { c };
        if out.len() + c.len_utf8() > ACTIVITY_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed<T>() -> Box<T> {
        // SAFETY: only used for the cells here, whose fields are atomics valid as all zeros (as a
        // fresh segment holds them).
        Box::new(unsafe { std::mem::zeroed() })
    }

    #[test]
    fn a_handle_round_trips_and_zero_names_nothing() {
        assert_eq!(decode_handle(encode_handle(7, 3)), Some((7, 3)));
        assert_eq!(decode_handle(encode_handle(0, u32::MAX)), Some((0, u32::MAX)));
        assert_eq!(decode_handle(0), None);
        assert_eq!(decode_handle(5 << 32), None);
    }

    #[test]
    fn a_set_before_the_wait_is_kept_and_sets_coalesce() {
        let c: Box<LatchCell> = zeroed();
        c.new_tenant();
        let epoch = c.claim(4242);
        // The owner is busy: the set needs no signal, and the flag waits for it.
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: None });
        assert_eq!(c.set(epoch), SetOutcome::AlreadySet);
        assert!(c.begin_wait(), "the owner must see the set before it sleeps");
        c.end_wait();
        assert!(c.take());
        assert!(!c.take(), "one wake-up for two sets");
        // Asleep: the set names the owner to wake.
        assert!(!c.begin_wait());
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: Some(4242) });
        c.end_wait();
        assert!(c.take());
        // A latch fd in other hands: every set signals.
        c.signal_always();
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: Some(4242) });
    }

    #[test]
    fn a_stale_epoch_touches_nothing() {
        let c: Box<LatchCell> = zeroed();
        // Nothing ever claimed a zeroed slot: no handle matches it.
        assert_eq!(c.set(0), SetOutcome::Stale);
        c.new_tenant();
        let old = c.claim(100);
        c.owner_gone();
        c.new_tenant();
        let new = c.claim(200);
        assert_ne!(old, new);
        assert_eq!(c.set(old), SetOutcome::Stale);
        assert!(!c.take(), "a stale set must not set the new tenant's latch");
        // A reaped owner's tenancy is over, before any new tenant arrives.
        c.owner_gone();
        assert_eq!(c.set(new), SetOutcome::Stale);
    }

    // issue 15: isolated
    #[test]
    fn an_isolated_tenancy_counts_sets_and_signals_its_owner_every_time() {
        let c: Box<LatchCell> = zeroed();
        c.new_tenant();
        let (epoch, sets) = c.isolated_view();
        assert_eq!(sets, 0);
        let none = std::time::Duration::ZERO;
        assert!(!c.wait_adopted(4242, none), "not adopted yet");
        assert!(!c.adopted_for(4242));
        c.adopt_isolated(4242);
        assert!(c.wait_adopted(4242, none));
        assert!(c.adopted_for(4242) && !c.adopted_for(1));
        assert!(!c.wait_adopted(1, none), "adopted for another pid");
        // No flag to coalesce on: each set counts, and each signals the (busy or asleep) owner.
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: Some(4242) });
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: Some(4242) });
        assert_eq!(c.isolated_view(), (epoch, 2));
        assert_eq!(c.set(epoch.wrapping_add(1)), SetOutcome::Stale);
        // A reaped isolated owner is signalled no more; the next tenant starts attached.
        c.owner_gone();
        assert_eq!(c.set(epoch), SetOutcome::Stale);
        assert!(!c.adopted_for(4242), "a reaped owner is adopted no more");
        c.new_tenant();
        let e = c.claim(7);
        assert_eq!(c.set(e), SetOutcome::Set { wake: None });
        assert_eq!(c.isolated_view().1, 0);
    }

    #[test]
    fn a_stale_set_never_counts_on_the_next_isolated_tenant() {
        let c: Box<LatchCell> = zeroed();
        c.new_tenant();
        c.adopt_isolated(100);
        let (old, _) = c.isolated_view();
        let cell: &'static LatchCell = Box::leak(c);
        // Between the set's look at the epoch and its count, the owner is reaped and the slot's
        // next isolated tenant adopted.
        BEFORE_COUNT.with(|b| {
            *b.borrow_mut() = Some(Box::new(move || {
                cell.owner_gone();
                cell.new_tenant();
                cell.adopt_isolated(200);
            }))
        });
        assert_eq!(cell.set(old), SetOutcome::Stale);
        let (new, sets) = cell.isolated_view();
        assert_ne!(new, old);
        assert_eq!(sets, 0, "the old tenancy's set counted on the new one");
        assert_eq!(cell.set(new), SetOutcome::Set { wake: Some(200) });
        assert_eq!(cell.isolated_view(), (new, 1));
    }

    #[test]
    fn isolated_set_counts_wrap_inside_their_bits() {
        let c: Box<LatchCell> = zeroed();
        c.new_tenant();
        c.adopt_isolated(100);
        let (epoch, _) = c.isolated_view();
        c.word.store(((epoch as u64) << 32) | SETS | SET, Ordering::Relaxed);
        assert_eq!(c.set(epoch), SetOutcome::Set { wake: Some(100) });
        assert_eq!(c.isolated_view(), (epoch, 0), "the count wrapped into the epoch");
        assert!(c.is_set(), "the flag is not the count's to change");
    }

    #[test]
    fn epochs_skip_zero_when_they_wrap() {
        let c: Box<LatchCell> = zeroed();
        c.word.store((u32::MAX as u64) << 32, Ordering::Relaxed);
        c.new_tenant();
        assert_eq!(c.claim(1), 1);
    }

    #[test]
    fn a_scribbled_owner_pid_is_never_signalled() {
        let c: Box<LatchCell> = zeroed();
        c.new_tenant();
        let e = c.claim(-1);
        c.signal_always();
        assert_eq!(c.set(e), SetOutcome::Set { wake: None });
    }

    #[test]
    fn activity_is_one_bounded_line_without_control_characters() {
        assert_eq!(
            bound_activity("copying\tbatch 3\nsecond line"),
            "copying\u{fffd}batch 3"
        );
        assert_eq!(bound_activity("\r\nhidden"), "");
        let long = "é".repeat(200);
        let cut = bound_activity(&long);
        assert_eq!(cut.len(), ACTIVITY_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("a{}", "é".repeat(200));
        assert_eq!(bound_activity(&odd).len(), ACTIVITY_LEN - 1);
    }

    #[test]
    fn an_activity_cell_reads_what_was_stored_and_bounds_a_scribble() {
        let c: Box<ActivityCell> = zeroed();
        assert_eq!(c.read(), None);
        c.store("vacuuming table t");
        assert_eq!(c.read().as_deref(), Some("vacuuming table t"));
        c.clear();
        assert_eq!(c.read(), None);
        c.text.store_bytes(b"x\x07y\nz");
        assert_eq!(c.read().as_deref(), Some("x\u{fffd}y"));
        // A writer stuck mid-store: the reader gives up instead of spinning.
        c.seq.store(1, Ordering::Relaxed);
        assert_eq!(c.read(), None);
    }
}
