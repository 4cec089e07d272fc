//! The host lifecycle: start phases and start times, restart policies, crash recovery, shutdown
//! modes, reload and systemd notification. Every test runs in fork and in exec mode.

use std::time::{Duration, Instant};

use steward_tests::*;

const T: Duration = Duration::from_secs(15);

fn states(s: &Status) -> Vec<(String, String, Option<String>)> {
    s.workers
        .iter()
        .map(|w| (w.name.clone(), w.state.clone(), w.waiting_for.clone()))
        .collect()
}

fn workers_start_only_once_the_host_reaches_their_start_time(mode: Mode) {
    let spec = Spec::new(mode)
        .testkit("early:start=host_start,middle:start=consistent,late:start=running")
        .setting("testkit", "startup_hook = \"hold\"");
    let host = Host::start_in(spec, "startup");
    let s = host.wait_for("early running during startup", T, |s| {
        find(s, "early").state == "running"
    });
    assert_eq!(s.host.state, "startup");
    assert_eq!(find(&s, "middle").state, "not_started", "{:?}", states(&s));
    assert_eq!(find(&s, "middle").waiting_for.as_deref(), Some("consistent"));
    assert_eq!(find(&s, "late").waiting_for.as_deref(), Some("running"));
    host.assert_stays("middle and late wait", Duration::from_millis(150), |s| {
        find(s, "middle").state == "not_started" && find(s, "late").state == "not_started"
    });

    host.trigger("startup", "consistent");
    let s = host.wait_for("consistent", T, |s| {
        s.host.state == "consistent" && find(s, "middle").state == "running"
    });
    assert_eq!(find(&s, "late").state, "not_started");
    assert_eq!(find(&s, "late").waiting_for.as_deref(), Some("running"));

    host.trigger("startup", "run");
    let s = host.wait_for("running", T, |s| {
        s.host.state == "running" && find(s, "late").state == "running"
    });
    assert!(
        s.workers
            .iter()
            .all(|w| w.state == "running" && w.waiting_for.is_none()),
        "{:?}",
        states(&s)
    );
    let log = host.log_text();
    assert!(
        log.contains("host state: startup")
            && log.contains("host state: consistent")
            && log.contains("host state: running"),
        "{log}"
    );
    assert!(log.contains("declared the host consistent"), "{log}");
}

/// CPU time (user + system) of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = s.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

fn after_a_reset_workers_wait_for_their_start_time_without_spinning(mode: Mode) {
    // Regression: the restart deadline of a worker still waiting for its start time made the
    // supervisor poll with a zero timeout, burning a core while the host was in startup.
    let spec = Spec::new(mode)
        .testkit("early:start=host_start,middle:start=consistent")
        .setting("testkit", "startup_hook = \"hold\"")
        .setting("testkit", "restart_delay = \"10ms\"");
    let host = Host::start_in(spec, "startup");
    host.trigger("startup", "consistent");
    host.wait_for("middle running", T, |s| find(s, "middle").state == "running");
    std::fs::write(host.dir.path().join("triggers").join("startup"), "hold").unwrap();
    host.trigger("middle", "segv");
    let s = host.wait_for("back in startup after the reset", T, |s| {
        s.host.generation == 2 && s.host.state == "startup" && find(s, "early").state == "running"
    });
    assert_eq!(
        find(&s, "middle").waiting_for.as_deref(),
        Some("consistent"),
        "{:?}",
        find(&s, "middle")
    );
    let before = cpu_ticks(host.pid);
    // Not a wait for an event: the assertion is about a span of time, so the span is spent.
    std::thread::sleep(Duration::from_millis(600));
    let used = cpu_ticks(host.pid) - before;
    assert!(
        used <= 6,
        "the supervisor used {used} ticks of CPU in 600 ms while idle in startup"
    );
    host.trigger("startup", "consistent");
    host.wait_for("middle running again", T, |s| {
        find(s, "middle").state == "running" && find(s, "middle").restarts == 1
    });
}

fn a_failing_startup_hook_stops_the_host_naming_it(mode: Mode) {
    let dir = Dir::new(
        &Spec::new(mode)
            .testkit("w")
            .setting("testkit", "startup_hook = \"fail\""),
    );
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("startup hook doomed (plugin testkit) failed") && out.contains("told to fail its startup hook"),
        "{out}"
    );
}

fn backoff_grows_within_bounds_then_the_crash_loop_limit_fails_the_worker(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("b:exit_at_start=1:backoff=40ms/2/160ms/10s:limit=5/30s")
            .host("log_level = \"warn\""),
    );
    let s = host.wait_for("b failed by its crash-loop limit", T, |s| {
        find(s, "b").state == "failed"
    });
    let b = find(&s, "b");
    assert_eq!(b.restarts, 5, "{b:?}");
    let last = b.last_exit.clone().unwrap();
    assert!(last.reason.contains("restarted 5 times in 30s"), "{last:?}");
    // Exits newest first: the gaps between them are the delays 40, 80, 160, 160, 160 ms (each
    // plus a launch); the last five exits show the last four gaps.
    let at: Vec<i64> = b.exits.iter().rev().map(|e| ts_ms(&e.at)).collect();
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), 4, "{b:?}");
    for (gap, want) in gaps.iter().zip([80, 160, 160, 160]) {
        assert!(
            *gap >= want && *gap < want + 250,
            "gap {gap} ms, expected about {want} ms: {gaps:?}"
        );
    }
    host.assert_stays("b stays failed", Duration::from_millis(400), |s| {
        find(s, "b").state == "failed" && find(s, "b").restarts == 5
    });
}

fn backoff_resets_after_a_long_enough_run(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("r:backoff=100ms/4/5s/400ms"));
    let delay_after_exit = |host: &Host, n: u32| -> i64 {
        host.trigger("r", "exit 1");
        let s = host.wait_for("r waits to restart", T, |s| {
            find(s, "r").state == "waiting_restart" && find(s, "r").exits.len() == n as usize
        });
        let r = find(&s, "r");
        ts_ms(r.next_restart_at.as_deref().unwrap()) - ts_ms(&r.exits[0].at)
    };
    let running = |host: &Host, n: u32| {
        host.wait_for("r running again", T, |s| {
            find(s, "r").state == "running" && find(s, "r").restarts == n
        });
    };
    let d1 = delay_after_exit(&host, 1);
    running(&host, 1);
    let d2 = delay_after_exit(&host, 2);
    running(&host, 2);
    assert!((95..=160).contains(&d1), "first delay {d1} ms");
    assert!(
        (395..=460).contains(&d2),
        "a quick second exit backs off to 400 ms, got {d2}"
    );
    // Once the worker has stayed up past reset_after (400 ms), the delay starts over.
    let started = ts_ms(host.worker("r").started_at.as_deref().unwrap());
    host.wait_for("r up for 500 ms", T, |_| now_ms() - started >= 500);
    let d3 = delay_after_exit(&host, 3);
    assert!(
        (95..=160).contains(&d3),
        "after a long run the delay resets to 100 ms, got {d3}"
    );
}

/// Status during recovery answers, says the host is recovering, or (for a connection the crash
/// reset itself ended, as every child gets SIGQUIT) is cut; it never hangs or fails otherwise.
fn status_or_recovering(host: &Host) -> Option<Status> {
    match host.try_status() {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = e.to_string();
            let expected = [
                "recovering from a crash",
                "too many connections",
                "closed the connection",
                "reset by peer",
                "Broken pipe",
            ];
            assert!(
                expected.iter().any(|x| msg.contains(x)),
                "status failed during recovery: {msg}"
            );
            None
        }
    }
}

fn a_segfault_in_one_of_fifty_workers_resets_all_of_them(mode: Mode) {
    let names: Vec<String> = (0..50)
        .map(|i| format!("w{i}"))
        .chain(["lone:never".to_owned()])
        .collect();
    let host = Host::start(
        Spec::new(mode)
            .testkit(&names.join(","))
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    let before = host.wait_for("all running", T, |s| s.workers.iter().all(|w| w.state == "running"));
    host.trigger("w0", "bump");
    host.wait_log("bumped to 1", T);
    host.trigger("w7", "segv");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        if let Some(s) = status_or_recovering(&host) {
            if s.host.generation == 2 && (0..50).all(|i| find(&s, &format!("w{i}")).state == "running") {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the host did not recover:\n{}",
            host.log_text()
        );
    };
    for i in 0..50 {
        let n = format!("w{i}");
        assert_ne!(find(&after, &n).pid, find(&before, &n).pid, "{n} has a new pid");
    }
    assert_eq!(
        find(&after, "lone").state,
        "stopped",
        "a never-restart worker stays down"
    );
    wait_gone(&worker_pids(&before), T);
    // The region was created afresh: the counter w0 bumped before the crash starts again at 0.
    host.trigger("w0", "bump");
    host.wait_for("w0 bumped again", T, |_| {
        host.log_text().matches("bumped to 1").count() == 2
    });
    assert!(
        !host.log_text().contains("bumped to 2"),
        "the region survived the reset"
    );
    let log = host.log_text();
    assert!(
        log.contains("worker w7") && log.contains("SIGSEGV") && log.contains("generation 2"),
        "{log}"
    );
}

fn restart_after_crash_off_stops_the_host_with_an_error(mode: Mode) {
    let mut host = Host::start(Spec::new(mode).testkit("a,b").host("restart_after_crash = false"));
    let pids = worker_pids(&host.status());
    host.trigger("a", "segv");
    let code = host.wait_exit(T).code();
    assert_eq!(code, Some(1), "{}", host.log_text());
    host.assert_nothing_left(&pids);
    assert!(
        host.log_text().contains("restart_after_crash is off"),
        "{}",
        host.log_text()
    );
}

fn immediate_shutdown_does_not_wait_for_anyone(mode: Mode) {
    let mut host = Host::start(
        Spec::new(mode)
            .testkit("stubborn:ignore_term,b")
            .host("shutdown_timeout = \"30s\""),
    );
    host.wait_log("ignoring SIGTERM", T);
    let pids = worker_pids(&host.status());
    let _held = Client::connect(&host.socket()).unwrap();
    let t0 = Instant::now();
    let out = host.cli(&["stop", "--mode", "immediate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(host.wait_exit(T).code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "immediate shutdown took {:?}",
        t0.elapsed()
    );
    host.assert_nothing_left(&pids);
}

fn a_valid_reload_reaches_the_workers(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let host = Host::start(spec.clone());
    host.rewrite_config(&spec.clone().setting("testkit", "message = \"second\""));
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = host.wait_log("reloaded: message=second", T);
    assert!(
        log.lines()
            .any(|l| l.contains("worker a[") && l.contains("reloaded: message=second fixed=0")),
        "{log}"
    );
    assert!(
        log.contains("configuration reloaded: applied plugins.testkit.message"),
        "{log}"
    );
    // SIGHUP works the same way, and a restart-only change is reported, not applied.
    host.rewrite_config(
        &spec
            .clone()
            .setting("testkit", "message = \"third\"")
            .setting("testkit", "fixed = 7"),
    );
    host.signal(libc::SIGHUP);
    let log = host.wait_log("reloaded: message=third", T);
    assert!(
        log.contains("plugins.testkit.fixed changed but takes effect only after a restart"),
        "{log}"
    );
    assert!(log.contains("reloaded: message=third fixed=0"), "{log}");
    assert_eq!(host.status().host.generation, 1);
}

fn an_invalid_reload_changes_nothing_and_logs_every_error(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let host = Host::start(spec.clone());
    host.rewrite_config(
        &spec
            .clone()
            .setting("testkit", "message = \"never\"")
            .setting("testkit", "restart_delay = \"soon\"")
            .setting("testkit", "fixed = \"x\""),
    );
    host.signal(libc::SIGHUP);
    let log = host.wait_log("configuration not reloaded", T);
    assert!(
        log.contains("plugins.testkit.restart_delay") && log.contains("plugins.testkit.fixed"),
        "{log}"
    );
    assert!(log.contains("keeping the running configuration"), "{log}");
    // A later valid reload shows the running values were kept: message was never applied.
    host.rewrite_config(&spec.clone().setting("testkit", "fixed = 0"));
    host.signal(libc::SIGHUP);
    host.wait_log("configuration reloaded", T);
    assert!(!host.log_text().contains("message=never"), "{}", host.log_text());
    assert_eq!(host.status().host.state, "running");
}

fn the_service_manager_hears_ready_reloading_stopping_and_status(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut spec = Spec::new(mode).plugin("hello");
    spec.env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    let mut host = Host::start(spec);
    let mut got: Vec<String> = Vec::new();
    let drain = |got: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    host.cli(&["reload"]);
    host.wait_log("configuration reloaded", T);
    let out = host.cli(&["stop"]);
    assert!(out.status.success());
    host.wait_exit(T);
    drain(&mut got);
    let first = |needle: &str, from: usize| got.iter().skip(from).position(|m| m.contains(needle)).map(|i| i + from);
    let ready = first("READY=1", 0).unwrap_or_else(|| panic!("no READY=1 in {got:?}"));
    let reloading = first("RELOADING=1", ready).unwrap_or_else(|| panic!("no RELOADING=1 after READY in {got:?}"));
    assert!(got[reloading].contains("MONOTONIC_USEC="), "{got:?}");
    let ready_again =
        first("READY=1", reloading + 1).unwrap_or_else(|| panic!("no READY=1 after RELOADING in {got:?}"));
    first("STOPPING=1", ready_again).unwrap_or_else(|| panic!("no STOPPING=1 at the end of {got:?}"));
    assert!(
        got.iter().any(|m| m.contains("STATUS=running: 3 of 3 workers running")),
        "{got:?}"
    );
}

fn five_hundred_workers_restart_at_once_while_status_answers(mode: Mode) {
    let names: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    let host = Host::start(Spec::new(mode).testkit(&names.join(",")).host("log_level = \"warn\""));
    let before = host.wait_for("500 running", Duration::from_secs(60), |s| {
        s.workers.iter().all(|w| w.state == "running")
    });
    let victim = find(&before, "m250").pid.unwrap();
    // SAFETY: signalling a worker of our own host.
    unsafe { libc::kill(victim, libc::SIGSEGV) };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answers = 0;
    let after = loop {
        if let Some(s) = status_or_recovering(&host) {
            answers += 1;
            if s.host.generation == 2 && s.workers.iter().all(|w| w.state == "running") {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "500 workers did not all restart:\n{}",
            host.log_text()
        );
    };
    assert!(answers > 0);
    let old: std::collections::HashSet<i32> = worker_pids(&before).into_iter().collect();
    assert!(
        worker_pids(&after).iter().all(|p| !old.contains(p)),
        "every worker has a new pid"
    );
    assert_eq!(after.workers.len(), 500);
}

both_modes!(
    workers_start_only_once_the_host_reaches_their_start_time,
    after_a_reset_workers_wait_for_their_start_time_without_spinning,
    a_failing_startup_hook_stops_the_host_naming_it,
    backoff_grows_within_bounds_then_the_crash_loop_limit_fails_the_worker,
    backoff_resets_after_a_long_enough_run,
    a_segfault_in_one_of_fifty_workers_resets_all_of_them,
    restart_after_crash_off_stops_the_host_with_an_error,
    immediate_shutdown_does_not_wait_for_anyone,
    a_valid_reload_reaches_the_workers,
    an_invalid_reload_changes_nothing_and_logs_every_error,
    the_service_manager_hears_ready_reloading_stopping_and_status,
    five_hundred_workers_restart_at_once_while_status_answers,
);
