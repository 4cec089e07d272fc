//! Plugins serve client connections (issue 15): `[[listen]]` tables, one client child per
//! connection through the launch path, rejections from dead-end children, the connection
//! child's lifetime across shutdown, crash reset and host death, and the kvstore example.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use steward_tests::*;

/// A kvstore host with one Unix listener `kv.sock` (at most `max` clients) and testkit's echo
/// handler on `echo.sock`.
fn kv_spec(mode: Mode, max: u32) -> Spec {
    Spec::new(mode)
        .plugin("kvstore")
        .testkit("")
        .host("max_client_connections = 300")
        .listen(&format!(
            "handler = \"kvstore.kv\"\nunix = \"kv.sock\"\nmax_connections = {max}"
        ))
        .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\"\nmode = \"0600\"")
}

fn kv_path(h: &Host) -> PathBuf {
    h.dir.path().join("kv.sock")
}

fn echo_path(h: &Host) -> PathBuf {
    h.dir.path().join("echo.sock")
}

fn kv_answers(mode: Mode) {
    let h = Host::start(kv_spec(mode, 50));
    let mut a = Session::open(&kv_path(&h));
    let mut b = Session::open(&kv_path(&h));
    assert_eq!(a.ask("GET colour"), "NOT_FOUND");
    assert_eq!(a.ask("SET colour blue green"), "OK");
    assert_eq!(b.ask("GET colour"), "VALUE blue green");
    assert_eq!(b.ask("DEL colour"), "DELETED");
    assert_eq!(a.ask("GET colour"), "NOT_FOUND");
    assert!(a.ask("FROB").starts_with("ERROR unknown command"));
    assert_eq!(a.ask("QUIT"), "BYE");
    let mut e = Session::open(&echo_path(&h));
    assert_eq!(e.ask("hello"), "hello");
    let peer = e.ask("peer");
    assert!(peer.contains("family: \"unix\""), "{peer}");
    assert!(
        peer.contains(&format!("uid: Some({})", unsafe { libc::getuid() })),
        "{peer}"
    );
}

/// 200 clients at once, each with its own key: every answer is right, and the control socket
/// answers while they are all connected.
fn two_hundred_concurrent_clients_get_their_answers(mode: Mode) {
    let h = Host::start(kv_spec(mode, 300));
    let path = kv_path(&h);
    let n = 200;
    let all_open = std::sync::Barrier::new(n + 1);
    let done = std::sync::Barrier::new(n + 1);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..n)
            .map(|i| {
                let (path, all_open, done) = (&path, &all_open, &done);
                scope.spawn(move || {
                    let mut s = Session::open(path);
                    all_open.wait();
                    let mut answers = vec![s.ask(&format!("SET key{i} value {i}"))];
                    answers.push(s.ask(&format!("GET key{i}")));
                    done.wait();
                    answers.push(s.ask(&format!("DEL key{i}")));
                    answers.push(s.ask("QUIT"));
                    answers
                })
            })
            .collect();
        all_open.wait();
        assert_eq!(h.status().host.state, "running");
        done.wait();
        // Every session is still open here: the control socket answers beside 200 clients.
        assert_eq!(h.status().host.state, "running");
        for (i, c) in clients.into_iter().enumerate() {
            let want = [
                "OK".to_owned(),
                format!("VALUE value {i}"),
                "DELETED".into(),
                "BYE".into(),
            ];
            assert_eq!(c.join().expect("client thread"), want, "client {i}");
        }
    });
}

/// Past a listener's `max_connections`, a client gets the handler's "too many" line at once,
/// while the control socket keeps answering; a freed place serves the next client.
fn past_max_connections_clients_get_too_many_at_once(mode: Mode) {
    let h = Host::start(kv_spec(mode, 50));
    let mut served: Vec<Session> = (0..50).map(|_| Session::open(&kv_path(&h))).collect();
    for s in &mut served {
        assert_eq!(s.ask("GET nothing"), "NOT_FOUND");
    }
    let started = Instant::now();
    for _ in 0..20 {
        let mut s = Session::open(&kv_path(&h));
        s.w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.line(), "ERROR too many clients, try again later");
        assert_eq!(h.status().host.state, "running");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusals took {:?}",
        started.elapsed()
    );
    // The echo listener has its own count: the kv listener's 50 do not fill it.
    assert_eq!(Session::open(&echo_path(&h)).ask("hi"), "hi");
    assert_eq!(served.pop().unwrap().ask("QUIT"), "BYE");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = Session::open(&kv_path(&h));
        s.w.write_all(b"GET nothing\n").unwrap();
        match s.line().as_str() {
            "NOT_FOUND" => break,
            other => assert!(Instant::now() < deadline, "still refused: {other}"),
        }
    }
}

/// Smart shutdown (SIGTERM) waits for an open session, refusing new clients with "shutting
/// down", and exits once the session ends; nothing of the session survives.
fn smart_shutdown_waits_for_an_open_session(mode: Mode) {
    let mut h = Host::start(kv_spec(mode, 50));
    let mut s = Session::open(&echo_path(&h));
    let pid: i32 = s.ask("pid").parse().unwrap();
    h.signal(libc::SIGTERM);
    // The control socket refuses requests while the host stops; its log says when it does.
    h.wait_log("host state: stopping", Duration::from_secs(10));
    let mut refused = Session::open(&kv_path(&h));
    assert_eq!(refused.line(), "ERROR the store is shutting down");
    let window = Instant::now() + Duration::from_millis(300);
    while Instant::now() < window {
        let exited = h.child.as_mut().unwrap().try_wait().unwrap();
        assert!(
            exited.is_none(),
            "the host exited with a session open:\n{}",
            h.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.ask("still here"), "still here");
    drop(s);
    let status = h.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", h.log_text());
    wait_gone(&[pid], Duration::from_secs(2));
}

/// Fast shutdown (SIGINT) ends an open session: the handler's read returns, the host exits.
fn fast_shutdown_ends_an_open_session(mode: Mode) {
    let mut h = Host::start(kv_spec(mode, 50));
    let mut s = Session::open(&kv_path(&h));
    assert_eq!(s.ask("SET a b"), "OK");
    let mut e = Session::open(&echo_path(&h));
    let pid: i32 = e.ask("pid").parse().unwrap();
    h.signal(libc::SIGINT);
    let status = h.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", h.log_text());
    assert_eq!(s.line(), "", "the kv session ends with the host");
    assert_eq!(e.line(), "", "the echo session ends with the host");
    wait_gone(&[pid], Duration::from_secs(2));
    assert!(
        !h.log_text().contains("SIGKILL"),
        "the sessions ended on SIGTERM, not after the timeout:\n{}",
        h.log_text()
    );
}

/// Immediate shutdown (SIGQUIT) kills open sessions at once, as PostgreSQL's does its backends:
/// the client sees its connection close, the session's process is gone, and the host does not
/// wait for a handler to notice anything.
fn immediate_shutdown_kills_an_open_session(mode: Mode) {
    let mut h = Host::start(kv_spec(mode, 50));
    let mut s = Session::open(&kv_path(&h));
    assert_eq!(s.ask("SET a b"), "OK");
    let mut e = Session::open(&echo_path(&h));
    let pid: i32 = e.ask("pid").parse().unwrap();
    h.signal(libc::SIGQUIT);
    h.wait_exit(Duration::from_secs(10));
    let log = h.log_text();
    assert!(log.contains("immediate shutdown requested"), "{log}");
    assert!(!log.contains("SIGKILL"), "the sessions ended on SIGQUIT:\n{log}");
    assert_eq!(s.line(), "", "the kv session ends with the host");
    assert_eq!(e.line(), "", "the echo session ends with the host");
    wait_gone(&[pid], Duration::from_secs(1));
}

/// A client child's crash resets the host like a worker's: every other session ends, the
/// generation moves on, and while the host starts again new clients get "recovering"; once it
/// runs, clients are served again. Before the first start, they get "starting up".
fn a_crashing_handler_resets_the_host_and_clients_see_recovering(mode: Mode) {
    let spec = kv_spec(mode, 50).setting("testkit", "startup_hook = \"hold\"");
    let h = Host::start_in(spec, "startup");
    assert_eq!(Session::open(&kv_path(&h)).line(), "ERROR the store is starting up");
    h.trigger("startup", "consistent");
    h.wait_for("consistent", Duration::from_secs(10), |s| s.host.state == "consistent");
    h.trigger("startup", "run");
    h.wait_for("running", Duration::from_secs(10), |s| s.host.state == "running");
    let generation = h.status().host.generation;
    let mut other = Session::open(&echo_path(&h));
    let other_pid: i32 = other.ask("pid").parse().unwrap();
    let mut crasher = Session::open(&echo_path(&h));
    crasher.w.write_all(b"segv\n").unwrap();
    h.wait_for("crash reset", Duration::from_secs(10), |s| {
        s.host.generation > generation
    });
    wait_gone(&[other_pid], Duration::from_secs(5));
    assert_eq!(other.line(), "", "the other session ends with the reset");
    // The startup hook holds the host in startup after the reset (the trigger says `run`, it
    // waits for `consistent`): still recovering.
    assert_eq!(
        Session::open(&kv_path(&h)).line(),
        "ERROR the store is recovering from a crash"
    );
    let log = h.log_text();
    assert!(log.contains("client child") && log.contains("crashed"), "{log}");
    h.trigger("startup", "consistent");
    h.wait_for("consistent", Duration::from_secs(10), |s| s.host.state == "consistent");
    h.trigger("startup", "run");
    h.wait_for("running", Duration::from_secs(10), |s| s.host.state == "running");
    let mut s = Session::open(&kv_path(&h));
    assert_eq!(s.ask("GET a"), "NOT_FOUND");
}

/// Host SIGKILL: no client child survives it by more than a second.
fn no_client_child_survives_host_sigkill(mode: Mode) {
    let mut h = Host::start(kv_spec(mode, 50));
    let mut sessions: Vec<Session> = (0..3).map(|_| Session::open(&echo_path(&h))).collect();
    let pids: Vec<i32> = sessions.iter_mut().map(|s| s.ask("pid").parse().unwrap()).collect();
    h.signal(libc::SIGKILL);
    h.wait_exit(Duration::from_secs(5));
    wait_gone(&pids, Duration::from_secs(1));
}

both_modes!(
    kv_answers,
    two_hundred_concurrent_clients_get_their_answers,
    past_max_connections_clients_get_too_many_at_once,
    smart_shutdown_waits_for_an_open_session,
    fast_shutdown_ends_an_open_session,
    immediate_shutdown_kills_an_open_session,
    a_crashing_handler_resets_the_host_and_clients_see_recovering,
    no_client_child_survives_host_sigkill,
);

/// A TCP listener serves clients on the address given; a handler without a rejection writer
/// refuses with the host's default line; listeners change only with a restart.
fn tcp_listener_default_refusal_and_reload(mode: Mode) {
    let (h, port) = Host::start_on_free_port(|port| {
        Spec::new(mode).testkit("").listen(&format!(
            "handler = \"testkit.echo\"\ntcp = \"127.0.0.1:{port}\"\nmax_connections = 1"
        ))
    });
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    w.write_all(b"peer\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(
        line.contains("family: \"tcp\"") && line.contains(&format!("local: \"127.0.0.1:{port}\"")),
        "{line}"
    );
    assert!(line.contains("uid: None"), "{line}");
    // The one place is taken: the next client gets the default refusal.
    let second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut refusal = String::new();
    BufReader::new(second).read_line(&mut refusal).unwrap();
    assert_eq!(refusal, "error: too many clients\n");
    h.rewrite_config(
        &h.spec
            .clone()
            .listen("handler = \"testkit.echo\"\nunix = \"more.sock\""),
    );
    h.signal(libc::SIGHUP);
    let log = h.wait_log(
        "listen changed but takes effect only after a restart",
        Duration::from_secs(10),
    );
    assert!(!h.dir.path().join("more.sock").exists(), "{log}");
}

fn fails_with(dir: &Dir, needles: &[&str]) -> String {
    let (code, out) = run_expect_failure(dir);
    assert_eq!(code, 1, "exit code; output:\n{out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in:\n{out}");
    }
    out
}

fn echo_on(mode: Mode, table: &str) -> Spec {
    Spec::new(mode).testkit("").listen(table)
}

/// Bad listeners stop start-up naming the listener and the reason, and leave nothing behind.
fn bad_listeners_stop_start_up_naming_them(mode: Mode) {
    let spec = echo_on(mode, "handler = \"testkit.nope\"\nunix = \"a.sock\"");
    fails_with(
        &Dir::new(&spec),
        &[
            "listen[0] (unix ",
            "a.sock",
            "testkit.nope",
            "no plugin registered it",
            "testkit.echo",
        ],
    );
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"a.sock\"\nmode = \"0066\"");
    fails_with(&Dir::new(&spec), &["listen[0].mode", "read and write"]);
    let spec = echo_on(
        mode,
        "handler = \"testkit.echo\"\nunix = \"a.sock\"\ntcp = \"127.0.0.1:1\"",
    );
    fails_with(&Dir::new(&spec), &["listen[0].unix", "not both"]);
    let spec = echo_on(mode, "handler = \"testkit.echo\"");
    fails_with(&Dir::new(&spec), &["listen[0].unix", "missing"]);

    // A listener at the control socket's path, and two listeners on one path.
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"run/steward.sock\"");
    fails_with(&Dir::new(&spec), &["listen[0].unix", "is the control socket's path"]);
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"a.sock\"")
        .listen("handler = \"testkit.echo\"\nunix = \"./a.sock\"\nmode = \"0600\"");
    fails_with(&Dir::new(&spec), &["listen[1].unix", "listen[0]'s address too"]);

    // A TCP port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = echo_on(mode, &format!("handler = \"testkit.echo\"\ntcp = \"127.0.0.1:{port}\""));
    fails_with(
        &Dir::new(&spec),
        &[&format!("listen[0] (tcp 127.0.0.1:{port})"), "address in use"],
    );

    // A live Unix socket at the path; the second listener's failure removes the first's file.
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"first.sock\"")
        .listen("handler = \"testkit.echo\"\nunix = \"live.sock\"");
    let dir = Dir::new(&spec);
    let _live = std::os::unix::net::UnixListener::bind(dir.path().join("live.sock")).unwrap();
    fails_with(&dir, &["listen[1] (unix ", "address in use"]);
    assert!(
        !dir.path().join("first.sock").exists(),
        "the bound listener's file is left behind"
    );

    // A file in the way is refused, never removed.
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"file.sock\"");
    let dir = Dir::new(&spec);
    std::fs::write(dir.path().join("file.sock"), "mine").unwrap();
    fails_with(&dir, &["listen[0]", "a file owned by", "refusing to replace it"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("file.sock")).unwrap(), "mine");

    // A directory reached through a symlink is not followed.
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"link/a.sock\"");
    let dir = Dir::new(&spec);
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    fails_with(&dir, &["listen[0]", "is a symbolic link; refusing to follow it"]);
    assert!(!dir.path().join("real/a.sock").exists());

    // A directory others may write to (and not sticky) is refused.
    let spec = echo_on(mode, "handler = \"testkit.echo\"\nunix = \"open/a.sock\"");
    let dir = Dir::new(&spec);
    std::fs::create_dir(dir.path().join("open")).unwrap();
    std::fs::set_permissions(
        dir.path().join("open"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    fails_with(&dir, &["listen[0]", "writable by other users and not sticky"]);
}

/// A Unix listener's socket has the configured mode from the start, and is removed at exit.
fn a_unix_listener_has_its_mode_and_goes_at_exit(mode: Mode) {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Host::start(kv_spec(mode, 50));
    let kv = std::fs::metadata(kv_path(&h)).unwrap().permissions().mode() & 0o777;
    let echo = std::fs::metadata(echo_path(&h)).unwrap().permissions().mode() & 0o777;
    assert_eq!((kv, echo), (0o660, 0o600));
    h.signal(libc::SIGINT);
    h.wait_exit(Duration::from_secs(10));
    assert!(!kv_path(&h).exists() && !echo_path(&h).exists());
}

/// A session launches a dynamic worker of its handler's plugin, as a parallel query's leader
/// starts helpers: status shows who launched it, and the session's handle stops it.
fn a_session_launches_a_dynamic_worker(mode: Mode) {
    let h = Host::start(kv_spec(mode, 50));
    let mut s = Session::open(&echo_path(&h));
    let answer = s.ask("launch helper");
    let pid: i32 = answer
        .strip_prefix("started ")
        .unwrap_or_else(|| panic!("{answer}\n{}", h.log_text()))
        .parse()
        .unwrap();
    let w = h.worker("helper");
    assert_eq!(
        (w.pid, w.launcher.as_deref()),
        (Some(pid), Some("testkit.echo")),
        "{w:?}"
    );
    assert_eq!(s.ask("stop"), "stopped");
    wait_gone(&[pid], Duration::from_secs(5));
}

both_modes!(
    a_session_launches_a_dynamic_worker,
    tcp_listener_default_refusal_and_reload,
    bad_listeners_stop_start_up_naming_them,
    a_unix_listener_has_its_mode_and_goes_at_exit,
);
