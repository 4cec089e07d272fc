//! The `asynclatch` example plugin, end to end: a tokio task in a worker awaits the latch fd
//! with `AsyncFd`, wakes once for every set another worker makes through a handle kept in a
//! region, and ends cleanly on SIGTERM through the same fd. Every test runs in fork and in exec
//! mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);
const SETS: usize = 25;

/// The log lines worker `name` wrote that contain `msg`.
fn lines_of<'a>(log: &'a str, name: &str, msg: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let tag = format!(" worker {name}[");
    log.lines().filter(move |l| l.contains(&tag) && l.contains(msg))
}

fn a_tokio_task_wakes_on_every_set_and_stops_on_sigterm(mode: Mode) {
    let mut host = Host::start(
        Spec::new(mode)
            .plugin("asynclatch")
            .setting("asynclatch", &format!("sets = {SETS}")),
    );
    let waiter = host.worker("asynclatch-waiter").pid.expect("the waiter runs");
    let setter = host.worker("asynclatch-setter").pid.expect("the setter runs");
    host.wait_log(&format!("all {SETS} sets made"), T);
    let log = host.wait_log(&format!("tokio task woke on latch {SETS}\n"), T);

    // One wake-up per set, in order, each set landing on a live handle: the setter waits for
    // each answer, so a lost wake-up would leave it waiting and a spurious one would show as an
    // extra line.
    let sets: Vec<&str> = lines_of(&log, "asynclatch-setter", "set the waiter's latch ").collect();
    assert_eq!(sets.len(), SETS, "{log}");
    assert!(
        sets.iter().all(|l| l.ends_with(": true")),
        "a set found a stale handle:\n{log}"
    );
    let wakes: Vec<&str> = lines_of(&log, "asynclatch-waiter", "tokio task woke on latch ").collect();
    assert_eq!(wakes.len(), SETS, "{log}");
    for (k, line) in wakes.iter().enumerate() {
        assert!(
            line.ends_with(&format!("tokio task woke on latch {}", k + 1)),
            "{line}\n{log}"
        );
    }
    let s = host.status();
    assert_eq!(
        find(&s, "asynclatch-waiter").pid,
        Some(waiter),
        "the waiter never restarted"
    );
    assert_eq!(
        find(&s, "asynclatch-setter").pid,
        Some(setter),
        "the setter never restarted"
    );

    // SIGTERM makes the latch fd readable: the task sees the stop request and the worker returns,
    // well before the host would need SIGKILL.
    host.signal(libc::SIGTERM);
    assert_eq!(host.wait_exit(T).code(), Some(0));
    let log = host.log_text();
    assert_eq!(
        lines_of(
            &log,
            "asynclatch-waiter",
            &format!("tokio task saw the stop request after {SETS} wake-ups")
        )
        .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("SIGKILL"), "{log}");
    host.assert_nothing_left(&[waiter, setter]);
}

both_modes!(a_tokio_task_wakes_on_every_set_and_stops_on_sigterm);
