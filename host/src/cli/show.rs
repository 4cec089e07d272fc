//! `steward show [NAME]`: the running host's settings, as PostgreSQL's `SHOW` and `pg_settings`.
//!
//! Runs in: the CLI process. Like `status`, it needs only the runtime directory (read leniently,
//! see [`super::target`]); the host answers with each setting's running value, default, source
//! (default, file or command line), context (reload or restart) and whether a restart is pending.

use steward_host::exit_code;
use steward_host::shared::control::Client;

use super::format;
use super::target::resolve;
use super::{CliError, ShowArgs};

pub fn cmd_show(args: &ShowArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    let settings = Client::connect(&target.socket_path()).and_then(|mut c| c.show(args.name.as_deref()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&settings).expect("settings serialise")
        );
    } else {
        print!("{}", format::format_show(&settings));
    }
    Ok(exit_code::OK)
}
