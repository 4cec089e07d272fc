//! Locks in shared memory: [`Lock`], its guards and [`LockError`].
//!
//! Runs in: a worker process or a startup hook, through [`crate::Worker::lock`] and
//! [`crate::Startup::lock`]. A lock is requested by name in init
//! ([`crate::Registrar::request_lock`]) and lives in the host's shared-memory segment; the host
//! implements it (a process-shared futex read/write lock), so its layout is not part of the ABI.
//!
//! Invariants: a [`Lock`] is the host's cell for one lock, resolved once by name, so taking it is
//! one call into the host with no lookup, lock or allocation; a guard releases exactly what it
//! took, once. Dying while holding a lock, or returning from a worker with a guard leaked, is a
//! crash: the host resets shared memory, as PostgreSQL does for a backend that dies holding an
//! LWLock.

use std::ffi::c_void;
use std::marker::PhantomData;

use crate::abi;

/// Why [`crate::Worker::lock`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    #[error(
        "no lock named {name:?} was requested by plugin {plugin} (request it in init with Registrar::request_lock)"
    )]
    NotFound { plugin: String, name: String },
    #[error("lock {name:?} of plugin {plugin} is not available in this process (locks exist in workers and startup hooks, not in init)")]
    Unavailable { plugin: String, name: String },
    // issue 15: isolated
    #[error("lock {name:?} of plugin {plugin}: an isolated worker or connection handler takes no locks (its process maps shared memory read-only)")]
    Isolated { plugin: String, name: String },
    #[error("lock {name:?}: this host is too old to offer locks (plugin ABI 1.1 or later needed)")]
    NotSupported { name: String },
    #[error("lock {name:?} of plugin {plugin}: the host refused (status {status})")]
    Other { plugin: String, name: String, status: i32 },
}

/// A named lock in shared memory, taken shared or exclusive by any worker of the host.
///
/// Cheap to copy; valid for the life of the worker process. It protects nothing by itself: put
/// the data it guards in a region (see [`crate::Region::get`]) and touch that data only while
/// holding the lock in the right mode.
#[derive(Clone, Copy)]
pub struct Lock {
    cell: *const c_void,
    api: &'static abi::WorkerApi,
}

// SAFETY: the cell is a word in shared memory that the host only ever changes atomically, and the
// host's lock functions may be called from any thread of the process.
unsafe impl Send for Lock {}
// SAFETY: as above; `&Lock` offers nothing that `Lock` does not.
unsafe impl Sync for Lock {}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("cell", &self.cell).finish()
    }
}

/// Whether the host's worker table has the lock calls (a host of ABI 1.1 or later).
pub(crate) fn worker_api_has_locks(api: &abi::WorkerApi) -> bool {
    api.has(std::mem::offset_of!(abi::WorkerApi, lock_release) + std::mem::size_of::<usize>())
}

/// Whether the host's table has the lock look-up (a host of ABI 1.1 or later).
pub(crate) fn host_api_has_locks(host: &abi::HostApi) -> bool {
    host.has(std::mem::offset_of!(abi::HostApi, lock) + std::mem::size_of::<usize>())
}

/// Resolves `name` of `plugin` to its cell, once.
pub(crate) fn lookup(api: &'static abi::WorkerApi, plugin: &str, name: &str) -> Result<Lock, LockError> {
    if !worker_api_has_locks(api) {
        return Err(LockError::NotSupported { name: name.to_owned() });
    }
    // SAFETY: the host's table is `'static` in the host binary.
    let host = unsafe { &*api.host };
    if !host_api_has_locks(host) {
        return Err(LockError::NotSupported { name: name.to_owned() });
    }
    let mut cell = std::ptr::null();
    // SAFETY: the host's function with its own context; the out-pointer is valid.
    let st = unsafe { (host.lock)(host.ctx, abi::Str::new(plugin), abi::Str::new(name), &mut cell) };
    let (plugin, name) = (plugin.to_owned(), name.to_owned());
    match st {
        abi::STATUS_OK if !cell.is_null() => Ok(Lock { cell, api }),
        abi::STATUS_OK | abi::STATUS_NOT_FOUND => Err(LockError::NotFound { plugin, name }),
        abi::STATUS_UNAVAILABLE => Err(LockError::Unavailable { plugin, name }),
        abi::STATUS_ISOLATED => Err(LockError::Isolated { plugin, name }),
        status => Err(LockError::Other { plugin, name, status }),
    }
}

impl Lock {
    fn acquire(&self, mode: u32, try_only: bool) -> bool {
        // SAFETY: the host's function with its own context and a cell it gave us.
        match unsafe { (self.api.lock_acquire)(self.api.ctx, self.cell, mode, try_only as u32) } {
            abi::STATUS_OK => true,
            abi::STATUS_BUSY if try_only => false,
            // Only a cell the host did not hand out gets here, which `Lock` cannot hold.
            status => panic!("the host refused to take a lock it handed out (status {status})"),
        }
    }

    fn release(&self, mode: u32) {
        // SAFETY: as in `acquire`; called once per successful acquisition, by a guard's drop.
        unsafe { (self.api.lock_release)(self.api.ctx, self.cell, mode) }
    }

    /// Takes the lock exclusively, waiting while anyone holds it. Waiting ends only by getting
    /// the lock (a termination request does not interrupt it, as with PostgreSQL's LWLocks); if
    /// the host dies meanwhile, this process dies with it.
    pub fn exclusive(&self) -> ExclusiveGuard<'_> {
        self.acquire(abi::LOCK_EXCLUSIVE, false);
        ExclusiveGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock shared, waiting while a writer holds it or waits for it (so readers cannot
    /// starve a writer).
    pub fn shared(&self) -> SharedGuard<'_> {
        self.acquire(abi::LOCK_SHARED, false);
        SharedGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock exclusively if nobody holds it now; never waits.
    pub fn try_exclusive(&self) -> Option<ExclusiveGuard<'_>> {
        self.acquire(abi::LOCK_EXCLUSIVE, true).then_some(ExclusiveGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Takes the lock shared if no writer holds it or waits for it now; never waits.
    pub fn try_shared(&self) -> Option<SharedGuard<'_>> {
        self.acquire(abi::LOCK_SHARED, true).then_some(SharedGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }
}

/// The lock held exclusively; released when dropped. Leaking it (`mem::forget`) keeps the lock
/// taken until the worker exits, and that exit is then a crash.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ExclusiveGuard<'a> {
    lock: &'a Lock,
    /// Released on the thread that took it, as any lock guard.
    _not_send: PhantomData<*const ()>,
}

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        self.lock.release(abi::LOCK_EXCLUSIVE);
    }
}

/// The lock held shared; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SharedGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        self.lock.release(abi::LOCK_SHARED);
    }
}
