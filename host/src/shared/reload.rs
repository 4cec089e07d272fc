//! Configuration reload: `SIGHUP` or `steward reload`.
//!
//! Runs in: the supervisor ([`plan`]: validate the whole new file, then apply or keep the running
//! configuration) and children ([`refresh_child_settings`]: after the SIGHUP the supervisor passes
//! on, re-read the file and take the new values of reloadable plugin settings, as PostgreSQL
//! backends re-read `postgresql.conf`).
//!
//! Which values change at run time: the `[host]` keys that `config::HOST_KEYS` declares
//! [`Reload::Applies`] (today `shutdown_timeout`, `crash_kill_timeout`, `restart_after_crash`,
//! `log_format` and `log_level`), and every plugin setting its plugin defined as reloadable.
//! Everything else (today paths, the preload list, slot counts, the launch mode,
//! `huge_code_pages`; and restart-only plugin settings) is reported as needing a restart and keeps
//! its running value. The code here names no `[host]` key: the declaration next to each key decides.

use std::collections::BTreeSet;
use std::path::Path;

use crate::shared::config::{Config, ConfigError, Reload, HOST_KEYS};
use crate::shared::registry::Settings;

/// A validated reload, ready to apply.
pub struct Plan {
    /// The running configuration with the reloadable values of the new file.
    pub config: Config,
    pub settings: Settings,
    /// Keys whose new values take effect now.
    pub applied: Vec<String>,
    /// Keys that changed but need a restart (their running values stay).
    pub need_restart: Vec<String>,
}

/// The plugin half of a reload: new values for reloadable settings, or every problem found.
fn plan_settings(
    new: &Config,
    settings: &Settings,
    applied: &mut Vec<String>,
    need_restart: &mut Vec<String>,
) -> Result<Settings, Vec<ConfigError>> {
    let problem = |key: String, reason: &str| ConfigError::new(&new.path, Some(&key), reason);
    let mut errors = Vec::new();
    let mut next = settings.clone();
    for ((plugin, name), s) in &settings.map {
        let value = match new.plugin_sections.get(plugin).and_then(|t| t.get(name)) {
            None => s.default.clone(),
            Some(v) => match s.kind.canonical(v) {
                Ok(c) => c,
                Err(reason) => {
                    errors.push(problem(format!("plugins.{plugin}.{name}"), &reason));
                    continue;
                }
            },
        };
        if value != s.value {
            let key = format!("plugins.{plugin}.{name}");
            if s.reloadable {
                next.map
                    .get_mut(&(plugin.clone(), name.clone()))
                    .expect("same keys")
                    .value = value;
                applied.push(key);
            } else {
                need_restart.push(key);
            }
        }
    }
    for (plugin, table) in &new.plugin_sections {
        let loaded = settings.map.keys().any(|(p, _)| p == plugin);
        for key in table.keys() {
            if settings.map.contains_key(&(plugin.clone(), key.clone())) {
                continue;
            }
            if loaded {
                errors.push(problem(format!("plugins.{plugin}.{key}"), "unknown key"));
            } else {
                need_restart.push(format!("plugins.{plugin}.{key}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(next)
    } else {
        Err(errors)
    }
}

/// Reads and validates the config file again for the supervisor.
pub fn plan(running: &Config, settings: &Settings) -> Result<Plan, Vec<ConfigError>> {
    let new = Config::load(&running.path).map_err(|e| vec![e])?;
    let mut applied = Vec::new();
    let mut need_restart = Vec::new();
    let settings = plan_settings(&new, settings, &mut applied, &mut need_restart)?;
    let mut config = running.clone();
    for key in HOST_KEYS.iter().filter(|k| (k.differs)(&new, running)) {
        match key.reload {
            Reload::Applies => {
                (key.take)(&mut config, &new);
                applied.push(key.name.to_owned());
            }
            Reload::NeedsRestart => need_restart.push(key.name.to_owned()),
        }
    }
    config.plugin_sections = new.plugin_sections;
    // issue 14: queue
    // Reservations are restart-only: the running ones stay.
    let plugins: BTreeSet<&String> = new
        .reserved_worker_slots
        .keys()
        .chain(running.reserved_worker_slots.keys())
        .collect();
    for p in plugins {
        if new.reserved_worker_slots.get(p) != running.reserved_worker_slots.get(p) {
            need_restart.push(format!(
                "plugins.{p}.{}",
                crate::shared::config::RESERVED_WORKER_SLOTS_KEY
            ));
        }
    }
    // issue 15: connections
    // Listeners are bound once, at start-up (decision 136): a changed list waits for a restart.
    if new.listeners != running.listeners {
        need_restart.push("listen".to_owned());
    }
    Ok(Plan {
        config,
        settings,
        applied,
        need_restart,
    })
}

/// In a child, after SIGHUP: takes the new values of reloadable plugin settings. A file that does
/// not validate (the supervisor logged why) leaves the settings as they were.
pub fn refresh_child_settings() {
    let (path, settings) = crate::shared::hostapi::with_state(|s| (s.config_file.clone(), s.settings.clone()));
    let Ok(new) = Config::load(&path) else { return };
    if let Ok(next) = plan_settings(&new, &settings, &mut Vec::new(), &mut Vec::new()) {
        crate::shared::hostapi::with_state(|s| s.settings = next);
        crate::shared::log::configure(new.log_format, &new.log_level);
    }
}

/// One `[host]` setting as `steward show` reports it.
pub struct HostSetting {
    pub key: &'static str,
    pub value: String,
    /// Whether a reload applies a new value (the key's [`Reload`] in [`HOST_KEYS`]).
    pub reloadable: bool,
}

/// Every `[host]` setting of `cfg`, rendered as the file would say it: the keys that need a
/// restart first, then those a reload applies, each group in the file section's declared order.
pub fn host_settings(cfg: &Config) -> Vec<HostSetting> {
    let mut rows: Vec<HostSetting> = HOST_KEYS
        .iter()
        .map(|k| HostSetting {
            key: k.name,
            value: (k.show)(cfg),
            reloadable: k.reload == Reload::Applies,
        })
        .collect();
    rows.sort_by_key(|r| r.reloadable);
    rows
}

/// The keys the file at `path` sets (`host.KEY`, `plugins.PLUGIN.KEY`); empty when it cannot be
/// read or parsed (the caller has just read it successfully, so that is a file changed since).
pub fn keys_in_file(path: &Path) -> BTreeSet<String> {
    let Ok(table) = std::fs::read_to_string(path)
        .map_err(|_| ())
        .and_then(|t| t.parse::<toml::Table>().map_err(|_| ()))
    else {
        return BTreeSet::new();
    };
    let mut keys = BTreeSet::new();
    if let Some(host) = table.get("host").and_then(toml::Value::as_table) {
        keys.extend(host.keys().map(|k| format!("host.{k}")));
    }
    if let Some(plugins) = table.get("plugins").and_then(toml::Value::as_table) {
        for (p, t) in plugins {
            if let Some(t) = t.as_table() {
                keys.extend(t.keys().map(|k| format!("plugins.{p}.{k}")));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `host_settings` says which keys a reload applies; `plan` decides it by field. They must
    /// agree, or `show` would call a setting reloadable that a reload leaves alone.
    #[test]
    fn host_settings_and_plan_agree_on_what_is_reloadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steward.toml");
        std::fs::write(&path, "[host]\nruntime_dir = \"run\"\n").unwrap();
        let running = Config::load(&path).unwrap();
        std::fs::write(
            &path,
            "[host]\nruntime_dir = \"run2\"\nplugin_dir = \"p\"\npreload_plugins = [\"other\"]\nmax_worker_processes = 3\n\
             max_connections = 3\nlaunch_mode = \"exec\"\nhuge_code_pages = false\nshutdown_timeout = \"7s\"\n\
             crash_kill_timeout = \"7s\"\nrestart_after_crash = false\nlog_format = \"json\"\nlog_level = \"debug\"\n\
             max_client_connections = 3\n",
        )
        .unwrap();
        let plan = plan(&running, &Settings::default())
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        let keys = keys_in_file(&path);
        for s in host_settings(&running) {
            let (applied, restart) = (
                plan.applied.iter().any(|k| k == s.key),
                plan.need_restart.iter().any(|k| k == s.key),
            );
            assert!(applied != restart, "{} changed but is in neither list or both", s.key);
            assert_eq!(applied, s.reloadable, "{}", s.key);
            assert!(keys.contains(s.key), "{} not seen in the file", s.key);
        }
    }

    /// `show`'s rows and a reload's verdict list the `[host]` keys in the order operators (and
    /// scripts reading `show --json` or the reload log) have always seen.
    #[test]
    fn host_rows_and_verdicts_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steward.toml");
        std::fs::write(&path, "[host]\nruntime_dir = \"run\"\n").unwrap();
        let running = Config::load(&path).unwrap();
        let rows: Vec<(&str, String, bool)> = host_settings(&running)
            .into_iter()
            .map(|s| (s.key, s.value, s.reloadable))
            .collect();
        let run = dir.path().join("run").display().to_string();
        let plugins = dir.path().display().to_string();
        let want = [
            ("host.plugin_dir", plugins.as_str(), false),
            ("host.preload_plugins", "", false),
            ("host.runtime_dir", run.as_str(), false),
            ("host.max_worker_processes", "8", false),
            ("host.max_connections", "16", false),
            ("host.launch_mode", "fork", false),
            ("host.huge_code_pages", "true", false),
            // issue 15: connections
            ("host.max_client_connections", "100", false),
            ("host.shutdown_timeout", "5s", true),
            ("host.crash_kill_timeout", "5s", true),
            ("host.restart_after_crash", "true", true),
            ("host.log_format", "text", true),
            ("host.log_level", "info", true),
        ];
        let want: Vec<(&str, String, bool)> = want.iter().map(|&(k, v, r)| (k, v.to_owned(), r)).collect();
        assert_eq!(rows, want);

        std::fs::write(
            &path,
            "[host]\nlog_level = \"debug\"\nhuge_code_pages = false\nshutdown_timeout = \"7s\"\n\
             runtime_dir = \"run2\"\nrestart_after_crash = false\nlaunch_mode = \"exec\"\n",
        )
        .unwrap();
        let plan = plan(&running, &Settings::default())
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!(
            plan.applied,
            ["host.shutdown_timeout", "host.restart_after_crash", "host.log_level"]
        );
        assert_eq!(
            plan.need_restart,
            ["host.runtime_dir", "host.launch_mode", "host.huge_code_pages"]
        );
        assert_eq!(plan.config.shutdown_timeout, std::time::Duration::from_secs(7));
        assert!(!plan.config.restart_after_crash);
        assert_eq!(plan.config.log_level.to_string(), "debug");
        assert_eq!(plan.config.runtime_dir, running.runtime_dir);
        assert_eq!(plan.config.launch_mode, running.launch_mode);
        assert!(plan.config.huge_code_pages);
    }
}
