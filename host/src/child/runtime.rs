//! The runtime plugin code gets in a worker or the startup child: the table of host functions a
//! worker calls ([`abi::WorkerApi`]: `should_stop`, `wait`, `declare_consistent`,
//! `reload_requested`, and from ABI 1.1 `wait_latch`, `latch`, `latch_fd`, `latch_reset`,
//! `set_activity`, `lock_acquire`, `lock_release`), the eventfd that `wait` sleeps on, and the
//! SIGTERM, SIGHUP and SIGURG handlers behind them.
//!
//! Locks: every acquisition counts in the child slot's `locks_held` before it tries, and every
//! release uncounts after it released, so the count is never lower than what the process holds;
//! a clean exit with a non-zero count is a crash (`child::exit_clean`). The lock calls take no
//! mutex and allocate nothing: the cell was resolved once by `HostApi::lock`.
//!
//! Runs in: workers and the startup child (and a spare once it becomes a worker). The table and
//! its context are created once per process and leaked, so they live as long as plugin code may
//! hold them; signal handlers only set an atomic flag and write the eventfd.
//!
//! Latches: the process's latch is the [`LatchCell`] in its own child slot. Another process sets
//! it and, if this one sleeps on it (or handed out its fd), sends SIGURG, whose handler writes the
//! eventfd (see [`crate::shared::latch`]). `wait` (ABI 1.0) never reports the latch, so plugins
//! built before latches keep their meaning; `wait_latch` does, after the cell's handshake.
//!
//! Isolated workers (issue 15): the process maps the segment read-only, so it cannot claim its
//! latch, announce a sleep or reset the flag. The supervisor adopts the cell for its pid right
//! after the launch (the runtime waits for that before plugin code runs); from then on every set
//! counts in the cell and signals the process, and the runtime compares the count with the last
//! one it reported (privately) before each sleep. Locks answer `STATUS_ISOLATED`, and so does
//! every other host function that would write the segment (see [`crate::shared::isolation`]).

use std::ffi::c_void;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use steward::abi;

use crate::child::exit_clean;
use crate::shared::handoff::ChildEnv;
use crate::shared::locks::{LockCell, Mode};
use crate::shared::protocol::latch::LatchCell;
use crate::shared::protocol::ChildSlot;

// issue 15: isolated
/// How long an isolated worker waits for the supervisor to claim its latch for it (it does so
/// right after it learns the pid: microseconds, unless the supervisor is stopped).
const ADOPT_TIMEOUT: Duration = Duration::from_secs(10);

static TERMINATE: AtomicBool = AtomicBool::new(false);
pub static RELOAD: AtomicBool = AtomicBool::new(false);
/// The latch eventfd: signal handlers write to it, `wait` polls it.
static LATCH: AtomicI32 = AtomicI32::new(-1);

fn wake_latch() {
    crate::shared::latch::wake_fd(LATCH.load(Ordering::Relaxed));
}

/// SIGURG: a latch set by another process (or a stray out-of-band TCP byte, which only costs a
/// spurious wake-up). Runs on whatever thread the kernel picks; the eventfd wakes the one that
/// waits.
extern "C" fn on_urg(_sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    wake_latch();
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

/// Puts the SIGURG handler back if plugin code replaced it (a plugin that ignores or handles
/// SIGURG would otherwise lose latch wake-ups until its next timeout), and says so once.
fn keep_urg_handler() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if crate::sys::ensure_handler(libc::SIGURG, on_urg as *const () as libc::sighandler_t)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("SIGURG's handler was changed by plugin code; the host put its own back (latches need it)");
    }
}

extern "C" fn on_term(_sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    TERMINATE.store(true, Ordering::SeqCst);
    wake_latch();
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

pub extern "C" fn on_hup(_sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    RELOAD.store(true, Ordering::SeqCst);
    wake_latch();
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

/// The context behind a [`abi::WorkerApi`].
struct WorkerCtx {
    latch: RawFd,
    death_fd: RawFd,
    host_gone: AtomicBool,
    host_pid: i32,
    /// The segment header's `consistent` flag, in the startup child only (null elsewhere).
    consistent: *const std::sync::atomic::AtomicU32,
    // issue 14: latches
    /// This process's child slot (null when it has none): its latch and activity cells.
    slot: *const ChildSlot,
    /// The raw handle of this process's latch (0 without a slot).
    latch_handle: u64,
    /// One writer at a time for the activity cell (plugin threads may call at once).
    activity: Mutex<()>,
    // issue 14: locks
    /// The child slot's count of locks held or waited for (a private counter when the child has
    /// no slot, which never happens for a child that runs plugin code).
    locks_held: *const AtomicU32,
    /// Where this mapping's lock table lies: a cell passed to `lock_acquire` must be one of it.
    locks_start: usize,
    locks_end: usize,
    // issue 15: isolated
    /// In an isolated worker: its latch cell, read-only (null otherwise).
    iso_latch: *const LatchCell,
    /// How many of the isolated latch's sets this process has reported (its private reset).
    iso_seen: AtomicU32,
}

// No `Sync` impl: nothing Rust checks ever shares a `WorkerCtx` (it reaches plugin code only as
// the table's `*mut c_void`). Plugin threads may still call the table's functions at once; that
// is sound because after creation the context is only read, but for `host_gone` (an atomic), and
// `consistent` points to an atomic in the segment, which stays mapped until the process exits.
// The same holds for `slot`, whose cells are atomics; `activity` is a mutex.

impl WorkerCtx {
    fn slot(&self) -> Option<&ChildSlot> {
        // SAFETY: null or this process's own child slot, in a mapping that lives until exit.
        unsafe { self.slot.as_ref() }
    }

    // issue 15: isolated
    /// The isolated worker's latch cell (read-only mapping), if this process is one.
    fn iso_latch(&self) -> Option<&LatchCell> {
        // SAFETY: null or a cell of this process's child slot, mapped until exit; only read.
        unsafe { self.iso_latch.as_ref() }
    }

    /// An isolated worker: whether its latch was set since it last looked, marking it seen.
    fn iso_take(&self, cell: &LatchCell) -> bool {
        let (_, sets) = cell.isolated_view();
        self.iso_seen.swap(sets, Ordering::SeqCst) != sets
    }
}

impl WorkerCtx {
    fn check_host(&self, timeout_ms: i32) -> bool {
        if self.host_gone.load(Ordering::Relaxed) {
            return true;
        }
        let r = crate::sys::poll_in(&[self.death_fd], timeout_ms);
        if r[0] != 0 {
            self.host_gone.store(true, Ordering::Relaxed);
        }
        self.host_gone.load(Ordering::Relaxed)
    }
}

unsafe extern "C" fn api_should_stop(ctx: *mut c_void) -> u32 {
    // SAFETY: `ctx` is the leaked `WorkerCtx` this module created.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    (TERMINATE.load(Ordering::SeqCst) || c.check_host(0)) as u32
}

unsafe extern "C" fn api_reload_requested(_ctx: *mut c_void) -> u32 {
    RELOAD.load(Ordering::SeqCst) as u32
}

unsafe extern "C" fn api_declare_consistent(ctx: *mut c_void) {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    // SAFETY: non-null only in the startup child, where it points into the mapped header.
    if let Some(flag) = unsafe { c.consistent.as_ref() } {
        if flag.swap(1, Ordering::AcqRel) == 0 {
            tracing::info!("declared the host consistent");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.host_pid),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
    }
}

// issue 14: readiness
unsafe extern "C" fn api_set_ready(ctx: *mut c_void) {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    if let Some(slot) = c.slot() {
        if slot.declare_ready() {
            tracing::info!("declared ready");
            wake_supervisor(c.host_pid);
            // issue 14: notifications
            crate::shared::handles::declared_ready();
        }
    }
}

// issue 14: dynamic workers
/// Whether this process was asked to stop (a handle's wait ends early then).
fn terminating() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// Tells the supervisor to look at this worker's child slot (its readiness flag): SIGUSR1, as
/// for `consistent` (decision 40). The flag is the message; the signal is only the wake-up.
pub fn wake_supervisor(host_pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), nix::sys::signal::Signal::SIGUSR1);
}

unsafe extern "C" fn api_wait(ctx: *mut c_void, timeout_us: u64) -> u32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    wait_for(c, timeout_us, false)
}

unsafe extern "C" fn api_wait_latch(ctx: *mut c_void, timeout_us: u64) -> u32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    wait_for(c, timeout_us, true)
}

unsafe extern "C" fn api_latch(ctx: *mut c_void) -> u64 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    c.latch_handle
}

unsafe extern "C" fn api_latch_fd(ctx: *mut c_void) -> i32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    // issue 15: isolated
    // Every set of an isolated latch signals its owner already.
    if let Some(cell) = c.iso_latch() {
        keep_urg_handler();
        if cell.isolated_view().1 != c.iso_seen.load(Ordering::SeqCst) {
            wake_latch();
        }
        return c.latch;
    }
    let Some(slot) = c.slot() else { return -1 };
    keep_urg_handler();
    slot.latch().signal_always();
    // A set that came before any signal was asked for must still make the fd readable (the
    // SeqCst store above and this load pair with a setter's flag-then-fence-then-read).
    if slot.latch().is_set() {
        wake_latch();
    }
    c.latch
}

unsafe extern "C" fn api_latch_reset(ctx: *mut c_void) -> u32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    // Empty the fd first, so code that polls it level-triggered sleeps again; a set after the
    // drain writes it anew, and one between drain and reset is returned here. A terminate or
    // reload the drain swallowed stays in its flag (the caller asks `should_stop` next).
    crate::sys::drain(c.latch);
    // issue 15: isolated
    if let Some(cell) = c.iso_latch() {
        return c.iso_take(cell) as u32;
    }
    c.slot().is_some_and(|s| s.latch().take()) as u32
}

unsafe extern "C" fn api_set_activity(ctx: *mut c_void, text: abi::Str) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as above.
        let c = unsafe { &*(ctx as *const WorkerCtx) };
        // SAFETY: the plugin passes a valid view for the call.
        let bytes = unsafe { text.as_bytes() };
        // Only the first 256 bytes of the first line are kept: never copy a huge text for them.
        let bytes = &bytes[..bytes.len().min(4 * crate::shared::protocol::latch::ACTIVITY_LEN)];
        if let Some(slot) = c.slot() {
            let _one = c.activity.lock().unwrap_or_else(|e| e.into_inner());
            slot.activity().store(&String::from_utf8_lossy(bytes));
        }
    });
}

/// `wait` and, with `latch`, `wait_latch`: returns the first of terminate, host gone, reload,
/// latch set (only with `latch`), timeout.
fn wait_for(c: &WorkerCtx, timeout_us: u64, latch: bool) -> u32 {
    let cell = if latch { c.slot().map(ChildSlot::latch) } else { None };
    // issue 15: isolated
    let iso = if latch { c.iso_latch() } else { None };
    if cell.is_some() || iso.is_some() {
        keep_urg_handler();
    }
    let deadline = std::time::Instant::now() + Duration::from_micros(timeout_us);
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            return abi::WAIT_TERMINATE;
        }
        if c.host_gone.load(Ordering::Relaxed) {
            return abi::WAIT_HOST_GONE;
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            crate::shared::reload::refresh_child_settings();
            return abi::WAIT_RELOAD;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // issue 15: isolated
        // Sets counted since the last look: report them. One that comes after this look signals
        // this process, whose handler writes the eventfd, so the sleep below ends.
        if let Some(iso) = iso {
            if c.iso_take(iso) {
                return abi::WAIT_LATCH;
            }
            let r = crate::sys::ppoll_in(&[c.latch, c.death_fd], Some(left), libc::SIGURG);
            if r[1] != 0 {
                c.host_gone.store(true, Ordering::Relaxed);
            } else if r[0] != 0 {
                crate::sys::drain(c.latch);
            } else if std::time::Instant::now() >= deadline {
                return abi::WAIT_TIMEOUT;
            }
            continue;
        }
        let r = match cell {
            None => {
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                crate::sys::poll_in(&[c.latch, c.death_fd], ms)
            }
            Some(cell) => {
                // Set before this check: return it. Checked after `waiting` is announced, so a
                // set from now on sees it and signals.
                if cell.take() {
                    return abi::WAIT_LATCH;
                }
                let set_meanwhile = cell.begin_wait();
                // SIGURG unblocked for the sleep even if plugin code blocked it in this thread.
                let r = if set_meanwhile {
                    vec![0, 0]
                } else {
                    crate::sys::ppoll_in(&[c.latch, c.death_fd], Some(left), libc::SIGURG)
                };
                cell.end_wait();
                if set_meanwhile {
                    continue;
                }
                r
            }
        };
        if r[1] != 0 {
            c.host_gone.store(true, Ordering::Relaxed);
            continue;
        }
        if r[0] != 0 {
            crate::sys::drain(c.latch);
            continue;
        }
        if std::time::Instant::now() >= deadline {
            return abi::WAIT_TIMEOUT;
        }
    }
}

// issue 14: locks

impl WorkerCtx {
    /// The lock cell a plugin passed, if it is one of this mapping's lock table: a stray pointer
    /// is refused instead of written through.
    #[inline]
    fn lock_cell(&self, cell: *const c_void) -> Option<&LockCell> {
        let at = cell as usize;
        if at < self.locks_start
            || at >= self.locks_end
            || !(at - self.locks_start).is_multiple_of(std::mem::size_of::<LockCell>())
        {
            return None;
        }
        // SAFETY: a whole cell of the lock table, which stays mapped until the process exits;
        // cells are atomics, valid as any bit pattern.
        Some(unsafe { &*(cell as *const LockCell) })
    }

    fn held(&self) -> &AtomicU32 {
        // SAFETY: points into the child slot (mapped for the process's life) or at a leaked
        // counter; set once in `runtime`.
        unsafe { &*self.locks_held }
    }
}

unsafe extern "C" fn api_lock_acquire(ctx: *mut c_void, cell: *const c_void, mode: u32, try_only: u32) -> abi::Status {
    // SAFETY: `ctx` is the leaked `WorkerCtx` this module created.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    let (Some(cell), Some(mode)) = (c.lock_cell(cell), Mode::from_abi(mode)) else {
        return abi::STATUS_INVALID;
    };
    // issue 15: isolated
    // A lock is a store into the segment: refused here rather than a fault in the plugin.
    if crate::shared::isolation::active() {
        return abi::STATUS_ISOLATED;
    }
    // Counted before the attempt: a death at any point from here on, holding or waiting, leaves
    // the count non-zero and so is a crash. The fence keeps the compiler from moving the count
    // after the lock operation (a process dies at an instruction boundary, so program order is
    // what counts).
    c.held().fetch_add(1, Ordering::SeqCst);
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if crate::child::EXITING.load(Ordering::SeqCst) {
        // Another thread of this process is exiting and may already have found no lock held: a
        // lock taken now would outlive the process with nobody to release it. This thread never
        // gets it; the process is about to end, so it waits for that.
        loop {
            std::thread::park();
        }
    }
    if try_only != 0 {
        if cell.try_acquire(mode) {
            return abi::STATUS_OK;
        }
        c.held().fetch_sub(1, Ordering::Relaxed);
        return abi::STATUS_BUSY;
    }
    cell.acquire(mode);
    abi::STATUS_OK
}

unsafe extern "C" fn api_lock_release(ctx: *mut c_void, cell: *const c_void, mode: u32) {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    let (Some(cell), Some(mode)) = (c.lock_cell(cell), Mode::from_abi(mode)) else {
        return;
    };
    cell.release(mode);
    // Uncounted only once released (see `api_lock_acquire`).
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    c.held().fetch_sub(1, Ordering::Relaxed);
}

pub fn leak_str(s: String) -> abi::Str {
    let s: &'static str = Box::leak(s.into_boxed_str());
    abi::Str::new(s)
}

/// What plugin code is told about itself.
pub struct Identity {
    pub name: String,
    pub worker_type: String,
    pub plugin: String,
    pub arg: u64,
    pub extra: Vec<u8>,
}

/// Sets up the runtime (latch, signal flags, regions) and builds the table plugin code gets.
pub fn runtime(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, who: Identity, startup: bool) -> &'static abi::WorkerApi {
    let regions = env.segment.regions(env.registry);
    crate::shared::hostapi::with_state(|s| s.regions = regions.into_iter().collect());
    crate::shared::hostapi::set_locks(env.segment.locks(env.registry));
    let Ok(latch) = crate::sys::eventfd() else {
        exit_clean(slot, 1, "cannot create the latch eventfd");
    };
    LATCH.store(latch.as_raw_fd(), Ordering::SeqCst);
    // SAFETY: the handlers only touch atomics and call write(2).
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    // SIGURG before the claim below: from the claim on, setters may signal this pid.
    crate::sys::ensure_handler(libc::SIGURG, on_urg as *const () as libc::sighandler_t);
    crate::shared::latch::attach(env.segment, latch.as_raw_fd(), env.host_pid);
    // issue 14: dynamic workers
    // A worker's child slot is its worker slot, and so its request slot; the startup child's
    // (issue 14: notifications) and a client child's (issue 15: connections) request slots are
    // at their child slots' indexes too.
    let layout = &env.segment.layout;
    let own_slot = slot
        .and_then(|s| env.segment.child_slot_index(s))
        .filter(|&i| match startup {
            true => i == layout.startup_request_slot(),
            false => i < layout.n_worker_slots || (i >= layout.client_child_slot(0) && i < layout.n_request_slots()),
        });
    crate::shared::handles::attach(env.segment, own_slot, env.host_pid, terminating);
    let latch_handle = slot.and_then(|s| {
        let index = env.segment.child_slot_index(s)?;
        let epoch = s.latch().claim(std::process::id() as i32);
        Some(crate::shared::protocol::latch::encode_handle(index, epoch))
    });
    // issue 15: isolated
    // The supervisor claims an isolated worker's latch for it, right after it learnt the pid;
    // until then a set could not signal this process, so plugin code waits for that.
    let iso = crate::shared::isolation::own_child_slot().filter(|_| crate::shared::isolation::active());
    let iso_latch = iso.map(|i| env.segment.child_slot(i).latch());
    let latch_handle = match (iso, iso_latch) {
        (Some(index), Some(cell)) => {
            if !cell.wait_adopted(std::process::id() as i32, ADOPT_TIMEOUT) {
                tracing::error!("the host did not hand this isolated process its latch within {ADOPT_TIMEOUT:?}");
                exit_clean(None, 1, "no latch");
            }
            Some(crate::shared::protocol::latch::encode_handle(
                index,
                cell.isolated_view().0,
            ))
        }
        _ => latch_handle,
    };
    let ctx: &'static WorkerCtx = Box::leak(Box::new(WorkerCtx {
        latch: latch.as_raw_fd(),
        death_fd: env.death_fd,
        host_gone: AtomicBool::new(false),
        host_pid: env.host_pid,
        consistent: if startup {
            &env.segment.header().consistent
        } else {
            std::ptr::null()
        },
        slot: slot.map_or(std::ptr::null(), |s| s as *const ChildSlot),
        latch_handle: latch_handle.unwrap_or(0),
        activity: Mutex::new(()),
        locks_held: match slot {
            Some(s) => s.locks_held(),
            None => Box::leak(Box::new(AtomicU32::new(0))),
        },
        locks_start: env.segment.base() as usize + env.segment.layout.locks_off as usize,
        locks_end: env.segment.base() as usize
            + env.segment.layout.locks_off as usize
            + env.segment.layout.n_locks as usize * std::mem::size_of::<LockCell>(),
        iso_latch: iso_latch.map_or(std::ptr::null(), |c| c as *const LatchCell),
        iso_seen: AtomicU32::new(0),
    }));
    std::mem::forget(latch);
    let extra: &'static [u8] = Box::leak(who.extra.into_boxed_slice());
    Box::leak(Box::new(abi::WorkerApi {
        size: std::mem::size_of::<abi::WorkerApi>() as u32,
        _reserved: 0,
        ctx: ctx as *const WorkerCtx as *mut c_void,
        host: crate::shared::hostapi::table_for(abi::MODE_PRELOAD),
        name: leak_str(who.name),
        worker_type: leak_str(who.worker_type),
        plugin: leak_str(who.plugin),
        arg: who.arg,
        extra: extra.as_ptr(),
        extra_len: extra.len(),
        should_stop: api_should_stop,
        wait: api_wait,
        declare_consistent: api_declare_consistent,
        reload_requested: api_reload_requested,
        wait_latch: api_wait_latch,
        latch: api_latch,
        latch_fd: api_latch_fd,
        latch_reset: api_latch_reset,
        set_activity: api_set_activity,
        lock_acquire: api_lock_acquire,
        lock_release: api_lock_release,
        set_ready: api_set_ready,
    }))
}
