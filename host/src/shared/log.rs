//! The host's log: a small `tracing` subscriber that writes one line per event to stderr.
//!
//! Runs in: every process of the host (supervisor and children).
//!
//! Each line carries the process kind, the worker's name (in a worker) and the pid, so that lines
//! from many processes sharing one stderr stay attributable. Plugin events arrive through the host
//! function table ([`crate::shared::hostapi`]) and carry a `plugin` field. Each line is written with a
//! single `write(2)`, so lines from different processes do not interleave within a line.
//!
//! The identity is process-global: set once in the supervisor and again in each child right after
//! it starts ([`set_identity`]).
//!
//! Levels come from a [`Filter`] (`log_level = "info,hello=debug"`): a default level for the host
//! and every plugin not named, and a level per named plugin, applied to events that carry that
//! plugin's `plugin` field. A reload replaces the filter in the supervisor and, after SIGHUP, in
//! every child ([`configure`]).
//!
//! Under systemd, when stderr is the journal stream named by `JOURNAL_STREAM` (its device and
//! inode, as systemd sets it), each text line starts with its syslog priority (`<3>` error ..
//! `<7>` debug), so the journal files each line at its level. A stderr redirected elsewhere by a
//! process started from such a service gets no prefix: the variable alone is not enough.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Level, Metadata, Subscriber};

/// Log line format (`log_format` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

struct Identity {
    kind: &'static str,
    name: Option<String>,
    pid: u32,
}

static IDENTITY: Mutex<Identity> = Mutex::new(Identity {
    kind: "steward",
    name: None,
    pid: 0,
});
static FORMAT: AtomicU8 = AtomicU8::new(0);
/// The most verbose level any event may have: the most verbose of the filter's levels.
static MAX_LEVEL: AtomicU32 = AtomicU32::new(3);
/// The filter in force (`log_level`).
static FILTER: Mutex<Filter> = Mutex::new(Filter::INFO);
/// Whether stderr is the journal: 0 not yet known (this process image), 1 no, 2 yes.
static JOURNAL: AtomicU8 = AtomicU8::new(0);

/// `log_level`: a default level, then `plugin=level` pairs, e.g. `"info,hello=debug"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// The ABI's level code (1 error ..= 5 trace) for the host and unnamed plugins.
    pub default: u32,
    /// `(plugin, level code)`, in the order written, each plugin once.
    pub plugins: Vec<(String, u32)>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter::INFO
    }
}

impl Filter {
    /// Everything at info, the default.
    pub const INFO: Filter = Filter {
        default: 3,
        plugins: Vec::new(),
    };

    /// Parses a filter. At most one bare level (the default, `info` when absent); plugin names
    /// are checked against the loaded plugins by the caller ([`crate::shared::config`]).
    pub fn parse(s: &str) -> Result<Filter, String> {
        const LEVELS: &str = "error, warn, info, debug or trace";
        let mut default = None;
        let mut plugins: Vec<(String, u32)> = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("{s:?} has an empty item (write e.g. \"info,hello=debug\")"));
            }
            match item.split_once('=') {
                None => {
                    let level = parse_level(item).ok_or_else(|| format!("{item:?} is not a level (use {LEVELS})"))?;
                    if default.replace(level).is_some() {
                        return Err(format!("{s:?} gives the default level twice"));
                    }
                }
                Some((plugin, level)) => {
                    let (plugin, level) = (plugin.trim(), level.trim());
                    let level = parse_level(level)
                        .ok_or_else(|| format!("{level:?} (for plugin {plugin:?}) is not a level (use {LEVELS})"))?;
                    if plugin.is_empty() {
                        return Err(format!("{item:?} names no plugin before '='"));
                    }
                    if plugins.iter().any(|(p, _)| p == plugin) {
                        return Err(format!("{s:?} gives plugin {plugin}'s level twice"));
                    }
                    plugins.push((plugin.to_owned(), level));
                }
            }
        }
        Ok(Filter {
            default: default.unwrap_or(3),
            plugins,
        })
    }

    /// The level for events of `plugin` (or the host's own, for `None`).
    pub fn level_for(&self, plugin: Option<&str>) -> u32 {
        plugin
            .and_then(|p| self.plugins.iter().find(|(n, _)| n == p))
            .map_or(self.default, |(_, l)| *l)
    }

    /// The most verbose level of any part of the filter.
    pub fn max(&self) -> u32 {
        self.plugins.iter().map(|(_, l)| *l).fold(self.default, u32::max)
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(level_name(self.default))?;
        for (p, l) in &self.plugins {
            write!(f, ",{p}={}", level_name(*l))?;
        }
        Ok(())
    }
}

fn level_name(code: u32) -> &'static str {
    match code {
        1 => "error",
        2 => "warn",
        3 => "info",
        4 => "debug",
        _ => "trace",
    }
}

/// The syslog priority of a level (`sd-daemon(3)`'s `SD_ERR` .. `SD_DEBUG`).
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the stream `JOURNAL_STREAM` names (`DEVICE:INODE`, decimal), as
/// `systemd.exec(5)` says a service should check before using the journal's conventions.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    // A duplicate, so the check can use `File::metadata` (fstat) without owning stderr.
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// What a line written outside the logger must start with to be filed as an error: `<3>` when
/// stderr is the journal, nothing otherwise. For the `steward: MESSAGE` line of a command that
/// fails, a refusal to start among them, which under systemd is the line that matters most.
pub fn error_prefix() -> &'static str {
    if stderr_is_journal() {
        "<3>"
    } else {
        ""
    }
}

/// Says which process this is, for every later line: `kind` is `supervisor`, `worker`,
/// `connection`, `dead-end`, ...; `name` is the worker's name.
pub fn set_identity(kind: &'static str, name: Option<&str>) {
    let mut id = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    id.kind = kind;
    id.name = name.map(str::to_owned);
    id.pid = std::process::id();
}

/// The most verbose level printed, as the ABI's level code (1 error ..= 5 trace).
pub fn max_level() -> u32 {
    MAX_LEVEL.load(Ordering::Relaxed)
}

pub fn level_code(l: &Level) -> u32 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    }
}

/// Parses `log_level` from the config.
pub fn parse_level(s: &str) -> Option<u32> {
    Some(match s {
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        _ => return None,
    })
}

/// Installs the subscriber (once per process image; later calls only change format and filter).
pub fn init(format: Format, filter: &Filter) {
    FORMAT.store(matches!(format, Format::Json) as u8, Ordering::Relaxed);
    set_filter(filter);
    if JOURNAL.load(Ordering::Relaxed) == 0 {
        JOURNAL.store(if stderr_is_journal() { 2 } else { 1 }, Ordering::Relaxed);
    }
    let _ = tracing::subscriber::set_global_default(LineSubscriber);
    {
        let mut id = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
        if id.pid == 0 {
            id.pid = std::process::id();
        }
    }
}

/// Changes format and filter without reinstalling (a reload, an exec-mode child).
pub fn configure(format: Format, filter: &Filter) {
    init(format, filter)
}

fn set_filter(filter: &Filter) {
    *FILTER.lock().unwrap_or_else(|e| e.into_inner()) = filter.clone();
    MAX_LEVEL.store(filter.max(), Ordering::Relaxed);
}

/// Whether an event at `level` from `plugin` (`None`: the host's own) passes the filter.
fn passes(level: u32, plugin: Option<&str>) -> bool {
    level <= FILTER.lock().unwrap_or_else(|e| e.into_inner()).level_for(plugin)
}

struct LineSubscriber;

#[derive(Default)]
struct Fields {
    message: String,
    plugin: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "plugin" => self.plugin = Some(format!("{value:?}").trim_matches('"').to_owned()),
            name => self.rest.push((name, format!("{value:?}"))),
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "plugin" => self.plugin = Some(value.to_owned()),
            name => self.rest.push((name, value.to_owned())),
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

fn format_line(level: &Level, f: &Fields) -> String {
    let id = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let ts = crate::shared::time::rfc3339_ms(crate::shared::time::now_ms());
    let mut line = String::with_capacity(128 + f.message.len());
    if FORMAT.load(Ordering::Relaxed) == 1 {
        line.push_str("{\"ts\":\"");
        line.push_str(&ts);
        let _ = write!(
            line,
            "\",\"level\":\"{level}\",\"kind\":\"{}\",\"pid\":{}",
            id.kind, id.pid
        );
        if let Some(n) = &id.name {
            line.push_str(",\"worker\":");
            json_str(&mut line, n);
        }
        if let Some(p) = &f.plugin {
            line.push_str(",\"plugin\":");
            json_str(&mut line, p);
        }
        line.push_str(",\"msg\":");
        json_str(&mut line, &f.message);
        for (k, v) in &f.rest {
            let _ = write!(line, ",\"{k}\":");
            json_str(&mut line, v.trim_matches('"'));
        }
        line.push('}');
    } else {
        if JOURNAL.load(Ordering::Relaxed) == 2 {
            let _ = write!(line, "<{}>", syslog_priority(level));
        }
        let _ = write!(line, "{ts} {level:<5} {}", id.kind);
        if let Some(n) = &id.name {
            let _ = write!(line, " {n}");
        }
        let _ = write!(line, "[{}]", id.pid);
        if let Some(p) = &f.plugin {
            let _ = write!(line, " {p}");
        }
        line.push_str(": ");
        line.push_str(&f.message);
        for (k, v) in &f.rest {
            let _ = write!(line, " {k}={v}");
        }
    }
    line.push('\n');
    line
}

impl Subscriber for LineSubscriber {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        // Ask `enabled` at every event: the filter changes on reload, and an interest cached
        // under the old one would keep a newly wanted level silent.
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // A cheap first cut; the plugin's own level is applied in `event`, where its field is read.
        level_code(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if !passes(level_code(event.metadata().level()), f.plugin.as_deref()) {
            return;
        }
        let line = format_line(event.metadata().level(), &f);
        // One write per line; a full or closed stderr must never take the process down.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Logs an event a plugin sent through the host function table.
pub fn plugin_event(level: u32, plugin: &str, message: &str) {
    match level {
        1 => tracing::error!(plugin, "{message}"),
        2 => tracing::warn!(plugin, "{message}"),
        3 => tracing::info!(plugin, "{message}"),
        4 => tracing::debug!(plugin, "{message}"),
        _ => tracing::trace!(plugin, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_default_and_plugin_levels() {
        let f = Filter::parse("info,hello=debug").unwrap();
        assert_eq!(f.default, 3);
        assert_eq!(f.level_for(None), 3);
        assert_eq!(f.level_for(Some("hello")), 4);
        assert_eq!(f.level_for(Some("testkit")), 3);
        assert_eq!(f.max(), 4);
        assert_eq!(f.to_string(), "info,hello=debug");
        let f = Filter::parse(" hello = error , warn ").unwrap();
        assert_eq!((f.default, f.level_for(Some("hello"))), (2, 1));
        assert_eq!(Filter::parse("debug").unwrap().to_string(), "debug");
        assert_eq!(Filter::parse("hello=trace").unwrap().default, 3);
    }

    #[test]
    fn refuses_malformed_filters() {
        for (bad, says) in [
            ("loud", "not a level"),
            ("info,hello=loud", "not a level"),
            ("info,debug", "default level twice"),
            ("info,a=debug,a=warn", "twice"),
            ("info,,a=debug", "empty item"),
            ("=debug", "names no plugin"),
            ("", "empty item"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn journal_priorities_follow_syslog() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }
}
