//! Launchers and what they hear from their dynamic workers (issue 14: notifications), for
//! `tests/tests/notify.rs`. Each entry logs lines prefixed with its topic that the tests wait
//! for; a line with `wrong:` is a failure the tests look for.
//!
//! Runs in: testkit worker processes and the startup child.
//!
//! - `testkit_notify_launcher`: uses only `wait` and `status()` to follow its workers: a missing
//!   entry (`notify: missing stopped: R`), a worker that starts (`notify: child running pid P`)
//!   and is terminated (`notify: child stopped: R`), and the refusals of a duplicate name
//!   (`notify: duplicate refused: E`, `notify: static duplicate refused: E`); then a `needs_ready`
//!   worker `notify-ready` (`notify: ready launched`), which it sees running once that worker
//!   declared itself ready on its trigger `ready` (`notify: ready running pid P`).
//! - `testkit_ready_launcher`: a `needs_ready` worker `ready-child` (entry `testkit_worker`, which
//!   declares itself ready on its trigger `ready`) and `after-child` that starts after it: logs
//!   `ready: not running before set_ready`, then `ready: running pid P` and `ready: after running
//!   pid P`; an unknown `start_after` target: `ready: unknown start_after refused: E`; a worker
//!   that starts after the running launcher itself: `ready: after the launcher running pid P`.
//! - `testkit_swl_root` launches `swl-launcher` (entry `testkit_swl_launcher`, restarted after
//!   100 ms) and, on its trigger `terminate`, terminates it and logs what the handle of the
//!   launcher's `stop_with_launcher` worker says: `root: child after its launcher ended: S`.
//!   `testkit_swl_launcher` logs what its previous instance's child says (`swl: previous child
//!   S`), launches `swl-child` (`stop_with_launcher`) and `swl-keep` (not), writes the child's
//!   handle to the trigger file `swl-handles`, logs `swl: launched child pid P`, and exits on its
//!   trigger `exit N`.
//! - `testkit_reset_launcher`: launches `reset-after` (restart after 100 ms), `reset-backoff`,
//!   `reset-never` and `reset-swl` (`stop_with_launcher`), writes their handles to the trigger
//!   file `reset-handles` and logs `reset: launched`; started again after a crash reset, it reads
//!   the file and logs `reset: NAME S` for each old handle (`wait_for_startup` for the ones that
//!   restart, `status()` for the others).
//! - The startup hook `launching` (setting `startup_hook = "launch"`) launches `hook-child` and
//!   stores its handle in words 0 and 1 of `testkit_handles`; `testkit_hook_reader` waits for
//!   them, logs `hook child: S` from the handle, and on its trigger (any text) terminates it and
//!   logs `hook child after terminate: S`.
//! - `testkit_many_launcher` (review: notifications) launches `many-0` to `many-2` one after the
//!   other and follows them with `wait` and `status()` alone: `many: all running` once every
//!   handle says running, `many: wrong: ...` when no latch came for that within 20 s.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use steward::{
    BackgroundWorker, EntryPoint, HandleError, LaunchError, RestartPolicy, Startup, WaitResult, Worker, WorkerError,
    WorkerHandle, WorkerStatus,
};

use super::{fatal, POLL};

const T: Duration = Duration::from_secs(20);

fn dyn_child(name: &str) -> BackgroundWorker {
    BackgroundWorker::new(name, EntryPoint::new("testkit", "testkit_dyn_child")).restart(RestartPolicy::never())
}

/// Sleeps in `wait` until the latch is set and `done` holds for what `status()` says; `false`
/// when the worker was told to stop or no latch came within [`T`].
fn until_latch(w: &Worker, h: WorkerHandle, what: &str, done: impl Fn(&WorkerStatus) -> bool) -> Option<WorkerStatus> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match w.wait(left) {
            WaitResult::Latch => match h.status() {
                Ok(st) if done(&st) => return Some(st),
                Ok(st) => tracing::info!("notify: woke on latch, {what} is {st:?}"),
                Err(e) => {
                    tracing::error!("notify: wrong: {what}'s handle answered {e}");
                    return None;
                }
            },
            r if r.should_stop() => return None,
            WaitResult::Timeout => {
                tracing::error!("notify: wrong: no latch within {T:?} waiting for {what}");
                return None;
            }
            _ => {}
        }
    }
}

fn stopped(st: &WorkerStatus) -> bool {
    matches!(st, WorkerStatus::Stopped { .. })
}

fn running(st: &WorkerStatus) -> bool {
    matches!(st, WorkerStatus::Running { .. })
}

fn park(w: &Worker) -> Result<(), WorkerError> {
    while !w.wait(Duration::from_secs(60)).should_stop() {}
    Ok(())
}

fn testkit_notify_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let missing = w
        .launch(
            BackgroundWorker::new("notify-missing", EntryPoint::new("testkit", "testkit_no_such_entry"))
                .restart(RestartPolicy::never()),
        )
        .map_err(fatal)?;
    let Some(WorkerStatus::Stopped { reason, .. }) = until_latch(w, missing, "notify-missing", stopped) else {
        return park(w);
    };
    tracing::info!("notify: missing stopped: {reason}");
    let child = w.launch(dyn_child("notify-child")).map_err(fatal)?;
    let Some(WorkerStatus::Running { pid }) = until_latch(w, child, "notify-child", running) else {
        return park(w);
    };
    tracing::info!("notify: child running pid {pid}");
    match w.launch(dyn_child("notify-child")) {
        Err(e @ LaunchError::DuplicateName(_)) => tracing::info!("notify: duplicate refused: {e:?}"),
        other => tracing::error!("notify: wrong: a second notify-child gave {other:?}"),
    }
    match w.launch(dyn_child(w.name())) {
        Err(e @ LaunchError::DuplicateName(_)) => tracing::info!("notify: static duplicate refused: {e:?}"),
        other => tracing::error!("notify: wrong: a worker named after a static one gave {other:?}"),
    }
    child.terminate().map_err(fatal)?;
    let Some(WorkerStatus::Stopped { reason, .. }) = until_latch(w, child, "notify-child", stopped) else {
        return park(w);
    };
    tracing::info!("notify: child stopped: {reason}");
    // Its name is free again once it is gone.
    match w.launch(dyn_child("notify-child")) {
        Ok(h) => {
            tracing::info!("notify: name reused");
            h.terminate().map_err(fatal)?;
            // Its stop is news too: taken here, so what wakes the launcher next is the next
            // worker's alone.
            if until_latch(w, h, "notify-child", stopped).is_none() {
                return park(w);
            }
        }
        Err(e) => tracing::error!("notify: wrong: the name of a stopped worker is refused: {e}"),
    }
    // A `needs_ready` worker's start is its readiness: no latch for its entry, one for `set_ready`
    // (its trigger `ready`), and the handle says running as soon as that latch is seen.
    let ready = w
        .launch(
            BackgroundWorker::new("notify-ready", EntryPoint::new("testkit", "testkit_worker"))
                .restart(RestartPolicy::never())
                .needs_ready(),
        )
        .map_err(fatal)?;
    tracing::info!("notify: ready launched");
    let Some(WorkerStatus::Running { pid }) = until_latch(w, ready, "notify-ready", running) else {
        return park(w);
    };
    tracing::info!("notify: ready running pid {pid}");
    park(w)
}
steward::worker_entry!(testkit_notify_launcher);

fn testkit_ready_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let ready = w
        .launch(
            BackgroundWorker::new("ready-child", EntryPoint::new("testkit", "testkit_worker"))
                .restart(RestartPolicy::never())
                .needs_ready(),
        )
        .map_err(fatal)?;
    let after = w
        .launch(dyn_child("after-child").start_after("ready-child"))
        .map_err(fatal)?;
    match w.launch(dyn_child("after-nobody").start_after("no-such-worker")) {
        Err(e @ LaunchError::UnknownStartAfter(_)) => tracing::info!("ready: unknown start_after refused: {e:?}"),
        other => tracing::error!("ready: wrong: an unknown start_after target gave {other:?}"),
    }
    // A running worker that nobody started after so far (this launcher) becomes a target.
    let after_me = w
        .launch(dyn_child("after-launcher").start_after(w.name()))
        .map_err(fatal)?;
    match after_me.wait_for_startup(T) {
        Ok(WorkerStatus::Running { pid }) => tracing::info!("ready: after the launcher running pid {pid}"),
        other => tracing::error!("ready: wrong: the launcher's dependent's handle said {other:?}"),
    }
    match ready.wait_for_startup(Duration::from_millis(300)) {
        Err(HandleError::TimedOut) => tracing::info!("ready: not running before set_ready"),
        other => tracing::error!("ready: wrong: before set_ready the handle said {other:?}"),
    }
    match ready.wait_for_startup(T) {
        Ok(WorkerStatus::Running { pid }) => tracing::info!("ready: running pid {pid}"),
        other => tracing::error!("ready: wrong: after set_ready the handle said {other:?}"),
    }
    match after.wait_for_startup(T) {
        Ok(WorkerStatus::Running { pid }) => tracing::info!("ready: after running pid {pid}"),
        other => tracing::error!("ready: wrong: the dependent's handle said {other:?}"),
    }
    park(w)
}
steward::worker_entry!(testkit_ready_launcher);

fn trigger_path(w: &Worker, name: &str) -> Result<PathBuf, WorkerError> {
    let dir: String = w.setting("trigger_dir").map_err(fatal)?;
    Ok(PathBuf::from(dir).join(name))
}

/// Handles written as `name slot generation` lines.
fn save_handles(path: &PathBuf, hs: &[(&str, WorkerHandle)]) -> Result<(), WorkerError> {
    let text: String = hs
        .iter()
        .map(|(n, h)| format!("{n} {} {}\n", h.slot(), h.generation()))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(fatal)?;
    std::fs::rename(&tmp, path).map_err(fatal)
}

fn load_handles(path: &PathBuf) -> Vec<(String, WorkerHandle)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let name = it.next()?.to_owned();
            let slot = it.next()?.parse().ok()?;
            let generation = it.next()?.parse().ok()?;
            Some((name, WorkerHandle::from_raw(slot, generation)))
        })
        .collect()
}

/// Waits for the trigger file named after this worker; returns its text.
fn next_trigger(w: &Worker) -> Result<Option<String>, WorkerError> {
    let path = trigger_path(w, w.name())?;
    loop {
        if w.wait(POLL).should_stop() {
            return Ok(None);
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            let _ = std::fs::remove_file(&path);
            return Ok(Some(text.trim().to_owned()));
        }
    }
}

fn testkit_swl_root(w: &mut Worker) -> Result<(), WorkerError> {
    let launcher = w
        .launch(
            BackgroundWorker::new("swl-launcher", EntryPoint::new("testkit", "testkit_swl_launcher"))
                .restart(RestartPolicy::after(Duration::from_millis(100))),
        )
        .map_err(fatal)?;
    while let Some(action) = next_trigger(w)? {
        if action != "terminate" {
            continue;
        }
        launcher.terminate().map_err(fatal)?;
        let gone = launcher.wait_for_shutdown(T);
        tracing::info!("root: launcher after terminate: {gone:?}");
        for (_, h) in load_handles(&trigger_path(w, "swl-handles")?) {
            tracing::info!("root: child after its launcher ended: {:?}", h.wait_for_shutdown(T));
        }
    }
    Ok(())
}
steward::worker_entry!(testkit_swl_root);

fn testkit_swl_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let file = trigger_path(w, "swl-handles")?;
    for (_, h) in load_handles(&file) {
        tracing::info!("swl: previous child {:?}", h.wait_for_shutdown(T));
    }
    let child = w.launch(dyn_child("swl-child").stop_with_launcher()).map_err(fatal)?;
    match w.launch(dyn_child("swl-keep")) {
        Ok(_) | Err(LaunchError::DuplicateName(_)) => {}
        Err(e) => return Err(fatal(e)),
    }
    let Ok(WorkerStatus::Running { pid }) = child.wait_for_startup(T) else {
        return Err(fatal("swl-child did not start"));
    };
    save_handles(&file, &[("swl-child", child)])?;
    tracing::info!("swl: launched child pid {pid}");
    while let Some(action) = next_trigger(w)? {
        if let Some(code) = action.strip_prefix("exit ") {
            return match code.trim() {
                "0" => Ok(()),
                "2" => Err(WorkerError::fatal("told to")),
                _ => Err(WorkerError::restart("told to")),
            };
        }
    }
    Ok(())
}
steward::worker_entry!(testkit_swl_launcher);

fn testkit_reset_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let file = trigger_path(w, "reset-handles")?;
    let old = load_handles(&file);
    if !old.is_empty() {
        for (name, h) in old {
            let st = match name.as_str() {
                "reset-after" | "reset-backoff" => h.wait_for_startup(T),
                _ => h.status(),
            };
            tracing::info!("reset: {name} {st:?}");
        }
        return park(w);
    }
    let after = RestartPolicy::after(Duration::from_millis(100));
    let backoff = RestartPolicy::backoff(Duration::from_millis(50), 2.0, Duration::from_secs(1));
    let specs = [
        ("reset-after", dyn_child("reset-after").restart(after)),
        ("reset-backoff", dyn_child("reset-backoff").restart(backoff)),
        ("reset-never", dyn_child("reset-never")),
        ("reset-swl", dyn_child("reset-swl").restart(after).stop_with_launcher()),
    ];
    let mut handles = Vec::new();
    for (name, spec) in specs {
        let h = w.launch(spec).map_err(fatal)?;
        if !matches!(h.wait_for_startup(T), Ok(WorkerStatus::Running { .. })) {
            return Err(fatal(format!("{name} did not start")));
        }
        handles.push((name, h));
    }
    save_handles(&file, &handles)?;
    tracing::info!("reset: launched");
    park(w)
}
steward::worker_entry!(testkit_reset_launcher);

/// Startup hook `launching`: see the module header.
pub(crate) fn testkit_launch_hook(s: &mut Startup) -> Result<(), String> {
    let h = s.launch(dyn_child("hook-child")).map_err(|e| e.to_string())?;
    let region = s.region("testkit_handles").map_err(|e| e.to_string())?;
    let word = |i: usize| region.atomic_u64(i).ok_or("handle region too small");
    word(1)?.store(h.generation(), Ordering::Relaxed);
    word(0)?.store(h.slot() as u64 + 1, Ordering::Release);
    tracing::info!("hook launched hook-child in slot {}", h.slot());
    Ok(())
}
steward::startup_hook!(testkit_launch_hook);

fn testkit_hook_reader(w: &mut Worker) -> Result<(), WorkerError> {
    let region = w.region("testkit_handles").map_err(fatal)?;
    let word = |i: usize| region.atomic_u64(i).ok_or_else(|| fatal("handle region too small"));
    let slot = loop {
        let s = word(0)?.load(Ordering::Acquire);
        if s != 0 {
            break s - 1;
        }
        if w.wait(POLL).should_stop() {
            return Ok(());
        }
    };
    let h = WorkerHandle::from_raw(slot as u32, word(1)?.load(Ordering::Relaxed));
    tracing::info!("hook child: {:?}", h.wait_for_startup(T));
    if next_trigger(w)?.is_none() {
        return Ok(());
    }
    h.terminate().map_err(fatal)?;
    tracing::info!("hook child after terminate: {:?}", h.wait_for_shutdown(T));
    park(w)
}
steward::worker_entry!(testkit_hook_reader);

// review: notifications
const MANY: usize = 3;

fn testkit_many_launcher(w: &mut Worker) -> Result<(), WorkerError> {
    let mut handles = Vec::new();
    for i in 0..MANY {
        handles.push(w.launch(dyn_child(&format!("many-{i}"))).map_err(fatal)?);
    }
    tracing::info!("many: launched {MANY}");
    let deadline = std::time::Instant::now() + T;
    loop {
        let running = handles
            .iter()
            .filter(|h| matches!(h.status(), Ok(WorkerStatus::Running { .. })))
            .count();
        if running == MANY {
            tracing::info!("many: all running");
            return park(w);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match w.wait(left) {
            WaitResult::Latch => {}
            r if r.should_stop() => return Ok(()),
            WaitResult::Timeout => {
                tracing::error!("many: wrong: {running} of {MANY} running, and no latch within {T:?}");
                return park(w);
            }
            _ => {}
        }
    }
}
steward::worker_entry!(testkit_many_launcher);
