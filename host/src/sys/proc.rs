//! What `/proc` says about processes: `/proc/self/task/<tid>/children` and `/proc/<pid>/stat`
//! (read with `open(2)`/`read(2)`; no system call of its own).
//!
//! Runs in: the supervisor (finding its children after a reap, checking that a pid a fork helper
//! reports is its own child, and that `/proc` is this process's own at start-up).

/// The pids of this (single-threaded) process's live children, from
/// `/proc/self/task/<tid>/children`, or, on a kernel without that file, from every process's
/// parent in `/proc`. What `/proc` says is read as untrusted text: anything but a positive pid is
/// skipped.
pub fn own_children() -> Vec<i32> {
    let (tid, pid) = (rustix::thread::gettid().as_raw_pid(), std::process::id() as i32);
    let parse = |text: &str| -> Vec<i32> {
        text.split_ascii_whitespace()
            .filter_map(|w| w.parse::<i32>().ok())
            .filter(|p| *p > 0)
            .collect()
    };
    if let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")) {
        return parse(&text);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent of process `pid`, from `/proc/<pid>/stat`; `None` for a pid that is not positive,
/// a process that is gone, or a file that does not parse. A zombie keeps its parent until it is
/// reaped, so a child that has already exited still counts as the caller's.
pub fn parent_of(pid: i32) -> Option<i32> {
    if pid <= 0 {
        return None;
    }
    parse_stat_ppid(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The ppid field of a `/proc/<pid>/stat` line: `pid (comm) state ppid ...`. `comm` is chosen by
/// the process and may hold spaces and parentheses, so the fields are split after the last `)`.
fn parse_stat_ppid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_ascii_whitespace().nth(1)?.parse::<i32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pidfd::wait_pid_exit;
    use std::time::Duration;

    #[test]
    fn the_parent_is_read_after_the_last_parenthesis() {
        assert_eq!(parse_stat_ppid("42 (a) b) R 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (w) S 99 42"), Some(99));
        assert_eq!(parse_stat_ppid("42 (w) S"), None);
        assert_eq!(parse_stat_ppid("garbage"), None);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited but not reaped: a zombie still names its parent.
        assert!(wait_pid_exit(pid, Duration::from_secs(10)).unwrap());
        assert_eq!(parent_of(pid), Some(std::process::id() as i32));
        child.wait().unwrap();
        assert_eq!(parent_of(0), None);
        assert_eq!(parent_of(-1), None);
        assert_ne!(parent_of(1), Some(std::process::id() as i32));
    }
}
