//! The shared-memory segment: one memfd, mapped `MAP_SHARED`, laid out by offsets.
//!
//! Runs in: the supervisor (creates it, writes the header, static worker slots and status) and
//! every child (maps it: inherited in fork mode, from an inherited fd in exec mode).
//!
//! This file holds the header, the worker slots and the mapping; `shmem/layout.rs` computes where
//! each part lies, `shmem/status.rs` is status publishing (the seqlocked cells connection children
//! read), and the child slots are in [`crate::shared::protocol`], with every code the segment
//! stores.
//!
//! Layout, computed once from the frozen registry ([`Layout::compute`]); every part starts
//! 64-byte aligned, and the whole is at least 4096 bytes:
//!
//! ```text
//! 0                 Header: magic, layout_version, launch_mode, generation, size, host_pid,
//!                   host_state, host_started_at_ms, consistent, n_worker_slots,
//!                   n_static_workers, n_connection_slots, n_regions, the three offsets below,
//!                   reload_requests, reloads_done, info (a 64 KiB document under a seqlock),
//!                   locks_off, n_locks,
//!                   segment_ready
//! child_slots_off   ChildSlot x (W worker slots + C connection slots + 1 + spare slots):
//!                   [0, W) workers, [W, W+C) connections, W+C the startup child, then spares
//! worker_slots_off  WorkerSlot x W: the static workers, then `max_worker_processes` free ones;
//!                   each holds the worker's registration and its StatusCell
//! regions_off       region bytes, each region 64-byte aligned (children find each one's offset
//!                   in the layout, which the registry's regions fix at start-up)
//! locks_off         LockCell x locks: one 64-byte line each (see `shared::locks`)
//! requests_off      RequestSlot x (W + C + 1): a requester's dynamic-worker request, at its own
//!                   child slot's index: workers' and the startup child's (see `shared::handles`)
//! ```
//!
//! Ownership and hand-off:
//! - `Header`: written by the supervisor before any child exists; later only `host_state` and
//!   `info` (written by the supervisor), `consistent` (set once by the startup child, read by the
//!   supervisor only while the host is in startup), `segment_ready` (set once by the startup
//!   child after the segment init hooks, read by the supervisor only while it waits for them)
//!   and the reload counters (see their fields)
//!   change. Every child that attaches checks the fields that never change
//!   ([`Segment::check_header`]) before using the segment; a mismatch means shared memory was
//!   overwritten, and the child exits with [`EXIT_CORRUPT_SEGMENT`] so the supervisor resets it.
//! - `ChildSlot` (one per child that attaches): the supervisor sets `state = ASSIGNED` before
//!   launch; the child sets `ACTIVE` once it runs and back to `ASSIGNED` just before a clean exit,
//!   with its exit reason. A child reaped while its slot is anything but `ASSIGNED` crashed,
//!   whatever its exit code (the dead-man flag). Only the supervisor frees a slot. The struct
//!   and every access to it are in [`crate::shared::protocol`]. A spare child's slot also has `ready`, set by
//!   the spare once its plugins are loaded, and `assign`: the supervisor stores the handed-over
//!   worker slot (plus one, release) and wakes the spare with
//!   `FUTEX_WAKE`; the spare then claims that worker's child slot (pid, `ACTIVE`) and the
//!   supervisor frees the spare's slot once it sees the claim or the process is gone.
//!   Each child slot also holds its process's latch and activity line (layout 4; see
//!   [`crate::shared::protocol::latch`]): `assign` starts a new latch tenancy (a new epoch, so
//!   every older handle is stale), the owner claims it with its pid, any child sets it, and
//!   `free` ends the tenancy and forgets the owner's pid; the worker writes its activity line, connection children
//!   read it under a seqlock, and `prepare_launch` and `free` clear it.
//! - `WorkerSlot`: PostgreSQL's hand-off. The supervisor fills a slot (the static workers' when
//!   it creates the segment, a dynamic worker's when it adopts its request) and sets `in_use`
//!   with a release store; the worker reads its registration from it. The status part is written
//!   only by the supervisor under a seqlock and read by connection children and worker handles;
//!   `in_use` goes back to 0 when a dynamic worker is retired, its status staying for handles.
//!   It holds no field that nothing reads (decision 80).
//! - `LockCell`: zeroed (free) when the segment is created; from then on written only by the
//!   workers that take and release the lock ([`crate::shared::locks`]). The supervisor never
//!   reads one: a lock held by a process that died is settled by the crash reset that death
//!   causes, which replaces the whole segment.
//!
//! - `RequestSlot` (layout 8): the worker in slot `i` fills request slot `i` and stores
//!   `REQUESTED`; the supervisor copies it out (bounded), validates it, and answers with one
//!   compare-and-swap to `ANSWERED` ([`crate::shared::handles`]). The worker slot's `events` and
//!   `terminate_gen` are written by any child and only read by the supervisor as a request.
//!
//! Everything is an atomic, so any process may read any field without undefined behaviour; the
//! supervisor treats what children can write (child-slot state, pid, reason and entry time,
//! `consistent`, `reload_requests`) as untrusted input: bounded copies, known values only, and a
//! pid is never taken as a child's without proof. Every number that stands for a state or a kind
//! is encoded and decoded in [`crate::shared::protocol`], and only there (the fields holding one are
//! private, with accessors here that go through it).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use memmap2::{MmapMut, MmapOptions};

use crate::shared::config::{Config, LaunchMode};
use crate::shared::locks::LockCell;
use crate::shared::protocol::{Code, DecodeError, HostState};
use crate::shared::registry::{RegionSpec, Registry, StartTime, WorkerSpec};

mod layout;
mod status;

/// Child slots live with the protocol that governs them; named here too, as part of the segment.
pub use crate::shared::protocol::ChildSlot;
pub use layout::{Layout, SPARE_CHILDREN};
pub use status::{ExitRecord, Published, StatusCell, StatusSnapshot, EXIT_HISTORY, INFO_LEN};

pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"STWDSEG1");
pub const LAYOUT_VERSION: u32 = 13;
pub const REASON_LEN: usize = 256;

/// A bounded string of atomic bytes.
#[repr(C)]
pub struct Text<const N: usize> {
    len: AtomicU32,
    bytes: [AtomicU8; N],
}

impl<const N: usize> Text<N> {
    /// Stores `s`, cut to `N` bytes at a character boundary.
    pub fn store(&self, s: &str) {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.store_bytes(&s.as_bytes()[..end]);
    }
    pub fn store_bytes(&self, b: &[u8]) {
        let n = b.len().min(N);
        for (dst, src) in self.bytes.iter().zip(&b[..n]) {
            dst.store(*src, Ordering::Relaxed);
        }
        self.len.store(n as u32, Ordering::Relaxed);
    }
    /// Copies the bytes out; the length is clamped, so a corrupt length cannot overrun.
    pub fn load_bytes(&self) -> Vec<u8> {
        let n = (self.len.load(Ordering::Relaxed) as usize).min(N);
        self.bytes[..n].iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
    /// The text, with invalid UTF-8 replaced (one allocation when it is valid, as it should be).
    pub fn load(&self) -> String {
        String::from_utf8(self.load_bytes()).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[repr(C)]
pub struct Header {
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    /// A [`LaunchMode`] code: read with [`Header::launch_mode`].
    launch_mode: AtomicU32,
    pub generation: AtomicU64,
    pub size: AtomicU64,
    pub host_pid: AtomicU32,
    /// A [`HostState`] code: written with [`Header::set_host_state`], read with
    /// [`Header::host_state`].
    host_state: AtomicU32,
    pub host_started_at_ms: AtomicU64,
    /// Set by a startup hook that declares the host consistent (startup child writes; the
    /// supervisor only reads it, and only while it is in the startup state).
    pub consistent: AtomicU32,
    _pad: AtomicU32,
    pub n_worker_slots: AtomicU32,
    pub n_static_workers: AtomicU32,
    pub n_connection_slots: AtomicU32,
    pub n_regions: AtomicU32,
    pub child_slots_off: AtomicU64,
    pub worker_slots_off: AtomicU64,
    pub regions_off: AtomicU64,
    /// Reload requests made over the control socket: a connection child adds one, then sends
    /// SIGHUP. Child-written; the supervisor only copies it into `reloads_done`.
    pub reload_requests: AtomicU64,
    /// The value of `reload_requests` that the last finished reload began with (supervisor
    /// writes, after `info` holds that reload's outcome): a request numbered at most this was
    /// answered by a reload that read the file after the request was made.
    pub reloads_done: AtomicU64,
    /// The supervisor's account of the configuration, for `status` and `show` (see
    /// [`crate::shared::control::HostInfoDoc`]).
    pub info: Published,
    // issue 14: locks
    pub locks_off: AtomicU64,
    pub n_locks: AtomicU32,
    _pad_locks: AtomicU32,
    // issue 14: segment init
    /// Set once by the startup child after every segment init hook returned (layout 6); read by
    /// the supervisor only while it waits for the segment to be initialised, SIGUSR1 being the
    /// wake-up, as for `consistent`.
    pub segment_ready: AtomicU32,
    // issue 14: dynamic workers
    // issue 14: queue
    /// Dynamic-worker requests waiting for a free slot (the supervisor writes it each turn, for
    /// status; layout 10).
    pub dyn_queued: AtomicU32,
    /// Where the request slots lie (layout 8).
    pub requests_off: AtomicU64,
}

impl Header {
    /// Where the host-state word lies, for tools that look at a segment from outside.
    pub const HOST_STATE_OFFSET: usize = std::mem::offset_of!(Header, host_state);

    /// Publishes the host state (supervisor only).
    pub fn set_host_state(&self, s: HostState) {
        self.host_state.store(s.encode(), Ordering::Release);
    }

    pub fn host_state(&self) -> Result<HostState, DecodeError> {
        HostState::decode(self.host_state.load(Ordering::Acquire))
    }

    pub fn launch_mode(&self) -> Result<LaunchMode, DecodeError> {
        LaunchMode::decode(self.launch_mode.load(Ordering::Relaxed))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[repr(C)]
pub struct WorkerSlot {
    pub in_use: AtomicU32,
    /// A [`StartTime`] code: read with [`WorkerSlot::start_time`].
    start_time: AtomicU32,
    pub arg: AtomicU64,
    pub name: Text<64>,
    pub worker_type: Text<64>,
    pub plugin: Text<64>,
    pub library: Text<64>,
    pub function: Text<96>,
    pub extra: Text<{ steward::abi::EXTRA_LEN }>,
    pub status: StatusCell,
    // issue 14: dynamic workers
    /// Bumped (then `FUTEX_WAKE` to all) whenever what a handle reads changes: by the
    /// supervisor on every publish of the slot, by the worker when its entry runs. Anyone may
    /// write it; a bogus bump only wakes waiters, who look again.
    pub events: AtomicU32,
    _pad_events: AtomicU32,
    /// The generation a handle asked to terminate (any child writes it, then wakes the
    /// supervisor); the supervisor acts only when it is the slot's current generation.
    pub terminate_gen: AtomicU64,
    // issue 14: control
    /// Who launched the slot's dynamic worker: a worker's name or `control` (empty for a static
    /// worker). Written by the supervisor before `in_use`, with the registration.
    pub launcher: Text<64>,
    // issue 15: isolated
    /// 1 when the worker runs isolated (the supervisor's registration, for status only).
    pub isolated: AtomicU32,
    _pad_isolated: AtomicU32,
    // issue 14: notifications
    /// The raw latch handle of the process that launched this dynamic worker (0: none), written
    /// by the supervisor from its own table with the registration (layout 9). The worker sets it
    /// when its entry runs, or at `set_ready` when [`NOTIFY_AT_READY`] is set; a stale handle
    /// sets nothing.
    pub launcher_latch: AtomicU64,
    /// [`NOTIFY_AT_READY`] or 0 (supervisor writes with the registration).
    pub notify: AtomicU32,
    _pad_notify: AtomicU32,
}

// issue 14: notifications
/// [`WorkerSlot::notify`]: the worker declares readiness, which is its start for its launcher.
pub const NOTIFY_AT_READY: u32 = 1;

impl WorkerSlot {
    /// Where the worker-state word of the slot's status lies within the slot, for tools that look
    /// at a segment from outside.
    pub const STATUS_STATE_OFFSET: usize = std::mem::offset_of!(WorkerSlot, status) + StatusCell::STATE_OFFSET;

    pub fn start_time(&self) -> Result<StartTime, DecodeError> {
        StartTime::decode(self.start_time.load(Ordering::Relaxed))
    }
}

/// The mapped segment.
pub struct Segment {
    fd: OwnedFd,
    map: MmapMut,
    pub layout: Layout,
}

/// Why a segment could not be created or attached.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("memfd_create failed: {0}")]
    Memfd(std::io::Error),
    #[error("cannot size the segment to {size} bytes: {err}")]
    Size { size: u64, err: std::io::Error },
    #[error("cannot map the segment: {0}")]
    Map(std::io::Error),
    #[error("the segment does not match this host's layout: {0}")]
    Mismatch(String),
    /// A header field a child checks before it uses the segment holds something the supervisor
    /// never wrote there.
    #[error("the shared-memory segment is corrupt: header check `{check}` failed: found {found}, expected {expected}")]
    Corrupt {
        check: &'static str,
        found: String,
        expected: String,
    },
}

/// The exit code of a child that found the segment corrupt ([`Segment::check_header`]): above 2,
/// so the supervisor takes it as a crash and resets shared memory whatever the child's kind.
pub const EXIT_CORRUPT_SEGMENT: i32 = 3;

impl Segment {
    /// Creates a fresh, zeroed segment and publishes the header, the static workers and the
    /// regions.
    pub fn create(
        layout: &Layout,
        workers: &[WorkerSpec],
        regions: &[RegionSpec],
        cfg: &Config,
        generation: u64,
        started_at_ms: u64,
    ) -> Result<Segment, SegmentError> {
        let raw = nix::sys::memfd::memfd_create(c"steward-shmem", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .map_err(|e| SegmentError::Memfd(e.into()))?;
        let file = File::from(raw);
        file.set_len(layout.size)
            .map_err(|err| SegmentError::Size { size: layout.size, err })?;
        // SAFETY: a fresh memfd only this host maps; the mapping lives as long as `Segment`.
        // Populated at once: the supervisor touches nearly every page of it (publishing the
        // slots below, then reading them for status), and one `mmap` that allocates them all
        // costs far less than a page fault per page (about 3 ms for 1000 workers here).
        // Children map it without populating: each touches a few pages.
        let map = unsafe { MmapOptions::new().len(layout.size as usize).populate().map_mut(&file) }
            .map_err(SegmentError::Map)?;
        let seg = Segment {
            fd: file.into(),
            map,
            layout: layout.clone(),
        };
        let h = seg.header();
        h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.launch_mode.store(cfg.launch_mode.encode(), Ordering::Relaxed);
        h.generation.store(generation, Ordering::Relaxed);
        h.size.store(layout.size, Ordering::Relaxed);
        h.host_pid.store(std::process::id(), Ordering::Relaxed);
        h.host_started_at_ms.store(started_at_ms, Ordering::Relaxed);
        h.n_worker_slots.store(layout.n_worker_slots, Ordering::Relaxed);
        h.n_static_workers.store(layout.n_static_workers, Ordering::Relaxed);
        h.n_connection_slots.store(layout.n_connection_slots, Ordering::Relaxed);
        h.n_regions.store(regions.len() as u32, Ordering::Relaxed);
        h.child_slots_off.store(layout.child_slots_off, Ordering::Relaxed);
        h.worker_slots_off.store(layout.worker_slots_off, Ordering::Relaxed);
        h.regions_off.store(layout.regions_off, Ordering::Relaxed);
        h.locks_off.store(layout.locks_off, Ordering::Relaxed);
        h.n_locks.store(layout.n_locks, Ordering::Relaxed);
        h.requests_off.store(layout.requests_off, Ordering::Relaxed);
        for (i, w) in workers.iter().enumerate() {
            seg.publish_worker(i as u32, w);
        }
        h.magic.store(SEGMENT_MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Maps a segment from an inherited fd (exec-mode children) and checks it against `layout`.
    pub fn attach(fd: OwnedFd, layout: &Layout, generation: u64, host_pid: i32) -> Result<Segment, SegmentError> {
        let file = File::from(fd);
        let len = file.metadata().map_err(SegmentError::Map)?.len();
        if len != layout.size {
            return Err(SegmentError::Mismatch(format!("size {len}, expected {}", layout.size)));
        }
        // SAFETY: the supervisor's memfd, `MAP_SHARED`; the mapping lives as long as `Segment`.
        let map = unsafe { MmapOptions::new().len(len as usize).map_mut(&file) }.map_err(SegmentError::Map)?;
        let seg = Segment {
            fd: file.into(),
            map,
            layout: layout.clone(),
        };
        seg.check_header(generation, host_pid)?;
        Ok(seg)
    }

    /// Checks every header field the supervisor wrote once against what this process knows
    /// independently (its own layout, the generation and host pid it was started with). Every
    /// child that attaches runs it before it touches anything else in the segment; a failure
    /// names the first field that is wrong, and the child exits with [`EXIT_CORRUPT_SEGMENT`].
    pub fn check_header(&self, generation: u64, host_pid: i32) -> Result<(), SegmentError> {
        let h = self.header();
        let l = &self.layout;
        let r = Ordering::Relaxed;
        // (field, found, expected); the magic reads best in hex, the rest in decimal.
        let checks: [(&'static str, u64, u64); 15] = [
            ("magic", h.magic.load(Ordering::Acquire), SEGMENT_MAGIC),
            ("layout_version", h.layout_version.load(r).into(), LAYOUT_VERSION.into()),
            ("generation", h.generation.load(r), generation),
            ("size", h.size.load(r), l.size),
            ("host_pid", h.host_pid.load(r).into(), host_pid as u32 as u64),
            (
                "n_worker_slots",
                h.n_worker_slots.load(r).into(),
                l.n_worker_slots.into(),
            ),
            (
                "n_static_workers",
                h.n_static_workers.load(r).into(),
                l.n_static_workers.into(),
            ),
            (
                "n_connection_slots",
                h.n_connection_slots.load(r).into(),
                l.n_connection_slots.into(),
            ),
            ("n_regions", h.n_regions.load(r).into(), l.region_offsets.len() as u64),
            ("child_slots_off", h.child_slots_off.load(r), l.child_slots_off),
            ("worker_slots_off", h.worker_slots_off.load(r), l.worker_slots_off),
            ("regions_off", h.regions_off.load(r), l.regions_off),
            ("locks_off", h.locks_off.load(r), l.locks_off),
            ("n_locks", h.n_locks.load(r).into(), l.n_locks.into()),
            ("requests_off", h.requests_off.load(r), l.requests_off),
        ];
        for (check, found, expected) in checks {
            if found != expected {
                let show = |v: u64| {
                    if check == "magic" {
                        format!("{v:#018x}")
                    } else {
                        v.to_string()
                    }
                };
                return Err(SegmentError::Corrupt {
                    check,
                    found: show(found),
                    expected: show(expected),
                });
            }
        }
        Ok(())
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Duplicates the fd (for handing to an exec-mode child).
    pub fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd we own, or -1.
        let fd = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just created, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn base(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }

    /// # Safety
    /// `off + size_of::<T>()` must lie inside the mapping and `off` must be aligned for `T`, and
    /// `T` must be valid for any bit pattern (all atomics).
    unsafe fn at<T>(&self, off: u64) -> &T {
        debug_assert!(off as usize + std::mem::size_of::<T>() <= self.map.len());
        // SAFETY: guaranteed by the caller; the mapping outlives `&self`.
        unsafe { &*(self.map.as_ptr().add(off as usize) as *const T) }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: offset 0, within the mapping (size >= 4096); all fields atomics.
        unsafe { self.at(0) }
    }

    /// Child slot `i`; `i` is checked against this process's own layout, never the header.
    pub fn child_slot(&self, i: u32) -> &ChildSlot {
        assert!(i < self.layout.n_child_slots(), "child slot {i} out of range");
        // SAFETY: index bounded by the layout this process computed or validated.
        unsafe { self.at(self.layout.child_slots_off + i as u64 * std::mem::size_of::<ChildSlot>() as u64) }
    }

    /// The index of a child slot of this mapping (`None` for a reference from elsewhere).
    pub fn child_slot_index(&self, slot: &ChildSlot) -> Option<u32> {
        let base = self.child_slot(0) as *const ChildSlot as usize;
        let off = (slot as *const ChildSlot as usize).checked_sub(base)?;
        let i = off / std::mem::size_of::<ChildSlot>();
        (off % std::mem::size_of::<ChildSlot>() == 0 && (i as u32) < self.layout.n_child_slots()).then_some(i as u32)
    }

    pub fn worker_slot(&self, i: u32) -> &WorkerSlot {
        assert!(i < self.layout.n_worker_slots, "worker slot {i} out of range");
        // SAFETY: as for `child_slot`.
        unsafe { self.at(self.layout.worker_slots_off + i as u64 * std::mem::size_of::<WorkerSlot>() as u64) }
    }

    // issue 14: dynamic workers
    /// Request slot `i` (the requester's own, at its child slot's index, up to the startup
    /// child's); `i` is checked against this process's own layout.
    pub fn request_slot(&self, i: u32) -> &crate::shared::handles::RequestSlot {
        assert!(i < self.layout.n_request_slots(), "request slot {i} out of range");
        // SAFETY: as for `child_slot`: the index is bounded by this process's layout, the table is
        // 64-byte aligned and a request slot is atomics only.
        unsafe {
            self.at(
                self.layout.requests_off + i as u64 * std::mem::size_of::<crate::shared::handles::RequestSlot>() as u64
            )
        }
    }

    /// Takes worker slot `i` back from a dynamic worker that stopped for good: it no longer shows
    /// in status; its status cell keeps the last status and generation for handles.
    pub fn retire_worker(&self, i: u32) {
        self.worker_slot(i).in_use.store(0, Ordering::Release);
    }

    /// Writes a registration into worker slot `i` and hands it over (`in_use`, release).
    pub fn publish_worker(&self, i: u32, w: &WorkerSpec) {
        self.publish_launched(i, w, "");
    }

    // issue 14: control
    /// As [`Segment::publish_worker`], for a dynamic worker `launcher` launched (a worker's name
    /// or `control`).
    pub fn publish_launched(&self, i: u32, w: &WorkerSpec, launcher: &str) {
        self.write_registration(i, w, launcher);
        self.hand_over(i);
    }

    /// Writes a registration into worker slot `i` without handing it over: a slot reused for a
    /// new tenant gets its status (with the new generation) published between this and
    /// [`Segment::hand_over`], so `by_name` never pairs the new name with the old generation.
    pub fn write_registration(&self, i: u32, w: &WorkerSpec, launcher: &str) {
        let s = self.worker_slot(i);
        s.launcher.store(launcher);
        s.name.store(&w.name);
        s.worker_type.store(&w.worker_type);
        s.plugin.store(&w.plugin);
        s.library.store(&w.library);
        s.function.store(&w.function);
        s.extra.store_bytes(&w.extra);
        s.arg.store(w.arg, Ordering::Relaxed);
        s.start_time.store(w.start_time.encode(), Ordering::Relaxed);
        // issue 15: isolated
        s.isolated.store(w.isolated as u32, Ordering::Relaxed);
        // issue 14: notifications
        // No launcher until `publish_launcher` says so (a static worker never has one).
        s.launcher_latch.store(0, Ordering::Relaxed);
        s.notify
            .store(if w.needs_ready { NOTIFY_AT_READY } else { 0 }, Ordering::Relaxed);
    }

    /// Hands worker slot `i` over (`in_use`, release): everything written before, the
    /// registration and the status, is visible to whoever sees it in use.
    pub fn hand_over(&self, i: u32) {
        self.worker_slot(i).in_use.store(1, Ordering::Release);
    }

    // issue 14: notifications
    /// Names the latch a dynamic worker in slot `i` sets when it starts: its launcher's, taken by
    /// the supervisor from its own table (the launcher's child slot) and the tenancy that slot
    /// has now. A launcher that exits makes the handle stale, so a late start sets nothing.
    pub fn publish_launcher(&self, i: u32, launcher_child_slot: u32) {
        let epoch = self.child_slot(launcher_child_slot).latch().epoch();
        let raw = crate::shared::protocol::latch::encode_handle(launcher_child_slot, epoch);
        self.worker_slot(i).launcher_latch.store(raw, Ordering::Release);
    }

    /// Lock `i` of the lock table; `i` is checked against this process's own layout.
    pub fn lock_cell(&self, i: u32) -> &LockCell {
        assert!(i < self.layout.n_locks, "lock {i} out of range");
        // SAFETY: as for `child_slot`; a cell is atomics, valid as any bit pattern, and the table
        // is 64-byte aligned.
        unsafe { self.at(self.layout.locks_off + i as u64 * std::mem::size_of::<LockCell>() as u64) }
    }

    /// Pointers to every lock in this mapping, keyed by (plugin, name).
    pub fn locks(&self, reg: &Registry) -> Vec<((String, String), *const LockCell)> {
        reg.locks
            .iter()
            .take(self.layout.n_locks as usize)
            .enumerate()
            .map(|(i, l)| {
                (
                    (l.plugin.clone(), l.name.clone()),
                    self.lock_cell(i as u32) as *const LockCell,
                )
            })
            .collect()
    }

    /// Pointers to every region in this mapping, keyed by (plugin, name).
    pub fn regions(&self, reg: &Registry) -> Vec<((String, String), crate::shared::hostapi::MappedRegion)> {
        reg.regions
            .iter()
            .zip(&self.layout.region_offsets)
            .map(|(r, off)| {
                // SAFETY: the offset and size come from this layout; the region lies inside the map.
                let ptr = unsafe { self.base().add(*off as usize) };
                (
                    (r.plugin.clone(), r.name.clone()),
                    crate::shared::hostapi::MappedRegion { ptr, len: r.size },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_check_names_the_first_field_that_is_wrong() {
        let reg = Registry::default();
        let layout = Layout::compute(&reg, 2, 2);
        let cfg = Config::parse(std::path::Path::new("t.toml"), "[host]\npreload_plugins = []\n").unwrap();
        let seg = Segment::create(&layout, &[], &[], &cfg, 5, 0).unwrap();
        let me = std::process::id() as i32;
        seg.check_header(5, me).unwrap();
        let named = |generation, pid| match seg.check_header(generation, pid) {
            Err(SegmentError::Corrupt { check, .. }) => check,
            other => panic!("not refused as corrupt: {other:?}"),
        };
        assert_eq!(named(6, me), "generation");
        assert_eq!(named(5, me + 1), "host_pid");
        seg.header().n_locks.store(9, Ordering::Relaxed);
        assert_eq!(named(5, me), "n_locks");
        seg.header().n_locks.store(0, Ordering::Relaxed);
        seg.header().worker_slots_off.store(1, Ordering::Relaxed);
        assert_eq!(named(5, me), "worker_slots_off");
        seg.header().magic.store(0, Ordering::Relaxed);
        let e = seg.check_header(5, me).unwrap_err().to_string();
        assert!(
            e.contains("header check `magic` failed: found 0x0000000000000000"),
            "{e}"
        );
    }

    #[test]
    fn text_is_bounded_and_cut_at_char_boundaries() {
        let t: Text<4> = unsafe { std::mem::zeroed() };
        t.store("añbc");
        assert_eq!(t.load(), "añb");
        t.len.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(t.load_bytes().len(), 4);
    }
}
