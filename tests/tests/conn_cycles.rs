//! Many client connections, one after the other, leave nothing behind (issue 15: connection
//! benchmarks): 200 cycles of connect, one request line, its answer, close against testkit's
//! echo handler; the supervisor's open fds and the client slots in use are the same after as
//! before. Memory is the benchmark's figure (`bench conncycle1000`), not asserted here: 200
//! cycles are too few to tell a leak from the allocator's noise. Both launch modes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use steward_tests::*;

const CYCLES: usize = 200;
const T: Duration = Duration::from_secs(60);

/// One connect-request-close cycle: the answer line proves the client child served it.
fn cycle(path: &std::path::Path, i: usize) {
    let mut s = UnixStream::connect(path).unwrap_or_else(|e| panic!("cycle {i}: connect: {e}"));
    s.set_read_timeout(Some(T)).unwrap();
    writeln!(s, "hello {i}").unwrap_or_else(|e| panic!("cycle {i}: send: {e}"));
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("cycle {i}: answer: {e}"));
    assert_eq!(line, format!("hello {i}\n"), "cycle {i}");
}

fn connection_cycles_leave_no_fd_and_no_slot_behind(mode: Mode) {
    let host = Host::start(
        Spec::new(mode)
            .testkit("")
            // Room for the children of sessions the client has closed but the host has not reaped
            // yet: a cycle is quicker than an exit, and a client over the cap is refused.
            .host("max_client_connections = 64")
            .listen("handler = \"testkit.echo\"\nunix = \"echo.sock\""),
    );
    let path = host.dir.path().join("echo.sock");
    let supervisor = host.status().host.pid as i32;
    // Ten warm-up cycles first, so whatever a first client sets up once is already there.
    for i in 0..10 {
        cycle(&path, i);
    }
    // Idle: every client child reaped and the spare pool refilled (each waiting spare's channel
    // is an fd in the supervisor), an event to wait for rather than a sample to hope for.
    let idle = |s: &Status| s.host.slots.clients_in_use == 0 && s.host.slots.spares_waiting == 2;
    let s = host.wait_for("the warm-up's client children reaped, the spares back", T, idle);
    assert_eq!(s.host.slots.clients, 64);
    let before = Holdings::settled(supervisor, T);
    for i in 0..CYCLES {
        cycle(&path, i);
    }
    // The last session's child may still be exiting: poll for its slot to be freed.
    host.wait_for("every client slot free again, the spares back", T, idle);
    let after = Holdings::settled(supervisor, T);
    assert_eq!(
        after.fds,
        before.fds,
        "supervisor fds grew over {CYCLES} cycles: {before:?} -> {after:?}: {:#?}",
        Holdings::fd_list(supervisor)
    );
    assert_eq!(host.status().host.pid as i32, supervisor, "the supervisor was replaced");
    assert!(!host.log_text().contains("ERROR"), "{}", host.log_text());
}

both_modes!(connection_cycles_leave_no_fd_and_no_slot_behind);
