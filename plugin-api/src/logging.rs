//! Forwards this plugin's `tracing` events and panics to the host's log.
//!
//! Runs in: a plugin, in every process that runs its code.
//!
//! Each cdylib has its own copy of `tracing` with its own global dispatcher, so events a plugin
//! emits would go nowhere without this. The subscriber here formats each event's fields into one
//! message and hands it to [`crate::abi::HostApi::log`]; the host tags it with the process kind,
//! the worker's name and pid. Spans are accepted and ignored.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Metadata, Subscriber};

use crate::abi;

struct Forwarder {
    plugin: &'static str,
    max_level: u32,
    next_span: AtomicU64,
}

fn level_code(l: &Level) -> u32 {
    match *l {
        Level::ERROR => abi::LEVEL_ERROR,
        Level::WARN => abi::LEVEL_WARN,
        Level::INFO => abi::LEVEL_INFO,
        Level::DEBUG => abi::LEVEL_DEBUG,
        _ => abi::LEVEL_TRACE,
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

pub(crate) fn send(plugin: &str, level: u32, target: &str, message: &str) {
    if let Some(h) = crate::host() {
        // SAFETY: the table comes from the host; the strings outlive the call.
        unsafe {
            (h.log)(
                h.ctx,
                level,
                abi::Str::new(plugin),
                abi::Str::new(target),
                abi::Str::new(message),
            )
        }
    } else {
        eprintln!("{plugin}: {message}");
    }
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_code(metadata.level()) <= self.max_level
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed).max(1))
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        f.message.push_str(&f.rest);
        let meta = event.metadata();
        send(self.plugin, level_code(meta.level()), meta.target(), &f.message);
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Installs the forwarding subscriber and a panic hook that logs through the host. Idempotent.
pub(crate) fn install(plugin: &'static str) {
    let max_level = crate::host().map(|h| h.max_level).unwrap_or(abi::LEVEL_INFO);
    let sub = Forwarder {
        plugin,
        max_level,
        next_span: AtomicU64::new(1),
    };
    if tracing::subscriber::set_global_default(sub).is_err() {
        return; // already installed by an earlier init in this process
    }
    std::panic::set_hook(Box::new(move |info| {
        let msg = crate::run::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        send(plugin, abi::LEVEL_ERROR, "panic", &format!("panicked{at}: {msg}"));
    }));
}
