//! `pg_dynlaunch`: PostgreSQL 15's dynamic background worker launch, timed in the same run as
//! Steward's, for reference.
//!
//! Runs in: the benchmark process, which creates a throw-away cluster in a temporary directory
//! (`initdb`, as `nobody` when this process is root, since PostgreSQL refuses to run as root),
//! starts `postgres` with `pg_prewarm` preloaded, a Unix socket in that directory and no TCP, and
//! drives it with `psql`. [`Cluster`]'s `Drop` stops the server (fast shutdown, then SIGKILL to
//! its process group) and removes the directory, whatever happened before.
//!
//! The launch timed is `autoprewarm_start_worker()`, which calls `RegisterDynamicBackgroundWorker`
//! and then `WaitForBackgroundWorkerStartup`: it returns once the postmaster has forked the worker
//! and reported its pid, before the worker's own code necessarily runs. It is timed inside the
//! server (`clock_timestamp()` around it in a `DO` block), so psql's round trip is not in it;
//! that round trip (`SELECT 1` timed by psql's `\timing`) is printed beside it as PostgreSQL's
//! own floor.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::median;

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

/// What `pg_dynlaunch` measured, in ms: the launch's median and p99, and psql's round trip.
pub struct PgLaunch {
    pub median: f64,
    pub p99: f64,
    pub round_trip: f64,
    pub samples: usize,
}

/// Whether PostgreSQL 15's server is installed where Debian puts it.
pub fn available() -> bool {
    Path::new(BIN).join("postgres").exists()
}

struct Cluster {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command run as the cluster's owner, in the cluster's directory.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(Path::new(BIN).join(program));
        cmd.current_dir(self.dir.path()).env("LC_ALL", "C");
        if is_root() {
            // PostgreSQL refuses to run as root; std drops supplementary groups with the uid.
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd
    }

    fn new() -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("stwpg")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        if is_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY))
                .map_err(|e| format!("chown {} to nobody: {e}", dir.path().display()))?;
        }
        let mut c = Cluster { dir, server: None };
        let out = c
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(c.data())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nshared_preload_libraries = 'pg_prewarm'\n\
             shared_buffers = 16MB\nmax_connections = 10\nmax_worker_processes = 8\nfsync = off\n",
            c.dir.path().display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(c.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        let log = std::fs::File::create(c.dir.path().join("server.log")).map_err(|e| format!("server log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("server log: {e}"))?;
        let server = c
            .command("postgres")
            .arg("-D")
            .arg(c.data())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own group, so `Drop` can end the postmaster and every backend together.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        c.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.psql("SELECT 1").is_err() {
            if Instant::now() > deadline {
                return Err(format!("postgres did not accept connections within 30 s:\n{}", c.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `sql` (one command string) in a psql session; returns stdout and stderr together.
    fn psql(&self, sql: &str) -> Result<String, String> {
        self.run_psql(&["-c", sql])
    }

    /// Runs `script` (psql meta-commands allowed) from a file in one psql session.
    fn psql_file(&self, script: &str) -> Result<String, String> {
        let path = self.dir.path().join("bench.sql");
        std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
        self.run_psql(&["-f", &path.display().to_string()])
    }

    fn run_psql(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(Path::new(BIN).join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(self.dir.path())
            .args(args)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let pid = server.id() as i32;
            // SAFETY: signalling our own child, then its process group (the server's backends).
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(server.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: as above; a no-op when the group is gone.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = server.wait();
        }
        // The temporary directory goes with `dir`.
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One timed launch, inside the server: microseconds in a NOTICE.
const TIMED_START: &str = "DO $$ DECLARE t0 timestamptz; BEGIN t0 := clock_timestamp(); \
    PERFORM autoprewarm_start_worker(); \
    RAISE NOTICE 'launch_us=%', extract(epoch FROM clock_timestamp() - t0) * 1000000; END $$;";

/// The autoprewarm leader's pid, found by its process title among the server's children (it has
/// no database connection, so `pg_stat_activity` does not list it).
fn leader(server: i32) -> Option<i32> {
    steward_tests::children_of(server).into_iter().find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("autoprewarm leader"))
    })
}

/// Stops the autoprewarm leader, if one runs, and waits until the postmaster reaped it (its pid
/// is cleared from autoprewarm's state before it exits), so the next start is a fresh launch and
/// not refused as "already running".
fn stop_leader(server: i32) -> Result<(), String> {
    let Some(pid) = leader(server) else { return Ok(()) };
    // SAFETY: SIGTERM to a server process this benchmark started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return Err(format!("the autoprewarm leader {pid} did not stop within 10 s"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

/// `pg_dynlaunch`: `samples` rounds of (stop the leader and wait until it is gone, time
/// `autoprewarm_start_worker()` in the server), plus `samples` psql round trips of `SELECT 1` in
/// one session.
pub fn pg_dynlaunch(samples: usize) -> Result<PgLaunch, String> {
    let c = Cluster::new()?;
    let server = c.server.as_ref().map(|s| s.id() as i32).unwrap_or(0);
    c.psql("CREATE EXTENSION pg_prewarm")?;
    // The leader registered at preload starts once the server is consistent, which can be after
    // it accepts connections: wait for it, or the first timed start would find it running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader(server).is_none() {
        if Instant::now() > deadline {
            return Err(format!("no autoprewarm leader within 10 s:\n{}", c.log()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut launch = Vec::with_capacity(samples);
    for _ in 0..samples {
        // A leader stopped before its signal handlers were in place exits 1 and is restarted at
        // once (its restart interval is 0): then the start is refused and is tried again.
        let mut tries = 0;
        let out = loop {
            // Pacing, as Steward's launches are paced: the last sample's leader has long had
            // its handlers in place, so SIGTERM ends it for good (exit 0, not restarted).
            std::thread::sleep(Duration::from_millis(20));
            stop_leader(server)?;
            match c.psql(TIMED_START) {
                Err(e) if e.contains("already running") && tries < 20 => tries += 1,
                r => break r.map_err(|e| format!("{e}\nserver log:\n{}", c.log()))?,
            }
        };
        let us: f64 = out
            .lines()
            .find_map(|l| l.split("launch_us=").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no launch_us in {out:?}"))?;
        launch.push(us / 1e3);
    }
    stop_leader(server)?;
    let mut script = String::from("\\timing on\n");
    for _ in 0..samples {
        script += "\\echo ROUNDTRIP\nSELECT 1;\n";
    }
    let out = c.psql_file(&script)?;
    // The `Time:` line after each ROUNDTRIP marker is that `SELECT 1`'s.
    let mut rtt = Vec::new();
    let mut marked = false;
    for l in out.lines() {
        if l == "ROUNDTRIP" {
            marked = true;
        } else if marked {
            if let Some(ms) = l.strip_prefix("Time: ").and_then(|r| r.split_whitespace().next()) {
                rtt.extend(ms.parse::<f64>().ok());
                marked = false;
            }
        }
    }
    if rtt.len() != samples {
        return Err(format!("expected {samples} round trips, parsed {}:\n{out}", rtt.len()));
    }
    let m = median(&mut launch);
    let p99 = crate::common::pct(&mut launch, 0.99);
    Ok(PgLaunch {
        median: m,
        p99,
        round_trip: median(&mut rtt),
        samples,
    })
}
