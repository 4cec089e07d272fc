//! Dynamic workers from the control socket, end to end: `steward launch` starts a worker of a
//! preloaded plugin (the connection child is the requester, the launcher shows as `control`),
//! status shows it with its origin, slot and generation, and `steward terminate` stops it for good.
//! Bad input (an unknown plugin, an entry that does not resolve, an unknown name, malformed
//! requests) is refused with a message naming it, and the host carries on unharmed.
//! `WorkerHandle::by_name` finds static and dynamic workers from a worker. Every test runs in fork
//! and exec mode.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Output;
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);

fn spec(mode: Mode) -> Spec {
    Spec::new(mode).testkit("w").host("max_worker_processes = 4")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: stdout {} stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The CLI refused with exit 1, saying `says` on stderr.
fn refused(out: &Output, says: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {} stderr {err}", text(&out.stdout));
    assert!(err.contains(says), "expected {says:?} in: {err}");
}

/// `launched NAME: slot S generation G [pid P]` as (S, G, P).
fn parse_launched(line: &str, name: &str) -> (u32, u64, Option<i32>) {
    let rest = line
        .trim()
        .strip_prefix(&format!("launched {name}: slot "))
        .unwrap_or_else(|| panic!("not a launch line: {line}"));
    let words: Vec<&str> = rest.split(' ').collect();
    assert_eq!(words.get(1), Some(&"generation"), "{line}");
    let pid = match words.get(3) {
        Some(&"pid") => Some(words[4].parse().unwrap()),
        None => None,
        _ => panic!("{line}"),
    };
    (words[0].parse().unwrap(), words[2].parse().unwrap(), pid)
}

fn launch_and_terminate_from_the_cli(mode: Mode) {
    let host = Host::start(spec(mode));
    let fixed = host.wait_for("w running", T, |s| find(s, "w").pid.is_some());
    let w = find(&fixed, "w");
    assert!(!w.dynamic && w.launcher.is_none(), "{w:?}");

    let out = host.cli(&[
        "launch",
        "testkit",
        "testkit_dyn_child",
        "--name",
        "job",
        "--arg",
        "7",
        "--wait",
    ]);
    let (slot, generation, pid) = parse_launched(&ok(&out, "launch --wait"), "job");
    let pid = pid.expect("--wait prints the pid");
    assert!(alive(pid));
    let s = host.status();
    let job = find(&s, "job");
    assert!(job.dynamic, "{job:?}");
    assert_eq!(job.launcher.as_deref(), Some("control"));
    assert_eq!((job.slot, job.generation), (slot, generation));
    assert_eq!(job.pid, Some(pid));
    assert_eq!(job.state, "running");
    assert_eq!(job.plugin, "testkit");
    assert_eq!(job.function, "testkit_dyn_child");
    assert!(slot >= fixed.workers.len() as u32, "a dynamic slot: {slot}");
    let table = ok(&host.cli(&["status"]), "status");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {table}"))
            .to_owned()
    };
    assert!(table.contains("ORIGIN"), "{table}");
    assert!(row("job").contains("launched by control"), "{table}");
    assert!(row("w").contains("static"), "{table}");

    let out = host.cli(&["terminate", "job", "--wait"]);
    let said = ok(&out, "terminate --wait");
    assert!(
        said.starts_with(&format!("terminated job: slot {slot} generation {generation} (")),
        "{said}"
    );
    wait_gone(&[pid], T);
    let s = host.status();
    assert!(s.workers.iter().all(|w| w.name != "job"), "{:?}", s.workers);
    // The static worker did not notice.
    assert_eq!(find(&s, "w").pid, w.pid);

    // Without --wait: the handle at once, no pid; terminate returns once asked.
    let out = host.cli(&["launch", "testkit", "testkit_dyn_child", "--name", "job2"]);
    let (slot2, generation2, pid2) = parse_launched(&ok(&out, "launch"), "job2");
    assert_eq!(pid2, None);
    assert!(
        generation2 > generation,
        "a new generation: {generation2} after {generation}"
    );
    let s = host.wait_for("job2 running", T, |s| {
        s.workers.iter().any(|w| w.name == "job2" && w.pid.is_some())
    });
    let job2 = find(&s, "job2");
    assert_eq!((job2.slot, job2.generation), (slot2, generation2));
    let said = ok(&host.cli(&["terminate", "job2"]), "terminate");
    assert!(said.starts_with("terminating job2:"), "{said}");
    host.wait_for("job2 gone", T, |s| s.workers.iter().all(|w| w.name != "job2"));
    wait_gone(&[job2.pid.unwrap()], T);

    // A static worker is found by name too; it stays in status, stopped for good: not restarted
    // after its policy's one second.
    let said = ok(&host.cli(&["terminate", "w", "--wait"]), "terminate w --wait");
    assert!(
        said.starts_with(&format!("terminated w: slot {} generation {} (", w.slot, w.generation)),
        "{said}"
    );
    wait_gone(&[w.pid.unwrap()], T);
    let s = host.status();
    assert_eq!(find(&s, "w").state, "stopped");
    host.assert_stays("w stays stopped", Duration::from_millis(1300), |s| {
        find(s, "w").pid.is_none()
    });
}
both_modes!(launch_and_terminate_from_the_cli);

/// Sends raw bytes on a new control connection and reads the one answer line.
fn raw(host: &Host, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(host.socket()).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(bytes).expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("an answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn refusal(v: &serde_json::Value) -> String {
    assert_eq!(v["ok"], false, "{v}");
    v["error"].as_str().expect("an error message").to_owned()
}

fn bad_input_is_refused_naming_it_and_the_host_is_unharmed(mode: Mode) {
    let host = Host::start(spec(mode));
    let before = host.wait_for("w running", T, |s| find(s, "w").pid.is_some());
    let w_pid = find(&before, "w").pid;

    // A plugin that is not preloaded: refused at once, naming it.
    refused(
        &host.cli(&["launch", "nosuch", "testkit_dyn_child", "--name", "x", "--wait"]),
        "plugin \"nosuch\" is not preloaded",
    );
    // An entry that does not resolve: launched, then stopped with the function's name.
    let out = host.cli(&["launch", "testkit", "testkit_no_such_entry", "--name", "y", "--wait"]);
    refused(&out, "testkit_no_such_entry");
    refused(&out, "worker y");
    host.wait_for("y gone", T, |s| s.workers.iter().all(|w| w.name != "y"));
    // An unknown name for terminate.
    refused(
        &host.cli(&["terminate", "nobody-here"]),
        "no live worker named \"nobody-here\"",
    );
    // An invalid worker name: the registration's own check, naming the field.
    refused(
        &host.cli(&["launch", "testkit", "testkit_dyn_child", "--name", "bad name\n"]),
        "worker name",
    );
    // Usage errors are the command line's: exit 2.
    assert_eq!(
        host.cli(&["launch", "testkit", "testkit_dyn_child"]).status.code(),
        Some(2)
    );
    assert_eq!(host.cli(&["terminate"]).status.code(), Some(2));

    // Malformed requests on the socket itself.
    for (bytes, says) in [
        (&br#"{"v":1,"cmd":"launch"}"#[..], "missing \"plugin\""),
        (
            br#"{"v":1,"cmd":"launch","plugin":"testkit","entry":"e","name":7}"#,
            "\"name\" must be a string",
        ),
        (
            br#"{"v":1,"cmd":"launch","plugin":"testkit","entry":"e","name":"n","arg":"x"}"#,
            "\"arg\" must be a whole number",
        ),
        (
            br#"{"v":1,"cmd":"launch","plugin":"testkit","entry":"e","name":"n","restart":[1]}"#,
            "\"restart\" must be a string",
        ),
        (
            br#"{"v":1,"cmd":"launch","plugin":"testkit","entry":"e","name":"n","wait":1}"#,
            "\"wait\" must be true or false",
        ),
        (br#"{"v":1,"cmd":"terminate","name":null}"#, "missing \"name\""),
        (
            br#"{"v":1,"cmd":"terminate","name":"w","timeout_ms":-5,"wait":true}"#,
            "\"timeout_ms\" must be a whole number",
        ),
        (b"\xff\xfe{\"v\":1,\"cmd\":\"launch\"\x00}", "malformed request"),
    ] {
        let mut line = bytes.to_vec();
        line.push(b'\n');
        let msg = refusal(&raw(&host, &line));
        assert!(msg.contains(says), "{}: expected {says:?} in {msg}", text(bytes));
    }
    // A name past the bound, and a library path in place of a plugin: refused, nothing loaded.
    let long = "n".repeat(10_000);
    let msg = refusal(&raw(
        &host,
        format!("{{\"v\":1,\"cmd\":\"launch\",\"plugin\":\"testkit\",\"entry\":\"testkit_dyn_child\",\"name\":\"{long}\"}}\n")
            .as_bytes(),
    ));
    assert!(msg.contains("worker name"), "{msg}");
    let msg = refusal(&raw(
        &host,
        b"{\"v\":1,\"cmd\":\"launch\",\"plugin\":\"/tmp/evil.so\",\"entry\":\"testkit_dyn_child\",\"name\":\"e\"}\n",
    ));
    assert!(msg.contains("is not preloaded") || msg.contains("library"), "{msg}");

    // Unharmed: the same static worker, no dynamic worker left, and a good launch still works.
    let s = host.status();
    assert_eq!(s.host.state, "running");
    assert_eq!(find(&s, "w").pid, w_pid);
    assert!(s.workers.iter().all(|w| !w.dynamic), "{:?}", s.workers);
    let out = host.cli(&["launch", "testkit", "testkit_dyn_child", "--name", "fine", "--wait"]);
    let (_, _, pid) = parse_launched(&ok(&out, "launch after bad input"), "fine");
    ok(&host.cli(&["terminate", "fine", "--wait"]), "terminate fine");
    wait_gone(&[pid.unwrap()], T);
}
both_modes!(bad_input_is_refused_naming_it_and_the_host_is_unharmed);

/// `WorkerHandle::by_name` in a worker launched over the control socket: the static worker `w`
/// and itself are found with the slot and generation status shows; an unknown name is not.
fn by_name_finds_static_and_dynamic_workers(mode: Mode) {
    let host = Host::start(spec(mode));
    host.wait_for("w running", T, |s| find(s, "w").pid.is_some());
    let out = host.cli(&["launch", "testkit", "testkit_by_name", "--name", "finder", "--wait"]);
    let (slot, generation, pid) = parse_launched(&ok(&out, "launch finder"), "finder");
    let log = host.wait_log("by_name no-such-worker:", T);
    let s = host.status();
    let w = find(&s, "w");
    let line = |name: &str| {
        log.lines()
            .find(|l| l.contains(&format!("by_name {name}:")))
            .unwrap_or_else(|| panic!("no by_name line for {name}: {log}"))
            .to_owned()
    };
    let l = line("w");
    assert!(
        l.contains(&format!(
            "slot {} generation {} status Ok(Running {{ pid: {} }})",
            w.slot,
            w.generation,
            w.pid.unwrap()
        )),
        "{l} / {w:?}"
    );
    let l = line("finder");
    assert!(
        l.contains(&format!(
            "slot {slot} generation {generation} status Ok(Running {{ pid: {} }})",
            pid.unwrap()
        )),
        "{l}"
    );
    assert!(line("no-such-worker").ends_with("NotFound"), "{log}");
    ok(&host.cli(&["terminate", "finder", "--wait"]), "terminate finder");
}
both_modes!(by_name_finds_static_and_dynamic_workers);

/// Only the host's user (or root) may launch: the connection child checks the peer's uid before
/// it reads a request, so another user is refused even with the socket opened up to everyone,
/// and nothing is launched.
fn another_user_cannot_launch(mode: Mode) {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::start(spec(mode));
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: cannot switch to another uid");
        return;
    }
    std::fs::set_permissions(host.dir.run_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(host.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let path = host.socket();
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child drops to uid 65534, makes one request and leaves with _exit.
    let said = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let msg = (|| {
                // SAFETY: dropping privileges in the forked child.
                if unsafe { libc::setgid(65534) } != 0 || unsafe { libc::setuid(65534) } != 0 {
                    return "cannot setuid".to_owned();
                }
                let launch = steward_host::shared::control::Launch {
                    plugin: "testkit",
                    entry: "testkit_dyn_child",
                    name: "intruder",
                    arg: 0,
                    restart: None,
                    wait: None,
                };
                match steward_host::shared::control::Client::connect(&path).and_then(|mut c| c.launch(&launch)) {
                    Ok(l) => format!("launched {l:?}"),
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
    };
    assert!(said.contains("refused") && said.contains("permission denied"), "{said}");
    let s = host.status();
    assert!(s.workers.iter().all(|w| w.name != "intruder"), "{:?}", s.workers);
}
both_modes!(another_user_cannot_launch);
