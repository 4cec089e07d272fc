//! Connection handlers in the registry (issue 15: connections).
//!
//! Runs in: the supervisor during preload (registration), and every child that reads the frozen
//! registry (a client child finds its handler's entry here).
//!
//! Invariant: a handler is known by `(plugin, name)`, unique within its plugin; its entries
//! are checked as C identifiers at registration, and resolved as Steward entries of the right
//! kind after the last init (`preload`), so a listener never names a handler that cannot run.

use serde::{Deserialize, Serialize};
use steward::abi;

use super::{function_ok, ident_ok, Registry, RegistryError};

/// A connection handler a plugin registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerSpec {
    pub plugin: String,
    pub name: String,
    /// The library holding the entries (the registering plugin unless it named another).
    pub library: String,
    pub function: String,
    /// The rejection writer, if the handler has one.
    pub reject: Option<String>,
    // issue 15: isolated handlers
    /// Its client children map the segment read-only and crash alone (see
    /// [`crate::shared::handoff::StartupData::isolated`]).
    #[serde(default)]
    pub isolated: bool,
}

impl Registry {
    /// Validates and records a connection handler.
    pub fn add_handler(&mut self, h: HandlerSpec) -> Result<(), RegistryError> {
        self.check_open("connection handler", &h.name, abi::MAX_NAME_LEN)?;
        if h.name.contains('.') {
            return Err(RegistryError::BadName(format!(
                "connection handler {:?}: a listener names it \"plugin.name\", so the name has no '.'",
                h.name
            )));
        }
        let reject_ok = h.reject.as_deref().is_none_or(function_ok);
        if !ident_ok(&h.library, abi::MAX_LIBRARY_LEN) || !function_ok(&h.function) || !reject_ok {
            return Err(RegistryError::Invalid(format!(
                "connection handler entry {:?}/{:?}",
                h.library, h.function
            )));
        }
        if self.handlers.iter().any(|o| o.plugin == h.plugin && o.name == h.name) {
            return Err(RegistryError::Duplicate(format!(
                "connection handler {:?} of plugin {}",
                h.name, h.plugin
            )));
        }
        self.handlers.push(h);
        Ok(())
    }

    /// The handler a listener names.
    pub fn handler(&self, plugin: &str, name: &str) -> Option<&HandlerSpec> {
        self.handlers.iter().find(|h| h.plugin == plugin && h.name == name)
    }
}
