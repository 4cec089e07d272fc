//! Binding a plugin listener's Unix socket (issue 15: connections, reviewed): the checks of its
//! directory and of what is already at the path, the socket's mode from the moment it exists,
//! and removing the file at exit only while it is still the one bound here.
//!
//! Runs in: the supervisor, at start-up ([`bind_unix`]) and when it drops its listeners
//! ([`SocketFile::remove`]); [`bind_with_mode`] makes the control socket too.
//!
//! Invariants: nothing here follows a symbolic link it did not make (every look at the path is
//! an `lstat`); nothing here blocks (the probe for a live server is a non-blocking `connect`);
//! a file at the path is removed only if it is a socket of the host's user that no one listens
//! on (before the bind) or the very socket this process bound, by device and inode (at exit).

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A bound socket's file: removed at exit only while it is still this one.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// `(st_dev, st_ino)` right after the bind.
    id: (u64, u64),
}

impl SocketFile {
    /// Removes the file if the path still names the socket bound here: another host that
    /// replaced it (after removing ours as stale), or anything someone put there since, stays.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == self.id => {
                // unlink(2) removes the name itself, never what a link points to.
                let _ = std::fs::remove_file(&self.path);
            }
            _ => {}
        }
    }
}

/// What `bind(2)`'s error means to an operator.
pub fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!("address in use ({e})"),
        std::io::ErrorKind::AddrNotAvailable => format!("not an address of this machine ({e})"),
        std::io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
        _ => e.to_string(),
    }
}

/// Whether a server listens on the socket at `path`, without ever waiting: a non-blocking
/// `connect` is refused at once when no one listens, and fails with `EAGAIN` (not blocks) when a
/// live server's backlog is full.
fn someone_listens(path: &Path) -> Result<bool, String> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("cannot make a socket to probe the old one: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| e.to_string())?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS) => Ok(true),
        Err(nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(format!("cannot tell whether a server listens on the socket there: {e}")),
    }
}

/// Binds a Unix socket at `path` whose file has exactly `mode` from the moment it exists.
///
/// The file-creation mask is process-wide, and plugin code may have started threads in the
/// supervisor, so the mask is only ever made stricter for the bind (the old one or-ed with what
/// `mode` leaves out): a file another thread creates in that window gets no bit it would not
/// have got anyway. The bits the old mask held back are then given to the socket by a `chmod`
/// of the path, which names the socket just bound: its directory was checked to be writable by
/// no one else (or sticky, where no one else can remove or rename our file).
pub fn bind_with_mode(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    let mode = mode & 0o777;
    // SAFETY: umask(2) cannot fail and touches no memory of this process; it only sets the
    // process's file-creation mask. It is called with a mask at least as strict as the one in
    // force (see above), so no thread's file gets a wider mode because of it.
    let old = unsafe { libc::umask(0o777) };
    // SAFETY: as above; `old | !mode` is at least as strict as `old`.
    unsafe { libc::umask(old | (!mode & 0o777)) };
    let r = UnixListener::bind(path);
    // SAFETY: as above, putting back the mask that was in force.
    unsafe { libc::umask(old) };
    let s = r?;
    if mode & old != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(s)
}

/// Binds a Unix listener at `path` with `mode`, after the checks the control socket's directory
/// gets: its directory is a real directory (never followed through a symlink), owned by the
/// host's user or root, and writable by no one else unless sticky (as `/tmp`). A socket left at
/// the path by a dead host is replaced; a live one is "address in use"; anything else there
/// (a file, a symlink, another user's socket) is refused, never removed.
pub fn bind_unix(path: &Path, mode: u32) -> Result<(UnixListener, SocketFile), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let me = nix::unistd::geteuid().as_raw();
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    if md.file_type().is_symlink() {
        return Err(format!(
            "directory {} is a symbolic link; refusing to follow it: name the real directory",
            dir.display()
        ));
    }
    if !md.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if md.uid() != me && md.uid() != 0 {
        return Err(format!(
            "directory {} is owned by {}, not by the host's user or root",
            dir.display(),
            crate::shared::rundir::describe_uid(md.uid())
        ));
    }
    if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
        return Err(format!(
            "directory {} (mode {:04o}) is writable by other users and not sticky: another user could put a socket there first",
            dir.display(),
            md.mode() & 0o7777
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == me => {
            if someone_listens(path)? {
                return Err("address in use: a server is listening on this socket".to_owned());
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket: {e}"))?;
        }
        Ok(m) => {
            return Err(format!(
                "a {} owned by {} is in the way; refusing to replace it",
                if m.file_type().is_symlink() {
                    "symbolic link"
                } else if m.file_type().is_socket() {
                    "socket"
                } else {
                    "file"
                },
                crate::shared::rundir::describe_uid(m.uid())
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    let s = bind_with_mode(path, mode).map_err(|e| bind_reason(&e))?;
    let file = std::fs::symlink_metadata(path)
        .map(|m| SocketFile {
            path: path.to_owned(),
            id: (m.dev(), m.ino()),
        })
        .map_err(|e| format!("cannot look at the socket just bound: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok((s, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    /// The socket has the mode asked for, whatever the mask in force, and the mask is back.
    #[test]
    fn the_socket_has_its_mode_and_the_mask_is_restored() {
        let d = dir();
        // SAFETY: sets and reads back this test process's mask; no other test depends on it.
        let before = unsafe { libc::umask(0o027) };
        let (_s, _f) = bind_unix(&d.path().join("a.sock"), 0o660).unwrap();
        // SAFETY: as above.
        let now = unsafe { libc::umask(before) };
        assert_eq!(now, 0o027);
        let m = std::fs::symlink_metadata(d.path().join("a.sock")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660);
    }

    /// A live server whose backlog is full is "address in use" at once, not a hang; a dead one's
    /// socket is replaced.
    #[test]
    fn the_probe_never_blocks_on_a_full_backlog() {
        let d = dir();
        let path = d.path().join("live.sock");
        let live = UnixListener::bind(&path).unwrap();
        // SAFETY: `live`'s own fd; listen(2) again only shortens its backlog to one.
        assert_eq!(unsafe { libc::listen(live.as_raw_fd(), 1) }, 0);
        // Fill the backlog with non-blocking connects until one would have to wait.
        let mut held = Vec::new();
        loop {
            use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
            let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
            match connect(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()) {
                Ok(()) if held.len() < 64 => held.push(fd),
                Err(nix::errno::Errno::EAGAIN) => break,
                other => panic!("the backlog of one never filled: {other:?}"),
            }
        }
        assert_eq!(someone_listens(&path), Ok(true));
        let started = Instant::now();
        let e = bind_unix(&path, 0o600).unwrap_err();
        assert!(e.contains("address in use"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
        drop((live, held));
        let (_s, f) = bind_unix(&path, 0o600).unwrap();
        f.remove();
        assert!(!path.exists());
    }

    /// At exit only the socket bound here is removed: not one that replaced it, nor a symlink.
    #[test]
    fn only_our_own_socket_is_removed() {
        let d = dir();
        let path = d.path().join("kv.sock");
        // Held, as the supervisor holds its listener when it removes the file at exit.
        let (_s, f) = bind_unix(&path, 0o600).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        f.remove();
        assert!(path.exists(), "another socket at the path was removed");
        drop(other);
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &path).unwrap();
        f.remove();
        assert!(std::fs::symlink_metadata(&path).is_ok(), "a symlink was removed");
    }
}
