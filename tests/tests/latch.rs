//! Latches and activity lines, end to end: one worker's `set()` wakes another's `wait`, a plugin's
//! own SIGUSR1 handler neither breaks latches nor loses its signals, the latch fd is pollable, a
//! stale handle does nothing, and `set_activity` shows in `steward status`. Every test runs in
//! fork and in exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);

/// The log lines worker `name` wrote that contain `msg`.
fn lines_of(log: &str, name: &str, msg: &str) -> usize {
    let tag = format!(" worker {name}[");
    log.lines().filter(|l| l.contains(&tag) && l.contains(msg)).count()
}

/// Waits until worker `name` has logged `msg` at least `n` times; returns the log.
fn wait_worker_log(host: &Host, name: &str, msg: &str, n: usize) -> String {
    let what = format!("worker {name} logging {msg:?} {n} times");
    host.wait_log_until(&what, T, |log| lines_of(log, name, msg) >= n)
}

/// Waits for the waiter `pong`'s batch line `b`; fails as soon as the waiter reports a set that
/// did not wake its `wait`. Returns the log.
fn wait_batch(host: &Host, b: u32) -> String {
    host.wait_log_until(&format!("the waiter's batch {b}"), T, |log| {
        assert!(
            lines_of(log, "pong", "did not wake wait") == 0,
            "a set latch did not wake wait:\n{log}"
        );
        lines_of(log, "pong", &format!("latch batch {b} ")) >= 1
    })
}

/// `(median_us, max_us)` of batch `b` from the waiter's log line
/// `latch batch B n=N median_us=M max_us=X lost=L`; asserts that no set was lost so far (L is
/// 0): the waiter sleeps 5 s a round, so a set that did not wake it is counted, never hidden by
/// a short timeout.
fn batch(log: &str, b: u32) -> (u64, u64) {
    let head = format!("latch batch {b} ");
    let line = log
        .lines()
        .find(|l| l.contains(&head))
        .unwrap_or_else(|| panic!("no batch {b}:\n{log}"));
    let field = |k: &str| -> u64 {
        let at = line.find(k).unwrap_or_else(|| panic!("no {k} in {line}")) + k.len();
        line[at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(field("lost="), 0, "sets whose wake-up wait missed:\n{log}");
    (field("median_us="), field("max_us="))
}

/// The activity `rounds=R usr1=U` of the waiter, as `(R, U)`.
fn rounds_and_usr1(s: &Status) -> Option<(u64, u32)> {
    let a = find(s, "pong").activity?;
    let mut it = a.split_whitespace();
    let r = it.next()?.strip_prefix("rounds=")?.parse().ok()?;
    let u = it.next()?.strip_prefix("usr1=")?.parse().ok()?;
    Some((r, u))
}

fn another_workers_set_wakes_wait_within_1ms(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("pong:entry=testkit_latch_waiter:usr1,ping:entry=testkit_latch_setter")
            .setting("testkit", "latch_batch = 100"),
    );
    // 100 sets across processes, each from a sleeping waiter: the median is the figure, the
    // maximum only a generous bound (two cores shared with other builds).
    let log = wait_batch(&host, 1);
    let (median, max) = batch(&log, 1);
    eprintln!("{mode:?}: set to wake over 100 sets: median {median} us, max {max} us");
    assert!(median < 1000, "median set-to-wake {median} us:\n{log}");
    assert!(max < 50_000, "slowest set-to-wake {max} us:\n{log}");

    // The plugin's own SIGUSR1 handler gets every signal sent to it, one at a time, while the
    // ping-pong goes on.
    let pid = host.worker("pong").pid.expect("pong runs");
    for k in 1..=5u32 {
        // SAFETY: kill(2) with a pid of a worker of this test's host.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
        host.wait_for(&format!("the waiter counted {k} SIGUSR1"), T, |s| {
            rounds_and_usr1(s).is_some_and(|(_, u)| u == k)
        });
    }
    // Latches still work after the plugin's signals: more rounds, another batch within bounds.
    let (r0, _) = rounds_and_usr1(&host.status()).expect("activity");
    host.wait_for("rounds go on after the SIGUSR1s", T, |s| {
        rounds_and_usr1(s).is_some_and(|(r, _)| r >= r0 + 100)
    });
    let log = wait_batch(&host, 3);
    let (median, max) = batch(&log, 3);
    assert!(
        median < 1000 && max < 50_000,
        "after SIGUSR1: median {median} us, max {max} us"
    );
    assert_eq!(
        find(&host.status(), "pong").pid,
        Some(pid),
        "the waiter never restarted"
    );
    assert!(!log.contains("no answer from the waiter"), "a set was lost:\n{log}");
}

fn a_plugin_that_ignores_or_blocks_sigurg_still_wakes(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("pong:entry=testkit_latch_waiter:ignore_urg:block_urg,ping:entry=testkit_latch_setter")
            .setting("testkit", "latch_batch = 50"),
    );
    // `wait` put the handler back (once, with a warning) and unblocked SIGURG for its sleep.
    let log = wait_batch(&host, 1);
    let (median, max) = batch(&log, 1);
    assert!(
        median < 1000 && max < 50_000,
        "median {median} us, max {max} us:\n{log}"
    );
    assert_eq!(
        lines_of(&log, "pong", "SIGURG's handler was changed by plugin code"),
        1,
        "{log}"
    );
}

fn a_latch_fd_is_pollable(mode: Mode) {
    let mut host = Host::start(Spec::new(mode).testkit("poller:entry=testkit_latch_poll,a"));
    wait_worker_log(&host, "poller", "polling the latch fd", 1);
    for k in 1..=3 {
        host.trigger("a", "set_latch 3");
        wait_worker_log(&host, "a", "set latch 3: true", k);
        wait_worker_log(&host, "poller", &format!("poll woke on latch {k}"), 1);
    }
    // SIGTERM makes the fd readable too: the poller stops cleanly, no SIGKILL needed.
    host.signal(libc::SIGTERM);
    assert_eq!(host.wait_exit(T).code(), Some(0));
    let log = host.log_text();
    assert_eq!(lines_of(&log, "poller", "poll saw the stop request"), 1, "{log}");
    assert!(!log.contains("SIGKILL"), "{log}");
}

fn a_stale_latch_handle_does_nothing_after_its_owner_restarted(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a,b")
            .setting("testkit", "restart_delay = \"20ms\""),
    );
    host.trigger("a", "publish_latch 10");
    wait_worker_log(&host, "a", "published latch 10", 1);
    host.trigger("b", "set_latch 10");
    wait_worker_log(&host, "b", "set latch 10: true", 1);
    wait_worker_log(&host, "a", "woke on latch", 1);

    let old = host.worker("a").pid.expect("a runs");
    host.trigger("a", "exit 1");
    host.wait_for("a restarted", T, |s| {
        let a = find(s, "a");
        a.pid.is_some_and(|p| p != old) && a.state == "running"
    });
    // The new tenant takes its own latch (so a wake-up would show), then the old handle is set.
    host.trigger("a", "publish_latch 11");
    wait_worker_log(&host, "a", "published latch 11", 1);
    host.trigger("b", "set_latch 10");
    wait_worker_log(&host, "b", "set latch 10: false", 1);
    host.trigger("b", "set_latch 11");
    wait_worker_log(&host, "b", "set latch 11: true", 1);
    wait_worker_log(&host, "a", "woke on latch", 2);
    // Exactly one wake-up for the new tenant: the stale set touched nothing.
    host.assert_stays("no third wake-up", Duration::from_millis(100), |_| {
        lines_of(&host.log_text(), "a", "woke on latch") == 2
    });
    // A handle that names no slot at all is refused the same way.
    host.trigger("b", "set_latch 12");
    wait_worker_log(&host, "b", "set latch 12: false", 1);
}

fn a_startup_hook_wakes_on_its_latch(mode: Mode) {
    let host = Host::start_in(
        Spec::new(mode)
            .testkit("early:start=host_start")
            .setting("testkit", "startup_hook = \"latch\""),
        "startup",
    );
    host.wait_log("startup hook published latch 20", T);
    host.wait_for("early runs while the hook holds start-up", T, |s| {
        s.host.state == "startup" && find(s, "early").pid.is_some()
    });
    host.trigger("early", "set_latch 20");
    wait_worker_log(&host, "early", "set latch 20: true", 1);
    host.wait_log("startup hook woke on latch", T);
    host.wait_for("running", T, |s| s.host.state == "running");
    // The startup child has exited: its handle is stale now.
    host.trigger("early", "set_latch 20");
    wait_worker_log(&host, "early", "set latch 20: false", 1);
}

fn set_activity_shows_in_status(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a,b")
            .setting("testkit", "restart_delay = \"20ms\""),
    );
    host.wait_for("both running", T, |s| s.workers.iter().all(|w| w.pid.is_some()));
    assert_eq!(host.worker("a").activity, None);
    host.trigger("a", "activity copying batch 7\tof 9\nsecond line");
    let s = host.wait_for("a's activity", T, |s| find(s, "a").activity.is_some());
    assert_eq!(find(&s, "a").activity.as_deref(), Some("copying batch 7\u{fffd}of 9"));
    assert_eq!(find(&s, "b").activity, None);

    // The table's ACTIVITY column, on a's row.
    let out = host.cli(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("LAST EXIT  ACTIVITY"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_else(|| panic!("no row for a:\n{table}"));
    assert!(row.ends_with("copying batch 7\u{fffd}of 9"), "{row}");

    // Cut at 256 bytes on a character boundary.
    let long = format!("x{}", "é".repeat(200));
    host.trigger("b", &format!("activity {long}"));
    let s = host.wait_for("b's activity", T, |s| find(s, "b").activity.is_some());
    let got = find(&s, "b").activity.unwrap();
    assert_eq!(got.len(), 255, "{got}");
    assert!(long.starts_with(&got));

    // Gone with the process: a restarted worker starts without a line.
    let old = host.worker("a").pid;
    host.trigger("a", "exit 1");
    let s = host.wait_for("a restarted", T, |s| {
        let a = find(s, "a");
        a.pid.is_some() && a.pid != old
    });
    assert_eq!(find(&s, "a").activity, None);
}

both_modes!(
    another_workers_set_wakes_wait_within_1ms,
    a_plugin_that_ignores_or_blocks_sigurg_still_wakes,
    a_latch_fd_is_pollable,
    a_stale_latch_handle_does_nothing_after_its_owner_restarted,
    a_startup_hook_wakes_on_its_latch,
    set_activity_shows_in_status,
);
