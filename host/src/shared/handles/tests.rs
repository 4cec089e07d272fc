//! The request slot's protocol and the handles' reading of a segment, driven step by step:
//! each interleaving of requester and supervisor the word must decide is a test here.

use super::*;
use crate::shared::registry::{RestartPolicy, StartTime};

pub(super) fn spec() -> WorkerSpec {
    WorkerSpec {
        name: "w".repeat(steward::abi::MAX_NAME_LEN),
        worker_type: "t".repeat(steward::abi::MAX_TYPE_LEN),
        plugin: "p".repeat(steward::abi::MAX_LIBRARY_LEN),
        library: "l".repeat(steward::abi::MAX_LIBRARY_LEN),
        function: "f".repeat(steward::abi::MAX_FUNCTION_LEN),
        start_time: StartTime::Running,
        restart: RestartPolicy::After(Duration::from_secs(7 * 86_400)),
        crash_loop: Some(crate::shared::registry::CrashLoopLimit {
            max: u32::MAX,
            window: Duration::from_secs(7 * 86_400),
        }),
        arg: u64::MAX,
        extra: vec![255; steward::abi::EXTRA_LEN],
        needs_ready: true,
        start_after: (0..steward::abi::MAX_START_AFTER)
            .map(|i| format!("{i}").repeat(steward::abi::MAX_NAME_LEN))
            .collect(),
        stop_with_launcher: true,
        isolated: false,
    }
}

#[test]
fn the_longest_registration_fits_and_round_trips() {
    let s = spec();
    let doc = encode(&s).unwrap();
    assert!(doc.len() <= SPEC_LEN, "{} bytes", doc.len());
    assert_eq!(decode(&doc).unwrap(), s);
}

#[test]
fn a_scribbled_request_is_refused_naming_the_field() {
    let e = decode(b"{\"name\": 5}").unwrap_err();
    assert!(e.contains("does not decode"), "{e}");
    let mut s = spec();
    s.function = "no spaces allowed".into();
    let e = decode(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert!(e.contains("function"), "{e}");
    s.function = "f".into();
    s.extra = vec![0; steward::abi::EXTRA_LEN + 1];
    let e = decode(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert!(e.contains("extra"), "{e}");
    s.extra = Vec::new();
    // issue 14: notifications
    // Readiness, start_after and stop_with_launcher travel with a dynamic worker.
    s.needs_ready = true;
    s.start_after = vec!["target".into()];
    s.stop_with_launcher = true;
    assert_eq!(decode(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
    s.start_after = vec![s.name.clone()];
    let e = decode(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert!(e.contains("after itself"), "{e}");
    // issue 15: isolated (a requester may not make the supervisor launch one)
    s.start_after = Vec::new();
    s.isolated = true;
    let e = decode(&serde_json::to_vec(&s).unwrap()).unwrap_err();
    assert!(e.contains("isolation is for static workers"), "{e}");
    // Cut at the bounded length: never read past the text.
    let r = zeroed_slot();
    r.spec.store_bytes(&[b'{'; SPEC_LEN + 10]);
    r.state.store(REQ_REQUESTED, Ordering::Relaxed);
    let (_, got, _) = take_request(&r).unwrap();
    assert!(got.is_err());
}

// issue 14: control
#[test]
fn by_name_finds_live_slots_only_and_bounds_the_name() {
    use crate::shared::shmem::{Layout, StatusSnapshot};
    let layout = Layout::compute(&crate::shared::registry::Registry::default(), 3, 1);
    let cfg =
        crate::shared::config::Config::parse(std::path::Path::new("t.toml"), "[host]\npreload_plugins = []\n").unwrap();
    let seg = Segment::create(&layout, &[], &[], &cfg, 1, 0).unwrap();
    let publish = |i: u32, name: &str, generation: u64| {
        let mut w = spec();
        w.name = name.into();
        seg.publish_launched(i, &w, "control");
        seg.worker_slot(i).status.publish(&StatusSnapshot {
            generation,
            ..StatusSnapshot::default()
        });
    };
    publish(1, "job", 7);
    publish(2, "other", 9);
    assert_eq!(by_name_in(&seg, "job"), Ok(Some((1, 7))));
    assert_eq!(by_name_in(&seg, "other"), Ok(Some((2, 9))));
    assert_eq!(by_name_in(&seg, "nobody"), Ok(None));
    assert_eq!(by_name_in(&seg, ""), Ok(None));
    // A retired slot keeps its name and status for handles, but is not live.
    seg.retire_worker(1);
    assert_eq!(by_name_in(&seg, "job"), Ok(None));
    // A name past the bound never matches a (bounded) stored one, cut or not.
    let long = "o".repeat(steward::abi::MAX_NAME_LEN + 1);
    publish(0, &long, 3);
    assert_eq!(by_name_in(&seg, &long), Ok(None));
    // A slot whose status says no worker (generation 0) gives no handle.
    publish(0, "unborn", 0);
    assert_eq!(by_name_in(&seg, "unborn"), Ok(None));
}

/// A request slot as a fresh segment has it.
fn zeroed_slot() -> RequestSlot {
    // SAFETY: `RequestSlot` is `repr(C)` and made of atomics and `Text`s (atomics too), all
    // of which are valid as zero bytes: the state a new segment's slot starts in.
    unsafe { std::mem::zeroed() }
}

fn doc() -> Vec<u8> {
    let mut s = spec();
    s.start_after = Vec::new();
    encode(&s).unwrap()
}

/// The requester's side with no time left: it cancels, or learns the answer or the drop.
fn give_up(r: &RequestSlot, seq: u32) -> Result<(), LaunchFail> {
    await_answer(r, seq, Duration::ZERO, || false)
}

#[test]
fn an_answer_after_a_cancel_frees_the_slot_and_a_stale_seq_is_ignored() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    assert!(answer(&r, s1, &Answer::NoFreeSlot { used: 3, max: 3 }));
    assert_eq!(request_state(&r), REQ_ANSWERED);
    assert_eq!(read_answer(&r, s1), Err(LaunchFail::NoFreeSlot { used: 3, max: 3 }));
    let s2 = write_request(&r, &doc(), None);
    assert_eq!(give_up(&r, s2), Err(LaunchFail::TimedOut(Duration::ZERO)));
    // issue 14: queue: the supervisor learns the answer was not delivered.
    assert!(!answer(&r, s2, &Answer::HostNotRunning));
    assert_eq!(request_state(&r), REQ_FREE);
    let s3 = write_request(&r, &doc(), None);
    assert!(!answer(&r, s1, &Answer::HostNotRunning));
    assert_eq!(request_state(&r), REQ_REQUESTED);
    assert_eq!(take_request(&r).map(|t| t.0), Some(s3));
}

#[test]
fn a_cancel_and_a_new_request_inside_the_answer_window_keep_the_new_request() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    let (seq, _, _) = take_request(&r).unwrap();
    assert_eq!(seq, s1);
    // The supervisor checked the seq and writes its answer; meanwhile the requester's
    // deadline passes, it cancels and asks again.
    write_answer(&r, &Answer::Adopted { slot: 5, generation: 9 });
    assert_eq!(give_up(&r, s1), Err(LaunchFail::TimedOut(Duration::ZERO)));
    let s2 = write_request(&r, &doc(), Some(Duration::from_secs(1)));
    assert_ne!(s1, s2);
    // The old answer is not delivered (so the supervisor undoes the orphan), and the new
    // request is neither answered with it nor wiped.
    assert!(!deliver(&r, s1));
    assert_eq!(request_state(&r), REQ_REQUESTED);
    let (seq, spec, queue) = take_request(&r).unwrap();
    assert_eq!((seq, queue), (s2, Some(Duration::from_secs(1))));
    assert!(spec.is_ok());
    assert!(answer(&r, s2, &Answer::NoFreeSlot { used: 1, max: 1 }));
    assert_eq!(give_up(&r, s2), Ok(()));
    assert_eq!(read_answer(&r, s2), Err(LaunchFail::NoFreeSlot { used: 1, max: 1 }));
    assert_eq!(request_state(&r), REQ_FREE);
}

#[test]
fn a_cancel_inside_the_answer_window_frees_the_slot() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    write_answer(&r, &Answer::HostNotRunning);
    assert_eq!(give_up(&r, s1), Err(LaunchFail::TimedOut(Duration::ZERO)));
    assert!(!deliver(&r, s1));
    assert_eq!(request_state(&r), REQ_FREE);
}

#[test]
fn an_answer_in_the_cancel_instant_wins() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    assert!(answer(&r, s1, &Answer::HostNotRunning));
    assert_eq!(give_up(&r, s1), Ok(()));
    assert_eq!(read_answer(&r, s1), Err(LaunchFail::HostNotRunning));
}

#[test]
fn a_dropped_request_ends_the_wait_with_an_error() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    drop_request(&r);
    assert_eq!(request_state(&r), REQ_FREE);
    // At once, however long the requester would have waited: no answer comes.
    let t = Instant::now();
    assert_eq!(
        await_answer(&r, s1, Duration::from_secs(10), || false),
        Err(LaunchFail::HostNotRunning)
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // And with its deadline passed (once a busy loop).
    assert_eq!(give_up(&r, s1), Err(LaunchFail::HostNotRunning));
    // A newer request in the slot is not this request's answer either.
    let s2 = write_request(&r, &doc(), None);
    assert!(answer(&r, s2, &Answer::HostNotRunning));
    assert_eq!(give_up(&r, s1), Err(LaunchFail::HostNotRunning));
}

#[test]
fn a_copy_taken_while_the_request_was_replaced_is_dropped() {
    let r = zeroed_slot();
    let s1 = write_request(&r, &doc(), None);
    let taken = take_request_with(&r, || {
        assert_eq!(give_up(&r, s1), Err(LaunchFail::TimedOut(Duration::ZERO)));
        write_request(&r, b"{torn", None);
    });
    assert!(taken.is_none());
    // The new request is taken whole on the next look.
    let (seq, spec, _) = take_request(&r).unwrap();
    assert_eq!(seq, s1 + 1);
    assert!(spec.is_err());
}
