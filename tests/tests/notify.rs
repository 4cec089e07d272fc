//! Launchers and their dynamic workers, end to end (issue 14: notifications): the launcher's
//! latch is set when a worker it launched starts, stops or fails to launch; a
//! `stop_with_launcher` worker ends with its launcher; a startup hook launches a worker whose
//! handle a worker uses; duplicate names and unknown `start_after` targets are refused;
//! `needs_ready` and `start_after` hold for dynamic workers; a crash reset restarts dynamic
//! workers per policy. The testkit entries are in `plugins/testkit/src/notify.rs`. Every test
//! runs in fork and exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);

fn launcher(mode: Mode, workers: &str) -> Spec {
    Spec::new(mode).testkit(workers).host("max_worker_processes = 8")
}

/// The line of `log` that holds `needle`.
fn line_of(log: &str, needle: &str) -> String {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
        .to_owned()
}

/// The number after `needle` in its line.
fn number_after(log: &str, needle: &str) -> i32 {
    let line = line_of(log, needle);
    line.split(needle)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {needle:?} in {line}"))
}

fn assert_nothing_wrong(host: &Host) {
    let log = host.log_text();
    assert!(!log.contains("wrong:"), "{log}");
}

fn the_launcher_wakes_with_latch_on_start_and_stop(mode: Mode) {
    let host = Host::start(launcher(mode, "nl:entry=testkit_notify_launcher:never"));
    // A launch that fails (the entry does not resolve) wakes it, and the handle says why.
    let log = host.wait_log("notify: missing stopped:", T);
    assert!(
        line_of(&log, "notify: missing stopped:").contains("testkit_no_such_entry"),
        "{log}"
    );
    // A start wakes it, with the pid of the worker's process.
    let log = host.wait_log("notify: child running pid ", T);
    let pid = number_after(&log, "notify: child running pid ");
    assert!(pid > 0, "{log}");
    // A name any worker has is refused at once, naming it: a dynamic one's and a static one's.
    host.wait_log("notify: duplicate refused: DuplicateName(\"notify-child\")", T);
    host.wait_log("notify: static duplicate refused: DuplicateName(\"nl\")", T);
    // A stop (its terminate) wakes it, and the handle says stopped; the name is free again.
    host.wait_log("notify: child stopped:", T);
    wait_gone(&[pid], T);
    host.wait_log("notify: name reused", T);
    // A `needs_ready` worker's entry wakes nobody; its `set_ready` does, and the handle the
    // launcher reads right then says running.
    host.wait_log("notify: ready launched", T);
    host.wait_for("notify-ready starting", T, |s| {
        s.workers
            .iter()
            .any(|w| w.name == "notify-ready" && w.state == "starting")
    });
    host.trigger("notify-ready", "ready");
    let log = host.wait_log("notify: ready running pid ", T);
    assert_eq!(
        host.worker("notify-ready").pid,
        Some(number_after(&log, "notify: ready running pid "))
    );
    assert!(!log.contains("notify: woke on latch, notify-ready"), "{log}");
    assert_nothing_wrong(&host);
}

fn dynamic_workers_honour_needs_ready_and_start_after(mode: Mode) {
    let host = Host::start(launcher(mode, "rl:entry=testkit_ready_launcher:never"));
    host.wait_log(
        "ready: unknown start_after refused: UnknownStartAfter(\"no-such-worker\")",
        T,
    );
    // A running worker that nobody started after until now (the launcher) becomes a target:
    // its dependent starts, though the launcher was not asked to report its entry.
    host.wait_log("ready: after the launcher running pid ", T);
    // Running, but not ready: `wait_for_startup` does not say running, status says starting,
    // and the worker that starts after it waits.
    host.wait_log("ready: not running before set_ready", T);
    let s = host.status();
    assert_eq!(find(&s, "ready-child").state, "starting", "{s:#?}");
    let after = find(&s, "after-child");
    assert_eq!(after.state, "not_started", "{s:#?}");
    assert_eq!(after.waiting_for.as_deref(), Some("worker ready-child ready"), "{s:#?}");
    host.trigger("ready-child", "ready");
    let log = host.wait_log("ready: after running pid ", T);
    let ready_pid = number_after(&log, "ready: running pid ");
    assert_eq!(host.worker("ready-child").pid, Some(ready_pid));
    host.wait_for("both running", T, |s| {
        find(s, "ready-child").state == "running" && find(s, "after-child").state == "running"
    });
    assert_nothing_wrong(&host);
}

fn stop_with_launcher_ends_with_its_launcher(mode: Mode) {
    let host = Host::start(launcher(mode, "root:entry=testkit_swl_root:never"));
    let log = host.wait_log("swl: launched child pid ", T);
    let child = number_after(&log, "swl: launched child pid ");
    let s = host.wait_for("the child and the keeper running", T, |s| {
        s.workers
            .iter()
            .any(|w| w.name == "swl-keep" && w.state == "running" && w.pid.is_some())
    });
    let keep = find(&s, "swl-keep").pid;
    let first = find(&s, "swl-launcher").pid.expect("launcher pid");
    // The launcher exits (code 1, so it restarts): its stop_with_launcher worker is terminated,
    // and the handle says why; the other worker runs on.
    host.trigger("swl-launcher", "exit 1");
    let log = host.wait_log("swl: previous child ", T);
    let line = line_of(&log, "swl: previous child ");
    assert!(line.contains(&format!("launcher exited (pid {first})")), "{line}");
    wait_gone(&[child], T);
    let log = host.wait_log_count("swl: launched child pid ", 2, T);
    let second = log
        .lines()
        .filter(|l| l.contains("swl: launched child pid "))
        .nth(1)
        .map(|l| number_after(l, "swl: launched child pid "))
        .unwrap();
    assert_eq!(host.worker("swl-keep").pid, keep);
    // The launcher is terminated through its handle: the same.
    host.trigger("root", "terminate");
    let log = host.wait_log("root: child after its launcher ended: ", T);
    let line = line_of(&log, "root: child after its launcher ended: ");
    assert!(line.contains("Stopped") && line.contains("launcher exited"), "{line}");
    wait_gone(&[second], T);
    let s = host.wait_for("the launcher and its child gone", T, |s| {
        !s.workers
            .iter()
            .any(|w| w.name == "swl-child" || w.name == "swl-launcher")
    });
    assert_eq!(find(&s, "swl-keep").pid, keep, "{s:#?}");
    assert_nothing_wrong(&host);
}

fn a_static_worker_refuses_stop_with_launcher(mode: Mode) {
    let dir = Dir::new(&Spec::new(mode).testkit("w:stop_with_launcher"));
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("testkit") && out.contains("\"w\"") && out.contains("stop_with_launcher is for dynamic workers"),
        "{out}"
    );
}

fn a_crash_reset_restarts_dynamic_workers_per_policy(mode: Mode) {
    let host = Host::start(launcher(mode, "rl:entry=testkit_reset_launcher"));
    host.wait_log("reset: launched", T);
    let s = host.status();
    let pid = |name: &str| {
        find(&s, name)
            .pid
            .unwrap_or_else(|| panic!("{name} not running: {s:#?}"))
    };
    let before: Vec<i32> = ["reset-after", "reset-backoff", "reset-never", "reset-swl"]
        .iter()
        .map(|n| pid(n))
        .collect();
    // The launcher crashes: every process goes, and the host resets.
    // SAFETY: signalling a worker of this test's host.
    unsafe { libc::kill(pid("rl"), libc::SIGKILL) };
    wait_gone(&before, T);
    // Its next run reads the old handles: the restarting ones answer with the same slot and
    // generation; `never` and `stop_with_launcher` ones are stopped, with the reason.
    for name in ["reset-after", "reset-backoff"] {
        host.wait_log(&format!("reset: {name} Ok(Running"), T);
    }
    let log = host.wait_log("reset: reset-swl ", T);
    let line = line_of(&log, "reset: reset-swl ");
    assert!(line.contains("Stopped") && line.contains("launcher exited"), "{line}");
    let log = host.wait_log("reset: reset-never ", T);
    let line = line_of(&log, "reset: reset-never ");
    assert!(line.contains("Ok(Stopped { reason: "), "{line}");
    let s = host.wait_for("the restarting ones running again", T, |s| {
        ["reset-after", "reset-backoff"]
            .iter()
            .all(|n| s.workers.iter().any(|w| w.name == *n && w.state == "running"))
    });
    assert!(
        !s.workers
            .iter()
            .any(|w| w.name == "reset-never" || w.name == "reset-swl"),
        "{s:#?}"
    );
    assert_nothing_wrong(&host);
}

fn a_startup_hook_launches_a_worker_another_worker_terminates(mode: Mode) {
    let spec = launcher(mode, "hr:entry=testkit_hook_reader:never")
        .setting("testkit", "startup_hook = \"launch\"")
        .setting("testkit", "dynamic = 1");
    let host = Host::start(spec);
    host.wait_log("hook launched hook-child", T);
    let log = host.wait_log("hook child: ", T);
    assert!(line_of(&log, "hook child: ").contains("Ok(Running"), "{log}");
    // Status names the startup hook as its launcher.
    let child = host.worker("hook-child");
    assert!(child.dynamic, "{child:?}");
    assert_eq!(child.launcher.as_deref(), Some("startup"), "{child:?}");
    host.trigger("hr", "terminate");
    let log = host.wait_log("hook child after terminate: ", T);
    assert!(
        line_of(&log, "hook child after terminate: ").contains("Ok(Stopped"),
        "{log}"
    );
    host.wait_for("hook-child gone", T, |s| {
        !s.workers.iter().any(|w| w.name == "hook-child")
    });
}

// review: notifications
/// Each worker's entry runs (and sets the launcher's latch) before the supervisor publishes that
/// it runs (the test-only delay holds the publish back; a busy launch batch does the same): the
/// launcher, reading its handles when the entry's latch wakes it, sees them not yet started, and
/// learns they run only from the latch the supervisor sets after its publish.
fn a_launcher_whose_workers_ran_their_entry_before_the_host_published_them_is_still_told(mode: Mode) {
    let mut spec = launcher(mode, "ml:entry=testkit_many_launcher:never");
    spec.env
        .push(("STEWARD_TEST_PUBLISH_RUNNING_DELAY_MS".into(), "300".into()));
    let host = Host::start(spec);
    host.wait_log("many: launched 3", T);
    let log = host.wait_log("many: all running", T);
    assert!(!log.contains("wrong:"), "{log}");
    for i in 0..3 {
        assert_eq!(host.worker(&format!("many-{i}")).state, "running");
    }
}

both_modes!(
    the_launcher_wakes_with_latch_on_start_and_stop,
    dynamic_workers_honour_needs_ready_and_start_after,
    stop_with_launcher_ends_with_its_launcher,
    a_static_worker_refuses_stop_with_launcher,
    a_crash_reset_restarts_dynamic_workers_per_policy,
    a_startup_hook_launches_a_worker_another_worker_terminates,
    // review: notifications
    a_launcher_whose_workers_ran_their_entry_before_the_host_published_them_is_still_told
);
