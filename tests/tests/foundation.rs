//! The foundation: preload, freeze, supervise workers under the exit-code contract, answer status,
//! shut down cleanly. Every test runs in fork and in exec mode.

use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(10);

fn hello(mode: Mode) -> Spec {
    Spec::new(mode).plugin("hello").host("max_worker_processes = 5")
}

fn demo_workers_run_as_live_children_of_a_single_threaded_host(mode: Mode) {
    let host = Host::start(hello(mode));
    let s = host.wait_for("3 hello workers running", T, |s| {
        s.workers.iter().filter(|w| w.state == "running").count() == 3
    });
    assert_eq!(s.host.state, "running");
    assert_eq!(s.host.launch_mode, mode.as_str());
    assert_eq!(s.host.pid as i32, host.pid);
    assert_eq!(s.host.generation, 1);
    for w in &s.workers {
        assert!(w.name.starts_with("hello-"), "{w:?}");
        assert_eq!(
            (w.worker_type.as_str(), w.plugin.as_str(), w.function.as_str()),
            ("greeter", "hello", "greeter")
        );
        let pid = w.pid.expect("running worker has a pid");
        assert!(alive(pid), "worker {} pid {pid} is not alive", w.name);
        assert_eq!(
            parent_of(pid),
            Some(host.pid),
            "worker {} is not a child of the host",
            w.name
        );
        assert!(w.started_at.is_some());
        assert_eq!(w.restarts, 0);
    }
    assert_eq!(threads(host.pid), 1, "the supervisor must be single-threaded");

    // The CLI shows the same, as JSON and as a table.
    let out = host.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_eq!(v["host"]["state"], "running");
    assert_eq!(v["workers"].as_array().map(Vec::len), Some(3));
    assert!(v["workers"][0]["last_exit"].is_null());
    let out = host.cli(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("hello-1") && table.contains("running") && table.contains("RESTARTS"),
        "{table}"
    );

    // Plugin log lines carry the worker's name and plugin.
    host.wait_log("hello-1[", T);
    let log = host.wait_log("hello: started", T);
    assert!(
        log.lines()
            .any(|l| l.contains("worker hello-2[") && l.contains("hello: started")),
        "{log}"
    );
}

fn slots_are_static_workers_plus_max_worker_processes(mode: Mode) {
    let host = Host::start(hello(mode).setting("hello", "workers = 4").host("max_connections = 3"));
    let s = host.status();
    assert_eq!(s.workers.len(), 4);
    assert_eq!(s.host.slots.workers, 4 + 5);
    assert_eq!(s.host.slots.connections, 3);
    assert!(s.host.shmem_bytes > 0);
}

fn registering_after_the_freeze_is_refused(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("late:late_register"));
    let log = host.wait_log("late registration", T);
    assert!(log.contains("late registration refused: registry frozen"), "{log}");
    assert!(!log.contains("late registration succeeded"), "{log}");
    assert_eq!(
        host.status().workers.len(),
        1,
        "nothing may be registered after the freeze"
    );
}

fn a_setting_longer_than_the_first_buffer_reaches_the_plugin(mode: Mode) {
    // Regression: a value over 256 bytes made the SDK's retry with a larger buffer look like a
    // second definition ("defined twice").
    let names: Vec<String> = (0..80).map(|i| format!("worker-{i:03}")).collect();
    let host = Host::start(Spec::new(mode).testkit(&names.join(",")));
    let s = host.status();
    assert_eq!(s.workers.len(), 80);
    assert_eq!(find(&s, "worker-079").plugin, "testkit");
}

fn exit_0_leaves_the_worker_stopped(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a,b")
            .setting("testkit", "restart_delay = \"50ms\""),
    );
    host.trigger("a", "exit 0");
    let s = host.wait_for("a stopped", T, |s| find(s, "a").state == "stopped");
    let a = find(&s, "a");
    assert_eq!(a.pid, None);
    assert_eq!(a.last_exit.as_ref().and_then(|e| e.code), Some(0));
    host.assert_stays("a stays stopped", Duration::from_millis(300), |s| {
        let a = find(s, "a");
        a.state == "stopped" && a.restarts == 0
    });
    assert_eq!(host.worker("b").state, "running");
}

fn exit_1_restarts_after_the_delay_with_a_new_pid(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a")
            .setting("testkit", "restart_delay = \"200ms\""),
    );
    let before = host.worker("a");
    host.trigger("a", "exit 1");
    let s = host.wait_for("a waiting to restart", T, |s| find(s, "a").state == "waiting_restart");
    assert!(find(&s, "a").next_restart_at.is_some());
    let s = host.wait_for("a restarted", T, |s| {
        let a = find(s, "a");
        a.state == "running" && a.restarts == 1
    });
    let after = find(&s, "a");
    assert_ne!(after.pid, before.pid, "a restarted worker has a new pid");
    let exit = after.last_exit.expect("last exit recorded");
    assert_eq!(exit.code, Some(1));
    // The restart waited for the policy's delay.
    let ms = |t: &str| -> u64 {
        let (_, rest) = t.split_once('T').unwrap();
        let p: Vec<f64> = rest
            .trim_end_matches('Z')
            .split(':')
            .map(|x| x.parse().unwrap())
            .collect();
        ((p[0] * 3600.0 + p[1] * 60.0 + p[2]) * 1000.0).round() as u64
    };
    let gap = ms(after.started_at.as_deref().unwrap()) - ms(&exit.at);
    assert!(gap >= 195, "restarted {gap} ms after the exit, the delay is 200 ms");
    assert_eq!(s.host.generation, 1, "exit 1 is not a crash");
}

fn exit_2_leaves_the_worker_failed_with_its_reason(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a")
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    host.trigger("a", "exit 2");
    let s = host.wait_for("a failed", T, |s| find(s, "a").state == "failed");
    let e = find(&s, "a").last_exit.expect("last exit");
    assert_eq!(e.code, Some(2));
    assert!(e.reason.contains("told to exit 2"), "{e:?}");
    host.assert_stays("a stays failed", Duration::from_millis(200), |s| {
        find(s, "a").state == "failed"
    });
}

fn a_panic_restarts_the_worker_and_logs_the_message(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a")
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    host.trigger("a", "panic kaboom-7f3");
    let s = host.wait_for("a restarted after its panic", T, |s| {
        find(s, "a").restarts == 1 && find(s, "a").state == "running"
    });
    let e = find(&s, "a").last_exit.expect("last exit");
    assert_eq!(e.code, Some(1));
    assert!(e.reason.contains("kaboom-7f3"), "{e:?}");
    assert_eq!(s.host.generation, 1, "a panic is not a crash");
    let log = host.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("worker a[") && l.contains("testkit") && l.contains("kaboom-7f3")),
        "the panic message is logged with the worker's name:\n{log}"
    );
}

fn segv_in_a_worker_resets_every_worker(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a,b,c,lonely:never")
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    let before = host.status();
    host.trigger("b", "segv");
    let s = host.wait_for("all restartable workers running again after the reset", T, |s| {
        s.host.generation == 2 && ["a", "b", "c"].iter().all(|n| find(s, n).state == "running")
    });
    for n in ["a", "b", "c"] {
        assert_ne!(find(&s, n).pid, find(&before, n).pid, "{n} got a new pid");
    }
    let b = find(&s, "b").last_exit.expect("b's crash is recorded");
    assert_eq!(b.signal, Some(11), "{b:?}");
    assert_eq!(find(&s, "lonely").state, "stopped", "a never-restart worker stays down");
    assert_eq!(find(&s, "lonely").pid, None);
    wait_gone(&worker_pids(&before), T);
    let log = host.log_text();
    assert!(
        log.contains("worker b") && log.contains("SIGSEGV") && log.contains("resetting shared memory"),
        "{log}"
    );
}

fn kill_segv_from_outside_resets_every_worker(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("a,b")
            .setting("testkit", "restart_delay = \"10ms\""),
    );
    let before = host.status();
    let pid = find(&before, "a").pid.unwrap();
    // SAFETY: signalling a worker of our own host.
    unsafe { libc::kill(pid, libc::SIGSEGV) };
    let s = host.wait_for("reset done", T, |s| {
        s.host.generation == 2 && s.workers.iter().all(|w| w.state == "running")
    });
    for n in ["a", "b"] {
        assert_ne!(find(&s, n).pid, find(&before, n).pid);
    }
}

fn a_missing_entry_fails_only_that_worker(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("good,typo:entry=no_such_fn,plain:entry=testkit_not_an_entry"));
    let s = host.wait_for("both bad workers failed", T, |s| {
        find(s, "typo").state == "failed" && find(s, "plain").state == "failed"
    });
    let typo = find(&s, "typo").last_exit.unwrap();
    assert_eq!(typo.code, Some(2));
    assert!(
        typo.reason.contains("no_such_fn") && typo.reason.contains("testkit"),
        "{typo:?}"
    );
    assert!(typo.reason.contains("not found"), "{typo:?}");
    let plain = find(&s, "plain").last_exit.unwrap();
    assert!(plain.reason.contains("not a Steward worker entry"), "{plain:?}");
    host.assert_stays("no restart loop", Duration::from_millis(200), |s| {
        find(s, "typo").restarts == 0 && find(s, "plain").restarts == 0 && find(s, "good").state == "running"
    });
    assert_eq!(host.status().host.generation, 1);
}

fn stop_ends_the_host_cleanly(mode: Mode) {
    let mut host = Host::start(hello(mode));
    let pids = worker_pids(&host.status());
    let out = host.cli(&["stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(host.wait_exit(T).code(), Some(0));
    host.assert_nothing_left(&pids);
}

fn smart_shutdown_waits_for_a_connection_and_stop_fast_escalates(mode: Mode) {
    let mut host = Host::start(hello(mode));
    let pids = worker_pids(&host.status());
    let mut held = Client::connect(&host.socket()).unwrap();
    held.status().unwrap();
    host.signal(libc::SIGTERM);
    host.wait_log("smart shutdown requested", T);
    // New connections are refused with a clear line, which status reports as the host's state,
    // while the held one keeps working.
    let out = host.cli(&["status"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("host stopping: the host is shutting down"),
        "{out:?}"
    );
    held.status()
        .expect("the open connection is still served during a smart shutdown");
    assert!(
        pids.iter().all(|p| alive(*p)),
        "workers keep running while a smart shutdown waits"
    );
    // The socket refuses, so `steward stop --mode fast` signals the host directly.
    let out = host.cli(&["stop", "--mode", "fast"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(host.wait_exit(T).code(), Some(0));
    drop(held);
    host.assert_nothing_left(&pids);
}

fn ctrl_c_to_the_whole_group_is_a_fast_shutdown_not_a_crash(mode: Mode) {
    let mut host = Host::start(hello(mode).host("restart_after_crash = false"));
    let pids = worker_pids(&host.status());
    // SAFETY: a terminal's Ctrl-C: SIGINT to the host's whole process group.
    unsafe { libc::kill(-host.pid, libc::SIGINT) };
    assert_eq!(host.wait_exit(T).code(), Some(0), "{}", host.log_text());
    assert!(!host.log_text().contains("crash"), "{}", host.log_text());
    host.assert_nothing_left(&pids);
}

fn each_shutdown_signal_ends_the_host_cleanly(mode: Mode) {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        let mut host = Host::start(hello(mode));
        let pids = worker_pids(&host.status());
        host.signal(sig);
        assert_eq!(host.wait_exit(T).code(), Some(0), "signal {sig}:\n{}", host.log_text());
        host.assert_nothing_left(&pids);
    }
}

fn a_worker_ignoring_sigterm_is_killed_after_shutdown_timeout(mode: Mode) {
    let mut host = Host::start(
        Spec::new(mode)
            .testkit("stubborn:ignore_term,polite")
            .host("shutdown_timeout = \"300ms\""),
    );
    host.wait_log("ignoring SIGTERM", T);
    let pids = worker_pids(&host.status());
    host.signal(libc::SIGTERM);
    assert_eq!(host.wait_exit(T).code(), Some(0));
    host.assert_nothing_left(&pids);
    let log = host.log_text();
    assert!(log.contains("SIGKILL") && log.contains("stubborn"), "{log}");
}

fn killing_the_host_leaves_no_worker_running(mode: Mode) {
    let mut host = Host::start(Spec::new(mode).testkit("a,b,stubborn:ignore_term"));
    let pids = worker_pids(&host.status());
    assert_eq!(pids.len(), 3);
    host.signal(libc::SIGKILL);
    host.wait_exit(T);
    wait_gone(&pids, Duration::from_secs(1));
}

/// Fork mode forks a large batch from two processes (decision 50): every worker must still be the
/// host's own child, with the C library's thread state its own, and die with the host.
fn a_large_batch_of_workers_are_whole_children_that_die_with_the_host(mode: Mode) {
    let names: Vec<String> = (0..40).map(|i| format!("b{i}")).collect();
    let mut host = Host::start(
        Spec::new(mode)
            .testkit(&names.join(","))
            .setting("testkit", "check_thread = true")
            .host("log_level = \"debug\""),
    );
    let s = host.wait_for("40 workers running", T, |s| {
        s.workers.iter().filter(|w| w.state == "running").count() == 40
    });
    let pids = worker_pids(&s);
    assert_eq!(pids.len(), 40);
    for &pid in &pids {
        assert_eq!(
            parent_of(pid),
            Some(host.pid),
            "worker pid {pid} is not a child of the host"
        );
    }
    let log = host.wait_log_count("testkit: thread ", 40, T);
    assert_eq!(log.matches("testkit: thread ok").count(), 40, "{log}");
    // On more than one core the helper took half of the batch; on one, the supervisor forks alone.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let helped = host.log_text().contains("a fork helper starts 20 of 40 due workers");
    assert_eq!(helped, mode == Mode::Fork && cores > 1, "{}", host.log_text());
    host.signal(libc::SIGKILL);
    host.wait_exit(T);
    wait_gone(&pids, Duration::from_secs(1));
}

/// The harness's promise to every test: once a `Host` is dropped, no process of it exists, not
/// even one the kernel is still tearing down, so the next test starts on a quiet machine.
fn a_dropped_host_leaves_no_process_at_all(mode: Mode) {
    let names: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
    let host = Host::start(Spec::new(mode).testkit(&names.join(",")));
    let s = host.wait_for("200 workers running", T, |s| {
        s.workers.iter().filter(|w| w.state == "running").count() == 200
    });
    let mut pids = worker_pids(&s);
    pids.push(host.pid);
    drop(host);
    let exists = |pid: i32| {
        // SAFETY: signal 0 only checks whether the process (a zombie included) exists.
        unsafe { libc::kill(pid, 0) == 0 }
    };
    let left: Vec<i32> = pids.into_iter().filter(|&p| exists(p)).collect();
    assert!(left.is_empty(), "processes of a dropped host still exist: {left:?}");
}

fn max_connections_refuses_the_next_client_at_once(mode: Mode) {
    let host = Host::start(hello(mode).host("max_connections = 1"));
    // Take the one slot and the one reserved for status and stop: the harness's own start-up
    // connection may not be reaped yet, so keep trying until both are held.
    let deadline = std::time::Instant::now() + T;
    let mut held = Vec::new();
    while held.len() < 2 {
        let mut c = Client::connect(&host.socket()).expect("connect");
        if c.status().is_ok() {
            held.push(c);
        }
        assert!(std::time::Instant::now() < deadline, "never got both connection slots");
    }
    let started = std::time::Instant::now();
    let out = host.cli(&["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too many connections"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
    for c in &mut held {
        c.status().expect("a held connection still works");
    }
    drop(held);
    host.wait_for("a slot is free again", T, |_| true);
}

fn the_socket_is_private_and_other_users_are_refused(mode: Mode) {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::start(hello(mode));
    let mode_bits = std::fs::metadata(host.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_bits, 0o600, "control socket mode");
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: cannot switch to another uid, checked the socket mode only");
        return;
    }
    let try_as_nobody = |path: &std::path::Path| -> String {
        let path = path.to_owned();
        // Run a client in a forked child that drops to uid 65534.
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe-enough code and exits with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(r);
                let msg = (|| {
                    // SAFETY: dropping privileges in the forked child.
                    if unsafe { libc::setgid(65534) } != 0 || unsafe { libc::setuid(65534) } != 0 {
                        return "cannot setuid".to_owned();
                    }
                    match Client::connect(&path).and_then(|mut c| c.status()) {
                        Ok(_) => "served".to_owned(),
                        Err(e) => e.to_string(),
                    }
                })();
                let _ = nix::unistd::write(&w, msg.as_bytes());
                // SAFETY: ending the forked child without running the test harness's atexit.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut out = String::new();
                std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).unwrap();
                let _ = nix::sys::wait::waitpid(child, None);
                out
            }
        }
    };
    let denied = try_as_nobody(&host.socket());
    assert!(
        denied.contains("Permission denied") || denied.contains("permission denied"),
        "{denied}"
    );
    // Even with the file opened up, the connection child checks the peer's uid.
    std::fs::set_permissions(host.dir.run_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(host.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = try_as_nobody(&host.socket());
    assert!(
        refused.contains("refused") && refused.contains("permission denied"),
        "{refused}"
    );
    assert_eq!(host.status().host.state, "running");
}

/// Whether `pid` runs code from an anonymous mapping wholly on transparent huge pages.
fn code_on_huge_pages(pid: i32) -> bool {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut anon_code = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        {
            // A mapping's header: range, perms, offset, device, inode[, path].
            anon_code = fields.get(1) == Some(&"r-xp") && fields.len() == 5;
        } else if anon_code && fields.first() == Some(&"AnonHugePages:") && fields.get(1) != Some(&"0") {
            return true;
        }
    }
    false
}

fn fork_mode_moves_the_code_to_huge_pages_unless_turned_off(mode: Mode) {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let thp_possible = !thp.is_empty() && !thp.contains("[never]");
    // The line that says where the code went is a debug line.
    let host = Host::start(hello(mode).host("log_level = \"debug\""));
    let s = host.wait_for("3 hello workers running", T, |s| {
        s.workers.iter().filter(|w| w.state == "running").count() == 3
    });
    let worker = s.workers[0].pid.expect("running");
    let log = host.log_text();
    match mode {
        Mode::Fork if thp_possible => {
            assert!(log.contains("machine code on huge pages"), "{log}");
            assert!(
                code_on_huge_pages(host.pid),
                "supervisor code not on huge pages:\n{log}"
            );
            // Forked workers inherit the mapping (and so take no faults for the host's code).
            assert!(code_on_huge_pages(worker), "worker code not on huge pages");
        }
        Mode::Fork => assert!(log.contains("machine code left on small pages"), "{log}"),
        Mode::Exec => {
            assert!(!log.contains("machine code"), "{log}");
            assert!(!code_on_huge_pages(host.pid) && !code_on_huge_pages(worker));
        }
    }
    drop(host);
    let host = Host::start(
        hello(mode)
            .host("huge_code_pages = false")
            .host("log_level = \"debug\""),
    );
    host.wait_for("3 hello workers running", T, |s| {
        s.workers.iter().filter(|w| w.state == "running").count() == 3
    });
    assert!(!host.log_text().contains("machine code"), "{}", host.log_text());
    assert!(!code_on_huge_pages(host.pid));
}

both_modes!(
    demo_workers_run_as_live_children_of_a_single_threaded_host,
    slots_are_static_workers_plus_max_worker_processes,
    registering_after_the_freeze_is_refused,
    a_setting_longer_than_the_first_buffer_reaches_the_plugin,
    exit_0_leaves_the_worker_stopped,
    exit_1_restarts_after_the_delay_with_a_new_pid,
    exit_2_leaves_the_worker_failed_with_its_reason,
    a_panic_restarts_the_worker_and_logs_the_message,
    segv_in_a_worker_resets_every_worker,
    kill_segv_from_outside_resets_every_worker,
    a_missing_entry_fails_only_that_worker,
    stop_ends_the_host_cleanly,
    each_shutdown_signal_ends_the_host_cleanly,
    smart_shutdown_waits_for_a_connection_and_stop_fast_escalates,
    ctrl_c_to_the_whole_group_is_a_fast_shutdown_not_a_crash,
    a_worker_ignoring_sigterm_is_killed_after_shutdown_timeout,
    killing_the_host_leaves_no_worker_running,
    a_dropped_host_leaves_no_process_at_all,
    a_large_batch_of_workers_are_whole_children_that_die_with_the_host,
    max_connections_refuses_the_next_client_at_once,
    the_socket_is_private_and_other_users_are_refused,
    fork_mode_moves_the_code_to_huge_pages_unless_turned_off,
);
