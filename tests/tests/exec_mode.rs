//! Exec launch mode: children are fresh programs that find everything again by name. Tests that
//! compare the modes run in both and assert what each mode promises.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(10);

fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// The lowest address at which the `steward` binary is mapped in `pid`.
fn binary_base(pid: i32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let exe = std::fs::canonicalize(&build().bin).unwrap();
    maps.lines()
        .filter(|l| l.ends_with(exe.to_str().unwrap()))
        .filter_map(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .min()
        .expect("the binary is mapped")
}

/// What each open fd of `pid` points at (nothing for a process that is gone).
fn fds(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut v: Vec<(i32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect();
    v.sort();
    v
}

fn children_are_fresh_programs_in_exec_mode(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("a,b"));
    // Once both entries run, each worker's runtime (its eventfd included) exists: a pid alone
    // may belong to a worker still setting it up.
    let s = host.wait_for("both entries running", Duration::from_secs(15), |s| {
        ["a", "b"].iter().all(|n| find(s, n).launch_us.is_some())
    });
    let (a, b) = (find(&s, "a").pid.unwrap(), find(&s, "b").pid.unwrap());
    let bin = std::fs::canonicalize(&build().bin).unwrap();
    assert_eq!(exe_of(a), bin, "a worker runs the steward binary");
    let aslr = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").unwrap_or_default();
    match mode {
        Mode::Exec if aslr.trim() != "0" => {
            assert_ne!(
                binary_base(a),
                binary_base(b),
                "exec-mode siblings get their own address-space layout"
            );
            assert_ne!(binary_base(a), binary_base(host.pid));
        }
        Mode::Exec => eprintln!("ASLR is off on this machine: base addresses not compared"),
        Mode::Fork => assert_eq!(
            binary_base(a),
            binary_base(b),
            "forked siblings share the supervisor's layout"
        ),
    }
    // Exactly the intended fds: stdio, the segment, the host-death pipe, and the worker's own latch
    // eventfd. No listen socket, lock file, self-pipe or parameter blob.
    let open = fds(a);
    let rest: Vec<&(i32, String)> = open.iter().filter(|(fd, _)| *fd > 2).collect();
    let memfds = rest
        .iter()
        .filter(|(_, t)| t.starts_with("/memfd:steward-shmem"))
        .count();
    let pipes = rest.iter().filter(|(_, t)| t.starts_with("pipe:")).count();
    let latches = rest.iter().filter(|(_, t)| t == "anon_inode:[eventfd]").count();
    assert_eq!(memfds, 1, "{open:?}");
    assert_eq!(pipes, 1, "the death pipe: {open:?}");
    assert_eq!(latches, 1, "the latch: {open:?}");
    assert_eq!(rest.len(), 3, "no other fd may leak into a worker: {open:?}");
    assert!(
        !rest
            .iter()
            .any(|(_, t)| t.contains("socket:") || t.contains("steward.pid") || t.contains("params")),
        "{open:?}"
    );
    if mode == Mode::Exec {
        assert!(
            rest.iter()
                .any(|(fd, t)| *fd == 4 && t.starts_with("/memfd:steward-shmem")),
            "segment on fd 4: {open:?}"
        );
        assert!(
            rest.iter().any(|(fd, t)| *fd == 5 && t.starts_with("pipe:")),
            "death pipe on fd 5: {open:?}"
        );
    }
}

fn an_entry_may_live_in_another_preloaded_library(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .plugin("hello")
            .setting("hello", "workers = 1")
            .setting("hello", "interval = \"20ms\"")
            .setting("hello", "greeting = \"borrowed\"")
            .testkit("guest:lib=hello:entry=greeter"),
    );
    let g = host.worker("guest");
    assert_eq!(
        (g.plugin.as_str(), g.function.as_str(), g.state.as_str()),
        ("testkit", "greeter", "running")
    );
    let log = host.wait_log("worker guest[", T);
    host.wait_for("guest greets", T, |_| {
        let l = host.log_text();
        l.lines()
            .any(|l| l.contains("worker guest[") && l.contains("borrowed #"))
    });
    assert!(!log.contains("fatal"), "{log}");
}

fn copy_plugins(dir: &std::path::Path, names: &[&str]) {
    for n in names {
        std::fs::copy(
            build().plugin_dir.join(format!("lib{n}.so")),
            dir.join(format!("lib{n}.so")),
        )
        .unwrap();
    }
}

fn a_plugin_file_replaced_or_removed_after_start(mode: Mode) {
    let plugins = tempfile::tempdir().unwrap();
    copy_plugins(plugins.path(), &["testkit"]);
    let mut spec = Spec::new(mode)
        .testkit("a,b")
        .setting("testkit", "restart_delay = \"10ms\"\nannounce = true");
    spec.plugin_dir = Some(plugins.path().to_owned());
    let host = Host::start(spec);
    // The host runs before its workers' entries do: an executed worker still loading the plugin
    // when the file is replaced below would fail on the new file before any trigger.
    host.wait_log_count("up message=", 2, T);
    let lib = plugins.path().join("libtestkit.so");

    // Replace the file the way package managers do: a new inode renamed over the old one.
    let tmp = plugins.path().join("libtestkit.so.new");
    std::fs::write(&tmp, "not a library any more\n").unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    host.trigger("a", "exit 1");
    match mode {
        Mode::Exec => {
            let s = host.wait_for("a failed to start again", T, |s| find(s, "a").state == "failed");
            let reason = find(&s, "a").last_exit.unwrap().reason;
            assert!(
                reason.contains("libtestkit.so") && reason.contains("cannot load"),
                "{reason}"
            );
        }
        Mode::Fork => {
            // Forked children run the code the supervisor loaded at start: the file does not matter.
            host.wait_for("a restarted", T, |s| {
                find(s, "a").restarts == 1 && find(s, "a").state == "running"
            });
        }
    }
    std::fs::remove_file(&lib).unwrap();
    host.trigger("b", "exit 1");
    match mode {
        Mode::Exec => {
            let s = host.wait_for("b failed to start again", T, |s| find(s, "b").state == "failed");
            let reason = find(&s, "b").last_exit.unwrap().reason;
            assert!(
                reason.contains("libtestkit.so") && reason.contains("no such file"),
                "{reason}"
            );
            host.assert_stays("no restart loop", Duration::from_millis(200), |s| {
                find(s, "a").state == "failed" && find(s, "b").state == "failed" && find(s, "b").restarts == 1
            });
        }
        Mode::Fork => {
            host.wait_for("b restarted", T, |s| {
                find(s, "b").restarts == 1 && find(s, "b").state == "running"
            });
        }
    }
    let s = host.status();
    assert_eq!(
        (s.host.state.as_str(), s.host.generation),
        ("running", 1),
        "the host neither crashed nor reset"
    );
    if mode == Mode::Exec {
        // Spares started after the file broke die while loading it; they are not replaced, so
        // nothing respawns in a loop (at most one replacement per spare that was used).
        let deaths = |h: &Host| h.log_text().matches("spare child (pid").count();
        host.assert_stays("no spare respawn loop", Duration::from_millis(400), |_| {
            deaths(&host) <= 2
        });
        // The last status call's connection child may still be exiting: wait for it, not longer.
        host.wait_for("no child left or respawning", T, |_| children_of(host.pid).is_empty());
        assert!(deaths(&host) <= 2, "{}", host.log_text());
    }
}

fn feed_blob(bytes: Option<&[u8]>) -> (i32, String) {
    let mut cmd = Command::new(&build().bin);
    cmd.arg("child").stdin(Stdio::null());
    if let Some(b) = bytes {
        let f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &f, b).unwrap();
        std::io::Seek::rewind(&mut &f).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        // SAFETY: dup2 in the child before exec; `f` stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps FD_CLOEXEC, so clear it explicitly.
                if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = run_bounded(cmd, Duration::from_secs(10));
        drop(f);
        return (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
    }
    let out = run_bounded(cmd, Duration::from_secs(10));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bad_parameter_blobs_are_refused_with_exit_2(_mode: Mode) {
    let mut good_header = b"STWBLOB\x01".to_vec();
    good_header.extend_from_slice(&1u32.to_le_bytes());
    let mut other_version = b"STWBLOB\x01".to_vec();
    other_version.extend_from_slice(&99u32.to_le_bytes());
    other_version.extend_from_slice(&2u32.to_le_bytes());
    other_version.extend_from_slice(b"{}");
    let mut truncated = good_header.clone();
    truncated.extend_from_slice(&500u32.to_le_bytes());
    truncated.extend_from_slice(b"{\"kind\":");
    let mut garbage_payload = good_header.clone();
    garbage_payload.extend_from_slice(&4u32.to_le_bytes());
    garbage_payload.extend_from_slice(b"????");
    for (name, blob, want) in [
        ("other version", Some(&other_version[..]), "version 99"),
        ("truncated payload", Some(&truncated[..]), "truncated"),
        ("truncated header", Some(&b"STWB"[..]), "truncated"),
        ("garbage payload", Some(&garbage_payload[..]), "malformed payload"),
        (
            "not a blob",
            Some(&b"hello, this is not a blob at all"[..]),
            "bad magic",
        ),
        ("no fd 3", None, "no parameter blob on fd 3"),
    ] {
        let (code, err) = feed_blob(blob);
        assert_eq!(code, 2, "{name}: exit code; stderr: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

fn restarts_are_served_by_ready_spare_children(mode: Mode) {
    let spec = Spec::new(mode)
        .testkit("a")
        .setting("testkit", "restart_delay = \"0ms\"")
        .setting("testkit", "announce = true");
    let host = Host::start(spec.clone());
    let first = host.worker("a").pid.unwrap();
    // Both modes keep two spares ready once nothing else is being launched (fork mode since
    // decision 133). A spare is a child that holds no socket (so not the connection child of a
    // status call that may still be exiting); in exec mode it still holds its parameter blob.
    let spares = |host: &Host, s: &Status| -> Vec<i32> {
        let workers = worker_pids(s);
        children_of(host.pid)
            .into_iter()
            .filter(|p| *p != first && !workers.contains(p))
            .filter(|p| {
                let open = fds(*p);
                !open.iter().any(|(_, t)| t.starts_with("socket:"))
                    && (mode == Mode::Fork || open.iter().any(|(_, t)| t.starts_with("/memfd:steward-params")))
            })
            .collect()
    };
    let s = host.wait_for("two spare children", T, |s| spares(&host, s).len() == 2);
    let before = spares(&host, &s);
    // A reload while the spares wait: the worker a spare becomes must start with the new value.
    host.rewrite_config(&spec.clone().setting("testkit", "message = \"fresh\""));
    host.signal(libc::SIGHUP);
    host.wait_log("configuration reloaded", T);
    host.trigger("a", "exit 1");
    let s = host.wait_for("a restarted", T, |s| {
        find(s, "a").restarts == 1 && find(s, "a").state == "running"
    });
    let second = find(&s, "a").pid.unwrap();
    assert!(
        before.contains(&second),
        "the new worker {second} should be one of the spares {before:?}"
    );
    host.wait_for("a announced", T, |_| {
        host.log_text()
            .contains(&format!("a[{second}] testkit: up message=fresh"))
    });
    // A worker that was a spare holds exactly the fds any worker holds (its blob is closed).
    let open = fds(second);
    let rest: Vec<&(i32, String)> = open.iter().filter(|(fd, _)| *fd > 2).collect();
    assert_eq!(rest.len(), 3, "{open:?}");
    assert!(
        !rest.iter().any(|(_, t)| t.contains("params")),
        "the parameter blob is closed: {open:?}"
    );
    assert_eq!(exe_of(second), std::fs::canonicalize(&build().bin).unwrap());
    // The pool is refilled once the loop is idle again.
    host.wait_for("the pool refilled", T, |s| spares(&host, s).len() == 2);
}

both_modes!(
    children_are_fresh_programs_in_exec_mode,
    an_entry_may_live_in_another_preloaded_library,
    a_plugin_file_replaced_or_removed_after_start,
    bad_parameter_blobs_are_refused_with_exit_2,
    restarts_are_served_by_ready_spare_children,
);
