//! Finding a running host for the client commands (`status`, `stop`, `reload`), even when its
//! configuration file is broken.
//!
//! Runs in: the CLI process. A client needs the runtime directory, and `stop` the shutdown timeout;
//! nothing else in the file. The operator reaches for these commands exactly when something is
//! wrong, often right after editing the file, so a file that fails validation (or even TOML
//! syntax) must not lock them out: its errors are printed as warnings on stderr and the two values
//! are read leniently, the runtime directory from `[host] runtime_dir` or else the default.
//! `--runtime-dir` (or `STEWARD_RUNTIME_DIR`) overrides what the file says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_host::shared::config::{toml_duration, Config, ConfigError};

use super::{config_path, ConfigSource, TargetArgs};

/// What a client command needs to reach a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub runtime_dir: PathBuf,
    pub shutdown_timeout: Duration,
}

impl Target {
    pub fn socket_path(&self) -> PathBuf {
        self.runtime_dir.join(steward_host::shared::control::SOCKET_NAME)
    }
    pub fn lock_path(&self) -> PathBuf {
        self.runtime_dir.join(steward_host::shared::lockfile::LOCK_NAME)
    }
}

/// Resolves the target; warnings about the file go to stderr. Fails only when the file cannot
/// be read at all and no runtime directory was given: then there is nothing to go on.
pub fn resolve(args: &TargetArgs) -> Result<Target, ConfigError> {
    let (path, source) = config_path(&args.config);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            let err = ConfigError::new(&path, None, format!("cannot read the config file: {e}"));
            match (&args.runtime_dir, source) {
                (None, _) => return Err(err),
                // An explicit file that cannot be read is worth a word; an absent default is not.
                (Some(_), ConfigSource::Given) => eprintln!("steward: warning: {err}"),
                (Some(_), ConfigSource::Default) => {}
            }
            None
        }
    };
    let (target, problem) = lenient(&path, text.as_deref().unwrap_or(""));
    if let Some(problem) = &problem {
        eprintln!("steward: warning: {problem}");
    }
    let target = match &args.runtime_dir {
        Some(dir) => Target {
            runtime_dir: dir.clone(),
            ..target
        },
        None => {
            if problem.is_some() {
                eprintln!(
                    "steward: warning: going on with runtime_dir {}",
                    target.runtime_dir.display()
                );
            }
            target
        }
    };
    Ok(target)
}

/// The target `text` (the contents of `path`) names, and the file's first error if it has one.
/// With an error, `runtime_dir` and `shutdown_timeout` are taken from the `[host]` table as far
/// as they can be read, each else its default.
pub fn lenient(path: &Path, text: &str) -> (Target, Option<ConfigError>) {
    match Config::parse(path, text) {
        Ok(cfg) => (
            Target {
                runtime_dir: cfg.runtime_dir,
                shutdown_timeout: cfg.shutdown_timeout,
            },
            None,
        ),
        Err(e) => {
            // The defaults, resolved exactly as for a file that sets nothing.
            let defaults = Config::parse(path, "").expect("an empty file is a valid configuration");
            let dir = defaults.path.parent().map(Path::to_owned).unwrap_or_default();
            let runtime_dir = match host_value(text, "runtime_dir") {
                Some(toml::Value::String(d)) if !d.is_empty() => dir.join(d),
                _ => defaults.runtime_dir,
            };
            let shutdown_timeout = host_value(text, "shutdown_timeout")
                .and_then(|v| toml_duration(&v).ok())
                .unwrap_or(defaults.shutdown_timeout);
            (
                Target {
                    runtime_dir,
                    shutdown_timeout,
                },
                Some(e),
            )
        }
    }
}

/// The value of `key` in the `[host]` table of `text`, read as leniently as possible: from the
/// parsed document when it is valid TOML, else from the first `key = value` line of the `[host]`
/// table whose value parses on its own, so that a syntax error elsewhere does not hide it.
fn host_value(text: &str, key: &str) -> Option<toml::Value> {
    if let Ok(doc) = text.parse::<toml::Table>() {
        return doc.get("host")?.get(key).cloned();
    }
    let mut in_host = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(header) = l.strip_prefix('[') {
            // `[host]`, `[ host ] # comment`; an array of tables (`[[...]]`) is never `[host]`.
            in_host = !header.starts_with('[') && header.split(']').next().map(str::trim) == Some("host");
            continue;
        }
        if !in_host {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        if let Ok(one) = format!("v = {}", v.trim()).parse::<toml::Table>() {
            return one.get("v").cloned();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> (Target, Option<ConfigError>) {
        lenient(Path::new("/etc/steward/steward.toml"), text)
    }

    #[test]
    fn a_valid_file_gives_its_values_and_no_warning() {
        let (t, e) = target("[host]\nruntime_dir = \"/run/x\"\nshutdown_timeout = \"9s\"\n");
        assert!(e.is_none());
        assert_eq!(t.runtime_dir, PathBuf::from("/run/x"));
        assert_eq!(t.shutdown_timeout, Duration::from_secs(9));
    }

    #[test]
    fn a_syntax_error_elsewhere_does_not_hide_runtime_dir() {
        let (t, e) = target(
            "[host]\nplugin_dir = \nruntime_dir = \"run\" # relative\nshutdown_timeout = \"7s\"\n[plugins.x]\nruntime_dir = \"/no\"\n",
        );
        assert!(e.unwrap().to_string().contains("line 2"));
        assert_eq!(t.runtime_dir, PathBuf::from("/etc/steward/run"));
        assert_eq!(t.shutdown_timeout, Duration::from_secs(7));
    }

    #[test]
    fn an_invalid_value_keeps_the_rest() {
        let (t, e) = target("[host]\nmax_wrokers = 3\nruntime_dir = \"/run/y\"\n");
        assert!(e.unwrap().to_string().contains("max_wrokers"));
        assert_eq!(t.runtime_dir, PathBuf::from("/run/y"));
    }

    #[test]
    fn runtime_dir_outside_host_or_unreadable_gives_the_default() {
        let default = steward_host::shared::config::default_runtime_dir();
        let (t, e) = target("[plugins.p]\nruntime_dir = \"/no\"\n[host\n");
        assert!(e.is_some());
        assert_eq!(t.runtime_dir, default);
        let (t, _) = target("[host]\nruntime_dir = \"unterminated\n");
        assert_eq!(t.runtime_dir, default);
        let (t, _) = target("[[host]]\nruntime_dir = \"/no\"\n=\n");
        assert_eq!(t.runtime_dir, default);
    }
}
