//! The answers a connection child sends: the protocol's envelope, and `status`, `reload` and
//! `show` built from what the supervisor published in the segment.
//!
//! Runs in: connection children (and dead-end children, for the envelope).
//!
//! What the server answers from is in the segment, written by the supervisor and writable by any
//! child: it is parsed as untrusted input, and a garbled document makes an error answer, not a
//! crash.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::shared::control::{
    HostInfo, HostInfoDoc, HostState, LastExit, SettingInfo, Slots, Status, WorkerInfo, PROTOCOL_VERSION,
    RESERVED_CONNECTIONS,
};
use crate::shared::lifecycle::{ExitStatus, WorkerState};
use crate::shared::protocol::DecodeError;
use crate::shared::registry::StartTime;
use crate::shared::shmem::Segment;
use crate::shared::time::rfc3339_ms;

/// The envelope of a successful answer.
pub fn ok(result: Value) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": true, "result": result})
}

/// The envelope of a refusal: the client shows `msg` as the host's reason.
pub fn error(msg: &str) -> Value {
    json!({"v": PROTOCOL_VERSION, "ok": false, "error": msg})
}

/// Reads the supervisor's published document. Every byte of the segment is writable by every
/// child, so the document is parsed as untrusted input.
pub fn info_from_segment(seg: &Segment) -> Result<HostInfoDoc, String> {
    let bytes = seg
        .header()
        .info
        .read()
        .ok_or("the host was writing its settings for too long")?;
    if bytes.is_empty() {
        return Err("the host has not published its settings".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("the host's published settings are unreadable: {e}"))
}

fn last_exit(e: ExitStatus, at: u64, reason: String) -> LastExit {
    let (code, signal) = match e {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
    LastExit {
        code,
        signal,
        at: rfc3339_ms(at),
        reason,
    }
}

/// The host state a worker that has not started is waiting for, if any.
fn waiting_for(start: StartTime, host: HostState, state: WorkerState) -> Option<&'static str> {
    if !matches!(state, WorkerState::NotStarted | WorkerState::WaitingRestart) {
        return None;
    }
    match (start, host) {
        (StartTime::Consistent, HostState::Init | HostState::Startup) => Some("consistent"),
        (StartTime::Running, HostState::Init | HostState::Startup | HostState::Consistent) => Some("running"),
        _ => None,
    }
}

/// What status shows for a value the segment holds under a code nobody writes: plainly not a
/// state, so no operator mistakes it for one.
fn unreadable(e: &DecodeError) -> String {
    format!("unreadable ({e})")
}

/// Builds the status answer from the segment (connection children; the supervisor publishes
/// everything there). The count of slots comes from this process's own layout; every code is
/// decoded through [`crate::shared::protocol`], and one that is not known shows as `unreadable (...)`.
pub fn status_from_segment(seg: &Segment) -> Status {
    let h = seg.header();
    let host_state = h.host_state();
    let mut workers = Vec::new();
    for i in 0..seg.layout.n_worker_slots {
        let s = seg.worker_slot(i);
        if s.in_use.load(Ordering::Acquire) == 0 {
            continue;
        }
        let start = s.start_time();
        let mut info = WorkerInfo {
            name: s.name.load(),
            worker_type: s.worker_type.load(),
            plugin: s.plugin.load(),
            function: s.function.load(),
            pid: None,
            state: String::new(),
            started_at: None,
            restarts: 0,
            last_exit: None,
            exits: Vec::new(),
            start_time: start.map_or_else(|e| unreadable(&e), |t| t.as_str().to_owned()),
            waiting_for: None,
            next_restart_at: None,
            launch_us: None,
            activity: None,
            // issue 14: control
            // Static workers hold the first slots; every later one was launched at run time.
            dynamic: i >= seg.layout.n_static_workers,
            slot: i,
            generation: 0,
            launcher: Some(s.launcher.load()).filter(|l| !l.is_empty() && i >= seg.layout.n_static_workers),
            // issue 15: isolated
            // Display only: a scribbled word shows as not isolated, never as something else.
            isolated: s.isolated.load(Ordering::Relaxed) == 1,
        };
        match s.status.read() {
            Ok(st) => {
                info.waiting_for = match (start, host_state) {
                    (Ok(start), Ok(host)) => waiting_for(start, host, st.state).map(str::to_owned),
                    _ => None,
                }
                // issue 14: readiness
                // The host state first: a worker starts after its start time and its targets.
                .or(st
                    .waiting_for
                    .filter(|_| matches!(st.state, WorkerState::NotStarted | WorkerState::WaitingRestart)));
                info.launch_us = st
                    .pid
                    .and_then(|_| seg.child_slot(i).report().launch_us)
                    .or(st.last_launch_us);
                // Only a running process's line: the cell is cleared before each launch and when
                // the process is reaped, and a worker without a process shows none in between.
                info.activity = st.pid.and_then(|_| seg.child_slot(i).activity().read());
                info.pid = st.pid;
                info.generation = st.generation;
                info.state = st.state.as_str().to_owned();
                info.started_at = st.started_at_ms.map(rfc3339_ms);
                info.restarts = st.restarts;
                info.last_exit = st.last_exit.map(|(e, at, reason)| last_exit(e, at, reason));
                info.exits = st
                    .history
                    .into_iter()
                    .map(|(e, at, reason)| last_exit(e, at, reason))
                    .collect();
                info.next_restart_at = st.next_restart_at_ms.map(rfc3339_ms);
            }
            Err(e) => info.state = unreadable(&e),
        }
        workers.push(info);
    }
    let info = info_from_segment(seg).unwrap_or_default();
    // issue 14: queue: read before `info`'s fields move out below.
    let reserved = info.reserved_worker_slots.clone();
    // issue 15: status listeners
    // Each client child slot names the listener it serves; a value past the listeners (a
    // scribble) counts for none.
    let mut listeners = info.listeners;
    for k in 0..seg.layout.n_client_slots {
        let r = seg.child_slot(seg.layout.client_child_slot(k)).report();
        let serving = r.serving.filter(|_| r.in_use());
        if let Some(l) = serving.and_then(|i| listeners.get_mut(i as usize)) {
            l.open += 1;
        }
    }
    Status {
        plugins: info.plugins,
        last_reload: info.last_reload,
        pending_restart: info.pending_restart,
        listeners,
        host: HostInfo {
            state: host_state.map_or_else(|e| unreadable(&e), |s| s.as_str().to_owned()),
            pid: h.host_pid.load(Ordering::Relaxed),
            launch_mode: h
                .launch_mode()
                .map_or_else(|e| unreadable(&e), |m| m.as_str().to_owned()),
            started_at: rfc3339_ms(h.host_started_at_ms.load(Ordering::Relaxed)),
            generation: h.generation.load(Ordering::Relaxed),
            shmem_bytes: seg.layout.size,
            slots: Slots {
                workers: seg.layout.n_worker_slots,
                connections: seg.layout.n_connection_slots.saturating_sub(RESERVED_CONNECTIONS),
                reserved_connections: seg.layout.n_connection_slots.min(RESERVED_CONNECTIONS),
                connections_in_use: (0..seg.layout.n_connection_slots)
                    .filter(|&i| seg.child_slot(seg.layout.connection_child_slot(i)).report().in_use())
                    .count() as u32,
                dynamic_workers: seg.layout.n_worker_slots - seg.layout.n_static_workers,
                // issue 14: queue
                queued: h.dyn_queued.load(Ordering::Relaxed),
                reserved,
                // issue 15: connection benchmarks
                clients: seg.layout.n_client_slots,
                clients_in_use: (0..seg.layout.n_client_slots)
                    .filter(|&i| seg.child_slot(seg.layout.client_child_slot(i)).report().in_use())
                    .count() as u32,
                // issue 15: client spares
                spares_waiting: (0..seg.layout.n_spare_slots)
                    .map(|k| seg.child_slot(seg.layout.spare_child_slot(k)).report())
                    .filter(|r| r.in_use() && r.ready && r.assigned.is_none())
                    .count() as u32,
            },
        },
        workers,
    }
}

/// How long a connection child waits for the supervisor to finish a reload it asked for.
pub const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Serves a `reload` request (connection children): checks that the client means the host's
/// file, takes a ticket, sends SIGHUP, and waits until a reload that began after the ticket was
/// taken has finished; answers with that reload's verdict.
pub fn serve_reload(seg: &Segment, host_pid: i32, host_file: &Path, config: Option<&str>) -> Value {
    if let Some(theirs) = config {
        if !same_file(theirs, host_file) {
            return error(&format!(
                "{theirs} is not this host's configuration file: the host reads {}",
                host_file.display()
            ));
        }
    }
    let h = seg.header();
    // The supervisor records the count it saw when a reload began; a reload that began after
    // this increment read the file after this request was made.
    let ticket = h.reload_requests.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
    tracing::info!("reload requested over the control socket");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), nix::sys::signal::Signal::SIGHUP) {
        return error(&format!("cannot signal the host (pid {host_pid}): {e}"));
    }
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    // Polled: a reload is rare and takes milliseconds; nothing else waits on this child.
    while h.reloads_done.load(Ordering::Acquire) < ticket {
        if std::time::Instant::now() > deadline {
            return error(&format!(
                "the host has not finished the reload after {}s; its log will say what happened",
                RELOAD_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    match info_from_segment(seg).map(|doc| doc.last_reload) {
        Ok(Some(report)) => match serde_json::to_value(&report) {
            Ok(mut v) => {
                v["reloading"] = json!(true);
                v["pid"] = json!(host_pid);
                ok(v)
            }
            Err(e) => error(&e.to_string()),
        },
        Ok(None) => error("the host reloaded but published no verdict"),
        Err(e) => error(&e),
    }
}

/// Serves a `show` request (connection children).
pub fn serve_show(seg: &Segment, name: Option<&str>) -> Value {
    match info_from_segment(seg) {
        Err(e) => error(&e),
        Ok(doc) if doc.settings_omitted => {
            error("the host has more settings than fit in the space it publishes them in; its log lists them at start")
        }
        Ok(doc) => match select_settings(&doc.settings, name) {
            Ok(v) => ok(json!({ "settings": v })),
            Err(e) => error(&e),
        },
    }
}

/// The settings `name` selects: the one so named, or every one under it (`host`,
/// `plugins.hello`); an error naming `name` when there is none.
pub fn select_settings(all: &[SettingInfo], name: Option<&str>) -> Result<Vec<SettingInfo>, String> {
    let Some(name) = name else {
        return Ok(all.to_vec());
    };
    let prefix = format!("{name}.");
    let picked: Vec<SettingInfo> = all
        .iter()
        .filter(|s| s.name == name || s.name.starts_with(&prefix))
        .cloned()
        .collect();
    if picked.is_empty() {
        return Err(format!(
            "no setting named {name:?} (names are host.KEY or plugins.PLUGIN.KEY; `steward show` lists them all)"
        ));
    }
    Ok(picked)
}

/// Whether the file a client named (`theirs`, canonical on its side) is the host's own file:
/// compared canonicalised, so a relative path or a symlink to the same file is the same file.
pub fn same_file(theirs: &str, ours: &Path) -> bool {
    let theirs = Path::new(theirs);
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    canon(theirs) == canon(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_selects_by_name_or_prefix() {
        // Only the names matter to the selection.
        let setting = |name: &str, value: &str| -> SettingInfo {
            serde_json::from_value(json!({"name": name, "value": value, "default": "", "source": "default",
                "context": "reload", "pending_restart": false}))
            .expect("a setting")
        };
        let all = vec![
            setting("host.log_level", "info"),
            setting("plugins.hello.greeting", "grüße"),
            setting("plugins.hello2.x", "1"),
        ];
        assert_eq!(select_settings(&all, None).unwrap().len(), 3);
        assert_eq!(select_settings(&all, Some("plugins.hello")).unwrap().len(), 1);
        assert_eq!(select_settings(&all, Some("host.log_level")).unwrap().len(), 1);
        assert!(select_settings(&all, Some("plugins.hell"))
            .unwrap_err()
            .contains("no setting named \"plugins.hell\""));
    }
    // issue 15: status listeners
    /// Each listener's `open` is the count of client slots in use that name it; a free slot, or
    /// one naming no listener the host has, counts for none.
    #[test]
    fn listeners_count_the_client_slots_that_serve_them() {
        let layout = crate::shared::shmem::Layout::compute_with_clients(&Default::default(), 0, 1, 5);
        let cfg = crate::shared::config::Config::parse(Path::new("t.toml"), "[host]\npreload_plugins = []\n").unwrap();
        let seg = Segment::create(&layout, &[], &[], &cfg, 1, 0).unwrap();
        let listener = |handler: &str, isolated: bool| crate::shared::control::ListenerInfo {
            address: format!("unix /srv/{handler}.sock"),
            handler: handler.into(),
            isolated,
            max_connections: 4,
            open: 0,
        };
        let doc = HostInfoDoc {
            listeners: vec![listener("kv.a", false), listener("kv.b", true)],
            ..Default::default()
        };
        seg.header().info.publish(&serde_json::to_string(&doc).unwrap());
        // Slots 0 and 1 serve listener 1, slot 2 listener 0, slot 3 a listener past the last,
        // slot 4 was freed after serving listener 0.
        for (k, listener) in [(0, 1), (1, 1), (2, 0), (3, 9), (4, 0)] {
            let slot = seg.child_slot(layout.client_child_slot(k));
            slot.assign();
            slot.serve_listener(listener);
        }
        seg.child_slot(layout.client_child_slot(4)).free();
        let s = status_from_segment(&seg);
        let open: Vec<(&str, bool, u32)> = s
            .listeners
            .iter()
            .map(|l| (l.handler.as_str(), l.isolated, l.open))
            .collect();
        assert_eq!(open, [("kv.a", false, 1), ("kv.b", true, 2)]);
        assert_eq!(s.host.slots.clients_in_use, 4);
    }
}
