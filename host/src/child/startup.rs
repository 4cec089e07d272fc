//! The startup child: runs the plugins' segment init hooks on the new segment, declares it ready,
//! then runs the startup hooks in registration order, before any worker that waits for the host
//! to be consistent.
//!
//! Runs in: the startup child, once per host start and after each crash reset (so once per
//! segment). Owns nothing the supervisor reads but its child slot's exit reason and the header's
//! `segment_ready` and `consistent` flags, each set once. Invariant: `segment_ready` is set only
//! after every segment init hook returned success, so no worker (whose start the supervisor holds
//! back until then) ever sees a region its plugin has not initialised.

use std::sync::atomic::Ordering;

use steward::abi;

use crate::child::exit_clean;
use crate::child::runtime::{leak_str, runtime, Identity};
use crate::shared::handoff::ChildEnv;
use crate::shared::protocol::ChildSlot;
use crate::shared::registry::HookSpec;

/// Which list of hooks a pass runs: what the log and the reasons call them, and how their entry
/// is found.
struct Pass {
    what: &'static str,
    resolve: fn(&str, &str) -> Result<crate::shared::preload::EntryFn, String>,
}

const SEGMENT_INIT: Pass = Pass {
    what: "segment init hook",
    resolve: crate::shared::preload::resolve_segment_init,
};
const STARTUP: Pass = Pass {
    what: "startup hook",
    resolve: crate::shared::preload::resolve_hook,
};

/// The startup child: runs every segment init hook, then every startup hook, each in
/// registration order; the first that fails ends the child with exit code 2 and a reason naming
/// the hook and its plugin, which stops the host.
pub fn startup_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>) -> i32 {
    crate::shared::log::set_identity("startup", None);
    let mut api = None;
    if !env.registry.segment_inits.is_empty() {
        run_hooks(env, slot, &env.registry.segment_inits, &SEGMENT_INIT, &mut api);
        crate::shared::log::set_identity("startup", None);
        // Logged first, so the line comes before the host state it leads to.
        tracing::info!(
            "shared memory initialised by {} segment init hook(s)",
            env.registry.segment_inits.len()
        );
        // The supervisor reads the flag only while it waits for it; SIGUSR1 wakes its loop.
        env.segment.header().segment_ready.store(1, Ordering::Release);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(env.host_pid),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
    run_hooks(env, slot, &env.registry.hooks, &STARTUP, &mut api);
    exit_clean(slot, 0, "")
}

/// Runs `hooks` in order with one runtime for the whole child (`api` keeps it between passes);
/// returns only if every hook succeeded.
fn run_hooks(
    env: &ChildEnv<'_>,
    slot: Option<&ChildSlot>,
    hooks: &[HookSpec],
    pass: &Pass,
    api: &mut Option<&'static abi::WorkerApi>,
) {
    let what = pass.what;
    for h in hooks {
        crate::shared::log::set_identity("startup", Some(&h.name));
        if let Some(s) = slot {
            // Read by the supervisor only if this child dies without a clean exit.
            s.set_reason(&format!("{what} {} (plugin {}) was running", h.name, h.plugin));
        }
        let run = match (pass.resolve)(&h.library, &h.function) {
            Ok(r) => r,
            Err(reason) => exit_clean(
                slot,
                2,
                &format!("{what} {} (plugin {}) failed: {reason}", h.name, h.plugin),
            ),
        };
        let who = Identity {
            name: h.name.clone(),
            worker_type: "startup".into(),
            plugin: h.plugin.clone(),
            arg: 0,
            extra: Vec::new(),
        };
        let table: &'static abi::WorkerApi = match *api {
            None => runtime(env, slot, who, true),
            Some(prev) => {
                // Same runtime, new name for this hook.
                let prev: &'static abi::WorkerApi = prev;
                Box::leak(Box::new(abi::WorkerApi {
                    name: leak_str(who.name),
                    plugin: leak_str(who.plugin),
                    ..*prev
                }))
            }
        };
        *api = Some(table);
        crate::shared::hostapi::with_state(|s| s.failure = None);
        tracing::info!("running {what} {} (plugin {})", h.name, h.plugin);
        // SAFETY: `run` passed the magic, ABI and fingerprint checks; the SDK's wrapper catches
        // panics inside the plugin.
        let code = unsafe { run(table) };
        if code != 0 {
            let reason =
                crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_else(|| format!("exit code {code}"));
            exit_clean(
                slot,
                2,
                &format!("{what} {} (plugin {}) failed: {reason}", h.name, h.plugin),
            );
        }
    }
}
