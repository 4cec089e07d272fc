//! The configuration file: parsed raw, then validated.
//!
//! Runs in: the supervisor (and the CLI, which only needs `runtime_dir`); exec-mode children get
//! the validated form in their parameter blob.
//!
//! Two stages, as distinct types: [`RawFile`] is what the TOML says (unknown keys rejected with
//! their line), [`Config`] is what the host uses (paths resolved against the config file's
//! directory, numbers bounded, enums known). Plugin sections stay raw here: a plugin defines its
//! settings in init, and [`crate::shared::hostapi`] validates each value then; keys no plugin defined are
//! rejected after the last init.
//!
//! `host_keys!` declares each `[host]` key once, with whether a reload applies it; the result,
//! [`HOST_KEYS`], is what [`crate::shared::reload`] plans by and what `steward show` lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shared::log::Format;

// issue 14: queue
mod reserved;
pub use reserved::RESERVED_WORKER_SLOTS_KEY;

/// The control socket's file name in the runtime directory (declared here, where the runtime
/// directory's paths are, so the configuration does not depend on the control protocol).
pub const SOCKET_NAME: &str = "steward.sock";

/// How children are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// The child continues from a copy of the supervisor and calls the entry directly.
    Fork,
    /// The child re-executes the `steward` binary and finds everything again by name.
    Exec,
}

impl LaunchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchMode::Fork => "fork",
            LaunchMode::Exec => "exec",
        }
    }
    pub fn parse(s: &str) -> Option<LaunchMode> {
        match s {
            "fork" => Some(LaunchMode::Fork),
            "exec" => Some(LaunchMode::Exec),
            _ => None,
        }
    }
}

/// A problem with the configuration, naming the file, the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}{reason}", file = file.display(), key = key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: Option<&str>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            key: key.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub host: RawHost,
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Table>,
    // issue 15: connections
    #[serde(default)]
    pub listen: Vec<crate::shared::listen::RawListen>,
}

/// Whether a reload applies a changed `[host]` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The new value takes effect at once.
    Applies,
    /// The running value stays until the host restarts; the key is reported as needing a restart.
    NeedsRestart,
}

/// One `[host]` key, as `host_keys!` declares it: what reload and `steward show` need to know,
/// with typed access to the validated value in a [`Config`].
pub struct HostKey {
    /// `host.KEY`, as errors, reload verdicts and `show` name it.
    pub name: &'static str,
    pub reload: Reload,
    /// The value as the file would say it.
    pub show: fn(&Config) -> String,
    /// Whether the two configurations hold different values.
    pub differs: fn(&Config, &Config) -> bool,
    /// Copies the value from the second configuration into the first.
    pub take: fn(&mut Config, &Config),
}

/// Declares every `[host]` key once: its raw type in the file (this defines [`RawHost`]), whether a
/// reload applies it, and how `show` renders its validated value (the [`Config`] field of the same
/// name). Reload's plan and `show`'s host rows are derived from [`HOST_KEYS`] and name no key.
///
/// The compiler closes the loop: a key cannot reach the file without a row here, and a row
/// cannot leave out the reload decision; [`RawHost::check`] fills each row's `Config` field from
/// the [`HostCheck`] method of the key's name, which takes the raw value, so a row without its
/// check, or a check that ignores the file, does not build; and that struct literal names no
/// other field, so a `Config` field no row declares does not build either. The default and bounds
/// of each key stay in its check; the checks that relate keys to one another (`log_level`'s
/// plugin names) come after, in `Config::validate`.
macro_rules! host_keys {
    ($($key:ident: $raw:ty, $reload:ident, $show:expr;)*) => {
        /// The `[host]` section as written. Serde's list of expected keys, in unknown-key errors,
        /// follows this order.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawHost {
            $(pub $key: Option<$raw>,)*
        }

        /// Every `[host]` key, in [`RawHost`]'s order.
        pub const HOST_KEYS: &[HostKey] = &[$(HostKey {
            name: concat!("host.", stringify!($key)),
            reload: Reload::$reload,
            show: |c| ($show)(&c.$key),
            differs: |a, b| a.$key != b.$key,
            take: |to, from| to.$key.clone_from(&from.$key),
        }),*];

        impl RawHost {
            /// The validated configuration: each key checked by the [`HostCheck`] method of its
            /// name, in the rows' order, so the first problem reported is the first in the file's
            /// documented order.
            fn check(
                self,
                c: &HostCheck<'_>,
                plugin_sections: BTreeMap<String, toml::Table>,
            ) -> Result<Config, ConfigError> {
                Ok(Config {
                    path: c.path.to_owned(),
                    plugin_sections,
                    listeners: Vec::new(),
                    reserved_worker_slots: BTreeMap::new(),
                    $($key: c.$key(self.$key)?,)*
                })
            }
        }
    };
}

fn show_path(p: &Path) -> String {
    p.display().to_string()
}

fn show_duration(d: &Duration) -> String {
    crate::shared::time::format_duration(*d)
}

fn show_plain<T: std::fmt::Display>(v: &T) -> String {
    v.to_string()
}

host_keys! {
    plugin_dir: String, NeedsRestart, |p: &PathBuf| show_path(p);
    preload_plugins: Vec<String>, NeedsRestart, |v: &Vec<String>| v.join(", ");
    runtime_dir: String, NeedsRestart, |p: &PathBuf| show_path(p);
    max_worker_processes: i64, NeedsRestart, show_plain::<u32>;
    max_connections: i64, NeedsRestart, show_plain::<u32>;
    launch_mode: String, NeedsRestart, |m: &LaunchMode| m.as_str().to_owned();
    shutdown_timeout: toml::Value, Applies, show_duration;
    crash_kill_timeout: toml::Value, Applies, show_duration;
    restart_after_crash: bool, Applies, show_plain::<bool>;
    huge_code_pages: bool, NeedsRestart, show_plain::<bool>;
    log_format: String, Applies, |f: &Format| match f {
        Format::Text => "text",
        Format::Json => "json",
    }
    .to_owned();
    log_level: String, Applies, show_plain::<crate::shared::log::Filter>;
    // issue 15: connections
    max_client_connections: i64, NeedsRestart, show_plain::<u32>;
}

/// The validated configuration the host runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The file it came from (absolute).
    pub path: PathBuf,
    pub plugin_dir: PathBuf,
    pub preload_plugins: Vec<String>,
    pub runtime_dir: PathBuf,
    pub max_worker_processes: u32,
    pub max_connections: u32,
    pub launch_mode: LaunchMode,
    pub shutdown_timeout: Duration,
    pub crash_kill_timeout: Duration,
    pub restart_after_crash: bool,
    /// Fork mode: move the supervisor's machine code onto huge pages (see [`crate::sys::hugetext`]).
    pub huge_code_pages: bool,
    pub log_format: Format,
    pub log_level: crate::shared::log::Filter,
    /// `[plugins.<name>]` tables, validated against the plugins' definitions during preload.
    pub plugin_sections: BTreeMap<String, toml::Table>,
    // issue 15: connections
    /// Most client connections of plugins' listeners served at once, over all listeners.
    pub max_client_connections: u32,
    /// The `[[listen]]` tables, validated ([`crate::shared::listen`]); restart-only.
    pub listeners: Vec<crate::shared::listen::Listener>,
    // issue 14: queue
    /// Dynamic worker slots reserved per plugin (`reserved_worker_slots`, taken out of
    /// `plugin_sections`); restart-only.
    #[serde(default)]
    pub reserved_worker_slots: BTreeMap<String, u32>,
}

/// Upper bounds that keep the segment and the child table sane.
pub const MAX_WORKER_PROCESSES: i64 = 100_000;
pub const MAX_CONNECTIONS: i64 = 10_000;

/// Upper bounds of the host's durations. A shutdown that may take longer than an hour, or a crash
/// reset that waits that long for its children, is a typo, not a plan.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MAX_CRASH_KILL_TIMEOUT: Duration = Duration::from_secs(3600);
/// The upper bound of every duration in the file, plugin settings included (a plugin may set a
/// lower one for its own setting).
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// The longest Unix socket path the OS accepts (`sun_path` less the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the config file: {e}")))?;
        Config::parse(path, &text)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let abs = normalize(&if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_owned())
        });
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::new(&abs, None, e.to_string().trim_end()))?;
        Config::validate(&abs, raw)
    }

    fn validate(path: &Path, raw: RawFile) -> Result<Config, ConfigError> {
        let check = HostCheck {
            path,
            dir: path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from(".")),
        };
        let mut cfg = raw.host.check(&check, raw.plugins)?;
        cfg.listeners =
            crate::shared::listen::validate(path, raw.listen, cfg.max_client_connections, &cfg.socket_path(), |p| {
                check.resolve(p)
            })?;
        // issue 14: queue
        cfg.reserved_worker_slots = reserved::take_reserved(path, &mut cfg.plugin_sections, cfg.max_worker_processes)?;
        // A misspelt plugin name would silently leave that plugin at the default level.
        if let Some((name, _)) = cfg
            .log_level
            .plugins
            .iter()
            .find(|(name, _)| !cfg.preload_plugins.contains(name))
        {
            return Err(check.err(
                "host.log_level",
                format!("there is no plugin {name:?} in host.preload_plugins"),
            ));
        }
        for name in cfg.plugin_sections.keys() {
            if !cfg.preload_plugins.iter().any(|p| p == name) {
                return Err(check.err(
                    &format!("plugins.{name}"),
                    "there is no such plugin in host.preload_plugins".to_owned(),
                ));
            }
        }
        Ok(cfg)
    }

    pub fn socket_path(&self) -> PathBuf {
        self.runtime_dir.join(SOCKET_NAME)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.runtime_dir.join(crate::shared::lockfile::LOCK_NAME)
    }

    /// The path of plugin `name`'s library.
    pub fn plugin_path(&self, name: &str) -> PathBuf {
        self.plugin_dir.join(format!("lib{name}.so"))
    }
}

/// The checks of the `[host]` keys, one method per key of the same name (see `host_keys!`): each
/// takes the key's raw value, or `None` when the file leaves it out, and gives the validated value,
/// with the key's default and bounds.
struct HostCheck<'a> {
    /// The config file, named in every error.
    path: &'a Path,
    /// Its directory, which relative paths are resolved against.
    dir: PathBuf,
}

impl HostCheck<'_> {
    fn err(&self, key: &str, reason: String) -> ConfigError {
        ConfigError::new(self.path, Some(key), reason)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        normalize(&if p.is_absolute() { p } else { self.dir.join(p) })
    }

    fn bounded(&self, key: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> Result<u32, ConfigError> {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            return Err(self.err(key, format!("{v} is out of range ({min} to {max})")));
        }
        Ok(v as u32)
    }

    fn duration(
        &self,
        key: &str,
        v: Option<toml::Value>,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = toml_duration_unbounded(&v).map_err(|r| self.err(key, r))?;
        if d > max {
            return Err(self.err(
                key,
                format!(
                    "{} is above the upper bound of {}",
                    crate::shared::time::format_duration(d),
                    crate::shared::time::format_duration(max)
                ),
            ));
        }
        Ok(d)
    }

    fn plugin_dir(&self, v: Option<String>) -> Result<PathBuf, ConfigError> {
        Ok(self.resolve(v.as_deref().unwrap_or(".")))
    }

    fn preload_plugins(&self, v: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let names = v.unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        for name in &names {
            let ok = !name.is_empty()
                && name.len() <= steward::abi::MAX_LIBRARY_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(self.err(
                    "host.preload_plugins",
                    format!("{name:?} is not a plugin name (letters, digits, '_' and '-', at most 63 bytes)"),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(self.err("host.preload_plugins", format!("{name:?} is listed twice")));
            }
        }
        Ok(names)
    }

    fn runtime_dir(&self, v: Option<String>) -> Result<PathBuf, ConfigError> {
        let dir = match v.as_deref() {
            Some(d) => self.resolve(d),
            None => default_runtime_dir(),
        };
        let socket = dir.join(SOCKET_NAME);
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(self.err(
                "host.runtime_dir",
                format!(
                    "the control socket path {} is {len} bytes; the OS allows at most {MAX_SOCKET_PATH}: choose a shorter runtime_dir",
                    socket.display()
                ),
            ));
        }
        Ok(dir)
    }

    fn max_worker_processes(&self, v: Option<i64>) -> Result<u32, ConfigError> {
        self.bounded("host.max_worker_processes", v, 8, 0, MAX_WORKER_PROCESSES)
    }

    fn max_connections(&self, v: Option<i64>) -> Result<u32, ConfigError> {
        self.bounded("host.max_connections", v, 16, 1, MAX_CONNECTIONS)
    }

    fn launch_mode(&self, v: Option<String>) -> Result<LaunchMode, ConfigError> {
        match v.as_deref() {
            None => Ok(LaunchMode::Fork),
            Some(s) => LaunchMode::parse(s).ok_or_else(|| {
                self.err(
                    "host.launch_mode",
                    format!("{s:?} is not a launch mode (use \"fork\" or \"exec\")"),
                )
            }),
        }
    }

    fn shutdown_timeout(&self, v: Option<toml::Value>) -> Result<Duration, ConfigError> {
        self.duration("host.shutdown_timeout", v, Duration::from_secs(5), MAX_SHUTDOWN_TIMEOUT)
    }

    fn crash_kill_timeout(&self, v: Option<toml::Value>) -> Result<Duration, ConfigError> {
        self.duration(
            "host.crash_kill_timeout",
            v,
            Duration::from_secs(5),
            MAX_CRASH_KILL_TIMEOUT,
        )
    }

    fn restart_after_crash(&self, v: Option<bool>) -> Result<bool, ConfigError> {
        Ok(v.unwrap_or(true))
    }

    fn huge_code_pages(&self, v: Option<bool>) -> Result<bool, ConfigError> {
        Ok(v.unwrap_or(true))
    }

    fn log_format(&self, v: Option<String>) -> Result<Format, ConfigError> {
        match v.as_deref() {
            None | Some("text") => Ok(Format::Text),
            Some("json") => Ok(Format::Json),
            Some(s) => Err(self.err(
                "host.log_format",
                format!("{s:?} is not a log format (use \"text\" or \"json\")"),
            )),
        }
    }

    // issue 15: connections
    fn max_client_connections(&self, v: Option<i64>) -> Result<u32, ConfigError> {
        self.bounded("host.max_client_connections", v, 100, 1, MAX_CONNECTIONS)
    }

    fn log_level(&self, v: Option<String>) -> Result<crate::shared::log::Filter, ConfigError> {
        match v.as_deref() {
            None => Ok(crate::shared::log::Filter::default()),
            Some(s) => crate::shared::log::Filter::parse(s).map_err(|r| self.err("host.log_level", r)),
        }
    }
}

/// A duration in the file: a string with a unit, or an integer number of milliseconds; at most
/// [`MAX_DURATION`].
pub fn toml_duration(v: &toml::Value) -> Result<Duration, String> {
    let d = toml_duration_unbounded(v)?;
    if d > MAX_DURATION {
        return Err(format!(
            "{} is above the upper bound of {} for any duration",
            crate::shared::time::format_duration(d),
            crate::shared::time::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// A duration in the file, before any upper bound: the caller applies its own.
fn toml_duration_unbounded(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => crate::shared::time::parse_duration(s),
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_millis(*n as u64)),
        other => Err(format!("expected a duration like \"500ms\" or \"2s\", got {other}")),
    }
}

/// `path` with `.` components and `name/..` pairs removed, lexically: no symlink is resolved, so
/// what an error message or `status` shows is what the operator wrote, made tidy. A `..` at the
/// root stays at the root; a leading `..` of a relative path is kept.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// `/run/steward` for root; `$XDG_RUNTIME_DIR/steward` or `/tmp/steward-<uid>` otherwise.
pub fn default_runtime_dir() -> PathBuf {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return PathBuf::from("/run/steward");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => normalize(&PathBuf::from(d).join("steward")),
        _ => PathBuf::from(format!("/tmp/steward-{uid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/steward/steward.toml"), text)
    }

    #[test]
    fn resolves_relative_paths_against_the_file() {
        let c = parse("[host]\nplugin_dir = \"plugins\"\nruntime_dir = \"/run/x\"\npreload_plugins = [\"hello\"]\n")
            .unwrap();
        assert_eq!(c.plugin_dir, PathBuf::from("/etc/steward/plugins"));
        assert_eq!(
            c.plugin_path("hello"),
            PathBuf::from("/etc/steward/plugins/libhello.so")
        );
        assert_eq!(c.launch_mode, LaunchMode::Fork);
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = parse("[host]\nplugin_dir = \n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().starts_with("/etc/steward/steward.toml: "), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[host]\nmax_workers = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_workers"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let e = parse("[host]\nmax_connections = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.max_connections"));
        let e = parse("[host]\nlaunch_mode = \"thread\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.launch_mode"));
        let e = parse("[host]\nshutdown_timeout = \"soon\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.shutdown_timeout"));
        let e = parse("[plugins.ghost]\nx = 1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("plugins.ghost"));
    }

    #[test]
    fn durations_have_upper_bounds_named_with_file_and_key() {
        let e = parse("[host]\nshutdown_timeout = \"1000000000000d\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.shutdown_timeout"));
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/steward/steward.toml: host.shutdown_timeout: "),
            "{text}"
        );
        assert!(text.contains("1000000000000d is above the upper bound of 1h"), "{text}");
        let e = parse("[host]\nshutdown_timeout = \"2h\"\n").unwrap_err();
        assert!(e.to_string().contains("2h is above the upper bound of 1h"), "{e}");
        let e = parse("[host]\ncrash_kill_timeout = 3600001\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.crash_kill_timeout"));
        assert!(e.to_string().contains("upper bound of 1h"), "{e}");
        let e = parse("[host]\nshutdown_timeout = \"99999999999999999999999s\"\n").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let c = parse("[host]\nshutdown_timeout = \"1h\"\ncrash_kill_timeout = \"60min\"\n").unwrap();
        assert_eq!(c.shutdown_timeout, MAX_SHUTDOWN_TIMEOUT);
        assert_eq!(c.crash_kill_timeout, MAX_CRASH_KILL_TIMEOUT);
        assert!(toml_duration(&toml::Value::String("31d".into())).is_err());
        assert_eq!(toml_duration(&toml::Value::String("30d".into())), Ok(MAX_DURATION));
    }

    #[test]
    fn log_level_takes_a_filter_of_loaded_plugins() {
        let c = parse("[host]\npreload_plugins = [\"hello\"]\nlog_level = \"warn,hello=debug\"\n").unwrap();
        assert_eq!(c.log_level.to_string(), "warn,hello=debug");
        let e = parse("[host]\npreload_plugins = [\"hello\"]\nlog_level = \"info,helo=debug\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.log_level"));
        assert!(e.to_string().contains("\"helo\""), "{e}");
        let e = parse("[host]\nlog_level = \"chatty\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host.log_level"));
    }

    #[test]
    fn paths_are_normalised_lexically() {
        for (raw, want) in [
            ("/etc/./steward/../steward/x.toml", "/etc/steward/x.toml"),
            ("/../etc", "/etc"),
            ("a/./b/../c", "a/c"),
            ("../a/..", ".."),
            ("./", "."),
            ("/run//steward/", "/run/steward"),
        ] {
            assert_eq!(normalize(Path::new(raw)), PathBuf::from(want), "{raw}");
        }
        let c = Config::parse(
            Path::new("/etc/./steward/../steward/steward.toml"),
            "[host]\nplugin_dir = \"./lib/../plugins/\"\nruntime_dir = \"../run/./steward\"\n",
        )
        .unwrap();
        assert_eq!(c.path, PathBuf::from("/etc/steward/steward.toml"));
        assert_eq!(c.plugin_dir, PathBuf::from("/etc/steward/plugins"));
        assert_eq!(c.runtime_dir, PathBuf::from("/etc/run/steward"));
        let e = Config::parse(Path::new("/etc/./steward.toml"), "[host]\nmax_connections = 0\n").unwrap_err();
        assert!(e.to_string().starts_with("/etc/steward.toml: "), "{e}");
    }

    #[test]
    fn socket_path_too_long_is_refused() {
        let long = "/tmp/".to_owned() + &"d".repeat(120);
        let e = parse(&format!("[host]\nruntime_dir = \"{long}\"\n")).unwrap_err();
        assert!(e.to_string().contains("at most 107"), "{e}");
    }

    /// The names serde accepts for a struct, taken from the field list its derived `Deserialize`
    /// hands to `deserialize_struct`.
    fn serde_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        use serde::de::{self, Visitor};
        struct Fields(&'static [&'static str]);
        impl<'de> de::Deserializer<'de> for &mut Fields {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0 = fields;
                Err(de::Error::custom("fields taken"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                ignored_any
            }
        }
        let mut fields = Fields(&[]);
        let _ = T::deserialize(&mut fields);
        fields.0
    }

    /// A `[host]` key the file accepts but `HOST_KEYS` does not declare would be neither applied
    /// by a reload nor reported as needing a restart, and `show` would not list it.
    #[test]
    fn every_host_key_in_the_file_is_declared() {
        let declared: Vec<&str> = HOST_KEYS
            .iter()
            .map(|k| k.name.strip_prefix("host.").unwrap())
            .collect();
        assert_eq!(serde_fields::<RawHost>(), declared.as_slice());
        assert_eq!(serde_fields::<RawFile>(), ["host", "plugins", "listen"]);
    }
}
