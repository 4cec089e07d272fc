//! The startup child: runs the plugins' startup hooks in registration order, before any worker
//! that waits for the host to be consistent.
//!
//! Runs in: the startup child, once per host start and after each crash reset.

use steward::abi;

use crate::child::exit_clean;
use crate::child::runtime::{leak_str, runtime, Identity};
use crate::shared::handoff::ChildEnv;
use crate::shared::protocol::ChildSlot;

/// The startup child: runs every startup hook in registration order; the first that fails ends
/// the child with exit code 2 and a reason naming the hook, which stops the host.
pub fn startup_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>) -> i32 {
    crate::shared::log::set_identity("startup", None);
    let mut api = None;
    for h in &env.registry.hooks {
        crate::shared::log::set_identity("startup", Some(&h.name));
        if let Some(s) = slot {
            // Read by the supervisor only if this child dies without a clean exit.
            s.set_reason(&format!("startup hook {} (plugin {}) was running", h.name, h.plugin));
        }
        let run = match crate::shared::preload::resolve_hook(&h.library, &h.function) {
            Ok(r) => r,
            Err(reason) => exit_clean(
                slot,
                2,
                &format!("startup hook {} (plugin {}) failed: {reason}", h.name, h.plugin),
            ),
        };
        let who = Identity {
            name: h.name.clone(),
            worker_type: "startup".into(),
            plugin: h.plugin.clone(),
            arg: 0,
            extra: Vec::new(),
        };
        let table: &'static abi::WorkerApi = match api {
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
        api = Some(table);
        crate::shared::hostapi::with_state(|s| s.failure = None);
        tracing::info!("running startup hook {} (plugin {})", h.name, h.plugin);
        // SAFETY: `run` passed the magic, ABI and fingerprint checks; the SDK's wrapper catches
        // panics inside the plugin.
        let code = unsafe { run(table) };
        if code != 0 {
            let reason =
                crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_else(|| format!("exit code {code}"));
            exit_clean(
                slot,
                2,
                &format!("startup hook {} (plugin {}) failed: {reason}", h.name, h.plugin),
            );
        }
    }
    exit_clean(slot, 0, "")
}
