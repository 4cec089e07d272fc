//! `steward completions SHELL` and `steward man [COMMAND]`: generated from the command line definition at
//! run time, so they always match the binary that prints them.
//!
//! Runs in: the CLI process; writes to stdout only.

use std::io::Write;

use clap::CommandFactory;
use steward_host::exit_code;

use super::{Cli, CompletionsArgs, ManArgs};

pub fn cmd_completions(args: &CompletionsArgs) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "steward", &mut std::io::stdout());
    exit_code::OK
}

pub fn cmd_man(args: &ManArgs) -> i32 {
    let cmd = Cli::command();
    // One page per command, as git has: `steward(1)`, and `steward-status(1)` for a command.
    let page = match &args.command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => {
                let full = format!("steward-{name}");
                sub.clone()
                    .name(full.clone())
                    .bin_name(format!("steward {name}"))
                    .display_name(full)
                    .version(env!("CARGO_PKG_VERSION"))
            }
            None => {
                eprintln!("steward: man: there is no command {name:?}");
                return exit_code::USAGE;
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        eprintln!("steward: cannot render the manual page: {e}");
        return exit_code::FAILURE;
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => exit_code::OK,
        Err(e) => {
            eprintln!("steward: {e}");
            exit_code::FAILURE
        }
    }
}
