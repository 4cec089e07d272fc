//! A spare's page tables filled while it waits, so what it becomes does not fault (issue 15:
//! client spares, decision 162).
//!
//! Runs in: spare children (both launch modes), once, when nothing was handed to them within
//! their first 2 ms of waiting.
//!
//! `fork` copies no page-table entries of file-backed memory, and a page the child shares with
//! the supervisor is copied at the child's first write to it; an executed spare has touched only
//! the code that loading the plugins ran. A fork-mode spare handed a client took about 40 page
//! faults between the hand-off and the handler's answer: the plugin's and libc's code and
//! read-only data (about 25), its heap, stack and the libraries' data (about 12).
//! `MADV_POPULATE_READ` (Linux 5.14) maps the file-backed read-only pages ahead of time, which
//! costs page tables only (the pages are the page cache's, shared); `MADV_POPULATE_WRITE`
//! makes the heap, the stack and the libraries' writable data the spare's own ahead of time, a
//! copy or a new page each (about 100 to 200 KiB of anonymous memory per spare measured),
//! bounded by `max_write` per mapping. That takes 0.6 to 0.9 ms of a core in a fork-mode spare,
//! so it goes in chunks and stops as soon as the caller says (the spare was handed something):
//! the fill must not slow the sessions it exists to speed up. Shared mappings (the segment) and other anonymous memory
//! are left alone: either would allocate memory no child may ever touch. Best effort: an older
//! kernel refuses the advice, and the spare then faults as it did before.

use super::hugetext::{parse_maps, Mapping};

/// What to do with one mapping: populate it for reading, for writing, or leave it.
#[derive(Debug, PartialEq, Eq)]
pub enum Populate {
    Read,
    Write,
    Skip,
}

/// Which advice `m` gets: file-backed private memory without write access is read in; the heap,
/// the stack and file-backed private writable memory up to `max_write` bytes are written in.
pub fn choose(m: &Mapping, max_write: usize) -> Populate {
    let private = m.perms.as_bytes().get(3) == Some(&b'p');
    let readable = m.perms.starts_with('r');
    let writable = m.perms.as_bytes().get(1) == Some(&b'w');
    let file = m.path.starts_with('/');
    let named = m.path == "[heap]" || m.path == "[stack]";
    match (private && readable, writable) {
        (true, false) if file => Populate::Read,
        (true, true) if (file || named) && m.end - m.start <= max_write => Populate::Write,
        _ => Populate::Skip,
    }
}

/// How much one call populates: between two calls the caller can stop.
const CHUNK: usize = 256 << 10;

/// Populates this process's mappings as [`choose`] says, [`CHUNK`] bytes at a time, until done or
/// until `stop` says so (asked before each chunk). Returns how many chunks the kernel populated.
pub fn populate_own_mappings(max_write: usize, stop: impl Fn() -> bool) -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut done = 0;
    for m in parse_maps(&text) {
        let advice = match choose(&m, max_write) {
            Populate::Read => libc::MADV_POPULATE_READ,
            Populate::Write => libc::MADV_POPULATE_WRITE,
            Populate::Skip => continue,
        };
        for start in (m.start..m.end).step_by(CHUNK) {
            if stop() {
                return done;
            }
            let len = CHUNK.min(m.end - start);
            // SAFETY: the range lies in one of this process's own mappings as the kernel listed
            // it just now; the populate advice reads or writes no byte of it (contents stay as
            // they are) and fails, without effect, on a range that changed since (EFAULT, ENOMEM)
            // or on a kernel without it (EINVAL). Raw libc: rustix's `Advice` has no populate
            // variants.
            if unsafe { libc::madvise(start as *mut libc::c_void, len, advice) } == 0 {
                done += 1;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(perms: &str, path: &str, len: usize) -> Mapping {
        Mapping {
            start: 0x1000,
            end: 0x1000 + len,
            perms: perms.to_owned(),
            path: path.to_owned(),
        }
    }

    /// Code and read-only data of files are read in; the heap, the stack and files' private data
    /// written in up to the bound; shared mappings, anonymous memory and the kernel's own pages
    /// never.
    #[test]
    fn each_kind_of_mapping_gets_its_advice() {
        let max = 1 << 20;
        assert_eq!(choose(&m("r-xp", "/usr/lib/libc.so.6", 4096), max), Populate::Read);
        assert_eq!(choose(&m("r--p", "/usr/lib/libc.so.6", 4096), max), Populate::Read);
        assert_eq!(choose(&m("rw-p", "/usr/lib/libc.so.6", 4096), max), Populate::Write);
        assert_eq!(choose(&m("rw-p", "[heap]", 4096), max), Populate::Write);
        assert_eq!(choose(&m("rw-p", "[stack]", 4096), max), Populate::Write);
        assert_eq!(choose(&m("rw-p", "[heap]", max + 4096), max), Populate::Skip);
        assert_eq!(
            choose(&m("rw-s", "/memfd:steward (deleted)", 4096), max),
            Populate::Skip
        );
        assert_eq!(choose(&m("rw-p", "", 4096), max), Populate::Skip);
        assert_eq!(choose(&m("r-xp", "[vdso]", 4096), max), Populate::Skip);
        assert_eq!(choose(&m("---p", "/usr/lib/libc.so.6", 4096), max), Populate::Skip);
    }

    /// Populating this process's mappings changes no byte of them (on a kernel without the
    /// advice nothing is populated, and nothing changes either).
    #[test]
    fn populating_changes_nothing() {
        let v: Vec<u8> = (0..=255).collect();
        populate_own_mappings(1 << 20, || false);
        assert_eq!(v, (0..=255).collect::<Vec<u8>>());
    }

    /// Asked to stop at once, it populates nothing.
    #[test]
    fn a_stop_is_heeded_before_the_first_chunk() {
        assert_eq!(populate_own_mappings(1 << 20, || true), 0);
    }
}
