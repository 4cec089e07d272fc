//! The host's log: a small `tracing` subscriber that writes one line per event to stderr.
//!
//! Runs in: every process of the host (supervisor and children).
//!
//! Each line carries the process kind, the worker's name (in a worker) and the pid, so that lines
//! from many processes sharing one stderr stay attributable. Plugin events arrive through the host
//! function table ([`crate::hostapi`]) and carry a `plugin` field. Each line is written with a
//! single `write(2)`, so lines from different processes do not interleave within a line.
//!
//! The identity is process-global: set once in the supervisor and again in each child right after
//! it starts ([`set_identity`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
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
static MAX_LEVEL: AtomicU32 = AtomicU32::new(3);

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

/// Installs the subscriber (once per process image; later calls only change format and level).
pub fn init(format: Format, max_level: u32) {
    FORMAT.store(matches!(format, Format::Json) as u8, Ordering::Relaxed);
    MAX_LEVEL.store(max_level, Ordering::Relaxed);
    let _ = tracing::subscriber::set_global_default(LineSubscriber);
    {
        let mut id = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
        if id.pid == 0 {
            id.pid = std::process::id();
        }
    }
}

/// Changes format and level without reinstalling (used by exec-mode children).
pub fn configure(format: Format, max_level: u32) {
    init(format, max_level)
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
    let ts = crate::time::rfc3339_ms(crate::time::now_ms());
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
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
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
