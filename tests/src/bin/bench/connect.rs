//! New connections to a plugin's listener (issue 15: connections), and PostgreSQL's new
//! connection in the same run when its server is installed.
//!
//! Runs in: the benchmark process.

use std::time::{Duration, Instant};

use steward_tests::*;

use crate::common::median;

// issue 15: client spares
/// The pause between two samples of `connect` and of its floor: long enough for the host to
/// refill its spare pool (an exec-mode spare is a program start and a plugin load), so each
/// sample meets a spare ready, as the exec target says, and an idle loop.
pub const PACE: Duration = Duration::from_millis(10);

/// A new client of a plugin's listener to the handler's first byte back: connect to testkit's
/// echo handler on a Unix socket, send one line, read the first byte of the answer, close.
/// Timed in this client, so it covers accept, the hand-off to a spare (or a fresh client child's
/// launch when none is ready), the handler's start and one round trip. Samples are [`PACE`]
/// apart.
pub fn connection_first_byte(mode: Mode, n: usize) -> f64 {
    use std::io::{Read, Write};
    let h = Host::start(
        Spec::new(mode)
            .testkit("")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    );
    let path = h.dir.path().join("echo.sock");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        s.write_all(b"x\n").expect("send");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("first byte");
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(s);
        std::thread::sleep(PACE);
    }
    median(&mut v)
}

/// PostgreSQL's new connection in the same run, when its server is installed: a scratch cluster
/// (trust authentication, Unix socket only, as the `postgres` user when this runs as root), and
/// per sample a connect, the startup message, and every answer up to ReadyForQuery (the backend
/// forked and initialised), timed in this client. `None` when there is no server to run.
pub fn postgres_new_connection(n: usize) -> Option<f64> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let bin = ["/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/bin"]
        .iter()
        .map(std::path::Path::new)
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())?;
    let dir = tempfile::Builder::new().prefix("stwpg").tempdir().ok()?;
    let data = dir.path().join("data");
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let as_pg = |prog: &str| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
            c
        } else {
            Command::new(bin.join(prog))
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    if root {
        Command::new("chown").arg("postgres").arg(dir.path()).status().ok()?;
    }
    let ok = as_pg("initdb")
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let mut server = as_pg("postgres")
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=", "-c", "fsync=off", "-p", "5499", "-k"])
        .arg(dir.path())
        .spawn()
        .ok()?;
    let sock = dir.path().join(".s.PGSQL.5499");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut startup = Vec::new();
    let body = b"user\0postgres\0database\0postgres\0\0";
    startup.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(body);
    let connect = || -> Option<()> {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).ok()?;
        s.write_all(&startup).ok()?;
        loop {
            let mut head = [0u8; 5];
            s.read_exact(&mut head).ok()?;
            let len = u32::from_be_bytes(head[1..5].try_into().ok()?) as usize;
            let mut rest = vec![0u8; len.saturating_sub(4)];
            s.read_exact(&mut rest).ok()?;
            match head[0] {
                b'Z' => break,
                b'E' => return None,
                _ => {}
            }
        }
        // Terminate, so the backend exits as a client's would.
        s.write_all(&[b'X', 0, 0, 0, 4]).ok()
    };
    while connect().is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        if connect().is_none() {
            break;
        }
        v.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    // The server's own pid (under `runuser` it is not the child's): SIGINT is its fast shutdown.
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
    if let Some(pid) = pid {
        // SAFETY: signalling the server this function started.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    let _ = server.wait();
    (!v.is_empty()).then(|| median(&mut v))
}
