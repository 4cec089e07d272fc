//! The core driven with synthetic time and no process: every host-state transition, every exit
//! outcome per restart policy, backoff, crash-loop limits, crashes during start-up, shutdown and
//! reset, the shutdown escalation, and the worker table's keys.
//!
//! Each scenario is a plain function listed in `scenarios!`, which makes a `#[test]` of each and
//! lets `every_row_of_the_table_is_exercised` run them all on one thread and check that every
//! (row, state) pair of [`ROWS`] fired; a row that fires from a state its row does not list fails
//! whichever scenario takes it.

// issue 15: client spares
mod client_spares;
mod dynamic;
// issue 15: isolated
mod isolated;
// issue 15: isolated handlers
mod isolated_handlers;
mod notify;
mod outcomes;
// issue 14: queue
mod queue;
mod readiness;
mod reset;
mod seginit;
mod shutdown;
mod states;

use std::time::Duration;

use super::rows::{take_fired, Row, State, ROWS};
use super::*;
use crate::shared::registry::{Registry, RestartPolicy, StartTime};
use crate::shared::shmem::Layout;
use crate::supervisor::pool::ChildSlotPool;
use client_spares::*;
use dynamic::*;
use isolated::*;
use isolated_handlers::*;
use notify::*;
use outcomes::*;
use queue::*;
use readiness::*;
use reset::*;
use seginit::*;
use shutdown::*;
use states::*;

const SEC: Duration = Duration::from_secs(1);

fn spec(name: &str, restart: RestartPolicy, start_time: StartTime) -> WorkerSpec {
    WorkerSpec {
        name: name.to_owned(),
        worker_type: "test".to_owned(),
        plugin: "test".to_owned(),
        library: "test".to_owned(),
        function: "run".to_owned(),
        start_time,
        restart,
        crash_loop: None,
        arg: 0,
        extra: Vec::new(),
        needs_ready: false,
        isolated: false,
        start_after: Vec::new(),
        stop_with_launcher: false,
    }
}

fn after(d: Duration) -> RestartPolicy {
    RestartPolicy::After(d)
}

fn settings() -> Settings {
    Settings {
        shutdown_timeout: 5 * SEC,
        crash_kill_timeout: 2 * SEC,
        restart_after_crash: true,
    }
}

/// Plays the event loop: answers the actions whose result the core waits for (as the real loop
/// does, before any other event) and records everything the core asked for.
struct Driver {
    core: Core,
    /// The slots children get, as the loop's pool hands them out.
    pool: ChildSlotPool,
    now: Now,
    next_pid: i32,
    /// Every action so far, in order (answers included).
    log: Vec<Action>,
    launch_fails: bool,
    startup_fails: bool,
    segment_fails: bool,
    startup_pid: Option<i32>,
    /// Each state told to the service manager, with the segment generation the loop would name
    /// in its `STATUS=` line at that moment.
    notified: Vec<(HostState, u64)>,
}

impl Driver {
    fn new(specs: Vec<WorkerSpec>, hooks: bool) -> Driver {
        Driver::with(specs, hooks, settings())
    }

    fn with(specs: Vec<WorkerSpec>, hooks: bool, settings: Settings) -> Driver {
        let max = specs.len() as u32 + 2;
        // issue 15: client spares: two client slots, for a spare handed a client.
        let layout = Layout::compute_with_clients(&Registry::default(), max, 4, 2);
        Driver {
            core: Core::new(settings, specs, max, hooks).unwrap(),
            pool: ChildSlotPool::new(&layout, 1, true).unwrap(),
            now: Now {
                mono: Instant::now(),
                wall_ms: 1_000_000,
            },
            next_pid: 100,
            log: Vec::new(),
            launch_fails: false,
            startup_fails: false,
            segment_fails: false,
            startup_pid: None,
            notified: Vec::new(),
        }
    }

    /// Feeds `e`; returns the actions it led to (answers included).
    fn ev(&mut self, e: Event<'_>) -> Vec<Action> {
        let mut out = Actions::new().unwrap();
        self.core.handle(e, self.now, &mut out);
        let mut i = 0;
        while i < out.len() {
            let a = std::mem::take(&mut out[i]);
            let now = self.now;
            match &a {
                Action::Launch(key) => {
                    if self.launch_fails {
                        let error = std::io::Error::from_raw_os_error(libc::EAGAIN);
                        self.core.handle(
                            Event::LaunchFailed {
                                key: *key,
                                error: &error,
                            },
                            now,
                            &mut out,
                        );
                    } else {
                        let pid = self.pid();
                        let key = *key;
                        let slot = self
                            .pool
                            .acquire_worker(key.slot)
                            .expect("a worker's slot is free at launch");
                        let launched = Event::Launched {
                            key,
                            pid,
                            slot,
                            spare: None,
                        };
                        self.core.handle(launched, now, &mut out);
                    }
                }
                Action::StartStartup => {
                    if self.startup_fails {
                        let error = std::io::Error::from_raw_os_error(libc::ENOMEM);
                        self.core.handle(Event::StartupFailed { error: &error }, now, &mut out);
                    } else {
                        let pid = self.pid();
                        self.startup_pid = Some(pid);
                        let slot = self.pool.acquire(ChildKind::Startup).expect("the startup slot is free");
                        let started = Event::ChildStarted { pid, slot };
                        self.core.handle(started, now, &mut out);
                    }
                }
                Action::ScanAdopted => self.core.handle(Event::Scanned, now, &mut out),
                Action::NotifyState(s) => self.notified.push((*s, self.core.generation())),
                Action::CreateSegment { .. } if self.segment_fails => {
                    let error = "no memory".to_owned();
                    self.core.handle(Event::SegmentFailed { error }, now, &mut out);
                }
                Action::CreateSegment { .. } => self.core.handle(Event::SegmentCreated, now, &mut out),
                _ => {}
            }
            out[i] = a;
            i += 1;
        }
        self.log.extend(out.iter().map(clone_action));
        out.iter().map(clone_action).collect()
    }

    fn pid(&mut self) -> i32 {
        self.next_pid += 1;
        self.next_pid
    }

    fn pass(&mut self, d: Duration) -> Vec<Action> {
        self.now = self.now.plus(d);
        self.ev(Event::Deadline)
    }

    /// Starts a child the loop starts on its own (connection, dead-end, spare).
    fn child(&mut self, kind: ChildKind) -> i32 {
        let pid = self.pid();
        let slot = self.pool.acquire(kind).expect("a free slot of the kind");
        self.ev(Event::ChildStarted { pid, slot });
        pid
    }

    fn exit(&mut self, pid: i32, status: ExitStatus, dead_man: bool, reason: &str) -> Vec<Action> {
        let slot = SlotCopy {
            dead_man,
            reason: reason.to_owned(),
            launch_us: Some(70),
            ..SlotCopy::default()
        };
        self.exit_slot(pid, status, slot)
    }

    // issue 15: isolated
    /// As [`Driver::exit`], with the whole slot copy the loop would read.
    fn exit_slot(&mut self, pid: i32, status: ExitStatus, slot: SlotCopy) -> Vec<Action> {
        // Given back before the exit is fed, as the loop does.
        if let Some(c) = self.core.child(pid).copied() {
            self.pool.release(c.slot).unwrap();
            if let Some(s) = c.spare {
                self.pool.release(s).unwrap();
            }
        }
        self.ev(Event::ChildExited { pid, status, slot })
    }

    fn key(&self, slot: u32) -> WorkerKey {
        self.core.workers().find(|w| w.key.slot == slot).unwrap().key
    }

    fn run(&self, slot: u32) -> &WorkerRun {
        &self.core.worker(self.key(slot)).unwrap().run
    }

    fn pid_of(&self, slot: u32) -> i32 {
        self.run(slot).pid.expect("the worker runs")
    }

    fn state_of(&self, slot: u32) -> WorkerState {
        self.run(slot).state
    }

    /// Every live child exits as the signal the host sent it makes it.
    fn all_exit(&mut self, sig: i32) -> Vec<Action> {
        let pids: Vec<i32> = self.core.children().map(|(p, _)| p).collect();
        let mut all = Vec::new();
        for pid in pids {
            all.extend(self.exit(pid, ExitStatus::Signal(sig), true, ""));
        }
        all
    }

    fn started(specs: Vec<WorkerSpec>) -> Driver {
        let mut d = Driver::new(specs, false);
        d.ev(Event::Start);
        d.ev(Event::Deadline);
        d
    }
}

fn clone_action(a: &Action) -> Action {
    match a {
        Action::Done => Action::Done,
        Action::Launch(k) => Action::Launch(*k),
        Action::StartStartup => Action::StartStartup,
        Action::Signal { pid, sig } => Action::Signal { pid: *pid, sig: *sig },
        Action::ScanAdopted => Action::ScanAdopted,
        Action::CreateSegment { generation } => Action::CreateSegment {
            generation: *generation,
        },
        Action::PublishWorker(k) => Action::PublishWorker(*k),
        Action::PublishState(s) => Action::PublishState(*s),
        Action::NotifyState(s) => Action::NotifyState(*s),
        Action::Log(l, t) => Action::Log(*l, t.clone()),
        Action::Exit(c) => Action::Exit(*c),
        Action::PublishRegistration(k) => Action::PublishRegistration(*k),
        Action::Answer { to, seq, answer } => Action::Answer {
            to: *to,
            seq: *seq,
            answer: answer.clone(),
        },
        Action::Retire(k) => Action::Retire(*k),
        Action::SetLatch { child_slot, pid } => Action::SetLatch {
            child_slot: *child_slot,
            pid: *pid,
        },
    }
}

/// The signals asked for, in pid order (the child table has no order of its own).
fn signals(actions: &[Action]) -> Vec<(i32, Signal)> {
    let mut v: Vec<(i32, Signal)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { pid, sig } => Some((*pid, *sig)),
            _ => None,
        })
        .collect();
    v.sort_by_key(|(pid, _)| *pid);
    v
}

fn launches(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Launch(_))).count()
}

fn logged(actions: &[Action], text: &str) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Log(_, t) if t.contains(text)))
}

fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        const SCENARIOS: &[(&str, fn())] = &[$((stringify!($name), $name)),*];
        mod each {
            $(#[test]
            fn $name() {
                super::$name()
            })*
        }
    };
}

scenarios! {
    start_without_hooks_runs_at_once_and_launches,
    start_times_gate_workers_through_startup_and_consistent,
    a_startup_child_that_cannot_start_stops_the_host,
    a_failed_startup_hook_stops_the_host_immediately,
    every_exit_outcome_under_every_policy,
    the_exit_reasons_follow_the_contract,
    backoff_grows_to_its_cap_and_resets_after_a_long_run,
    a_crash_loop_limit_fails_the_worker,
    a_launch_failure_retries_after_a_second,
    launches_come_in_bounded_batches,
    a_crash_resets_the_host_and_restarts_by_policy,
    status_names_the_crashed_segment_until_the_new_one_exists,
    a_reset_stops_a_never_worker_that_was_waiting_and_leaves_unstarted_ones,
    a_crash_during_startup_resets_and_starts_up_again,
    a_crash_during_a_reset_startup_resets_again_with_a_new_generation,
    a_failed_segment_stops_the_host,
    restart_after_crash_off_stops_the_host,
    children_of_other_kinds_crash_or_not_as_their_kind_says,
    smart_escalates_to_fast_to_immediate_to_sigkill,
    smart_signals_once_the_last_connection_ends,
    a_stop_cancels_pending_restarts_and_first_starts,
    exits_while_stopping_are_stops,
    a_stop_while_recovering_stops,
    a_stop_with_nothing_running_exits_after_one_scan,
    an_applied_reload_passes_sighup_and_new_timeouts,
    workers_are_keyed_by_slot_and_a_generation_that_never_repeats,
    events_that_change_nothing_change_nothing_in_every_state,
    a_spare_and_a_connection_end_in_every_state_as_their_signal_says,
    an_unsignalled_child_that_crashes_resets_or_is_ignored_by_a_smart_wait,
    the_startup_child_ends_start_up_only_while_the_host_is_up,
    stops_in_every_state,
    events_for_a_worker_the_table_no_longer_has_change_nothing,
    a_launch_that_fails_again_waits_again,
    a_worker_added_at_run_time_that_failed_is_removed,
    // issue 14: segment init
    segment_init_holds_every_worker_until_the_segment_is_ready,
    segment_init_without_startup_hooks_runs_once_ready,
    a_failed_segment_init_stops_the_host_naming_the_hook,
    every_reset_initialises_its_new_segment_first,
    // issue 14: readiness
    start_after_waits_for_its_target_to_declare_itself_ready,
    a_target_that_exits_makes_its_dependents_wait_again,
    after_a_crash_reset_dependents_wait_for_the_new_target,
    // issue 14: dynamic workers
    requests_are_adopted_or_refused_while_up_and_answered_not_running_otherwise,
    a_terminate_stops_a_worker_for_good_in_each_state,
    a_reset_retires_stopped_dynamic_workers_and_restarts_the_others,
    // issue 15: isolated
    an_isolated_crash_restarts_only_that_worker_and_never_resets,
    an_isolated_crash_counts_against_the_crash_loop_limit,
    an_isolated_crash_under_never_fails_it_alone,
    an_attached_crash_beside_an_isolated_worker_still_resets_both,
    // issue 14: notifications
    duplicate_names_and_unknown_targets_are_refused_while_up,
    a_launcher_is_told_when_its_workers_stop_or_fail_to_launch,
    the_startup_child_launches_from_its_own_request_slot,
    stop_with_launcher_workers_end_with_it_in_every_state,
    a_reset_stops_stop_with_launcher_workers_for_good,
    // issue 14: queue
    admission_keeps_reserved_slots_for_their_plugin,
    a_freed_slot_serves_the_queue_in_order_skipping_what_admission_refuses,
    a_queued_request_expires_at_its_timeout_and_its_deadline_wakes_the_loop,
    a_queued_request_whose_requester_exited_or_asked_again_is_dropped,
    requests_queued_when_the_host_stops_being_up_are_answered_not_running,
    an_adopted_worker_whose_request_was_cancelled_is_stopped_before_it_runs,
    a_dynamic_launch_failure_stops_it_with_the_errno_and_frees_the_slot,
    // issue 15: isolated
    evidence_against_the_segment_from_an_isolated_worker_resets_the_host,
    // review: launch queue
    a_new_request_never_takes_a_freed_slot_ahead_of_the_queue,
    // review: start_after keys
    a_dynamic_dependent_never_follows_its_retired_targets_slot,
    // issue 15: isolated handlers
    an_isolated_handlers_crash_ends_only_its_connection_in_every_state,
    evidence_against_the_segment_from_an_isolated_handler_resets_the_host,
    an_attached_handlers_crash_still_resets_the_host,
    // issue 15: client spares
    a_spare_killed_before_taking_its_client_ends_only_that_client,
    a_handed_spare_the_host_signalled_is_stopped_not_blamed,
    // review: plugin connections
    a_child_started_while_stopping_gets_the_signal_the_rest_got,
}

#[test]
fn every_row_of_the_table_is_exercised() {
    take_fired();
    for (_, scenario) in SCENARIOS {
        scenario();
    }
    let fired = take_fired();
    let missed: Vec<String> = ROWS
        .iter()
        .flat_map(|r| r.from.iter().map(move |s| (r.row, *s)))
        .filter(|pair| !fired.contains(pair))
        .map(|(row, s)| format!("{row:?} from {s}"))
        .collect();
    assert!(missed.is_empty(), "(row, state) pairs no scenario takes: {missed:?}");
    // And the table lists each row once, each of its states once, all of the host's or all of a
    // worker's.
    let mut rows: Vec<Row> = ROWS.iter().map(|r| r.row).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), ROWS.len());
    for r in ROWS {
        assert!(!r.from.is_empty(), "{:?} leaves no state", r.row);
        for (i, s) in r.from.iter().enumerate() {
            assert!(!r.from[..i].contains(s), "{:?} lists {s} twice", r.row);
            let worker = |s: &State| matches!(s, State::Worker(_));
            assert_eq!(
                worker(s),
                worker(&r.from[0]),
                "{:?} mixes host and worker states",
                r.row
            );
        }
    }
}

/// docs/architecture.md shows the table as `rows::render` renders it.
#[test]
fn the_architecture_document_shows_this_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md");
    let doc = std::fs::read_to_string(path).expect("docs/architecture.md");
    for workers in [false, true] {
        let table = super::rows::render(workers);
        assert!(
            doc.contains(&table),
            "docs/architecture.md does not show the {} rows as core/rows.rs has them:\n{table}",
            if workers { "worker" } else { "host" }
        );
    }
}

// ---- the action buffer ----

#[test]
fn actions_past_the_room_move_to_the_heap_in_order() {
    let mut out = Actions::new().unwrap();
    for i in 0..Actions::ROOM + 50 {
        out.push(Action::Exit(i as i32));
        assert_eq!(out.spilled(), i >= Actions::ROOM, "{i}");
    }
    assert_eq!(out.len(), Actions::ROOM + 50);
    assert!(out.iter().enumerate().all(|(i, a)| *a == Action::Exit(i as i32)));
    out.clear();
    out.push(Action::ScanAdopted);
    assert!(!out.spilled(), "a new turn starts in the private room");
    assert_eq!(*out, [Action::ScanAdopted]);
}

/// The one kind of turn that forks more than once fits the private room, so its launches write
/// no page a fork shares.
#[test]
fn a_batch_of_failed_launches_fits_the_private_room() {
    let specs = (0..100)
        .map(|i| spec(&format!("w{i}"), after(SEC), StartTime::HostStart))
        .collect();
    let mut d = Driver::new(specs, false);
    d.launch_fails = true;
    d.ev(Event::Start);
    let a = d.ev(Event::Deadline);
    assert_eq!(launches(&a), LAUNCH_BATCH);
    assert!(a.len() <= Actions::ROOM, "{} actions", a.len());
}

/// A turn that outgrows the room maps no memory: pushing cannot fail where `mmap` does. The
/// child denies itself `mmap` (ENOMEM) with a seccomp filter, then pushes four rooms' worth.
#[test]
fn a_turn_past_the_room_maps_no_memory() {
    let n = 4 * Actions::ROOM;
    // SAFETY: the child touches only its own buffer and the allocator (which glibc's fork leaves usable
    // in the child of a threaded process) and ends with `_exit`, never returning to the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // Its own: the private room is not inherited (`MADV_DONTFORK`).
        let made = Actions::new();
        let code = match made.map(|out| (out, deny_mmap())) {
            Err(_) | Ok((_, Err(_))) => 2,
            Ok((mut out, Ok(()))) => {
                let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    for i in 0..n {
                        out.push(Action::Exit(i as i32));
                    }
                    out.len() == n && out.iter().enumerate().all(|(i, a)| *a == Action::Exit(i as i32))
                }));
                match pushed {
                    Ok(true) => 0,
                    _ => 1,
                }
            }
        };
        // SAFETY: ends the child without running the parent's destructors or harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above, into a local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status), "the child died: status {status:#x}");
    match libc::WEXITSTATUS(status) {
        0 => {}
        2 => panic!("the child could not make its buffer or install its seccomp filter"),
        c => panic!("pushing past the room failed without mmap (child exit {c})"),
    }
}

/// Makes every later `mmap` of this process fail with ENOMEM.
fn deny_mmap() -> std::io::Result<()> {
    use libc::{sock_filter, sock_fprog, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let op = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut prog = [
        // The syscall number: the first word of `struct seccomp_data`.
        op(BPF_LD | BPF_W | BPF_ABS, 0, 0, 0),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, libc::SYS_mmap as u32),
        op(BPF_RET | BPF_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOMEM as u32),
        op(BPF_RET | BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; the filter program outlives the call that copies it.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
