//! Plugin settings: defined in init, read in init and in workers.
//!
//! Runs in: a plugin. Values cross the ABI as canonical text (see [`crate::abi::SettingDef`]); the
//! host validates the operator's value against the definition, so parsing here only fails if the
//! caller asks for the wrong type.

use std::time::Duration;

use crate::abi;

/// Why a setting could not be defined or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("setting {0:?} is not a valid name")]
    BadName(String),
    #[error("setting {0:?} is defined twice")]
    Duplicate(String),
    #[error("setting {0:?} is not defined by this plugin")]
    NotFound(String),
    #[error("setting {name:?}: {reason}")]
    BadValue { name: String, reason: String },
    #[error("setting {0:?}: settings can only be defined during init")]
    Frozen(String),
    #[error("setting {name:?}: value {value:?} is not a {wanted}")]
    WrongType {
        name: String,
        value: String,
        wanted: &'static str,
    },
    #[error("setting {0:?}: invalid definition (bounds, choices, or a default outside them)")]
    BadDefinition(String),
    #[error("setting {name:?}: the host refused (status {status})")]
    Other { name: String, status: i32 },
}

pub(crate) enum Def<'a> {
    Bool(bool),
    Int(i64, std::ops::RangeInclusive<i64>),
    String(&'a str),
    Duration(Duration),
    Enum(&'a str, &'a [&'a str]),
}

/// A Rust type a setting can be read as.
pub trait SettingValue: Sized {
    const WANTED: &'static str;
    fn from_canonical(s: &str) -> Option<Self>;
}

impl SettingValue for bool {
    const WANTED: &'static str = "bool";
    fn from_canonical(s: &str) -> Option<bool> {
        match s {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

impl SettingValue for i64 {
    const WANTED: &'static str = "integer";
    fn from_canonical(s: &str) -> Option<i64> {
        s.parse().ok()
    }
}

impl SettingValue for String {
    const WANTED: &'static str = "string";
    fn from_canonical(s: &str) -> Option<String> {
        Some(s.to_owned())
    }
}

impl SettingValue for Duration {
    const WANTED: &'static str = "duration";
    fn from_canonical(s: &str) -> Option<Duration> {
        s.parse().ok().map(Duration::from_micros)
    }
}

fn map_status(name: &str, st: abi::Status, value: &str) -> SettingError {
    match st {
        abi::STATUS_BAD_NAME => SettingError::BadName(name.to_owned()),
        abi::STATUS_DUPLICATE => SettingError::Duplicate(name.to_owned()),
        abi::STATUS_NOT_FOUND => SettingError::NotFound(name.to_owned()),
        abi::STATUS_FROZEN => SettingError::Frozen(name.to_owned()),
        abi::STATUS_BAD_VALUE | abi::STATUS_INVALID => SettingError::BadValue {
            name: name.to_owned(),
            reason: value.to_owned(),
        },
        status => SettingError::Other {
            name: name.to_owned(),
            status,
        },
    }
}

/// Calls a host function that fills a caller-owned buffer, growing it once if it was too small.
fn with_buffer(mut call: impl FnMut(*mut u8, usize, *mut usize) -> abi::Status) -> (abi::Status, String) {
    let mut buf = vec![0u8; 256];
    for _ in 0..2 {
        let mut len = 0usize;
        let st = call(buf.as_mut_ptr(), buf.len(), &mut len);
        if st == abi::STATUS_BUFFER_TOO_SMALL && len > buf.len() {
            buf.resize(len, 0);
            continue;
        }
        let len = len.min(buf.len());
        return (st, String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    (abi::STATUS_BUFFER_TOO_SMALL, String::new())
}

fn parse<T: SettingValue>(name: &str, value: String) -> Result<T, SettingError> {
    T::from_canonical(&value).ok_or(SettingError::WrongType {
        name: name.to_owned(),
        value,
        wanted: T::WANTED,
    })
}

pub(crate) fn define<T: SettingValue>(
    host: &abi::HostApi,
    plugin: &str,
    name: &str,
    def: Def<'_>,
    description: &str,
    reloadable: bool,
) -> Result<T, SettingError> {
    let (kind, default, min, max, choices): (u32, String, i64, i64, Vec<abi::Str>) = match &def {
        Def::Bool(b) => (abi::SETTING_BOOL, b.to_string(), 0, 0, vec![]),
        Def::Int(d, r) => (abi::SETTING_INT, d.to_string(), *r.start(), *r.end(), vec![]),
        Def::String(s) => (abi::SETTING_STRING, (*s).to_owned(), 0, 0, vec![]),
        Def::Duration(d) => (abi::SETTING_DURATION, d.as_micros().to_string(), 0, i64::MAX, vec![]),
        Def::Enum(d, c) => (
            abi::SETTING_ENUM,
            (*d).to_owned(),
            0,
            0,
            c.iter().map(|s| abi::Str::new(s)).collect(),
        ),
    };
    let sd = abi::SettingDef {
        name: abi::Str::new(name),
        kind,
        reloadable: reloadable as u32,
        default: abi::Str::new(&default),
        min,
        max,
        choices: choices.as_ptr(),
        n_choices: choices.len(),
        description: abi::Str::new(description),
    };
    let (st, value) = with_buffer(|buf, cap, len| {
        // SAFETY: the table comes from the host; every pointer outlives the call.
        unsafe { (host.define_setting)(host.ctx, abi::Str::new(plugin), &sd, buf, cap, len) }
    });
    if st == abi::STATUS_INVALID {
        return Err(SettingError::BadDefinition(name.to_owned()));
    }
    if st != abi::STATUS_OK {
        return Err(map_status(name, st, &value));
    }
    parse(name, value)
}

pub(crate) fn get<T: SettingValue>(host: &abi::HostApi, plugin: &str, name: &str) -> Result<T, SettingError> {
    let (st, value) = with_buffer(|buf, cap, len| {
        // SAFETY: the table comes from the host; every pointer outlives the call.
        unsafe { (host.get_setting)(host.ctx, abi::Str::new(plugin), abi::Str::new(name), buf, cap, len) }
    });
    if st != abi::STATUS_OK {
        return Err(map_status(name, st, &value));
    }
    parse(name, value)
}
