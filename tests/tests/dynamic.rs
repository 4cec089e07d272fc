//! Dynamic workers, end to end: a worker launches dynamic workers through the SDK, waits for
//! each to start, and stores their handles in a region; a second worker terminates them through
//! those handles and sees each one stopped. On the way: an entry that does not resolve comes
//! back through the handle as stopped with its name and frees the slot; the next worker in that
//! slot makes the old handle stale; with every dynamic slot taken, a launch is refused at once.
//! Every test runs in fork and exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);
/// Dynamic workers launched: every dynamic slot (`max_worker_processes`).
const N: usize = 20;

fn spec(mode: Mode) -> Spec {
    Spec::new(mode)
        .testkit("l:entry=testkit_launcher:never,t:entry=testkit_terminator:never")
        .host(&format!("max_worker_processes = {N}"))
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
            .filter(|w| w.name.starts_with("dyn-") && w.state == "running" && w.pid.is_some())
            .count()
            == N
    });
    let pids: Vec<i32> = s
        .workers
        .iter()
        .filter(|w| w.name.starts_with("dyn-"))
        .filter_map(|w| w.pid)
        .collect();
    assert_eq!(pids.len(), N);
    // One more is refused at once, with the counts of dynamic slots.
    let log = host.wait_log("refused in ", T);
    let line = log.lines().find(|l| l.contains("refused in ")).unwrap();
    assert!(
        line.contains(&format!(
            "no free worker slot ({N} of {N} in use or reserved for other plugins)"
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
    // The other worker terminates every one through the handles, and sees each stopped.
    host.trigger("t", "terminate");
    host.wait_log(&format!("stopped {N} of {N}"), T);
    wait_gone(&pids, T);
    // Stopped for good (restart policy `after` notwithstanding), and gone from status: their
    // slots are free again.
    let s = host.wait_for("no dynamic worker left in status", T, |s| dynamic_names(s).is_empty());
    assert_eq!(s.workers.len(), 2, "{s:#?}");
    assert!(
        !host.log_text().contains("handle "),
        "a handle answered wrongly:\n{}",
        host.log_text()
    );
    assert!(!host.log_text().contains("launched one too many"));
}

both_modes!(handles_in_a_region_are_terminated_by_another_worker);
