//! `steward completions SHELL` and `steward man [COMMAND]`: generated from the command line definition at
//! run time, so they always match the binary that prints them.
//!
//! Runs in: the CLI process; writes to stdout only.

use std::io::Write;

use clap::CommandFactory;
use steward_host::exit_code;

use super::{Cli, CliError, CompletionsArgs, ManArgs};

pub fn cmd_completions(args: &CompletionsArgs) -> Result<i32, CliError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "steward", &mut out);
    std::io::stdout().write_all(&out).map_err(CliError::Output)?;
    Ok(exit_code::OK)
}

pub fn cmd_man(args: &ManArgs) -> Result<i32, CliError> {
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
            None => return Err(CliError::NoSuchCommand(name.clone())),
        },
    };
    let mut out = Vec::new();
    // Rendering writes into memory, where it cannot fail; only stdout can.
    clap_mangen::Man::new(page).render(&mut out).map_err(CliError::Output)?;
    std::io::stdout().write_all(&out).map_err(CliError::Output)?;
    Ok(exit_code::OK)
}
