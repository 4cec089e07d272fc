//! File-descriptor hygiene: `close_range(2)` with a `getdents64(2)` walk of `/proc/self/fd` as its
//! fallback, `close_range(CLOSE_RANGE_CLOEXEC)`, and `fcntl(2)` for the close-on-exec and
//! non-blocking flags.
//!
//! Runs in: children (a forked one closes every fd not meant for it, without allocating; a
//! connection child makes its inherited socket blocking) and the supervisor (marking inherited fds
//! close-on-exec, clearing the flag on the fds an exec-mode child is given).

use std::os::fd::RawFd;

/// Closes every fd from 3 up except those in `keep` (negative entries are ignored): a forked
/// child's first act, so that it holds exactly the fds meant for it (nothing of the supervisor's,
/// nothing the host inherited). Allocates nothing: every page a forked child writes is copied.
pub fn close_all_except(keep: &[RawFd]) {
    let mut sorted = [RawFd::MAX; 8];
    let mut n = 0;
    for &fd in keep.iter().filter(|fd| **fd > 2) {
        assert!(n < sorted.len(), "close_all_except keeps at most 8 fds");
        sorted[n] = fd;
        n += 1;
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();
    let mut from: u32 = 3;
    for &mut fd in sorted {
        let fd = fd as u32;
        if fd > from {
            close_fds(from, fd - 1);
        }
        from = from.max(fd + 1);
    }
    close_fds(from, u32::MAX);
}

/// Closes fds `first..=last` with `close_range`, or, where the kernel has none (before Linux 5.9)
/// or a filter refuses it, each open one found in `/proc/self/fd`: a child must never keep an fd
/// of the supervisor's because the fast way failed.
fn close_fds(first: u32, last: u32) {
    // SAFETY: close_range on fds this process owns; nothing refers to them afterwards (the child
    // ends with _exit and never drops the supervisor's owning objects). A raw system call:
    // neither rustix nor nix wraps close_range, and it allocates nothing.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) } == 0 {
        return;
    }
    if close_listed(first, last) {
        return;
    }
    // No /proc either: every number up to the soft limit on open files, capped so that a limit
    // of 2^30 (some containers) does not mean a billion calls. An fd above both is kept: the
    // last resort of a machine with neither close_range nor /proc.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20) as u32;
    for fd in first..=last.min(limit.saturating_sub(1)) {
        // SAFETY: as above; EBADF for an fd that is not open is the expected answer.
        unsafe { libc::close(fd as RawFd) };
    }
}

/// Closes the open fds in `first..=last` that `/proc/self/fd` lists, reading the directory with
/// raw `getdents64` into a stack buffer: no allocation and no lock, so it is safe in a forked
/// child, as glibc's `closefrom` fallback and CPython's do it. Closing an fd while the listing
/// goes on is fine: procfs continues from the next fd number. False when `/proc` cannot be
/// opened.
fn close_listed(first: u32, last: u32) -> bool {
    // SAFETY: open of a NUL-terminated constant path; the fd is closed below.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which lives on this
        // stack frame; `dir` is the directory opened above.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 || at + reclen > n as usize {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let mut fd: u32 = 0;
            let mut digits = 0;
            for &c in name.iter().take_while(|c| **c != 0) {
                if !c.is_ascii_digit() {
                    digits = 0;
                    break;
                }
                fd = fd.saturating_mul(10).saturating_add(u32::from(c - b'0'));
                digits += 1;
            }
            if digits > 0 && (first..=last).contains(&fd) && fd as RawFd != dir {
                // SAFETY: as in `close_fds`.
                unsafe { libc::close(fd as RawFd) };
            }
            at += reclen;
        }
    }
    // SAFETY: the directory fd opened above, closed once.
    unsafe { libc::close(dir) };
    true
}

/// Marks every fd from 3 up close-on-exec: fds the host inherited from whoever started it must
/// not reach exec-mode children. Where the kernel has no `CLOSE_RANGE_CLOEXEC` (before Linux
/// 5.11), each fd listed in `/proc/self/fd` is marked; an fd that cannot be is named in the log.
pub fn cloexec_inherited() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags (raw: no wrapper, as above).
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0 {
        return;
    }
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list /proc/self/fd ({e}): inherited fds may reach exec-mode children");
            return;
        }
    };
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set this fd's flags; the fd that listed the
        // directory is closed by now and fails harmlessly with EBADF.
        let set = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) == 0
        };
        if !set {
            let e = std::io::Error::last_os_error();
            tracing::warn!("cannot mark inherited fd {fd} close-on-exec ({e}): it may reach exec-mode children");
        }
    }
}

/// Whether `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Clears `O_NONBLOCK` on a socket a child inherited non-blocking.
///
/// Nothing to report: both calls fail only with `EBADF`, and the caller holds `fd`.
pub fn set_blocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on an fd we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// Clears `FD_CLOEXEC` so the fd survives an exec (only the fds meant for an exec-mode child).
pub fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on an fd we hold.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pipe::pipe;
    use std::os::fd::AsRawFd;

    #[test]
    fn close_fds_closes_exactly_the_range() {
        // High numbers, which the kernel gives no other test thread while these are closed
        // (it hands out the lowest free fd).
        let (r0, w0) = pipe().unwrap();
        // SAFETY: F_DUPFD returns a fresh fd this test owns (closed below), or -1.
        let (r, w) = unsafe {
            (
                libc::fcntl(r0.as_raw_fd(), libc::F_DUPFD, 1000),
                libc::fcntl(w0.as_raw_fd(), libc::F_DUPFD, 1000),
            )
        };
        assert!(r >= 1000 && w >= 1000);
        close_fds(r as u32, r as u32);
        assert!(!is_open(r));
        assert!(is_open(w));
        close_fds(w as u32, w as u32);
        assert!(!is_open(w));
    }

    #[test]
    fn the_proc_listing_closes_exactly_the_range() {
        // The fallback where close_range is missing, run directly; high numbers as above.
        let (r0, w0) = pipe().unwrap();
        // SAFETY: F_DUPFD returns a fresh fd this test owns (closed below), or -1.
        let (a, b) = unsafe {
            (
                libc::fcntl(r0.as_raw_fd(), libc::F_DUPFD, 1100),
                libc::fcntl(w0.as_raw_fd(), libc::F_DUPFD, 1100),
            )
        };
        assert!(a >= 1100 && b > a);
        assert!(close_listed(a as u32, a as u32));
        assert!(!is_open(a));
        assert!(is_open(b));
        assert!(is_open(r0.as_raw_fd()) && is_open(w0.as_raw_fd()));
        assert!(close_listed(b as u32, u32::MAX));
        assert!(!is_open(b));
    }
}
