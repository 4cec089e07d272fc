//! The lock file in `runtime_dir` that keeps two hosts off one directory.
//!
//! Runs in: the supervisor. The lock is an `flock` on `steward.pid`, which the kernel releases
//! when the holder dies, so a stale file left by a killed host is simply taken over. The file
//! holds the holder's pid, for the "already running (pid N)" message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const LOCK_NAME: &str = "steward.pid";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another steward is already running on {dir} (pid {pid})", dir = dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("{path}: {err}", path = path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

pub struct LockFile {
    /// Holds the `flock` for as long as the host runs.
    _file: File,
    path: PathBuf,
}

impl LockFile {
    pub fn acquire(path: &Path) -> Result<LockFile, LockError> {
        let io = |err| LockError::Io {
            path: path.to_owned(),
            err,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_owned()
                },
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(LockFile {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The pid recorded by the host that holds the lock at `path`, if one holds it.
    pub fn holder_pid(path: &Path) -> Option<i32> {
        if !LockFile::is_held(path) {
            return None;
        }
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Whether a host holds the lock at `path` right now (used by `steward stop` to wait).
    pub fn is_held(path: &Path) -> bool {
        let Ok(f) = File::open(path) else {
            return false;
        };
        // SAFETY: flock on an fd we own; released when `f` closes.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        !free
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no other host can have taken it in between.
        let _ = std::fs::remove_file(&self.path);
    }
}
