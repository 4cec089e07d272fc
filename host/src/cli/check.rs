//! `steward check` (like `nginx -t`): everything `run` checks before it starts anything.
//!
//! Runs in: the CLI process, which loads the plugins and runs their init exactly as the
//! supervisor's preload does (the same code: [`steward_host::shared::preload::preload`]), then computes
//! the shared-memory layout with the supervisor's code ([`Layout::for_host`]). It creates nothing:
//! no runtime directory, lock, socket or segment, and starts no process. Exit 0 with a summary,
//! or 1 with the error `run` would print.

use std::fmt::Write as _;

use steward_host::exit_code;
use steward_host::shared::hostapi;
use steward_host::shared::preload;
use steward_host::shared::shmem::Layout;

use super::{load_config, CheckArgs, CliError};

pub fn cmd_check(args: &CheckArgs) -> Result<i32, CliError> {
    let cfg = load_config(&args.config)?;
    // Plugins may log from init; their lines go to stderr as under `run`.
    steward_host::shared::log::init(cfg.log_format, &cfg.log_level);
    steward_host::shared::log::set_identity("check", None);
    preload::preload(&cfg)?;
    let (registry, settings) = hostapi::with_state(|s| (s.registry.clone(), s.settings.clone()));
    let layout = Layout::for_host(&registry, &cfg);

    let mut out = String::new();
    let _ = writeln!(out, "configuration {}", cfg.path.display());
    let _ = writeln!(
        out,
        "launch mode {}; runtime_dir {}",
        cfg.launch_mode.as_str(),
        cfg.runtime_dir.display()
    );
    let _ = writeln!(out, "\nplugins ({}):", preload::plugins().len());
    for p in preload::plugins() {
        let _ = writeln!(
            out,
            "  {} {} (SDK {})  {}",
            p.name,
            p.version,
            p.sdk_version,
            p.path.display()
        );
    }
    let _ = writeln!(
        out,
        "\nworkers ({} registered; {} more slots reserved for dynamic workers):",
        registry.workers.len(),
        cfg.max_worker_processes
    );
    for w in &registry.workers {
        let _ = writeln!(
            out,
            "  {}  type {}, plugin {}, entry {}:{}, starts at {}",
            w.name,
            w.worker_type,
            w.plugin,
            w.library,
            w.function,
            w.start_time.as_str()
        );
    }
    if !registry.hooks.is_empty() {
        let _ = writeln!(out, "\nstartup hooks ({}):", registry.hooks.len());
        for h in &registry.hooks {
            let _ = writeln!(
                out,
                "  {}  plugin {}, entry {}:{}",
                h.name, h.plugin, h.library, h.function
            );
        }
    }
    let _ = writeln!(out, "\nsettings ({}):", settings.map.len());
    for ((plugin, name), s) in &settings.map {
        let from_file = cfg.plugin_sections.get(plugin).is_some_and(|t| t.contains_key(name));
        let _ = writeln!(
            out,
            "  {plugin}.{name} = {:?}  ({}, {})",
            s.shown(&s.value),
            if from_file { "file" } else { "default" },
            if s.reloadable { "reloadable" } else { "restart only" }
        );
    }
    if !registry.regions.is_empty() {
        let _ = writeln!(out, "\nshared-memory regions ({}):", registry.regions.len());
        for r in &registry.regions {
            let _ = writeln!(out, "  {}.{}  {} bytes", r.plugin, r.name, r.size);
        }
    }
    if !registry.locks.is_empty() {
        let _ = writeln!(out, "\nshared-memory locks ({}):", registry.locks.len());
        for l in &registry.locks {
            let _ = writeln!(out, "  {}.{}", l.plugin, l.name);
        }
    }
    // issue 15: connections
    if !cfg.listeners.is_empty() {
        let _ = writeln!(
            out,
            "\nlisteners ({}), {} client slots in all (max_client_connections):",
            cfg.listeners.len(),
            layout.n_client_slots
        );
        for (i, l) in cfg.listeners.iter().enumerate() {
            // issue 15: isolated handlers
            let isolated = registry.handler(&l.plugin, &l.handler).is_some_and(|h| h.isolated);
            let _ = writeln!(
                out,
                "  {}  handler {}.{}{}, max_connections {}",
                l.describe(i),
                l.plugin,
                l.handler,
                if isolated { " (isolated)" } else { "" },
                l.max_connections
            );
        }
    }
    let _ = writeln!(
        out,
        "\nshared memory {} bytes: {} worker slots ({} static + {} dynamic), {} connection slots (+{} reserved for status and stop)",
        layout.size,
        layout.n_worker_slots,
        layout.n_static_workers,
        cfg.max_worker_processes,
        cfg.max_connections,
        layout.n_connection_slots - cfg.max_connections
    );
    // Like `run`, a worker whose entry does not resolve is not a start-up error (the worker is
    // marked failed when it launches), but it is worth saying before that happens.
    for w in &registry.workers {
        if let Err(reason) = preload::resolve_entry(&w.library, &w.function) {
            let _ = writeln!(out, "warning: worker {} (plugin {}): {reason}", w.name, w.plugin);
        }
    }
    let _ = writeln!(out, "\ncheck passed: {}", cfg.path.display());
    print!("{out}");
    Ok(exit_code::OK)
}
