//! `reserved_worker_slots` (issue 14: queue): the one host-owned key of every `[plugins.P]`
//! section, the number of dynamic worker slots kept for plugin P.
//!
//! Runs in: every process that reads the configuration file (the supervisor at start and on
//! reload, children on reload). The key is taken out of the plugin's table here, so a plugin's
//! own settings never see it and no plugin may define a setting of that name.
//!
//! Invariant: the reservations sum to at most `max_worker_processes` (the dynamic slots), so a
//! plugin under its reservation always finds a slot.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// The key's name in a `[plugins.P]` section.
pub const RESERVED_WORKER_SLOTS_KEY: &str = "reserved_worker_slots";

/// Takes `reserved_worker_slots` out of each plugin section: the reservations per plugin (none
/// for a plugin that reserves 0), or an error naming the file and key.
pub fn take_reserved(
    path: &Path,
    sections: &mut BTreeMap<String, toml::Table>,
    max_worker_processes: u32,
) -> Result<BTreeMap<String, u32>, ConfigError> {
    let mut reserved = BTreeMap::new();
    let mut sum: u64 = 0;
    for (plugin, table) in sections.iter_mut() {
        let Some(v) = table.remove(RESERVED_WORKER_SLOTS_KEY) else {
            continue;
        };
        let key = format!("plugins.{plugin}.{RESERVED_WORKER_SLOTS_KEY}");
        let n = match v.as_integer() {
            Some(n) if (0..=i64::from(max_worker_processes)).contains(&n) => n as u32,
            Some(n) => {
                return Err(ConfigError::new(
                    path,
                    Some(&key),
                    format!("{n} is not between 0 and max_worker_processes ({max_worker_processes})"),
                ))
            }
            None => {
                return Err(ConfigError::new(
                    path,
                    Some(&key),
                    format!("expected a number of worker slots, found {v}"),
                ))
            }
        };
        sum += u64::from(n);
        if sum > u64::from(max_worker_processes) {
            return Err(ConfigError::new(
                path,
                Some(&key),
                format!(
                    "the plugins reserve {sum} worker slots with this one, more than max_worker_processes ({max_worker_processes})"
                ),
            ));
        }
        if n > 0 {
            reserved.insert(plugin.clone(), n);
        }
    }
    Ok(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/steward/steward.toml"), text)
    }

    const HEAD: &str = "[host]\npreload_plugins = [\"hello\", \"testkit\"]\nmax_worker_processes = 4\n";

    #[test]
    fn reservations_are_taken_out_of_the_plugin_sections() {
        let c = parse(&format!(
            "{HEAD}[plugins.hello]\nreserved_worker_slots = 3\ninterval = \"1s\"\n[plugins.testkit]\nreserved_worker_slots = 0\n"
        ))
        .unwrap();
        assert_eq!(c.reserved_worker_slots, BTreeMap::from([("hello".to_owned(), 3)]));
        assert!(!c.plugin_sections["hello"].contains_key(RESERVED_WORKER_SLOTS_KEY));
        assert!(c.plugin_sections["hello"].contains_key("interval"));
    }

    #[test]
    fn reservations_over_max_worker_processes_or_malformed_are_refused_naming_the_key() {
        let e = parse(&format!(
            "{HEAD}[plugins.hello]\nreserved_worker_slots = 3\n[plugins.testkit]\nreserved_worker_slots = 2\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("plugins.testkit.reserved_worker_slots"));
        assert_eq!(e.file, Path::new("/etc/steward/steward.toml"));
        assert!(
            e.reason.contains("reserve 5 worker slots") && e.reason.contains("(4)"),
            "{e}"
        );
        let e = parse(&format!("{HEAD}[plugins.hello]\nreserved_worker_slots = -1\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("plugins.hello.reserved_worker_slots"));
        assert!(e.reason.contains("between 0 and max_worker_processes (4)"), "{e}");
        let e = parse(&format!("{HEAD}[plugins.hello]\nreserved_worker_slots = \"2\"\n")).unwrap_err();
        assert!(e.reason.contains("expected a number"), "{e}");
    }
}
