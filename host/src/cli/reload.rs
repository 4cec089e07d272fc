//! `steward reload`: ask the host to re-read its configuration file.
//!
//! Runs in: the CLI process. It finds the host through the runtime directory alone, read
//! leniently (see [`super::target`]): a file with errors is exactly what an operator reloads
//! after fixing, and the host, which checks the whole file, is the one to refuse it.

use steward_host::control::Client;
use steward_host::exit_code;

use super::target::resolve;
use super::{CliError, ReloadArgs};

pub fn cmd_reload(args: &ReloadArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    Client::connect(&target.socket_path()).and_then(|mut c| c.reload())?;
    println!("reload requested; the host's log says what was applied or why not");
    Ok(exit_code::OK)
}
