//! The ABI's dynamic-worker answers (issue 14: dynamic workers): what a launch writes back and
//! what a worker handle reads. Both start with their own size and stay out of the layout
//! fingerprint; kept apart from `abi.rs` for its length alone, and re-exported there.

/// What [`HostApi::launch_worker`](super::HostApi::launch_worker) writes back. Kept out of the fingerprint: it starts with its
/// own size, and the host writes only the fields `size` covers.
#[repr(C)]
pub struct LaunchAnswer {
    /// `size_of::<LaunchAnswer>()` as the plugin was built.
    pub size: u32,
    /// The worker slot of the new worker ([`STATUS_OK`](super::STATUS_OK)).
    pub slot: u32,
    /// Its generation ([`STATUS_OK`](super::STATUS_OK)).
    pub generation: u64,
    /// Worker slots in use and in all ([`STATUS_NO_FREE_SLOT`](super::STATUS_NO_FREE_SLOT)).
    pub used: u32,
    pub max: u32,
    /// Why the launch was refused, UTF-8, `message_len` bytes.
    pub message: [u8; 256],
    pub message_len: u32,
}

impl LaunchAnswer {
    /// An answer with its size set and nothing written yet: what a caller passes to
    /// `launch_worker` for the host to fill.
    pub const fn new() -> LaunchAnswer {
        LaunchAnswer {
            size: std::mem::size_of::<LaunchAnswer>() as u32,
            slot: 0,
            generation: 0,
            used: 0,
            max: 0,
            message: [0; 256],
            message_len: 0,
        }
    }
}

impl Default for LaunchAnswer {
    fn default() -> LaunchAnswer {
        LaunchAnswer::new()
    }
}

/// [`HandleStatus::phase`]: the worker has not reached its entry yet (or waits to restart).
pub const HANDLE_NOT_STARTED: u32 = 0;
/// The worker's process runs its entry (`pid`).
pub const HANDLE_RUNNING: u32 = 1;
/// The worker stopped for good (`reason`).
pub const HANDLE_STOPPED: u32 = 2;
/// What [`HandleStatus`]'s waits wait for.
pub const HANDLE_WAIT_STARTUP: u32 = 0;
pub const HANDLE_WAIT_SHUTDOWN: u32 = 1;

/// A worker handle's status, as [`HostApi::handle_status`](super::HostApi::handle_status) writes it. Out of the fingerprint,
/// like [`LaunchAnswer`].
#[repr(C)]
pub struct HandleStatus {
    /// `size_of::<HandleStatus>()` as the plugin was built.
    pub size: u32,
    /// [`HANDLE_NOT_STARTED`], [`HANDLE_RUNNING`] or [`HANDLE_STOPPED`].
    pub phase: u32,
    pub pid: i32,
    pub reason_len: u32,
    /// Why it stopped, UTF-8, `reason_len` bytes.
    pub reason: [u8; 256],
    // issue 14: queue
    /// The errno of the launch that failed, when that is why it stopped (0: none); written only
    /// when `size` covers it.
    pub errno: i32,
}
