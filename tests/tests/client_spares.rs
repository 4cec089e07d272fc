//! Spares for plugins' clients (issue 15: client spares, decision 160): on a host with
//! listeners, an accepted client goes to a ready spare, which serves it exactly as a fresh client
//! child would (its handler, its peer as the host accepted it, no fd of the spare's left over);
//! the pool is refilled; and a spare killed between the hand-off and claiming the client's slot
//! loses only that client, without a reset; an isolated handler's client never comes from a
//! spare; and spares end with every kind of shutdown, with a crash reset (the pool then refilled
//! for the new segment) and within a second of the host's SIGKILL. Both launch modes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(30);

fn fds(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| Some(std::fs::read_link(e.ok()?.path()).ok()?.display().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The supervisor's children asleep on a futex with a socket open: the waiting spares (a spare
/// sleeps in `FUTEX_WAIT` on its hand-off word, and holds its channel). Anything else the host
/// runs here is a client child (asleep in `read`) or a short-lived control connection.
fn waiting_spares(host: &Host) -> Vec<i32> {
    children_of(host.pid)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/wchan")).is_ok_and(|w| w.contains("futex"))
                && fds(*p).iter().any(|t| t.starts_with("socket:"))
        })
        .collect()
}

fn echo_host(mode: Mode) -> Host {
    Host::start(
        Spec::new(mode)
            .testkit("")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    )
}

fn ask(s: &UnixStream, line: &str) -> String {
    let mut w = s;
    writeln!(w, "{line}").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    answer.trim_end().to_owned()
}

fn a_client_is_served_by_a_waiting_spare(mode: Mode) {
    let host = echo_host(mode);
    host.wait_for("two spares waiting", T, |s| {
        s.host.slots.spares_waiting == 2 && waiting_spares(&host).len() == 2
    });
    let spares = waiting_spares(&host);
    let s = UnixStream::connect(host.dir.path().join("echo.sock")).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let pid: i32 = ask(&s, "pid").parse().unwrap();
    assert!(
        spares.contains(&pid),
        "client child {pid} should be one of the spares {spares:?}"
    );
    // The peer is the one the host accepted: this process, by its credentials.
    let peer = ask(&s, "peer");
    assert!(peer.contains(&format!("pid: Some({})", std::process::id())), "{peer}");
    assert!(peer.contains("echo.sock"), "{peer}");
    assert_eq!(ask(&s, "hello"), "hello");
    // As a fresh client child: one socket (its client's), no parameter blob, no channel.
    let open = fds(pid);
    assert_eq!(open.iter().filter(|t| t.starts_with("socket:")).count(), 1, "{open:?}");
    assert!(!open.iter().any(|t| t.contains("params")), "{open:?}");
    let st = host.status();
    assert_eq!(st.host.slots.clients_in_use, 1);
    drop(s);
    host.wait_for("the session's slot freed", T, |s| s.host.slots.clients_in_use == 0);
    // Refilled once the loop is idle: two spares again, the one used not among them.
    host.wait_for("the pool refilled", T, |_| {
        let now = waiting_spares(&host);
        now.len() == 2 && !now.contains(&pid)
    });
    assert!(!host.log_text().contains("ERROR"), "{}", host.log_text());
}

fn a_spare_killed_before_taking_its_client_loses_only_that_client(mode: Mode) {
    let host = echo_host(mode);
    host.wait_for("two spares waiting", T, |_| waiting_spares(&host).len() == 2);
    let spares = waiting_spares(&host);
    let path = host.dir.path().join("echo.sock");
    // A stopped spare is handed the client (the send and the wake need nothing of it) but
    // cannot take it.
    for p in &spares {
        // SAFETY: stopping a child of the host this test started.
        unsafe { libc::kill(*p, libc::SIGSTOP) };
    }
    let mut lost = UnixStream::connect(&path).unwrap();
    lost.set_read_timeout(Some(T)).unwrap();
    host.wait_for("the client handed over", T, |s| s.host.slots.clients_in_use == 1);
    for p in &spares {
        // SAFETY: killing children of the host this test started.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    host.wait_log("before taking the client it was handed", T);
    // That client sees the end of its connection, never a hang.
    let _ = lost.write_all(b"hello\n");
    let mut b = [0u8; 16];
    assert!(
        matches!(lost.read(&mut b), Ok(0) | Err(_)),
        "the lost client got an answer"
    );
    let s = host.wait_for("the slot freed", T, |s| s.host.slots.clients_in_use == 0);
    assert_eq!(
        s.host.generation, 1,
        "a spare that had not taken its client reset the host"
    );
    assert_eq!(s.host.state, "running");
    // The next client is served.
    let next = UnixStream::connect(&path).unwrap();
    next.set_read_timeout(Some(T)).unwrap();
    assert_eq!(ask(&next, "again"), "again");
}

/// An isolated handler's client gets a fresh child (decision 163): a spare maps the segment
/// writable. The spares stay as they were, and the attached handler on the same host still takes
/// one.
fn an_isolated_handlers_client_never_comes_from_a_spare(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("")
            .listen("handler = \"testkit.iso_echo\"\nunix = \"iso.sock\"")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    );
    host.wait_for("two spares waiting", T, |_| waiting_spares(&host).len() == 2);
    let spares = waiting_spares(&host);
    let iso = UnixStream::connect(host.dir.path().join("iso.sock")).unwrap();
    iso.set_read_timeout(Some(T)).unwrap();
    let pid: i32 = ask(&iso, "pid").parse().unwrap();
    assert!(!spares.contains(&pid), "isolated client child {pid} came from a spare");
    let mut now = waiting_spares(&host);
    now.sort_unstable();
    let mut before = spares.clone();
    before.sort_unstable();
    assert_eq!(now, before, "the spares changed for an isolated client");
    assert_eq!(host.status().host.slots.spares_waiting, 2);
    let attached = UnixStream::connect(host.dir.path().join("echo.sock")).unwrap();
    attached.set_read_timeout(Some(T)).unwrap();
    let pid: i32 = ask(&attached, "pid").parse().unwrap();
    assert!(
        spares.contains(&pid),
        "the attached client child {pid} should be a spare"
    );
}

/// A client child's crash resets the host: the waiting spares end with everyone else, and the
/// pool is started afresh for the new segment, whose spares serve the next client.
fn a_crash_reset_ends_the_spares_and_starts_new_ones(mode: Mode) {
    let host = echo_host(mode);
    host.wait_for("two spares waiting", T, |_| waiting_spares(&host).len() == 2);
    let old = waiting_spares(&host);
    let path = host.dir.path().join("echo.sock");
    let crasher = UnixStream::connect(&path).unwrap();
    writeln!(&crasher, "segv").unwrap();
    host.wait_for("the reset done, the pool refilled", T, |s| {
        s.host.generation == 2 && s.host.state == "running" && s.host.slots.spares_waiting == 2
    });
    wait_gone(&old, T);
    host.wait_for("two new spares", T, |_| waiting_spares(&host).len() == 2);
    let new = waiting_spares(&host);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} {new:?}");
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let pid: i32 = ask(&s, "pid").parse().unwrap();
    assert!(
        new.contains(&pid),
        "client child {pid} should be one of the new spares {new:?}"
    );
}

/// Smart (SIGTERM), fast (SIGINT) and immediate (SIGQUIT) shutdown end the waiting spares and
/// the client child a spare became; after the host's SIGKILL none of them is left a second later.
fn spares_end_with_every_shutdown_and_with_the_host(mode: Mode) {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGKILL] {
        let mut host = echo_host(mode);
        host.wait_for("two spares waiting", T, |_| waiting_spares(&host).len() == 2);
        let s = UnixStream::connect(host.dir.path().join("echo.sock")).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let served: i32 = ask(&s, "pid").parse().unwrap();
        host.wait_for("the pool refilled", T, |_| {
            let now = waiting_spares(&host);
            now.len() == 2 && !now.contains(&served)
        });
        let mut all = waiting_spares(&host);
        all.push(served);
        host.signal(sig);
        if sig == libc::SIGTERM {
            // A smart shutdown refuses new connections, status included, and waits for the open
            // session: still served once the refusal is seen, it ends here.
            let deadline = std::time::Instant::now() + T;
            loop {
                match host.try_status() {
                    Err(e) if e.to_string().contains("shutting down") => break,
                    r => assert!(std::time::Instant::now() < deadline, "never refused: {r:?}"),
                }
            }
            assert_eq!(
                ask(&s, "pid").parse::<i32>().unwrap(),
                served,
                "the session still served"
            );
            drop(s);
            host.wait_exit(T);
            wait_gone(&all, T);
            continue;
        }
        // The others end the session themselves: the client keeps it open throughout.
        host.wait_exit(T);
        let grace = if sig == libc::SIGKILL {
            Duration::from_secs(1)
        } else {
            T
        };
        wait_gone(&all, grace);
        drop(s);
    }
}

both_modes!(
    a_client_is_served_by_a_waiting_spare,
    a_spare_killed_before_taking_its_client_loses_only_that_client,
    an_isolated_handlers_client_never_comes_from_a_spare,
    a_crash_reset_ends_the_spares_and_starts_new_ones,
    spares_end_with_every_shutdown_and_with_the_host
);
