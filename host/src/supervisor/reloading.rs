//! Reload (SIGHUP): validate the whole file, apply it or keep the running configuration, and
//! publish the verdict.
//!
//! Runs in: the supervisor. Reading and checking the file is I/O, so it happens here; the core
//! hears only the verdict ([`Event::Reloaded`]) and passes SIGHUP to the children on an applied
//! one.

use std::time::Instant;

use super::core::Event;
use super::Supervisor;
use crate::shared::time::now_ms;

impl Supervisor {
    /// SIGHUP: validate the whole file; apply it, or keep the running configuration. Either
    /// way the verdict is published for status and for the connection child that asked.
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        // Every control-socket request counted by now is answered by this reload, which reads
        // the file after this load.
        let covers = self
            .segment
            .header()
            .reload_requests
            .load(std::sync::atomic::Ordering::Acquire);
        let file = self.cfg.path.display().to_string();
        let report = match crate::shared::reload::plan(&self.cfg, &self.settings) {
            Err(errors) => {
                self.feed(Event::Reloaded(None));
                for e in &errors {
                    tracing::error!("reload: {e}");
                }
                tracing::error!(
                    "configuration not reloaded: {} error(s); keeping the running configuration",
                    errors.len()
                );
                crate::shared::control::ReloadReport {
                    at: crate::shared::time::rfc3339_ms(now_ms()),
                    outcome: "refused".into(),
                    file,
                    applied: Vec::new(),
                    pending_restart: Vec::new(),
                    errors: errors.iter().map(crate::shared::control::ConfigProblem::from).collect(),
                }
            }
            Ok(plan) => {
                crate::shared::log::configure(plan.config.log_format, &plan.config.log_level);
                self.cfg = plan.config;
                self.settings = plan.settings.clone();
                crate::shared::hostapi::with_state(|s| s.settings = plan.settings);
                for key in &plan.need_restart {
                    tracing::warn!("reload: {key} changed but takes effect only after a restart");
                }
                if plan.applied.is_empty() {
                    tracing::info!("configuration reloaded: nothing to apply");
                } else {
                    tracing::info!("configuration reloaded: applied {}", plan.applied.join(", "));
                }
                self.feed(Event::Reloaded(Some(super::core_settings(&self.cfg))));
                self.reload_applied(&plan.need_restart);
                crate::shared::control::ReloadReport {
                    at: crate::shared::time::rfc3339_ms(now_ms()),
                    outcome: "applied".into(),
                    file,
                    applied: plan.applied,
                    pending_restart: plan.need_restart,
                    errors: Vec::new(),
                }
            }
        };
        self.last_reload = Some(report);
        self.publish_info();
        // After the verdict is in place: a connection child that sees this reads it.
        self.segment
            .header()
            .reloads_done
            .store(covers, std::sync::atomic::Ordering::Release);
        // The end of a reload for the service manager; but never `READY=1` before start-up has
        // completed or once stopping has begun, which would say the opposite of the state.
        let line = self.status_line();
        if self.core.state() == crate::shared::control::HostState::Running {
            self.notifier.send(&format!("READY=1\n{line}"));
        } else {
            self.notifier.send(&line);
        }
        self.status_sent = line;
        self.status_sent_at = Some(Instant::now());
    }

    /// Records where the running values come from after an applied reload: a reloadable key
    /// takes its value from the new file (or its default), a restart-only one keeps the value,
    /// and the source, it started with.
    fn reload_applied(&mut self, need_restart: &[String]) {
        let now_in_file = crate::shared::reload::keys_in_file(&self.cfg.path);
        let host = crate::shared::reload::host_settings(&self.cfg);
        let reloadable = |key: &str| {
            host.iter().any(|h| h.key == key && h.reloadable)
                || self
                    .settings
                    .map
                    .iter()
                    .any(|((p, k), st)| st.reloadable && key.strip_prefix("plugins.") == Some(&format!("{p}.{k}")))
        };
        let mut keys: std::collections::BTreeSet<String> =
            self.file_keys.iter().filter(|k| !reloadable(k)).cloned().collect();
        keys.extend(now_in_file.into_iter().filter(|k| reloadable(k)));
        self.file_keys = keys;
        self.pending_restart = need_restart.to_vec();
    }
}
