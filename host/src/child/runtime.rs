//! The runtime plugin code gets in a worker or the startup child: the table of host functions a
//! worker calls ([`abi::WorkerApi`]: `should_stop`, `wait`, `declare_consistent`,
//! `reload_requested`), the latch that `wait` sleeps on, and the SIGTERM and SIGHUP flags behind
//! them.
//!
//! Runs in: workers and the startup child (and a spare once it becomes a worker). The table and
//! its context are created once per process and leaked, so they live as long as plugin code may
//! hold them; signal handlers only set an atomic flag and write the latch.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use steward::abi;

use crate::child::exit_clean;
use crate::shared::handoff::ChildEnv;
use crate::shared::protocol::ChildSlot;

static TERMINATE: AtomicBool = AtomicBool::new(false);
pub static RELOAD: AtomicBool = AtomicBool::new(false);
/// The latch eventfd: signal handlers write to it, `wait` polls it.
static LATCH: AtomicI32 = AtomicI32::new(-1);

fn wake_latch() {
    let fd = LATCH.load(Ordering::Relaxed);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; an eventfd takes exactly 8 bytes.
        unsafe { libc::write(fd, &one as *const u64 as *const c_void, 8) };
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
}

// No `Sync` impl: nothing Rust checks ever shares a `WorkerCtx` (it reaches plugin code only as
// the table's `*mut c_void`). Plugin threads may still call the table's functions at once; that
// is sound because after creation the context is only read, but for `host_gone` (an atomic), and
// `consistent` points to an atomic in the segment, which stays mapped until the process exits.

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

unsafe extern "C" fn api_wait(ctx: *mut c_void, timeout_us: u64) -> u32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
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
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let r = crate::sys::poll_in(&[c.latch, c.death_fd], ms);
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
    let Ok(latch) = crate::sys::eventfd() else {
        exit_clean(slot, 1, "cannot create the latch eventfd");
    };
    LATCH.store(latch.as_raw_fd(), Ordering::SeqCst);
    // SAFETY: the handlers only touch atomics and call write(2).
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
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
    }))
}
