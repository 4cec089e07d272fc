//! The text the CLI prints for the control protocol's answers: the `status` table, the `show`
//! table and the `reload` verdict.
//!
//! Runs in: the CLI process. Columns are padded by display width, so names in any script line up
//! in a terminal.

use steward_host::shared::control::{LastExit, ReloadReport, SettingInfo, Status, WorkerInfo};

/// What `steward reload` prints: what was applied and what needs a restart, or every error with
/// its file, key and reason.
pub fn format_reload(r: &ReloadReport) -> String {
    let list = |keys: &[String]| {
        if keys.is_empty() {
            "nothing".to_owned()
        } else {
            keys.join(", ")
        }
    };
    if r.applied() {
        let mut out = format!(
            "configuration reloaded from {}\napplied: {}\n",
            r.file,
            list(&r.applied)
        );
        if !r.pending_restart.is_empty() {
            out.push_str(&format!(
                "needs a restart (running values kept): {}\n",
                r.pending_restart.join(", ")
            ));
        }
        out
    } else {
        let mut out = format!(
            "configuration not reloaded: {} error(s) in {}; the host keeps its running configuration\n",
            r.errors.len(),
            r.file
        );
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
        out
    }
}

/// Columns padded by display width, not bytes or characters, so names in any script line up in a
/// terminal.
fn columns(head: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
    let mut widths: Vec<usize> = head.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// The table `steward show` prints.
pub fn format_show(settings: &[SettingInfo]) -> String {
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.value.is_empty() {
                    "\"\"".to_owned()
                } else {
                    s.value.clone()
                },
                s.source.clone(),
                s.context.clone(),
                if s.pending_restart { "yes" } else { "-" }.to_owned(),
            ]
        })
        .collect();
    columns(&["NAME", "VALUE", "SOURCE", "CONTEXT", "PENDING RESTART"], &rows)
}

/// The LAST EXIT cell: the reason, led by the exit code or signal unless the reason already
/// says it (the supervisor's own reasons, such as `crashed: signal 11 (SIGSEGV)`, do).
fn last_exit_cell(e: &LastExit) -> String {
    let (short, long) = match (e.code, e.signal) {
        (Some(c), _) => (format!("code {c}"), format!("exit code {c}")),
        (_, Some(sig)) => (format!("signal {sig}"), format!("signal {sig}")),
        _ => ("?".to_owned(), "?".to_owned()),
    };
    if e.reason.is_empty() {
        short
    } else if e.reason.contains(&long) {
        e.reason.clone()
    } else {
        format!("{short}: {}", e.reason)
    }
}

// issue 14: control
/// The ORIGIN cell: `static` for a worker a plugin registered in init, `launched by X` for a
/// dynamic one (X a worker's name, or `control` for `steward launch`).
fn origin_cell(w: &WorkerInfo) -> String {
    match (&w.launcher, w.dynamic) {
        (_, false) => "static".to_owned(),
        (Some(by), true) => format!("launched by {by}"),
        (None, true) => "launched".to_owned(),
    }
}

/// The readable table `steward status` prints. Columns are aligned by display width, so names
/// in any script line up in a terminal.
pub fn format_table(s: &Status) -> String {
    let h = &s.host;
    let fixed = h.slots.workers.saturating_sub(h.slots.dynamic_workers);
    let mut out = format!(
        "host {} (pid {}, {} mode, generation {}, since {})\nshared memory {} bytes; slots: {} workers ({fixed} registered + {} for dynamic workers), {} connections (+{} reserved for status and stop)\n\n",
        h.state,
        h.pid,
        h.launch_mode,
        h.generation,
        h.started_at,
        h.shmem_bytes,
        h.slots.workers,
        h.slots.dynamic_workers,
        h.slots.connections,
        h.slots.reserved_connections
    );
    let rows: Vec<Vec<String>> = s
        .workers
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.worker_type.clone(),
                w.plugin.clone(),
                // issue 14: control
                origin_cell(w),
                // issue 15: isolated
                if w.isolated {
                    format!("{} (isolated)", w.state)
                } else {
                    w.state.clone()
                },
                w.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                w.restarts.to_string(),
                w.last_exit.as_ref().map(last_exit_cell).unwrap_or_else(|| "-".into()),
                w.activity.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    for p in &s.plugins {
        out.push_str(&format!("plugin {} {} ({})\n", p.name, p.version, p.file));
    }
    if let Some(r) = &s.last_reload {
        out.push_str(&format!("last reload: {} at {}", r.outcome, r.at));
        if !r.errors.is_empty() {
            out.push_str(&format!(
                " ({} error(s); `steward status --json` lists them)",
                r.errors.len()
            ));
        }
        out.push('\n');
    }
    if !s.pending_restart.is_empty() {
        out.push_str(&format!("pending restart: {}\n", s.pending_restart.join(", ")));
    }
    if !s.plugins.is_empty() || s.last_reload.is_some() || !s.pending_restart.is_empty() {
        out.push('\n');
    }
    out.push_str(&columns(
        &[
            "NAME",
            "TYPE",
            "PLUGIN",
            "ORIGIN",
            "STATE",
            "PID",
            "RESTARTS",
            "LAST EXIT",
            "ACTIVITY",
        ],
        &rows,
    ));
    // issue 15: status listeners
    if !s.listeners.is_empty() {
        let rows: Vec<Vec<String>> = s
            .listeners
            .iter()
            .map(|l| {
                vec![
                    l.address.clone(),
                    if l.isolated {
                        format!("{} (isolated)", l.handler)
                    } else {
                        l.handler.clone()
                    },
                    format!("{}/{}", l.open, l.max_connections),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(&["LISTENER", "HANDLER", "OPEN/MAX"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_host::shared::control::{ConfigProblem, HostInfo, ListenerInfo, Slots};

    fn report(outcome: &str) -> ReloadReport {
        ReloadReport {
            at: "2026-11-30T16:00:00.000Z".into(),
            outcome: outcome.into(),
            file: "/etc/steward/steward.toml".into(),
            applied: vec![],
            pending_restart: vec![],
            errors: vec![],
        }
    }

    #[test]
    fn a_reload_verdict_reads_as_what_happened() {
        let mut r = report("applied");
        r.applied = vec!["host.log_level".into()];
        r.pending_restart = vec!["plugins.hello.workers".into()];
        assert_eq!(
            format_reload(&r),
            "configuration reloaded from /etc/steward/steward.toml\napplied: host.log_level\n\
             needs a restart (running values kept): plugins.hello.workers\n"
        );
        assert!(format_reload(&report("applied")).contains("applied: nothing\n"));
        let mut r = report("refused");
        r.errors = vec![
            ConfigProblem {
                file: r.file.clone(),
                key: Some("plugins.hello.greeting".into()),
                reason: "expected a string, got 5".into(),
            },
            ConfigProblem {
                file: r.file.clone(),
                key: None,
                reason: "TOML parse error".into(),
            },
        ];
        assert!(!r.applied());
        assert_eq!(
            format_reload(&r),
            "configuration not reloaded: 2 error(s) in /etc/steward/steward.toml; the host keeps its running configuration\n\
             \x20 /etc/steward/steward.toml: plugins.hello.greeting: expected a string, got 5\n\
             \x20 /etc/steward/steward.toml: TOML parse error\n"
        );
    }
    #[test]
    fn show_lines_up_non_ascii_values() {
        let setting = |name: &str, value: &str| SettingInfo {
            name: name.into(),
            value: value.into(),
            default: String::new(),
            source: "default".into(),
            context: "reload".into(),
            pending_restart: false,
            description: String::new(),
        };
        let all = vec![
            setting("host.log_level", "info"),
            setting("plugins.hello.greeting", "grüße"),
            setting("plugins.hello2.x", "1"),
        ];
        let table = format_show(&all);
        // The SOURCE column starts at the same character in every row.
        let source_at: Vec<usize> = table
            .lines()
            .skip(1)
            .map(|l| l[..l.find("default").expect("a source")].chars().count())
            .collect();
        assert!(source_at.windows(2).all(|w| w[0] == w[1]), "{table}");
    }

    fn worker(name: &str, last_exit: Option<LastExit>) -> WorkerInfo {
        WorkerInfo {
            name: name.to_owned(),
            worker_type: "t".into(),
            plugin: "p".into(),
            function: "f".into(),
            pid: None,
            state: "stopped".into(),
            started_at: None,
            restarts: 0,
            last_exit,
            next_restart_at: None,
            launch_us: None,
            exits: vec![],
            start_time: "running".into(),
            waiting_for: None,
            activity: None,
            dynamic: false,
            slot: 0,
            generation: 1,
            launcher: None,
            isolated: false,
        }
    }

    fn exit(code: Option<i32>, signal: Option<i32>, reason: &str) -> Option<LastExit> {
        Some(LastExit {
            code,
            signal,
            at: "2026-01-01T00:00:00.000Z".into(),
            reason: reason.into(),
        })
    }

    fn table(workers: Vec<WorkerInfo>) -> String {
        format_table(&table_status(workers))
    }

    fn table_status(workers: Vec<WorkerInfo>) -> Status {
        Status {
            host: HostInfo {
                state: "running".into(),
                pid: 1,
                launch_mode: "fork".into(),
                started_at: "2026-01-01T00:00:00.000Z".into(),
                generation: 1,
                shmem_bytes: 4096,
                slots: Slots {
                    workers: 11,
                    connections: 16,
                    reserved_connections: 1,
                    connections_in_use: 1,
                    dynamic_workers: 8,
                    queued: 0,
                    reserved: Default::default(),
                    clients: 0,
                    clients_in_use: 0,
                    spares_waiting: 0,
                },
            },
            workers,
            plugins: vec![],
            last_reload: None,
            pending_restart: vec![],
            listeners: vec![],
        }
    }

    #[test]
    fn table_says_what_the_worker_slots_are() {
        assert!(table(vec![]).contains(
            "slots: 11 workers (3 registered + 8 for dynamic workers), 16 connections (+1 reserved for status and stop)"
        ));
    }

    #[test]
    fn last_exit_does_not_repeat_the_code() {
        let t = table(vec![
            worker("a", exit(Some(3), None, "exit code 3")),
            worker("b", exit(None, Some(11), "crashed: signal 11 (SIGSEGV)")),
            worker("c", exit(Some(0), None, "stopped by the host (exit code 0)")),
            worker("d", exit(Some(2), None, "testkit was told to exit 2")),
            worker("e", exit(Some(1), None, "")),
        ]);
        let cells: Vec<&str> = t
            .lines()
            .skip(4)
            .map(|l| {
                // The LAST EXIT cell comes just before the ACTIVITY column.
                let c: Vec<&str> = l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
                c[c.len() - 2]
            })
            .collect();
        assert_eq!(
            cells,
            [
                "exit code 3",
                "crashed: signal 11 (SIGSEGV)",
                "stopped by the host (exit code 0)",
                "code 2: testkit was told to exit 2",
                "code 1"
            ],
            "{t}"
        );
    }

    #[test]
    fn activity_is_the_last_column() {
        let mut busy = worker("busy", None);
        busy.activity = Some("copying batch 7 of 9".into());
        let t = table(vec![busy, worker("idle", None)]);
        let rows: Vec<&str> = t.lines().skip(3).collect();
        assert!(rows[0].ends_with("LAST EXIT  ACTIVITY"), "{t}");
        let at = rows[0].find("ACTIVITY").unwrap();
        assert_eq!(&rows[1][at..], "copying batch 7 of 9", "{t}");
        assert_eq!(&rows[2][at..], "-", "{t}");
    }

    // issue 14: control
    #[test]
    fn origin_says_static_or_who_launched_it() {
        let mut by_control = worker("job", None);
        by_control.dynamic = true;
        by_control.launcher = Some("control".into());
        let mut by_worker = worker("child", None);
        by_worker.dynamic = true;
        by_worker.launcher = Some("launcher-1".into());
        let t = table(vec![worker("fixed", None), by_control, by_worker]);
        let rows: Vec<&str> = t.lines().skip(3).collect();
        let at = rows[0].find("ORIGIN").expect("an ORIGIN column");
        let cell = |r: &str| r[at..].split("  ").next().unwrap().to_owned();
        assert_eq!(
            rows[1..].iter().map(|r| cell(r)).collect::<Vec<_>>(),
            ["static", "launched by control", "launched by launcher-1"],
            "{t}"
        );
    }

    // issue 15: isolated
    #[test]
    fn an_isolated_worker_is_marked_in_the_state_column() {
        let mut iso = worker("iso", None);
        iso.isolated = true;
        let t = table(vec![iso, worker("attached", None)]);
        let rows: Vec<&str> = t.lines().skip(3).collect();
        assert!(rows[1].contains(" stopped (isolated) "), "{t}");
        assert!(!rows[2].contains("isolated"), "{t}");
    }

    // issue 15: status listeners
    #[test]
    fn listeners_follow_the_workers_with_their_counts_and_the_isolated_one_marked() {
        assert!(!table(vec![worker("w", None)]).contains("LISTENER"));
        let listener = |address: &str, handler: &str, isolated: bool, open: u32| ListenerInfo {
            address: address.into(),
            handler: handler.into(),
            isolated,
            max_connections: 8,
            open,
        };
        let mut s = table_status(vec![worker("w", None)]);
        s.listeners = vec![
            listener("unix /srv/iso.sock", "kv.iso", true, 1),
            listener("tcp 127.0.0.1:7000", "kv.serve", false, 0),
        ];
        let t = format_table(&s);
        let rows: Vec<&str> = t.lines().skip_while(|l| !l.starts_with("LISTENER")).collect();
        assert_eq!(rows.len(), 3, "{t}");
        assert!(t.find("NAME").unwrap() < t.find("LISTENER").unwrap(), "{t}");
        assert!(rows[0].contains("HANDLER") && rows[0].contains("OPEN/MAX"), "{t}");
        assert!(rows[1].starts_with("unix /srv/iso.sock  kv.iso (isolated)  1/8"), "{t}");
        assert!(
            rows[2].starts_with("tcp 127.0.0.1:7000") && rows[2].contains(" kv.serve "),
            "{t}"
        );
        assert!(rows[2].ends_with("0/8") && !rows[2].contains("isolated"), "{t}");
    }

    /// JSON without `listeners` (from a host that predates them) still parses, as none.
    #[test]
    fn an_older_status_without_listeners_parses() {
        let mut v = serde_json::to_value(table_status(vec![])).unwrap();
        v.as_object_mut().unwrap().remove("listeners");
        let s: Status = serde_json::from_value(v).unwrap();
        assert!(s.listeners.is_empty());
    }

    #[test]
    fn columns_align_by_display_width() {
        let t = table(vec![
            worker("zürich-ß", None),
            worker("東京", None),
            worker("plain", None),
        ]);
        let col = |l: &str| {
            let at = l.find("t  ").expect("TYPE column");
            unicode_width::UnicodeWidthStr::width(&l[..at])
        };
        let lines: Vec<&str> = t.lines().skip(4).collect();
        let first = col(lines[0]);
        for l in &lines {
            assert_eq!(col(l), first, "misaligned:\n{t}");
        }
    }
}
