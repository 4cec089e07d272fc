//! What a running worker gets: [`Worker`].
//!
//! Runs in: a worker process, inside the entry exported with [`crate::worker_entry!`].

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};
use std::time::Duration;

use crate::abi;
use crate::background_worker::BackgroundWorker;
use crate::handle::{LaunchError, WorkerHandle};
use crate::latch::LatchHandle;
use crate::lock::{Lock, LockError};
use crate::settings::{self, SettingError, SettingValue};
use crate::shareable::Shareable;

/// How a worker's run ends, besides `Ok(())` (exit code 0: done, never restarted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerError {
    /// Exit code 1: restarted after the worker's restart policy.
    Restart(String),
    /// Exit code 2: never restarted; the worker is shown `failed` with this reason.
    Fatal(String),
}

impl WorkerError {
    pub fn restart(reason: impl Into<String>) -> WorkerError {
        WorkerError::Restart(reason.into())
    }
    pub fn fatal(reason: impl Into<String>) -> WorkerError {
        WorkerError::Fatal(reason.into())
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Restart(m) => write!(f, "restart: {m}"),
            WorkerError::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Why [`Worker::wait`] returned.
///
/// Non-exhaustive since SDK 0.2, like every error and status enum of the SDK: a later SDK may
/// add a reason to wake without breaking your build. A `match` needs a `_` arm, and stopping is
/// best tested with [`WaitResult::should_stop`], which stays right for reasons added later:
///
/// ```
/// use steward::WaitResult;
///
/// fn round(r: WaitResult) -> Option<&'static str> {
///     match r {
///         WaitResult::Timeout => Some("work"),
///         WaitResult::Reload => Some("re-read the settings"),
///         WaitResult::Latch => Some("look at the shared queue"),
///         r if r.should_stop() => None,
///         _ => Some("nothing to do"),
///     }
/// }
/// assert_eq!(round(WaitResult::Terminate), None);
/// ```
///
/// A `match` that names every variant without a `_` arm does not compile:
///
/// ```compile_fail
/// use steward::WaitResult;
///
/// fn round(r: WaitResult) -> Option<&'static str> {
///     match r {
///         WaitResult::Timeout => Some("work"),
///         WaitResult::Reload => Some("re-read the settings"),
///         WaitResult::Latch => Some("look at the shared queue"),
///         WaitResult::Terminate | WaitResult::HostGone => None,
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitResult {
    /// The timeout passed.
    Timeout,
    /// The host asked this worker to stop: finish up and return.
    Terminate,
    /// The supervisor is gone: return at once.
    HostGone,
    /// The configuration was reloaded: settings read from now on have their new values. Reported
    /// once per reload.
    Reload,
    /// This worker's latch was set ([`Worker::latch`]); the latch is reset before `wait`
    /// returns, so a set that comes after is never lost. Only returned once the worker has taken
    /// its latch (`latch()` or `latch_fd()`), or launched a worker (`launch()`: its latch tells
    /// it of that worker's start and stop).
    Latch,
}

impl WaitResult {
    /// Whether the worker should stop (termination requested or host gone).
    pub fn should_stop(self) -> bool {
        matches!(self, WaitResult::Terminate | WaitResult::HostGone)
    }
}

/// Why [`Worker::region`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    #[error("no region named {0:?} was requested by this plugin")]
    NotFound(String),
    #[error("region {name:?}: the host refused (status {status})")]
    Other { name: String, status: i32 },
    #[error("a region of {len} bytes cannot hold a {type_name} of {need} bytes")]
    TooSmall {
        type_name: &'static str,
        need: usize,
        len: usize,
    },
    #[error("a {type_name} needs {align}-byte alignment, more than a region's start has")]
    Misaligned { type_name: &'static str, align: usize },
}

/// A named shared-memory region: the same bytes in every process of the host, zeroed each time the
/// host creates its segment. It is raw memory: share data through atomics.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The start of the region (64-byte aligned). For ordinary use, [`Region::get`] views the
    /// region as a [`Shareable`] type without `unsafe`.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The region viewed as a `T` (its first `size_of::<T>()` bytes): atomics, arrays of them,
    /// or a struct declared with [`crate::shareable!`]. All zeroes until a worker writes it, and
    /// again after every crash reset. Fails if the region is smaller than `T` or `T` needs more
    /// alignment than its start has (regions start 64-byte aligned).
    ///
    /// The reference is `'static`: a region stays mapped until the worker process exits.
    pub fn get<T: Shareable>(&self) -> Result<&'static T, RegionError> {
        let type_name = std::any::type_name::<T>();
        let (need, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        if need > self.len {
            return Err(RegionError::TooSmall {
                type_name,
                need,
                len: self.len,
            });
        }
        if !(self.ptr as usize).is_multiple_of(align) {
            return Err(RegionError::Misaligned { type_name, align });
        }
        // SAFETY: in bounds and aligned (checked above); `Shareable` promises every bit pattern
        // is a valid `T` and that shared changes go through atomics only; the segment is never
        // unmapped while the process runs, so `'static` holds.
        Ok(unsafe { &*(self.ptr as *const T) })
    }

    /// The region viewed as as many `T` as fit in it, for a table of records.
    pub fn slice<T: Shareable>(&self) -> Result<&'static [T], RegionError> {
        let type_name = std::any::type_name::<T>();
        let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        if !(self.ptr as usize).is_multiple_of(align) {
            return Err(RegionError::Misaligned { type_name, align });
        }
        let n = self.len.checked_div(size).unwrap_or(0);
        // SAFETY: `n * size <= len` bytes, aligned (checked above); as for `get` otherwise.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr as *const T, n) })
    }
    /// The `index`-th `AtomicU64` of the region, or `None` past its end.
    pub fn atomic_u64(&self, index: usize) -> Option<&AtomicU64> {
        let end = index.checked_add(1)?.checked_mul(8)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above), 8-aligned (the region is 64-aligned), and the mapping
        // lives as long as the worker process; shared mutation happens only through atomics.
        Some(unsafe { &*(self.ptr.add(index * 8) as *const AtomicU64) })
    }
    /// The `index`-th `AtomicU32` of the region, or `None` past its end.
    pub fn atomic_u32(&self, index: usize) -> Option<&AtomicU32> {
        let end = index.checked_add(1)?.checked_mul(4)?;
        if end > self.len {
            return None;
        }
        // SAFETY: as for `atomic_u64`, with 4-byte alignment.
        Some(unsafe { &*(self.ptr.add(index * 4) as *const AtomicU32) })
    }
    /// The `index`-th byte of the region as an atomic, or `None` past its end.
    pub fn atomic_u8(&self, index: usize) -> Option<&AtomicU8> {
        if index >= self.len {
            return None;
        }
        // SAFETY: in bounds; see `atomic_u64`.
        Some(unsafe { &*(self.ptr.add(index) as *const AtomicU8) })
    }
}

/// A running background worker. Exists only inside a worker entry.
pub struct Worker {
    api: &'static abi::WorkerApi,
}

impl Worker {
    pub(crate) fn new(api: &abi::WorkerApi) -> Worker {
        // SAFETY: the host's worker table lives until the worker process exits.
        let api: &'static abi::WorkerApi = unsafe { &*(api as *const abi::WorkerApi) };
        Worker { api }
    }

    fn s(&self, v: abi::Str) -> &str {
        // SAFETY: the host keeps these strings alive for the worker's life and checked UTF-8.
        unsafe { v.to_str() }.unwrap_or("")
    }

    /// The worker's name, unique in the host.
    pub fn name(&self) -> &str {
        self.s(self.api.name)
    }
    /// The worker's type (group name).
    pub fn worker_type(&self) -> &str {
        self.s(self.api.worker_type)
    }
    /// The plugin that registered this worker.
    pub fn plugin(&self) -> &str {
        self.s(self.api.plugin)
    }
    /// The `u64` argument given at registration.
    pub fn arg(&self) -> u64 {
        self.api.arg
    }
    /// The opaque extra bytes given at registration.
    pub fn extra(&self) -> &[u8] {
        if self.api.extra.is_null() {
            return &[];
        }
        // SAFETY: the host keeps `extra_len` bytes alive for the worker's life.
        unsafe { std::slice::from_raw_parts(self.api.extra, self.api.extra_len) }
    }

    /// Whether the host asked this worker to stop, or is gone.
    pub fn should_stop(&self) -> bool {
        // SAFETY: the host's function with its own context.
        unsafe { (self.api.should_stop)(self.api.ctx) != 0 }
    }

    /// Sleeps up to `timeout`, returning early when termination is requested, the host dies, the
    /// configuration is reloaded, or (once the worker has taken its latch) the latch is set.
    pub fn wait(&self, timeout: Duration) -> WaitResult {
        let us = timeout.as_micros().min(u64::MAX as u128) as u64;
        let code = if crate::latch::used() && self.has(std::mem::offset_of!(abi::WorkerApi, wait_latch)) {
            // SAFETY: the host's function with its own context; the table has it (checked).
            unsafe { (self.api.wait_latch)(self.api.ctx, us) }
        } else {
            // SAFETY: the host's function with its own context.
            unsafe { (self.api.wait)(self.api.ctx, us) }
        };
        match code {
            abi::WAIT_TIMEOUT => WaitResult::Timeout,
            abi::WAIT_HOST_GONE => WaitResult::HostGone,
            abi::WAIT_RELOAD => WaitResult::Reload,
            abi::WAIT_LATCH => WaitResult::Latch,
            _ => WaitResult::Terminate,
        }
    }

    /// Whether the host's worker table has the function at `offset` (ABI 1.1 fields).
    fn has(&self, offset: usize) -> bool {
        offset + std::mem::size_of::<usize>() <= self.api.size as usize
    }

    // issue 14: dynamic workers
    /// Launches `w` as a dynamic worker of this worker's plugin: a worker slot from the
    /// `max_worker_processes` pool, the same builder as static workers (entry, arg, extra,
    /// restart policy, start time). Returns once the host adopted it; the worker starts right
    /// after, and [`WorkerHandle::wait_for_startup`] waits for that. Every slot taken is
    /// [`LaunchError::NoFreeSlot`] at once, never a wait; a launch that fails later (an entry
    /// that does not resolve) comes back through the handle as `Stopped` with the reason.
    ///
    /// The launcher is told: this worker's latch is set when the new worker starts (its entry
    /// runs; for a [`BackgroundWorker::needs_ready`] worker, when it declares itself ready),
    /// stops, or fails to launch, so [`Worker::wait`] returns [`WaitResult::Latch`] and the
    /// handle's [`WorkerHandle::status`] says which. A name some worker of the host has is
    /// refused ([`LaunchError::DuplicateName`]), as is a `start_after` name that is no worker's
    /// ([`LaunchError::UnknownStartAfter`]).
    pub fn launch(&self, w: BackgroundWorker) -> Result<WorkerHandle, LaunchError> {
        crate::handle::launch(self.plugin(), &w)
    }

    /// This worker's latch: hand it to other processes (store [`LatchHandle::to_raw`] in a
    /// region) so they can wake this worker's [`Worker::wait`] with [`LatchHandle::set`]. From
    /// the first call on, `wait` returns [`WaitResult::Latch`] when the latch is set. A host
    /// without latches (ABI 1.0) gives [`LatchHandle::NONE`].
    pub fn latch(&self) -> LatchHandle {
        if !self.has(std::mem::offset_of!(abi::WorkerApi, latch)) {
            return LatchHandle::NONE;
        }
        crate::latch::mark_used();
        // SAFETY: the host's function with its own context; the table has it (checked).
        LatchHandle::from_raw(unsafe { (self.api.latch)(self.api.ctx) })
    }

    /// A descriptor that becomes readable when the latch is set, or on terminate or reload, for
    /// async code (tokio's `AsyncFd`, `poll(2)`); the host's death ends the process. The host
    /// owns it: never read or close it. After it becomes readable, call
    /// [`Worker::reset_latch`] (which empties it) and then [`Worker::should_stop`] (and
    /// [`Worker::reload_requested`]) to learn why. `None` on a host without latches (ABI 1.0).
    pub fn latch_fd(&self) -> Option<BorrowedFd<'static>> {
        if !self.has(std::mem::offset_of!(abi::WorkerApi, latch_fd)) {
            return None;
        }
        crate::latch::mark_used();
        // SAFETY: the host's function with its own context; the table has it (checked).
        let fd = unsafe { (self.api.latch_fd)(self.api.ctx) };
        // SAFETY: the host keeps its latch eventfd open until the process exits.
        (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Resets the latch and empties [`Worker::latch_fd`]; returns whether the latch was set. For
    /// code that waits on the fd; `wait` resets the latch itself.
    pub fn reset_latch(&self) -> bool {
        if !self.has(std::mem::offset_of!(abi::WorkerApi, latch_reset)) {
            return false;
        }
        // SAFETY: the host's function with its own context; the table has it (checked).
        unsafe { (self.api.latch_reset)(self.api.ctx) != 0 }
    }

    /// Shows `text` as this worker's activity in `steward status`, until the next call or the
    /// end of this process. The host keeps the first line, replaces control characters and cuts
    /// it to 256 bytes (at a character boundary). Cheap: no system call.
    pub fn set_activity(&self, text: &str) {
        if !self.has(std::mem::offset_of!(abi::WorkerApi, set_activity)) {
            return;
        }
        // SAFETY: the host's function with its own context; the view lives for the call.
        unsafe { (self.api.set_activity)(self.api.ctx, abi::Str::new(text)) }
    }

    // issue 14: readiness
    /// Declares this worker ready. A worker registered with
    /// [`BackgroundWorker::needs_ready`](crate::BackgroundWorker::needs_ready) shows `starting`
    /// in `steward status` until it calls this, and `running` after; workers registered
    /// [`start_after`](crate::BackgroundWorker::start_after) it start only from now on. Only the
    /// first call of a process counts; the readiness ends with the process. A host without
    /// readiness (ABI 1.0) ignores it.
    pub fn set_ready(&self) {
        if !self.has(std::mem::offset_of!(abi::WorkerApi, set_ready)) {
            return;
        }
        // SAFETY: the host's function with its own context.
        unsafe { (self.api.set_ready)(self.api.ctx) }
    }

    /// Whether a configuration reload arrived that [`Worker::wait`] has not reported yet
    /// (`wait` returns [`WaitResult::Reload`] once per reload). Does not consume it.
    pub fn reload_requested(&self) -> bool {
        // SAFETY: the host's function with its own context.
        unsafe { (self.api.reload_requested)(self.api.ctx) != 0 }
    }

    fn host(&self) -> &abi::HostApi {
        // SAFETY: the host's table is `'static` in the host binary.
        unsafe { &*self.api.host }
    }

    /// The plugin whose code is running: the library of the entry (usually the registering one).
    fn code_plugin(&self) -> &str {
        crate::own_plugin().unwrap_or_else(|| self.plugin())
    }

    /// Reads a setting of the plugin this code belongs to.
    pub fn setting<T: SettingValue>(&self, name: &str) -> Result<T, SettingError> {
        settings::get(self.host(), self.code_plugin(), name)
    }

    /// Reads a setting of another plugin (by its name).
    pub fn plugin_setting<T: SettingValue>(&self, plugin: &str, name: &str) -> Result<T, SettingError> {
        settings::get(self.host(), plugin, name)
    }

    /// Looks up a region that the plugin this code belongs to requested in init.
    pub fn region(&self, name: &str) -> Result<Region, RegionError> {
        let h = self.host();
        let mut ptr = std::ptr::null_mut();
        let mut len = 0u64;
        // SAFETY: the host's function with its own context; out-pointers are valid.
        let st = unsafe {
            (h.region)(
                h.ctx,
                abi::Str::new(self.code_plugin()),
                abi::Str::new(name),
                &mut ptr,
                &mut len,
            )
        };
        match st {
            abi::STATUS_OK if !ptr.is_null() => Ok(Region { ptr, len: len as usize }),
            abi::STATUS_NOT_FOUND | abi::STATUS_OK => Err(RegionError::NotFound(name.to_owned())),
            status => Err(RegionError::Other {
                name: name.to_owned(),
                status,
            }),
        }
    }

    /// Looks up a lock that the plugin this code belongs to requested in init
    /// ([`crate::Registrar::request_lock`]). Look it up once and keep the [`Lock`]: taking it
    /// then costs one call into the host.
    ///
    /// ```ignore
    /// let counter = w.lock("counter")?;
    /// let shared = w.region("state")?.get::<State>()?;
    /// {
    ///     let _g = counter.exclusive();
    ///     shared.total.store(shared.total.load(Relaxed) + 1, Relaxed);
    /// }
    /// ```
    pub fn lock(&self, name: &str) -> Result<Lock, LockError> {
        crate::lock::lookup(self.api, self.code_plugin(), name)
    }
}

/// What a startup hook gets: it runs in the startup child before the host is running, and may
/// declare the host consistent. Exists only inside a hook exported with [`crate::startup_hook!`].
pub struct Startup {
    w: Worker,
}

impl Startup {
    pub(crate) fn new(api: &abi::WorkerApi) -> Startup {
        Startup { w: Worker::new(api) }
    }
    /// The hook's name.
    pub fn name(&self) -> &str {
        self.w.name()
    }
    /// Declares the host consistent: workers registered with `StartTime::Consistent` may start.
    pub fn declare_consistent(&self) {
        // SAFETY: the host's function with its own context.
        unsafe { (self.w.api.declare_consistent)(self.w.api.ctx) }
    }
    /// As [`Worker::wait`].
    pub fn wait(&self, timeout: Duration) -> WaitResult {
        self.w.wait(timeout)
    }
    /// As [`Worker::should_stop`].
    pub fn should_stop(&self) -> bool {
        self.w.should_stop()
    }
    /// As [`Worker::latch`]: the startup child's latch, while the hooks run.
    pub fn latch(&self) -> LatchHandle {
        self.w.latch()
    }
    /// As [`Worker::latch_fd`].
    pub fn latch_fd(&self) -> Option<BorrowedFd<'static>> {
        self.w.latch_fd()
    }
    /// As [`Worker::reset_latch`].
    pub fn reset_latch(&self) -> bool {
        self.w.reset_latch()
    }
    /// As [`Worker::setting`].
    pub fn setting<T: SettingValue>(&self, name: &str) -> Result<T, SettingError> {
        self.w.setting(name)
    }
    /// As [`Worker::region`].
    pub fn region(&self, name: &str) -> Result<Region, RegionError> {
        self.w.region(name)
    }
    /// As [`Worker::lock`].
    pub fn lock(&self, name: &str) -> Result<Lock, LockError> {
        self.w.lock(name)
    }
    // issue 14: notifications
    /// As [`Worker::launch`], for the plugin whose hook this is: the hook is the launcher (its
    /// latch is set when the worker starts or stops). The handle stays valid after the hook
    /// returns; store it in a region for a worker to use. A worker launched with
    /// [`BackgroundWorker::stop_with_launcher`] ends when the startup child does, after the last
    /// hook.
    pub fn launch(&self, w: BackgroundWorker) -> Result<WorkerHandle, LaunchError> {
        crate::handle::launch(self.w.code_plugin(), &w)
    }
}

#[cfg(test)]
mod region_tests {
    use super::*;

    #[test]
    fn a_typed_view_checks_the_region_size_and_alignment() {
        #[repr(C, align(64))]
        struct Page([u8; 128]);
        let mut page = Page([0; 128]);
        let region = Region {
            ptr: page.0.as_mut_ptr(),
            len: 16,
        };
        assert_eq!(
            region
                .get::<AtomicU64>()
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(region.slice::<AtomicU32>().unwrap().len(), 4);
        let e = region.get::<[AtomicU64; 3]>().unwrap_err();
        assert!(matches!(e, RegionError::TooSmall { need: 24, len: 16, .. }), "{e}");
        assert!(e.to_string().contains("region of 16 bytes cannot hold"), "{e}");
        let skewed = Region {
            // SAFETY: 4 bytes into a 128-byte buffer.
            ptr: unsafe { page.0.as_mut_ptr().add(4) },
            len: 16,
        };
        assert!(matches!(
            skewed.get::<AtomicU64>(),
            Err(RegionError::Misaligned { align: 8, .. })
        ));
        assert!(skewed.get::<AtomicU32>().is_ok());
    }
}

// issue 14: segment init
/// What a segment init hook ([`segment_init!`]) gets: it runs in the startup child on every new
/// segment, before the startup hooks and before any worker starts, and may read this plugin's
/// settings and regions (zeroed, as every new segment's are) to give them their initial values.
/// It cannot wait, declare the host consistent or launch anything: it should return promptly.
///
/// [`segment_init!`]: crate::segment_init!
pub struct SegmentInit {
    w: Worker,
}

impl SegmentInit {
    pub(crate) fn new(api: &abi::WorkerApi) -> SegmentInit {
        SegmentInit { w: Worker::new(api) }
    }
    /// The hook's name (its function's name).
    pub fn name(&self) -> &str {
        self.w.name()
    }
    /// As [`Worker::region`]: a region of the plugin this hook belongs to.
    pub fn region(&self, name: &str) -> Result<Region, RegionError> {
        self.w.region(name)
    }
    /// As [`Worker::setting`].
    pub fn setting<T: SettingValue>(&self, name: &str) -> Result<T, SettingError> {
        self.w.setting(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;
    use std::sync::atomic::Ordering;

    static OLD_WAITS: AtomicU32 = AtomicU32::new(0);
    static NEW_WAITS: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn should_stop(_: *mut c_void) -> u32 {
        0
    }
    unsafe extern "C" fn wait(_: *mut c_void, _: u64) -> u32 {
        OLD_WAITS.fetch_add(1, Ordering::SeqCst);
        abi::WAIT_TIMEOUT
    }
    unsafe extern "C" fn declare_consistent(_: *mut c_void) {}
    unsafe extern "C" fn wait_latch(_: *mut c_void, _: u64) -> u32 {
        NEW_WAITS.fetch_add(1, Ordering::SeqCst);
        abi::WAIT_LATCH
    }
    unsafe extern "C" fn latch(_: *mut c_void) -> u64 {
        0x7_0000_0003
    }
    unsafe extern "C" fn latch_fd(_: *mut c_void) -> i32 {
        0
    }
    unsafe extern "C" fn latch_reset(_: *mut c_void) -> u32 {
        1
    }
    unsafe extern "C" fn set_activity(_: *mut c_void, _: abi::Str) {}

    fn table(size: usize) -> &'static abi::WorkerApi {
        Box::leak(Box::new(abi::WorkerApi {
            size: size as u32,
            _reserved: 0,
            ctx: std::ptr::null_mut(),
            host: std::ptr::null(),
            name: abi::Str::EMPTY,
            worker_type: abi::Str::EMPTY,
            plugin: abi::Str::EMPTY,
            arg: 0,
            extra: std::ptr::null(),
            extra_len: 0,
            should_stop,
            wait,
            declare_consistent,
            reload_requested: should_stop,
            wait_latch,
            latch,
            latch_fd,
            latch_reset,
            set_activity,
            lock_acquire,
            lock_release,
            set_ready,
        }))
    }
    unsafe extern "C" fn set_ready(_: *mut c_void) {}

    unsafe extern "C" fn lock_acquire(_: *mut c_void, _: *const c_void, _: u32, _: u32) -> abi::Status {
        abi::STATUS_OK
    }
    unsafe extern "C" fn lock_release(_: *mut c_void, _: *const c_void, _: u32) {}

    /// A host of ABI 1.0 has no lock calls: the lookup says so without calling past the table.
    #[test]
    fn an_abi_1_0_host_offers_no_locks() {
        let w = Worker::new(table(std::mem::offset_of!(abi::WorkerApi, wait_latch)));
        assert_eq!(
            w.lock("counter").unwrap_err(),
            LockError::NotSupported { name: "counter".into() }
        );
    }

    /// A host of ABI 1.0 has a shorter worker table: the SDK never calls past its end, and `wait`
    /// stays the old call.
    #[test]
    fn an_abi_1_0_host_gets_no_latch_calls() {
        let w = Worker::new(table(std::mem::offset_of!(abi::WorkerApi, wait_latch)));
        assert!(w.latch().is_none());
        assert!(w.latch_fd().is_none());
        assert!(!w.reset_latch());
        w.set_activity("ignored");
        let before = NEW_WAITS.load(Ordering::SeqCst);
        assert_eq!(w.wait(Duration::ZERO), WaitResult::Timeout);
        assert_eq!(NEW_WAITS.load(Ordering::SeqCst), before);
    }

    /// `wait_latch` only once the worker took its latch; its code 4 is `Latch`.
    #[test]
    fn wait_reports_the_latch_only_after_the_worker_took_it() {
        let w = Worker::new(table(std::mem::size_of::<abi::WorkerApi>()));
        if !crate::latch::used() {
            let before = OLD_WAITS.load(Ordering::SeqCst);
            assert_eq!(w.wait(Duration::ZERO), WaitResult::Timeout);
            assert_eq!(OLD_WAITS.load(Ordering::SeqCst), before + 1);
        }
        assert_eq!(w.latch(), LatchHandle::from_raw(0x7_0000_0003));
        assert_eq!(w.wait(Duration::ZERO), WaitResult::Latch);
        assert!(!WaitResult::Latch.should_stop());
        assert!(w.reset_latch());
    }
}
