//! `testkit`: a plugin whose init and workers misbehave on request, for end-to-end tests.
//!
//! Runs in: the supervisor (init) and each testkit worker process.
//!
//! Settings:
//! - `init` = `"ok" | "error" | "panic"`: how init ends.
//! - `workers`: comma-separated worker specs `name[:option...]`, options `never` (restart policy
//!   never), `ignore_term` (ignores SIGTERM and never stops by itself), `late_register` (tries to
//!   register a static worker after the freeze and logs the outcome), `exit_at_start=N` (returns
//!   exit code N at once), `entry=FUNC` (runs another entry function), `lib=LIB` (the entry is
//!   in another preloaded library), `type=T`, `backoff=INITIAL/FACTOR/CAP/RESET` (exponential
//!   backoff, e.g. `backoff=20ms/2/200ms/1s`), `limit=N/WINDOW` (crash-loop limit, e.g. `3/10s`),
//!   `start=host_start|consistent|running` (start time), `stop_with_launcher` (which a static
//!   worker must refuse: init fails), `stop_after=D` (told to stop, it takes D to return, e.g.
//!   `stop_after=1s`).
//! - `restart_delay`: the restart delay of every worker that does not say `never`.
//! - `announce`: each worker logs `up` as soon as its entry runs (benchmarks count these).
//! - `check_thread`: each worker checks that the C library's view of its thread is its own (the
//!   thread's CPU clock, found through `pthread_self`, can be read, and a robust-futex list is
//!   registered) and logs `thread ok` or `thread wrong: REASON`.
//! - `startup_hook` = `"none" | "hold" | "fail"`: `hold` registers a startup hook that keeps the
//!   host in startup until the trigger file `startup` says `consistent`, then in consistent until
//!   it says `run`; `fail` registers one that fails; `latch` registers one that publishes its
//!   latch in word 20 of the `latch` region and holds start-up until that latch is set; `launch`
//!   registers one that launches a dynamic worker (see `notify.rs`, issue 14: notifications).
//! - `init_thread`: init starts a thread that keeps running (a supervisor with more than one
//!   thread must not fork, so the host refuses to start).
//! - `message` (reloadable) and `fixed` (restart-only): workers log both after a reload.
//! - `trigger_dir`: a directory the workers watch. Writing a file named after a worker makes it
//!   act once: `exit N`, `panic MESSAGE`, `segv`, `bump` (adds one to its region counter),
//!   `orphan` (forks a grandchild that sleeps until a signal ends it, logs `forked grandchild PID`,
//!   and exits 0, leaving the grandchild behind; `orphan ignore_term`: the grandchild ignores
//!   SIGTERM).
//!   Latches and activity: `publish_latch K` (stores the worker's latch handle in word K of the
//!   `latch` region, logs `published latch K`), `set_latch K` (sets the handle in word K, logs
//!   `set latch K: true|false`), `activity TEXT` (shows TEXT as the worker's activity). A worker
//!   whose `wait` reports its latch logs `woke on latch`.
//! - `latch_batch`: how many set-to-wake samples `testkit_latch_waiter` takes per logged batch.
//! - `latch_pace`: how long `testkit_latch_setter` lets the waiter fall asleep between sets.
//!
//! Latch entries (`entry=...`): `testkit_latch_setter` and `testkit_latch_waiter` play ping-pong
//! on each other's latches (words 1 and 0 of the `latch` region); the setter stamps
//! `CLOCK_MONOTONIC` into word 2 before each set, and the waiter logs per batch `latch batch B
//! n=N median_us=M max_us=X lost=L` (L: the sets whose wake-up `wait` missed so far) and shows
//! `rounds=R usr1=U` as its activity. With the flag `usr1`
//! the waiter installs its own SIGUSR1 handler, counting into U; with `ignore_urg` it sets SIGURG
//! to SIG_IGN, with `block_urg` it blocks SIGURG (both after taking its latch). `testkit_latch_poll` publishes
//! its latch in word 3 and sleeps in `poll(2)` on the latch fd, logging `poll woke on latch N`.
//! - `segment_init` = `"none" | "fill" | "fail" | "panic"` (issue 14: segment init): `fill`
//!   registers a segment init hook that waits `segment_init_delay`, checks that the `seginit`
//!   region is zeroed, then writes [`SEGINIT_MAGIC`] in word 0 and adds one to word 1 (the number
//!   of times the region was initialised) and logs `segment init filled the region`; it fails
//!   instead while the trigger file `segment_init` says `fail`. `fail` and `panic` register a hook
//!   that fails or panics at once. The entry `testkit_seginit_reader` reads the region first thing,
//!   logs `seginit saw magic=M inits=I dirty=D`, then dirties word 2 (so a region that survived a
//!   reset shows it) and waits until stopped.
//!
//! Isolated workers (issue 15: isolated): the worker option `isolated` registers the worker
//! with `.isolated()`; the triggers `log_latch` (logs `my latch is RAW`), `set_latch_raw RAW`
//! (sets that latch handle, logs `set raw latch: true|false`) and `try_lock NAME` (takes and
//! drops the lock, logs `took lock NAME` or `lock refused: ERROR`), `peek` (logs `counter is N`,
//! its region counter, read only), `abort` (dies by SIGABRT). `bump` in an isolated worker is a write into the segment,
//! which faults.
//!
//! Readiness (issue 14: readiness): the worker options `needs_ready` (the worker is `starting`
//! until it declares itself ready) and `after=NAME` (starts only once the worker NAME is ready;
//! may be given more than once); the trigger `ready` makes a worker declare itself ready and log
//! `declared ready`.
//!
//! Locks: the setting `locks` = `"none" | "on" | "duplicate" | "bad_name"`: `on` requests the
//! lock `counter` and the region `testkit_locks` for the `testkit_locker` entry; `duplicate`
//! requests `counter` twice and `bad_name` requests one named with a newline (init must fail
//! naming them).
//!
//! Dynamic-worker benchmarks (issue 14: benchmarks): the setting `dynbench` and the entries
//! `testkit_dynbench` and `testkit_dyn_stamp`, described in `dynbench.rs`.
//!
//! The entry `testkit_by_name` (issue 14: control) looks up the static worker `w`, itself and a
//! name no worker has with `WorkerHandle::by_name`, and logs what each gave.
//!
//! Each worker publishes its state in the `testkit` region: slot `arg` counts bumps.
//!
//! The entry `testkit_locker` (`entry=testkit_locker`) works on the lock `counter` (or the one
//! its option `lock=NAME` names; an unknown one fails the worker with the SDK's error), with
//! options: `add=N` adds one N times under the exclusive lock, waits until `of=K` workers did,
//! then logs `total T` read under the shared lock; `hold` takes the lock, logs `holding the lock`
//! and keeps it until told to stop; `wait_lock` waits until a holder holds it, logs `waiting for
//! the lock`, takes it and logs `got the lock`; `leak` waits for the trigger `leak`, then takes
//! the lock, forgets the guard and returns `Ok`; `bench=N` times N uncontended exclusive pairs and
//! N pairs of bare atomics on the region (the floor), and logs `lock bench: X ns per pair, floor
//! Y ns`.

// issue 14: benchmarks
mod dynbench;
// issue 15: connections
mod connections;
// issue 15: connections
mod refusals;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use steward::{
    entry, BackgroundWorker, EntryPoint, InitError, LatchHandle, Region, Registrar, RestartPolicy, StartTime, Startup,
    WaitResult, Worker, WorkerError,
};

steward::plugin! { name: "testkit", init: init }

// issue 14: notifications
mod notify;
use notify::testkit_launch_hook;

const POLL: Duration = Duration::from_millis(10);
const MAX_WORKERS: u64 = 4096;
/// Words of the `latch` region: 0 the waiter's handle, 1 the setter's, 2 the set's timestamp,
/// 3 the poller's handle, the rest free for `publish_latch`.
const LATCH_WORDS: usize = 64;
// issue 14: queue
/// Entries that fill the dynamic slots, queue, and see launch failures.
mod queue;

// issue 14: dynamic workers
/// Most dynamic workers `testkit_launcher` launches.
const MAX_DYNAMIC: usize = 256;
/// Words of the `testkit_handles` region: 0 the number of handles stored (set once all are),
/// then from word `HANDLE_WORDS_AT` each handle's slot and generation.
const HANDLE_WORDS_AT: usize = 1;

fn init(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    let mode = reg.define_enum("init", "ok", &["ok", "error", "panic"], "how init ends")?;
    let workers = reg.define_string("workers", "", "worker specs: name[:option...] separated by commas")?;
    let delay = reg.define_duration("restart_delay", Duration::from_millis(100), "restart delay")?;
    reg.define_string("trigger_dir", "", "directory of trigger files")?;
    reg.define_bool("verbose", false, "log every trigger")?;
    reg.define_string("message", "", "reported by workers after a reload (reloadable)")?;
    reg.restart_only(|reg| reg.define_int("fixed", 0, 0..=1000, "a restart-only setting"))?;
    let hook = reg.define_enum(
        "startup_hook",
        "none",
        &["none", "hold", "fail", "latch", "launch"],
        "a startup hook",
    )?;
    match hook.as_str() {
        "hold" => reg.register_startup_hook("hold", entry!(testkit_hold))?,
        "latch" => reg.register_startup_hook("latched", entry!(testkit_latch_hook))?,
        "fail" => reg.register_startup_hook("doomed", entry!(testkit_fail_hook))?,
        // issue 14: notifications
        "launch" => reg.register_startup_hook("launching", entry!(testkit_launch_hook))?,
        _ => {}
    }
    // issue 14: segment init
    let seginit = reg.define_enum(
        "segment_init",
        "none",
        &["none", "fill", "fail", "panic"],
        "a segment init hook",
    )?;
    reg.define_duration(
        "segment_init_delay",
        Duration::ZERO,
        "how long the `fill` segment init hook takes",
    )?;
    reg.request_region("seginit", 64)?;
    match seginit.as_str() {
        "fill" => reg.on_segment_init(entry!(testkit_seginit_fill))?,
        "fail" => reg.on_segment_init(entry!(testkit_seginit_fail))?,
        "panic" => reg.on_segment_init(entry!(testkit_seginit_panic))?,
        _ => {}
    }
    reg.define_bool(
        "announce",
        false,
        "log \"up\" when a worker's entry starts (for benchmarks)",
    )?;
    reg.define_bool(
        "check_thread",
        false,
        "log whether the C library's view of the thread is right",
    )?;
    let spawn_thread = reg.define_bool(
        "init_thread",
        false,
        "init starts a thread that outlives it (the host must refuse that)",
    )?;
    reg.request_region("testkit", MAX_WORKERS * 8)?;
    reg.request_region("latch", LATCH_WORDS as u64 * 8)?;
    // issue 14: dynamic workers
    let dynamic = reg.define_int(
        "dynamic",
        0,
        0..=MAX_DYNAMIC as i64,
        "how many dynamic workers testkit_launcher launches (0: no handle region)",
    )?;
    if dynamic > 0 {
        reg.request_region("testkit_handles", (HANDLE_WORDS_AT + 2 * MAX_DYNAMIC) as u64 * 8)?;
    }
    reg.define_int("latch_batch", 100, 1..=100_000, "set-to-wake samples per logged batch")?;
    reg.define_duration(
        "latch_pace",
        Duration::from_micros(500),
        "pause between the latch setter's sets",
    )?;
    request_locks(reg)?;
    // issue 14: benchmarks
    dynbench::request(reg)?;
    // issue 15: connections
    connections::register(reg)?;
    // issue 15: connections
    refusals::register(reg)?;
    if spawn_thread && !reg.is_attach() {
        // Parked for good: the thread must still exist when the host counts its threads.
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }
    match mode.as_str() {
        "error" => return Err(InitError("testkit was told to fail its init".into())),
        "panic" => panic!("testkit was told to panic in init"),
        _ => {}
    }
    if reg.is_attach() {
        // An exec-mode child re-running init: registration is a no-op there, so skip building
        // thousands of registrations in every child.
        return Ok(());
    }
    for (i, item) in workers.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let mut parts = item.split(':');
        let name = parts.next().unwrap_or_default();
        let mut entry_point = entry!(testkit_worker);
        let mut library: Option<&str> = None;
        let mut function: Option<&str> = None;
        let mut policy = RestartPolicy::after(delay);
        let mut worker_type = "testkit".to_owned();
        let mut flags = Vec::new();
        let mut crash_loop = None;
        let mut start = StartTime::Running;
        let mut needs_ready = false;
        let mut start_after = Vec::new();
        // issue 15: isolated
        let mut isolated = false;
        let mut stop_with_launcher = false;
        for opt in parts {
            match opt.split_once('=') {
                Some(("entry", f)) => function = Some(f),
                Some(("lib", l)) => library = Some(l),
                Some(("start", t)) => {
                    start = match t {
                        "host_start" => StartTime::HostStart,
                        "consistent" => StartTime::Consistent,
                        _ => StartTime::Running,
                    }
                }
                Some(("type", t)) => worker_type = t.to_owned(),
                Some(("backoff", b)) => {
                    // initial/factor/cap/reset, e.g. 20ms/2/200ms/1s
                    let p: Vec<&str> = b.split('/').collect();
                    let d = |i: usize| parse_ms(p.get(i).copied().unwrap_or("0"));
                    let factor = p.get(1).and_then(|f| f.parse().ok()).unwrap_or(2.0);
                    policy = RestartPolicy::backoff(d(0), factor, d(2)).reset_after(d(3));
                }
                Some(("limit", l)) => {
                    // max/window, e.g. 3/10s
                    let (n, w) = l.split_once('/').unwrap_or((l, "60s"));
                    crash_loop = Some((n.parse().unwrap_or(1), parse_ms(w)));
                }
                Some(("after", t)) => start_after.push(t.to_owned()),
                None if opt == "needs_ready" => needs_ready = true,
                None if opt == "never" => policy = RestartPolicy::never(),
                None if opt == "isolated" => isolated = true,
                // issue 14: notifications (refused for a static worker: init fails)
                None if opt == "stop_with_launcher" => stop_with_launcher = true,
                _ => flags.push(opt.to_owned()),
            }
        }
        if library.is_some() || function.is_some() {
            entry_point = EntryPoint::new(library.unwrap_or("testkit"), function.unwrap_or("testkit_worker"));
        }
        let mut w = BackgroundWorker::new(name, entry_point).start_time(start);
        if let Some((n, window)) = crash_loop {
            w = w.crash_loop_limit(n, window);
        }
        if needs_ready {
            w = w.needs_ready();
        }
        for t in start_after {
            w = w.start_after(t);
        }
        if isolated {
            w = w.isolated();
        }
        if stop_with_launcher {
            w = w.stop_with_launcher();
        }
        reg.register_background_worker(
            w.worker_type(worker_type)
                .restart(policy)
                .arg(i as u64)
                .extra(flags.join(":").into_bytes()),
        )?;
    }
    Ok(())
}

/// `"250ms"`, `"2s"`, `"1min"` or a number of milliseconds (init fails on anything else).
fn parse_ms(s: &str) -> Duration {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().unwrap_or(0);
    match unit {
        "s" => Duration::from_secs(n),
        "min" => Duration::from_secs(n * 60),
        "ms" | "" => Duration::from_millis(n),
        other => panic!("testkit: unknown duration unit {other:?} in {s:?}"),
    }
}

fn fatal(e: impl std::fmt::Display) -> WorkerError {
    WorkerError::fatal(e.to_string())
}

fn testkit_worker(w: &mut Worker) -> Result<(), WorkerError> {
    let flags = String::from_utf8_lossy(w.extra()).into_owned();
    let flags: Vec<&str> = flags.split(':').filter(|s| !s.is_empty()).collect();
    let region = w.region("testkit").map_err(fatal)?;
    let counter = region
        .atomic_u64(w.arg() as usize)
        .ok_or_else(|| fatal("arg out of range"))?;
    let trigger_dir: String = w.setting("trigger_dir").map_err(fatal)?;
    // Debug lines, for tests of per-plugin log levels.
    tracing::debug!("entry started");
    let verbose: bool = w.setting("verbose").map_err(fatal)?;
    if w.setting::<bool>("announce").map_err(fatal)? {
        let message: String = w.setting("message").map_err(fatal)?;
        tracing::info!("up message={message}");
    }
    if w.setting::<bool>("check_thread").map_err(fatal)? {
        match thread_state() {
            Ok(()) => tracing::info!("thread ok"),
            Err(why) => tracing::error!("thread wrong: {why}"),
        }
    }
    let trigger = (!trigger_dir.is_empty()).then(|| PathBuf::from(&trigger_dir).join(w.name()));

    for flag in &flags {
        if let Some(code) = flag.strip_prefix("exit_at_start=") {
            return exit_with(code.parse().unwrap_or(1));
        }
        if *flag == "late_register" {
            let r = steward::register_after_init(
                BackgroundWorker::new(format!("{}-late", w.name()), entry!(testkit_worker)),
                "testkit",
            );
            match r {
                Ok(()) => tracing::error!("late registration succeeded, which it must not"),
                Err(e) => tracing::warn!("late registration refused: {e}"),
            }
        }
    }
    let ignore_term = flags.contains(&"ignore_term");
    if ignore_term {
        // SAFETY: setting a signal disposition to SIG_IGN is always sound.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        tracing::info!("ignoring SIGTERM");
    }
    // Without a trigger directory there is nothing to poll for: sleep until told to stop.
    let poll = if trigger.is_some() {
        POLL
    } else {
        Duration::from_secs(3600)
    };
    let latches = w.region("latch").map_err(fatal)?;
    loop {
        let r = w.wait(poll);
        if r == WaitResult::Latch {
            tracing::info!("woke on latch");
        }
        if r == WaitResult::Reload {
            let message: String = w.setting("message").map_err(fatal)?;
            let fixed: i64 = w.setting("fixed").map_err(fatal)?;
            tracing::info!("reloaded: message={message} fixed={fixed}");
        }
        if r.should_stop() && !ignore_term {
            // issue 15: connections
            // `stop_after=D`: a worker slow to stop, which holds a shutdown for D.
            if let Some(d) = flags.iter().find_map(|f| f.strip_prefix("stop_after=")) {
                std::thread::sleep(parse_ms(d));
            }
            return Ok(());
        }
        let Some(path) = &trigger else { continue };
        let Ok(action) = std::fs::read_to_string(path) else {
            continue;
        };
        let _ = std::fs::remove_file(path);
        let action_raw = action.trim_start();
        let action = action.trim();
        tracing::debug!("trigger file says {action:?}");
        if verbose {
            tracing::info!("trigger: {action}");
        }
        let (verb, rest) = action.split_once(' ').unwrap_or((action, ""));
        match verb {
            "exit" => return exit_with(rest.trim().parse().unwrap_or(1)),
            "panic" => panic!("{rest}"),
            "segv" => {
                // SAFETY: deliberately unsound: this worker exists to crash with SIGSEGV.
                unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
            }
            "bump" => {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!("bumped to {n}");
            }
            "publish_latch" => {
                let k = latch_word(&latches, rest)?;
                k.store(w.latch().to_raw(), Ordering::SeqCst);
                tracing::info!("published latch {}", rest.trim());
            }
            "set_latch" => {
                let k = latch_word(&latches, rest)?;
                let set = LatchHandle::from_raw(k.load(Ordering::SeqCst)).set();
                tracing::info!("set latch {}: {set}", rest.trim());
            }
            "activity" => {
                // The raw file, not the trimmed action: the text may hold a line break.
                w.set_activity(&action_raw[action_raw.find(' ').map_or(action_raw.len(), |i| i + 1)..]);
                tracing::info!("activity set");
            }
            "ready" => {
                w.set_ready();
                tracing::info!("declared ready");
            }
            // issue 15: isolated
            "log_latch" => tracing::info!("my latch is {}", w.latch().to_raw()),
            "peek" => tracing::info!("counter is {}", counter.load(Ordering::SeqCst)),
            "abort" => std::process::abort(),
            "set_latch_raw" => {
                let raw: u64 = rest.trim().parse().map_err(|_| fatal(format!("bad latch {rest:?}")))?;
                let set = LatchHandle::from_raw(raw).set();
                tracing::info!("set raw latch: {set}");
            }
            "try_lock" => match w.lock(rest.trim()) {
                Ok(l) => {
                    drop(l.exclusive());
                    tracing::info!("took lock {}", rest.trim());
                }
                Err(e) => tracing::info!("lock refused: {e}"),
            },
            "orphan" => {
                let pid = fork_grandchild(rest.trim() == "ignore_term")?;
                tracing::info!("forked grandchild {pid}");
                return Ok(());
            }
            other => tracing::warn!("unknown trigger {other:?}"),
        }
    }
}
steward::worker_entry!(testkit_worker);

/// Forks a process that outlives this worker: it sleeps until a signal ends it (SIGTERM too,
/// unless `ignore_term`). Returns its pid.
fn fork_grandchild(ignore_term: bool) -> Result<i32, WorkerError> {
    // Signals stay blocked until the grandchild has its own dispositions: a SIGTERM that reached
    // it earlier would run the worker's handler, which only sets a flag, and be lost.
    // SAFETY: sigfillset and sigprocmask only write local sets and this thread's mask.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    // SAFETY: a worker process is single-threaded, and the new process only calls
    // async-signal-safe functions (signal, sigprocmask, pause).
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        let err = std::io::Error::last_os_error();
        // SAFETY: restoring the mask sigprocmask returned above.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        return if pid < 0 { Err(fatal(err)) } else { Ok(pid) };
    }
    // SAFETY: setting dispositions and the mask of this process; pause only sleeps.
    unsafe {
        // The worker's handlers only set flags nobody here reads: a grandchild ends the way a
        // plain program does.
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGINT] {
            libc::signal(sig, libc::SIG_DFL);
        }
        if ignore_term {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        loop {
            libc::pause();
        }
    }
}

fn exit_with(code: i32) -> Result<(), WorkerError> {
    match code {
        0 => Ok(()),
        1 => Err(WorkerError::restart("testkit was told to exit 1")),
        2 => Err(WorkerError::fatal("testkit was told to exit 2")),
        // Any other code is a raw process exit, which the host must treat as a crash.
        n => std::process::exit(n),
    }
}

/// A plain exported function that is not a worker entry: naming it as an entry must fail cleanly.
#[no_mangle]
pub extern "C" fn testkit_not_an_entry() -> i32 {
    0
}

/// Startup hook `hold`: holds the host in startup until the trigger file `startup` says
/// `consistent`, declares the host consistent, then holds it there until it says `run`.
fn testkit_hold(s: &mut Startup) -> Result<(), String> {
    let dir: String = s.setting("trigger_dir").map_err(|e| e.to_string())?;
    let file = PathBuf::from(dir).join("startup");
    for (want, then_consistent) in [("consistent", true), ("run", false)] {
        loop {
            if s.wait(POLL).should_stop() {
                return Err("stopped while holding start-up".into());
            }
            if std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == want) {
                break;
            }
        }
        if then_consistent {
            s.declare_consistent();
        }
    }
    Ok(())
}
steward::startup_hook!(testkit_hold);

/// Startup hook `latched`: publishes its latch in word 20 of the `latch` region and holds the
/// host in startup until a `host_start` worker sets it.
fn testkit_latch_hook(s: &mut Startup) -> Result<(), String> {
    let latches = s.region("latch").map_err(|e| e.to_string())?;
    let word = latches.atomic_u64(20).ok_or("latch region too small")?;
    word.store(s.latch().to_raw(), Ordering::SeqCst);
    tracing::info!("startup hook published latch 20");
    loop {
        match s.wait(Duration::from_secs(60)) {
            WaitResult::Latch => break,
            r if r.should_stop() => return Err("stopped while waiting for the latch".into()),
            _ => {}
        }
    }
    tracing::info!("startup hook woke on latch");
    Ok(())
}
steward::startup_hook!(testkit_latch_hook);

/// Startup hook `doomed`: fails at once.
fn testkit_fail_hook(_s: &mut Startup) -> Result<(), String> {
    Err("testkit was told to fail its startup hook".into())
}
steward::startup_hook!(testkit_fail_hook);

// issue 14: segment init
/// What the `fill` segment init hook writes in word 0 of the `seginit` region.
pub const SEGINIT_MAGIC: u64 = 0x5E61_17ED;

/// Segment init hook `fill`: see the module header.
fn testkit_seginit_fill(s: &mut steward::SegmentInit) -> Result<(), String> {
    let dir: String = s.setting("trigger_dir").map_err(|e| e.to_string())?;
    if std::fs::read_to_string(PathBuf::from(dir).join("segment_init")).is_ok_and(|t| t.trim() == "fail") {
        return Err("testkit was told to fail its segment init".into());
    }
    let delay: Duration = s.setting("segment_init_delay").map_err(|e| e.to_string())?;
    // Slow on purpose: a worker that started before the hook returned would read zeros.
    std::thread::sleep(delay);
    let region = s.region("seginit").map_err(|e| e.to_string())?;
    let word = |i: usize| region.atomic_u64(i).ok_or("seginit region too small");
    let (magic, inits, dirty) = (word(0)?, word(1)?, word(2)?);
    if magic.load(Ordering::SeqCst) != 0 || dirty.load(Ordering::SeqCst) != 0 {
        return Err("the seginit region of a new segment is not zeroed".into());
    }
    magic.store(SEGINIT_MAGIC, Ordering::SeqCst);
    inits.fetch_add(1, Ordering::SeqCst);
    tracing::info!("segment init filled the region");
    Ok(())
}
steward::segment_init!(testkit_seginit_fill);

/// Segment init hook `fail`: fails at once.
fn testkit_seginit_fail(_s: &mut steward::SegmentInit) -> Result<(), String> {
    Err("testkit was told to fail its segment init".into())
}
steward::segment_init!(testkit_seginit_fail);

/// Segment init hook `panic`: panics at once.
fn testkit_seginit_panic(_s: &mut steward::SegmentInit) -> Result<(), String> {
    panic!("testkit was told to panic in its segment init")
}
steward::segment_init!(testkit_seginit_panic);

/// Entry `testkit_seginit_reader`: see the module header.
fn testkit_seginit_reader(w: &mut Worker) -> Result<(), WorkerError> {
    let region = w.region("seginit").map_err(fatal)?;
    let word = |i: usize| region.atomic_u64(i).ok_or_else(|| fatal("seginit region too small"));
    let (magic, inits, dirty) = (word(0)?, word(1)?, word(2)?);
    // Read before anything else this worker does.
    let seen = (
        magic.load(Ordering::SeqCst),
        inits.load(Ordering::SeqCst),
        dirty.load(Ordering::SeqCst),
    );
    tracing::info!("seginit saw magic={:#x} inits={} dirty={}", seen.0, seen.1, seen.2);
    dirty.store(1, Ordering::SeqCst);
    while !w.wait(Duration::from_secs(60)).should_stop() {}
    Ok(())
}
steward::worker_entry!(testkit_seginit_reader);

/// Whether glibc's record of this thread matches the kernel's: the tid it keeps names this thread
/// (a thread CPU clock only resolves for a thread of the calling process), and the robust-futex
/// list glibc's `fork` registers is registered.
fn thread_state() -> Result<(), String> {
    // SAFETY: each call only writes the given out-parameters.
    unsafe {
        let mut clock: libc::clockid_t = 0;
        let rc = libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock);
        if rc != 0 {
            return Err(format!(
                "pthread_getcpuclockid: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut ts) != 0 {
            return Err(format!(
                "the thread's CPU clock: {} (the C library holds another thread's id)",
                std::io::Error::last_os_error()
            ));
        }
        let mut head: usize = 0;
        let mut len: usize = 0;
        let rc = libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut usize,
        );
        if rc != 0 || head == 0 {
            return Err("no robust-futex list is registered".into());
        }
    }
    Ok(())
}

/// Word `k` of the `latch` region, from a trigger's argument.
fn latch_word<'r>(latches: &'r Region, k: &str) -> Result<&'r AtomicU64, WorkerError> {
    let k: usize = k.trim().parse().map_err(|_| fatal(format!("bad latch word {k:?}")))?;
    latches
        .atomic_u64(k)
        .ok_or_else(|| fatal(format!("latch word {k} out of range")))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static USR1_SEEN: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_sig: libc::c_int) {
    USR1_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// The latch ping-pong's waiting side: sleeps in `wait`, and on each set measures how long the
/// wake-up took (from the setter's timestamp) and sets the setter's latch back. Counts the sets
/// `wait` slept through (`lost`, in each batch line).
fn testkit_latch_waiter(w: &mut Worker) -> Result<(), WorkerError> {
    let latches = w.region("latch").map_err(fatal)?;
    let word = |k: usize| latches.atomic_u64(k).ok_or_else(|| fatal("latch region too small"));
    let (mine, setter, stamp) = (word(0)?, word(1)?, word(2)?);
    let extra = String::from_utf8_lossy(w.extra()).into_owned();
    let flags: Vec<&str> = extra.split(':').collect();
    if flags.contains(&"usr1") {
        // The plugin's own SIGUSR1 handler: Steward must not need that signal for latches.
        // SAFETY: the handler only increments an atomic.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    }
    let batch: i64 = w.setting("latch_batch").map_err(fatal)?;
    mine.store(w.latch().to_raw(), Ordering::SeqCst);
    if flags.contains(&"ignore_urg") {
        // Misbehaving on purpose: the host's SIGURG handler is replaced after the latch was taken.
        // SAFETY: setting a disposition to SIG_IGN is always sound.
        unsafe { libc::signal(libc::SIGURG, libc::SIG_IGN) };
    }
    if flags.contains(&"block_urg") {
        // SIGURG blocked in the (only) thread: `wait` must unblock it for its sleep.
        // SAFETY: editing a local set and this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGURG);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
    let (mut samples, mut batches, mut rounds, mut lost) = (Vec::new(), 0u64, 0u64, 0u64);
    let mut shown = (u64::MAX, u32::MAX);
    loop {
        // A long sleep, so a lost wake-up cannot hide behind the next timeout: the setter sets
        // every 500 us, so this wait only times out when a set did not wake it.
        let r = w.wait(Duration::from_secs(5));
        if r.should_stop() {
            return Ok(());
        }
        // A timeout that finds the latch set is a wake-up `wait` missed: counted, and the round
        // goes on (its sample shows the seconds it cost).
        let missed = r == WaitResult::Timeout && w.reset_latch();
        if missed {
            lost += 1;
            tracing::warn!("a set latch did not wake wait ({lost} so far)");
        }
        if r == WaitResult::Latch || missed {
            let woke = monotonic_ns();
            samples.push(woke.saturating_sub(stamp.load(Ordering::SeqCst)) / 1000);
            rounds += 1;
            LatchHandle::from_raw(setter.load(Ordering::SeqCst)).set();
            if samples.len() as i64 == batch {
                samples.sort_unstable();
                batches += 1;
                tracing::info!(
                    "latch batch {batches} n={} median_us={} max_us={} lost={lost}",
                    samples.len(),
                    samples[samples.len() / 2],
                    samples[samples.len() - 1]
                );
                samples.clear();
            }
        }
        let now = (rounds, USR1_SEEN.load(Ordering::SeqCst));
        if now != shown {
            w.set_activity(&format!("rounds={} usr1={}", now.0, now.1));
            shown = now;
        }
    }
}
steward::worker_entry!(testkit_latch_waiter);

/// The latch ping-pong's setting side: lets the waiter fall asleep, stamps the time, sets its
/// latch, and waits for the waiter to set this worker's latch back.
fn testkit_latch_setter(w: &mut Worker) -> Result<(), WorkerError> {
    let latches = w.region("latch").map_err(fatal)?;
    let word = |k: usize| latches.atomic_u64(k).ok_or_else(|| fatal("latch region too small"));
    let (waiter, mine, stamp) = (word(0)?, word(1)?, word(2)?);
    let pace: Duration = w.setting("latch_pace").map_err(fatal)?;
    mine.store(w.latch().to_raw(), Ordering::SeqCst);
    loop {
        // Pacing, so the waiter is asleep in `wait` when the set comes; the waiter's latch is the
        // only one this worker sets, so nothing else ends this wait early.
        if w.wait(pace).should_stop() {
            return Ok(());
        }
        let h = LatchHandle::from_raw(waiter.load(Ordering::SeqCst));
        if h.is_none() {
            continue;
        }
        stamp.store(monotonic_ns(), Ordering::SeqCst);
        if !h.set() {
            return Err(fatal("the waiter's latch handle is stale"));
        }
        loop {
            match w.wait(Duration::from_secs(1)) {
                WaitResult::Latch => break,
                r if r.should_stop() => return Ok(()),
                WaitResult::Timeout => tracing::warn!("no answer from the waiter within 1s"),
                _ => {}
            }
        }
    }
}
steward::worker_entry!(testkit_latch_setter);

/// Sleeps in `poll(2)` on the latch fd, as an async runtime would: reset, then see why.
fn testkit_latch_poll(w: &mut Worker) -> Result<(), WorkerError> {
    let latches = w.region("latch").map_err(fatal)?;
    let fd = w.latch_fd().ok_or_else(|| fatal("this host has no latch fd"))?;
    latches
        .atomic_u64(3)
        .ok_or_else(|| fatal("latch region too small"))?
        .store(w.latch().to_raw(), Ordering::SeqCst);
    tracing::info!("polling the latch fd");
    let mut woken = 0u64;
    loop {
        let mut p = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack; no timeout: only the fd ends the sleep.
        unsafe { libc::poll(&mut p, 1, -1) };
        if w.reset_latch() {
            woken += 1;
            tracing::info!("poll woke on latch {woken}");
        }
        if w.should_stop() {
            tracing::info!("poll saw the stop request");
            return Ok(());
        }
    }
}
steward::worker_entry!(testkit_latch_poll);
steward::shareable! {
    /// What `testkit_locker` workers share, in the region `testkit_locks`.
    #[repr(C)]
    struct LockData {
        /// Incremented with a plain load and store under the exclusive lock.
        counter: AtomicU64,
        /// How many adders finished.
        done: AtomicU32,
        /// 1 while a `hold` worker holds the lock.
        holding: AtomicU32,
        /// The benchmark's floor: a word taken and released with bare atomics.
        floor: AtomicU32,
    }
}

fn request_locks(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    let locks = reg.define_enum(
        "locks",
        "none",
        &["none", "on", "duplicate", "bad_name"],
        "the lock testkit_locker workers use",
    )?;
    match locks.as_str() {
        "on" => {
            reg.request_lock("counter")?;
            reg.request_region("testkit_locks", std::mem::size_of::<LockData>() as u64)?;
        }
        "duplicate" => {
            reg.request_lock("counter")?;
            reg.request_lock("counter")?;
        }
        "bad_name" => reg.request_lock("bad\nname")?,
        _ => {}
    }
    Ok(())
}

fn testkit_locker(w: &mut Worker) -> Result<(), WorkerError> {
    let extra = String::from_utf8_lossy(w.extra()).into_owned();
    let opt = |key: &str| {
        extra
            .split(':')
            .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let has = |flag: &str| extra.split(':').any(|f| f == flag);
    let name = opt("lock").unwrap_or("counter");
    let lock = w.lock(name).map_err(|e| {
        tracing::error!("{e}");
        fatal(e)
    })?;
    let region = w.region("testkit_locks").map_err(fatal)?;
    let data = region.get::<LockData>().map_err(fatal)?;
    let idle = |w: &Worker| {
        while !w.wait(Duration::from_secs(3600)).should_stop() {}
    };
    if let Some(n) = opt("bench").and_then(|n| n.parse::<u32>().ok()) {
        // Uncontended exclusive pairs through the host, then the floor: a compare-and-swap and a
        // release store on a word of the same shared mapping, in the same process.
        let start = std::time::Instant::now();
        for _ in 0..n {
            drop(std::hint::black_box(lock.exclusive()));
        }
        let lock_ns = start.elapsed().as_nanos() as f64 / n as f64;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let w = std::hint::black_box(&data.floor);
            let _ = w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            w.store(0, Ordering::Release);
        }
        let floor_ns = start.elapsed().as_nanos() as f64 / n as f64;
        tracing::info!("lock bench: {lock_ns:.2} ns per pair, floor {floor_ns:.2} ns");
        idle(w);
    } else if let Some(n) = opt("add").and_then(|n| n.parse::<u64>().ok()) {
        for _ in 0..n {
            let _g = lock.exclusive();
            data.counter
                .store(data.counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        data.done.fetch_add(1, Ordering::SeqCst);
        tracing::info!("added {n}");
        let of = opt("of").and_then(|k| k.parse::<u32>().ok()).unwrap_or(1);
        while data.done.load(Ordering::SeqCst) < of {
            if w.wait(POLL).should_stop() {
                return Ok(());
            }
        }
        let total = {
            let _g = lock.shared();
            data.counter.load(Ordering::Relaxed)
        };
        tracing::info!("total {total}");
        idle(w);
    } else if has("hold") {
        let g = lock.exclusive();
        data.holding.store(1, Ordering::SeqCst);
        tracing::info!("holding the lock");
        idle(w);
        data.holding.store(0, Ordering::SeqCst);
        drop(g);
    } else if has("wait_lock") {
        while data.holding.load(Ordering::SeqCst) == 0 {
            if w.wait(POLL).should_stop() {
                return Ok(());
            }
        }
        tracing::info!("waiting for the lock");
        drop(lock.exclusive());
        tracing::info!("got the lock");
        idle(w);
    } else if has("leak") {
        let trigger: String = w.setting("trigger_dir").map_err(fatal)?;
        let file = PathBuf::from(trigger).join(w.name());
        loop {
            if w.wait(POLL).should_stop() {
                return Ok(());
            }
            if std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == "leak") {
                let _ = std::fs::remove_file(&file);
                break;
            }
        }
        std::mem::forget(lock.exclusive());
        tracing::info!("leaked a lock guard; returning");
    }
    Ok(())
}
steward::worker_entry!(testkit_locker);

// issue 14: dynamic workers
/// `testkit_launcher` (`entry=testkit_launcher`): launches a worker whose entry does not exist
/// and logs `missing entry stopped: REASON`; launches `dynamic` workers of the entry
/// `testkit_dyn_child` (restart policy `after` 100 ms), the first of which takes the missing
/// one's freed slot (logs `old handle: stale` when the old handle says so); waits for each to
/// start, stores the handles in `testkit_handles` and logs `launched N running`; then launches
/// `dyn-fill-K` workers until a launch is refused, logs `refused in US us: ERROR`, terminates the
/// fillers and only then publishes the handles; then waits until stopped.
fn testkit_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let n: i64 = w.setting("dynamic").map_err(fatal)?;
    let n = n as usize;
    let region = w.region("testkit_handles").map_err(fatal)?;
    let word = |i: usize| region.atomic_u64(i).ok_or_else(|| fatal("handle region too small"));
    let t = Duration::from_secs(10);
    let child = |name: String| {
        BackgroundWorker::new(name, EntryPoint::new("testkit", "testkit_dyn_child"))
            .restart(RestartPolicy::after(Duration::from_millis(100)))
    };
    let missing = w
        .launch(BackgroundWorker::new(
            "dyn-missing",
            EntryPoint::new("testkit", "testkit_no_such_entry"),
        ))
        .map_err(fatal)?;
    match missing.wait_for_startup(t).map_err(fatal)? {
        steward::WorkerStatus::Stopped { reason, .. } => tracing::info!("missing entry stopped: {reason}"),
        other => return Err(fatal(format!("missing entry: {other:?}"))),
    }
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let h = w.launch(child(format!("dyn-{i}"))).map_err(fatal)?;
        if i == 0 && h.slot() == missing.slot() {
            match missing.status() {
                Err(steward::HandleError::Stale) => tracing::info!("old handle: stale"),
                other => tracing::error!("old handle in a reused slot answered {other:?}"),
            }
        }
        handles.push(h);
    }
    for (i, h) in handles.iter().enumerate() {
        match h.wait_for_startup(t).map_err(fatal)? {
            steward::WorkerStatus::Running { pid } if pid > 0 => {}
            other => return Err(fatal(format!("dyn-{i} did not start: {other:?}"))),
        }
        let (slot, generation) = h.to_raw();
        word(HANDLE_WORDS_AT + 2 * i)?.store(slot as u64, Ordering::Relaxed);
        word(HANDLE_WORDS_AT + 2 * i + 1)?.store(generation, Ordering::Relaxed);
    }
    tracing::info!("launched {n} running");
    // Every dynamic slot left is filled; the launch after the last is refused at once. The
    // fillers are terminated before the handles are handed over.
    let mut fillers = Vec::new();
    loop {
        let asked = std::time::Instant::now();
        match w.launch(child(format!("dyn-fill-{}", fillers.len()))) {
            Ok(h) if fillers.len() < MAX_DYNAMIC => fillers.push(h),
            Ok(h) => {
                tracing::error!("launched one too many: {h:?}");
                break;
            }
            Err(e) => {
                tracing::info!("refused in {} us: {e}", asked.elapsed().as_micros());
                break;
            }
        }
    }
    for h in &fillers {
        h.terminate().map_err(fatal)?;
    }
    for h in &fillers {
        if !matches!(h.wait_for_shutdown(t), Ok(steward::WorkerStatus::Stopped { .. })) {
            tracing::error!("filler {h:?} did not stop");
        }
    }
    word(0)?.store(n as u64, Ordering::Release);
    while !matches!(
        w.wait(Duration::from_secs(60)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
    Ok(())
}
steward::worker_entry!(testkit_launcher);

/// `testkit_terminator` (`entry=testkit_terminator`): waits until `testkit_handles` holds the
/// launcher's handles and its trigger file exists, terminates each through its handle, waits for
/// each to stop, and logs `stopped K of N` (K: the handles that answered `Stopped`).
fn testkit_terminator(w: &mut Worker) -> Result<(), WorkerError> {
    let region = w.region("testkit_handles").map_err(fatal)?;
    let word = |i: usize| region.atomic_u64(i).ok_or_else(|| fatal("handle region too small"));
    let trigger_dir: String = w.setting("trigger_dir").map_err(fatal)?;
    let trigger = PathBuf::from(trigger_dir).join(w.name());
    let n = loop {
        let n = word(0)?.load(Ordering::Acquire) as usize;
        if n > 0 && trigger.exists() {
            break n.min(MAX_DYNAMIC);
        }
        if matches!(w.wait(POLL), WaitResult::Terminate | WaitResult::HostGone) {
            return Ok(());
        }
    };
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let slot = word(HANDLE_WORDS_AT + 2 * i)?.load(Ordering::Relaxed) as u32;
        let generation = word(HANDLE_WORDS_AT + 2 * i + 1)?.load(Ordering::Relaxed);
        let h = steward::WorkerHandle::from_raw(slot, generation);
        h.terminate().map_err(fatal)?;
        handles.push(h);
    }
    let mut stopped = 0;
    for h in &handles {
        match h.wait_for_shutdown(Duration::from_secs(10)) {
            Ok(steward::WorkerStatus::Stopped { .. }) => stopped += 1,
            other => tracing::error!("handle {h:?} after terminate: {other:?}"),
        }
    }
    tracing::info!("stopped {stopped} of {n}");
    while !matches!(
        w.wait(Duration::from_secs(60)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
    Ok(())
}
steward::worker_entry!(testkit_terminator);

/// A dynamic worker of `testkit_launcher`: waits until told to stop.
fn testkit_dyn_child(w: &mut Worker) -> Result<(), WorkerError> {
    while !matches!(
        w.wait(Duration::from_secs(60)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
    Ok(())
}
steward::worker_entry!(testkit_dyn_child);

// issue 14: control
/// `testkit_by_name`: looks up by name the static worker `w`, itself, and a name no worker has,
/// logs `by_name NAME: slot S generation G status STATUS` (its status once started; or
/// `by_name NAME: ERROR`) for each,
/// then waits until told to stop.
fn testkit_by_name(w: &mut Worker) -> Result<(), WorkerError> {
    let own = w.name().to_owned();
    for name in ["w", own.as_str(), "no-such-worker"] {
        match steward::WorkerHandle::by_name(name) {
            // Waited for: the supervisor may not have published this very worker as running
            // yet when its entry starts.
            Ok(h) => tracing::info!(
                "by_name {name}: slot {} generation {} status {:?}",
                h.slot(),
                h.generation(),
                h.wait_for_startup(Duration::from_secs(10))
            ),
            Err(e) => tracing::info!("by_name {name}: {e:?}"),
        }
    }
    while !matches!(
        w.wait(Duration::from_secs(60)),
        WaitResult::Terminate | WaitResult::HostGone
    ) {}
    Ok(())
}
steward::worker_entry!(testkit_by_name);
