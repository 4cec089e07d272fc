//! What the supervisor publishes about itself: each worker's status and the configuration
//! document in the segment, and the service manager's `READY=1`, `STOPPING=1` and `STATUS=`.
//!
//! Runs in: the supervisor. The host state comes from the core alone ([`super::Core::state`]),
//! so the segment, the log and the service manager cannot disagree; this module only turns it
//! into text, rate-limits `STATUS=` and extends a long start's timeout.

use std::time::{Duration, Instant};

use super::core::WorkerKey;
use super::Supervisor;
use crate::shared::control::HostState;
use crate::shared::shmem::StatusSnapshot;

/// How often a long first start-up extends the service manager's start timeout.
const START_EXTEND_EVERY: Duration = Duration::from_secs(5);
/// What a shutdown asks the service manager for beyond `shutdown_timeout`.
const STOP_EXTEND_MARGIN: Duration = Duration::from_secs(5);

impl Supervisor {
    /// Tells the service manager the host state changed (`READY=1` on reaching running,
    /// `STOPPING=1` on stopping).
    pub(super) fn notify_state(&mut self, s: HostState) {
        let line = self.status_line();
        let msg = match s {
            HostState::Running => format!("READY=1\n{line}"),
            // The service manager's stop timeout must not cut the host's own escalation short:
            // ask for `shutdown_timeout` and a margin (systemd uses it only where its own
            // `TimeoutStopSec` is shorter).
            HostState::Stopping => format!(
                "STOPPING=1\nEXTEND_TIMEOUT_USEC={}\n{line}",
                (self.cfg.shutdown_timeout + STOP_EXTEND_MARGIN).as_micros()
            ),
            _ => line.clone(),
        };
        self.notifier.send(&msg);
        self.status_sent = line;
        self.status_sent_at = Some(Instant::now());
    }

    /// Long start-ups under systemd: while the first start-up's hooks (segment init hooks
    /// included) run, keep extending the
    /// start timeout (`EXTEND_TIMEOUT_USEC`), a tick at a time, so a slow hook (a plugin
    /// recovering its state, as PostgreSQL replays WAL) is not killed by `TimeoutStartSec`. Each
    /// extension covers three ticks, so one late turn of the loop does not end the start; the
    /// extensions stop with the first `READY=1`, and a start-up that stops making the loop turn
    /// runs into the timeout again. After a crash reset the service is already started and no
    /// start timeout runs.
    pub(super) fn extend_start_timeout(&mut self) {
        let Some(at) = self.extend_at else { return };
        // `init` after the start is the segment init hooks running (issue 14: segment init).
        if !matches!(
            self.core.state(),
            HostState::Init | HostState::Startup | HostState::Consistent
        ) {
            self.extend_at = None;
            return;
        }
        let now = Instant::now();
        if now >= at {
            self.notifier
                .send(&format!("EXTEND_TIMEOUT_USEC={}", (START_EXTEND_EVERY * 3).as_micros()));
            self.extend_at = Some(now + START_EXTEND_EVERY);
        }
    }

    pub(super) fn publish(&self, key: WorkerKey) {
        let Some(w) = self.core.worker(key) else { return };
        let r = &w.run;
        // review: notifications
        if w.is_dynamic() && r.state == crate::shared::lifecycle::WorkerState::Running && !r.ready {
            crate::sys::test_publish_running_delay();
        }
        self.segment.worker_slot(key.slot).status.publish(&StatusSnapshot {
            state: w.shown_state(),
            waiting_for: self.core.waiting_for(key),
            restarts: r.restarts,
            pid: r.pid,
            started_at_ms: r.started_at_ms,
            last_exit: r.last_exit.clone(),
            next_restart_at_ms: r.restart_at_ms,
            last_launch_us: r.last_launch_us,
            history: r.history.iter().cloned().collect(),
            generation: key.generation,
            launch_errno: r.launch_errno,
        });
        // issue 14: dynamic workers
        crate::shared::handles::bump_events(&self.segment, key.slot);
    }

    /// Publishes the configuration document (`status`'s plugins and reload fields, `show`'s
    /// settings) to the segment, cut down to fit when it would not.
    pub(super) fn publish_info(&self) {
        use crate::shared::control::{ConfigProblem, HostInfoDoc, PluginInfo, SettingInfo};
        let pending = |name: &str| self.pending_restart.iter().any(|k| k == name);
        let source = |name: &str| {
            if self.overrides.contains(&name) {
                "command line"
            } else if self.file_keys.contains(name) {
                "file"
            } else {
                "default"
            }
            .to_owned()
        };
        let context = |reloadable: bool| if reloadable { "reload" } else { "restart" }.to_owned();
        let mut settings: Vec<SettingInfo> = crate::shared::reload::host_settings(&self.cfg)
            .into_iter()
            .map(|h| SettingInfo {
                name: h.key.to_owned(),
                default: self.host_defaults.get(h.key).cloned().unwrap_or_default(),
                source: source(h.key),
                context: context(h.reloadable),
                pending_restart: pending(h.key),
                value: h.value,
                description: String::new(),
            })
            .collect();
        for ((plugin, key), st) in &self.settings.map {
            let name = format!("plugins.{plugin}.{key}");
            settings.push(SettingInfo {
                source: source(&name),
                context: context(st.reloadable),
                pending_restart: pending(&name),
                value: st.shown(&st.value),
                default: st.shown(&st.default),
                description: st.description.clone(),
                name,
            });
        }
        // issue 14: queue: the host's own key of every plugin section.
        for p in &self.cfg.preload_plugins {
            let name = format!("plugins.{p}.{}", crate::shared::config::RESERVED_WORKER_SLOTS_KEY);
            settings.push(SettingInfo {
                source: source(&name),
                context: context(false),
                pending_restart: pending(&name),
                value: self.cfg.reserved_worker_slots.get(p).copied().unwrap_or(0).to_string(),
                default: "0".to_owned(),
                description: "dynamic worker slots kept for this plugin (the host's key)".to_owned(),
                name,
            });
        }
        let plugins = crate::shared::preload::plugins()
            .iter()
            .map(|p| PluginInfo {
                name: p.name.clone(),
                version: p.version.clone(),
                file: p.path.display().to_string(),
            })
            .collect();
        let mut doc = HostInfoDoc {
            config_file: self.cfg.path.display().to_string(),
            plugins,
            settings,
            settings_omitted: false,
            last_reload: self.last_reload.clone(),
            pending_restart: self.pending_restart.clone(),
            // issue 14: queue
            reserved_worker_slots: self.cfg.reserved_worker_slots.clone(),
            // issue 15: status listeners
            listeners: self.listener_infos(),
        };
        let fits = |doc: &HostInfoDoc| {
            let text = serde_json::to_string(doc).unwrap_or_default();
            (text.len() <= crate::shared::shmem::INFO_LEN).then_some(text)
        };
        let mut text = fits(&doc);
        if text.is_none() {
            doc.settings.clear();
            doc.settings_omitted = true;
            text = fits(&doc);
        }
        if text.is_none() {
            if let Some(r) = &mut doc.last_reload {
                let more = r.errors.len().saturating_sub(16);
                r.errors.truncate(16);
                r.errors.push(ConfigProblem {
                    file: r.file.clone(),
                    key: None,
                    reason: format!("and {more} more error(s): the host's log lists them all"),
                });
            }
            doc.pending_restart.truncate(64);
            text = fits(&doc);
        }
        match text {
            Some(t) => self.segment.header().info.publish(&t),
            None => tracing::warn!("the host's configuration is too large to publish for status and show"),
        }
    }

    pub(super) fn status_line(&self) -> String {
        let (running, failed) = self.core.counts();
        let shutdown = match self.core.stop_mode() {
            Some(mode) => format!("{} shutdown, ", mode.as_str()),
            None => String::new(),
        };
        format!(
            "STATUS={}: {shutdown}{running} of {} workers running, {failed} failed, generation {}",
            self.core.state().as_str(),
            self.core.workers().count(),
            self.core.generation()
        )
    }

    /// Keeps the service manager's `STATUS=` current as workers come and go (at most every
    /// 100 ms, and at once when the count of running workers settles).
    pub(super) fn maybe_send_status(&mut self) {
        if !self.notifier.enabled() {
            return;
        }
        let line = self.status_line();
        if line == self.status_sent {
            self.status_due = None;
            return;
        }
        let due = self
            .status_sent_at
            .map_or(Instant::now(), |t| t + Duration::from_millis(100));
        if Instant::now() >= due {
            self.notifier.send(&line);
            self.status_sent = line;
            self.status_sent_at = Some(Instant::now());
            self.status_due = None;
        } else {
            self.status_due = Some(due);
        }
    }
}
