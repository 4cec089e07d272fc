//! Locks in shared memory: exact counting under an exclusive lock across worker processes, and
//! the crash rule (a worker that dies holding a lock, or returns with a guard leaked, resets the
//! host, and a worker waiting for that lock never hangs, nor outlives the host). Every test runs in
//! fork and exec mode.

use std::time::{Duration, Instant};

use steward_tests::*;

const T: Duration = Duration::from_secs(30);

fn locks(mode: Mode, workers: &str) -> Spec {
    Spec::new(mode).testkit(workers).setting("testkit", "locks = \"on\"")
}

/// Polls status until `pred` holds; a status that does not answer (the host is recovering) is
/// polled again.
fn wait_status(host: &Host, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
    host.wait_for(what, T, pred)
}

/// Waits until `pid` sleeps in the kernel's futex wait (the lock's slow path).
fn wait_asleep_on_futex(pid: i32) {
    let deadline = Instant::now() + T;
    while !std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("futex")) {
        assert!(Instant::now() < deadline, "worker {pid} never slept on the lock");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn two_workers_add_a_million_each_under_an_exclusive_lock(mode: Mode) {
    let adder = "entry=testkit_locker:never:add=1000000:of=2";
    let host = Host::start(locks(mode, &format!("a:{adder},b:{adder}")));
    let log = host.wait_log_count("total ", 2, Duration::from_secs(120));
    let totals: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("total ").nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(totals, ["2000000", "2000000"], "{log}");
    assert!(!log.contains("crash"), "{log}");
}

fn a_holder_killed_by_sigkill_resets_the_host_and_nothing_hangs(mode: Mode) {
    let host = Host::start(locks(
        mode,
        "holder:entry=testkit_locker:hold,waiter:entry=testkit_locker:wait_lock",
    ));
    host.wait_log("waiting for the lock", T);
    let before = host.status();
    let (holder, waiter) = (
        find(&before, "holder").pid.unwrap(),
        find(&before, "waiter").pid.unwrap(),
    );
    // The waiter is asleep on the lock's futex, not spinning and not holding it.
    wait_asleep_on_futex(waiter);
    assert!(!host.log_text().contains("got the lock"));
    // SAFETY: a worker of this test's host.
    assert_eq!(unsafe { libc::kill(holder, libc::SIGKILL) }, 0);
    let after = wait_status(&host, "a reset with both workers back", |s| {
        s.host.generation == 2 && ["holder", "waiter"].iter().all(|n| find(s, n).state == "running")
    });
    wait_gone(&[holder, waiter], T);
    assert_ne!(find(&after, "waiter").pid, Some(waiter));
    // The new segment's lock is free: the new holder takes it at once.
    host.wait_log_count("holding the lock", 2, T);
    let log = host.log_text();
    assert!(log.contains("worker holder") && log.contains("SIGKILL"), "{log}");
}

/// Host death ends a lock wait: nothing wakes the futex, but the parent-death signal kills the
/// waiter with the holder.
fn a_worker_waiting_for_a_lock_dies_with_the_host(mode: Mode) {
    let mut host = Host::start(locks(
        mode,
        "holder:entry=testkit_locker:hold,waiter:entry=testkit_locker:wait_lock",
    ));
    host.wait_log("waiting for the lock", T);
    let s = host.status();
    wait_asleep_on_futex(find(&s, "waiter").pid.unwrap());
    let pids = worker_pids(&s);
    assert_eq!(pids.len(), 2);
    host.signal(libc::SIGKILL);
    host.wait_exit(T);
    wait_gone(&pids, Duration::from_secs(2));
}

fn returning_with_a_leaked_guard_is_a_crash(mode: Mode) {
    let host = Host::start(locks(mode, "leaker:entry=testkit_locker:leak,bystander"));
    let before = host.wait_for("both running", T, |s| s.workers.iter().all(|w| w.state == "running"));
    host.trigger("leaker", "leak");
    host.wait_log("leaked a lock guard", T);
    let after = wait_status(&host, "a reset with both workers back", |s| {
        s.host.generation == 2 && s.workers.iter().all(|w| w.state == "running")
    });
    assert_ne!(
        find(&after, "bystander").pid,
        find(&before, "bystander").pid,
        "the bystander was reset too"
    );
    let log = host.log_text();
    assert!(
        log.contains("exiting while holding 1 lock") && log.contains("worker leaker") && log.contains("dead-man flag"),
        "{log}"
    );
}

fn an_unknown_lock_name_is_a_clear_error_naming_it(mode: Mode) {
    let host = Host::start(locks(mode, "lost:entry=testkit_locker:lock=nope:never"));
    let s = host.wait_for("lost failed", T, |s| find(s, "lost").state == "failed");
    let reason = find(&s, "lost").last_exit.map(|e| e.reason).unwrap_or_default();
    assert!(
        reason.contains("no lock named \"nope\" was requested by plugin testkit"),
        "{reason}"
    );
    assert_eq!(s.host.generation, 1, "a refused lookup is no crash");
}

fn a_duplicate_or_bad_lock_request_stops_start_up_naming_plugin_and_lock(mode: Mode) {
    for (setting, needle) in [
        ("duplicate", "lock \"counter\" of plugin testkit is requested twice"),
        ("bad_name", "lock name \"bad\\nname\" of plugin testkit"),
    ] {
        let spec = Spec::new(mode)
            .plugin("testkit")
            .setting("testkit", &format!("locks = {setting:?}"));
        let (code, out) = run_expect_failure(&Dir::new(&spec));
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
    }
}

both_modes!(
    two_workers_add_a_million_each_under_an_exclusive_lock,
    a_holder_killed_by_sigkill_resets_the_host_and_nothing_hangs,
    a_worker_waiting_for_a_lock_dies_with_the_host,
    returning_with_a_leaked_guard_is_a_crash,
    an_unknown_lock_name_is_a_clear_error_naming_it,
    a_duplicate_or_bad_lock_request_stops_start_up_naming_plugin_and_lock,
);
