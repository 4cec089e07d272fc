//! The lock file in `runtime_dir` that keeps two hosts off one directory.
//!
//! Runs in: the supervisor. The lock is an `flock` on `steward.pid`, which the kernel releases
//! when the holder dies, so a stale file left by a killed host is simply taken over. The file
//! holds the holder's pid, for the "already running (pid N)" message.
//!
//! Every open here (the host's and the CLI's) uses `O_NOFOLLOW | O_CLOEXEC`: a symlink planted in
//! place of the lock file is refused, never followed to a file it would overwrite, and no child
//! inherits the descriptor. The directory itself is checked first ([`crate::shared::rundir`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

pub const LOCK_NAME: &str = "steward.pid";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another steward is already running on {dir} (pid {pid})", dir = dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("{path}: {err}", path = path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path} is a symbolic link; refusing to follow it (remove it; steward creates the lock file itself)", path = path.display())]
    Symlink { path: PathBuf },
}

/// `open(2)` flags for every file opened in the runtime directory.
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens `path` without following a final symlink.
fn open(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .mode(0o600)
        .custom_flags(OPEN_FLAGS)
        .open(path)
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
        let mut file = open(path, true).map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => LockError::Symlink { path: path.to_owned() },
            _ => io(err),
        })?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
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
        let mut f = open(path, false).ok()?;
        if !held(&f) {
            return None;
        }
        let mut pid = String::new();
        f.read_to_string(&mut pid).ok()?;
        pid.trim().parse().ok()
    }

    /// Whether a host holds the lock at `path` right now (used by `steward stop` to wait).
    pub fn is_held(path: &Path) -> bool {
        open(path, false).is_ok_and(|f| held(&f))
    }
}

/// Whether another open file description holds an exclusive lock on `f`'s file. A shared lock
/// taken here to find out is released when `f` closes.
fn held(f: &File) -> bool {
    flock(f, FlockOperation::NonBlockingLockShared).is_err()
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no other host can have taken it in between.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_in_place_of_the_lock_file_is_neither_followed_nor_written() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let path = tmp.path().join(LOCK_NAME);
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = LockFile::acquire(&path).err().expect("a symlink must be refused");
        assert!(matches!(e, LockError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        // The CLI's probes do not follow it either: a locked victim does not look like a host.
        let held = File::open(&victim).unwrap();
        flock(&held, FlockOperation::LockExclusive).unwrap();
        assert!(!LockFile::is_held(&path));
        assert_eq!(LockFile::holder_pid(&path), None);
    }

    #[test]
    fn the_holder_is_seen_and_the_file_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOCK_NAME);
        let lock = LockFile::acquire(&path).unwrap();
        assert!(LockFile::is_held(&path));
        assert_eq!(LockFile::holder_pid(&path), Some(std::process::id() as i32));
        drop(lock);
        assert!(!path.exists());
        assert!(!LockFile::is_held(&path));
    }
}
