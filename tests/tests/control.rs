//! End-to-end: the control protocol and what the host tells its callers (status, reload, show,
//! the service manager's `STATUS=`), in both launch modes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use steward_tests::*;

const T: Duration = Duration::from_secs(20);

fn hello(mode: Mode) -> Spec {
    Spec::new(mode).plugin("hello")
}

/// Sends one raw request line and returns the answer line.
fn raw_request(host: &Host, line: &str) -> serde_json::Value {
    let s = UnixStream::connect(host.socket()).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("answer");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn a_stop_request_the_host_does_not_understand_changes_nothing(mode: Mode) {
    let host = Host::start(hello(mode));
    for (request, expect) in [
        (
            r#"{"v":1,"cmd":"stop","mode":5}"#,
            "stop \"mode\" must be one of the strings",
        ),
        (
            r#"{"v":1,"cmd":"stop","mode":null}"#,
            "stop \"mode\" must be one of the strings",
        ),
        (
            r#"{"v":1.0,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
        (
            r#"{"v":-1,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
        (
            r#"{"v":18446744073709551617,"cmd":"stop"}"#,
            "protocol version \"v\" must be a whole number",
        ),
    ] {
        let answer = raw_request(&host, request);
        assert_eq!(answer["ok"], false, "{request}: {answer}");
        let err = answer["error"].as_str().unwrap_or_default();
        assert!(err.contains(expect), "{request}: {err}");
    }
    host.assert_stays("the host keeps running", Duration::from_millis(300), |s| {
        s.host.state == "running"
    });
    assert!(!host.log_text().contains("shutdown requested"), "{}", host.log_text());
}

both_modes!(a_stop_request_the_host_does_not_understand_changes_nothing,);
