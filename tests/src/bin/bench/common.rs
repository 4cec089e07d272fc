//! What every group of figures shares: medians, a log watcher that reads only new bytes, the
//! worker set of the lifecycle figures, a fast shutdown that returns once the host exited, and
//! the clock and the shared page of words the floors' forked processes time with.
//!
//! Runs in: the benchmark process.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use steward_tests::*;

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Counts occurrences of a needle in the host's log as it grows, reading only new bytes: on two
/// cores, an observer that re-read the whole log at every poll would slow down what it measures.
pub struct LogWatch {
    file: std::fs::File,
    needle: Vec<u8>,
    /// The last `needle.len() - 1` bytes seen, so a match split across two reads still counts.
    carry: Vec<u8>,
    count: usize,
}

impl LogWatch {
    pub fn new(h: &Host, needle: &str) -> LogWatch {
        // The log file exists from the moment the host is spawned.
        let file = std::fs::File::open(&h.log).expect("open the host's log");
        LogWatch {
            file,
            needle: needle.as_bytes().to_vec(),
            carry: Vec::new(),
            count: 0,
        }
    }

    /// Reads what was appended since the last call; returns the total count so far.
    pub fn poll(&mut self) -> usize {
        use std::io::Read;
        let mut chunk = std::mem::take(&mut self.carry);
        let start = chunk.len();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut buf).expect("read the host's log");
            if n == 0 {
                break;
            }
            chunk.extend_from_slice(&buf[..n]);
        }
        if chunk.len() == start {
            self.carry = chunk;
            return self.count;
        }
        let k = self.needle.len();
        self.count += chunk.windows(k).filter(|w| *w == self.needle.as_slice()).count();
        self.carry = chunk[chunk.len().saturating_sub(k - 1)..].to_vec();
        self.count
    }

    /// Waits until the count reaches `n`; returns when that was seen.
    pub fn wait_for(&mut self, n: usize, timeout: Duration, h: &Host) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.poll() >= n {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} {:?} lines:\n{}",
                self.count,
                String::from_utf8_lossy(&self.needle),
                h.log_text()
            );
            // Yield the CPU: on two cores a spinning observer would slow down what it measures.
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Waits until the log holds `n` occurrences of `needle`; returns when that was seen.
pub fn wait_log_count(h: &Host, needle: &str, n: usize, timeout: Duration) -> Instant {
    LogWatch::new(h, needle).wait_for(n, timeout, h)
}

pub fn workers_spec(mode: Mode, n: usize) -> Spec {
    let names: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    Spec::new(mode)
        .testkit(&names.join(","))
        .setting("testkit", "announce = true")
        .setting("testkit", "trigger_dir = \"\"")
        .host(&format!("max_worker_processes = {}", 8))
}

/// Fast shutdown (SIGINT) of `h`, returning when the supervisor, which exits after its last child
/// is reaped, has exited with status 0.
pub fn stop_fast(mut h: Host) {
    let mut child = h.child.take().expect("host process");
    h.signal(libc::SIGINT);
    let st = child.wait().expect("wait for the host");
    assert!(st.success(), "fast shutdown exit status {st}");
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock the timed workers stamp with.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A shared anonymous page of words, unmapped on drop, for a floor's parent and child.
pub struct SharedWords {
    ptr: *mut libc::c_void,
    len: usize,
}

impl SharedWords {
    pub fn new(words: usize) -> SharedWords {
        let len = 8 * words;
        // SAFETY: a fresh shared anonymous mapping of `len` bytes (zeroed), unmapped in `drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        SharedWords { ptr, len }
    }

    pub fn u64(&self, i: usize) -> &AtomicU64 {
        assert!(8 * (i + 1) <= self.len);
        // SAFETY: in bounds (checked), 8-aligned (the mapping is page-aligned), zero-initialised,
        // used only as atomics, and it lives as long as `self`.
        unsafe { &*(self.ptr as *const AtomicU64).add(i) }
    }

    pub fn u32(&self, i: usize) -> &AtomicU32 {
        assert!(4 * (i + 1) <= self.len);
        // SAFETY: as in `u64`, 4-aligned.
        unsafe { &*(self.ptr as *const AtomicU32).add(i) }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
