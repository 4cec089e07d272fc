//! `bench`: prints Steward's performance figures, fork and exec mode side by side.
//!
//! Run with `cargo run --release -p steward-tests --bin bench` (add `-- --quick` for fewer runs,
//! `--fork` or `--exec` for one mode, and figure names such as `crash50` to select figures).
//! `floors` prints what the same process work costs without Steward, next to the targets.
//! Every figure is a median over several runs of the real binary with real plugins; what each
//! one measures is printed next to it. Results are recorded in docs/benchmarks.md.

use std::time::{Duration, Instant};

use steward_tests::*;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Counts occurrences of a needle in the host's log as it grows, reading only new bytes: on two
/// cores, an observer that re-read the whole log at every poll would slow down what it measures.
struct LogWatch {
    file: std::fs::File,
    needle: Vec<u8>,
    /// The last `needle.len() - 1` bytes seen, so a match split across two reads still counts.
    carry: Vec<u8>,
    count: usize,
}

impl LogWatch {
    fn new(h: &Host, needle: &str) -> LogWatch {
        // The log file exists from the moment the host is spawned.
        let file = std::fs::File::open(&h.log).expect("open the host's log");
        LogWatch {
            file,
            needle: needle.as_bytes().to_vec(),
            carry: Vec::new(),
            count: 0,
        }
    }

    /// Reads what was appended since the last call; returns the total count so far.
    fn poll(&mut self) -> usize {
        use std::io::Read;
        let mut chunk = std::mem::take(&mut self.carry);
        let start = chunk.len();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut buf).expect("read the host's log");
            if n == 0 {
                break;
            }
            chunk.extend_from_slice(&buf[..n]);
        }
        if chunk.len() == start {
            self.carry = chunk;
            return self.count;
        }
        let k = self.needle.len();
        self.count += chunk.windows(k).filter(|w| *w == self.needle.as_slice()).count();
        self.carry = chunk[chunk.len().saturating_sub(k - 1)..].to_vec();
        self.count
    }

    /// Waits until the count reaches `n`; returns when that was seen.
    fn wait_for(&mut self, n: usize, timeout: Duration, h: &Host) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.poll() >= n {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} {:?} lines:\n{}",
                self.count,
                String::from_utf8_lossy(&self.needle),
                h.log_text()
            );
            // Yield the CPU: on two cores a spinning observer would slow down what it measures.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Waits until the log holds `n` occurrences of `needle`; returns when that was seen.
fn wait_log_count(h: &Host, needle: &str, n: usize, timeout: Duration) -> Instant {
    LogWatch::new(h, needle).wait_for(n, timeout, h)
}

fn workers_spec(mode: Mode, n: usize) -> Spec {
    let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    Spec::new(mode)
        .testkit(&names.join(","))
        .setting("testkit", "announce = true")
        .setting("testkit", "trigger_dir = \"\"")
        .host(&format!("max_worker_processes = {}", 8))
}

/// `steward run` started to `n` worker entries running (each logs "up" on entry).
fn start_to_running(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let spec = workers_spec(mode, n);
        let t0 = Instant::now();
        let h = Host::spawn(spec);
        let t1 = wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        v.push((t1 - t0).as_secs_f64() * 1e3);
        // The next run must not start while the kernel still tears this host's processes down:
        // a fast shutdown returns once the supervisor has reaped every one of them.
        stop_fast(h);
    }
    median(&mut v)
}

/// Fast shutdown (SIGINT) of `h`, returning when the supervisor, which exits after its last child
/// is reaped, has exited with status 0.
fn stop_fast(mut h: Host) {
    let mut child = h.child.take().expect("host process");
    h.signal(libc::SIGINT);
    let st = child.wait().expect("wait for the host");
    assert!(st.success(), "fast shutdown exit status {st}");
}

/// Connect, `status`, full answer, measured in this client.
fn control_round_trip(mode: Mode, n: usize) -> (f64, f64) {
    let h = Host::start(Spec::new(mode).plugin("hello").host("max_connections = 256"));
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let t0 = Instant::now();
        let ok = Client::connect(&h.socket()).and_then(|mut c| c.status()).is_ok();
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if ok {
            v.push(dt);
        }
    }
    (median(&mut v), pct(&mut v, 0.99))
}

// issue 15: connections
/// A new client of a plugin's listener to the handler's first byte back: connect to testkit's
/// echo handler on a Unix socket, send one line, read the first byte of the answer, close.
/// Timed in this client, so it covers accept, the client child's launch (fork, or exec with its
/// plugin loading), the handler's start and one round trip.
fn connection_first_byte(mode: Mode, n: usize) -> f64 {
    use std::io::{Read, Write};
    let h = Host::start(
        Spec::new(mode)
            .testkit("")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    );
    let path = h.dir.path().join("echo.sock");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        s.write_all(b"x\n").expect("send");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("first byte");
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(s);
    }
    median(&mut v)
}

/// PostgreSQL's new connection in the same run, when its server is installed: a scratch cluster
/// (trust authentication, Unix socket only, as the `postgres` user when this runs as root), and
/// per sample a connect, the startup message, and every answer up to ReadyForQuery (the backend
/// forked and initialised), timed in this client. `None` when there is no server to run.
fn postgres_new_connection(n: usize) -> Option<f64> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let bin = ["/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/bin"]
        .iter()
        .map(std::path::Path::new)
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())?;
    let dir = tempfile::Builder::new().prefix("stwpg").tempdir().ok()?;
    let data = dir.path().join("data");
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let as_pg = |prog: &str| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
            c
        } else {
            Command::new(bin.join(prog))
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    if root {
        Command::new("chown").arg("postgres").arg(dir.path()).status().ok()?;
    }
    let ok = as_pg("initdb")
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let mut server = as_pg("postgres")
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=", "-c", "fsync=off", "-p", "5499", "-k"])
        .arg(dir.path())
        .spawn()
        .ok()?;
    let sock = dir.path().join(".s.PGSQL.5499");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut startup = Vec::new();
    let body = b"user\0postgres\0database\0postgres\0\0";
    startup.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(body);
    let connect = || -> Option<()> {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).ok()?;
        s.write_all(&startup).ok()?;
        loop {
            let mut head = [0u8; 5];
            s.read_exact(&mut head).ok()?;
            let len = u32::from_be_bytes(head[1..5].try_into().ok()?) as usize;
            let mut rest = vec![0u8; len.saturating_sub(4)];
            s.read_exact(&mut rest).ok()?;
            match head[0] {
                b'Z' => break,
                b'E' => return None,
                _ => {}
            }
        }
        // Terminate, so the backend exits as a client's would.
        s.write_all(&[b'X', 0, 0, 0, 4]).ok()
    };
    while connect().is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        if connect().is_none() {
            break;
        }
        v.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    // The server's own pid (under `runuser` it is not the child's): SIGINT is its fast shutdown.
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
    if let Some(pid) = pid {
        // SAFETY: signalling the server this function started.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    let _ = server.wait();
    (!v.is_empty()).then(|| median(&mut v))
}

/// A worker that exits 1 as soon as it starts, with a zero restart delay: the time per cycle
/// (exit, reap, relaunch, entry running, exit) bounds "exit 1 to replacement running" from above.
fn restart_cycle(mode: Mode, window: Duration) -> f64 {
    let h = Host::start(
        Spec::new(mode)
            .testkit("cyc:exit_at_start=1")
            .setting("testkit", "restart_delay = \"0ms\"")
            .host("log_level = \"error\""),
    );
    let r0 = h.worker("cyc").restarts;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let r1 = h.worker("cyc").restarts;
    let dt = t0.elapsed();
    dt.as_secs_f64() * 1e3 / (r1 - r0).max(1) as f64
}

/// The supervisor's decision to launch to the worker's entry running (`launch_us` in status),
/// over many restarts of one worker that exits 1 at once and is restarted after 5 ms, so that
/// the machine is not saturated by the measurement itself.
fn launch_latency(mode: Mode, samples: usize) -> (f64, f64) {
    let h = Host::start(
        Spec::new(mode)
            .testkit("l0:exit_at_start=1")
            .setting("testkit", "restart_delay = \"5ms\"")
            .host("log_level = \"error\""),
    );
    // One sample per (worker, restart count): the latency of the launch that count refers to.
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < samples && Instant::now() < deadline {
        for w in h.status().workers {
            if let Some(us) = w.launch_us {
                seen.insert((w.name.clone(), w.restarts), us as f64 / 1e3);
            }
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(seen.len() >= samples / 4, "only {} launch samples in 60 s", seen.len());
    let mut v: Vec<f64> = seen.into_values().collect();
    (median(&mut v), pct(&mut v, 0.99))
}

/// One worker of 50 crashes (SIGSEGV sent at t0) to all 50 entries running again (each logs
/// "up" on entry, so the count of "up" lines reaches 100).
/// One worker takes and releases a lock `n` times with nobody else around, then does the same with
/// a compare-and-swap and a release store on a word of the same shared region (the floor).
/// Returns (ns per pair, floor ns per pair).
fn lock_pair(mode: Mode, n: u32) -> (f64, f64) {
    let h = Host::start(
        Spec::new(mode)
            .testkit(&format!("lb:entry=testkit_locker:never:bench={n}"))
            .setting("testkit", "locks = \"on\""),
    );
    let log = h.wait_log("lock bench: ", Duration::from_secs(120));
    let line = log.lines().find(|l| l.contains("lock bench: ")).unwrap_or_default();
    let num = |after: &str| -> f64 {
        line.split(after)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let r = (num("lock bench: "), num("floor "));
    stop_fast(h);
    r
}

fn crash_recovery(mode: Mode, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let h = Host::start(workers_spec(mode, 50).setting("testkit", "restart_delay = \"0ms\""));
        let mut ups = LogWatch::new(&h, "testkit: up");
        ups.wait_for(50, Duration::from_secs(30), &h);
        let victim = h.worker("w17").pid.expect("running");
        let t0 = Instant::now();
        // SAFETY: signalling a worker of the host this benchmark started.
        unsafe { libc::kill(victim, libc::SIGSEGV) };
        let t1 = ups.wait_for(100, Duration::from_secs(30), &h);
        v.push((t1 - t0).as_secs_f64() * 1e3);
        stop_fast(h);
    }
    median(&mut v)
}

/// Fast shutdown (SIGINT at t0) with `n` workers running, to the host's exit.
fn fast_shutdown(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let mut h = Host::spawn(workers_spec(mode, n));
        wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        let mut child = h.child.take().expect("host process");
        let t0 = Instant::now();
        h.signal(libc::SIGINT);
        let st = child.wait().expect("wait for the host");
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(st.success(), "fast shutdown exit status {st}");
    }
    median(&mut v)
}

/// CPU time of this process's waited-for descendants so far, in ms.
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// The CPU time (user and system, every process of the host: supervisor, fork helpers, workers)
/// of a start of `n` workers to all running followed by a fast shutdown. Unlike wall-clock
/// figures this hardly depends on what else the machine does, so it shows a change in the work
/// Steward asks of the kernel even when the machine's speed drifts.
fn start_stop_cpu(mode: Mode, n: usize, runs: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..runs {
        let before = children_cpu_ms();
        let h = Host::spawn(workers_spec(mode, n));
        wait_log_count(&h, "testkit: up", n, Duration::from_secs(60));
        stop_fast(h);
        v.push(children_cpu_ms() - before);
    }
    median(&mut v)
}

/// Latch set to wake across processes: testkit's ping-pong pair (`testkit_latch_setter` stamps
/// `CLOCK_MONOTONIC` and sets the sleeping `testkit_latch_waiter`'s latch, which measures when its
/// `wait` returned `Latch`), median of one batch of `samples`.
fn latch_wake(mode: Mode, samples: usize) -> f64 {
    let h = Host::start(
        Spec::new(mode)
            .testkit("pong:entry=testkit_latch_waiter,ping:entry=testkit_latch_setter")
            .setting("testkit", &format!("latch_batch = {samples}"))
            .setting("testkit", "trigger_dir = \"\""),
    );
    wait_log_count(&h, "latch batch 1 ", 1, Duration::from_secs(120));
    let log = h.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("latch batch 1 "))
        .expect("a batch line");
    let at = line.find("median_us=").expect("a median") + "median_us=".len();
    let median: f64 = line[at..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    stop_fast(h);
    median
}

/// The floor of `latch_wake`: a forked process asleep in `ppoll` on an eventfd, woken by a write
/// from this process, with the same pacing (500 us) and the same clock; median in microseconds.
fn latch_floor(samples: usize) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let now_ns = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let len = 8 * (samples + 1);
    // SAFETY: a fresh shared anonymous mapping of `len` bytes (zeroed), unmapped below; its words
    // are only used as atomics, in this process and the forked one.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED, "mmap");
    let word = |i: usize| -> &AtomicU64 {
        // SAFETY: `i <= samples`, inside the mapping, 8-aligned; the mapping outlives every use.
        unsafe { &*(page as *const AtomicU64).add(i) }
    };
    // SAFETY: eventfd returns new fds or -1 (checked).
    let (a, b) = unsafe { (libc::eventfd(0, libc::EFD_CLOEXEC), libc::eventfd(0, libc::EFD_CLOEXEC)) };
    assert!(a >= 0 && b >= 0, "eventfd");
    let mut buf = 0u64;
    let one = 1u64;
    // SAFETY: the child only calls ppoll, read, write, clock_gettime and _exit on fds and memory
    // it inherited, then exits without returning.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        for i in 0..samples {
            let mut p = libc::pollfd {
                fd: a,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd and an empty mask on the stack.
            unsafe {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::ppoll(&mut p, 1, std::ptr::null(), &none);
                libc::read(a, (&mut buf as *mut u64).cast(), 8);
            }
            word(i + 1).store(
                now_ns().saturating_sub(word(0).load(Ordering::SeqCst)),
                Ordering::SeqCst,
            );
            // SAFETY: an 8-byte write from a local to our eventfd.
            unsafe { libc::write(b, (&one as *const u64).cast(), 8) };
        }
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(0) };
    }
    for _ in 0..samples {
        std::thread::sleep(Duration::from_micros(500));
        word(0).store(now_ns(), Ordering::SeqCst);
        let mut p = libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: 8-byte writes and reads from locals on our eventfds; one pollfd on the stack.
        unsafe {
            libc::write(a, (&one as *const u64).cast(), 8);
            libc::poll(&mut p, 1, 10_000);
            libc::read(b, (&mut buf as *mut u64).cast(), 8);
        }
    }
    let mut v: Vec<f64> = (1..=samples)
        .map(|i| word(i).load(Ordering::SeqCst) as f64 / 1e3)
        .collect();
    // SAFETY: reaping our child, closing our fds, unmapping our mapping (no reference outlives it).
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(a);
        libc::close(b);
        libc::munmap(page, len);
    }
    median(&mut v)
}

// ---- floors: the bare process work behind the figures above, without Steward ----

/// `bench --floor-child FD`: the idle program of the exec-mode floors, a Rust program like
/// `steward` but doing nothing. It says it runs by writing one byte to FD, then waits for a signal.
fn floor_child(fd: i32) -> ! {
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
struct Floor {
    mode: Mode,
    exe: std::ffi::CString,
    fd_arg: std::ffi::CString,
    r: std::fs::File,
    w: std::os::fd::OwnedFd,
    pids: Vec<i32>,
}

impl Floor {
    fn new(mode: Mode) -> Floor {
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

    fn start(&mut self, n: usize) {
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
    fn wait_running(&mut self, n: usize) {
        use std::io::Read;
        let mut buf = vec![0u8; n];
        self.r.read_exact(&mut buf).expect("children report running");
    }

    /// SIGTERM to every child, then reaps each.
    fn stop(&mut self) {
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
fn floors(mode: Mode, runs: usize) -> [f64; 3] {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, fd] = &args[..] {
        if flag == "--floor-child" {
            floor_child(fd.parse().expect("fd number"));
        }
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // Optional names select figures: start10 rtt connect cycle launch latch lock crash50 shutdown1000
    // start1000 cpu1000 floors (default: all).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let runs = if quick { 5 } else { 15 };
    build();
    println!(
        "Steward benchmarks ({} build, {} runs per median)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        runs
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model()
    );
    println!();
    println!("{:<58} {:>12} {:>12}", "figure", "fork", "exec");
    // `--fork` or `--exec` measures one mode only (the other column shows "-").
    let skip = |m: Mode| {
        let flag = |f: &str| std::env::args().any(|a| a == f);
        match m {
            Mode::Fork => flag("--exec") && !flag("--fork"),
            Mode::Exec => flag("--fork") && !flag("--exec"),
        }
    };
    let row = |name: &str, f: &dyn Fn(Mode) -> String| {
        let cell = |m: Mode| if skip(m) { "-".to_string() } else { f(m) };
        println!("{:<58} {:>12} {:>12}", name, cell(Mode::Fork), cell(Mode::Exec));
    };
    if want("start10") {
        row("start to 10 workers running, ms (median)", &|m| {
            format!("{:.2}", start_to_running(m, 10, runs))
        });
    }
    if want("rtt") {
        row("control round trip: connect+status+answer, ms (median)", &|m| {
            format!("{:.3}", control_round_trip(m, 2000).0)
        });
        row("control round trip, ms (p99)", &|m| {
            format!("{:.3}", control_round_trip(m, 2000).1)
        });
    }
    // issue 15: connections
    if want("connect") {
        let n = if quick { 200 } else { 1000 };
        row("new connection to the handler's first byte back, ms (median)", &|m| {
            format!("{:.3}", connection_first_byte(m, n))
        });
        let pg = postgres_new_connection(n).map_or("not installed".to_owned(), |v| format!("{v:.3}"));
        println!(
            "{:<58} {:>25}",
            "  PostgreSQL: new connection to ReadyForQuery, ms (median)", pg
        );
    }
    if want("cycle") {
        row("exit 1 -> replacement running -> exit, ms per cycle", &|m| {
            format!(
                "{:.3}",
                restart_cycle(m, Duration::from_secs(if quick { 1 } else { 3 }))
            )
        });
    }
    if want("launch") {
        let lat = [Mode::Fork, Mode::Exec].map(|m| {
            if skip(m) {
                (f64::NAN, f64::NAN)
            } else {
                launch_latency(m, 300)
            }
        });
        println!(
            "{:<58} {:>12.3} {:>12.3}",
            "launch decision -> entry running, ms (median)", lat[0].0, lat[1].0
        );
        println!(
            "{:<58} {:>12.3} {:>12.3}",
            "launch decision -> entry running, ms (p99)", lat[0].1, lat[1].1
        );
    }
    if want("latch") {
        // Target: under 50 us median; the floor is measured in the same run, per column.
        let n = if quick { 300 } else { 1000 };
        row("latch: set() -> wait returns Latch, us (median)", &|m| {
            format!("{:.1}", latch_wake(m, n))
        });
        row("  its floor: eventfd write -> ppoll returns, us (median)", &|_| {
            format!("{:.1}", latch_floor(n))
        });
    }
    if want("lock") {
        let n = if quick { 10_000_000 } else { 100_000_000 };
        let r = [Mode::Fork, Mode::Exec].map(|m| if skip(m) { (f64::NAN, f64::NAN) } else { lock_pair(m, n) });
        println!(
            "{:<58} {:>12.1} {:>12.1}",
            "lock: uncontended exclusive acquire+release, ns", r[0].0, r[1].0
        );
        println!(
            "{:<58} {:>12.1} {:>12.1}",
            "lock floor: CAS + release store on a shared page, ns", r[0].1, r[1].1
        );
    }
    // The three target figures, per mode, for the ratios to their floors printed at the end.
    let figures = std::cell::RefCell::new([[f64::NAN; 2]; 3]);
    let keep = |k: usize, m: Mode, v: f64| {
        figures.borrow_mut()[k][m as usize] = v;
        format!("{v:.1}")
    };
    if want("crash50") {
        row("crash of 1 of 50 workers to all 50 running again, ms (median)", &|m| {
            keep(0, m, crash_recovery(m, runs.min(9)))
        });
    }
    if want("shutdown1000") {
        row("fast shutdown with 1000 workers, ms (median)", &|m| {
            keep(2, m, fast_shutdown(m, 1000, runs.min(5)))
        });
    }
    if want("start1000") {
        row("start to 1000 workers running, ms (median)", &|m| {
            keep(1, m, start_to_running(m, 1000, runs.min(5)))
        });
    }
    if want("cpu1000") {
        row("CPU time of the host, start 1000 + fast shutdown, ms (median)", &|m| {
            format!("{:.0}", start_stop_cpu(m, 1000, runs.min(5)))
        });
    }
    if want("floors") {
        println!();
        println!("floors: the same process work without Steward (idle programs, see docs/benchmarks.md)");
        let f = [Mode::Fork, Mode::Exec].map(|m| if skip(m) { [f64::NAN; 3] } else { floors(m, runs.min(5)) });
        let cell = |v: f64, digits: usize| {
            if v.is_nan() {
                "-".to_string()
            } else {
                format!("{v:.digits$}")
            }
        };
        for (k, name) in [
            "50 idle processes stopped, 50 new ones running, ms (median)",
            "1000 processes started to all running, ms (median)",
            "SIGTERM to 1000 idle processes to all reaped, ms (median)",
        ]
        .iter()
        .enumerate()
        {
            println!("{:<58} {:>12} {:>12}", name, cell(f[0][k], 1), cell(f[1][k], 1));
        }
        // A figure over its floor from the same run moves less than the figure alone when the
        // machine's speed drifts. The targets ask for 150/90 = 1.67 (start) and 80/40 = 2.0 (shutdown).
        let figures = figures.borrow();
        println!();
        println!("each figure over its floor from this run");
        for (k, name) in [
            "crash of 1 of 50 / its floor",
            "start to 1000 running / its floor",
            "fast shutdown of 1000 / its floor",
        ]
        .iter()
        .enumerate()
        {
            if figures[k].iter().any(|v| !v.is_nan()) {
                let r = |i: usize| cell(figures[k][i] / f[i][k], 2);
                println!("{:<58} {:>12} {:>12}", name, r(0), r(1));
            }
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
