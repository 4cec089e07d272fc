//! End-to-end: the control protocol and what the host tells its callers (status, reload, show,
//! the service manager's `STATUS=`), in both launch modes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);

fn hello(mode: Mode) -> Spec {
    Spec::new(mode).plugin("hello")
}

/// Sends one raw request line and returns the answer line.
fn raw_request(host: &Host, line: &str) -> serde_json::Value {
    let s = UnixStream::connect(host.socket()).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("answer");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn a_stop_request_the_host_does_not_understand_changes_nothing(mode: Mode) {
    let host = Host::start(hello(mode));
    for (request, expect) in [
        (
            r#"{"v":1,"cmd":"stop","mode":5}"#,
            "stop \"mode\" must be one of the strings",
        ),
        (
            r#"{"v":1,"cmd":"stop","mode":null}"#,
            "stop \"mode\" must be one of the strings",
        ),
        (
            r#"{"v":1.0,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
        (
            r#"{"v":-1,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
        (
            r#"{"v":18446744073709551617,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
    ] {
        let answer = raw_request(&host, request);
        assert_eq!(answer["ok"], false, "{request}: {answer}");
        let err = answer["error"].as_str().unwrap_or_default();
        assert!(err.contains(expect), "{request}: {err}");
    }
    host.assert_stays("the host keeps running", Duration::from_millis(300), |s| {
        s.host.state == "running"
    });
    assert!(!host.log_text().contains("shutdown requested"), "{}", host.log_text());
}

/// A bound `NOTIFY_SOCKET` that collects what the host sends.
struct Notify {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    got: std::cell::RefCell<Vec<String>>,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        Notify {
            _dir: dir,
            path,
            sock,
            got: Default::default(),
        }
    }
    fn spec(&self, mut spec: Spec) -> Spec {
        spec.env.push(("NOTIFY_SOCKET".into(), self.path.display().to_string()));
        spec
    }
    fn drain(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.got
                .borrow_mut()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.got.borrow().clone()
    }
    /// Waits until a message contains `needle`; returns its index.
    fn wait(&self, needle: &str, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.drain();
            if let Some(i) = got.iter().position(|m| m.contains(needle)) {
                return i;
            }
            assert!(std::time::Instant::now() < deadline, "no {needle:?} in {got:?}");
        }
    }
}

/// Where the first notification containing `needle` is in `got`.
fn index_of(got: &[String], needle: &str) -> usize {
    got.iter()
        .position(|m| m.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in {got:?}"))
}

fn after_stopping_the_service_manager_never_hears_running(mode: Mode) {
    let notify = Notify::new();
    // A worker that ignores SIGTERM keeps the shutdown going while the others exit, so the
    // count of running workers changes after STOPPING=1 and a STATUS= line follows. It holds the
    // shutdown for shutdown_timeout: long enough for a status command to start and ask on a busy
    // machine.
    let spec = Spec::new(mode)
        .testkit("a,b,c,stubborn:ignore_term")
        .host("shutdown_timeout = \"4s\"");
    let mut host = Host::start(notify.spec(spec));
    host.wait_for("4 running", T, |s| s.workers.iter().all(|w| w.state == "running"));
    notify.wait("STATUS=running: 4 of 4 workers running", T);
    host.signal(libc::SIGINT);
    // Status agrees while the stubborn worker holds the shutdown up.
    let deadline = std::time::Instant::now() + T;
    loop {
        let out = host.cli(&["status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["state"] == "stopping" {
            assert!(v["reason"].as_str().unwrap().contains("fast shutdown"), "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "status never said stopping: {v}");
    }
    host.wait_exit(T);
    let got = notify.drain();
    let stopping = index_of(&got, "STOPPING=1");
    assert!(got[stopping].contains("STATUS=stopping: fast shutdown"), "{got:?}");
    for m in &got[stopping..] {
        assert!(!m.contains("STATUS=running"), "running after STOPPING=1: {got:?}");
        assert!(!m.contains("READY=1"), "READY=1 after STOPPING=1: {got:?}");
    }
    assert!(
        got[stopping + 1..]
            .iter()
            .any(|m| m.contains("STATUS=stopping: fast shutdown, ")),
        "no later STATUS= while stopping: {got:?}"
    );
    let log = host.log_text();
    assert!(log.contains("host state: stopping"), "{log}");
}

fn during_a_crash_reset_status_and_the_service_manager_both_say_recovering(mode: Mode) {
    let notify = Notify::new();
    let spec = Spec::new(mode)
        .testkit("victim,frozen")
        .host("crash_kill_timeout = \"3s\"");
    let host = Host::start(notify.spec(spec));
    let s = host.wait_for("2 running", T, |s| s.workers.iter().all(|w| w.state == "running"));
    // A stopped process cannot act on SIGQUIT, so the reset waits for crash_kill_timeout and
    // the recovering state lasts long enough to be asked about.
    let frozen = find(&s, "frozen").pid.unwrap();
    let victim = find(&s, "victim").pid.unwrap();
    // SAFETY: signalling workers of our own host.
    unsafe {
        libc::kill(frozen, libc::SIGSTOP);
        libc::kill(victim, libc::SIGSEGV);
    }
    let at = notify.wait("STATUS=recovering", T);
    // The host is alive and says what it is doing: exit 0 (a liveness probe passes), state
    // recovering in the table and in JSON, and not ready.
    let out = host.cli(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("host recovering: "), "{}", stdout(&out));
    let out = host.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "recovering", "{v}");
    let out = host.cli(&["status", "--ready"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    host.wait_for("generation 2 running", T, |s| {
        s.host.generation == 2 && s.host.state == "running" && s.workers.iter().all(|w| w.state == "running")
    });
    let got = notify.drain();
    let back = got[at..]
        .iter()
        .position(|m| m.contains("READY=1") && m.contains("STATUS=running") && m.contains("generation 2"))
        .unwrap_or_else(|| panic!("no READY=1 after the reset: {got:?}"));
    for m in &got[at..at + back] {
        assert!(!m.contains("STATUS=running"), "running during the reset: {got:?}");
    }
    let log = host.log_text();
    assert!(log.contains("host state: recovering"), "{log}");
    // The frozen worker, and a connection child when one is still open.
    assert!(log.contains("other child") && !log.contains("stopping all"), "{log}");
}

fn idle_connections_do_not_lock_out_status_and_are_closed_after_the_timeout(mode: Mode) {
    let host = Host::start(hello(mode).host("max_connections = 16"));
    // Wait on one connection of our own until the harness's start-up connections are gone.
    let own = UnixStream::connect(host.socket()).expect("connect");
    let mut own_reader = BufReader::new(own.try_clone().unwrap());
    let mut in_use = || {
        (&own).write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
        let mut line = String::new();
        own_reader.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        v["result"]["host"]["slots"]["connections_in_use"].as_u64().unwrap()
    };
    let deadline = std::time::Instant::now() + T;
    while in_use() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "start-up connections never went away"
        );
    }
    // Fill the other ordinary slots with connections that never send a request.
    let opened = std::time::Instant::now();
    let idle: Vec<UnixStream> = (0..15)
        .map(|_| UnixStream::connect(host.socket()).expect("connect"))
        .collect();
    // Every ordinary slot is idle, yet status answers at once, through the reserved slot.
    let started = std::time::Instant::now();
    let out = host.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Answered through the reserved slot, not after the idle ones time out (5 s) and free one:
    // the bound says which, with room for a slow start of the command on a busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "status took {:?}",
        started.elapsed()
    );
    let s: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.host.slots.connections_in_use, 17, "{s:#?}");
    assert_eq!((s.host.slots.connections, s.host.slots.reserved_connections), (16, 1));
    // The reserved slot serves status and stop only (once the status above has let it go).
    let deadline = std::time::Instant::now() + T;
    loop {
        let err = Client::connect(&host.socket())
            .unwrap()
            .reload()
            .unwrap_err()
            .to_string();
        if err.contains("reserved for status and stop") {
            break;
        }
        assert!(err.contains("too many connections"), "{err}");
        assert!(std::time::Instant::now() < deadline, "{err}");
    }
    // One of them keeps sending blanks and empty lines, which are not requests: it is closed
    // after the same timeout.
    let trickle = &idle[0];
    trickle.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    for blank in [b" ", b"\n"].iter().cycle() {
        let mut buf = [0u8; 256];
        match std::io::Read::read(&mut &*trickle, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\n") {
                    break;
                }
            }
            Err(_) => (&*trickle).write_all(*blank).unwrap(),
        }
        assert!(opened.elapsed() < T, "the trickling connection was never closed");
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("no request within 5s"), "{got:?}");
    // The idle ones are told why and closed after the timeout, not before.
    for s in &idle[1..] {
        let mut line = String::new();
        s.set_read_timeout(Some(T)).unwrap();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.contains("no request within 5s"), "{line:?}");
    }
    let waited = opened.elapsed();
    // Our own connection, idle since its last request (before the others opened), is closed too.
    // Read, do not ask: a request racing the close could still be served.
    let mut line = String::new();
    own.set_read_timeout(Some(T)).unwrap();
    own_reader.read_line(&mut line).unwrap();
    assert!(line.contains("no request within 5s"), "{line:?}");
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    // Their slots are free again: an ordinary request works.
    host.wait_for("the idle connections are gone", T, |s| {
        s.host.slots.connections_in_use == 1
    });
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn status_json(host: &Host) -> serde_json::Value {
    let out = host.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `steward show NAME --json` as (value, source, context, pending_restart).
fn show(host: &Host, name: &str) -> (String, String, String, bool) {
    let out = host.cli(&["show", name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v[0];
    (
        s["value"].as_str().unwrap().to_owned(),
        s["source"].as_str().unwrap().to_owned(),
        s["context"].as_str().unwrap().to_owned(),
        s["pending_restart"].as_bool().unwrap(),
    )
}

fn reload_prints_what_was_applied_and_what_waits_for_a_restart(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let host = Host::start(spec.clone());
    assert_eq!(status_json(&host)["last_reload"], serde_json::Value::Null);
    assert_eq!(
        show(&host, "plugins.testkit.message"),
        ("".into(), "default".into(), "reload".into(), false)
    );
    assert_eq!(
        show(&host, "plugins.testkit.fixed"),
        ("0".into(), "default".into(), "restart".into(), false)
    );
    // A plugin's duration reads as it is written, not as its canonical microseconds.
    assert_eq!(show(&host, "plugins.testkit.restart_delay").0, "100ms");
    host.rewrite_config(
        &spec
            .clone()
            .setting("testkit", "message = \"second\"")
            .setting("testkit", "fixed = 5")
            .host("shutdown_timeout = \"7s\""),
    );
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("configuration reloaded from {}", host.config().display())),
        "{text}"
    );
    assert!(
        text.contains("applied: plugins.testkit.message, host.shutdown_timeout"),
        "{text}"
    );
    assert!(
        text.contains("needs a restart (running values kept): plugins.testkit.fixed"),
        "{text}"
    );
    // The reload was over when the command returned: the workers have been told already.
    let s = status_json(&host);
    assert_eq!(s["last_reload"]["outcome"], "applied", "{s}");
    assert_eq!(
        s["pending_restart"],
        serde_json::json!(["plugins.testkit.fixed"]),
        "{s}"
    );
    assert_eq!(
        show(&host, "plugins.testkit.message"),
        ("second".into(), "file".into(), "reload".into(), false)
    );
    assert_eq!(
        show(&host, "plugins.testkit.fixed"),
        ("0".into(), "default".into(), "restart".into(), true)
    );
    assert_eq!(
        show(&host, "host.shutdown_timeout"),
        ("7s".into(), "file".into(), "reload".into(), false)
    );
    // Status lists the plugins with version and file.
    let plugins = s["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1, "{s}");
    assert_eq!(plugins[0]["name"], "testkit");
    assert!(!plugins[0]["version"].as_str().unwrap().is_empty(), "{s}");
    assert!(plugins[0]["file"].as_str().unwrap().ends_with("libtestkit.so"), "{s}");
    let table = stdout(&host.cli(&["status"]));
    assert!(table.contains("plugin testkit "), "{table}");
    assert!(table.contains("pending restart: plugins.testkit.fixed"), "{table}");
    // `show` with a prefix lists that part; an unknown name is an error naming it.
    let out = host.cli(&["show", "host"]);
    let text = stdout(&out);
    assert!(text.starts_with("NAME"), "{text}");
    assert_eq!(text.lines().count(), 14, "{text}");
    let out = host.cli(&["show", "plugins.testkit.nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no setting named \"plugins.testkit.nope\""),
        "{}",
        stderr(&out)
    );
}

fn a_refused_reload_prints_every_error_exits_non_zero_and_changes_nothing(mode: Mode) {
    let base = Spec::new(mode).testkit("a");
    let spec = base.clone().setting("testkit", "message = \"first\"");
    let host = Host::start(spec.clone());
    // Errors the command line cannot see (it does not load plugins): only the host can refuse.
    host.rewrite_config(
        &spec
            .clone()
            .setting("testkit", "restart_delay = \"soon\"")
            .setting("testkit", "colour = 5"),
    );
    let out = host.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    let file = host.config().display().to_string();
    assert!(
        err.contains(&format!("configuration not reloaded: 2 error(s) in {file}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}: plugins.testkit.restart_delay: ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}: plugins.testkit.colour: unknown key")),
        "{err}"
    );
    let s = status_json(&host);
    assert_eq!(s["last_reload"]["outcome"], "refused", "{s}");
    let errors = s["last_reload"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{s}");
    assert!(
        errors
            .iter()
            .any(|e| e["key"] == "plugins.testkit.colour" && e["reason"] == "unknown key"),
        "{s}"
    );
    assert_eq!(show(&host, "plugins.testkit.message").0, "first");
    assert_eq!(s["host"]["state"], "running");
    // A file that is not even TOML: the host refuses it the same way. (Asked over the socket: the
    // command line reads the file itself first.)
    std::fs::write(host.config(), "[host\nthis is not toml").unwrap();
    let r = Client::connect(&host.socket()).unwrap().reload_verdict(None).unwrap();
    assert_eq!(r.outcome, "refused", "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].key, None, "{r:?}");
    assert!(r.errors[0].reason.contains("TOML parse error"), "{r:?}");
    assert_eq!(
        Client::connect(&host.socket())
            .unwrap()
            .show(Some("plugins.testkit.message"))
            .unwrap()[0]
            .value,
        "first"
    );
    // A SIGHUP reload is recorded too.
    host.rewrite_config(&base.setting("testkit", "message = \"third\""));
    host.signal(libc::SIGHUP);
    host.wait_for("the SIGHUP reload applied", T, |_| {
        status_json(&host)["last_reload"]["outcome"] == "applied"
    });
    assert_eq!(show(&host, "plugins.testkit.message").0, "third");
}

fn reload_naming_another_file_is_refused_naming_the_hosts_file(mode: Mode) {
    let host = Host::start(hello(mode));
    let other = host.dir.path().join("other.toml");
    std::fs::copy(host.config(), &other).unwrap();
    let out = cli(&other, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is not this host's configuration file"), "{err}");
    assert!(
        err.contains(&format!("the host reads {}", host.config().display())),
        "{err}"
    );
    assert!(!host.log_text().contains("reload requested"), "{}", host.log_text());
    assert_eq!(status_json(&host)["last_reload"], serde_json::Value::Null);
}

/// A long start-up under systemd: while the startup hooks run, the host keeps extending the start
/// timeout, and stops doing so once it is ready; a shutdown asks for `shutdown_timeout` and a
/// margin, so `TimeoutStopSec` does not cut the host's own SIGKILL escalation short.
fn a_long_start_up_extends_the_start_timeout_and_a_stop_the_stop_timeout(mode: Mode) {
    let notify = Notify::new();
    let spec = Spec::new(mode)
        .testkit("a")
        .setting("testkit", "startup_hook = \"hold\"")
        .host("shutdown_timeout = \"7s\"");
    let mut host = Host::start_in(notify.spec(spec), "startup");
    let extended = notify.wait("EXTEND_TIMEOUT_USEC=15000000", T);
    let got = notify.drain();
    assert!(
        !got[..extended].iter().any(|m| m.contains("READY=1")),
        "extended after READY=1: {got:?}"
    );
    host.trigger("startup", "consistent");
    host.wait_for("consistent", T, |s| s.host.state == "consistent");
    host.trigger("startup", "run");
    let ready = notify.wait("READY=1", T);
    host.wait_for("running", T, |s| s.host.state == "running");
    host.signal(libc::SIGINT);
    host.wait_exit(T);
    let got = notify.drain();
    let stopping = index_of(&got, "STOPPING=1");
    assert!(got[stopping].contains("EXTEND_TIMEOUT_USEC=12000000"), "{got:?}");
    assert!(
        !got[ready..stopping].iter().any(|m| m.contains("EXTEND_TIMEOUT_USEC")),
        "the start timeout was extended after READY=1: {got:?}"
    );
}

both_modes!(
    reload_prints_what_was_applied_and_what_waits_for_a_restart,
    a_refused_reload_prints_every_error_exits_non_zero_and_changes_nothing,
    reload_naming_another_file_is_refused_naming_the_hosts_file,
    idle_connections_do_not_lock_out_status_and_are_closed_after_the_timeout,
    a_stop_request_the_host_does_not_understand_changes_nothing,
    after_stopping_the_service_manager_never_hears_running,
    during_a_crash_reset_status_and_the_service_manager_both_say_recovering,
    a_long_start_up_extends_the_start_timeout_and_a_stop_the_stop_timeout,
);
