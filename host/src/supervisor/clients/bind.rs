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

/// The process's file-creation mask, read from `/proc/self/status` (`Umask:`, Linux 4.7 and
/// later): reading it through umask(2) would mean setting it, for a moment, to something else.
fn current_umask() -> std::io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .map(|m| m & 0o777)
        .ok_or_else(|| std::io::Error::other("/proc/self/status has no readable Umask line"))
}

/// Binds a Unix socket at `path` whose file has exactly `mode` from the moment it exists.
///
/// The file-creation mask is process-wide. The supervisor has no other thread when it binds
/// (preload refuses a plugin whose init leaves one), yet the mask is still only ever made
/// stricter for the bind, never looser, not even for a moment: it is read, not probed, and the
/// bind runs under the old mask or-ed with what `mode` leaves out. The bits the old mask held
/// back are then given to the socket by a `chmod` of the path, which names the socket just
/// bound: its directory was checked to be writable by no one else (or sticky, where no one else
/// can remove or rename our file). If that `chmod` fails, the file is removed.
pub fn bind_with_mode(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    let mode = mode & 0o777;
    let old = current_umask()?;
    // SAFETY: umask(2) cannot fail and touches no memory of this process; it only sets the
    // process's file-creation mask, here to one at least as strict as the one in force.
    let was = unsafe { libc::umask((old | !mode) & 0o777) };
    let r = UnixListener::bind(path);
    // SAFETY: as above, putting back the mask that was in force.
    unsafe { libc::umask(was) };
    let s = r?;
    if mode & old != 0 {
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            // Nothing can have replaced the file yet (see above): it is the socket just bound.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
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
    // From here every failure removes the file again, so a listener that could not be set up
    // leaves nothing at its path.
    let file = match std::fs::symlink_metadata(path) {
        Ok(m) => SocketFile {
            path: path.to_owned(),
            id: (m.dev(), m.ino()),
        },
        Err(e) => {
            // The path in the checked directory names the socket just bound (see
            // `bind_with_mode`); unlink(2) removes that name, never what a link points to.
            let _ = std::fs::remove_file(path);
            return Err(format!("cannot look at the socket just bound: {e}"));
        }
    };
    if let Err(e) = s.set_nonblocking(true) {
        file.remove();
        return Err(format!("cannot make the socket non-blocking: {e}"));
    }
    Ok((s, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// The mask is process-wide and the tests of this binary run on several threads: every test
    /// that sets the mask or binds holds this, so none sees another's mask.
    static MASK: Mutex<()> = Mutex::new(());

    fn mask_held() -> MutexGuard<'static, ()> {
        // A test that failed while holding it poisoned it; the mask is still whole.
        MASK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    /// A socket of this process, bound at `path` but not listening: a `connect` to it is refused,
    /// as to a dead host's socket. Close-on-exec, and never a listener a forked child of another
    /// test could keep listening.
    fn dead_socket(path: &Path) -> OwnedFd {
        use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        fd
    }

    /// The mask is read without being changed.
    #[test]
    fn the_mask_is_read_from_proc() {
        let _held = mask_held();
        // SAFETY: sets and puts back this test process's mask, with `MASK` held.
        let before = unsafe { libc::umask(0o036) };
        let read = current_umask();
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        assert_eq!(read.unwrap(), 0o036);
    }

    /// The socket has the mode asked for, whatever the mask in force, and the mask is back.
    #[test]
    fn the_socket_has_its_mode_and_the_mask_is_restored() {
        let _held = mask_held();
        let d = dir();
        for (mask, mode) in [(0o027, 0o660), (0o077, 0o660), (0o000, 0o600), (0o777, 0o640)] {
            let path = d.path().join(format!("{mask:o}-{mode:o}.sock"));
            // SAFETY: sets and puts back this test process's mask, with `MASK` held.
            let before = unsafe { libc::umask(mask) };
            let r = bind_unix(&path, mode);
            // SAFETY: as above.
            let now = unsafe { libc::umask(before) };
            let (_s, f) = r.unwrap();
            assert_eq!(now, mask, "the mask after binding under {mask:03o}");
            let m = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(m.mode() & 0o777, mode, "the socket's mode under mask {mask:03o}");
            f.remove();
        }
    }

    /// A live server whose backlog is full is "address in use" at once, not a hang; a dead one's
    /// socket is replaced.
    #[test]
    fn the_probe_never_blocks_on_a_full_backlog() {
        let _held = mask_held();
        let d = dir();
        let path = d.path().join("live.sock");
        let live = UnixListener::bind(&path).unwrap();
        // SAFETY: `live`'s own fd; listen(2) again only shortens its backlog to one.
        assert_eq!(unsafe { libc::listen(live.as_raw_fd(), 1) }, 0);
        // Fill the backlog with non-blocking connects until one would have to wait.
        let mut held = Vec::new();
        loop {
            use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap();
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
        assert!(path.exists(), "a live server's socket was removed");
    }

    /// A dead host's socket (bound, no one listening) is removed and bound again.
    #[test]
    fn a_dead_socket_is_replaced() {
        let _held = mask_held();
        let d = dir();
        let path = d.path().join("dead.sock");
        let dead = dead_socket(&path);
        assert_eq!(someone_listens(&path), Ok(false));
        let (_s, f) = bind_unix(&path, 0o600).unwrap();
        assert_eq!(someone_listens(&path), Ok(true));
        drop(dead);
        f.remove();
        assert!(!path.exists());
    }

    /// At exit only the socket bound here is removed: not one that replaced it, nor a symlink.
    #[test]
    fn only_our_own_socket_is_removed() {
        let _held = mask_held();
        let d = dir();
        let path = d.path().join("kv.sock");
        // Held, as the supervisor holds its listener when it removes the file at exit.
        let (_s, f) = bind_unix(&path, 0o600).unwrap();
        std::fs::remove_file(&path).unwrap();
        let other = dead_socket(&path);
        f.remove();
        assert!(path.exists(), "another socket at the path was removed");
        drop(other);
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &path).unwrap();
        f.remove();
        assert!(std::fs::symlink_metadata(&path).is_ok(), "a symlink was removed");
    }
}
