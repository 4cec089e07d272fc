//! Safe to run on a shared machine, readable by an operator: the runtime directory is trusted only
//! when it is the host's own, a plugin's init may not leave the supervisor multi-threaded, and
//! the log carries per-plugin levels and, on the journal, syslog priorities. Both launch modes.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(10);

/// Writes `spec`'s config into `dir` with `runtime_dir` set to `run`.
fn use_runtime_dir(dir: &Dir, spec: &Spec, run: &Path) {
    let spec = spec
        .clone()
        .host(&format!("runtime_dir = {:?}", run.display().to_string()));
    std::fs::write(&dir.config, spec.render(dir.path())).expect("write config");
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A victim file with known bytes, and a symlink `steward.pid` to it inside `run`.
fn plant_lock_symlink(dir: &Dir, run: &Path) -> (PathBuf, Vec<u8>) {
    let victim = dir.path().join("victim");
    let bytes = b"the operator's precious file\n".to_vec();
    std::fs::write(&victim, &bytes).expect("victim");
    std::os::unix::fs::symlink(&victim, run.join("steward.pid")).expect("symlink");
    (victim, bytes)
}

fn expect_refusal(dir: &Dir, needles: &[&str]) -> String {
    let (code, out) = run_expect_failure(dir);
    assert_eq!(code, 1, "exit code; output:\n{out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in:\n{out}");
    }
    out
}

fn a_lock_file_symlink_planted_by_another_user_changes_nothing(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let dir = Dir::new(&spec);
    // Another user got there first: a world-writable directory, the lock file a symlink.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o777);
    let (victim, bytes) = plant_lock_symlink(&dir, &shared);
    use_runtime_dir(&dir, &spec, &shared);
    let shown = shared.display().to_string();
    expect_refusal(&dir, &[&shown, "owned by uid 0", "mode 0777", "group or others"]);
    assert_eq!(std::fs::read(&victim).unwrap(), bytes, "the victim file was changed");
    assert!(!shared.join("steward.sock").exists());

    // Owned by another uid, even with a tight mode: refused, naming that owner.
    set_mode(&shared, 0o700);
    std::os::unix::fs::lchown(&shared, Some(65534), Some(65534)).expect("chown");
    expect_refusal(
        &dir,
        &[
            &shown,
            "owned by uid 65534",
            "mode 0700",
            "not owned by the host's user",
        ],
    );
    assert_eq!(std::fs::read(&victim).unwrap(), bytes, "the victim file was changed");

    // In a directory the host trusts, the symlink itself is still refused, not followed.
    std::os::unix::fs::lchown(&shared, Some(0), Some(0)).expect("chown back");
    expect_refusal(&dir, &["steward.pid is a symbolic link"]);
    assert_eq!(std::fs::read(&victim).unwrap(), bytes, "the victim file was changed");
}

fn a_runtime_dir_open_to_others_is_refused(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let dir = Dir::new(&spec);
    std::fs::create_dir(dir.run_dir()).unwrap();
    set_mode(&dir.run_dir(), 0o755);
    let shown = dir.run_dir().display().to_string();
    expect_refusal(&dir, &[&shown, "mode 0755", "must be owned by uid 0", "mode 0700"]);
    assert!(
        std::fs::read_dir(dir.run_dir()).unwrap().next().is_none(),
        "something was created in it"
    );
}

fn a_symlinked_runtime_dir_is_refused(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let dir = Dir::new(&spec);
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    set_mode(&real, 0o700);
    std::os::unix::fs::symlink(&real, dir.run_dir()).unwrap();
    let shown = dir.run_dir().display().to_string();
    expect_refusal(&dir, &[&shown, "is a symbolic link"]);
    assert!(
        std::fs::read_dir(&real).unwrap().next().is_none(),
        "something was created in it"
    );
}

fn an_accepted_run_leaves_a_0700_runtime_dir(mode: Mode) {
    let host = Host::start(Spec::new(mode).testkit("a"));
    let run = host.dir.run_dir();
    let meta = std::fs::symlink_metadata(&run).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700, "runtime_dir mode");
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let lock = std::fs::symlink_metadata(run.join("steward.pid")).unwrap();
    assert!(lock.is_file());
    assert_eq!(lock.mode() & 0o777, 0o600, "lock file mode");
    // The first line tells an operator what started, how, as which process, from which file.
    let log = host.log_text();
    let first = log.lines().next().unwrap_or_default();
    let want = format!(
        "steward {} starting: {} mode, pid {}, config {}",
        env!("CARGO_PKG_VERSION"),
        mode.as_str(),
        host.pid,
        host.config().display()
    );
    assert!(
        first.contains(" INFO ") && first.ends_with(&want),
        "first line {first:?}, want {want:?}"
    );
}

fn a_leftover_socket_symlink_is_removed_not_followed(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let dir = Dir::new(&spec);
    std::fs::create_dir(dir.run_dir()).unwrap();
    set_mode(&dir.run_dir(), 0o700);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.run_dir().join("steward.sock")).unwrap();
    let host = start_in(dir, spec, &[]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me\n");
    let sock = std::fs::symlink_metadata(host.socket()).unwrap();
    assert!(sock.file_type().is_socket(), "{sock:?}");
}

fn a_plugin_whose_init_starts_a_thread_is_refused_by_name(mode: Mode) {
    let spec = Spec::new(mode)
        .plugin("hello")
        .testkit("a")
        .setting("testkit", "init_thread = true");
    let out = expect_refusal(
        &Dir::new(&spec),
        &["plugin testkit: its init left the supervisor with 2 threads"],
    );
    assert!(!out.contains("plugin hello:"), "the wrong plugin was blamed:\n{out}");
}

fn durations_beyond_their_bound_are_refused_naming_file_key_and_bound(mode: Mode) {
    let spec = Spec::new(mode).plugin("hello");
    expect_refusal(
        &Dir::new(&spec.clone().host("shutdown_timeout = \"1000000000000d\"")),
        &["steward.toml: host.shutdown_timeout: 1000000000000d is above the upper bound of 1h"],
    );
    expect_refusal(
        &Dir::new(&spec.setting("hello", "interval = \"31d\"")),
        &["steward.toml: plugins.hello.interval: 31d is above the upper bound of 30d"],
    );
}

/// Log lines after the last occurrence of `marker`.
fn after<'a>(log: &'a str, marker: &str) -> &'a str {
    log.rfind(marker).map_or("", |i| &log[i..])
}

fn one_plugin_logs_at_debug_while_the_rest_stays_at_info(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let at = |filter: &str| spec.clone().host(&format!("log_level = {filter:?}"));
    let host = Host::start(at("info,testkit=debug"));
    host.wait_log("testkit: entry started", T);
    // The host's own debug lines stay out.
    assert!(
        !host.log_text().contains("loaded plugin testkit"),
        "{}",
        host.log_text()
    );
    drop(host);

    // Reloaded into a running worker that has already had a debug event filtered out.
    let host = Host::start(at("info"));
    let worker = host.worker("a").pid;
    host.trigger("a", "bump");
    host.wait_log("bumped to 1", T);
    let log = host.log_text();
    assert!(
        !log.contains("entry started") && !log.contains("trigger file says"),
        "{log}"
    );
    host.rewrite_config(&at("info,testkit=debug"));
    host.signal(libc::SIGHUP);
    // The worker has the new filter once it has seen the reload.
    host.wait_log("testkit: reloaded:", T);
    host.trigger("a", "bump");
    host.wait_log("bumped to 2", T);
    host.wait_log("trigger file says \"bump\"", T);

    // And the other way round: the running worker drops to info.
    host.rewrite_config(&at("debug,testkit=info"));
    host.signal(libc::SIGHUP);
    host.wait_log_count("testkit: reloaded:", 2, T);
    host.trigger("a", "bump");
    let log = host.wait_log("bumped to 3", T);
    assert!(
        !after(&log, "bumped to 2").contains("trigger file says"),
        "testkit still at debug after the reload:\n{log}"
    );
    assert_eq!(host.worker("a").pid, worker, "the worker was restarted:\n{log}");
}

/// Starts a host on a directory the test has prepared, with extra environment variables, and
/// waits until it is running.
fn start_in(dir: Dir, spec: Spec, env: &[(&str, String)]) -> Host {
    let log = dir.path().join("steward.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let mut cmd = Command::new(&build().bin);
    cmd.arg("run")
        .arg("--config")
        .arg(&dir.config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let host = Host::spawn_command(dir, spec, log, cmd);
    host.wait_for("running", T, |s| s.host.state == "running");
    host
}

/// Starts a host whose stderr is a file, with `JOURNAL_STREAM` naming that file's device and
/// inode (as systemd sets it for a service whose output goes to the journal) or, with `matching`
/// false, naming some other file.
fn start_on_journal(spec: Spec, matching: bool) -> Host {
    let dir = Dir::new(&spec);
    let file = std::fs::File::create(dir.path().join("steward.log")).expect("log file");
    let meta = if matching {
        file.metadata().unwrap()
    } else {
        std::fs::metadata(&dir.config).unwrap()
    };
    start_in(
        dir,
        spec,
        &[("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))],
    )
}

fn on_the_journal_each_line_carries_its_syslog_priority(mode: Mode) {
    let spec = Spec::new(mode).testkit("a,b").host("log_level = \"debug\"");
    let host = start_on_journal(spec.clone(), true);
    host.trigger("a", "frobnicate");
    host.trigger("b", "exit 1");
    host.wait_log("unknown trigger", T);
    host.wait_for("b restarted", T, |s| find(s, "b").restarts >= 1);
    let log = host.log_text();
    let mut seen = std::collections::BTreeSet::new();
    for line in log.lines() {
        let (prio, want) = if line.contains(" ERROR ") {
            ("<3>", "error")
        } else if line.contains(" WARN ") {
            ("<4>", "warn")
        } else if line.contains(" INFO ") {
            ("<6>", "info")
        } else if line.contains(" DEBUG ") {
            ("<7>", "debug")
        } else {
            panic!("a line without a level: {line:?}\n{log}");
        };
        assert!(line.starts_with(prio), "{want} line without {prio}: {line:?}\n{log}");
        seen.insert(want);
    }
    for want in ["warn", "info", "debug"] {
        assert!(seen.contains(want), "no {want} line to check:\n{log}");
    }
    drop(host);

    // The variable alone is not enough: stderr must be the stream it names.
    let host = start_on_journal(spec, false);
    let log = host.log_text();
    assert!(!log.is_empty() && !log.contains("<6>"), "{log}");
}

/// A refusal to start is the line that matters most under systemd: on the journal it is filed
/// as an error (`<3>`), like the host's own error lines.
fn on_the_journal_a_refusal_to_start_is_an_error(mode: Mode) {
    let spec = Spec::new(mode).testkit("a");
    let dir = Dir::new(&spec);
    std::fs::create_dir(dir.run_dir()).unwrap();
    set_mode(&dir.run_dir(), 0o755);
    let log_path = dir.path().join("journal.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let meta = log.metadata().unwrap();
    let mut cmd = Command::new(&build().bin);
    cmd.args(["run", "--config"])
        .arg(&dir.config)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn steward");
    let Some(status) = wait_child(&mut child, Duration::from_secs(20)) else {
        end_group(child.id() as i32);
        panic!("steward kept running in a runtime directory it must refuse");
    };
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let refusal = text
        .lines()
        .find(|l| l.contains("steward: ") && l.contains("mode 0755"))
        .unwrap_or_else(|| panic!("no refusal line in:\n{text}"));
    assert!(refusal.starts_with("<3>steward: "), "{refusal:?}");
}

both_modes!(
    on_the_journal_a_refusal_to_start_is_an_error,
    a_lock_file_symlink_planted_by_another_user_changes_nothing,
    a_runtime_dir_open_to_others_is_refused,
    a_symlinked_runtime_dir_is_refused,
    an_accepted_run_leaves_a_0700_runtime_dir,
    a_leftover_socket_symlink_is_removed_not_followed,
    a_plugin_whose_init_starts_a_thread_is_refused_by_name,
    durations_beyond_their_bound_are_refused_naming_file_key_and_bound,
    one_plugin_logs_at_debug_while_the_rest_stays_at_info,
    on_the_journal_each_line_carries_its_syslog_priority,
);
