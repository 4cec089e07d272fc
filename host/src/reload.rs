//! Configuration reload: `SIGHUP` or `steward reload`.
//!
//! Runs in: the supervisor ([`plan`]: validate the whole new file, then apply or keep the running
//! configuration) and children ([`refresh_child_settings`]: after the SIGHUP the supervisor passes
//! on, re-read the file and take the new values of reloadable plugin settings, as PostgreSQL
//! backends re-read `postgresql.conf`).
//!
//! Which values change at run time: host `shutdown_timeout`, `crash_kill_timeout`,
//! `restart_after_crash`, `log_format`, `log_level`, and every plugin setting its plugin defined
//! as reloadable. Everything else (paths, the preload list, slot counts, the launch mode,
//! `huge_code_pages`, restart-only plugin settings) is reported as needing a restart and keeps its running value.

use crate::config::Config;
use crate::registry::Settings;

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
) -> Result<Settings, Vec<String>> {
    let file = new.path.display();
    let mut errors = Vec::new();
    let mut next = settings.clone();
    for ((plugin, name), s) in &settings.map {
        let value = match new.plugin_sections.get(plugin).and_then(|t| t.get(name)) {
            None => s.default.clone(),
            Some(v) => match s.kind.canonical(v) {
                Ok(c) => c,
                Err(reason) => {
                    errors.push(format!("{file}: plugins.{plugin}.{name}: {reason}"));
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
                errors.push(format!("{file}: plugins.{plugin}.{key}: unknown key"));
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
pub fn plan(running: &Config, settings: &Settings) -> Result<Plan, Vec<String>> {
    let new = Config::load(&running.path).map_err(|e| vec![e.to_string()])?;
    let mut applied = Vec::new();
    let mut need_restart = Vec::new();
    let settings = plan_settings(&new, settings, &mut applied, &mut need_restart)?;
    let mut config = running.clone();
    macro_rules! restart_only {
        ($($field:ident),*) => {$(
            if new.$field != running.$field {
                need_restart.push(format!("host.{}", stringify!($field)));
            }
        )*};
    }
    macro_rules! reloadable {
        ($($field:ident),*) => {$(
            if new.$field != running.$field {
                config.$field = new.$field.clone();
                applied.push(format!("host.{}", stringify!($field)));
            }
        )*};
    }
    restart_only!(
        plugin_dir,
        preload_plugins,
        runtime_dir,
        max_worker_processes,
        max_connections,
        launch_mode,
        huge_code_pages
    );
    reloadable!(
        shutdown_timeout,
        crash_kill_timeout,
        restart_after_crash,
        log_format,
        log_level
    );
    config.plugin_sections = new.plugin_sections;
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
    let (path, settings) = crate::hostapi::with_state(|s| (s.config_file.clone(), s.settings.clone()));
    let Ok(new) = Config::load(&path) else { return };
    if let Ok(next) = plan_settings(&new, &settings, &mut Vec::new(), &mut Vec::new()) {
        crate::hostapi::with_state(|s| s.settings = next);
        crate::log::configure(new.log_format, &new.log_level);
    }
}
