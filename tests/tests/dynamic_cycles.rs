//! Many dynamic workers, one after the other, leave nothing behind: a launcher runs 200 cycles
//! of launch, wait for startup, terminate, wait for shutdown; the supervisor's and the
//! launcher's open fds are the same after as before, and no dynamic worker (so no dynamic slot)
//! is left in use. Memory is the benchmark's figure (`bench dyncycle1000`), not asserted here:
//! 200 cycles are too few to tell a leak from the allocator's noise. Both launch modes.

use std::time::Duration;

use steward_tests::*;

const CYCLES: usize = 200;
const T: Duration = Duration::from_secs(60);

fn dynamic_workers(s: &Status) -> usize {
    s.workers.iter().filter(|w| w.name.starts_with("dc-")).count()
}

fn cycles_leave_no_fd_and_no_slot_behind(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit(&format!("dc:entry=testkit_dynbench:never:cycles={CYCLES}"))
            .setting("testkit", "dynbench = true")
            .host("max_worker_processes = 2"),
    );
    // Ten warm-up cycles first, so whatever a first launch sets up once is already there.
    host.wait_log("dyncycle warm", T);
    let s = host.status();
    let supervisor = s.host.pid as i32;
    let launcher = find(&s, "dc").pid.expect("the launcher runs");
    let before = (Holdings::settled(supervisor, T), Holdings::settled(launcher, T));
    host.trigger("dc", "go");
    host.wait_log(&format!("dyncycle done {CYCLES} in"), T);
    // The last worker's shutdown was seen through its handle; the supervisor may still be
    // retiring it in the same turn, so poll for the empty table.
    let s = host.wait_for("no dynamic worker left", T, |s| dynamic_workers(s) == 0);
    let after = (Holdings::settled(supervisor, T), Holdings::settled(launcher, T));
    assert_eq!(
        after.0.fds,
        before.0.fds,
        "supervisor fds grew over {CYCLES} cycles: {before:?} -> {after:?}: {:#?}",
        Holdings::fd_list(supervisor)
    );
    assert_eq!(
        after.1.fds, before.1.fds,
        "launcher fds grew over {CYCLES} cycles: {before:?} -> {after:?}"
    );
    assert_eq!(find(&s, "dc").pid, Some(launcher), "the launcher was restarted");
    assert!(!host.log_text().contains("ERROR"), "{}", host.log_text());
}

both_modes!(cycles_leave_no_fd_and_no_slot_behind);
