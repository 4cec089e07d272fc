//! Readiness and `start_after`, end to end: a worker registered `.needs_ready()` shows
//! `starting` until it calls `set_ready`, and a worker registered `.start_after("a")` starts only
//! once `a` is ready, its status saying why it waits; a `start_after` that names no worker, or
//! makes a cycle, stops start-up naming the plugin and the workers; a target whose process ends
//! takes its readiness with it: a running dependent keeps running, one not started waits again
//! (after a crash reset, for the target's new process). Every test runs in fork and exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);
/// How long a dependent is watched not starting while its target is not ready.
const HELD: Duration = Duration::from_millis(300);

/// `a` needs readiness; `b` starts after it. Both restart after 100 ms (testkit's default).
fn pair(mode: Mode) -> Spec {
    Spec::new(mode).testkit("a:needs_ready:start=host_start,b:after=a:start=host_start")
}

/// Waits until `a` runs but is not ready, and `b` waits for it (`b_state` is `not_started` at
/// the first start, `waiting_restart` after an exit or a reset).
fn wait_a_starting(host: &Host, b_state: &str) -> Status {
    let s = host.wait_for("a starting, b waiting for it", T, |s| {
        let (a, b) = (find(s, "a"), find(s, "b"));
        a.state == "starting" && a.pid.is_some() && b.state == b_state
    });
    let b = find(&s, "b");
    assert_eq!(b.waiting_for.as_deref(), Some("worker a ready"), "{s:#?}");
    assert_eq!(b.pid, None);
    host.assert_stays("b not started while a is not ready", HELD, |s| {
        find(s, "b").pid.is_none() && find(s, "a").state == "starting"
    });
    s
}

fn start_after_waits_for_set_ready(mode: Mode) {
    let host = Host::start(pair(mode));
    wait_a_starting(&host, "not_started");
    let table = String::from_utf8_lossy(&host.cli(&["status"]).stdout).into_owned();
    assert!(
        table.lines().any(|l| l.starts_with("a ") && l.contains(" starting ")),
        "{table}"
    );
    let told = now_ms();
    host.trigger("a", "ready");
    let s = host.wait_for("b running after a is ready", T, |s| {
        find(s, "b").state == "running" && find(s, "b").pid.is_some()
    });
    assert_eq!(find(&s, "a").state, "running", "{s:#?}");
    assert_eq!(find(&s, "b").waiting_for, None);
    let started = ts_ms(find(&s, "b").started_at.as_deref().expect("b started"));
    assert!(
        started >= told,
        "b started at {started}, before a was told to be ready at {told}"
    );
    host.wait_log("declared ready", T);
}

/// Runs a host whose testkit registers `workers`; checks that it refused to start with exit code
/// 1 and a line holding every one of `needles`.
fn refused(mode: Mode, workers: &str, needles: &[&str]) {
    let spec = Spec::new(mode).testkit(workers).setting("testkit", "announce = true");
    let dir = Dir::new(&spec);
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| needles.iter().all(|n| l.contains(n))),
        "no line with {needles:?} in:\n{out}"
    );
    assert!(!out.contains("up message="), "a worker started:\n{out}");
}

fn a_start_after_cycle_or_unknown_target_is_refused_at_start_up(mode: Mode) {
    refused(
        mode,
        "a:start=host_start,b:after=nobody",
        &[
            "worker b (plugin testkit)",
            "start_after names worker \"nobody\", which no plugin registered",
        ],
    );
    refused(
        mode,
        "x:start=host_start,a:after=c,b:after=a,c:after=b",
        &[
            "start_after makes a cycle",
            "a (plugin testkit) -> c (plugin testkit) -> b (plugin testkit) -> a (plugin testkit)",
        ],
    );
}

fn a_target_that_crashes_resets_the_host_and_its_dependent_waits_for_it_again(mode: Mode) {
    let host = Host::start(pair(mode));
    wait_a_starting(&host, "not_started");
    host.trigger("a", "ready");
    let s = host.wait_for("b running", T, |s| find(s, "b").pid.is_some());
    let (a1, b1) = (find(&s, "a").pid.unwrap(), find(&s, "b").pid.unwrap());
    // A crash of the target resets the host (as any crash does): both restart, and b waits for
    // a's new process to declare itself ready, as at the first start.
    // SAFETY: kill(2) on a worker of this test's host.
    assert_eq!(unsafe { libc::kill(a1, libc::SIGKILL) }, 0);
    let s = wait_a_starting(&host, "waiting_restart");
    assert_eq!(s.host.generation, 2, "{s:#?}");
    assert_ne!(find(&s, "a").pid, Some(a1));
    wait_gone(&[a1, b1], T);
    host.trigger("a", "ready");
    let s = host.wait_for("b running again", T, |s| find(s, "b").pid.is_some());
    assert_ne!(find(&s, "b").pid, Some(b1));
}

fn a_target_that_exits_keeps_a_running_dependent_and_holds_back_a_waiting_one(mode: Mode) {
    let host = Host::start(pair(mode));
    wait_a_starting(&host, "not_started");
    host.trigger("a", "ready");
    let s = host.wait_for("b running", T, |s| find(s, "b").pid.is_some());
    let b1 = find(&s, "b").pid.unwrap();
    // The target exits to restart: b, running, keeps running; a's new process is `starting`.
    host.trigger("a", "exit 1");
    host.wait_for("a restarted", T, |s| {
        find(s, "a").restarts == 1 && find(s, "a").state == "starting"
    });
    assert_eq!(host.worker("b").pid, Some(b1));
    // b exits to restart too: it waits for a's new process.
    host.trigger("b", "exit 1");
    wait_a_starting(&host, "waiting_restart");
    host.trigger("a", "ready");
    host.wait_for("b running again", T, |s| find(s, "b").pid.is_some());
    // A target that fails for good: the dependent that stops waits on, and says for what.
    host.trigger("a", "exit 2");
    host.wait_for("a failed", T, |s| find(s, "a").state == "failed");
    host.trigger("b", "exit 1");
    let s = host.wait_for("b waiting for a failed worker", T, |s| {
        find(s, "b").waiting_for.as_deref() == Some("worker a (failed)")
    });
    assert_eq!(find(&s, "b").state, "waiting_restart");
    host.assert_stays("b not restarted", HELD, |s| find(s, "b").pid.is_none());
}

fn a_target_without_needs_ready_is_ready_once_its_entry_runs(mode: Mode) {
    // a starts only once the startup hook declares the host consistent; b could start at once
    // but for `start_after`, so it must stay waiting for as long as the hook holds start-up.
    let host = Host::start_in(
        Spec::new(mode)
            .testkit("a:start=consistent,b:after=a:start=host_start")
            .setting("testkit", "startup_hook = \"hold\""),
        "startup",
    );
    host.wait_for("b waiting for a", T, |s| {
        find(s, "b").waiting_for.as_deref() == Some("worker a ready")
    });
    host.assert_stays("b not started while a has not started", HELD, |s| {
        s.host.state == "startup" && find(s, "a").pid.is_none() && find(s, "b").pid.is_none()
    });
    host.trigger("startup", "consistent");
    let s = host.wait_for("both running", T, |s| {
        find(s, "a").state == "running" && find(s, "b").state == "running"
    });
    assert!(find(&s, "b").pid.is_some(), "{s:#?}");
    assert_eq!(find(&s, "b").waiting_for, None);
    // b's process began after a's: ignoring `start_after`, b would have run since start-up.
    let started = |w: &str| ts_ms(find(&s, w).started_at.as_deref().expect("started"));
    assert!(
        started("b") >= started("a"),
        "b started at {}, before a at {}:\n{s:#?}",
        started("b"),
        started("a")
    );
}

both_modes!(
    start_after_waits_for_set_ready,
    a_start_after_cycle_or_unknown_target_is_refused_at_start_up,
    a_target_that_crashes_resets_the_host_and_its_dependent_waits_for_it_again,
    a_target_that_exits_keeps_a_running_dependent_and_holds_back_a_waiting_one,
    a_target_without_needs_ready_is_ready_once_its_entry_runs,
);
