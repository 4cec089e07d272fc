//! The `worker_spi` example plugin, end to end: every static worker counts and shows its count
//! and naptime as its activity; the launcher's cycle (launched, started, terminated, stopped) is
//! in the log and its dynamic worker comes and goes in status; a reload of `naptime` changes the
//! rate at once (an hour-long nap freezes the counters, and the next reload wakes them); nothing
//! of the host survives `steward stop`; and after a crash reset the segment init hook sets up the
//! new region before any worker counts in it. Every test runs in fork and exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);
const WORKERS: usize = 3;
const DYNAMIC: &str = "worker_spi dynamic";

/// The plugin with three counters and a launch request every four rounds.
fn spec(mode: Mode, naptime: &str) -> Spec {
    Spec::new(mode)
        .plugin("worker_spi")
        .setting("worker_spi", &format!("total_workers = {WORKERS}"))
        .setting("worker_spi", &format!("naptime = {naptime:?}"))
        .setting("worker_spi", "launch_every = 4")
}

/// Static worker `i`'s activity, `naptime D, counter N`, as `(D, N)`.
fn activity(s: &Status, i: usize) -> Option<(String, u64)> {
    let w = s.workers.iter().find(|w| w.name == format!("worker_spi {i}"))?;
    let text = w.activity.as_deref()?;
    let (naptime, count) = text.strip_prefix("naptime ")?.split_once(", counter ")?;
    Some((naptime.to_owned(), count.parse().ok()?))
}

/// Every static worker's count, if each shows naptime `naptime`.
fn counts_at(s: &Status, naptime: &str) -> Option<Vec<u64>> {
    (0..WORKERS)
        .map(|i| activity(s, i).filter(|(d, _)| d == naptime).map(|(_, n)| n))
        .collect()
}

/// The number of the first launch request whose four steps are all in the log, in order.
fn whole_cycle(log: &str) -> Option<u64> {
    let steps = [
        format!("launched {DYNAMIC} (slot "),
        format!("{DYNAMIC} started (pid "),
        format!("terminated {DYNAMIC}"),
        format!("{DYNAMIC} stopped ("),
    ];
    (1..=log.matches(&steps[0]).count() as u64).find(|r| {
        let prefix = format!("request {r}: ");
        let mut at = 0;
        steps
            .iter()
            .all(|step| match log[at..].find(&format!("{prefix}{step}")) {
                Some(i) => {
                    at += i;
                    true
                }
                None => false,
            })
    })
}

fn counts_launches_and_takes_a_new_naptime_on_reload(mode: Mode) {
    let mut host = Host::start(spec(mode, "50ms"));

    // Every static worker counts, under the lock, at the configured naptime.
    host.wait_for("every counter at 3 or more with naptime 50ms", T, |s| {
        counts_at(s, "50ms").is_some_and(|c| c.iter().all(|&n| n >= 3))
    });

    // A dynamic worker appears in status, running, and then that one leaves it.
    let s = host.wait_for("a dynamic worker running", T, |s| {
        s.workers.iter().any(|w| w.name == DYNAMIC && w.pid.is_some())
    });
    let dynamic = find(&s, DYNAMIC);
    let pid = dynamic.pid.unwrap();
    assert_eq!(dynamic.worker_type, DYNAMIC);
    assert!(dynamic.dynamic, "{dynamic:?}");
    assert_eq!(dynamic.launcher.as_deref(), Some("worker_spi launcher"), "{dynamic:?}");
    // The launcher logged this worker's handle: its slot and generation, as status shows them.
    host.wait_log(
        &format!(
            "launched {DYNAMIC} (slot {}, generation {})",
            dynamic.slot, dynamic.generation
        ),
        T,
    );
    host.wait_for("that dynamic worker gone from status", T, |s| {
        !s.workers.iter().any(|w| w.name == DYNAMIC && w.pid == Some(pid))
    });
    wait_gone(&[pid], T);
    // The launcher logged each step of one request's cycle, in order.
    let log = host.wait_log_until("a whole launch cycle", T, |t| whole_cycle(t).is_some());
    assert!(log.contains("segment initialised with 3 counters"), "{log}");
    assert!(!log.contains("counters disagree"), "{log}");

    // An hour-long naptime: the reload wakes every worker, which shows the new naptime and then
    // sleeps: the counters stop.
    host.rewrite_config(&spec(mode, "1h"));
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = host.wait_for("every worker showing naptime 3600s", T, |s| {
        counts_at(s, "3600s").is_some()
    });
    let frozen = counts_at(&s, "3600s").unwrap();
    host.assert_stays("the counters frozen", Duration::from_millis(300), |s| {
        counts_at(s, "3600s").as_ref() == Some(&frozen)
    });
    host.wait_log_count("reloaded: naptime 3600s", WORKERS, T);

    // Back to a short naptime: the reload ends the hour-long nap at once.
    host.rewrite_config(&spec(mode, "20ms"));
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    host.wait_for("every counter moving again with naptime 20ms", T, |s| {
        counts_at(s, "20ms").is_some_and(|c| c.iter().zip(&frozen).all(|(n, f)| *n >= f + 3))
    });

    // Nothing survives a stop: not the static workers, the launcher nor a dynamic worker.
    let pids = worker_pids(&host.status());
    assert!(pids.len() > WORKERS, "{pids:?}");
    let out = host.cli(&["stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(host.wait_exit(T).success());
    host.assert_nothing_left(&pids);
}

/// A crash reset gives the workers a new, zeroed region, which the segment init hook sets up
/// again before any of them starts: every counter begins again at 0, and no worker finds the
/// region without its start marker. An hour-long naptime keeps the counters where a worker
/// left them, so the test reads them without racing the workers.
fn a_crash_reset_starts_every_counter_again_on_a_new_segment(mode: Mode) {
    let host = Host::start(spec(mode, "50ms"));
    host.wait_for("every counter at 3 or more", T, |s| {
        counts_at(s, "50ms").is_some_and(|c| c.iter().all(|&n| n >= 3))
    });
    host.rewrite_config(&spec(mode, "1h"));
    let out = host.cli(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = host.wait_for("every worker showing naptime 3600s", T, |s| {
        counts_at(s, "3600s").is_some()
    });
    assert!(counts_at(&s, "3600s").unwrap().iter().all(|&n| n >= 3), "{s:#?}");
    let before: Vec<i32> = (0..WORKERS)
        .map(|i| find(&s, &format!("worker_spi {i}")).pid.unwrap())
        .collect();

    // SIGKILL is a crash: every child is stopped and the segment is made anew.
    // SAFETY: signalling a worker of the host this test started.
    unsafe { libc::kill(before[1], libc::SIGKILL) };
    let s = host.wait_for("every worker back on the new segment at counter 0", T, |s| {
        counts_at(s, "3600s").is_some_and(|c| c.iter().all(|&n| n == 0))
            && (0..WORKERS).all(|i| {
                let w = find(s, &format!("worker_spi {i}"));
                w.state == "running" && w.pid.is_some_and(|p| !before.contains(&p))
            })
    });
    assert_eq!(s.host.state, "running");
    let log = host.log_text();
    assert_eq!(log.matches("segment initialised with 3 counters").count(), 2, "{log}");
    assert!(!log.contains("no start marker"), "{log}");
}

both_modes!(
    counts_launches_and_takes_a_new_naptime_on_reload,
    a_crash_reset_starts_every_counter_again_on_a_new_segment
);
