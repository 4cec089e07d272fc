//! `steward reload`: ask the host to re-read its configuration file, and print its verdict.
//!
//! Runs in: the CLI process. It finds the host through the runtime directory alone, read
//! leniently (see [`super::target`]): a file with errors is exactly what an operator reloads
//! after fixing, and the host, which checks the whole file, is the one to refuse it. The host
//! answers only once the reload is over, with what it applied, what waits for a restart, or every
//! error; a refused file exits 1.

use steward_host::exit_code;
use steward_host::shared::control::Client;

use super::format;
use super::target::resolve;
use super::{config_path, CliError, ConfigSource, ReloadArgs};

pub fn cmd_reload(args: &ReloadArgs) -> Result<i32, CliError> {
    let target = resolve(&args.target)?;
    // The file this command means: the one named, or the default one the host was found
    // through. With only `--runtime-dir`, no file is meant and the host's own is reloaded. The
    // host refuses a request naming another file than its own, naming its file.
    let (path, source) = config_path(&args.target.config);
    let meant = match (source, &args.target.runtime_dir) {
        (ConfigSource::Default, Some(_)) => None,
        _ => Some(std::fs::canonicalize(&path).unwrap_or(path)),
    };
    let verdict = Client::connect(&target.socket_path()).and_then(|mut c| c.reload_verdict(meant.as_deref()))?;
    if verdict.applied() {
        print!("{}", format::format_reload(&verdict));
        Ok(exit_code::OK)
    } else {
        eprint!("{}", format::format_reload(&verdict));
        Ok(exit_code::FAILURE)
    }
}
