//! `steward run`: start-up in order, then hand over to the supervisor.
//!
//! Runs in: the supervisor process. Start-up order: logging (and one info line saying what
//! starts), runtime directory (created 0700 or checked, see [`crate::shared::rundir`]), lock file,
//! preload (plugins' init), in fork mode the code's move to huge pages, freeze, segment and
//! socket, supervisor loop. Every failure before the loop releases what was taken (lock, socket)
//! and returns a message naming what went wrong.

use crate::shared::config::Config;
use crate::shared::lockfile::LockFile;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Lock(#[from] crate::shared::lockfile::LockError),
    #[error("{0}")]
    RuntimeDir(#[from] crate::shared::rundir::RunDirError),
    #[error("{0}")]
    Plugin(#[from] crate::shared::preload::PluginError),
    #[error("{0}")]
    Start(#[from] crate::supervisor::StartError),
}

pub fn run(cfg: Config) -> Result<i32, RunError> {
    crate::shared::log::init(cfg.log_format, &cfg.log_level);
    crate::shared::log::set_identity("supervisor", None);
    crate::sys::cloexec_inherited();
    // Before any plugin code runs: the variables must not be visible to plugins or children.
    let notifier = crate::supervisor::notify::Notifier::from_env();
    tracing::info!(
        "steward {} starting: {} mode, pid {}, config {}",
        env!("CARGO_PKG_VERSION"),
        cfg.launch_mode.as_str(),
        std::process::id(),
        cfg.path.display()
    );
    // Checked before anything is opened in it: see `rundir` for the attack this stops.
    crate::shared::rundir::prepare(&cfg.runtime_dir)?;
    let lock = LockFile::acquire(&cfg.lock_path())?;
    crate::shared::preload::preload(&cfg)?;
    if cfg.launch_mode == crate::shared::config::LaunchMode::Fork && cfg.huge_code_pages {
        match crate::sys::hugetext::move_code_to_huge_pages() {
            // Detail for whoever tunes start-up; an operator's first lines say what started.
            crate::sys::hugetext::Outcome::Moved { bytes, windows } => tracing::debug!(
                "machine code on huge pages ({} KiB in {windows} 2 MiB window(s)): forked children share it without page faults",
                bytes / 1024
            ),
            crate::sys::hugetext::Outcome::Skipped(why) => tracing::debug!("machine code left on small pages: {why}"),
        }
    }
    let sup = crate::supervisor::Supervisor::new(cfg, lock, notifier)?;
    Ok(sup.run())
}
