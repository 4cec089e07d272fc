//! What runs in a child process: the worker runtime, the connection server, the dead-end reply.
//!
//! Runs in: children only, started by [`crate::supervisor::launch::launch_child`] (fork mode) or by
//! [`crate::child::exec_main::child_main`] (exec mode).
//!
//! A child first makes sure it cannot outlive the supervisor (`PR_SET_PDEATHSIG` plus a check of
//! its parent, and the death pipe for `wait`), sets its own signal dispositions and only then
//! unblocks signals (it starts with them blocked, so none is lost or kills it early), tags its log
//! lines, and marks its child slot active (the dead-man flag). It clears the flag only on a clean
//! exit through `exit_clean`, so any other way out counts as a crash. Plugin code runs only in
//! worker children, only through a checked entry.
//!
//! A connection child serves its client's requests until the client closes, or sends no request
//! within [`control::REQUEST_TIMEOUT`] of the last answer; in the reserved connection slot (the
//! last one) it serves only `status` and `stop`. Every request byte is untrusted.

pub mod exec_main;

use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use steward::abi;

use crate::shared::control::{self, Request};
use crate::shared::handoff::{ChildEnv, ChildKind, ClientSocket, StartupData};
use crate::shared::protocol::ChildSlot;

/// Ends the process without unwinding or running atexit handlers of plugins.
pub fn exit(code: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions. libc's, because std has none: `process::exit` would run
    // atexit handlers (plugins' among them) in a copy of the supervisor.
    unsafe { libc::_exit(code) }
}

/// Clears the dead-man flag, records the reason, and exits with `code`.
fn exit_clean(slot: Option<&ChildSlot>, code: i32, reason: &str) -> ! {
    if let Some(s) = slot {
        s.deactivate(reason);
    }
    exit(code)
}

/// Runs a child of `kind` to completion and returns its exit code.
pub fn run(
    env: &ChildEnv<'_>,
    kind: ChildKind,
    child_slot: Option<u32>,
    startup: &StartupData,
    client: Option<ClientSocket>,
    prepare: impl FnOnce() -> Result<(), String>,
) -> i32 {
    // The supervisor decides how children stop: a terminal's Ctrl-C (SIGINT to the whole process
    // group) or hang-up (SIGHUP) must not kill them behind its back, which would read as a crash.
    // A write to a closed pipe or socket is an error, not a death (as in any Rust program).
    // Plugin code sees SIGHUP as a reload request; the flag is set even before its runtime exists
    // (exec-mode plugin loading), so no request is lost. Other kinds ignore it.
    let hup = if matches!(kind, ChildKind::Worker | ChildKind::Startup | ChildKind::Spare) {
        on_hup as *const () as libc::sighandler_t
    } else {
        libc::SIG_IGN
    };
    // Test-only (zero unless set): a signal sent to a new worker now must wait for the handlers
    // below.
    if kind == ChildKind::Worker {
        crate::sys::test_child_signal_delay();
    }
    crate::sys::reset_child_signals(&[
        (libc::SIGQUIT, on_quit as *const () as libc::sighandler_t),
        (libc::SIGINT, libc::SIG_IGN),
        (libc::SIGHUP, hup),
        (libc::SIGPIPE, libc::SIG_IGN),
    ]);
    if !crate::sys::die_with_parent(env.host_pid) {
        return 1;
    }
    // An exec-mode child checked the header when it mapped the segment; a forked one inherited
    // the mapping and checks it here, before relying on anything in it.
    if kind.info().attaches_shmem && env.cfg.launch_mode == crate::shared::config::LaunchMode::Fork {
        if let Err(e) = env.segment.check_header(env.generation, env.host_pid) {
            crate::shared::log::set_identity(kind.info().name, None);
            tracing::error!("{e}; exiting so that the host resets shared memory");
            exit(crate::shared::shmem::EXIT_CORRUPT_SEGMENT);
        }
    }
    let slot = match child_slot {
        Some(i) if kind.info().attaches_shmem => {
            let s = env.segment.child_slot(i);
            s.activate();
            Some(s)
        }
        _ => None,
    };
    // Exec mode loads plugins here, with the dead-man flag set, so a failure is this child's
    // reported reason (exit 2: not restarted in a loop).
    if let Err(reason) = prepare() {
        tracing::error!("cannot start: {reason}");
        // A spare that was already handed a worker (it re-executed after a plugin file changed)
        // fails as that worker: the reason goes to the worker's slot, which it has not claimed.
        if let (ChildKind::Spare, Some(s)) = (kind, slot) {
            if let Some(w) = s.assigned().filter(|w| *w < env.segment.layout.n_worker_slots) {
                env.segment.child_slot(w).set_reason(&reason);
            }
        }
        exit_clean(slot, 2, &reason);
    }
    match (kind, startup) {
        (ChildKind::Worker, StartupData::Worker { worker_slot }) => worker_main(env, slot, *worker_slot),
        (ChildKind::Startup, StartupData::Startup) => startup_main(env, slot),
        (ChildKind::Spare, StartupData::Spare) => spare_main(env, slot),
        (ChildKind::Connection, _) => {
            crate::shared::log::set_identity("connection", None);
            // The last connection slot is the reserved one (see `control::RESERVED_CONNECTIONS`).
            let layout = &env.segment.layout;
            let reserved = child_slot.is_some_and(|s| {
                layout.n_connection_slots > 0 && s == layout.connection_child_slot(layout.n_connection_slots - 1)
            });
            match client {
                Some(c) => connection_main(env, slot, c, reserved),
                None => exit_clean(slot, 2, "connection child without a client socket"),
            }
        }
        (ChildKind::DeadEnd, StartupData::DeadEnd { message, state }) => {
            crate::shared::log::set_identity("dead-end", None);
            if let Some(c) = client {
                dead_end_main(c, message, state.as_deref());
            }
            0
        }
        _ => exit_clean(slot, 2, "startup data does not match the child kind"),
    }
}

extern "C" fn on_quit(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe. Exit code 2 with the dead-man flag set: a crash, unless
    // the supervisor sent the SIGQUIT itself (crash reset or immediate shutdown).
    unsafe { libc::_exit(2) }
}

// ---- workers and the startup child: the runtime plugin code gets ----

static TERMINATE: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// The latch eventfd: signal handlers write to it, `wait` polls it.
static LATCH: AtomicI32 = AtomicI32::new(-1);

fn wake_latch() {
    let fd = LATCH.load(Ordering::Relaxed);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; an eventfd takes exactly 8 bytes.
        unsafe { libc::write(fd, &one as *const u64 as *const c_void, 8) };
    }
}

extern "C" fn on_term(_sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    TERMINATE.store(true, Ordering::SeqCst);
    wake_latch();
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

extern "C" fn on_hup(_sig: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    RELOAD.store(true, Ordering::SeqCst);
    wake_latch();
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

/// The context behind a [`abi::WorkerApi`].
struct WorkerCtx {
    latch: RawFd,
    death_fd: RawFd,
    host_gone: AtomicBool,
    host_pid: i32,
    /// The segment header's `consistent` flag, in the startup child only (null elsewhere).
    consistent: *const std::sync::atomic::AtomicU32,
}

// No `Sync` impl: nothing Rust checks ever shares a `WorkerCtx` (it reaches plugin code only as
// the table's `*mut c_void`). Plugin threads may still call the table's functions at once; that
// is sound because after creation the context is only read, but for `host_gone` (an atomic), and
// `consistent` points to an atomic in the segment, which stays mapped until the process exits.

impl WorkerCtx {
    fn check_host(&self, timeout_ms: i32) -> bool {
        if self.host_gone.load(Ordering::Relaxed) {
            return true;
        }
        let r = crate::sys::poll_in(&[self.death_fd], timeout_ms);
        if r[0] != 0 {
            self.host_gone.store(true, Ordering::Relaxed);
        }
        self.host_gone.load(Ordering::Relaxed)
    }
}

unsafe extern "C" fn api_should_stop(ctx: *mut c_void) -> u32 {
    // SAFETY: `ctx` is the leaked `WorkerCtx` this module created.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    (TERMINATE.load(Ordering::SeqCst) || c.check_host(0)) as u32
}

unsafe extern "C" fn api_reload_requested(_ctx: *mut c_void) -> u32 {
    RELOAD.load(Ordering::SeqCst) as u32
}

unsafe extern "C" fn api_declare_consistent(ctx: *mut c_void) {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    // SAFETY: non-null only in the startup child, where it points into the mapped header.
    if let Some(flag) = unsafe { c.consistent.as_ref() } {
        if flag.swap(1, Ordering::AcqRel) == 0 {
            tracing::info!("declared the host consistent");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.host_pid),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
    }
}

unsafe extern "C" fn api_wait(ctx: *mut c_void, timeout_us: u64) -> u32 {
    // SAFETY: as above.
    let c = unsafe { &*(ctx as *const WorkerCtx) };
    let deadline = std::time::Instant::now() + Duration::from_micros(timeout_us);
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            return abi::WAIT_TERMINATE;
        }
        if c.host_gone.load(Ordering::Relaxed) {
            return abi::WAIT_HOST_GONE;
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            crate::shared::reload::refresh_child_settings();
            return abi::WAIT_RELOAD;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let r = crate::sys::poll_in(&[c.latch, c.death_fd], ms);
        if r[1] != 0 {
            c.host_gone.store(true, Ordering::Relaxed);
            continue;
        }
        if r[0] != 0 {
            crate::sys::drain(c.latch);
            continue;
        }
        if std::time::Instant::now() >= deadline {
            return abi::WAIT_TIMEOUT;
        }
    }
}

fn leak_str(s: String) -> abi::Str {
    let s: &'static str = Box::leak(s.into_boxed_str());
    abi::Str::new(s)
}

/// What plugin code is told about itself.
struct Identity {
    name: String,
    worker_type: String,
    plugin: String,
    arg: u64,
    extra: Vec<u8>,
}

/// Sets up the runtime (latch, signal flags, regions) and builds the table plugin code gets.
fn runtime(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, who: Identity, startup: bool) -> &'static abi::WorkerApi {
    let regions = env.segment.regions(env.registry);
    crate::shared::hostapi::with_state(|s| s.regions = regions.into_iter().collect());
    let Ok(latch) = crate::sys::eventfd() else {
        exit_clean(slot, 1, "cannot create the latch eventfd");
    };
    LATCH.store(latch.as_raw_fd(), Ordering::SeqCst);
    // SAFETY: the handlers only touch atomics and call write(2).
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    let ctx: &'static WorkerCtx = Box::leak(Box::new(WorkerCtx {
        latch: latch.as_raw_fd(),
        death_fd: env.death_fd,
        host_gone: AtomicBool::new(false),
        host_pid: env.host_pid,
        consistent: if startup {
            &env.segment.header().consistent
        } else {
            std::ptr::null()
        },
    }));
    std::mem::forget(latch);
    let extra: &'static [u8] = Box::leak(who.extra.into_boxed_slice());
    Box::leak(Box::new(abi::WorkerApi {
        size: std::mem::size_of::<abi::WorkerApi>() as u32,
        _reserved: 0,
        ctx: ctx as *const WorkerCtx as *mut c_void,
        host: crate::shared::hostapi::table_for(abi::MODE_PRELOAD),
        name: leak_str(who.name),
        worker_type: leak_str(who.worker_type),
        plugin: leak_str(who.plugin),
        arg: who.arg,
        extra: extra.as_ptr(),
        extra_len: extra.len(),
        should_stop: api_should_stop,
        wait: api_wait,
        declare_consistent: api_declare_consistent,
        reload_requested: api_reload_requested,
    }))
}

fn worker_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, worker_slot: u32) -> i32 {
    if worker_slot >= env.segment.layout.n_worker_slots {
        exit_clean(slot, 2, "worker slot out of range");
    }
    let ws = env.segment.worker_slot(worker_slot);
    let name = ws.name.load();
    crate::shared::log::set_identity("worker", Some(&name));
    let (library, function) = (ws.library.load(), ws.function.load());
    let entry = match crate::shared::preload::resolve_entry(&library, &function) {
        Ok(e) => e,
        Err(reason) => {
            tracing::error!("cannot start: {reason}");
            exit_clean(slot, 2, &reason);
        }
    };
    let who = Identity {
        name,
        worker_type: ws.worker_type.load(),
        plugin: ws.plugin.load(),
        arg: ws.arg.load(Ordering::Relaxed),
        extra: ws.extra.load_bytes(),
    };
    let api = runtime(env, slot, who, false);
    crate::shared::hostapi::with_state(|s| s.failure = None);
    if let Some(s) = slot {
        s.mark_entered(crate::shared::shmem::monotonic_ns());
    }
    // SAFETY: `entry` passed the magic, ABI and fingerprint checks; the SDK's wrapper catches
    // panics inside the plugin.
    let code = unsafe { entry(api) };
    let reason = crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_default();
    exit_clean(slot, code, &reason)
}

/// Whether any loaded plugin's file is no longer the file that was loaded (compared with the
/// identity taken before loading, so a replacement during loading counts as a change).
fn plugin_files_changed() -> bool {
    crate::shared::preload::plugins()
        .iter()
        .any(|p| crate::shared::preload::file_id(&p.path) != Some(p.file_id))
}

/// A spare exec-mode child: plugins are loaded and the segment mapped; it waits to be handed a
/// worker slot, claims that worker's child slot (its dead-man flag) and becomes the worker. If a
/// plugin file changed since it was loaded, it executes itself again first, so the worker runs
/// (or fails on) the file as it is now, exactly like a freshly executed child.
fn spare_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>) -> i32 {
    crate::shared::log::set_identity("spare", None);
    let Some(own) = slot else {
        exit_clean(None, 2, "spare child without a slot")
    };

    // Plugins are loaded and the segment is mapped: this spare can take a worker now.
    own.mark_ready();
    // Blocks with no timeout: an idle host must not wake its spares (they would cost every idle
    // host a wake-up per spare and tick). Only three things end the wait: the supervisor's
    // hand-off (a store and a FUTEX_WAKE on `assign`), a signal (SIGHUP sets the reload flag,
    // SIGTERM and SIGQUIT end the process), and the host's death, which kills this process
    // through `PR_SET_PDEATHSIG` (set in `run`, after which the parent was checked, so a host
    // that died earlier was seen there). The parent check after each return is a cheap second
    // line, never a reason to wake.
    let worker_slot = loop {
        if let Some(w) = own.assigned() {
            break w;
        }
        own.wait_for_hand_over();
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != env.host_pid {
            exit(1);
        }
    };
    if worker_slot >= env.segment.layout.n_worker_slots {
        exit_clean(slot, 2, "spare handed a worker slot out of range");
    }
    if plugin_files_changed() {
        // The new image starts with default dispositions: block what the supervisor sends until
        // its handlers are in place, as for a spawned child (see `sys::spawn_blocked_signals`).
        let blocked = crate::sys::spawn_blocked_signals();
        // SAFETY: rewinding the blob fd this process kept open, blocking signals (restored by
        // the new image's `child::run`), then replacing the process image with the same program;
        // on failure execv returns and we report it.
        unsafe {
            libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
            libc::lseek(crate::shared::handoff::FD_BLOB, 0, libc::SEEK_SET);
            let argv = [c"steward".as_ptr(), c"child".as_ptr(), std::ptr::null()];
            libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr());
        }
        let reason = format!("cannot execute steward again: {}", std::io::Error::last_os_error());
        env.segment.child_slot(worker_slot).set_reason(&reason);
        exit_clean(slot, 2, &reason);
    }
    // SAFETY: the blob fd is ours and no longer needed.
    unsafe { libc::close(crate::shared::handoff::FD_BLOB) };
    let cs = env.segment.child_slot(worker_slot);
    cs.activate();
    if RELOAD.swap(false, Ordering::SeqCst) {
        // A reload arrived while this child waited: start the worker with the new values.
        crate::shared::reload::refresh_child_settings();
    }
    worker_main(env, Some(cs), worker_slot)
}

/// The startup child: runs every startup hook in registration order; the first that fails ends
/// the child with exit code 2 and a reason naming the hook, which stops the host.
fn startup_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>) -> i32 {
    crate::shared::log::set_identity("startup", None);
    let mut api = None;
    for h in &env.registry.hooks {
        crate::shared::log::set_identity("startup", Some(&h.name));
        if let Some(s) = slot {
            // Read by the supervisor only if this child dies without a clean exit.
            s.set_reason(&format!("startup hook {} (plugin {}) was running", h.name, h.plugin));
        }
        let run = match crate::shared::preload::resolve_hook(&h.library, &h.function) {
            Ok(r) => r,
            Err(reason) => exit_clean(
                slot,
                2,
                &format!("startup hook {} (plugin {}) failed: {reason}", h.name, h.plugin),
            ),
        };
        let who = Identity {
            name: h.name.clone(),
            worker_type: "startup".into(),
            plugin: h.plugin.clone(),
            arg: 0,
            extra: Vec::new(),
        };
        let table: &'static abi::WorkerApi = match api {
            None => runtime(env, slot, who, true),
            Some(prev) => {
                // Same runtime, new name for this hook.
                let prev: &'static abi::WorkerApi = prev;
                Box::leak(Box::new(abi::WorkerApi {
                    name: leak_str(who.name),
                    plugin: leak_str(who.plugin),
                    ..*prev
                }))
            }
        };
        api = Some(table);
        crate::shared::hostapi::with_state(|s| s.failure = None);
        tracing::info!("running startup hook {} (plugin {})", h.name, h.plugin);
        // SAFETY: `run` passed the magic, ABI and fingerprint checks; the SDK's wrapper catches
        // panics inside the plugin.
        let code = unsafe { run(table) };
        if code != 0 {
            let reason =
                crate::shared::hostapi::with_state(|s| s.failure.take()).unwrap_or_else(|| format!("exit code {code}"));
            exit_clean(
                slot,
                2,
                &format!("startup hook {} (plugin {}) failed: {reason}", h.name, h.plugin),
            );
        }
    }
    exit_clean(slot, 0, "")
}

// ---- connections ----

fn write_line(stream: &mut UnixStream, v: &serde_json::Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// The client's side of a connection, read against a deadline for the whole next request: a
/// timeout per `read` alone would let a client that trickles a byte every few seconds hold its
/// connection slot forever.
struct Deadline {
    stream: UnixStream,
    until: std::time::Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Serves one control connection. `reserved`: this child holds the connection slot kept for
/// `status` and `stop`, and refuses every other request.
fn connection_main(env: &ChildEnv<'_>, slot: Option<&ChildSlot>, client: ClientSocket, reserved: bool) -> i32 {
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let mut stream = UnixStream::from(client.fd);
    let me = nix::unistd::getuid();
    match nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) if cred.uid() == me.as_raw() || cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(
                "refused a control connection from uid {} (host runs as uid {})",
                cred.uid(),
                me
            );
            let _ = write_line(
                &mut stream,
                &control::error("permission denied: only the host's user or root may control it"),
            );
            exit_clean(slot, 0, "");
        }
        Err(e) => {
            tracing::warn!("cannot read peer credentials: {e}");
            exit_clean(slot, 0, "");
        }
    }
    let Ok(read_half) = stream.try_clone() else {
        exit_clean(slot, 0, "")
    };
    let mut reader = BufReader::new(Deadline {
        stream: read_half,
        until: std::time::Instant::now(),
    });
    // Each request must arrive whole within the timeout of the connection being served or of
    // the previous answer (PostgreSQL's `authentication_timeout`): an idle client gives its slot
    // back. Empty lines are not requests and do not extend it.
    let mut answered = true;
    loop {
        if answered {
            reader.get_mut().until = std::time::Instant::now() + control::REQUEST_TIMEOUT;
            answered = false;
        }
        let mut buf = Vec::new();
        match (&mut reader)
            .take(control::MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                tracing::debug!("closing an idle control connection");
                let _ = write_line(
                    &mut stream,
                    &control::error(&format!(
                        "no request within {}s: closing the connection",
                        control::REQUEST_TIMEOUT.as_secs()
                    )),
                );
                break;
            }
            Err(_) => break,
            Ok(_) => {}
        }
        if buf.len() > control::MAX_LINE {
            let _ = write_line(&mut stream, &control::error("request line too long"));
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let answer = match control::parse_request(line) {
            Ok(r) if reserved && !matches!(r, Request::Status | Request::Stop(_)) => control::error(&format!(
                "too many connections (max_connections = {}): this connection has the slot reserved for status and stop",
                env.cfg.max_connections
            )),
            Ok(Request::Status) => match serde_json::to_value(control::status_from_segment(env.segment)) {
                Ok(v) => control::ok(v),
                Err(e) => control::error(&e.to_string()),
            },
            Ok(Request::Reload { config }) => {
                control::serve_reload(env.segment, env.host_pid, &env.cfg.path, config.as_deref())
            }
            Ok(Request::Show { name }) => control::serve_show(env.segment, name.as_deref()),
            Ok(Request::Stop(mode)) => {
                let _ = write_line(
                    &mut stream,
                    &control::ok(serde_json::json!({"stopping": mode.as_str(), "pid": env.host_pid})),
                );
                tracing::info!("{} shutdown requested over the control socket", mode.as_str());
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(env.host_pid), mode.signal());
                answered = true;
                continue;
            }
            Err(msg) => control::error(&msg),
        };
        if write_line(&mut stream, &answer).is_err() {
            break;
        }
        answered = true;
    }
    exit_clean(slot, 0, "")
}

fn dead_end_main(client: ClientSocket, message: &str, state: Option<&str>) {
    crate::sys::set_blocking(client.fd.as_raw_fd());
    let mut stream = UnixStream::from(client.fd);
    let mut answer = control::error(message);
    if let Some(state) = state {
        answer["state"] = state.into();
    }
    let _ = write_line(&mut stream, &answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the line before the socket goes away; never wait long.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
