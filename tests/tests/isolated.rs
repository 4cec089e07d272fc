//! Isolated workers (issue 15: isolated), end to end: an isolated worker that crashes is
//! restarted alone (segment generation and the other workers' pids unchanged); its wild write
//! into the segment faults and is counted as its own crash, and never lands; its latch wakes it,
//! while it can neither set another's latch nor take a lock; it keeps its settings and reloads;
//! it dies with the host; a handle to it says it runs; a corrupt header it finds resets the
//! host; an attached
//! worker's crash still resets everything; registration refuses what an isolated worker cannot
//! do. Every test runs in fork and in exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(15);

/// Two workers, `iso` isolated and `other` attached, restarting after 10 ms.
fn pair(mode: Mode) -> Host {
    Host::start(
        Spec::new(mode)
            .testkit("iso:isolated,other")
            .setting("testkit", "restart_delay = \"10ms\""),
    )
}

fn both_running(host: &Host) -> Status {
    host.wait_for("both workers running", T, |s| {
        ["iso", "other"]
            .iter()
            .all(|n| find(s, n).state == "running" && find(s, n).pid.is_some())
    })
}

/// The log lines of worker `name` that contain `msg`.
fn lines_of(log: &str, name: &str, msg: &str) -> Vec<String> {
    let tag = format!(" worker {name}[");
    log.lines()
        .filter(|l| l.contains(&tag) && l.contains(msg))
        .map(str::to_owned)
        .collect()
}

/// Waits until worker `name` logged `msg` `n` times; returns the last such line.
fn wait_line(host: &Host, name: &str, msg: &str, n: usize) -> String {
    let log = host.wait_log_until(&format!("worker {name} logging {msg:?} {n} times"), T, |log| {
        lines_of(log, name, msg).len() >= n
    });
    lines_of(&log, name, msg).pop().unwrap()
}

/// Crashes `iso` with `action` and waits until it runs again as its `n`th restart; checks that
/// it crashed alone: same segment, same other worker, nobody signalled.
fn crash_alone(host: &Host, action: &str, n: u32) -> WorkerInfo {
    let before = both_running(host);
    let (iso, other) = (find(&before, "iso"), find(&before, "other"));
    host.trigger("iso", action);
    let after = host.wait_for(&format!("iso restarted after {action}"), T, |s| {
        let w = find(s, "iso");
        w.restarts == n && w.state == "running" && w.pid.is_some() && w.pid != iso.pid
    });
    assert_eq!(
        after.host.generation,
        before.host.generation,
        "no reset:\n{}",
        host.log_text()
    );
    assert_eq!(find(&after, "other").pid, other.pid, "the attached worker kept running");
    assert_eq!(find(&after, "other").restarts, other.restarts);
    assert!(!host.log_text().contains("resetting"), "{}", host.log_text());
    // The new process is isolated too (exec mode keeps spares, which map the segment writable).
    let w = find(&after, "iso");
    wait_perms(w.pid.unwrap(), "r--s");
    w
}

/// Waits until `pid` maps the segment once with permissions `want`: a new child maps it (exec
/// mode) and an isolated one turns it read-only only after the host has published its pid.
fn wait_perms(pid: i32, want: &str) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let perms = segment_perms(pid);
        if perms == [want] {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} maps the segment {perms:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn an_isolated_worker_that_crashes_is_restarted_alone(mode: Mode) {
    let host = pair(mode);
    let s = both_running(&host);
    assert!(find(&s, "iso").isolated && !find(&s, "other").isolated, "{s:?}");
    let table = String::from_utf8_lossy(&host.cli(&["status"]).stdout).into_owned();
    assert!(table.contains("running (isolated)"), "{table}");
    // The isolated process maps the segment shared and read-only; the attached one writable.
    wait_perms(find(&s, "iso").pid.unwrap(), "r--s");
    wait_perms(find(&s, "other").pid.unwrap(), "rw-s");

    let w = crash_alone(&host, "segv", 1);
    let e = w.last_exit.expect("an exit");
    assert_eq!(e.signal, Some(libc::SIGSEGV), "{e:?}");
    assert!(e.reason.contains("crashed"), "{e:?}");
    // An exit code outside the contract is a crash too, and still its own.
    let w = crash_alone(&host, "exit 5", 2);
    assert_eq!(w.last_exit.and_then(|e| e.code), Some(5));
    let w = crash_alone(&host, "abort", 3);
    assert_eq!(w.last_exit.and_then(|e| e.signal), Some(libc::SIGABRT));
    let log = host.log_text();
    assert!(log.contains("restarting it alone"), "{log}");
}

fn its_wild_write_into_the_segment_faults_and_never_lands(mode: Mode) {
    let host = pair(mode);
    both_running(&host);
    host.trigger("other", "bump");
    wait_line(&host, "other", "bumped to 1", 1);
    // `bump` is an atomic add on the worker's word of the `testkit` region: a store into the
    // segment, which the isolated worker's mapping refuses.
    let w = crash_alone(&host, "bump", 1);
    assert_eq!(w.last_exit.and_then(|e| e.signal), Some(libc::SIGSEGV));
    let log = host.log_text();
    assert!(
        lines_of(&log, "iso", "bumped to").is_empty(),
        "the write landed:\n{log}"
    );
    // The restarted worker still reads the region, and finds its word untouched; the attached
    // worker's word kept its value: shared memory was neither written nor reset.
    host.trigger("iso", "peek");
    wait_line(&host, "iso", "counter is 0", 1);
    host.trigger("other", "bump");
    wait_line(&host, "other", "bumped to 2", 1);
}

fn its_latch_wakes_it_and_it_writes_nothing(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("iso:isolated,other")
            .setting("testkit", "locks = \"on\""),
    );
    both_running(&host);
    host.trigger("iso", "log_latch");
    let line = wait_line(&host, "iso", "my latch is ", 1);
    let raw = line.rsplit(' ').next().unwrap().to_owned();
    // Two sets, each a wake-up: the isolated owner counts sets instead of resetting a flag.
    for n in 1..=2 {
        host.trigger("other", &format!("set_latch_raw {raw}"));
        wait_line(&host, "other", "set raw latch: true", n);
        wait_line(&host, "iso", "woke on latch", n);
    }
    // What would write the segment is refused, not a fault.
    host.trigger("other", "log_latch");
    let line = wait_line(&host, "other", "my latch is ", 1);
    let theirs = line.rsplit(' ').next().unwrap().to_owned();
    host.trigger("iso", &format!("set_latch_raw {theirs}"));
    wait_line(&host, "iso", "set raw latch: false", 1);
    host.trigger("iso", "try_lock counter");
    let refused = wait_line(&host, "iso", "lock refused", 1);
    assert!(
        refused.contains("an isolated worker or connection handler takes no locks"),
        "{refused}"
    );
    host.trigger("other", "try_lock counter");
    wait_line(&host, "other", "took lock counter", 1);
    let s = host.status();
    assert_eq!(find(&s, "iso").restarts, 0, "{}", host.log_text());
    assert_eq!(s.host.generation, 1);
}

fn it_keeps_its_settings_and_reloads(mode: Mode) {
    let spec = Spec::new(mode)
        .testkit("iso:isolated")
        .setting("testkit", "announce = true");
    let host = Host::start(spec.clone());
    wait_line(&host, "iso", "up message=", 1);
    host.rewrite_config(&spec.clone().setting("testkit", "message = \"second\""));
    host.signal(libc::SIGHUP);
    wait_line(&host, "iso", "reloaded: message=second", 1);
    assert_eq!(host.worker("iso").restarts, 0, "{}", host.log_text());
}

fn it_dies_with_the_host(mode: Mode) {
    let host = pair(mode);
    let s = both_running(&host);
    let iso = find(&s, "iso").pid.unwrap();
    host.signal(libc::SIGKILL);
    wait_gone(&[iso], Duration::from_secs(1));
}

fn an_attached_crash_still_resets_everything(mode: Mode) {
    let host = pair(mode);
    let before = both_running(&host);
    host.trigger("other", "segv");
    let after = host.wait_for("both running after the reset", T, |s| {
        s.host.generation == 2
            && ["iso", "other"]
                .iter()
                .all(|n| find(s, n).state == "running" && find(s, n).pid.is_some())
    });
    assert_ne!(
        find(&after, "iso").pid,
        find(&before, "iso").pid,
        "the reset ends the isolated worker too"
    );
    wait_gone(&worker_pids(&before), T);
}

fn registration_refuses_what_an_isolated_worker_cannot_do(mode: Mode) {
    let cases = [
        (
            "iso:isolated:needs_ready",
            "plugin testkit, worker \"iso\": an isolated worker cannot use needs_ready",
        ),
        (
            "iso:isolated,b:after=iso",
            "worker b (plugin testkit): start_after names worker \"iso\", which is isolated",
        ),
    ];
    for (workers, want) in cases {
        let dir = Dir::new(&Spec::new(mode).testkit(workers));
        let (code, out) = run_expect_failure(&dir);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains(want), "{workers}: {out}");
    }
}

/// A handle to a running isolated worker says it runs: `WorkerHandle::by_name("w")` and
/// `wait_for_startup` in a worker launched over the control socket give `Running` with the pid
/// status shows (the isolated worker cannot write its slot to say its entry runs).
fn a_handle_sees_a_running_isolated_worker_run(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("w:isolated").host("max_worker_processes = 4"));
    let s = host.wait_for("w running", T, |s| find(s, "w").pid.is_some());
    let w = find(&s, "w");
    let out = host.cli(&["launch", "testkit", "testkit_by_name", "--name", "finder", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let log = host.wait_log("by_name no-such-worker:", T);
    let line = log
        .lines()
        .find(|l| l.contains("by_name w:"))
        .unwrap_or_else(|| panic!("no by_name line for w: {log}"));
    assert!(
        line.contains(&format!(
            "slot {} generation {} status Ok(Running {{ pid: {} }})",
            w.slot,
            w.generation,
            w.pid.unwrap()
        )),
        "{line} / {w:?}"
    );
    let out = host.cli(&["terminate", "finder", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An isolated worker restarted into a segment whose header is corrupt refuses it (exit 3,
/// before it turns isolated), and the host resets the segment rather than restarting the worker
/// alone into the same corrupt segment. No status call until the reset: a connection child would
/// find the header corrupt itself.
fn a_corrupt_header_found_by_an_isolated_worker_resets_the_host(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("iso:isolated")
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    host.wait_for("iso running", T, |s| find(s, "iso").pid.is_some());
    // The host's two spares check the header when they start too: corrupting it while one is
    // still starting would let that spare, not the isolated worker, find it.
    host.wait_for("both spares waiting", T, |s| s.host.slots.spares_waiting == 2);
    let off = std::mem::offset_of!(steward_host::shared::shmem::Header, generation) as u64;
    write_into_segment(host.pid, off, &7u64.to_le_bytes());
    host.trigger("iso", "segv");
    let log = host.wait_log("found the segment header corrupt too", T);
    assert!(
        log.contains("header check `generation` failed: found 7, expected 1"),
        "{log}"
    );
    let s = host.wait_for("iso running after the reset", T, |s| {
        s.host.generation == 2 && find(s, "iso").state == "running" && find(s, "iso").pid.is_some()
    });
    assert_eq!(s.host.state, "running");
}

both_modes!(
    a_corrupt_header_found_by_an_isolated_worker_resets_the_host,
    a_handle_sees_a_running_isolated_worker_run,
    an_isolated_worker_that_crashes_is_restarted_alone,
    its_wild_write_into_the_segment_faults_and_never_lands,
    its_latch_wakes_it_and_it_writes_nothing,
    it_keeps_its_settings_and_reloads,
    it_dies_with_the_host,
    an_attached_crash_still_resets_everything,
    registration_refuses_what_an_isolated_worker_cannot_do,
);
