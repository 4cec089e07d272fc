//! Waiting for input on fds: `poll(2)`, and `ppoll(2)` with one signal unblocked for the wait.
//!
//! Runs in: the supervisor (its event loop) and children (a worker's `wait`, the death pipe).

use std::os::fd::{BorrowedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec};

/// Polls `fds` for input; `timeout_ms < 0` waits forever. Returns the revents per fd (all zero
/// on a timeout or an interruption).
///
/// Every fd in `fds` must stay open for the duration of the call (callers pass fds they hold).
pub fn poll_in(fds: &[RawFd], timeout_ms: i32) -> Vec<i16> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        // SAFETY: the caller keeps each fd open until this function returns, which is as long as
        // the borrow lives.
        .map(|&fd| PollFd::from_borrowed_fd(unsafe { BorrowedFd::borrow_raw(fd) }, PollFlags::IN))
        .collect();
    let timeout = (timeout_ms >= 0).then(|| Timespec {
        tv_sec: (timeout_ms / 1000).into(),
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as _,
    });
    // An error reads as "nothing yet": EINTR is that; EFAULT and EINVAL cannot happen with this
    // array; ENOMEM passes. Every caller looks again, with its own deadline.
    match rustix::event::poll(&mut pfds, timeout.as_ref()) {
        Ok(n) if n > 0 => pfds.iter().map(|p| p.revents().bits() as i16).collect(),
        _ => vec![0; fds.len()],
    }
}

/// As [`poll_in`], with `timeout` (`None`: forever) and with `unblock` unblocked in this thread
/// for the duration of the wait only (`ppoll(2)`'s atomic mask swap), so a signal the caller's
/// code blocked still ends the wait.
///
/// Every fd in `fds` must stay open for the duration of the call.
pub fn ppoll_in(fds: &[RawFd], timeout: Option<std::time::Duration>, unblock: i32) -> Vec<i16> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    // SAFETY: `mask` is a local set that pthread_sigmask fills (a null new set only reads the
    // current mask) and sigdelset edits; ppoll reads the pollfd array of `pfds.len()` entries we
    // own, the optional timespec and the mask, all alive for the call, and writes only `revents`.
    // Raw libc: rustix's ppoll takes no signal mask.
    let n = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        libc::sigdelset(&mut mask, unblock);
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec),
            &mask,
        )
    };
    // As in `poll_in`: an error (EINTR above all) reads as "nothing yet".
    if n > 0 {
        pfds.iter().map(|p| p.revents).collect()
    } else {
        vec![0; fds.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pipe::pipe;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::thread::JoinHandleExt;
    use std::time::{Duration, Instant};

    #[test]
    fn poll_in_reports_input_and_nothing_on_a_timeout() {
        let (r, w) = pipe().unwrap();
        assert_eq!(poll_in(&[r.as_raw_fd()], 0), vec![0]);
        std::fs::File::from(w).write_all(b"x").unwrap();
        // The write end is closed now too: input and hang-up, never zero.
        assert_ne!(poll_in(&[r.as_raw_fd()], -1)[0], 0);
        let (r2, _w2) = pipe().unwrap();
        let start = Instant::now();
        assert_eq!(poll_in(&[r2.as_raw_fd()], 20), vec![0]);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn ppoll_in_reports_input_and_waits_out_its_timeout() {
        let (r, w) = pipe().unwrap();
        let start = Instant::now();
        assert_eq!(
            ppoll_in(&[r.as_raw_fd()], Some(Duration::from_millis(15)), libc::SIGURG),
            vec![0]
        );
        assert!(start.elapsed() >= Duration::from_millis(15));
        std::fs::File::from(w).write_all(b"x").unwrap();
        assert_ne!(ppoll_in(&[r.as_raw_fd()], None, libc::SIGURG)[0], 0);
    }

    static URG_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    extern "C" fn on_urg(_: libc::c_int) {
        let one = 1u64;
        // SAFETY: write(2) of 8 bytes from a local to the test's eventfd; async-signal-safe.
        unsafe {
            libc::write(
                URG_FD.load(std::sync::atomic::Ordering::SeqCst),
                (&one as *const u64).cast(),
                8,
            )
        };
    }

    /// Puts SIGURG's disposition back and points `on_urg` at no fd when dropped, so the handler
    /// this test installs outlives neither it nor its eventfd, even when it fails.
    struct RestoreUrg(libc::sigaction);

    impl Drop for RestoreUrg {
        fn drop(&mut self) {
            // SAFETY: reinstalls the disposition `sigaction` reported before the test changed it.
            unsafe { libc::sigaction(libc::SIGURG, &self.0, std::ptr::null_mut()) };
            URG_FD.store(-1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Sends SIGURG to one thread of this process.
    fn urg_to(thread: libc::pthread_t) {
        // SAFETY: the caller names a thread that is still running (this one, or the sleeper,
        // which ends only after this signal woke it or 10 s passed), so the id is valid; the
        // handler the test installed only writes an eventfd.
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGURG) }, 0);
    }

    /// A latch's wake-up path: a thread asleep in `ppoll` with SIGURG blocked outside the call is
    /// woken by SIGURG whether the handler runs on another thread (the kernel picks any thread
    /// for a process-directed signal) or on the sleeper itself (its only unblocked moment is the
    /// sleep). Each signal goes to one chosen thread: a process-directed one could interrupt
    /// another test's `poll` in this binary and end its timed wait early.
    #[test]
    fn a_sigurg_handler_on_any_thread_wakes_ppoll() {
        let efd = crate::sys::eventfd().unwrap();
        // SAFETY: a null new action only reads the current one into the local.
        let old = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGURG, std::ptr::null(), &mut old);
            old
        };
        let _restore = RestoreUrg(old);
        URG_FD.store(efd.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
        crate::sys::signals::ensure_handler(libc::SIGURG, on_urg as *const () as libc::sighandler_t);
        let fd = efd.as_raw_fd();
        let (woke_tx, woke_rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            // Blocked in this thread, as a plugin might: ppoll must unblock it for the sleep.
            // SAFETY: editing a local set and this thread's mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGURG);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            for _ in 0..2 {
                let t = Instant::now();
                let mut r = vec![0];
                // EINTR (the handler ran on this thread) reads as nothing: look again.
                while r[0] == 0 && t.elapsed() < Duration::from_secs(10) {
                    r = ppoll_in(&[fd], Some(Duration::from_secs(10)), libc::SIGURG);
                }
                crate::sys::pipe::drain(fd);
                woke_tx.send((r[0], t.elapsed())).unwrap();
            }
        });

        // The handler on another thread: this one, with SIGURG unblocked, runs it before
        // pthread_kill returns.
        // SAFETY: editing local sets and this thread's mask, which is put back right after.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGURG);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut before);
            urg_to(libc::pthread_self());
            libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        }
        let (revents, took) = woke_rx.recv().unwrap();
        assert_ne!(revents, 0, "the handler on another thread did not wake the sleeper");
        assert!(took < Duration::from_secs(5), "{took:?}");

        // The handler on the sleeper: pending there until ppoll unblocks it for the sleep.
        urg_to(sleeper.as_pthread_t());
        let (revents, took) = woke_rx.recv().unwrap();
        assert_ne!(revents, 0, "the handler on the sleeper did not wake it");
        assert!(took < Duration::from_secs(5), "{took:?}");
        sleeper.join().unwrap();
    }
}
