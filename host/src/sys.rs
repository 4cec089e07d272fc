//! Thin wrappers over the OS mechanisms the host uses, one mechanism per file, each naming the
//! system calls it wraps: [`signals`] (handlers, the self-pipe's wake-up, masks), [`pipe`](mod@pipe) (pipes
//! and the latch eventfd), [`fds`] (`close_range` and its `/proc/self/fd` fallback, fd flags),
//! [`prctl`] (parent-death signal, subreaper), [`proc`] (children and parents from `/proc`),
//! [`poll`], [`pidfd`] (waiting for another process to exit), [`futex`], [`hugetext`] (the
//! supervisor's code on a huge page), [`remap`] (a read-only view of the segment, issue 15), [`prefault`] (a fork-mode
//! spare's page tables filled ahead of time, issue 15) and [`test_knobs`].
//!
//! Runs in: every process; each file says which. Imports no other group of the crate.
//!
//! System calls go through `rustix`'s safe wrappers (plain system calls that allocate nothing, so
//! fine in a child just after `fork`); handlers are installed with `nix`. Raw `libc` is left where
//! a call must be exactly that (in a signal handler, masks `posix_spawn` takes) or has no wrapper
//! (`close_range`), and for `read`/`fcntl` on raw fds, which a wrapper could only reach through an
//! unsafe borrow of the fd.
//!
//! The functions are re-exported here: callers name the mechanism's function (`sys::pipe()`),
//! not the file it lives in.

pub mod fds;
pub mod futex;
pub mod hugetext;
pub mod pidfd;
pub mod pipe;
pub mod poll;
pub mod prctl;
// issue 15: client spares
pub mod prefault;
pub mod proc;
// issue 15: isolated
pub mod remap;
pub mod signals;
pub mod test_knobs;

pub use fds::{clear_cloexec, cloexec_inherited, close_all_except, is_open, set_blocking};
pub use futex::{futex_wait, futex_wake, futex_wake_all};
pub use pidfd::wait_pid_exit;
pub use pipe::{drain, eventfd, pipe};
pub use poll::{poll_in, ppoll_in};
pub use prctl::{become_subreaper, die_with_parent};
pub use prefault::{populate_own_mappings, Budget as PrefaultBudget};
pub use proc::{own_children, parent_of};
pub use remap::remap_read_only;
pub use signals::{
    block_all_signals, ensure_handler, install_supervisor_signals, reset_child_signals, restore_mask,
    spawn_blocked_signals, take_pending, SIG_CHLD, SIG_HUP, SIG_INT, SIG_QUIT, SIG_TERM, SIG_USR1,
};
pub use test_knobs::{load_test_knobs, test_child_signal_delay, TEST_CHILD_SIGNAL_DELAY_ENV};
// issue 14: queue
pub use test_knobs::{load_launch_fail, test_launch_failure, TEST_LAUNCH_FAIL_ENV};
// review: notifications
pub use test_knobs::{test_publish_running_delay, TEST_PUBLISH_RUNNING_DELAY_ENV};
