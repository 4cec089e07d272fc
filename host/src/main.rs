//! `steward`: run the host, or talk to a running one (see [`cli`] for the commands).
//!
//! Runs in: whatever process the operator started, and, as `steward child`, every exec-mode
//! child. `main` only maps the command's result (an exit code, or a [`cli::CliError`] printed as
//! `steward: MESSAGE`) to the exit-code contract
//! ([`steward_host::exit_code`]).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Internal: an exec-mode child, started by the supervisor with a parameter blob on fd 3. It
    // is not a command: it bypasses the parser, so nothing an operator can type reaches it and its
    // argv stays exactly `steward child`.
    let code = if std::env::args_os().nth(1).is_some_and(|a| a == "child") {
        steward_host::child::exec_main::child_main()
    } else {
        cli::main().unwrap_or_else(|e| {
            eprintln!("{}steward: {e}", steward_host::shared::log::error_prefix());
            e.exit_code()
        })
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
