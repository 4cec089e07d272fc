//! `launch` and `terminate` over the control socket (issue 14: control): dynamic workers started
//! and workers stopped by an operator.
//!
//! Runs in: connection children. The child is the requester, exactly as a worker is when it calls
//! `Worker::launch`: it writes its own request slot (its child slot's index) and the supervisor
//! adopts the worker with `control` as its launcher. Then it uses the handle as any worker may
//! (`shared::handles`), so there is one path for launches and one for handles, whoever asks.
//!
//! Invariants: the client names a plugin, an entry function and a name, never a library file;
//! the supervisor refuses a plugin that is not preloaded and looks the entry up in the plugin's
//! own library. Who may ask is decided before any request is read: only the host's user (or
//! root), by the socket's peer credentials (`connection_main`), and never in the connection slot
//! reserved for `status` and `stop`.

use std::time::Duration;

use serde_json::{json, Value};

use super::answer;
use super::request::LaunchRequest;
use crate::shared::handles::{self, HandleFail, HandleState, LaunchFail};
use crate::shared::registry::{RestartPolicy, StartTime, WorkerSpec};

/// Serves `launch`: requests the worker and, when asked, waits for its entry to run.
pub fn serve_launch(req: LaunchRequest) -> Value {
    let spec = WorkerSpec {
        worker_type: req.name.clone(),
        name: req.name,
        plugin: req.plugin.clone(),
        // The supervisor sets the library to the plugin's own; this only has to be valid.
        library: req.plugin,
        function: req.entry,
        start_time: StartTime::Running,
        restart: req.restart.map_or(RestartPolicy::Never, RestartPolicy::After),
        crash_loop: None,
        arg: req.arg,
        extra: Vec::new(),
        needs_ready: false,
        start_after: Vec::new(),
        isolated: false,
        stop_with_launcher: false,
    };
    let name = spec.name.clone();
    let (slot, generation) = match handles::launch(&spec, None) {
        Ok(h) => h,
        Err(e) => return answer::error(&refusal(&name, &e)),
    };
    tracing::info!("dynamic worker {name} launched over the control socket (slot {slot}, generation {generation})");
    let launched =
        |pid: Option<i32>| answer::ok(json!({"name": name, "slot": slot, "generation": generation, "pid": pid}));
    let Some(timeout) = req.wait else {
        return launched(None);
    };
    match handles::wait(slot, generation, false, timeout) {
        Ok(HandleState::Running { pid }) => launched(Some(pid)),
        Ok(HandleState::Stopped { reason, .. }) => answer::error(&format!(
            "worker {name} (slot {slot}, generation {generation}) stopped: {reason}"
        )),
        Ok(HandleState::NotYetStarted) | Err(HandleFail::TimedOut) => answer::error(&format!(
            "worker {name} (slot {slot}, generation {generation}) did not start within {}",
            shown(timeout)
        )),
        Err(HandleFail::Stale) => answer::error(&format!(
            "worker {name} (slot {slot}, generation {generation}) stopped, and its slot already has another worker"
        )),
        Err(e) => answer::error(&format!("worker {name}: {e}")),
    }
}

/// Serves `terminate`: finds the live worker by name, asks the host to stop it for good and,
/// when asked, waits until it stopped.
pub fn serve_terminate(name: &str, wait: Option<Duration>) -> Value {
    let (slot, generation) = match handles::by_name(name) {
        Ok(Some(h)) => h,
        Ok(None) => return answer::error(&format!("no live worker named {name:?}")),
        Err(e) => return answer::error(&e.to_string()),
    };
    let stopped =
        |reason: &str| answer::ok(json!({"name": name, "slot": slot, "generation": generation, "stopped": reason}));
    match handles::terminate(slot, generation) {
        Ok(()) => {}
        // Gone between the lookup and the request: it stopped (and its slot was reused).
        Err(HandleFail::Stale) => {
            return answer::error(&format!(
                "worker {name} (slot {slot}, generation {generation}) is gone: its handle is stale"
            ))
        }
        Err(e) => return answer::error(&e.to_string()),
    }
    tracing::info!("worker {name} terminated over the control socket (slot {slot}, generation {generation})");
    let Some(timeout) = wait else {
        return answer::ok(json!({"name": name, "slot": slot, "generation": generation, "stopped": null}));
    };
    match handles::wait(slot, generation, true, timeout) {
        Ok(HandleState::Stopped { reason, .. }) => stopped(&reason),
        // Stopped and already replaced by another worker in its slot: stopped all the same.
        Err(HandleFail::Stale) => stopped("stopped (its slot has another worker since)"),
        Ok(_) | Err(HandleFail::TimedOut) => answer::error(&format!(
            "worker {name} (slot {slot}, generation {generation}) did not stop within {}",
            shown(timeout)
        )),
        Err(e) => answer::error(&format!("worker {name}: {e}")),
    }
}

/// The refusal of a launch, naming the worker.
fn refusal(name: &str, e: &LaunchFail) -> String {
    match e {
        LaunchFail::Unavailable => format!("cannot launch {name}: this connection cannot request dynamic workers"),
        e => format!("cannot launch {name}: {e}"),
    }
}

fn shown(d: Duration) -> String {
    crate::shared::time::format_duration(d)
}
