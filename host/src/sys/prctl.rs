//! Process attributes set with `prctl(2)`: `PR_SET_PDEATHSIG` (with a `getppid(2)` check after it)
//! and `PR_SET_CHILD_SUBREAPER`.
//!
//! Runs in: children (parent death) and the supervisor (subreaper).

/// Asks the kernel to SIGKILL this process when its parent dies, then checks that the parent is
/// still `host_pid` (it may have died before the request). Returns false if it is already gone.
pub fn die_with_parent(host_pid: i32) -> bool {
    // Cannot fail with a valid signal; the parent check below covers the rest. Both calls are
    // plain system calls that allocate nothing, as a child straight after a fork needs.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    rustix::process::Pid::as_raw(rustix::process::getppid()) == host_pid
}

/// Makes this process the child subreaper of everything it starts: a process whose parent dies
/// (a worker's own child that outlives the worker) becomes this process's child instead of init's,
/// so the supervisor can reap it and stop it at shutdown.
pub fn become_subreaper() -> std::io::Result<()> {
    // The argument is a flag, not a pid: any non-zero value turns the attribute on.
    Ok(rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1))?)
}
