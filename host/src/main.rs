//! `steward`: run the host, or talk to a running one.
//!
//! Exit codes: 0 success, 1 failure (the message says which file, key, plugin or worker and why),
//! 2 bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

use steward_host::config::{Config, LaunchMode};
use steward_host::control::{self, Client, StopMode};
use steward_host::exit_code;

const USAGE: &str = "usage:
  steward run --config FILE [--launch-mode fork|exec]
  steward status --config FILE [--json]
  steward stop --config FILE [--mode smart|fast|immediate]
  steward reload --config FILE
  steward show --config FILE [NAME] [--json]
  steward --version";

struct Args {
    command: String,
    config: Option<PathBuf>,
    json: bool,
    mode: Option<String>,
    launch_mode: Option<String>,
    /// `show`'s setting name or prefix.
    name: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("missing command")?;
    let mut a = Args {
        command,
        config: None,
        json: false,
        mode: None,
        launch_mode: None,
        name: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" | "-c" => a.config = Some(PathBuf::from(value("--config")?)),
            "--json" => a.json = true,
            "--mode" => a.mode = Some(value("--mode")?),
            "--launch-mode" => a.launch_mode = Some(value("--launch-mode")?),
            name if a.command == "show" && a.name.is_none() && !name.starts_with('-') => a.name = Some(name.to_owned()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    match first.as_deref() {
        Some("--version" | "-V") => {
            println!("steward {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        // Internal: an exec-mode child, started by the supervisor with a parameter blob on fd 3.
        Some("child") => return ExitCode::from(steward_host::exec::child_main() as u8),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("steward: {e}\n{USAGE}");
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    let code = match args.command.as_str() {
        "run" => cmd_run(&args),
        "status" => cmd_status(&args),
        "stop" => cmd_stop(&args),
        "reload" => cmd_reload(&args),
        "show" => cmd_show(&args),
        other => {
            eprintln!("steward: unknown command {other:?}\n{USAGE}");
            exit_code::USAGE
        }
    };
    ExitCode::from(code as u8)
}

fn load_config(args: &Args) -> Result<Config, i32> {
    let Some(path) = &args.config else {
        eprintln!("steward: {} needs --config FILE\n{USAGE}", args.command);
        return Err(exit_code::USAGE);
    };
    Config::load(path).map_err(|e| {
        eprintln!("steward: {e}");
        exit_code::FAILURE
    })
}

fn cmd_run(args: &Args) -> i32 {
    let mut cfg = match load_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(m) = &args.launch_mode {
        match LaunchMode::parse(m) {
            Some(m) => cfg.launch_mode = m,
            None => {
                eprintln!("steward: --launch-mode: {m:?} is not a launch mode (use fork or exec)");
                return exit_code::USAGE;
            }
        }
    }
    match steward_host::run::run(cfg) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            exit_code::FAILURE
        }
    }
}

fn cmd_status(args: &Args) -> i32 {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let status = Client::connect(&cfg.socket_path()).and_then(|mut c| c.status());
    match status {
        Ok(s) if args.json => {
            println!("{}", serde_json::to_string_pretty(&s).expect("status serialises"));
            exit_code::OK
        }
        Ok(s) => {
            print!("{}", control::format_table(&s));
            exit_code::OK
        }
        Err(e) => {
            eprintln!("steward: {e}");
            exit_code::FAILURE
        }
    }
}

fn cmd_stop(args: &Args) -> i32 {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mode = match args.mode.as_deref().map(StopMode::parse) {
        None => StopMode::Fast,
        Some(Some(m)) => m,
        Some(None) => {
            eprintln!("steward: --mode: use smart, fast or immediate");
            return exit_code::USAGE;
        }
    };
    let answer = Client::connect(&cfg.socket_path()).and_then(|mut c| c.stop(mode));
    if let Err(e) = answer {
        // A host already shutting down (or out of connection slots) refuses the socket; like
        // pg_ctl with its pid file, signal the lock holder directly, so a smart shutdown can
        // still be escalated to fast or immediate.
        match steward_host::lockfile::LockFile::holder_pid(&cfg.lock_path()) {
            Some(pid) => {
                if let Err(err) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), mode.signal()) {
                    eprintln!("steward: {e}; signalling pid {pid} failed: {err}");
                    return exit_code::FAILURE;
                }
            }
            None => {
                eprintln!("steward: {e}");
                return exit_code::FAILURE;
            }
        }
    }
    // Wait for the host to let go of its lock: that is the last thing it does, and the kernel
    // releases it when the host's process exits, so wait for that exit (through a pidfd). Look
    // at the lock again at least every 100 ms: the recorded pid may not name the holder as this
    // process sees it (another pid namespace), and then only the lock itself tells.
    let deadline = std::time::Instant::now() + cfg.shutdown_timeout + std::time::Duration::from_secs(10);
    let holder = steward_host::lockfile::LockFile::holder_pid(&cfg.lock_path());
    let mut exited = false;
    while steward_host::lockfile::LockFile::is_held(&cfg.lock_path()) {
        if std::time::Instant::now() > deadline {
            eprintln!("steward: the host did not stop within shutdown_timeout + 10s");
            return exit_code::FAILURE;
        }
        let slice = std::time::Duration::from_millis(100);
        match holder.map(|pid| steward_host::sys::wait_pid_exit(pid, slice)) {
            // The whole slice passed waiting.
            Some(Ok(false)) => {}
            // It exited: look at the lock again at once.
            Some(Ok(true)) if !exited => exited = true,
            // No usable pid here: look again shortly.
            _ => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    println!("steward stopped ({} shutdown)", mode.as_str());
    exit_code::OK
}

fn cmd_reload(args: &Args) -> i32 {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The host refuses a request that names another file than its own.
    let file = std::fs::canonicalize(&cfg.path).unwrap_or(cfg.path.clone());
    match Client::connect(&cfg.socket_path()).and_then(|mut c| c.reload_verdict(Some(&file))) {
        Ok(r) if r.applied() => {
            print!("{}", control::format_reload(&r));
            exit_code::OK
        }
        Ok(r) => {
            eprint!("{}", control::format_reload(&r));
            exit_code::FAILURE
        }
        Err(e) => {
            eprintln!("steward: {e}");
            exit_code::FAILURE
        }
    }
}

fn cmd_show(args: &Args) -> i32 {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match Client::connect(&cfg.socket_path()).and_then(|mut c| c.show(args.name.as_deref())) {
        Ok(settings) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&settings).expect("settings serialise")
            );
            exit_code::OK
        }
        Ok(settings) => {
            print!("{}", control::format_show(&settings));
            exit_code::OK
        }
        Err(e) => {
            eprintln!("steward: {e}");
            exit_code::FAILURE
        }
    }
}
