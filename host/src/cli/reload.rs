//! `steward reload`: ask the host to re-read its configuration file.
//!
//! Runs in: the CLI process. It finds the host through the runtime directory alone, read
//! leniently (see [`super::target`]): a file with errors is exactly what an operator reloads
//! after fixing, and the host, which checks the whole file, is the one to refuse it.

use steward_host::control::Client;
use steward_host::exit_code;

use super::target::resolve;
use super::ReloadArgs;

pub fn cmd_reload(args: &ReloadArgs) -> i32 {
    let target = match resolve(&args.target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("steward: {e}");
            return exit_code::FAILURE;
        }
    };
    match Client::connect(&target.socket_path()).and_then(|mut c| c.reload()) {
        Ok(_) => {
            println!("reload requested; the host's log says what was applied or why not");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("steward: {e}");
            exit_code::FAILURE
        }
    }
}
