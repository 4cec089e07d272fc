//! The `[[listen]]` tables of the config file (issue 15: connections): where the host accepts
//! clients for a plugin's connection handler, parsed raw and then validated.
//!
//! Runs in: the supervisor (and `steward check`), as part of [`crate::shared::config`]; children
//! get the validated list in the configuration they are given.
//!
//! Invariants of a validated [`Listener`]: exactly one of a Unix socket path (absolute, resolved
//! against the config file's directory, at most `sun_path` long, no control characters) or a
//! TCP address written as `ip:port` (never a host name: the host binds the address given, and
//! resolving a name at start-up would make it depend on DNS); a Unix mode that grants its owner
//! read and write and nothing past `0777`; `1 <= max_connections <= max_client_connections`; no
//! two listeners on the same address (two Unix listeners on one path, whatever their modes), and
//! no Unix listener at the control socket's path. What needs the OS (the directory's owner, a socket already
//! there, the port in use) is checked when the supervisor binds ([`crate::supervisor`]), and
//! whether the handler exists once plugins are loaded ([`crate::shared::preload`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::shared::config::{ConfigError, MAX_SOCKET_PATH};

/// One `[[listen]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub handler: Option<String>,
    pub unix: Option<String>,
    /// Octal, as a string (`"0660"`) or an integer written in octal (`0o660`).
    pub mode: Option<toml::Value>,
    pub tcp: Option<String>,
    pub max_connections: Option<i64>,
}

/// Where a listener accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenAddr {
    Unix { path: PathBuf, mode: u32 },
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// Whether two addresses are one socket: one path (whatever the modes), or one TCP address.
    fn same_place(&self, other: &ListenAddr) -> bool {
        match (self, other) {
            (ListenAddr::Unix { path: a, .. }, ListenAddr::Unix { path: b, .. }) => a == b,
            (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix { path, .. } => write!(f, "unix {}", path.display()),
            ListenAddr::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}

/// A validated listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The registering plugin and the handler's name (`handler = "plugin.name"`).
    pub plugin: String,
    pub handler: String,
    pub addr: ListenAddr,
    /// Most clients served at once through this listener.
    pub max_connections: u32,
}

impl Listener {
    /// `listen[i] (unix /path)`, as errors and log lines name a listener.
    pub fn describe(&self, i: usize) -> String {
        format!("listen[{i}] ({})", self.addr)
    }
}

/// The default mode of a Unix listener's socket: the host's user and its group.
pub const DEFAULT_MODE: u32 = 0o660;

/// Validates the file's `[[listen]]` tables. `key` names a table in errors (`listen[0]`);
/// `resolve` makes a path absolute against the config file's directory; no listener may be at
/// `control_socket`, the control socket's path.
pub fn validate(
    file: &std::path::Path,
    raw: Vec<RawListen>,
    max_client_connections: u32,
    control_socket: &std::path::Path,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<Vec<Listener>, ConfigError> {
    let mut out: Vec<Listener> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let err = |field: &str, reason: String| ConfigError::new(file, Some(&format!("listen[{i}].{field}")), reason);
        let handler = r.handler.ok_or_else(|| {
            err(
                "handler",
                "missing: name the plugin's handler as \"plugin.name\"".into(),
            )
        })?;
        let Some((plugin, name)) = handler.split_once('.').filter(|(p, n)| !p.is_empty() && !n.is_empty()) else {
            return Err(err("handler", format!("{handler:?} is not \"plugin.name\"")));
        };
        let addr = match (r.unix, r.tcp) {
            (Some(_), Some(_)) => {
                return Err(err("unix", "a listener has either unix or tcp, not both".into()));
            }
            (None, None) => {
                return Err(err("unix", "missing: give unix = \"path\" or tcp = \"ip:port\"".into()));
            }
            (Some(p), None) => {
                if p.is_empty() || p.chars().any(char::is_control) {
                    return Err(err("unix", format!("{p:?} is not a socket path")));
                }
                let path = resolve(&p);
                let len = path.as_os_str().len();
                if len > MAX_SOCKET_PATH {
                    return Err(err(
                        "unix",
                        format!(
                            "{} is {len} bytes; the OS allows at most {MAX_SOCKET_PATH}",
                            path.display()
                        ),
                    ));
                }
                let mode = match r.mode {
                    None => DEFAULT_MODE,
                    Some(v) => parse_mode(&v).map_err(|reason| err("mode", reason))?,
                };
                ListenAddr::Unix { path, mode }
            }
            (None, Some(t)) => {
                if r.mode.is_some() {
                    return Err(err("mode", "only a unix listener has a mode".into()));
                }
                let a: SocketAddr = t.parse().map_err(|_| {
                    err(
                        "tcp",
                        format!(
                            "{t:?} is not an address like \"127.0.0.1:7000\" (an IP address and a port; no host names)"
                        ),
                    )
                })?;
                if a.port() == 0 {
                    return Err(err("tcp", format!("{t:?}: give a port (0 would pick one at random)")));
                }
                ListenAddr::Tcp(a)
            }
        };
        let max = r.max_connections.unwrap_or(max_client_connections as i64);
        if max < 1 || max > max_client_connections as i64 {
            return Err(err(
                "max_connections",
                format!("{max} is out of range (1 to host.max_client_connections = {max_client_connections})"),
            ));
        }
        if let ListenAddr::Unix { path, .. } = &addr {
            if path == control_socket {
                return Err(err(
                    "unix",
                    format!(
                        "{} is the control socket's path (in host.runtime_dir); give the listener a path of its own",
                        path.display()
                    ),
                ));
            }
        }
        // One path is one socket, whatever the modes say.
        if let Some(j) = out.iter().position(|o| o.addr.same_place(&addr)) {
            return Err(err(
                if matches!(addr, ListenAddr::Unix { .. }) {
                    "unix"
                } else {
                    "tcp"
                },
                format!("{addr} is listen[{j}]'s address too"),
            ));
        }
        out.push(Listener {
            plugin: plugin.to_owned(),
            handler: name.to_owned(),
            addr,
            max_connections: max as u32,
        });
    }
    Ok(out)
}

/// A Unix socket's mode: octal digits in a string, or an integer (TOML's `0o660`); the owner
/// must keep read and write (the host's own `status` checks connect as it), nothing past `0777`.
fn parse_mode(v: &toml::Value) -> Result<u32, String> {
    let m = match v {
        toml::Value::String(s) if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) => {
            u32::from_str_radix(s, 8).map_err(|e| e.to_string())?
        }
        toml::Value::Integer(n) if (0..=0o7777).contains(n) => *n as u32,
        other => return Err(format!("{other} is not an octal mode like \"0660\"")),
    };
    if m > 0o777 {
        return Err(format!(
            "{m:04o} has setuid, setgid or sticky bits; a socket's mode is at most 0777"
        ));
    }
    if m & 0o600 != 0o600 {
        return Err(format!(
            "{m:04o} does not let the host's own user read and write the socket"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/steward/steward.toml"), text)
    }

    #[test]
    fn a_unix_and_a_tcp_listener_are_validated() {
        let c = parse(
            "[[listen]]\nhandler = \"kv.serve\"\nunix = \"kv.sock\"\nmode = \"0600\"\n\
             [[listen]]\nhandler = \"kv.serve\"\ntcp = \"127.0.0.1:7000\"\nmax_connections = 5\n",
        )
        .unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(
            c.listeners[0].addr,
            ListenAddr::Unix {
                path: "/etc/steward/kv.sock".into(),
                mode: 0o600
            }
        );
        assert_eq!(c.listeners[0].max_connections, c.max_client_connections);
        assert_eq!(c.listeners[1].max_connections, 5);
        assert_eq!(
            (c.listeners[1].plugin.as_str(), c.listeners[1].handler.as_str()),
            ("kv", "serve")
        );
    }

    #[test]
    fn bad_listeners_are_named_with_the_table_and_the_reason() {
        let cases = [
            (
                "handler = \"kv\"\nunix = \"a\"\n",
                "listen[0].handler",
                "not \"plugin.name\"",
            ),
            ("unix = \"a\"\n", "listen[0].handler", "missing"),
            ("handler = \"kv.s\"\n", "listen[0].unix", "missing"),
            (
                "handler = \"kv.s\"\nunix = \"a\"\ntcp = \"127.0.0.1:1\"\n",
                "listen[0].unix",
                "not both",
            ),
            (
                "handler = \"kv.s\"\nunix = \"a\"\nmode = \"0999\"\n",
                "listen[0].mode",
                "octal",
            ),
            (
                "handler = \"kv.s\"\nunix = \"a\"\nmode = \"0066\"\n",
                "listen[0].mode",
                "read and write",
            ),
            (
                "handler = \"kv.s\"\nunix = \"a\"\nmode = \"4660\"\n",
                "listen[0].mode",
                "setuid",
            ),
            (
                "handler = \"kv.s\"\ntcp = \"localhost:80\"\n",
                "listen[0].tcp",
                "no host names",
            ),
            (
                "handler = \"kv.s\"\ntcp = \"127.0.0.1:0\"\n",
                "listen[0].tcp",
                "give a port",
            ),
            (
                "handler = \"kv.s\"\ntcp = \"127.0.0.1:1\"\nmode = \"0600\"\n",
                "listen[0].mode",
                "only a unix",
            ),
            (
                "handler = \"kv.s\"\ntcp = \"127.0.0.1:1\"\nmax_connections = 0\n",
                "listen[0].max_connections",
                "out of range",
            ),
            (
                "handler = \"kv.s\"\ntcp = \"127.0.0.1:1\"\nport = 3\n",
                "",
                "unknown field `port`",
            ),
        ];
        for (table, key, reason) in cases {
            let e = parse(&format!("[[listen]]\n{table}")).unwrap_err();
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{table}: {e}");
            }
            assert!(e.to_string().contains(reason), "{table}: {e}");
        }
        let e = parse("[[listen]]\nhandler = \"kv.s\"\ntcp = \"127.0.0.1:1\"\n[[listen]]\nhandler = \"kv.t\"\ntcp = \"127.0.0.1:1\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("listen[1].tcp"));
        assert!(e.to_string().contains("listen[0]'s address too"), "{e}");
        let e = parse(
            "[[listen]]\nhandler = \"kv.s\"\nunix = \"kv.sock\"\n[[listen]]\nhandler = \"kv.t\"\nunix = \"./kv.sock\"\nmode = \"0600\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("listen[1].unix"), "{e}");
        assert!(e.to_string().contains("listen[0]'s address too"), "{e}");
        let e = parse(
            "[host]\nruntime_dir = \"/run/st\"\n[[listen]]\nhandler = \"kv.s\"\nunix = \"/run/st/../st/steward.sock\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("listen[0].unix"), "{e}");
        assert!(e.to_string().contains("is the control socket's path"), "{e}");
        let e = parse("[host]\nmax_client_connections = 10\n[[listen]]\nhandler = \"kv.s\"\ntcp = \"127.0.0.1:1\"\nmax_connections = 11\n")
            .unwrap_err();
        assert!(e.to_string().contains("max_client_connections = 10"), "{e}");
    }
}
