//! Isolated connection handlers (issue 15: isolated handlers), end to end: a client child of an
//! isolated handler maps the segment read-only; when it crashes (SIGSEGV, abort) only its own
//! connection ends, while the other sessions, isolated and attached, keep their pids and answer
//! and the segment generation stays; its wild write into the segment faults and never lands;
//! locks, latch sets and launches are refused to it with clear errors; `steward check` marks the
//! handler isolated, and `steward status` lists both listeners, marks the isolated one and
//! counts each one's open sessions; it keeps its own latch, and ends with a fast shutdown and
//! with the host. An attached handler's crash still resets the host (`connections.rs`). Every
//! test runs in fork and in exec mode.

use std::path::PathBuf;
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);

/// testkit's echo handler twice: isolated on `iso.sock`, attached on `echo.sock`.
fn spec(mode: Mode) -> Spec {
    Spec::new(mode)
        .testkit("")
        .setting("testkit", "locks = \"on\"")
        .listen("handler = \"testkit.iso_echo\"\nunix = \"iso.sock\"")
        .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\"")
}

fn iso(h: &Host) -> PathBuf {
    h.dir.path().join("iso.sock")
}

fn attached(h: &Host) -> PathBuf {
    h.dir.path().join("echo.sock")
}

/// A session and the pid of the client child serving it.
fn open(path: &std::path::Path) -> (Session, i32) {
    let mut s = Session::open(path);
    let pid = s.ask("pid").parse().expect("a pid");
    (s, pid)
}

/// Sends `action` on a new isolated session and waits until its child crashed alone: the
/// session ends, the log says only its connection ended, and the child is gone.
fn crash_alone(h: &Host, action: &str) -> String {
    let (mut s, pid) = open(&iso(h));
    std::io::Write::write_all(&mut s.w, format!("{action}\n").as_bytes()).unwrap();
    assert_eq!(s.line(), "", "{action}: the crashed session ends");
    let needle = format!("client child (pid {pid}) of an isolated handler crashed");
    let log = h.wait_log_until(&needle, T, |l| {
        l.lines()
            .any(|l| l.contains(&needle) && l.contains("only its connection ends"))
    });
    wait_gone(&[pid], T);
    log.lines().find(|l| l.contains(&needle)).unwrap().to_owned()
}

fn an_isolated_handler_that_crashes_ends_only_its_own_connection(mode: Mode) {
    let h = Host::start(spec(mode));
    let generation = h.status().host.generation;
    let (mut other, other_pid) = open(&iso(&h));
    let (mut plain, plain_pid) = open(&attached(&h));
    // Read-only before any plugin code ran: the pid answer came from plugin code.
    assert_eq!(segment_perms(other_pid), ["r--s"]);
    assert_eq!(segment_perms(plain_pid), ["rw-s"]);
    for (action, signal) in [("segv", "signal 11 (SIGSEGV)"), ("abort", "signal 6 (SIGABRT)")] {
        let line = crash_alone(&h, action);
        assert!(line.contains(signal), "{line}");
        let s = h.status();
        assert_eq!(s.host.generation, generation, "no reset:\n{}", h.log_text());
        assert_eq!(s.host.state, "running");
        // The other sessions kept their processes and still answer.
        assert_eq!(other.ask("pid"), other_pid.to_string(), "{action}");
        assert_eq!(other.ask("still here"), "still here");
        assert_eq!(plain.ask("pid"), plain_pid.to_string(), "{action}");
    }
    let log = h.log_text();
    assert!(!log.contains("resetting"), "{log}");
    // A new session of the isolated handler is served as before.
    assert_eq!(Session::open(&iso(&h)).ask("hello"), "hello");
}

fn its_wild_write_into_the_segment_faults_and_never_lands(mode: Mode) {
    let h = Host::start(spec(mode));
    let generation = h.status().host.generation;
    let (mut plain, _) = open(&attached(&h));
    assert_eq!(plain.ask("bump"), "bumped to 1");
    // `bump` is an atomic add on a word of the `testkit` region: a store into the segment,
    // which the isolated child's mapping refuses.
    let line = crash_alone(&h, "bump");
    assert!(line.contains("SIGSEGV"), "{line}");
    // Read back: 1, not 2 (the write did not land) and not 0 (no reset zeroed the region).
    let (mut reader, _) = open(&iso(&h));
    assert_eq!(reader.ask("peek"), "counter is 1");
    assert_eq!(plain.ask("bump"), "bumped to 2");
    assert_eq!(h.status().host.generation, generation);
}

fn what_writes_shared_memory_is_refused_to_an_isolated_handler(mode: Mode) {
    let h = Host::start(spec(mode));
    let (mut s, pid) = open(&iso(&h));
    let refused = s.ask("lock");
    assert!(
        refused.starts_with("lock refused:") && refused.contains("isolated worker or connection handler"),
        "{refused}"
    );
    assert_eq!(s.ask("set_latch"), "set: false");
    let launch = s.ask("launch helper");
    assert!(
        launch.starts_with("error") && launch.contains("cannot launch workers"),
        "{launch}"
    );
    // Each refusal was an answer, not a crash: the same child still serves the session.
    assert_eq!(s.ask("pid"), pid.to_string());
    let (mut plain, _) = open(&attached(&h));
    assert_eq!(plain.ask("lock"), "took lock");
    assert_eq!(plain.ask("set_latch"), "set: true");
    // `steward check` says which handler is isolated.
    let out = h.cli(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("handler testkit.iso_echo (isolated), max_connections"),
        "{text}"
    );
    assert!(text.contains("handler testkit.echo, max_connections"), "{text}");
}

/// An isolated session keeps its own latch (an attached session's set wakes its wait), and
/// ends with a fast shutdown (`should_stop`) and with the host.
fn its_latch_wakes_it_and_it_ends_with_the_host(mode: Mode) {
    let mut h = Host::start(spec(mode));
    let (mut s, pid) = open(&iso(&h));
    let (mut plain, _) = open(&attached(&h));
    let raw = s.ask("latch");
    assert_ne!(raw, "0", "an isolated session has a latch");
    std::io::Write::write_all(&mut s.w, b"wait_latch\n").unwrap();
    assert_eq!(plain.ask(&format!("set_raw {raw}")), "set: true");
    assert_eq!(s.line(), "Latch");
    // A fast shutdown ends the session through its stop flag, before any SIGKILL.
    h.signal(libc::SIGINT);
    let status = h.wait_exit(T);
    assert_eq!(status.code(), Some(0), "{}", h.log_text());
    assert_eq!(s.line(), "", "the isolated session ends with the host");
    wait_gone(&[pid], Duration::from_secs(2));
    assert!(!h.log_text().contains("SIGKILL"), "{}", h.log_text());
    // Host SIGKILL: no isolated client child survives it by more than a second.
    let mut h = Host::start(spec(mode));
    // The sessions stay open: a closed one would end its child by itself.
    let sessions: Vec<(Session, i32)> = (0..2).map(|_| open(&iso(&h))).collect();
    let pids: Vec<i32> = sessions.iter().map(|(_, pid)| *pid).collect();
    h.signal(libc::SIGKILL);
    h.wait_exit(T);
    wait_gone(&pids, Duration::from_secs(1));
}

// issue 15: status listeners
/// The open count of every listener, by handler, in the file's order.
fn open_counts(s: &Status) -> Vec<(String, u32)> {
    s.listeners.iter().map(|l| (l.handler.clone(), l.open)).collect()
}

fn counts(iso: u32, attached: u32) -> Vec<(String, u32)> {
    vec![("testkit.iso_echo".into(), iso), ("testkit.echo".into(), attached)]
}

/// `steward status` lists both listeners, marks the isolated one (in JSON and in its table), and
/// counts each listener's sessions while they are open, and not once they closed.
fn status_lists_the_listeners_and_counts_their_sessions(mode: Mode) {
    let h = Host::start(spec(mode));
    let s = h.status();
    assert_eq!(s.listeners.len(), 2, "{:#?}", s.listeners);
    let (i, a) = (&s.listeners[0], &s.listeners[1]);
    assert_eq!((i.handler.as_str(), i.isolated), ("testkit.iso_echo", true));
    assert_eq!((a.handler.as_str(), a.isolated), ("testkit.echo", false));
    // The paths as resolved: absolute, in the host's directory.
    assert_eq!(i.address, format!("unix {}", iso(&h).display()));
    assert_eq!(a.address, format!("unix {}", attached(&h).display()));
    assert!(i.max_connections >= 1 && a.max_connections >= 1);
    assert_eq!(open_counts(&s), counts(0, 0));
    let (mut isolated, _) = open(&iso(&h));
    h.wait_for("the isolated session counted", T, |s| open_counts(s) == counts(1, 0));
    let (mut plain, _) = open(&attached(&h));
    h.wait_for("both sessions counted", T, |s| open_counts(s) == counts(1, 1));
    let out = h.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("LISTENER")).collect();
    assert_eq!(table.len(), 3, "{text}");
    assert!(
        table[1].contains(" testkit.iso_echo (isolated) ") && table[1].contains(" 1/"),
        "{text}"
    );
    assert!(
        table[2].contains(" testkit.echo ") && table[2].contains(" 1/"),
        "{text}"
    );
    assert!(!table[2].contains("isolated"), "{text}");
    let out = h.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let l = &json["listeners"];
    assert_eq!(
        (&l[0]["handler"], &l[0]["isolated"], &l[0]["open"]),
        (&"testkit.iso_echo".into(), &true.into(), &1.into()),
        "{json:#}"
    );
    assert_eq!(
        (&l[1]["isolated"], &l[1]["open"]),
        (&false.into(), &1.into()),
        "{json:#}"
    );
    // Both sessions still answer: the counts were of live sessions.
    assert_eq!(isolated.ask("hello"), "hello");
    assert_eq!(plain.ask("hello"), "hello");
    drop(isolated);
    h.wait_for("the isolated session no longer counted", T, |s| {
        open_counts(s) == counts(0, 1)
    });
    drop(plain);
    h.wait_for("no session counted", T, |s| open_counts(s) == counts(0, 0));
}

both_modes!(
    status_lists_the_listeners_and_counts_their_sessions,
    an_isolated_handler_that_crashes_ends_only_its_own_connection,
    its_wild_write_into_the_segment_faults_and_never_lands,
    what_writes_shared_memory_is_refused_to_an_isolated_handler,
    its_latch_wakes_it_and_it_ends_with_the_host,
);
