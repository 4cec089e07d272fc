//! The `steward` command line as an operator and a script use it: help and foreign flags,
//! finding the configuration, reaching a host whose file is broken, `status`'s exit codes,
//! `check`, and `start`. Every test that runs a host runs in both launch modes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use steward_tests::*;

/// Runs `steward ARGS` with `env` added and `STEWARD_CONFIG`/`STEWARD_RUNTIME_DIR` cleared unless
/// given, so the test's own environment cannot choose a host.
fn steward(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(&build().bin);
    cmd.args(args)
        .env_remove("STEWARD_CONFIG")
        .env_remove("STEWARD_RUNTIME_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, Duration::from_secs(30))
}

/// `steward status --json --runtime-dir DIR` run as uid 65534 (nobody), from a copy of the binary
/// in a directory that user can reach (the build tree may not be).
fn status_as_nobody(runtime_dir: &Path) -> Output {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("steward");
    // Copied by `cp`, not by this process: while this process holds the copy open for writing,
    // a fork by another test thread inherits that fd until its child execs, and executing the
    // copy meanwhile fails with "Text file busy".
    let copied = Command::new("cp").arg(&build().bin).arg(&bin).status().expect("run cp");
    assert!(copied.success(), "cp steward: {copied}");
    let mut cmd = Command::new(&bin);
    cmd.args(["status", "--json", "--runtime-dir"])
        .arg(runtime_dir)
        .env_remove("STEWARD_CONFIG")
        .env_remove("STEWARD_RUNTIME_DIR")
        .env("HOME", bin_dir.path())
        .uid(65534)
        .gid(65534);
    run_bounded(cmd, Duration::from_secs(30))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn every_command_has_help_and_foreign_flags_are_refused() {
    for cmd in [
        "run",
        "start",
        "check",
        "status",
        "stop",
        "reload",
        "completions",
        "man",
        // issue 14: control
        "launch",
        "terminate",
    ] {
        let out = steward(&[cmd, "--help"], &[]);
        assert_eq!(out.status.code(), Some(0), "{cmd} --help: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("Usage: steward"),
            "{cmd}: {}",
            text(&out.stdout)
        );
    }
    for bad in [
        &["stop", "--json"][..],
        &["run", "--mode", "fast"],
        &["check", "--runtime-dir", "/x"],
        &["status", "--launch-mode", "fork"],
        &["stop", "--mode", "gentle"],
        // issue 14: control
        &["launch", "p", "e", "--name", "n", "--json"],
        &["terminate", "n", "--mode", "fast"],
        &["dance"],
        &[],
    ] {
        let out = steward(bad, &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).is_empty(), "{bad:?} said nothing");
    }
    let out = steward(&["--version"], &[]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("steward {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, needle) in [
        ("bash", "_steward()"),
        ("zsh", "#compdef steward"),
        ("fish", "complete -c steward"),
    ] {
        let out = steward(&["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0));
        let s = text(&out.stdout);
        assert!(s.contains(needle) && s.contains("runtime-dir"), "{shell}:\n{s}");
    }
    let out = steward(&["man"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(".TH steward 1"), "{}", text(&out.stdout));
    let out = steward(&["man", "status"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("\\-\\-timeout"), "{}", text(&out.stdout));
    assert_eq!(steward(&["man", "dance"], &[]).status.code(), Some(2));
}

#[test]
fn the_child_entry_still_refuses_to_run_by_hand() {
    let out = steward(&["child"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

fn the_config_comes_from_steward_config(mode: Mode) {
    let host = Host::start(Spec::new(mode).plugin("hello"));
    let out = steward(&["status", "--json"], &[("STEWARD_CONFIG", host.config())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["host"]["pid"], host.pid);
    // A missing default file with nothing else to go on: status cannot tell which host is meant.
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&build().bin);
    cmd.args(["status", "--json"])
        .env_remove("STEWARD_CONFIG")
        .env_remove("STEWARD_RUNTIME_DIR")
        .env("XDG_CONFIG_HOME", home.path());
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        json(&out)["reason"].as_str().unwrap().contains("steward.toml"),
        "{}",
        text(&out.stdout)
    );
}

fn a_broken_config_file_does_not_lock_the_operator_out(mode: Mode) {
    let mut host = Host::start(Spec::new(mode).testkit("w").plugin("hello"));
    // A syntax error near the top, runtime_dir further down.
    let good = std::fs::read_to_string(host.config()).expect("config");
    std::fs::write(
        host.config(),
        format!("[host]\nplugin_dir = \n{}", &good["[host]\n".len()..]),
    )
    .expect("break config");

    let out = host.cli(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("host running"), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("steward.toml") && err.contains("line 2"),
        "{err}"
    );

    // Reload reaches the host, which refuses the file: the command prints the error with its
    // file and line and exits 1, and the host keeps the settings it runs with.
    let before = host.cli(&["show", "--json"]);
    assert_eq!(before.status.code(), Some(0), "show: {}", text(&before.stderr));
    let out = host.cli(&["reload"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "reload: {err}");
    assert!(!err.contains("cannot connect"), "{err}");
    assert!(
        err.contains("configuration not reloaded") && err.contains("steward.toml") && err.contains("line 2"),
        "{err}"
    );
    assert!(host.log_text().contains("line 2"), "{}", host.log_text());
    let s = host.status();
    assert_eq!(s.host.state, "running");
    assert_eq!(s.last_reload.as_ref().map(|r| r.outcome.as_str()), Some("refused"));
    let after = host.cli(&["show", "--json"]);
    assert_eq!(text(&after.stdout), text(&before.stdout), "the settings changed");

    let out = host.cli(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "stop: {}", text(&out.stderr));
    assert!(host.wait_exit(Duration::from_secs(20)).success());
}

fn runtime_dir_overrides_the_file(mode: Mode) {
    let mut host = Host::start(Spec::new(mode).plugin("hello"));
    let run = host.dir.run_dir();
    let run = run.to_str().unwrap();
    // The file names nothing useful; the flag and the variable find the host.
    let out = steward(
        &["status", "--config", "/nonexistent/steward.toml", "--runtime-dir", run],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent/steward.toml"),
        "{}",
        text(&out.stderr)
    );
    let out = steward(&["status"], &[("STEWARD_RUNTIME_DIR", Path::new(run))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // An empty variable is as good as unset: the flag decides.
    let out = steward(
        &["status", "--runtime-dir", run],
        &[
            ("STEWARD_RUNTIME_DIR", Path::new("")),
            ("STEWARD_CONFIG", Path::new("")),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = steward(&["stop", "--runtime-dir", run], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(host.wait_exit(Duration::from_secs(20)).success());
}

fn status_exits_0_when_the_host_answers(mode: Mode) {
    let host = Host::start(Spec::new(mode).plugin("hello"));
    let out = host.cli(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["state"], "running");
    assert_eq!(v["host"]["state"], "running");
}

fn status_ready_waits_for_running(mode: Mode) {
    let spec = Spec::new(mode)
        .testkit("w")
        .setting("testkit", "startup_hook = \"hold\"");
    let host = Host::start_in(spec, "startup");
    // Alive (liveness) but not ready (readiness) while the startup hook holds the host.
    assert_eq!(host.cli(&["status"]).status.code(), Some(0));
    let out = host.cli(&["status", "--ready"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not ready: its state is startup"),
        "{}",
        text(&out.stderr)
    );
    host.trigger("startup", "consistent");
    host.wait_for("consistent", Duration::from_secs(10), |s| s.host.state == "consistent");
    assert_eq!(host.cli(&["status", "--ready", "--json"]).status.code(), Some(1));
    host.trigger("startup", "run");
    host.wait_for("running", Duration::from_secs(10), |s| s.host.state == "running");
    let out = host.cli(&["status", "--ready"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn status_exits_3_when_no_host_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    let probe = |what: &str| {
        let out = steward(&["status", "--json", "--runtime-dir", run.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", text(&out.stderr));
        let v = json(&out);
        assert_eq!(v["state"], "not running", "{what}");
        let out = steward(&["status", "--runtime-dir", run.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(3), "{what}");
        assert!(
            text(&out.stdout).contains("no host running"),
            "{what}: {}",
            text(&out.stdout)
        );
        v["reason"].as_str().unwrap().to_owned()
    };
    // No directory (as after systemd removed a RuntimeDirectory=).
    assert!(probe("no directory").contains("does not exist"));
    std::fs::create_dir(&run).unwrap();
    assert!(probe("no lock file").contains("steward.pid"));
    // A lock file left by a host that was killed: nobody holds the lock.
    std::fs::write(run.join("steward.pid"), "12345\n").unwrap();
    std::fs::write(run.join("steward.sock"), "").unwrap();
    assert!(probe("stale lock file").contains("no process holds the lock"));
}

#[test]
fn status_exits_4_when_a_lock_holder_does_not_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let lock = std::fs::File::create(run.join("steward.pid")).unwrap();
    std::fs::write(run.join("steward.pid"), format!("{}\n", std::process::id())).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("flock");
    let run = run.to_str().unwrap();
    // Lock held, no socket yet.
    let out = steward(&["status", "--json", "--runtime-dir", run], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(json(&out)["state"], "unknown");
    // Lock held, a socket that accepts into its backlog and never answers.
    let _listener = UnixListener::bind(Path::new(run).join("steward.sock")).unwrap();
    let out = steward(&["status", "--timeout", "200ms", "--runtime-dir", run], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not answer within"),
        "{}",
        text(&out.stderr)
    );
}

fn status_exits_4_without_permission(mode: Mode) {
    let host = Host::start(Spec::new(mode).plugin("hello"));
    // The tests run as root, which every permission lets through; run the CLI as nobody. The
    // host's temporary directory is 0700 root: nobody cannot even look into it.
    let out = status_as_nobody(&host.dir.run_dir());
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["state"], "unknown");
    assert!(v["reason"].as_str().unwrap().contains("Permission denied"), "{v}");
    // The host is untouched and answers root.
    assert_eq!(host.status().host.state, "running");
}

fn check_passes_a_good_file_and_creates_nothing(mode: Mode) {
    let dir = Dir::new(&Spec::new(mode).plugin("hello").setting("hello", "greeting = \"hi\""));
    let out = cli(&dir.config, &["check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}\n{}", text(&out.stderr));
    for needle in [
        &format!("launch mode {}", mode.as_str()),
        "hello 0.1.0",
        "libhello.so",
        "hello-1",
        "hello.greeting = \"hi\"  (file, reloadable)",
        "hello.workers = \"3\"  (default, restart only)",
        // A duration as the operator writes it, not its canonical count of microseconds.
        "hello.interval = \"1s\"  (default, reloadable)",
        "shared memory ",
        "check passed",
    ] {
        assert!(s.contains(needle), "expected {needle:?} in:\n{s}");
    }
    assert!(!dir.run_dir().exists(), "check created the runtime directory");
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));

    // An entry that does not resolve fails the worker at launch, not start-up: a warning here.
    // The plugin's locks are listed with its regions.
    let dir = Dir::new(
        &Spec::new(mode)
            .testkit("ok,typo:entry=no_such_fn")
            .setting("testkit", "locks = \"on\""),
    );
    let out = cli(&dir.config, &["check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}\n{}", text(&out.stderr));
    assert!(s.contains("shared-memory locks (1):\n  testkit.counter\n"), "{s}");
    assert!(
        s.contains("warning: worker typo (plugin testkit): function \"no_such_fn\" not found"),
        "{s}"
    );
    assert!(!dir.run_dir().exists(), "check created the runtime directory");
}

fn check_gives_the_errors_run_gives(mode: Mode) {
    for spec in [
        Spec::new(mode).plugin("ghost"),
        Spec::new(mode).plugin("hello").setting("hello", "workers = 1000"),
        Spec::new(mode).plugin("hello").host("max_wrokers = 3"),
    ] {
        let dir = Dir::new(&spec);
        let out = cli(&dir.config, &["check"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(!dir.run_dir().exists(), "check created the runtime directory");
        let check_err = text(&out.stderr);
        let (code, run_out) = run_expect_failure(&dir);
        assert_eq!(code, 1);
        let line = check_err
            .lines()
            .find(|l| l.starts_with("steward: "))
            .expect("an error line");
        assert!(run_out.contains(line), "check said {line:?}; run said:\n{run_out}");
    }
}

fn a_second_host_is_refused_with_a_plain_error(mode: Mode) {
    let first = Host::start(Spec::new(mode).plugin("hello"));
    let mut cmd = Command::new(&build().bin);
    cmd.arg("run").arg("--config").arg(first.config());
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let line = err.lines().find(|l| l.contains("already running")).expect("lock error");
    assert!(
        line.starts_with("steward: another steward is already running on"),
        "{err}"
    );
}

/// Ends the process group of whatever host holds the lock in `dir` (a host `steward start`
/// detached; its own group since it leads a new session), even when the test fails.
struct Detached<'a>(&'a Dir);

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.0.run_dir().join("steward.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            end_group(pid);
        }
    }
}

fn start_returns_once_running(mode: Mode) {
    let dir = Dir::new(&Spec::new(mode).plugin("hello"));
    let _guard = Detached(&dir);
    let log = dir.path().join("host.log");
    let out = cli(
        &dir.config,
        &["start", "--log", log.to_str().unwrap(), "--timeout", "20s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // Running by the time start returns, in a session of its own, with stdin from /dev/null.
    let st = Client::connect(&dir.run_dir().join("steward.sock"))
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(st.host.state, "running");
    let pid = st.host.pid as i32;
    assert!(
        text(&out.stdout).contains(&format!("steward started (pid {pid})")),
        "{}",
        text(&out.stdout)
    );
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).unwrap();
    assert_eq!(sid.as_raw(), pid);
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin, Path::new("/dev/null"));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap(), log);
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), Path::new("/"));
    let out = cli(&dir.config, &["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_gone(&[pid], Duration::from_secs(10));
    assert!(std::fs::read_to_string(&log).unwrap().contains("supervisor"));
}

fn start_fails_with_the_log_tail_when_a_plugin_is_missing(mode: Mode) {
    let dir = Dir::new(&Spec::new(mode).plugin("ghost"));
    let _guard = Detached(&dir);
    let log = dir.path().join("host.log");
    std::fs::write(&log, "a line from an earlier run\n").unwrap();
    let out = cli(
        &dir.config,
        &["start", "--log", log.to_str().unwrap(), "--timeout", "20s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("exited during start-up") && err.contains("plugin ghost"),
        "{err}"
    );
    assert!(
        !err.contains("earlier run"),
        "the tail reaches back before this start:\n{err}"
    );
    // The log was appended to, not truncated.
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .starts_with("a line from an earlier run\n"));
}

both_modes!(
    the_config_comes_from_steward_config,
    a_broken_config_file_does_not_lock_the_operator_out,
    runtime_dir_overrides_the_file,
    status_exits_0_when_the_host_answers,
    status_ready_waits_for_running,
    status_exits_4_without_permission,
    check_passes_a_good_file_and_creates_nothing,
    check_gives_the_errors_run_gives,
    a_second_host_is_refused_with_a_plain_error,
    start_returns_once_running,
    start_fails_with_the_log_tail_when_a_plugin_is_missing,
);

/// Regression: when the socket refused `stop`, the CLI sent the signal to whatever pid the lock
/// file named. A host that is PID 1 of a container records pid 1, which outside the container is
/// init (SIGINT to systemd as root means reboot); here a harmless process stands in for it.
#[test]
fn stop_signals_no_process_that_does_not_hold_the_lock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut bystander = Command::new("sleep").arg("60").spawn().expect("spawn sleep");
    let lock = std::fs::File::create(run.join("steward.pid")).unwrap();
    std::fs::write(run.join("steward.pid"), format!("{}\n", bystander.id())).unwrap();
    // This test process holds the lock, as a host would; there is no socket, so `stop` falls back
    // to the lock file.
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("flock");
    let out = steward(&["stop", "--runtime-dir", run.to_str().unwrap()], &[]);
    let still_there = bystander.try_wait().expect("try_wait").is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(
        still_there,
        "stop signalled pid {}, which holds no lock",
        bystander.id()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not hold the lock as seen from here"),
        "{}",
        text(&out.stderr)
    );
}

/// A control socket served by another user (who is not root) is not believed: another local user
/// who prepared a runtime directory open to all could otherwise show a fake host to `status`.
/// The stand-in server replays a real host's answer, which a client that checks nothing accepts.
#[test]
fn status_believes_no_host_served_by_another_user() {
    use std::io::{BufRead, BufReader, Write};
    let host = Host::start(Spec::new(Mode::Fork).plugin("hello"));
    let mut real = std::os::unix::net::UnixStream::connect(host.socket()).expect("connect");
    real.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&real).read_line(&mut answer).unwrap();
    assert!(answer.contains("\"ok\":true"), "{answer}");
    drop(host);

    // The other user's directory, open to everyone, as on a shared /tmp.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let server = r#"
        use IO::Socket::UNIX; use Fcntl qw(:flock);
        my ($dir, $answer) = @ARGV;
        open(my $lock, '>', "$dir/steward.pid") or die "lock: $!";
        flock($lock, LOCK_EX) or die "flock: $!";
        my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "$dir/steward.sock", Listen => 8)
            or die "listen: $!";
        chmod 0777, "$dir/steward.sock";
        $| = 1; print "ready\n";
        while (my $c = $srv->accept) { my $req = <$c>; print $c $answer; close $c; }
    "#;
    let mut fake = Command::new("perl")
        .args(["-e", server])
        .arg(&run)
        .arg(&answer)
        .uid(65533)
        .gid(65533)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn perl");
    // Listening, with the socket open to all, once it says so (a closed pipe: it failed).
    let mut ready = String::new();
    BufReader::new(fake.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n", "the stand-in server did not start");
    // The victim, a third user, asks.
    let out = status_as_nobody(&run);
    let _ = fake.kill();
    let _ = fake.wait();
    assert_eq!(out.status.code(), Some(4), "{}{}", text(&out.stdout), text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["state"], "unknown", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("is served by uid 65533, not by this user (uid 65534) or root"),
        "{v}"
    );
}

/// Regression: `check` computed the segment without the connection slot reserved for status and
/// stop, so the size it printed was not the one `run` creates.
#[test]
fn check_reports_the_segment_run_creates() {
    let host = Host::start(Spec::new(Mode::Fork).plugin("hello"));
    let running = host.status().host.shmem_bytes;
    let out = cli(host.config(), &["check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(
        s.contains(&format!("shared memory {running} bytes: ")) && s.contains("(+1 reserved for status and stop)"),
        "the running host has {running} bytes:\n{s}"
    );
}
