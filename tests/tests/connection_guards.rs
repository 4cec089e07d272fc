//! Plugins' connections against clients and handlers that misbehave (review of plugin
//! connections): a stopping host exits however its clients reconnect and trickle bytes; a
//! rejection writer runs read-only, within a deadline, and dies of a shutdown's SIGTERM; the
//! listeners' dead-ends never take the control socket's; a session cannot launch another
//! plugin's worker; 200 clients at once against `max_connections = 50` are each answered at
//! once; a failing `accept` does not spin.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use steward_tests::*;

const T: Duration = Duration::from_secs(20);

fn connect(path: &Path, timeout: Duration) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Everything the client reads until the server closes (a read timeout fails the test).
fn read_all(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes before the read timeout");
    String::from_utf8_lossy(&out).into_owned()
}

/// The live (not zombie) processes of group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            // After the command's closing parenthesis: state, ppid, pgrp.
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, r)| r)
                .split_whitespace()
                .collect();
            rest.first() != Some(&"Z") && rest.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .collect()
}

/// A client socket connected without ever waiting: `None` when the backlog is full (the host
/// stopped accepting) or the listener is gone.
fn connect_now(path: &Path) -> Option<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).ok()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path).ok()?).ok()?;
    Some(UnixStream::from(fd))
}

/// A fast shutdown while clients keep connecting (one every fraction of a millisecond) and trickle
/// a byte into each connection every 100 ms, and a worker takes a second to stop. The host stops
/// accepting once it has signalled its children, signals (or kills) what it starts after that,
/// and gives each dead-end a deadline: it exits once that worker is done, well before
/// `shutdown_timeout` (a dead-end started during the stop and kept alive by its client used to
/// hold it there, or past it), and nothing of it is left. The timeout is long (10 s) so that a
/// host waiting for it fails the test by a wide margin even on a loaded machine.
fn a_stopping_host_exits_while_clients_keep_reconnecting(mode: Mode) {
    let spec = Spec::new(mode)
        .plugin("kvstore")
        .testkit("slow:stop_after=1s")
        .host("shutdown_timeout = \"10s\"")
        .listen("handler = \"kvstore.kv\"\nunix = \"kv.sock\"\nmax_connections = 2");
    let mut h = Host::start(spec);
    h.wait_for("the slow worker runs", T, |s| find(s, "slow").state == "running");
    let path = h.dir.path().join("kv.sock");
    let stop = AtomicBool::new(false);
    let before = children_of(h.pid).len();
    std::thread::scope(|scope| {
        let (path, stop) = (&path, &stop);
        let pester = move || {
            let mut open: Vec<UnixStream> = Vec::new();
            let mut trickled = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if open.len() < 200 {
                    open.extend(connect_now(path));
                }
                if trickled.elapsed() >= Duration::from_millis(100) {
                    trickled = Instant::now();
                    // A connection whose other end is gone is dropped; the others get a byte.
                    open.retain_mut(|s| !matches!(s.write(b"x"), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        let pesters: Vec<_> = (0..2).map(|_| scope.spawn(pester)).collect();
        // Served sessions and refused ones (past the two places) are both under way: the two
        // client children and at least three dead-ends, which the trickle keeps alive.
        let deadline = Instant::now() + T;
        while children_of(h.pid).len() < before + 5 {
            if Instant::now() >= deadline {
                stop.store(true, Ordering::Relaxed);
                panic!("no sessions under way after {T:?}\n{}", h.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        h.signal(libc::SIGINT);
        let exited = h.child.as_mut().map(|c| wait_child(c, Duration::from_secs(14)));
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        pesters.into_iter().for_each(|p| p.join().unwrap());
        let status = exited.flatten().unwrap_or_else(|| {
            panic!(
                "the host did not exit within shutdown_timeout + 4 s while clients pestered it:\n{}",
                h.log_text()
            )
        });
        h.child = None;
        assert_eq!(status.code(), Some(0), "{}", h.log_text());
        assert!(
            took >= Duration::from_millis(900),
            "the slow worker was not waited for: {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "the host waited for clients' children after its worker was done: {took:?}\n{}",
            h.log_text()
        );
    });
    let left = group_members(h.pid);
    assert!(left.is_empty(), "left behind: {left:?}\n{}", h.log_text());
    assert!(!path.exists(), "the listener's socket file is left behind");
}

/// A handler on `name.sock` with one place, testkit loaded: the second client is refused.
fn one_place(mode: Mode, handler: &str) -> Host {
    Host::start(Spec::new(mode).testkit("").listen(&format!(
        "handler = \"testkit.{handler}\"\nunix = \"{handler}.sock\"\nmax_connections = 1"
    )))
}

/// The segment's first 8 bytes (the header's magic), where `testkit.wild` writes.
fn magic(f: &std::fs::File) -> [u8; 8] {
    let mut b = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(f, &mut b, 0).unwrap();
    b
}

/// A rejection writer that stores into the segment faults in its dead-end, whose mapping is
/// read-only: the client gets no answer, the host's segment is unchanged, and nothing resets.
fn a_wild_rejection_writer_faults_and_the_segment_is_unchanged(mode: Mode) {
    let h = one_place(mode, "wild");
    let path = h.dir.path().join("wild.sock");
    let _served = connect(&path, T);
    let generation = h.status().host.generation;
    let seg = segment_file(h.pid, false);
    let before = magic(&seg);
    let mut refused = connect(&path, T);
    assert_eq!(
        read_all(&mut refused),
        "",
        "the writer's store landed:\n{}",
        h.log_text()
    );
    let after = magic(&seg);
    assert_eq!(before, after, "the segment changed");
    assert_ne!(after, [0xA5; 8]);
    let s = h.status();
    assert_eq!((s.host.state.as_str(), s.host.generation), ("running", generation));
    assert!(!h.log_text().contains("resetting"), "{}", h.log_text());
}

/// A rejection writer that never returns is ended by the dead-end's deadline (5 s): the client
/// sees the socket close, and the host goes on.
fn a_stuck_rejection_writer_is_ended_by_the_deadline(mode: Mode) {
    let h = one_place(mode, "stuck");
    let path = h.dir.path().join("stuck.sock");
    let _served = connect(&path, T);
    let started = Instant::now();
    let mut refused = connect(&path, T);
    assert_eq!(read_all(&mut refused), "");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "ended after {took:?}"
    );
    assert_eq!(h.status().host.state, "running");
}

/// A refused client that keeps trickling bytes into its dead-end after the answer (each byte
/// used to restart the dead-end's wait for the client to close) is cut off by the deadline.
fn a_trickling_client_is_cut_off_by_the_dead_ends_deadline(mode: Mode) {
    let h = one_place(mode, "echo");
    let path = h.dir.path().join("echo.sock");
    let _served = connect(&path, T);
    let started = Instant::now();
    let refused = connect(&path, T);
    let mut line = String::new();
    BufReader::new(&refused).read_line(&mut line).unwrap();
    assert_eq!(line, "error: too many clients\n");
    // The dead-end shut its side after the line; a write fails once it has closed the socket.
    let closed = loop {
        if (&refused).write_all(b"x").is_err() {
            break started.elapsed();
        }
        assert!(started.elapsed() < T, "the dead-end never closed:\n{}", h.log_text());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        closed >= Duration::from_secs(4) && closed < Duration::from_secs(10),
        "closed after {closed:?}"
    );
}

/// A fast shutdown ends a stuck rejection writer at once: the dead-end dies of its SIGTERM (the
/// plugin runtime's flag-only handler is not left in place), so the host exits as soon as its
/// session has ended, long before the writer's deadline or `shutdown_timeout`.
fn a_fast_shutdown_ends_a_stuck_rejection_writer(mode: Mode) {
    let mut h = Host::start(
        Spec::new(mode)
            .testkit("")
            .host("shutdown_timeout = \"20s\"")
            .listen("handler = \"testkit.stuck\"\nunix = \"stuck.sock\"\nmax_connections = 1"),
    );
    let path = h.dir.path().join("stuck.sock");
    let _served = connect(&path, T);
    let _refused = connect(&path, T);
    h.wait_log("rejection writer stuck", T);
    let started = Instant::now();
    h.signal(libc::SIGINT);
    h.wait_exit(T);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the host took {took:?} to stop:\n{}",
        h.log_text()
    );
}

/// Clients refused into stuck dead-ends fill the listeners' bound (`2 * 1 + 8`), and the bound
/// closes the rest unanswered; the control socket's dead-ends are its own, so while a smart
/// shutdown waits, `steward status` still gets its "shutting down" line.
fn the_control_socket_keeps_its_dead_ends_while_clients_fill_theirs(mode: Mode) {
    let spec = Spec::new(mode)
        .testkit("")
        .host("max_client_connections = 1")
        .listen("handler = \"testkit.stuck\"\nunix = \"stuck.sock\"\nmax_connections = 1");
    let h = Host::start(spec);
    let path = h.dir.path().join("stuck.sock");
    let _served = connect(&path, T);
    let mut refused: Vec<UnixStream> = (0..60).map(|_| connect(&path, T)).collect();
    // Accepted in order: once the last is closed unanswered, every dead-end place was taken.
    assert_eq!(read_all(refused.last_mut().unwrap()), "");
    h.signal(libc::SIGTERM);
    h.wait_log("host state: stopping", T);
    let out = h.cli(&["status"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("shutting down"), "{text}\n{}", h.log_text());
}

/// A session that hands the host a launch request naming another plugin is refused, whatever
/// entry it names.
fn a_session_cannot_launch_another_plugins_worker(mode: Mode) {
    let h = Host::start(
        Spec::new(mode)
            .plugin("kvstore")
            .testkit("")
            .listen("handler = \"testkit.forger\"\nunix = \"forger.sock\""),
    );
    let mut s = connect(&h.dir.path().join("forger.sock"), T);
    let answer = read_all(&mut s);
    assert_eq!(
        answer.trim_end(),
        "refused: handler testkit.forger may launch workers of plugin testkit only, not kvstore",
        "{}",
        h.log_text()
    );
    assert!(h.status().workers.iter().all(|w| w.name != "forged"));
}

/// 200 clients at once against `max_connections = 50`: 50 are served, each storing its own key
/// and reading it back; the other 150 get the handler's "too many" at once, none hangs, and
/// `steward status` answers all along.
fn two_hundred_clients_against_fifty_places(mode: Mode) {
    let h = Host::start(
        Spec::new(mode)
            .plugin("kvstore")
            .host("max_client_connections = 300")
            .listen("handler = \"kvstore.kv\"\nunix = \"kv.sock\"\nmax_connections = 50"),
    );
    let path = h.dir.path().join("kv.sock");
    let n = 200;
    // Served sessions stay open until every client has its answer. A client counts itself in
    // `answered` however it ends (a panic too, through `Answered`'s drop), and the main thread
    // waits for the count with a deadline: a client that fails fails the test, never hangs it.
    let answered = AtomicUsize::new(0);
    let release = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut answered = 0;
            while !done.load(Ordering::Relaxed) {
                let s = h
                    .try_status()
                    .unwrap_or_else(|e| panic!("status failed: {e}\n{}", h.log_text()));
                assert_eq!(s.host.state, "running");
                answered += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            answered
        });
        let clients: Vec<_> = (0..n)
            .map(|i| {
                let (path, answered, release) = (&path, &answered, &release);
                scope.spawn(move || {
                    let counted = Answered(answered);
                    let s = connect(path, T);
                    let started = Instant::now();
                    let mut r = BufReader::new(&s);
                    // A refused client's dead-end may have closed already: its answer is read
                    // all the same.
                    let _ = (&s).write_all(format!("SET k{i} v{i}\n").as_bytes());
                    let mut line = String::new();
                    r.read_line(&mut line).expect("an answer, never a hang");
                    let took = started.elapsed();
                    // A served client reads back what it stored, through its own session.
                    if line == "OK\n" {
                        (&s).write_all(format!("GET k{i}\n").as_bytes()).unwrap();
                        let mut value = String::new();
                        r.read_line(&mut value).unwrap();
                        assert_eq!(value, format!("VALUE v{i}\n"));
                    }
                    drop(counted);
                    let deadline = Instant::now() + T;
                    while !release.load(Ordering::Acquire) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (line.trim_end().to_owned(), took)
                })
            })
            .collect();
        let deadline = Instant::now() + 2 * T;
        while answered.load(Ordering::Acquire) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let all = answered.load(Ordering::Acquire);
        release.store(true, Ordering::Release);
        done.store(true, Ordering::Relaxed);
        assert_eq!(
            all,
            n,
            "clients still without an answer after {:?}\n{}",
            2 * T,
            h.log_text()
        );
        let answers: Vec<(String, Duration)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let served = answers.iter().filter(|(a, _)| a == "OK").count();
        let refused: Vec<&Duration> = answers
            .iter()
            .filter(|(a, _)| a == "ERROR too many clients, try again later")
            .map(|(_, t)| t)
            .collect();
        assert_eq!((served, refused.len()), (50, 150), "{answers:?}");
        let slowest = refused.iter().max().unwrap();
        // "At once": a dead-end's fork (and exec) and one line, even with 200 clients starting
        // together on a loaded machine; far below any wait a stuck client would show.
        assert!(**slowest < Duration::from_secs(2), "a refusal took {slowest:?}");
        assert!(watcher.join().unwrap() > 0);
    });
}

/// Counts a client of [`two_hundred_clients_against_fifty_places`] as answered when dropped, on
/// every way out of its thread, a panic included.
struct Answered<'a>(&'a AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// The lowest fd number free in process `pid`.
fn lowest_free_fd(pid: i32) -> u64 {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// Sets the soft `RLIMIT_NOFILE` of process `pid` (one of this user's) and returns the old one.
fn set_fd_limit(pid: i32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on a process of our own user; `old` is a local it writes.
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0
    );
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above; `new` is a local it reads.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    rest.iter().sum()
}

/// With the supervisor out of file descriptors, `accept` on a listener and on the control socket
/// fails (`EMFILE`) and their clients stay queued: each socket rests between tries instead of
/// spinning the loop, each failure is logged once, and the client is served once descriptors are
/// back.
fn a_failing_accept_rests_its_listener(mode: Mode) {
    let h = Host::start(
        Spec::new(mode)
            .plugin("kvstore")
            .listen("handler = \"kvstore.kv\"\nunix = \"kv.sock\""),
    );
    let path = h.dir.path().join("kv.sock");
    Holdings::settled(h.pid, T);
    // Every fd number the supervisor could take next is past its limit now.
    let old = set_fd_limit(h.pid, lowest_free_fd(h.pid));
    let client = connect(&path, T);
    // The control socket's accept fails alike; its client waits in the queue too.
    let _control = connect(&h.socket(), T);
    h.wait_log("accept on unix", T);
    h.wait_log("steward.sock failed", T);
    let (ticks, started) = (cpu_ticks(h.pid), Instant::now());
    // A window to measure over, not a wait for an event: the loop must stay quiet all along.
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(h.pid) - ticks;
    let log = h.log_text();
    set_fd_limit(h.pid, old);
    assert!(
        spent < 30,
        "the supervisor spent {spent} ticks of CPU in {:?} with accept failing",
        started.elapsed()
    );
    assert_eq!(log.matches("accept on unix").count(), 1, "{log}");
    assert_eq!(log.matches("steward.sock failed").count(), 1, "{log}");
    assert!(log.contains("not accepting there for 100 ms"), "{log}");
    (&client).write_all(b"GET nothing\n").unwrap();
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    assert_eq!(line, "NOT_FOUND\n", "{}", h.log_text());
    assert_eq!(h.status().host.state, "running");
}

both_modes!(
    a_stopping_host_exits_while_clients_keep_reconnecting,
    a_wild_rejection_writer_faults_and_the_segment_is_unchanged,
    a_stuck_rejection_writer_is_ended_by_the_deadline,
    the_control_socket_keeps_its_dead_ends_while_clients_fill_theirs,
    a_session_cannot_launch_another_plugins_worker,
    two_hundred_clients_against_fifty_places,
    a_failing_accept_rests_its_listener,
    a_fast_shutdown_ends_a_stuck_rejection_writer,
    a_trickling_client_is_cut_off_by_the_dead_ends_deadline,
);
