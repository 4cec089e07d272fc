//! Turning this process's writable mapping of a memfd into a read-only one, in place
//! (`open` of `/proc/self/fd/N` with `O_RDONLY`, `mmap` with `MAP_FIXED`, `dup3`).
//!
//! Runs in: an isolated worker child, once, before any plugin code runs in it (issue 15:
//! isolated).
//!
//! Why not `mprotect`: a mapping of a file opened for writing may be made writable again by any
//! later `mprotect`, so a stray call in plugin code would undo the isolation. A `MAP_SHARED`
//! mapping of a file opened read-only cannot (`mprotect(PROT_WRITE)` fails with `EACCES`), and
//! once the read-write descriptor is replaced by a read-only one no stray `mprotect` or `mmap`
//! of that descriptor gives a writable view. The new mapping lies at the same address, so every
//! pointer into the segment stays valid, and `MAP_FIXED` replaces the old pages in one system
//! call: there is no instant without a mapping.
//!
//! What this does not do: lock out code that means to write. The process may still open
//! `/proc/self/fd/N` again with `O_RDWR` (a memfd's mode is `0777` and the process is its owner's
//! user, whatever mode the descriptor was opened with) and map that writable; no descriptor
//! handed over read-only from the start would change this. The isolation is against bugs (a wild
//! pointer, a store through a stale reference), not against hostile plugin code.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Replaces the `len` bytes mapped at `base` from `fd` (a memfd opened read-write, mapped
/// `MAP_SHARED` from offset 0) with a read-only `MAP_SHARED` mapping of the same file at the same
/// address, then makes `fd`'s number refer to a read-only open of the file.
///
/// # Safety
/// `base..base + len` must be exactly a mapping of `fd` from offset 0 that this process made
/// (nothing else lives there), and no other thread may be writing through it: after this call a
/// write there faults.
pub unsafe fn remap_read_only(base: *mut u8, len: usize, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    // Our own descriptor's magic link: the kernel's name for the file `fd` refers to, not a
    // symlink anyone else made. `O_NOFOLLOW` would refuse the magic link itself, so it is not used.
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let ro = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // The same file, not whatever another process may have put at that number: compare inodes.
    let (a, b) = (rustix::fs::fstat(fd)?, rustix::fs::fstat(&ro)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(std::io::Error::other("the reopened segment is not the same file"));
    }
    // SAFETY: the caller guarantees `base..base + len` is this process's mapping of the same
    // file; `MAP_FIXED` replaces exactly those pages with a read-only view of the same bytes.
    let at = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            len,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            ro.as_raw_fd(),
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    if at as *mut u8 != base {
        return Err(std::io::Error::other("the read-only mapping moved"));
    }
    // SAFETY: dup3 onto a number this process owns (`fd`): it atomically closes the read-write
    // open and makes the number refer to the read-only one, which the owner of `fd` keeps.
    if unsafe { libc::dup3(ro.as_raw_fd(), fd.as_raw_fd(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_mapping_turns_read_only_in_place_and_cannot_be_made_writable_again() {
        let fd = rustix::fs::memfd_create("remap-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        // SAFETY: a fresh mapping of a fresh memfd, owned by this test.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        } as *mut u8;
        assert_ne!(base as *mut libc::c_void, libc::MAP_FAILED);
        // SAFETY: inside the mapping, which is writable now.
        unsafe { base.add(8).write_volatile(42) };
        // SAFETY: the mapping above is exactly `fd` from offset 0; nothing else writes to it.
        unsafe { remap_read_only(base, 4096, fd.as_fd()) }.unwrap();
        // SAFETY: still mapped, readable.
        assert_eq!(
            unsafe { base.add(8).read_volatile() },
            42,
            "the bytes survive the remap"
        );
        // SAFETY: asks only for a protection change of this test's own mapping.
        let r = unsafe { libc::mprotect(base as *mut libc::c_void, 4096, libc::PROT_READ | libc::PROT_WRITE) };
        assert_eq!(r, -1, "a read-only open must not be mapped writable again");
        // The descriptor's number now refers to a read-only open: no writable mapping from it.
        // SAFETY: a new mapping the kernel places; refused here.
        let w = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_eq!(w, libc::MAP_FAILED);
        // SAFETY: unmapping this test's own mapping.
        unsafe { libc::munmap(base as *mut libc::c_void, 4096) };
    }
}
