//! `steward launch` and `steward terminate` (issue 14: control): start a dynamic worker of a
//! preloaded plugin on a running host, and stop a worker for good.
//!
//! Runs in: the CLI process. Like `reload`, it finds the host through the runtime directory
//! alone (see [`super::target`]); the host checks every field and refuses with a message naming
//! the plugin, entry or worker, which is printed as `steward: the host refused: ...` with exit 1.

use std::time::Duration;

use steward_host::exit_code;
use steward_host::shared::control::{Client, Launch};

use super::target::resolve;
use super::{CliError, LaunchArgs, TerminateArgs};

pub fn cmd_launch(args: &LaunchArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    let launch = Launch {
        plugin: &args.plugin,
        entry: &args.entry,
        name: &args.name,
        arg: args.arg,
        restart: args.restart.0,
        wait: args.wait.then_some(args.timeout),
    };
    let l = Client::connect(&target.socket_path()).and_then(|mut c| c.launch(&launch))?;
    match l.pid {
        Some(pid) => println!(
            "launched {}: slot {} generation {} pid {pid}",
            l.name, l.slot, l.generation
        ),
        None => println!("launched {}: slot {} generation {}", l.name, l.slot, l.generation),
    }
    Ok(exit_code::OK)
}

pub fn cmd_terminate(args: &TerminateArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    let wait = args.wait.then_some(args.timeout);
    let t = Client::connect(&target.socket_path()).and_then(|mut c| c.terminate(&args.name, wait))?;
    match t.stopped {
        Some(reason) => println!(
            "terminated {}: slot {} generation {} ({reason})",
            t.name, t.slot, t.generation
        ),
        None => println!(
            "terminating {}: slot {} generation {} (asked to stop)",
            t.name, t.slot, t.generation
        ),
    }
    Ok(exit_code::OK)
}

/// `--restart`: `never`, or the delay before each restart.
#[derive(Debug, Clone, Copy)]
pub struct RestartArg(pub Option<Duration>);

pub fn parse_restart(s: &str) -> Result<RestartArg, String> {
    if s == "never" {
        return Ok(RestartArg(None));
    }
    steward_host::shared::time::parse_duration(s)
        .map(|d| RestartArg(Some(d)))
        .map_err(|e| format!("{e}; or \"never\""))
}
