//! Code that both the supervisor and its children run: the configuration, the frozen registry,
//! the shared-memory segment and its encodings, the host table plugins call, logging, reload's
//! validation, plugin loading, the control protocol, the runtime directory, and what the
//! supervisor hands a new child.
//!
//! Rule: `shared` imports only [`crate::sys`]; never [`crate::supervisor`] or [`crate::child`].

pub mod config;
pub mod control;
pub mod handles;
pub mod handoff;
pub mod hostapi;
// issue 15: isolated
pub mod isolation;
pub mod latch;
// issue 15: connections
pub mod lifecycle;
pub mod listen;
pub mod lockfile;
pub mod locks;
pub mod log;
pub mod preload;
pub mod protocol;
pub mod registry;
pub mod reload;
pub mod rundir;
pub mod shmem;
// issue 15: client spares
pub mod spare_channel;
pub mod time;
