//! Segment init hooks, end to end: a region a plugin initialises in `on_segment_init` holds its
//! initial values before any worker reads it, at start and after a crash reset (where the region
//! is a fresh segment's, initialised again); a hook that fails or panics, at start or after a
//! reset, stops the host with exit code 1, naming the hook and its plugin, and leaves nothing
//! running. Every test runs in fork and in exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);
/// What the testkit's `fill` hook leaves in a new segment's region, as its reader logs it.
const FILLED: &str = "seginit saw magic=0x5e6117ed inits=1 dirty=0";

/// A testkit host whose `fill` hook takes `delay` to initialise the region, with a `host_start`
/// worker that reads the region first thing.
fn filled(mode: Mode, delay: &str) -> Spec {
    Spec::new(mode)
        .testkit("reader:entry=testkit_seginit_reader:start=host_start")
        .setting("testkit", "segment_init = \"fill\"")
        .setting("testkit", &format!("segment_init_delay = {delay:?}"))
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn init_values_are_seen_by_a_host_start_worker_and_after_a_crash(mode: Mode) {
    // The hook takes 300 ms: a `host_start` worker that did not wait for it would read zeros.
    // The answer that shows the host in `init` shows the reader not started; a second query
    // could land after the hook.
    let host = Host::spawn(filled(mode, "300ms"));
    let s = host.wait_for("the host in init", T, |s| s.host.state == "init");
    assert_eq!(find(&s, "reader").state, "not_started", "{s:?}");
    assert_eq!(find(&s, "reader").pid, None);
    host.wait_for("running", T, |s| s.host.state == "running");
    let log = host.wait_log(FILLED, T);
    assert_eq!(
        count(&log, "seginit saw"),
        1,
        "the worker read the region before its init:\n{log}"
    );
    let first = host.worker("reader").pid.expect("the reader runs");

    // A crash: the reset makes a new, zeroed segment, which the hook initialises again before the
    // worker restarts (`dirty` would be 1 had the region survived, `inits` 2 had it not been
    // zeroed, and the hook refuses a region it finds written).
    // SAFETY: kill(2) on a worker of this test's host.
    assert_eq!(unsafe { libc::kill(first, libc::SIGKILL) }, 0);
    let log = host.wait_log_count(FILLED, 2, T);
    assert_eq!(count(&log, "seginit saw"), 2, "{log}");
    assert_eq!(count(&log, "segment init filled the region"), 2, "{log}");
    let s = host.wait_for("running again", T, |s| s.host.state == "running");
    assert_eq!(s.host.generation, 2);
}

/// Runs a host whose init hook fails with `segment_init = how`; checks that it stopped with exit
/// code 1 naming `why`, that no worker started and that nothing was left behind.
fn stops_naming(mode: Mode, how: &str, why: &str) {
    let spec = Spec::new(mode)
        .testkit("early:start=host_start")
        .setting("testkit", &format!("segment_init = {how:?}"))
        .setting("testkit", "announce = true");
    let dir = Dir::new(&spec);
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(why), "no {why:?} in:\n{out}");
    assert!(
        !out.contains("up message="),
        "a worker started before the segment was initialised:\n{out}"
    );
}

fn a_failing_init_hook_stops_the_host_naming_it(mode: Mode) {
    stops_naming(
        mode,
        "fail",
        "start-up failed: segment init hook testkit_seginit_fail (plugin testkit) failed: testkit was told to fail its segment init; stopping",
    );
}

fn a_panicking_init_hook_stops_the_host_naming_it(mode: Mode) {
    stops_naming(
        mode,
        "panic",
        "segment init hook testkit_seginit_panic (plugin testkit) failed: panicked: testkit was told to panic in its segment init",
    );
}

fn an_init_hook_failing_after_a_crash_stops_the_host(mode: Mode) {
    let mut host = Host::start(filled(mode, "0ms"));
    host.wait_log(FILLED, T);
    let pid = host.worker("reader").pid.expect("the reader runs");
    host.trigger("segment_init", "fail");
    // SAFETY: kill(2) on a worker of this test's host.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let st = host.wait_exit(T);
    let log = host.log_text();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "segment init hook testkit_seginit_fill (plugin testkit) failed: testkit was told to fail its segment init"
        ),
        "{log}"
    );
    assert_eq!(
        count(&log, "seginit saw"),
        1,
        "the worker restarted on an uninitialised segment:\n{log}"
    );
    host.assert_nothing_left(&[pid]);
}

both_modes!(
    init_values_are_seen_by_a_host_start_worker_and_after_a_crash,
    a_failing_init_hook_stops_the_host_naming_it,
    a_panicking_init_hook_stops_the_host_naming_it,
    an_init_hook_failing_after_a_crash_stops_the_host,
);
