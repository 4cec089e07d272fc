//! The `steward` command line: one subcommand per operator task, each with its own flags and help.
//!
//! Runs in: the process the operator (or a script, a probe, a unit file) started. Only `run`
//! becomes a supervisor; every other command is a short-lived client that reads a file, talks to
//! the control socket or looks at the runtime directory, and exits with a code from
//! [`steward_host::exit_code`].
//!
//! One function per command (`cmd_*`), each taking its own argument struct and returning the exit
//! code; [`main`] parses and dispatches. A flag belongs to the commands it applies to and no
//! other, so clap refuses it elsewhere with exit code 2. The hidden `steward child` entry of exec
//! mode does not come through here at all (see `main.rs`).

mod check;
mod docs;
mod error;
mod format;
mod launch;
mod reload;
mod run;
mod show;
mod status;
mod stop;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use steward_host::shared::config::{Config, LaunchMode};
use steward_host::shared::control::StopMode;

pub use error::CliError;

/// The `steward` binary's command line.
#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Steward: a plugin host that supervises background workers",
    long_about = "Steward loads native plugins, lets them register background workers, sizes one \
shared-memory segment and supervises one process per worker. `run` is the host itself; the other \
commands start it detached, check a configuration, or talk to a running host through its control \
socket.",
    after_help = "Exit codes: 0 success; 1 failure (for `status --ready`: the host answers but is \
not running); 2 bad command line; `status`: 3 no host running, 4 cannot tell."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host in the foreground until it is stopped (logs on stderr)
    Run(RunArgs),
    /// Start the host detached, with its log in a file, and wait until it is running
    Start(StartArgs),
    /// Validate the configuration and the plugins without starting anything
    Check(CheckArgs),
    /// Show the running host and its workers (exit 0 answered, 3 not running, 4 cannot tell)
    Status(StatusArgs),
    /// Stop the running host and wait until it has exited
    Stop(StopArgs),
    /// Make the running host re-read its configuration file, and print what it did
    Reload(ReloadArgs),
    /// Show the running host's settings: value, source, reloadable or not, pending restart
    Show(ShowArgs),
    /// Launch a dynamic worker: the function ENTRY of the preloaded PLUGIN, named NAME
    Launch(LaunchArgs),
    /// Stop a worker for good (not restarted, whatever its policy), found by its name
    Terminate(TerminateArgs),
    /// Print a shell completion script on stdout
    Completions(CompletionsArgs),
    /// Print a manual page (roff) on stdout: steward(1), or steward-COMMAND(1)
    Man(ManArgs),
}

/// Where the configuration file is.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The configuration file [default: /etc/steward/steward.toml for root,
    /// $XDG_CONFIG_HOME/steward/steward.toml otherwise]
    #[arg(short = 'c', long, value_name = "FILE", env = "STEWARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How a client command finds the host: the runtime directory, given or read from the file.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host's runtime directory; overrides `runtime_dir` from the file, which is then only
    /// read for what else the command needs
    #[arg(long, value_name = "DIR", env = "STEWARD_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LaunchModeArg {
    Fork,
    Exec,
}

impl From<LaunchModeArg> for LaunchMode {
    fn from(m: LaunchModeArg) -> LaunchMode {
        match m {
            LaunchModeArg::Fork => LaunchMode::Fork,
            LaunchModeArg::Exec => LaunchMode::Exec,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StopModeArg {
    Smart,
    Fast,
    Immediate,
}

impl From<StopModeArg> for StopMode {
    fn from(m: StopModeArg) -> StopMode {
        match m {
            StopModeArg::Smart => StopMode::Smart,
            StopModeArg::Fast => StopMode::Fast,
            StopModeArg::Immediate => StopMode::Immediate,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Overrides `launch_mode` from the file
    #[arg(long, value_enum, value_name = "MODE")]
    pub launch_mode: Option<LaunchModeArg>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Overrides `launch_mode` from the file
    #[arg(long, value_enum, value_name = "MODE")]
    pub launch_mode: Option<LaunchModeArg>,
    /// Append the host's output to FILE [default: /var/log/steward/steward.log for root,
    /// $XDG_STATE_HOME/steward/steward.log otherwise]
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// How long to wait for the host to be running, e.g. 60s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON (an object in every case, with a top-level "state")
    #[arg(long)]
    pub json: bool,
    /// Readiness: exit 1 when the host answers in any state but `running` (starting up,
    /// recovering from a crash, stopping)
    #[arg(long)]
    pub ready: bool,
    /// How long to wait for the host's answer before exiting with 4, e.g. 5s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The shutdown mode (PostgreSQL's)
    #[arg(short, long, value_enum, default_value = "fast")]
    pub mode: StopModeArg,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// One setting (`host.log_level`), or every setting under a prefix (`host`, `plugins.hello`)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Print JSON (an array of settings)
    #[arg(long)]
    pub json: bool,
}

// issue 14: control
#[derive(Debug, Args)]
#[command(
    after_help = "Prints `launched NAME: slot S generation G`, with `pid P` when --wait \
waited for the worker's entry to run. Exit 1 when the host refuses (a plugin that is not preloaded, \
an invalid name, no free worker slot), or, with --wait, when the worker stopped before its entry \
ran (an entry that does not resolve, named) or did not start within --timeout."
)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// A plugin in host.preload_plugins
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
    /// The entry: a function of the plugin exported with `steward::worker_entry!`
    #[arg(value_name = "ENTRY")]
    pub entry: String,
    /// The new worker's name, as status shows it
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The argument the entry gets (`Worker::arg`)
    #[arg(long, value_name = "U64", default_value_t = 0)]
    pub arg: u64,
    /// `never` (the default: gone once it stops), or the delay before each restart, e.g. 5s
    #[arg(long, value_name = "never|DURATION", default_value = "never", value_parser = launch::parse_restart)]
    pub restart: launch::RestartArg,
    /// Wait until the worker's entry runs, and print its pid
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait, e.g. 10s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
}

// issue 14: control
#[derive(Debug, Args)]
#[command(
    after_help = "Exit 1 when no live worker has that name (a dynamic worker is gone once it \
stopped), or, with --wait, when it did not stop within --timeout. A terminated static worker stays \
stopped until the host restarts."
)]
pub struct TerminateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The worker's name, as status shows it
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Wait until the worker stopped
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait, e.g. 10s or 500ms
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, requires = "wait")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command whose own page to print, e.g. status
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    steward_host::shared::time::parse_duration(s)
}

/// Parses the command line and runs the command: the exit code, or why the command failed.
pub fn main() -> Result<i32, CliError> {
    // An empty variable counts as unset, as an empty XDG_RUNTIME_DIR does, instead of being
    // refused as a missing value. This runs before anything could start a thread.
    for var in ["STEWARD_CONFIG", "STEWARD_RUNTIME_DIR"] {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(var);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with code 0; usage errors to stderr with code 2, in
            // clap's own words (with the usage line and a hint).
            let _ = e.print();
            return Ok(e.exit_code());
        }
    };
    match cli.command {
        Command::Run(a) => run::cmd_run(&a),
        Command::Start(a) => run::cmd_start(&a),
        Command::Check(a) => check::cmd_check(&a),
        Command::Status(a) => status::cmd_status(&a),
        Command::Stop(a) => stop::cmd_stop(&a),
        Command::Reload(a) => reload::cmd_reload(&a),
        Command::Show(a) => show::cmd_show(&a),
        Command::Launch(a) => launch::cmd_launch(&a),
        Command::Terminate(a) => launch::cmd_terminate(&a),
        Command::Completions(a) => docs::cmd_completions(&a),
        Command::Man(a) => docs::cmd_man(&a),
    }
}

/// Where the configuration file came from, for messages about a file that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config`, or `STEWARD_CONFIG` (clap folds the two together).
    Given,
    /// Neither was set: the default path for this user.
    Default,
}

/// The configuration file to use: `--config` or `STEWARD_CONFIG`, else the default path.
pub fn config_path(arg: &ConfigArg) -> (PathBuf, ConfigSource) {
    match &arg.config {
        Some(p) => (p.clone(), ConfigSource::Given),
        None => (default_config_path(), ConfigSource::Default),
    }
}

/// `/etc/steward/steward.toml` for root; `$XDG_CONFIG_HOME/steward/steward.toml`, or
/// `~/.config/steward/steward.toml`, otherwise.
pub fn default_config_path() -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    default_config_path_for(nix::unistd::getuid().is_root(), xdg, home)
}

fn default_config_path_for(root: bool, xdg_config_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if root {
        return PathBuf::from("/etc/steward/steward.toml");
    }
    // The XDG spec: a relative XDG_CONFIG_HOME is invalid and is ignored.
    let base = xdg_config_home
        .filter(|d| d.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc"));
    base.join("steward/steward.toml")
}

/// Loads and validates the configuration strictly (for the commands that start or check a host).
pub fn load_config(arg: &ConfigArg) -> Result<Config, CliError> {
    let (path, source) = config_path(arg);
    Config::load(&path).map_err(|e| match source {
        ConfigSource::Given => CliError::Config(e),
        ConfigSource::Default => CliError::DefaultConfig(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_config_path_follows_root_and_xdg() {
        let p = |root, xdg: Option<&str>, home: Option<&str>| {
            default_config_path_for(root, xdg.map(PathBuf::from), home.map(PathBuf::from))
        };
        assert_eq!(
            p(true, Some("/x"), Some("/root")),
            PathBuf::from("/etc/steward/steward.toml")
        );
        assert_eq!(
            p(false, Some("/x"), Some("/home/a")),
            PathBuf::from("/x/steward/steward.toml")
        );
        assert_eq!(
            p(false, None, Some("/home/a")),
            PathBuf::from("/home/a/.config/steward/steward.toml")
        );
        assert_eq!(
            p(false, Some("relative"), Some("/home/a")),
            PathBuf::from("/home/a/.config/steward/steward.toml")
        );
    }

    #[test]
    fn flags_belong_to_their_commands() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["steward", "status", "--json", "--runtime-dir", "/r"]).is_ok());
        assert!(parse(&["steward", "stop", "--mode", "smart", "-c", "f.toml"]).is_ok());
        let e = parse(&["steward", "stop", "--json"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["steward", "run", "--mode", "fast"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["steward", "check", "--runtime-dir", "/r"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["steward", "run", "--launch-mode", "thread"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = parse(&["steward", "man", "--config", "f.toml"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        // issue 14: control
        assert!(parse(&[
            "steward",
            "launch",
            "p",
            "e",
            "--name",
            "n",
            "--restart",
            "5s",
            "--wait"
        ])
        .is_ok());
        for bad in [
            &["steward", "launch", "p", "e"][..],
            &["steward", "launch", "p", "e", "--name", "n", "--timeout", "1s"],
            &["steward", "launch", "p", "e", "--name", "n", "--restart", "soon"],
            &["steward", "launch", "p", "e", "--name", "n", "--arg", "-1"],
            &["steward", "terminate"],
            &["steward", "terminate", "n", "--timeout", "1s"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}
