//! Dynamic workers, end to end: a worker launches dynamic workers through the SDK, waits for
//! each to start, and stores their handles in a region; a second worker terminates them through
//! those handles and sees each one stopped. On the way: an entry that does not resolve comes
//! back through the handle as stopped with its name and frees the slot; the next worker in that
//! slot makes the old handle stale; with every dynamic slot taken, a launch is refused at once.
//! A hundred handles are handed over, with room for ten more workers (which fill the pool for
//! the refusal and are terminated before the hand-over).
//! Every test runs in fork and exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);
/// Dynamic workers launched and handed over.
const N: usize = 100;
/// Dynamic slots (`max_worker_processes`): the launcher fills the ones past `N` until refused.
const MAX: usize = 110;

fn spec(mode: Mode) -> Spec {
    Spec::new(mode)
        .testkit("l:entry=testkit_launcher:never,t:entry=testkit_terminator:never")
        .host(&format!("max_worker_processes = {MAX}"))
        .setting("testkit", &format!("dynamic = {N}"))
}

fn dynamic_names(s: &Status) -> Vec<String> {
    s.workers
        .iter()
        .filter(|w| w.name.starts_with("dyn-"))
        .map(|w| w.name.clone())
        .collect()
}

fn handles_in_a_region_are_terminated_by_another_worker(mode: Mode) {
    let host = Host::start(spec(mode));
    // The missing entry: stopped through its handle, naming the function.
    let log = host.wait_log("missing entry stopped:", T);
    let line = log.lines().find(|l| l.contains("missing entry stopped:")).unwrap();
    assert!(line.contains("testkit_no_such_entry"), "{line}");
    // Its slot was freed and reused at once; the old handle says stale, not the new tenant's.
    host.wait_log("old handle: stale", T);
    // All N started (through their handles), seen by status too.
    host.wait_log(&format!("launched {N} running"), T);
    let s = host.wait_for("every dynamic worker running", T, |s| {
        s.workers
            .iter()
            .filter(|w| w.name.starts_with("dyn-") && !w.name.starts_with("dyn-fill-"))
            .filter(|w| w.state == "running" && w.pid.is_some())
            .count()
            == N
    });
    let pids: Vec<i32> = s
        .workers
        .iter()
        .filter(|w| w.name.starts_with("dyn-") && !w.name.starts_with("dyn-fill-"))
        .filter_map(|w| w.pid)
        .collect();
    assert_eq!(pids.len(), N);
    // Once the slots past N are filled, one more is refused at once, with the counts of
    // dynamic slots.
    let log = host.wait_log("refused in ", T);
    let line = log.lines().find(|l| l.contains("refused in ")).unwrap();
    assert!(
        line.contains(&format!(
            "no free worker slot ({MAX} of {MAX} in use or reserved for other plugins)"
        )),
        "{line}"
    );
    let us: u64 = line
        .split("refused in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line}"));
    assert!(us < 200_000, "a refusal took {us} us: {line}");
    // The fillers are gone before the handles are handed over.
    host.wait_for("only the N handed over left", T, |s| dynamic_names(s).len() == N);
    // The other worker terminates every one through the handles, and sees each stopped.
    host.trigger("t", "terminate");
    host.wait_log(&format!("stopped {N} of {N}"), T);
    wait_gone(&pids, T);
    // Stopped for good (restart policy `after` notwithstanding), and gone from status: their
    // slots are free again, no worker in status is a dynamic one.
    let s = host.wait_for("no dynamic worker left in status", T, |s| {
        dynamic_names(s).is_empty() && !s.workers.iter().any(|w| w.dynamic)
    });
    assert_eq!(s.workers.len(), 2, "{s:#?}");
    assert!(
        !host.log_text().contains("handle "),
        "a handle answered wrongly:\n{}",
        host.log_text()
    );
    assert!(!host.log_text().contains("launched one too many"));
}

both_modes!(handles_in_a_region_are_terminated_by_another_worker);
