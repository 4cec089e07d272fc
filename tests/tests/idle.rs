//! Idle means idle: a host whose workers' plugin code sleeps wakes no process of its own. The
//! supervisor, the worker runtime around a long `wait` and every spare child all block
//! until an event (a signal, a client, a hand-off, the host's death) instead of looking around on
//! a timer, so a machine full of idle hosts stays asleep.
//!
//! Wake-ups are counted as the kernel counts them: every context switch of every thread of each
//! process, voluntary and not, read from `/proc/PID/task/TID/status`.

use std::time::{Duration, Instant};

use steward_tests::*;

const T: Duration = Duration::from_secs(10);
/// The measured span.
const WINDOW: Duration = Duration::from_secs(1);
/// How long the tree must have been still before the measured span starts.
const QUIET: Duration = Duration::from_millis(50);

/// Context switches of every thread of `pid` so far; `None` once the process is gone.
fn switches(pid: i32) -> Option<u64> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        for line in status.lines() {
            let value = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"));
            if let Some(v) = value {
                n += v.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(n)
}

/// The scheduler state letter of `pid` (`S` sleeping, `R` running, `Z` zombie, ...).
fn sched_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Every child of `pid`, zombies included (one not reaped yet is still the supervisor's work).
fn every_child(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| parent_of(*p) == Some(pid))
                .collect()
        })
        .unwrap_or_default()
}

fn an_idle_host_wakes_none_of_its_own_processes(mode: Mode) {
    // No trigger directory: the testkit workers sleep in one `wait` of an hour.
    let spec = Spec::new(mode)
        .testkit("a,b,c")
        .setting("testkit", "trigger_dir = \"\"");
    let host = Host::start(spec);
    let s = host.wait_for("three workers running", T, |s| {
        s.workers.len() == 3 && s.workers.iter().all(|w| w.state == "running" && w.pid.is_some())
    });
    let workers = worker_pids(&s);
    // Both launch modes keep two spare children.
    let spares = 2;

    // Settle: the connection child of that status call is gone and reaped, the spares are
    // started, every process sleeps, and no counter has moved for `QUIET`. Polled with a
    // deadline; the measured span below starts only after this.
    let deadline = Instant::now() + T;
    let (procs, before) = loop {
        let kids = every_child(host.pid);
        let procs: Vec<i32> = std::iter::once(host.pid).chain(kids.iter().copied()).collect();
        let first: Vec<Option<u64>> = procs.iter().map(|p| switches(*p)).collect();
        std::thread::sleep(QUIET);
        let second: Vec<Option<u64>> = procs.iter().map(|p| switches(*p)).collect();
        let settled = kids.len() == workers.len() + spares
            && workers.iter().all(|w| kids.contains(w))
            && procs.iter().all(|p| sched_state(*p) == Some('S'))
            && first == second
            && first.iter().all(Option::is_some);
        if settled {
            break (procs, first);
        }
        assert!(
            Instant::now() < deadline,
            "the host did not settle: children {kids:?} (workers {workers:?}, {spares} spares)\n{}",
            host.log_text()
        );
    };

    // The measured span: nothing is synchronised by it; it is the second being observed.
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let after: Vec<Option<u64>> = procs.iter().map(|p| switches(*p)).collect();
    let span = start.elapsed();
    assert!(span >= WINDOW);

    let role = |pid: i32| -> String {
        if pid == host.pid {
            "supervisor".into()
        } else if let Some(w) = s.workers.iter().find(|w| w.pid == Some(pid)) {
            format!("worker {}", w.name)
        } else {
            "spare child".into()
        }
    };
    let woken: Vec<String> = procs
        .iter()
        .zip(before.iter().zip(&after))
        .filter_map(|(pid, (b, a))| {
            let (b, a) = (
                b.expect("measured before"),
                a.unwrap_or_else(|| panic!("{} (pid {pid}) ended", role(*pid))),
            );
            (a != b).then(|| format!("{} (pid {pid}) woke {} times in {span:?}", role(*pid), a - b))
        })
        .collect();
    assert!(woken.is_empty(), "an idle host woke its own processes: {woken:?}");
}

both_modes!(an_idle_host_wakes_none_of_its_own_processes);
