//! Trust in the runtime directory, checked before anything is opened in it.
//!
//! Runs in: the supervisor, at start-up, before the lock file is taken.
//!
//! `runtime_dir` holds the lock file and the control socket. When it lives in a directory other
//! users can write to (the default `/tmp/steward-<uid>` does), another user could create it first
//! and plant a symlink named `steward.pid` pointing at one of the operator's files, which the host
//! would then overwrite with its pid. So, as PostgreSQL does for its data directory, the host
//! creates the directory itself with mode 0700 and refuses to start unless the directory, as
//! found, is a real directory (not a symlink), owned by the host's effective uid, and has no
//! permission bits for group or others. The parents are created when missing but are not Steward's
//! and are not checked: only the final component is.
//!
//! Invariant: the checks are made on the directory itself, never through a symlink (`lstat`, then
//! an `O_NOFOLLOW | O_DIRECTORY` open and `fstat` of that descriptor), and files in the directory
//! are opened with `O_NOFOLLOW` by their owners ([`crate::shared::lockfile`]).

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create runtime_dir {path}: {err}", path = path.display())]
    Create { path: PathBuf, err: std::io::Error },
    #[error("runtime_dir {path}: {err}", path = path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "runtime_dir {path} is a symbolic link (to {target}); refusing to use it: point runtime_dir at a real directory",
        path = path.display(),
        target = target.display()
    )]
    Symlink { path: PathBuf, target: PathBuf },
    #[error("runtime_dir {path} is not a directory", path = path.display())]
    NotDirectory { path: PathBuf },
    #[error(
        "runtime_dir {path} is owned by {owner} with mode {mode:04o}; refusing to use it: {why}. It must be owned by {me} with mode 0700; remove it (steward creates it) or choose another runtime_dir",
        path = path.display()
    )]
    Untrusted {
        path: PathBuf,
        /// `uid N (name)`.
        owner: String,
        mode: u32,
        /// `uid N (name)` of the host.
        me: String,
        why: &'static str,
    },
}

/// `uid N (name)`, or `uid N` when the user database has no name for it.
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// The verdict on a directory's owner and mode, apart from any I/O (unit-tested).
pub fn judge(owner: u32, mode: u32, me: u32) -> Result<(), &'static str> {
    if owner != me {
        return Err("it is not owned by the host's user");
    }
    if mode & 0o077 != 0 {
        return Err("group or others have access to it");
    }
    Ok(())
}

/// Creates `dir` (mode 0700, parents as needed) if it does not exist, then checks that it can be
/// trusted.
pub fn prepare(dir: &Path) -> Result<(), RunDirError> {
    let create = |err| RunDirError::Create {
        path: dir.to_owned(),
        err,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(create)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have taken bits away (0o700 & !umask); make it exactly 0700 so the
            // owner can use it. The directory is new and ours; set it through a descriptor that
            // did not follow a symlink, so a race that swapped it cannot redirect the chmod.
            let f = open_nofollow(dir)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(create)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create(e)),
    }
    let lmeta = std::fs::symlink_metadata(dir).map_err(|err| RunDirError::Io {
        path: dir.to_owned(),
        err,
    })?;
    if lmeta.file_type().is_symlink() {
        return Err(RunDirError::Symlink {
            path: dir.to_owned(),
            target: std::fs::read_link(dir).unwrap_or_else(|_| PathBuf::from("?")),
        });
    }
    if !lmeta.is_dir() {
        return Err(RunDirError::NotDirectory { path: dir.to_owned() });
    }
    // Judge what the descriptor refers to, not the path again: the path may have changed since
    // the `lstat`, the descriptor cannot.
    let f = open_nofollow(dir)?;
    let meta = f.metadata().map_err(|err| RunDirError::Io {
        path: dir.to_owned(),
        err,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    judge(meta.uid(), mode, me).map_err(|why| RunDirError::Untrusted {
        path: dir.to_owned(),
        owner: describe_uid(meta.uid()),
        mode,
        me: describe_uid(me),
        why,
    })
}

/// Opens the directory itself, failing on a symlink (`O_NOFOLLOW`) or a non-directory.
fn open_nofollow(dir: &Path) -> Result<File, RunDirError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => RunDirError::Symlink {
                path: dir.to_owned(),
                target: std::fs::read_link(dir).unwrap_or_else(|_| PathBuf::from("?")),
            },
            Some(libc::ENOTDIR) => RunDirError::NotDirectory { path: dir.to_owned() },
            _ => RunDirError::Io {
                path: dir.to_owned(),
                err,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_owner_and_mode() {
        assert_eq!(judge(1000, 0o700, 1000), Ok(()));
        assert_eq!(judge(1000, 0o500, 1000), Ok(()));
        assert!(judge(1001, 0o700, 1000).is_err());
        assert!(judge(1000, 0o755, 1000).is_err());
        assert!(judge(1000, 0o710, 1000).is_err());
        assert!(judge(1000, 0o701, 1000).is_err());
        assert!(judge(1000, 0o1777, 1000).is_err());
    }

    #[test]
    fn creates_a_0700_directory_with_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        prepare(&dir).unwrap();
        let m = std::fs::symlink_metadata(&dir).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o700);
        // An existing, trusted directory is taken as it is.
        prepare(&dir).unwrap();
    }

    #[test]
    fn refuses_open_modes_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare(&dir).unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(e.contains("mode 0755"), "{e}");
        assert!(e.contains(&format!("uid {}", nix::unistd::geteuid())), "{e}");

        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = prepare(&link).unwrap_err();
        assert!(matches!(e, RunDirError::Symlink { .. }), "{e}");

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(prepare(&file).unwrap_err(), RunDirError::NotDirectory { .. }));
    }
}
