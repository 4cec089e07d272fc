//! End-to-end harness: the real `steward` binary, real plugins, real processes and signals.
//!
//! Runs in: the test process. Each [`Host`] gets its own temporary directory (config, runtime
//! directory, trigger files, log) and its own process group, which [`Host`]'s `Drop` kills with
//! SIGKILL, so a failing test leaves no process, socket or directory behind. Waiting is always
//! "poll with a deadline" ([`Host::wait_for`]), never a fixed sleep.

#![deny(unsafe_op_in_unsafe_fn)]

use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use steward_host::shared::control::{Client, ClientError, LastExit, Status, StopMode, WorkerInfo};

/// The launch modes every end-to-end test runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fork,
    Exec,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fork => "fork",
            Mode::Exec => "exec",
        }
    }
}

/// Writes one `#[test]` per launch mode around `fn $name(mode: Mode)`.
#[macro_export]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn fork() {
                    super::$name($crate::Mode::Fork)
                }
                #[test]
                fn exec() {
                    super::$name($crate::Mode::Exec)
                }
            }
        )*
    };
}

/// Where the built binary and plugins are.
pub struct Build {
    pub bin: PathBuf,
    pub plugin_dir: PathBuf,
}

/// Builds the host and the plugins once per test process (a no-op when `cargo test --workspace`
/// already built them) and returns their paths.
pub fn build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        // Every host is started after this, so a host's workers that outlive it (a test killed
        // the host, or the host crashed) become this process's children, which `end_group` can
        // reap, instead of init's, which would leave them tearing down after the test ended.
        // SAFETY: prctl with an integer argument changes only this process's attribute.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER: {}", std::io::Error::last_os_error());
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (tests) or target/<profile>/<bin> (the bench binary)
        let mut profile_dir = exe.parent().expect("target/<profile>").to_owned();
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("target/<profile>").to_owned();
        }
        let target_dir = profile_dir.parent().expect("target dir").to_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "steward-host",
            "-p",
            "hello",
            "-p",
            "testkit",
            "-p",
            "foreign",
            "-p",
            "oldabi",
            "-p",
            "shortheader",
            "-p",
            "asynclatch",
            "-p",
            "worker_spi",
            // issue 15: connections
            "-p",
            "kvstore",
        ]);
        cmd.arg("--target-dir").arg(&target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        cmd.arg("--manifest-path").arg(manifest);
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Build {
            bin: profile_dir.join("steward"),
            plugin_dir: profile_dir,
        }
    })
}

/// A host configuration under construction.
#[derive(Clone)]
pub struct Spec {
    pub mode: Mode,
    pub plugins: Vec<String>,
    /// Extra lines for `[host]`.
    pub host: Vec<String>,
    /// `(plugin, lines)` for `[plugins.<plugin>]`.
    pub sections: Vec<(String, Vec<String>)>,
    /// Overrides the plugin directory (for tests that plant files there).
    pub plugin_dir: Option<PathBuf>,
    /// Extra environment variables for `steward run`.
    pub env: Vec<(String, String)>,
    // issue 15: connections
    /// Tables written after every other section (`[[listen]]` ones).
    pub tables: Vec<String>,
}

impl Spec {
    pub fn new(mode: Mode) -> Spec {
        Spec {
            mode,
            plugins: vec![],
            host: vec![],
            sections: vec![],
            plugin_dir: None,
            env: vec![],
            tables: vec![],
        }
    }
    // issue 15: connections
    /// Adds a `[[listen]]` table with these lines (`handler = ...`, `unix = ...`).
    pub fn listen(mut self, lines: &str) -> Spec {
        self.tables.push(format!("[[listen]]\n{lines}\n"));
        self
    }
    pub fn plugin(mut self, name: &str) -> Spec {
        self.plugins.push(name.to_owned());
        self
    }
    pub fn host(mut self, line: &str) -> Spec {
        self.host.push(line.to_owned());
        self
    }
    pub fn setting(mut self, plugin: &str, line: &str) -> Spec {
        match self.sections.iter_mut().find(|(p, _)| p == plugin) {
            Some((_, lines)) => lines.push(line.to_owned()),
            None => self.sections.push((plugin.to_owned(), vec![line.to_owned()])),
        }
        self
    }
    /// The testkit plugin with these worker specs, watching the host's trigger directory.
    pub fn testkit(self, workers: &str) -> Spec {
        self.plugin("testkit")
            .setting("testkit", &format!("workers = {workers:?}"))
    }

    pub fn render(&self, dir: &Path) -> String {
        let plugin_dir = self.plugin_dir.clone().unwrap_or_else(|| build().plugin_dir.clone());
        let mut s = String::from("[host]\n");
        s += &format!("plugin_dir = {:?}\n", plugin_dir.display().to_string());
        if !self.host.iter().any(|l| l.starts_with("runtime_dir")) {
            s += &format!("runtime_dir = {:?}\n", dir.join("run").display().to_string());
        }
        let list: Vec<String> = self.plugins.iter().map(|p| format!("{p:?}")).collect();
        s += &format!("preload_plugins = [{}]\n", list.join(", "));
        s += &format!("launch_mode = {:?}\n", self.mode.as_str());
        for l in &self.host {
            s += l;
            s.push('\n');
        }
        for (p, lines) in &self.sections {
            s += &format!("\n[plugins.{p}]\n");
            if p == "testkit" && !lines.iter().any(|l| l.starts_with("trigger_dir")) {
                s += &format!("trigger_dir = {:?}\n", dir.join("triggers").display().to_string());
            }
            for l in lines {
                s += l;
                s.push('\n');
            }
        }
        // issue 15: connections
        for t in &self.tables {
            s.push('\n');
            s += t;
        }
        s
    }
}

/// A temporary directory for one test, with the config written into it.
pub struct Dir {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
}

impl Dir {
    pub fn new(spec: &Spec) -> Dir {
        let tmp = tempfile::Builder::new().prefix("stw").tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("triggers")).expect("trigger dir");
        let config = tmp.path().join("steward.toml");
        std::fs::write(&config, spec.render(tmp.path())).expect("write config");
        Dir { tmp, config }
    }
    pub fn with_config(text: &str) -> Dir {
        let tmp = tempfile::Builder::new().prefix("stw").tempdir().expect("tempdir");
        let config = tmp.path().join("steward.toml");
        std::fs::write(&config, text).expect("write config");
        Dir { tmp, config }
    }
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
    pub fn run_dir(&self) -> PathBuf {
        self.path().join("run")
    }
}

fn host_command(config: &Path, log: Option<&Path>) -> Command {
    let mut cmd = Command::new(&build().bin);
    cmd.arg("run").arg("--config").arg(config).stdin(Stdio::null());
    match log {
        Some(log) => {
            let f = std::fs::File::create(log).expect("log file");
            cmd.stdout(f.try_clone().expect("dup log")).stderr(f);
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    cmd.process_group(0);
    // SAFETY: setrlimit is async-signal-safe; crashing test workers must not leave core files.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            Ok(())
        });
    }
    cmd
}

/// A running `steward run`.
pub struct Host {
    pub dir: Dir,
    pub child: Option<Child>,
    pub pid: i32,
    pub log: PathBuf,
    pub spec: Spec,
}

impl Host {
    /// Starts the host without waiting for it (benchmarks time what follows).
    pub fn spawn(spec: Spec) -> Host {
        let dir = Dir::new(&spec);
        let log = dir.path().join("steward.log");
        let mut cmd = host_command(&dir.config, Some(&log));
        cmd.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Host::spawn_command(dir, spec, log, cmd)
    }

    /// Starts a host with a command the test built itself (another environment, another
    /// stderr, a wrapper such as `unshare`), without waiting for it. `cmd` runs the host on
    /// `dir`'s configuration with its output in `log`; it is put in a process group of its own,
    /// which the harness ends on drop.
    pub fn spawn_command(dir: Dir, spec: Spec, log: PathBuf, mut cmd: Command) -> Host {
        cmd.process_group(0);
        let child = cmd.spawn().expect("spawn the host");
        let pid = child.id() as i32;
        Host {
            dir,
            child: Some(child),
            pid,
            log,
            spec,
        }
    }

    /// Starts the host and waits until its control socket answers with the host running.
    pub fn start(spec: Spec) -> Host {
        Host::start_in(spec, "running")
    }

    /// Starts the host and waits until its control socket answers with the host in `state`.
    pub fn start_in(spec: Spec, state: &str) -> Host {
        let mut h = Host::spawn(spec);
        if let Err(log) = h.wait_started(state) {
            panic!("{log}");
        }
        h
    }

    /// Starts a host whose configuration needs a free TCP port (`spec` makes it for a port):
    /// picks one by binding port 0 and reading it back, and picks again when another process
    /// took the port before the host bound it (start-up fails with "address in use").
    pub fn start_on_free_port(spec: impl Fn(u16) -> Spec) -> (Host, u16) {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind a TCP port to learn a free one")
                .port();
            let mut h = Host::spawn(spec(port));
            match h.wait_started("running") {
                Ok(()) => return (h, port),
                Err(log) if log.contains("address in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        panic!("every TCP port tried was taken before the host bound it");
    }

    /// Waits until the control socket answers with the host in `state`; the error says how the
    /// host failed, with its log.
    fn wait_started(&mut self, state: &str) -> Result<(), String> {
        // Generous: it bounds only a failure. Hundreds of exec-mode workers starting on a busy
        // two-core machine can hold up the first status answer for many seconds.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!(
                    "steward exited during start-up with {st}:\n{}",
                    self.log_text()
                ));
            }
            if let Ok(s) = self.try_status() {
                if s.host.state == state {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("steward did not answer within 60s:\n{}", self.log_text()));
            }
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn config(&self) -> &Path {
        &self.dir.config
    }

    /// Writes `spec`'s configuration over this host's config file (for reload tests).
    pub fn rewrite_config(&self, spec: &Spec) {
        std::fs::write(&self.dir.config, spec.render(self.dir.path())).expect("rewrite config");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.run_dir().join("steward.sock")
    }

    pub fn try_status(&self) -> Result<Status, ClientError> {
        Client::connect(&self.socket())?.status()
    }

    pub fn status(&self) -> Status {
        self.try_status()
            .unwrap_or_else(|e| panic!("status failed: {e}\n{}", self.log_text()))
    }

    pub fn worker(&self, name: &str) -> WorkerInfo {
        find(&self.status(), name)
    }

    /// Polls status until `pred` holds, failing after `timeout` with the last status and the log.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            match self.try_status() {
                Ok(s) if pred(&s) => return s,
                Ok(s) => last = Some(s),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last status: {last:#?}\nlog:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Asserts that `pred` keeps holding for `window` (for "never restarted" checks).
    pub fn assert_stays(&self, what: &str, window: Duration, pred: impl Fn(&Status) -> bool) {
        let end = Instant::now() + window;
        while Instant::now() < end {
            let s = self.status();
            assert!(pred(&s), "{what} stopped holding: {s:#?}\nlog:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Waits until the log contains `needle` at least `n` times.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> String {
        self.wait_log_until(&format!("{needle:?} {n} times"), timeout, |t| {
            t.matches(needle).count() >= n
        })
    }

    /// Polls the log until `done` holds for it, and returns it; fails after `timeout` saying the
    /// log never showed `what`. `done` may itself assert, to fail at once on a line that must
    /// never appear.
    pub fn wait_log_until(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.log_text();
            if done(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {what} within {timeout:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Makes testkit worker `worker` act once (`exit N`, `panic MSG`, `segv`, `bump`).
    pub fn trigger(&self, worker: &str, action: &str) {
        let dir = self.dir.path().join("triggers");
        let tmp = dir.join(format!(".{worker}.tmp"));
        std::fs::write(&tmp, action).expect("write trigger");
        std::fs::rename(&tmp, dir.join(worker)).expect("publish trigger");
    }

    /// Runs the `steward` CLI against this host.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(self.config(), args)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Waits for the host process to exit and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("host still owned");
        let Some(st) = wait_child(child, timeout) else {
            panic!(
                "steward did not exit within {timeout:?}:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        };
        self.child = None;
        st
    }

    /// Asserts that nothing of the host is left: no process in its group, no socket, no lock.
    pub fn assert_nothing_left(&self, pids: &[i32]) {
        wait_gone(pids, Duration::from_secs(2));
        assert!(!self.socket().exists(), "control socket left behind");
        assert!(
            !self.dir.run_dir().join("steward.pid").exists(),
            "lock file left behind"
        );
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The host leads its own group, so `end_group` kills and reaps it with everything it
        // started; its `Child` needs no wait of its own.
        self.child.take();
        end_group(self.pid);
    }
}

/// SIGKILL to every process in group `pgid`, then reaps every one of them that is a child of this
/// process, until none is left. Once the group's leader (a host, started in a group of its own)
/// is gone, every other member is this process's child (see `build`), so when this returns no
/// process of the group exists any more, not even one the kernel is still tearing down.
pub fn end_group(pgid: i32) {
    loop {
        // Again each round: a fork that was under way when the group was first killed.
        // SAFETY: signalling a process group this test started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        // SAFETY: waitpid with a null status pointer only reaps.
        let r = unsafe { libc::waitpid(-pgid, std::ptr::null_mut(), 0) };
        if r > 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // ECHILD: no child of this process is left in the group.
        return;
    }
}

/// The worker named `name` in a status, or a panic listing the names there are.
pub fn find(s: &Status, name: &str) -> WorkerInfo {
    s.workers.iter().find(|w| w.name == name).cloned().unwrap_or_else(|| {
        let names: Vec<&str> = s.workers.iter().map(|w| w.name.as_str()).collect();
        panic!("no worker {name:?} in status; workers: {names:?}")
    })
}

/// Runs the `steward` CLI with `--config`.
pub fn cli(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(&build().bin);
    cmd.args(&args[..1])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .stdin(Stdio::null());
    run_bounded(cmd, Duration::from_secs(30))
}

/// Runs a command to completion, killing it if it takes longer than `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let Some(status) = wait_child(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("command did not finish within {timeout:?}: {cmd:?}");
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.stdout.take().map(|mut s| s.read_to_end(&mut stdout));
    child.stderr.take().map(|mut s| s.read_to_end(&mut stderr));
    Output { status, stdout, stderr }
}

/// Waits for `child` to exit, at most `timeout` (woken by its exit, not by polling); its exit
/// status, or `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let exited = steward_host::sys::wait_pid_exit(child.id() as i32, timeout).expect("pidfd_open");
    exited.then(|| child.wait().expect("wait"))
}

/// Runs `steward run` on a config expected to fail start-up. Returns (exit code, all output),
/// after checking that the host left no process, socket or lock behind.
pub fn run_expect_failure(dir: &Dir) -> (i32, String) {
    let mut cmd = host_command(&dir.config, None);
    let mut child = cmd.spawn().expect("spawn steward");
    let pgid = child.id() as i32;
    let Some(status) = wait_child(&mut child, Duration::from_secs(20)) else {
        end_group(pgid);
        panic!("steward kept running on a config that should fail");
    };
    let mut out = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut out));
    // Nothing of that host may be left: no process in its group, no socket, no lock.
    let deadline = Instant::now() + Duration::from_secs(2);
    // SAFETY: probing our own child's process group with signal 0.
    while unsafe { libc::kill(-pgid, 0) } == 0 {
        assert!(
            Instant::now() < deadline,
            "processes of a failed start-up are still running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = dir.path().join("run");
    assert!(
        !run.join("steward.sock").exists(),
        "socket left behind by a failed start-up"
    );
    assert!(
        !run.join("steward.pid").exists(),
        "lock file left behind by a failed start-up"
    );
    (status.code().unwrap_or(-1), out)
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The parent pid of `pid`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until none of `pids` is alive.
pub fn wait_gone(pids: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for &pid in pids {
        let left = deadline.saturating_duration_since(Instant::now());
        // Woken by the exit itself; a zombie counts as gone, as in `alive`.
        steward_host::sys::wait_pid_exit(pid, left).expect("pidfd_open");
    }
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes still alive after {timeout:?}: {left:?}");
}

/// The pids of every running worker in a status.
pub fn worker_pids(s: &Status) -> Vec<i32> {
    s.workers.iter().filter_map(|w| w.pid).collect()
}

/// How many threads a process has.
pub fn threads(pid: i32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as status prints it.
pub fn ts_ms(t: &str) -> i64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').expect("RFC 3339 time");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let p: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days * 86_400_000 + ((p[0] * 3600.0 + p[1] * 60.0 + p[2]) * 1000.0).round() as i64
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The pids of every live child of `pid` (scans /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| parent_of(*p) == Some(pid) && alive(*p))
                .collect()
        })
        .unwrap_or_default()
}

// issue 14: benchmarks
/// What a process holds that must not grow over many dynamic-worker cycles: its open fds (the
/// entries of `/proc/PID/fd`) and its resident memory (`VmRSS`, KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    pub fds: usize,
    pub rss_kib: u64,
}

impl Holdings {
    /// Reads `pid`'s holdings; panics naming the pid if `/proc` has none for it.
    pub fn of(pid: i32) -> Holdings {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
        Holdings { fds, rss_kib }
    }

    /// `pid`'s holdings once its fd count has stayed the same over five reads 10 ms apart, or
    /// after `timeout` whatever it is: an exec-mode supervisor holds a few fds for a moment while
    /// it starts a child (a spare refilled after a launch), which is not a leak.
    pub fn settled(pid: i32, timeout: Duration) -> Holdings {
        let deadline = Instant::now() + timeout;
        let mut last = Holdings::of(pid);
        let mut same = 0;
        while same < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let now = Holdings::of(pid);
            same = if now.fds == last.fds { same + 1 } else { 0 };
            last = now;
        }
        last
    }

    /// What each of `pid`'s fds refers to (`N -> target`), for a message that says what grew.
    pub fn fd_list(pid: i32) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some(format!("{} -> {}", e.file_name().to_string_lossy(), target.display()))
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

// issue 15: connections
/// One client session of a plugin's line-protocol listener: a line out, a line back, each
/// bounded so a hang fails the test.
pub struct Session {
    pub w: std::os::unix::net::UnixStream,
    pub r: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl Session {
    pub fn open(path: &Path) -> Session {
        let w =
            std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = std::io::BufReader::new(w.try_clone().unwrap());
        Session { w, r }
    }

    /// The next line (empty when the server closed the connection).
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        std::io::BufRead::read_line(&mut self.r, &mut s).expect("an answer line");
        s.trim_end().to_owned()
    }

    pub fn ask(&mut self, req: &str) -> String {
        std::io::Write::write_all(&mut self.w, format!("{req}\n").as_bytes()).expect("send");
        self.line()
    }
}

// issue 15: isolated
/// The permissions of `pid`'s mappings of the segment, as /proc/PID/maps shows them (`r--s` for
/// an isolated process, `rw-s` for an attached one).
pub fn segment_perms(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter(|l| l.contains("steward-shmem"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect()
}

/// The path in /proc of the host's shared-memory segment, through the memfd the host holds.
pub fn segment_path(host_pid: i32) -> PathBuf {
    std::fs::read_dir(format!("/proc/{host_pid}/fd"))
        .expect("host fds")
        .filter_map(|e| e.ok())
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:steward-shmem")))
        .expect("the host holds its segment's memfd")
        .path()
}

/// The host's segment, opened for reading (and for writing when `write`) through its memfd.
pub fn segment_file(host_pid: i32, write: bool) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(segment_path(host_pid))
        .expect("open the segment")
}

/// Writes `bytes` at `offset` into the host's live segment, as a process with a stray pointer
/// would.
pub fn write_into_segment(host_pid: i32, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    segment_file(host_pid, true)
        .write_all_at(bytes, offset)
        .expect("write into the segment");
}
