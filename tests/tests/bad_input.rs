//! Bad input gets a clear error naming what is wrong, a non-zero exit, and leaves nothing behind
//! (`run_expect_failure` checks for leftover processes, socket and lock). Both launch modes.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use steward_tests::*;

fn fails_with(spec: Spec, needles: &[&str]) -> String {
    let dir = Dir::new(&spec);
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1, "exit code; output:\n{out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in:\n{out}");
    }
    assert!(
        !out.contains("panicked at") || out.contains("init panicked"),
        "the host itself panicked:\n{out}"
    );
    out
}

fn config_syntax_error_names_the_file_and_line(mode: Mode) {
    let dir = Dir::with_config(&format!("[host]\nlaunch_mode = {:?}\nplugin_dir = \n", mode.as_str()));
    let (code, out) = run_expect_failure(&dir);
    assert_eq!(code, 1);
    assert!(out.contains("steward.toml") && out.contains("line 3"), "{out}");
}

fn unknown_host_key_is_named(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("hello").host("max_wrokers = 3"),
        &["steward.toml", "max_wrokers"],
    );
}

fn bad_host_value_is_named(mode: Mode) {
    fails_with(
        Spec::new(mode).host("max_connections = 0"),
        &["host.max_connections", "out of range"],
    );
    fails_with(
        Spec::new(mode).host("shutdown_timeout = \"soonish\""),
        &["host.shutdown_timeout", "soonish"],
    );
}

fn bad_plugin_setting_value_is_named(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("hello").setting("hello", "workers = \"many\""),
        &["steward.toml", "plugins.hello.workers", "expected an integer"],
    );
    fails_with(
        Spec::new(mode).plugin("hello").setting("hello", "workers = 1000"),
        &["plugins.hello.workers", "out of range (1 to 64)"],
    );
}

fn unknown_plugin_setting_is_named(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("hello").setting("hello", "colour = \"red\""),
        &[
            "plugins.hello.colour",
            "unknown key",
            "defines: greeting, interval, launch, workers",
        ],
    );
}

fn missing_plugin_file_is_named(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("ghost"),
        &["plugin ghost", "libghost.so", "no such file"],
    );
}

fn a_library_that_is_not_a_plugin_is_refused(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("foreign"),
        &["plugin foreign", "libforeign.so", "not a Steward plugin"],
    );
}

fn a_file_that_is_not_a_library_is_refused(mode: Mode) {
    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("libjunk.so"), "this is not an ELF file\n").unwrap();
    let mut spec = Spec::new(mode).plugin("junk");
    spec.plugin_dir = Some(junk.path().to_owned());
    fails_with(spec, &["plugin junk", "libjunk.so", "cannot load"]);
}

fn a_plugin_built_for_another_abi_major_is_refused(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("oldabi"),
        &[
            "plugin oldabi",
            "liboldabi.so",
            "built for plugin ABI 2.0",
            "this host speaks ABI 1.1",
        ],
    );
}

/// The header's own size field says it holds every field; the symbol is only the 16-byte prefix.
/// Nothing past the symbol may be read (it is not the plugin's header, and its "strings" would
/// be pointers to anywhere).
fn a_header_longer_than_its_symbol_is_refused(mode: Mode) {
    fails_with(
        Spec::new(mode).plugin("shortheader"),
        &[
            "plugin shortheader",
            "libshortheader.so",
            "header says it is",
            "bytes, but steward_plugin_header is 16",
        ],
    );
}

fn init_returning_an_error_is_reported(mode: Mode) {
    fails_with(
        Spec::new(mode).testkit("a").setting("testkit", "init = \"error\""),
        &["plugin testkit: init failed", "told to fail its init"],
    );
}

fn init_panicking_is_reported(mode: Mode) {
    fails_with(
        Spec::new(mode).testkit("a").setting("testkit", "init = \"panic\""),
        &["plugin testkit: init failed", "init panicked", "told to panic in init"],
    );
}

fn duplicate_worker_names_are_refused(mode: Mode) {
    fails_with(
        Spec::new(mode).testkit("twin,twin"),
        &["plugin testkit", "\"twin\" is already registered"],
    );
}

fn socket_path_too_long_is_refused(mode: Mode) {
    let long = format!("/tmp/{}", "r".repeat(110));
    fails_with(
        Spec::new(mode).plugin("hello").host(&format!("runtime_dir = {long:?}")),
        &["host.runtime_dir", "at most 107"],
    );
    assert!(
        !std::path::Path::new(&long).exists(),
        "nothing is created for a refused runtime_dir"
    );
}

fn a_second_host_on_the_same_runtime_dir_is_refused(mode: Mode) {
    let first = Host::start(Spec::new(mode).plugin("hello"));
    let mut cmd = std::process::Command::new(&build().bin);
    cmd.arg("run").arg("--config").arg(first.config());
    let out = run_bounded(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "already running on {} (pid {})",
            first.dir.run_dir().display(),
            first.pid
        )),
        "{err}"
    );
    // The first host is untouched: its socket and lock are still there and it answers.
    assert!(first.socket().exists());
    assert!(first.dir.run_dir().join("steward.pid").exists());
    assert_eq!(first.status().host.state, "running");
}

fn a_stale_lock_from_a_dead_host_is_taken_over(mode: Mode) {
    let mut first = Host::start(Spec::new(mode).plugin("hello"));
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert!(
        first.dir.run_dir().join("steward.pid").exists(),
        "a killed host leaves its lock file"
    );
    let mut cmd = std::process::Command::new(&build().bin);
    cmd.arg("run").arg("--config").arg(first.config()).process_group(0);
    let mut second = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if Client::connect(&first.socket())
            .and_then(|mut c| c.status())
            .is_ok_and(|s| s.host.pid == second.id())
        {
            break true;
        }
        if std::time::Instant::now() > deadline || second.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    end_group(second.id() as i32);
    assert!(ok, "the second host did not take over the stale lock");
}

fn malformed_control_requests_get_clear_errors(mode: Mode) {
    use std::io::{BufRead, BufReader, Write};
    let host = Host::start(Spec::new(mode).plugin("hello"));
    let s = std::os::unix::net::UnixStream::connect(host.socket()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    for (req, want) in [
        ("{not json", "malformed request"),
        (r#"{"v":9,"cmd":"status"}"#, "unsupported protocol version 9"),
        (r#"{"v":1,"cmd":"explode"}"#, "unknown command"),
        (r#"{"v":1,"cmd":"stop","mode":"gently"}"#, "unknown stop mode"),
    ] {
        writeln!(w, "{req}").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], false, "{line}");
        assert!(v["error"].as_str().unwrap().contains(want), "{line}");
    }
    // The same connection still works, and so does the host.
    writeln!(w, r#"{{"v":1,"cmd":"status"}}"#).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");
    assert_eq!(host.status().host.generation, 1);
}

both_modes!(
    config_syntax_error_names_the_file_and_line,
    unknown_host_key_is_named,
    bad_host_value_is_named,
    bad_plugin_setting_value_is_named,
    unknown_plugin_setting_is_named,
    missing_plugin_file_is_named,
    a_library_that_is_not_a_plugin_is_refused,
    a_file_that_is_not_a_library_is_refused,
    a_plugin_built_for_another_abi_major_is_refused,
    a_header_longer_than_its_symbol_is_refused,
    init_returning_an_error_is_reported,
    init_panicking_is_reported,
    duplicate_worker_names_are_refused,
    socket_path_too_long_is_refused,
    a_second_host_on_the_same_runtime_dir_is_refused,
    a_stale_lock_from_a_dead_host_is_taken_over,
    malformed_control_requests_get_clear_errors,
);
