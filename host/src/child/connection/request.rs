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
}

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
        other => Err(format!("unknown command {other:?}")),
    }
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

    #[test]
    fn a_command_that_is_not_a_string_is_refused_and_long_values_are_cut() {
        let err = parse_request(r#"{"v":1,"cmd":7}"#).unwrap_err();
        assert_eq!(err, "malformed request: \"cmd\" must be a string, not 7");
        let long = format!(r#"{{"v":1,"cmd":"stop","mode":[{}]}}"#, "1,".repeat(100) + "1");
        let err = parse_request(&long).unwrap_err();
        assert!(err.len() < 200 && err.ends_with("..."), "{err}");
    }
}
