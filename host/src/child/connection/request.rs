//! Parsing one request line of the control protocol.
//!
//! Runs in: connection children. Every byte of a request comes from a client, so parsing is
//! strict and an error message quotes the client's value only bounded.

use serde_json::Value;

use crate::shared::control::{StopMode, PROTOCOL_VERSION};

/// A request the server understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Stop(StopMode),
    /// `config`: the file the client means (canonical path), which must be the host's.
    Reload {
        config: Option<String>,
    },
    /// `name`: one setting, or every setting under a prefix (`host`, `plugins.hello`).
    Show {
        name: Option<String>,
    },
    // issue 14: control
    /// Launch a dynamic worker of a preloaded plugin (see [`super::launch`]).
    Launch(LaunchRequest),
    /// Stop the live worker `name` for good; with `wait`, until it stopped.
    Terminate {
        name: String,
        wait: Option<std::time::Duration>,
    },
}

// issue 14: control
/// `{"cmd": "launch", "plugin", "entry", "name", "arg", "restart", "wait", "timeout_ms"}`.
#[derive(Debug, PartialEq, Eq)]
pub struct LaunchRequest {
    pub plugin: String,
    /// The entry function's name in the plugin's library.
    pub entry: String,
    pub name: String,
    pub arg: u64,
    /// `never` (the default) or a duration, as the config writes one.
    pub restart: Option<std::time::Duration>,
    /// Wait up to this long for the entry to run (or the worker to stop); `None`: do not wait.
    pub wait: Option<std::time::Duration>,
}

/// The longest a client may ask a connection child to wait: an hour (a longer wait is a
/// mistake, and holds a connection slot meanwhile).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long `wait` waits when the client gives no `timeout_ms`.
pub const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses one request line, or returns the error line to send back.
///
/// Strict on purpose: a field of the wrong type is refused with its own message instead of being
/// read as absent, so a request never does something its sender did not ask for (a `mode` of `5`
/// is not a fast stop).
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("malformed request: expected a JSON object".into());
    };
    match obj.get("v") {
        None => return Err("malformed request: missing protocol version \"v\"".into()),
        Some(v) => match v.as_u64() {
            Some(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "unsupported protocol version {other}; this host speaks {PROTOCOL_VERSION}"
                ))
            }
            None => {
                return Err(format!(
                "malformed request: protocol version \"v\" must be a whole number such as {PROTOCOL_VERSION}, not {}",
                shown(v)
            ))
            }
        },
    }
    let cmd = match obj.get("cmd") {
        None => return Err("malformed request: missing \"cmd\"".into()),
        Some(Value::String(c)) => c.as_str(),
        Some(other) => {
            return Err(format!(
                "malformed request: \"cmd\" must be a string, not {}",
                shown(other)
            ))
        }
    };
    match cmd {
        "status" => Ok(Request::Status),
        "reload" => Ok(Request::Reload {
            config: optional_string(obj, "config")?,
        }),
        "show" => Ok(Request::Show {
            name: optional_string(obj, "name")?,
        }),
        "stop" => {
            let mode = match obj.get("mode") {
                None => "fast",
                Some(Value::String(m)) => m.as_str(),
                Some(other) => {
                    return Err(format!(
                        "malformed request: stop \"mode\" must be one of the strings \"smart\", \"fast\" or \"immediate\", not {}",
                        shown(other)
                    ))
                }
            };
            StopMode::parse(mode)
                .map(Request::Stop)
                .ok_or_else(|| format!("unknown stop mode {mode:?} (use smart, fast or immediate)"))
        }
        // issue 14: control
        "launch" => {
            let restart = match optional_string(obj, "restart")?.as_deref() {
                None | Some("never") => None,
                Some(d) => Some(
                    crate::shared::time::parse_duration(d)
                        .map_err(|e| format!("malformed request: \"restart\" must be \"never\" or a duration: {e}"))?,
                ),
            };
            Ok(Request::Launch(LaunchRequest {
                plugin: required_string(obj, "plugin")?,
                entry: required_string(obj, "entry")?,
                name: required_string(obj, "name")?,
                arg: optional_u64(obj, "arg")?.unwrap_or(0),
                restart,
                wait: wait_of(obj)?,
            }))
        }
        "terminate" => Ok(Request::Terminate {
            name: required_string(obj, "name")?,
            wait: wait_of(obj)?,
        }),
        other => Err(format!("unknown command {other:?}")),
    }
}

// issue 14: control
/// A string field the command needs.
fn required_string(obj: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    optional_string(obj, key)?.ok_or_else(|| format!("malformed request: missing \"{key}\""))
}

/// An optional whole number: absent or null is `None`; any other type is refused.
fn optional_u64(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            format!(
                "malformed request: \"{key}\" must be a whole number from 0 to {}, not {}",
                u64::MAX,
                shown(v)
            )
        }),
    }
}

/// `wait` (a boolean, default false) and `timeout_ms` (default [`DEFAULT_WAIT`], at most
/// [`MAX_WAIT`]), as how long to wait, if at all.
fn wait_of(obj: &serde_json::Map<String, Value>) -> Result<Option<std::time::Duration>, String> {
    let wait = match obj.get("wait") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "malformed request: \"wait\" must be true or false, not {}",
                shown(other)
            ))
        }
    };
    let timeout = optional_u64(obj, "timeout_ms")?.map(std::time::Duration::from_millis);
    if timeout.is_some_and(|t| t > MAX_WAIT) {
        return Err(format!(
            "malformed request: \"timeout_ms\" is over the most a connection waits ({} s)",
            MAX_WAIT.as_secs()
        ));
    }
    Ok(wait.then(|| timeout.unwrap_or(DEFAULT_WAIT)))
}

/// An optional string field: absent or null is `None`; any other type is refused.
fn optional_string(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(other) => Err(format!(
            "malformed request: \"{key}\" must be a string, not {}",
            shown(other)
        )),
    }
}

/// A client's value for an error message: bounded, since it is untrusted and may be huge.
fn shown(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_errors_are_specific() {
        assert_eq!(parse_request(r#"{"v":1,"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(r#"{"v":1,"cmd":"stop","mode":"smart"}"#),
            Ok(Request::Stop(StopMode::Smart))
        );
        assert_eq!(
            parse_request(r#"{"v":1,"cmd":"stop"}"#),
            Ok(Request::Stop(StopMode::Fast))
        );
        assert!(parse_request("{not json").unwrap_err().starts_with("malformed request"));
        assert!(parse_request(r#"{"v":2,"cmd":"status"}"#)
            .unwrap_err()
            .contains("unsupported protocol version 2"));
        assert!(parse_request(r#"{"v":1,"cmd":"dance"}"#)
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse_request(r#"{"v":1,"cmd":"stop","mode":"gentle"}"#)
            .unwrap_err()
            .contains("unknown stop mode"));
    }

    #[test]
    fn a_stop_mode_that_is_not_a_string_is_refused_not_taken_as_fast() {
        for mode in ["5", "null", "true", "[\"fast\"]", "{}"] {
            let err = parse_request(&format!(r#"{{"v":1,"cmd":"stop","mode":{mode}}}"#)).unwrap_err();
            assert!(
                err.contains("stop \"mode\" must be one of the strings"),
                "{mode}: {err}"
            );
            assert!(err.ends_with(&format!("not {mode}")), "{mode}: {err}");
        }
    }

    #[test]
    fn a_protocol_version_that_is_not_a_whole_number_gets_its_own_refusal() {
        for (v, shown) in [
            ("1.0", "1.0"),
            ("-1", "-1"),
            ("18446744073709551617", "1.8446744073709552e+19"),
            ("\"1\"", "\"1\""),
            ("null", "null"),
        ] {
            let err = parse_request(&format!(r#"{{"v":{v},"cmd":"status"}}"#)).unwrap_err();
            assert!(!err.contains("missing"), "{v}: {err}");
            assert_eq!(
                err,
                format!("malformed request: protocol version \"v\" must be a whole number such as 1, not {shown}"),
                "{v}"
            );
        }
        assert!(parse_request(r#"{"cmd":"status"}"#)
            .unwrap_err()
            .contains("missing protocol version"));
    }

    // issue 14: control
    #[test]
    fn launch_and_terminate_parse_strictly() {
        let r = parse_request(
            r#"{"v":1,"cmd":"launch","plugin":"p","entry":"e","name":"n","arg":7,"restart":"2s","wait":true}"#,
        );
        assert_eq!(
            r,
            Ok(Request::Launch(LaunchRequest {
                plugin: "p".into(),
                entry: "e".into(),
                name: "n".into(),
                arg: 7,
                restart: Some(std::time::Duration::from_secs(2)),
                wait: Some(DEFAULT_WAIT),
            }))
        );
        let r = parse_request(r#"{"v":1,"cmd":"launch","plugin":"p","entry":"e","name":"n","restart":"never"}"#);
        assert!(matches!(
            r,
            Ok(Request::Launch(LaunchRequest {
                restart: None,
                wait: None,
                arg: 0,
                ..
            }))
        ));
        for (bad, says) in [
            (r#""plugin":"p","entry":"e""#, "missing \"name\""),
            (r#""plugin":5,"entry":"e","name":"n""#, "\"plugin\" must be a string"),
            (
                r#""plugin":"p","entry":"e","name":"n","arg":-1"#,
                "\"arg\" must be a whole number",
            ),
            (
                r#""plugin":"p","entry":"e","name":"n","restart":"soon""#,
                "\"restart\" must be",
            ),
            (
                r#""plugin":"p","entry":"e","name":"n","wait":"yes""#,
                "\"wait\" must be true or false",
            ),
            (
                r#""plugin":"p","entry":"e","name":"n","wait":true,"timeout_ms":99999999"#,
                "timeout_ms",
            ),
        ] {
            let err = parse_request(&format!(r#"{{"v":1,"cmd":"launch",{bad}}}"#)).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(
            parse_request(r#"{"v":1,"cmd":"terminate","name":"n","wait":true,"timeout_ms":500}"#),
            Ok(Request::Terminate {
                name: "n".into(),
                wait: Some(std::time::Duration::from_millis(500)),
            })
        );
        assert!(parse_request(r#"{"v":1,"cmd":"terminate"}"#)
            .unwrap_err()
            .contains("missing \"name\""));
    }

    #[test]
    fn a_command_that_is_not_a_string_is_refused_and_long_values_are_cut() {
        let err = parse_request(r#"{"v":1,"cmd":7}"#).unwrap_err();
        assert_eq!(err, "malformed request: \"cmd\" must be a string, not 7");
        let long = format!(r#"{{"v":1,"cmd":"stop","mode":[{}]}}"#, "1,".repeat(100) + "1");
        let err = parse_request(&long).unwrap_err();
        assert!(err.len() < 200 && err.ends_with("..."), "{err}");
    }
}
