//! The registry: what plugins registered during preload, validated, then frozen.
//!
//! Runs in: the supervisor (built during preload, frozen before the segment exists); children get
//! a copy (inherited in fork mode, in the parameter blob in exec mode).
//!
//! Invariants: names are unique across the host; once [`Registry::freeze`] ran, every
//! registration is refused with [`RegistryError::Frozen`]; every count the segment needs is
//! computed from a frozen registry only ([`crate::shared::shmem::Layout`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward::abi;

// issue 14: readiness
mod start_after;
pub use start_after::StartAfterError;
// issue 15: connections
mod handlers;
pub use handlers::HandlerSpec;

/// When a worker starts (see `steward::StartTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartTime {
    HostStart,
    Consistent,
    Running,
}

impl StartTime {
    pub fn as_str(self) -> &'static str {
        match self {
            StartTime::HostStart => "host_start",
            StartTime::Consistent => "consistent",
            StartTime::Running => "running",
        }
    }
}

/// What happens after exit code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Never,
    After(Duration),
    Backoff(Backoff),
}

/// Exponential backoff: delays from `initial`, multiplied by `factor_milli / 1000` after each
/// restart, capped at `cap`; back to `initial` once a run lasted `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial: Duration,
    pub factor_milli: u32,
    pub cap: Duration,
    pub reset_after: Duration,
}

impl Backoff {
    /// Whether registration accepts it: a factor from 1 to 100, and no delay past
    /// [`MAX_RESTART_DELAY`].
    pub fn in_bounds(&self) -> bool {
        (1000..=100_000).contains(&self.factor_milli)
            && self.initial <= self.cap
            && self.cap <= MAX_RESTART_DELAY
            && self.reset_after <= MAX_RESTART_DELAY
    }
}

/// At most `max` restarts within `window`; the next exit marks the worker `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoopLimit {
    pub max: u32,
    pub window: Duration,
}

/// The longest restart delay accepted (PostgreSQL's bound is one day, with an overflow past 24.8
/// days; ours is a plain week).
pub const MAX_RESTART_DELAY: Duration = Duration::from_micros(abi::MAX_RESTART_DELAY_US);

/// A validated background-worker registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub name: String,
    pub worker_type: String,
    /// The plugin that registered it.
    pub plugin: String,
    /// The library holding the entry (a preloaded plugin's name).
    pub library: String,
    pub function: String,
    pub start_time: StartTime,
    pub restart: RestartPolicy,
    pub crash_loop: Option<CrashLoopLimit>,
    pub arg: u64,
    pub extra: Vec<u8>,
    // issue 14: readiness
    /// The worker shows `starting` until it declares itself ready (`set_ready`).
    #[serde(default)]
    pub needs_ready: bool,
    /// The workers, by name, that must be ready before this one starts (checked at start-up by
    /// [`Registry::check_start_after`]).
    #[serde(default)]
    pub start_after: Vec<String>,
    // issue 15: isolated
    /// The worker's process maps the segment read-only and holds no dead-man flag; its crash
    /// restarts only itself.
    #[serde(default)]
    pub isolated: bool,
    // issue 14: notifications
    /// A dynamic worker terminated when the process that launched it exits (`LauncherExited`);
    /// refused for a static worker, which has no launcher.
    #[serde(default)]
    pub stop_with_launcher: bool,
}

/// A shared-memory region requested by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSpec {
    pub plugin: String,
    pub name: String,
    pub size: u64,
}

/// A startup hook: run in order in the startup child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSpec {
    pub name: String,
    pub plugin: String,
    pub library: String,
    pub function: String,
}

/// Largest single region: 1 GiB.
pub const MAX_REGION_SIZE: u64 = 1 << 30;

/// A named lock in the segment, requested by a plugin (issue 14: locks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockSpec {
    pub plugin: String,
    pub name: String,
}

/// Most locks a host holds, over all plugins: each is a cache line of the segment.
pub const MAX_LOCKS: usize = 4096;

/// Why a registration was refused; each maps to an ABI status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry frozen: registration is only possible during plugin init")]
    Frozen,
    #[error("bad name: {0}")]
    BadName(String),
    #[error("duplicate: {0}")]
    Duplicate(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

impl RegistryError {
    pub fn status(&self) -> abi::Status {
        match self {
            RegistryError::Frozen => abi::STATUS_FROZEN,
            RegistryError::BadName(_) => abi::STATUS_BAD_NAME,
            RegistryError::Duplicate(_) => abi::STATUS_DUPLICATE,
            RegistryError::Invalid(_) => abi::STATUS_INVALID,
        }
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

fn ident_ok(s: &str, max: usize) -> bool {
    name_ok(s, max) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An entry's function name: an identifier that is also a C symbol (no `-`).
fn function_ok(s: &str) -> bool {
    ident_ok(s, abi::MAX_FUNCTION_LEN) && !s.contains('-')
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Registry {
    pub workers: Vec<WorkerSpec>,
    pub regions: Vec<RegionSpec>,
    #[serde(default)]
    pub hooks: Vec<HookSpec>,
    /// Locks, in request order: lock `i` is the `i`-th cell of the segment's lock table.
    #[serde(default)]
    pub locks: Vec<LockSpec>,
    frozen: bool,
    // issue 14: segment init
    /// Segment init hooks, run in order by the startup child on every new segment before the
    /// startup hooks (a [`HookSpec`] named after its function).
    #[serde(default)]
    pub segment_inits: Vec<HookSpec>,
    /// Hashes of the workers' names while registration is open, so that a duplicate is found
    /// without comparing against every earlier worker (1000 workers made that half a million
    /// string comparisons). Hashes, not copies of the names: one table instead of a thousand
    /// small strings, which, freed at `freeze`, would leave holes all over the heap that every
    /// forked child's first allocations then write into, copying a page each time.
    #[serde(skip)]
    name_hashes: std::collections::HashSet<u64>,
    // issue 15: connections
    /// Connection handlers, by `(plugin, name)`.
    #[serde(default)]
    pub handlers: Vec<HandlerSpec>,
}

impl Registry {
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    pub fn freeze(&mut self) {
        self.frozen = true;
        self.name_hashes = Default::default();
    }

    /// What a child needs of the frozen registry: the regions, hooks and locks. Worker registrations live in the
    /// segment's worker slots, so an exec-mode child does not decode every worker's spec (which
    /// would make launching N workers cost O(N^2)).
    pub fn for_children(&self) -> Registry {
        Registry {
            workers: Vec::new(),
            regions: self.regions.clone(),
            hooks: self.hooks.clone(),
            locks: self.locks.clone(),
            frozen: true,
            name_hashes: Default::default(),
            segment_inits: self.segment_inits.clone(),
            handlers: self.handlers.clone(),
        }
    }

    /// Refuses any registration once the registry is frozen, and a `name` that is empty, longer
    /// than `max` or holds a control character; `what` says what the name is, for the error.
    fn check_open(&self, what: &str, name: &str, max: usize) -> Result<(), RegistryError> {
        if self.frozen {
            return Err(RegistryError::Frozen);
        }
        if !name_ok(name, max) {
            return Err(RegistryError::BadName(format!("{what} {name:?}")));
        }
        Ok(())
    }

    /// Validates and records a worker.
    pub fn add_worker(&mut self, w: WorkerSpec) -> Result<(), RegistryError> {
        self.check_open("worker name", &w.name, abi::MAX_NAME_LEN)?;
        validate_worker(&w)?;
        // issue 14: notifications
        if w.stop_with_launcher {
            return Err(RegistryError::Invalid(format!(
                "worker {:?}: stop_with_launcher is for dynamic workers (a static worker has no launcher)",
                w.name
            )));
        }
        // A hash seen before is a duplicate only if the names really match.
        if !self.name_hashes.insert(name_hash(&w.name)) && self.workers.iter().any(|o| o.name == w.name) {
            return Err(RegistryError::Duplicate(format!("worker {:?}", w.name)));
        }
        self.workers.push(w);
        Ok(())
    }

    /// Validates and records a startup hook.
    pub fn add_hook(&mut self, h: HookSpec) -> Result<(), RegistryError> {
        self.check_open("startup hook", &h.name, abi::MAX_NAME_LEN)?;
        if !ident_ok(&h.library, abi::MAX_LIBRARY_LEN) || !function_ok(&h.function) {
            return Err(RegistryError::Invalid(format!(
                "startup hook entry {:?}/{:?}",
                h.library, h.function
            )));
        }
        if self.hooks.iter().any(|o| o.name == h.name) {
            return Err(RegistryError::Duplicate(format!("startup hook {:?}", h.name)));
        }
        self.hooks.push(h);
        Ok(())
    }

    // issue 14: segment init
    /// Validates and records a segment init hook.
    pub fn add_segment_init(&mut self, h: HookSpec) -> Result<(), RegistryError> {
        self.check_open("segment init hook", &h.name, abi::MAX_NAME_LEN)?;
        if !ident_ok(&h.library, abi::MAX_LIBRARY_LEN) || !function_ok(&h.function) {
            return Err(RegistryError::Invalid(format!(
                "segment init hook entry {:?}/{:?}",
                h.library, h.function
            )));
        }
        if self
            .segment_inits
            .iter()
            .any(|o| o.library == h.library && o.function == h.function)
        {
            return Err(RegistryError::Duplicate(format!(
                "segment init hook {:?}/{:?}",
                h.library, h.function
            )));
        }
        self.segment_inits.push(h);
        Ok(())
    }

    /// Validates and records a region request.
    pub fn add_region(&mut self, r: RegionSpec) -> Result<(), RegistryError> {
        self.check_open("region", &r.name, abi::MAX_REGION_NAME_LEN)?;
        if r.size == 0 || r.size > MAX_REGION_SIZE {
            return Err(RegistryError::Invalid(format!("region {:?} size {}", r.name, r.size)));
        }
        if self.regions.iter().any(|o| o.plugin == r.plugin && o.name == r.name) {
            return Err(RegistryError::Duplicate(format!("region {:?}", r.name)));
        }
        self.regions.push(r);
        Ok(())
    }

    /// Validates and records a lock request: lock names are per plugin, as region names are.
    pub fn add_lock(&mut self, l: LockSpec) -> Result<(), RegistryError> {
        if self.frozen {
            return Err(RegistryError::Frozen);
        }
        if !name_ok(&l.name, abi::MAX_LOCK_NAME_LEN) {
            return Err(RegistryError::BadName(format!(
                "lock {:?} of plugin {}: empty, longer than {} bytes, or with a control character",
                l.name,
                l.plugin,
                abi::MAX_LOCK_NAME_LEN
            )));
        }
        if self.locks.iter().any(|o| o.plugin == l.plugin && o.name == l.name) {
            return Err(RegistryError::Duplicate(format!(
                "lock {:?} of plugin {} is requested twice",
                l.name, l.plugin
            )));
        }
        if self.locks.len() >= MAX_LOCKS {
            return Err(RegistryError::Invalid(format!(
                "lock {:?} of plugin {}: the host holds at most {MAX_LOCKS} locks",
                l.name, l.plugin
            )));
        }
        self.locks.push(l);
        Ok(())
    }
}

/// Setting kinds (mirrors the ABI's `SETTING_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingKind {
    Bool,
    Int { min: i64, max: i64 },
    String,
    Duration { min_us: i64, max_us: i64 },
    Enum(Vec<String>),
}

/// A setting a plugin defined, with its current value in canonical text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub kind: SettingKind,
    pub reloadable: bool,
    pub default: String,
    pub value: String,
    pub description: String,
}

impl Setting {
    /// `text` (the value or the default, in canonical form) as the operator writes it: a
    /// duration, canonically a count of microseconds, as "2s" or "1500ms"; anything else as is.
    pub fn shown(&self, text: &str) -> String {
        match (&self.kind, text.parse::<u64>()) {
            (SettingKind::Duration { .. }, Ok(us)) => {
                crate::shared::time::format_duration(std::time::Duration::from_micros(us))
            }
            _ => text.to_owned(),
        }
    }
}

/// Every plugin's settings, keyed by (plugin, name). Serialised as a list (JSON maps need string
/// keys) for the exec-mode parameter blob.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "Vec<(String, String, Setting)>", from = "Vec<(String, String, Setting)>")]
pub struct Settings {
    pub map: BTreeMap<(String, String), Setting>,
}

impl From<Settings> for Vec<(String, String, Setting)> {
    fn from(s: Settings) -> Self {
        s.map.into_iter().map(|((p, n), v)| (p, n, v)).collect()
    }
}

impl From<Vec<(String, String, Setting)>> for Settings {
    fn from(v: Vec<(String, String, Setting)>) -> Self {
        Settings {
            map: v.into_iter().map(|(p, n, s)| ((p, n), s)).collect(),
        }
    }
}

impl SettingKind {
    /// Whether `s` is a valid canonical value of this kind (checks a plugin's own default).
    pub fn accepts_canonical(&self, s: &str) -> bool {
        match self {
            SettingKind::Bool => s == "true" || s == "false",
            SettingKind::Int { min, max } => s.parse::<i64>().is_ok_and(|n| n >= *min && n <= *max),
            SettingKind::String => true,
            SettingKind::Duration { min_us, max_us } => s.parse::<i64>().is_ok_and(|n| n >= *min_us && n <= *max_us),
            SettingKind::Enum(choices) => choices.iter().any(|c| c == s),
        }
    }

    /// Turns the operator's TOML value into canonical text, or says why it does not fit.
    pub fn canonical(&self, v: &toml::Value) -> Result<String, String> {
        match (self, v) {
            (SettingKind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
            (SettingKind::Bool, other) => Err(format!("expected true or false, got {other}")),
            (SettingKind::Int { min, max }, toml::Value::Integer(n)) => {
                if n < min || n > max {
                    Err(format!("{n} is out of range ({min} to {max})"))
                } else {
                    Ok(n.to_string())
                }
            }
            (SettingKind::Int { .. }, other) => Err(format!("expected an integer, got {other}")),
            (SettingKind::String, toml::Value::String(s)) => Ok(s.clone()),
            (SettingKind::String, other) => Err(format!("expected a string, got {other}")),
            (SettingKind::Duration { min_us, max_us }, v) => {
                let d = crate::shared::config::toml_duration(v)?;
                let us = d.as_micros().min(i64::MAX as u128) as i64;
                if us < *min_us || us > *max_us {
                    return Err(format!("{} is out of range", crate::shared::time::format_duration(d)));
                }
                Ok(us.to_string())
            }
            (SettingKind::Enum(choices), toml::Value::String(s)) => {
                if choices.iter().any(|c| c == s) {
                    Ok(s.clone())
                } else {
                    Err(format!("{s:?} is not one of {}", choices.join(", ")))
                }
            }
            (SettingKind::Enum(choices), other) => Err(format!("expected one of {}, got {other}", choices.join(", "))),
        }
    }
}

// issue 14: dynamic workers
/// Checks one registration on its own (everything but the registry's duplicate check): the
/// same rules for a static worker registered in init and for a dynamic worker's request, which
/// the supervisor decodes from untrusted shared memory and checks again here.
pub fn validate_worker(w: &WorkerSpec) -> Result<(), RegistryError> {
    if !name_ok(&w.name, abi::MAX_NAME_LEN) {
        return Err(RegistryError::BadName(format!("worker name {:?}", w.name)));
    }
    if !name_ok(&w.worker_type, abi::MAX_TYPE_LEN) {
        return Err(RegistryError::BadName(format!("worker type {:?}", w.worker_type)));
    }
    if !ident_ok(&w.library, abi::MAX_LIBRARY_LEN) {
        return Err(RegistryError::Invalid(format!("library {:?}", w.library)));
    }
    if !function_ok(&w.function) {
        return Err(RegistryError::Invalid(format!("function {:?}", w.function)));
    }
    if w.extra.len() > abi::EXTRA_LEN {
        return Err(RegistryError::Invalid(format!("extra is {} bytes", w.extra.len())));
    }
    match w.restart {
        RestartPolicy::After(d) if d > MAX_RESTART_DELAY => {
            return Err(RegistryError::Invalid(format!(
                "restart delay {d:?} is longer than a week"
            )));
        }
        RestartPolicy::Backoff(b) if !b.in_bounds() => {
            return Err(RegistryError::Invalid("backoff policy out of range".into()));
        }
        _ => {}
    }
    if let Some(l) = w.crash_loop {
        if l.max == 0 || l.window.is_zero() || l.window > MAX_RESTART_DELAY {
            return Err(RegistryError::Invalid("crash-loop limit out of range".into()));
        }
    }
    if w.start_after.len() > abi::MAX_START_AFTER {
        return Err(RegistryError::Invalid(format!(
            "worker {:?} starts after {} workers; at most {}",
            w.name,
            w.start_after.len(),
            abi::MAX_START_AFTER
        )));
    }
    for t in &w.start_after {
        if !name_ok(t, abi::MAX_NAME_LEN) {
            return Err(RegistryError::BadName(format!(
                "start_after {t:?} of worker {:?}",
                w.name
            )));
        }
        if *t == w.name {
            return Err(RegistryError::Invalid(format!(
                "worker {:?} starts after itself",
                w.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn spec(name: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            worker_type: "t".into(),
            plugin: "p".into(),
            library: "p".into(),
            function: "main_loop".into(),
            start_time: StartTime::Running,
            restart: RestartPolicy::After(Duration::from_secs(1)),
            crash_loop: None,
            arg: 0,
            extra: vec![],
            needs_ready: false,
            isolated: false,
            start_after: vec![],
            stop_with_launcher: false,
        }
    }

    fn lock(plugin: &str, name: &str) -> LockSpec {
        LockSpec {
            plugin: plugin.into(),
            name: name.into(),
        }
    }

    #[test]
    fn lock_requests_are_checked_per_plugin_and_refused_after_the_freeze() {
        let mut r = Registry::default();
        r.add_lock(lock("p", "counter")).unwrap();
        // The same name in another plugin is another lock.
        r.add_lock(lock("q", "counter")).unwrap();
        let dup = r.add_lock(lock("p", "counter")).unwrap_err();
        assert_eq!(dup.status(), abi::STATUS_DUPLICATE);
        assert!(dup.to_string().contains("\"counter\" of plugin p"), "{dup}");
        for bad in ["", "a\nb", &"x".repeat(abi::MAX_LOCK_NAME_LEN + 1)] {
            let e = r.add_lock(lock("p", bad)).unwrap_err();
            assert_eq!(e.status(), abi::STATUS_BAD_NAME, "{bad:?}");
            assert!(e.to_string().contains("plugin p"), "{e}");
        }
        for i in r.locks.len()..MAX_LOCKS {
            r.add_lock(lock("many", &format!("l{i}"))).unwrap();
        }
        let full = r.add_lock(lock("p", "one-too-many")).unwrap_err();
        assert_eq!(full.status(), abi::STATUS_INVALID);
        assert_eq!(r.for_children().locks.len(), MAX_LOCKS);
        r.freeze();
        assert_eq!(r.add_lock(lock("p", "late")), Err(RegistryError::Frozen));
    }

    // issue 14: notifications
    #[test]
    fn a_static_worker_refuses_stop_with_launcher_naming_it() {
        let mut r = Registry::default();
        let w = WorkerSpec {
            stop_with_launcher: true,
            ..spec("orphan")
        };
        let e = r.add_worker(w).unwrap_err();
        assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
        assert!(
            e.to_string()
                .contains("\"orphan\": stop_with_launcher is for dynamic workers"),
            "{e}"
        );
        assert!(r.workers.is_empty());
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut r = Registry::default();
        r.add_worker(spec("a")).unwrap();
        assert!(matches!(r.add_worker(spec("a")), Err(RegistryError::Duplicate(_))));
    }

    #[test]
    fn frozen_registry_refuses_everything() {
        let mut r = Registry::default();
        r.freeze();
        assert_eq!(r.add_worker(spec("a")), Err(RegistryError::Frozen));
        let region = RegionSpec {
            plugin: "p".into(),
            name: "r".into(),
            size: 8,
        };
        assert_eq!(r.add_region(region), Err(RegistryError::Frozen));
        assert_eq!(RegistryError::Frozen.status(), abi::STATUS_FROZEN);
    }

    #[test]
    fn bad_names_and_entries_are_refused() {
        let mut r = Registry::default();
        assert!(matches!(r.add_worker(spec("")), Err(RegistryError::BadName(_))));
        assert!(matches!(
            r.add_worker(spec(&"x".repeat(64))),
            Err(RegistryError::BadName(_))
        ));
        let mut s = spec("b");
        s.function = "not a symbol".into();
        assert!(matches!(r.add_worker(s), Err(RegistryError::Invalid(_))));
        let mut s = spec("c");
        s.extra = vec![0; abi::EXTRA_LEN + 1];
        assert!(matches!(r.add_worker(s), Err(RegistryError::Invalid(_))));
    }

    #[test]
    fn setting_values_are_checked_against_their_kind() {
        let int = SettingKind::Int { min: 1, max: 10 };
        assert_eq!(int.canonical(&toml::Value::Integer(3)), Ok("3".into()));
        assert!(int.canonical(&toml::Value::Integer(11)).is_err());
        assert!(int.canonical(&toml::Value::String("3".into())).is_err());
        let dur = SettingKind::Duration {
            min_us: 0,
            max_us: i64::MAX,
        };
        assert_eq!(dur.canonical(&toml::Value::String("2s".into())), Ok("2000000".into()));
        let e = SettingKind::Enum(vec!["a".into(), "b".into()]);
        assert!(e.canonical(&toml::Value::String("c".into())).is_err());
        assert!(int.accepts_canonical("10") && !int.accepts_canonical("11") && !int.accepts_canonical("x"));
        assert!(e.accepts_canonical("a") && !e.accepts_canonical("c"));
    }
}
