//! Plugin locks in the segment: a process-shared read/write lock on one word, PostgreSQL's
//! LWLock state word without its queue of waiting processes.
//!
//! Runs in: workers and the startup child (plugin code takes and releases locks through
//! `WorkerApi::lock_acquire`/`lock_release`); the supervisor only places the cells (zeroed, which
//! is "free") and never touches one afterwards.
//!
//! Each [`LockCell`] owns one 64-byte cache line, so two locks never share a line and a lock
//! never shares one with anything else in the segment. The state word is
//! `WRITER` (bit 31) | `WRITER_WAITING` (30) | `WAITERS` (29) | the reader count (bits 0-28):
//!
//! - Exclusive is taken when there is neither a writer nor a reader; the taker clears
//!   `WRITER_WAITING`. Uncontended, that is one compare-and-swap from 0.
//! - Shared adds one reader unless `WRITER` *or* `WRITER_WAITING` is set, so a stream of readers
//!   cannot starve a writer: once a writer waits, new readers wait behind it.
//! - A process that must wait reads the `wake` counter, then sets `WAITERS` (and, as a writer,
//!   `WRITER_WAITING`) with a compare-and-swap that also proves the state did not change since it
//!   looked, then sleeps in `FUTEX_WAIT(wake, seen)`. A release that finds `WAITERS` clears it,
//!   bumps `wake` and wakes every waiter; each re-checks and sleeps again if it lost. Because the
//!   waiter read `wake` before its compare-and-swap, and the releaser bumps it after its own
//!   change to the state, a wake-up can never fall between the check and the sleep.
//!
//! Invariants: a cell is only ever written through this file; nothing here allocates, takes a
//! mutex or makes a system call unless it must sleep or wake; and a wait ends only by getting the
//! lock or by the process dying. Dying holding (or waiting for) a lock is a crash, which the
//! holder count in the child slot and the dead-man flag enforce (see `child::runtime`); a crash
//! reset creates a fresh segment, so a lock whose holder died is never seen again.

use std::sync::atomic::{AtomicU32, Ordering};

/// Set while a process holds the lock exclusively.
const WRITER: u32 = 1 << 31;
/// Set while a writer waits: new readers wait too (no writer starvation).
const WRITER_WAITING: u32 = 1 << 30;
/// Set while anyone sleeps on `wake`: the next release must wake them.
const WAITERS: u32 = 1 << 29;
/// The reader count.
const READERS: u32 = WAITERS - 1;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

impl Mode {
    /// The mode an ABI code names, if any.
    pub fn from_abi(code: u32) -> Option<Mode> {
        match code {
            steward::abi::LOCK_EXCLUSIVE => Some(Mode::Exclusive),
            steward::abi::LOCK_SHARED => Some(Mode::Shared),
            _ => None,
        }
    }
}

/// One lock in the segment, alone on its cache line. All zeroes is a free lock.
#[repr(C, align(64))]
pub struct LockCell {
    state: AtomicU32,
    /// Bumped by every release that found waiters; they sleep on it.
    wake: AtomicU32,
}

impl LockCell {
    /// One attempt at the lock in `mode`, without waiting.
    #[inline]
    pub fn try_acquire(&self, mode: Mode) -> bool {
        match mode {
            Mode::Exclusive => {
                // The uncontended case: nobody holds it and nobody waits.
                if self
                    .state
                    .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                let mut s = self.state.load(Ordering::Relaxed);
                while s & (WRITER | READERS) == 0 {
                    match self.state.compare_exchange_weak(
                        s,
                        (s | WRITER) & !WRITER_WAITING,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return true,
                        Err(now) => s = now,
                    }
                }
                false
            }
            Mode::Shared => {
                let mut s = self.state.load(Ordering::Relaxed);
                // A full reader count is refused like a writer: the count never carries into the
                // flag bits.
                while s & (WRITER | WRITER_WAITING) == 0 && s & READERS != READERS {
                    match self
                        .state
                        .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    {
                        Ok(_) => return true,
                        Err(now) => s = now,
                    }
                }
                false
            }
        }
    }

    /// Takes the lock in `mode`, sleeping while it is held in a conflicting mode. Signals do not
    /// end the wait (the handlers only set flags); only getting the lock or dying does.
    #[inline]
    pub fn acquire(&self, mode: Mode) {
        if !self.try_acquire(mode) {
            self.acquire_slow(mode);
        }
    }

    #[cold]
    fn acquire_slow(&self, mode: Mode) {
        let (blocked_by, wait_bits) = match mode {
            Mode::Exclusive => (WRITER | READERS, WAITERS | WRITER_WAITING),
            Mode::Shared => (WRITER | WRITER_WAITING, WAITERS),
        };
        loop {
            if self.try_acquire(mode) {
                return;
            }
            // Read the wake counter before announcing ourselves (see the module header). The slow
            // path is the futex protocol, so it uses sequential consistency throughout.
            let seen = self.wake.load(Ordering::SeqCst);
            let s = self.state.load(Ordering::SeqCst);
            if s & blocked_by == 0 {
                continue;
            }
            if s & wait_bits != wait_bits
                && self
                    .state
                    .compare_exchange(s, s | wait_bits, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            crate::sys::futex_wait(&self.wake, seen, None);
        }
    }

    /// Releases the lock held in `mode` by this process.
    #[inline]
    pub fn release(&self, mode: Mode) {
        match mode {
            Mode::Exclusive => {
                let old = self.state.fetch_and(!(WRITER | WAITERS), Ordering::Release);
                if old & WAITERS != 0 {
                    self.wake_waiters();
                }
            }
            Mode::Shared => {
                let old = self.state.fetch_sub(1, Ordering::Release);
                // Only the last reader out can let a waiter (a writer, or readers behind it) in.
                if old & READERS == 1 && old & WAITERS != 0 {
                    self.state.fetch_and(!WAITERS, Ordering::SeqCst);
                    self.wake_waiters();
                }
            }
        }
    }

    #[cold]
    fn wake_waiters(&self) {
        self.wake.fetch_add(1, Ordering::SeqCst);
        crate::sys::futex_wake_all(&self.wake);
    }

    /// The state word, for tests.
    #[cfg(test)]
    fn state(&self) -> u32 {
        self.state.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A page of a `MAP_SHARED` memfd, as the segment is, holding a lock cell and a counter.
    struct Page {
        map: memmap2::MmapMut,
    }

    impl Page {
        fn new() -> Arc<Page> {
            let fd = nix::sys::memfd::memfd_create(c"lock-test", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .expect("memfd");
            let file = std::fs::File::from(fd);
            file.set_len(4096).expect("size");
            // SAFETY: a fresh memfd only this test maps; the mapping lives as long as `Page`.
            let map = unsafe { memmap2::MmapOptions::new().len(4096).map_mut(&file) }.expect("map");
            Arc::new(Page { map })
        }
        fn cell(&self) -> &LockCell {
            // SAFETY: offset 0 of a zeroed, page-aligned mapping; a cell is atomics, valid as zeroes.
            unsafe { &*(self.map.as_ptr() as *const LockCell) }
        }
        /// A counter on its own line, updated with a plain load and store: only the lock makes
        /// the sum exact.
        fn counter(&self) -> &AtomicU64 {
            // SAFETY: offset 64, inside the page and aligned; an atomic is valid as zeroes.
            unsafe { &*(self.map.as_ptr().add(64) as *const AtomicU64) }
        }
    }

    #[test]
    fn a_cell_is_alone_on_its_cache_line() {
        assert_eq!(std::mem::size_of::<LockCell>(), 64);
        assert_eq!(std::mem::align_of::<LockCell>(), 64);
    }

    #[test]
    fn modes_exclude_each_other_as_a_read_write_lock() {
        let page = Page::new();
        let l = page.cell();
        assert!(l.try_acquire(Mode::Shared) && l.try_acquire(Mode::Shared));
        assert!(!l.try_acquire(Mode::Exclusive));
        l.release(Mode::Shared);
        l.release(Mode::Shared);
        assert!(l.try_acquire(Mode::Exclusive));
        assert!(!l.try_acquire(Mode::Exclusive) && !l.try_acquire(Mode::Shared));
        l.release(Mode::Exclusive);
        assert_eq!(l.state(), 0);
    }

    /// Eight threads, each adding 10^5 under the exclusive lock with a non-atomic
    /// read-modify-write, some also reading under the shared lock: the sum is exact and the word
    /// ends free.
    #[test]
    fn eight_threads_on_a_shared_mapping_add_exactly() {
        const PER: u64 = 100_000;
        let page = Page::new();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let page = page.clone();
                std::thread::spawn(move || {
                    let (l, c) = (page.cell(), page.counter());
                    for i in 0..PER {
                        l.acquire(Mode::Exclusive);
                        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        l.release(Mode::Exclusive);
                        if t % 2 == 0 && i % 64 == 0 {
                            l.acquire(Mode::Shared);
                            let _ = c.load(Ordering::Relaxed);
                            l.release(Mode::Shared);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(page.counter().load(Ordering::SeqCst), 8 * PER);
        assert_eq!(page.cell().state(), 0);
    }

    /// Readers that overlap so that the lock is never free of them: a writer that asks still gets
    /// it, because new readers wait once it waits.
    #[test]
    fn a_writer_is_not_starved_by_overlapping_readers() {
        let page = Page::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (page, stop) = (page.clone(), stop.clone());
                std::thread::spawn(move || {
                    let l = page.cell();
                    while !stop.load(Ordering::Relaxed) {
                        l.acquire(Mode::Shared);
                        let until = Instant::now() + Duration::from_micros(200);
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        l.release(Mode::Shared);
                    }
                })
            })
            .collect();
        // Let the readers get going, then take the lock exclusively a few times, on a thread of
        // its own so that a starved writer fails the test instead of hanging it.
        while page.cell().state() & READERS == 0 {
            std::thread::yield_now();
        }
        let (done, finished) = std::sync::mpsc::channel();
        let p = page.clone();
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                p.cell().acquire(Mode::Exclusive);
                p.cell().release(Mode::Exclusive);
            }
            let _ = done.send(());
        });
        let outcome = finished.recv_timeout(Duration::from_secs(5));
        // Stopping the readers lets even a starved writer finish, so every thread ends.
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        writer.join().unwrap();
        assert!(outcome.is_ok(), "the writer was starved for 5 s by overlapping readers");
        assert_eq!(page.cell().state(), 0);
    }

    /// A waiter sleeps (no spinning) and the release wakes it.
    #[test]
    fn a_waiter_sleeps_until_the_release_wakes_it() {
        let page = Page::new();
        page.cell().acquire(Mode::Exclusive);
        let p = page.clone();
        let waiter = std::thread::spawn(move || {
            p.cell().acquire(Mode::Shared);
            p.cell().release(Mode::Shared);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while page.cell().state() & WAITERS == 0 {
            assert!(Instant::now() < deadline, "the waiter never announced itself");
            std::thread::yield_now();
        }
        page.cell().release(Mode::Exclusive);
        waiter.join().unwrap();
        assert_eq!(page.cell().state(), 0);
    }
}
