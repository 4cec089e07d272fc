//! The ABI's dynamic-worker queue options (issue 14: queue): a launch that may wait for a free
//! slot. Appended to ABI 1.1; kept out of the layout fingerprint like every size-prefixed struct.

/// [`LaunchOpts::flags`]: wait up to `queue_timeout_us` for a free slot.
pub const LAUNCH_QUEUE: u32 = 1 << 0;
/// What [`HostApi::launch_worker_opts`](super::HostApi::launch_worker_opts) adds to a launch. Out of the fingerprint: it starts with
/// its own size, so later fields are read only when `size` covers them.
#[repr(C)]
pub struct LaunchOpts {
    /// `size_of::<LaunchOpts>()` as the plugin was built.
    pub size: u32,
    /// [`LAUNCH_QUEUE`]; other bits are refused.
    pub flags: u32,
    /// How long a request may wait for a free slot (at most a week).
    pub queue_timeout_us: u64,
}
