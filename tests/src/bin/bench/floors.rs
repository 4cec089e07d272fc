//! Floors: the bare process work behind the lifecycle targets, without Steward.
//!
//! Runs in: the benchmark process, which forks (fork mode) or spawns itself as `--floor-child`
//! (exec mode) idle children and reaps every one of them before it returns.

use std::time::Instant;

use steward_tests::*;

use crate::common::*;

/// `bench --floor-child FD`: the idle program of the exec-mode floors, a Rust program like
/// `steward` but doing nothing. It says it runs by writing one byte to FD, then waits for a signal.
pub fn floor_child(fd: i32) -> ! {
    // SAFETY: write and pause have no memory effects beyond the one-byte buffer.
    unsafe {
        libc::write(fd, b"u".as_ptr().cast(), 1);
        loop {
            libc::pause();
        }
    }
}

/// Idle processes started the way Steward starts children: `fork` from this process (the child
/// writes one byte and waits in `pause`), or `posix_spawn` of this binary as `--floor-child`.
pub struct Floor {
    mode: Mode,
    exe: std::ffi::CString,
    fd_arg: std::ffi::CString,
    r: std::fs::File,
    w: std::os::fd::OwnedFd,
    pids: Vec<i32>,
}

impl Floor {
    pub fn new(mode: Mode) -> Floor {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills `fds` with two new fds or fails.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe");
        // SAFETY: both fds are new and owned here.
        let (r, w) = unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // The write end is inherited across exec by the spawned programs.
        // SAFETY: clears FD_CLOEXEC on an fd this value owns.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFD, 0) };
        let exe = std::env::current_exe().expect("this binary's path");
        use std::os::unix::ffi::OsStrExt;
        Floor {
            mode,
            exe: std::ffi::CString::new(exe.as_os_str().as_bytes()).expect("path without NUL"),
            fd_arg: std::ffi::CString::new(w.as_raw_fd().to_string()).expect("digits"),
            r,
            w,
            pids: Vec::new(),
        }
    }

    pub fn start(&mut self, n: usize) {
        use std::os::fd::AsRawFd;
        extern "C" {
            static environ: *const *mut libc::c_char;
        }
        for _ in 0..n {
            let pid = match self.mode {
                // SAFETY: the child only calls async-signal-safe functions (write, pause).
                Mode::Fork => match unsafe { libc::fork() } {
                    0 => floor_child(self.w.as_raw_fd()),
                    pid => pid,
                },
                Mode::Exec => {
                    let flag = c"--floor-child";
                    let argv = [
                        self.exe.as_ptr() as *mut libc::c_char,
                        flag.as_ptr() as *mut _,
                        self.fd_arg.as_ptr() as *mut _,
                        std::ptr::null_mut(),
                    ];
                    let mut pid = 0;
                    // SAFETY: argv and environ are NUL-terminated arrays that outlive the call.
                    let rc = unsafe {
                        libc::posix_spawn(
                            &mut pid,
                            self.exe.as_ptr(),
                            std::ptr::null(),
                            std::ptr::null(),
                            argv.as_ptr(),
                            environ,
                        )
                    };
                    assert_eq!(rc, 0, "posix_spawn");
                    pid
                }
            };
            assert!(pid > 0, "fork failed");
            self.pids.push(pid);
        }
    }

    /// Waits until `n` more children have written their byte.
    pub fn wait_running(&mut self, n: usize) {
        use std::io::Read;
        let mut buf = vec![0u8; n];
        self.r.read_exact(&mut buf).expect("children report running");
    }

    /// SIGTERM to every child, then reaps each.
    pub fn stop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: signalling a child of this process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for pid in self.pids.drain(..) {
            // SAFETY: reaping a child of this process.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The floors for the three targets, each the median of `runs`: (50 idle processes stopped and
/// 50 new ones running, 1000 started to all running, SIGTERM to 1000 to all reaped).
pub fn floors(mode: Mode, runs: usize) -> [f64; 3] {
    let (mut crash, mut start, mut stop) = (Vec::new(), Vec::new(), Vec::new());
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for _ in 0..runs {
        let mut f = Floor::new(mode);
        f.start(50);
        f.wait_running(50);
        let t = Instant::now();
        f.stop();
        f.start(50);
        f.wait_running(50);
        crash.push(ms(t));
        f.stop();

        let t = Instant::now();
        f.start(1000);
        f.wait_running(1000);
        start.push(ms(t));
        // As in `fast_shutdown`, the stop starts once every child has said it runs.
        let t = Instant::now();
        f.stop();
        stop.push(ms(t));
    }
    [median(&mut crash), median(&mut start), median(&mut stop)]
}
