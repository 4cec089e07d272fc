//! New connections to a plugin's handler over their floors (issue 15: connection benchmarks):
//! a bare server without Steward that accepts, forks (or forks and executes this binary) and
//! echoes one line; connections per second sustained by one client loop (`connrate`); and
//! `conncycle1000`, a thousand connect-request-close cycles with what the supervisor holds
//! before and after.
//!
//! Runs in: the benchmark process, and the floor server it forks (and that server's children,
//! forked per client, or this binary executed as `--floor-echo FD`). The server is killed and
//! reaped when its value drops; its children end when their client closes, reaped by the
//! server's ignored SIGCHLD while it lives and by init after.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use steward_tests::*;

use crate::common::*;

/// The fd a floor server's executed child finds its client on.
const ECHO_FD: i32 = 100;

/// Reads up to the first newline from `fd` and writes what it read back: the floor's handler,
/// the echo handler's work for one request. Raw calls only: it runs in a child forked from a
/// process that may have other threads.
fn echo_line(fd: i32) {
    let mut buf = [0u8; 256];
    let mut n = 0usize;
    while n < buf.len() {
        // SAFETY: reads into the unread tail of a stack buffer.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r <= 0 {
            return;
        }
        n += r as usize;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    // SAFETY: writes bytes of the buffer read above.
    unsafe { libc::write(fd, buf.as_ptr().cast(), n) };
}

/// `bench --floor-echo FD`: the exec-mode floor's child, a Rust program executed per client
/// like an exec-mode client child, echoing one line on FD.
pub fn floor_echo(fd: i32) -> ! {
    echo_line(fd);
    // SAFETY: _exit ends this process without running anything else.
    unsafe { libc::_exit(0) }
}

/// A Unix-socket server without Steward: per client, `fork` and echo one line (fork mode), or
/// `fork` and execute this binary as `--floor-echo` (exec mode).
pub struct FloorServer {
    pid: i32,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FloorServer {
    pub fn start(mode: Mode) -> FloorServer {
        let dir = tempfile::Builder::new().prefix("stwfloor").tempdir().expect("temp dir");
        let path = dir.path().join("floor.sock");
        let listener = UnixListener::bind(&path).expect("bind the floor's socket");
        let lfd = listener.as_raw_fd();
        use std::os::unix::ffi::OsStrExt;
        let exe = std::env::current_exe().expect("this binary's path");
        // Everything the children need is built before the fork: they only make raw calls.
        let exe = CString::new(exe.as_os_str().as_bytes()).expect("path without NUL");
        let (arg0, flag, fd) = (c"bench", c"--floor-echo", CString::new(ECHO_FD.to_string()).unwrap());
        let argv = [arg0.as_ptr(), flag.as_ptr(), fd.as_ptr(), std::ptr::null()];
        let exec = mode == Mode::Exec;
        // SAFETY: the child makes raw calls only (accept, fork, dup2, execv, read, write, close,
        // _exit) on fds and buffers that exist before the fork, and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above; every path ends in a loop or _exit.
            unsafe {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                loop {
                    let c = libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut());
                    if c < 0 {
                        continue;
                    }
                    if libc::fork() == 0 {
                        libc::close(lfd);
                        if exec {
                            libc::dup2(c, ECHO_FD);
                            libc::execv(exe.as_ptr(), argv.as_ptr());
                            libc::_exit(127);
                        }
                        echo_line(c);
                        libc::_exit(0);
                    }
                    libc::close(c);
                }
            }
        }
        drop(listener);
        FloorServer { pid, path, _dir: dir }
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        // SAFETY: killing and reaping the server this value forked.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// One new connection to its first byte back, in ms: connect, one line, the answer's first byte.
fn first_byte(path: &Path) -> f64 {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(b"x\n").expect("send");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("first byte");
    t0.elapsed().as_secs_f64() * 1e3
}

/// The floor of `connect`: the same samples against a [`FloorServer`] of `mode`, as far apart.
pub fn connect_floor(mode: Mode, n: usize) -> f64 {
    let f = FloorServer::start(mode);
    wait_serving(&f.path);
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let ms = first_byte(&f.path);
            std::thread::sleep(crate::connect::PACE);
            ms
        })
        .collect();
    median(&mut v)
}

/// One full session: connect, one request line, its whole answer line, close.
fn session(path: &Path) {
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(b"x\n").expect("send");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("answer");
    assert_eq!(line, "x\n", "the echo's answer");
}

/// Connections per second one client loop of [`session`]s sustains against `path` for `d`.
fn rate(path: &Path, d: Duration) -> f64 {
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < d {
        session(path);
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn wait_serving(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "{} never served", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn echo_host(mode: Mode) -> Host {
    Host::start(
        Spec::new(mode)
            .testkit("")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    )
}

/// `connrate`: sessions per second of one client loop for `d` against testkit's echo handler,
/// and against the floor server of the same mode. Returns (Steward, floor).
pub fn connrate(mode: Mode, d: Duration) -> (f64, f64) {
    let h = echo_host(mode);
    let path = h.dir.path().join("echo.sock");
    // A few sessions first, so the loop measures the steady state.
    (0..10).for_each(|_| session(&path));
    let steward = rate(&path, d);
    stop_fast(h);
    let f = FloorServer::start(mode);
    wait_serving(&f.path);
    (0..10).for_each(|_| session(&f.path));
    (steward, rate(&f.path, d))
}

/// What `conncycle` saw: the supervisor's holdings and the client slots in use before and after
/// the cycles, and the cycles' wall time.
pub struct ConnCycles {
    pub supervisor: (Holdings, Holdings),
    pub slots: (u32, u32),
    pub ms: f64,
}

impl ConnCycles {
    /// The figure's pass rule: no fd grew, no client slot is left in use, and resident memory
    /// grew by less than 256 KiB.
    pub fn passes(&self) -> bool {
        let (a, b) = self.supervisor;
        b.fds <= a.fds && b.rss_kib < a.rss_kib + 256 && self.slots.1 == 0
    }
}

/// `conncycle1000`: `n` connect-request-close sessions against testkit's echo handler (after ten
/// warm-up sessions); holdings read from `/proc` once stable, slots from `status`.
pub fn conncycle(mode: Mode, n: usize) -> ConnCycles {
    let h = echo_host(mode);
    let path = h.dir.path().join("echo.sock");
    (0..10).for_each(|_| session(&path));
    let t = Duration::from_secs(30);
    let idle = |s: &Status| s.host.slots.clients_in_use == 0;
    let s = h.wait_for("the warm-up's client children reaped", t, idle);
    let sup = s.host.pid as i32;
    let settle = Duration::from_secs(5);
    let before = (Holdings::settled(sup, settle), s.host.slots.clients_in_use);
    let t0 = Instant::now();
    (0..n).for_each(|_| session(&path));
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    // The last session's child may still be exiting: its slot is free once it is reaped.
    let s = h.wait_for("every client slot free again", t, idle);
    let after = (Holdings::settled(sup, settle), s.host.slots.clients_in_use);
    stop_fast(h);
    ConnCycles {
        supervisor: (before.0, after.0),
        slots: (before.1, after.1),
        ms,
    }
}
