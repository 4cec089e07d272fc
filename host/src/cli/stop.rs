//! `steward stop`: ask the host to shut down, then wait until it has exited.
//!
//! Runs in: the CLI process. It needs only the runtime directory and `shutdown_timeout`, read
//! leniently (see [`super::target`]), so a broken configuration file does not keep the operator
//! from stopping the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use steward_host::exit_code;
use steward_host::shared::control::{Client, StopMode};
use steward_host::shared::lockfile::LockFile;

use super::target::resolve;
use super::{CliError, StopArgs};

pub fn cmd_stop(args: &StopArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    let mode = StopMode::from(args.mode);
    let answer = Client::connect(&target.socket_path()).and_then(|mut c| c.stop(mode));
    if let Err(e) = answer {
        // A host already shutting down (or out of connection slots) refuses the socket; like
        // pg_ctl with its pid file, signal the lock holder directly, so a smart shutdown can
        // still be escalated to fast or immediate.
        // The recorded pid is only a claim: it is signalled only once this process has seen that
        // process hold the lock file open.
        match LockFile::holder_pid(&target.lock_path()) {
            Some(pid) if holds_open(pid, &target.lock_path()) => {
                if let Err(signal) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), mode.signal()) {
                    return Err(CliError::Signal { err: e, pid, signal });
                }
            }
            Some(pid) => return Err(CliError::NotTheHolder { err: e, pid }),
            None => return Err(e.into()),
        }
    }
    // Wait for the host to let go of its lock: that is the last thing it does, and the kernel
    // releases it when the host's process exits, so wait for that exit (through a pidfd). Look
    // at the lock again at least every 100 ms: the recorded pid may not name the holder as this
    // process sees it (another pid namespace), and then only the lock itself tells.
    let deadline = Instant::now() + target.shutdown_timeout + Duration::from_secs(10);
    let holder = LockFile::holder_pid(&target.lock_path()).filter(|&pid| holds_open(pid, &target.lock_path()));
    let mut exited = false;
    while LockFile::is_held(&target.lock_path()) {
        if Instant::now() > deadline {
            return Err(CliError::StopTimeout);
        }
        let slice = Duration::from_millis(100);
        match holder.map(|pid| steward_host::sys::wait_pid_exit(pid, slice)) {
            // The whole slice passed waiting.
            Some(Ok(false)) => {}
            // It exited: look at the lock again at once.
            Some(Ok(true)) if !exited => exited = true,
            // No usable pid here: look again shortly.
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    println!("steward stopped ({} shutdown)", mode.as_str());
    Ok(exit_code::OK)
}

/// Whether process `pid`, as this process numbers it, has the file at `lock` open: one of its
/// descriptors is the same inode on the same device. The host holds its lock file open for its
/// whole life, so this tells the holder from a pid that means another process here (the host's
/// number in another PID namespace, such as 1 for a container's host, or a forged file). A
/// process whose descriptors cannot be read (another user's) does not count.
fn holds_open(pid: i32, lock: &Path) -> bool {
    let Ok(want) = std::fs::symlink_metadata(lock) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        // `metadata` follows the magic link to the open file itself, wherever it now is.
        std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
    })
}
