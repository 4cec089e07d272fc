//! A spare's page tables filled while it waits, so what it becomes does not fault (issue 15:
//! client spares, decisions 162 and 171).
//!
//! Runs in: spare children (both launch modes), once, when nothing was handed to them within
//! their first 2 ms of waiting.
//!
//! `fork` copies no page-table entries of file-backed memory, and a page the child shares with
//! the supervisor is copied at the child's first write to it; an executed spare has touched only
//! the code that loading the plugins ran. A fork-mode spare handed a client took about 40 page
//! faults between the hand-off and the handler's answer: the plugin's and libc's code and
//! read-only data (about 25), its heap, stack and the libraries' data (about 12).
//! `MADV_POPULATE_READ` (Linux 5.14) maps the read-only pages of the loaded ELF objects (the
//! program and the files that also have an executable mapping here: libc, the plugins) ahead of
//! time; a page already in the page cache costs a page-table entry only, one that is not is read
//! from disk. `MADV_POPULATE_WRITE` makes the heap, the stack and those objects' writable data
//! the spare's own ahead of time, a copy or a new page each (about 100 to 200 KiB of anonymous
//! memory per spare measured). A data file a plugin maps is never touched (it may be large and
//! not in memory), and both kinds are bounded by a [`Budget`] for the whole process, so a spare
//! reads at most that much from disk at each refill. That takes 0.6 to 0.9 ms of a core in a
//! fork-mode spare, so it goes in chunks and stops as soon as the caller says (the spare was
//! handed something): the fill must not slow the sessions it exists to speed up. Shared mappings
//! (the segment) and other anonymous memory are left alone: either would allocate memory no
//! child may ever touch. Best effort: an older kernel refuses the advice, and the spare then
//! faults as it did before.

use std::collections::HashSet;

use super::hugetext::{parse_maps, Mapping};

/// What to do with one mapping: populate it for reading, for writing, or leave it.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Populate {
    Read,
    Write,
    Skip,
}

/// How many bytes one process populates at most, over all its mappings: `read` for files' code
/// and read-only data, `write` for its writable memory.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub read: usize,
    pub write: usize,
}

/// Which advice `m` gets, `objects` being the files mapped executable in the process (its loaded
/// ELF objects): their private read-only mappings are read in; the heap, the stack and their
/// private writable mappings are written in; anything else (a data file, shared or anonymous
/// memory, the kernel's own pages) is left alone.
pub fn choose(m: &Mapping, objects: &HashSet<&str>) -> Populate {
    let private = m.perms.as_bytes().get(3) == Some(&b'p');
    let readable = m.perms.starts_with('r');
    let writable = m.perms.as_bytes().get(1) == Some(&b'w');
    let object = m.path.starts_with('/') && objects.contains(m.path.as_str());
    let named = m.path == "[heap]" || m.path == "[stack]";
    match (private && readable, writable) {
        (true, false) if object => Populate::Read,
        (true, true) if object || named => Populate::Write,
        _ => Populate::Skip,
    }
}

/// The ranges to populate, in order, with their advice: each mapping [`choose`] picks, whole or
/// its first part, until its kind's share of `budget` is spent. The loaded objects are the files
/// mapped executable, and the program `exe` (whose code a fork-mode supervisor may have moved to
/// anonymous huge pages, `sys::hugetext`). Libraries and plugins (mapped
/// high, near the stack) come before the program's own image (mapped low), which is the
/// largest object and, in a fork-mode spare, the one the supervisor's own work keeps in memory.
pub fn plan(maps: &[Mapping], exe: Option<&str>, budget: Budget) -> Vec<(usize, usize, Populate)> {
    let objects: HashSet<&str> = maps
        .iter()
        .filter(|m| m.perms.as_bytes().get(2) == Some(&b'x') && m.path.starts_with('/'))
        .map(|m| m.path.as_str())
        .chain(exe)
        .collect();
    let (mut read, mut write) = (budget.read, budget.write);
    let mut out = Vec::new();
    for m in maps.iter().rev() {
        let advice = choose(m, &objects);
        let left = match advice {
            Populate::Read => &mut read,
            Populate::Write => &mut write,
            Populate::Skip => continue,
        };
        let len = (m.end - m.start).min(*left);
        if len > 0 {
            *left -= len;
            out.push((m.start, len, advice));
        }
    }
    out
}

/// How much one call populates: between two calls the caller can stop.
const CHUNK: usize = 256 << 10;

/// Populates this process's mappings as [`plan`] says, [`CHUNK`] bytes at a time, until done or
/// until `stop` says so (asked before each chunk). Returns how many bytes the kernel populated.
pub fn populate_own_mappings(budget: Budget, stop: impl Fn() -> bool) -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let exe = exe.as_ref().map(|p| p.to_string_lossy());
    let mut done = 0;
    for (start, len, advice) in plan(&parse_maps(&text), exe.as_deref(), budget) {
        let advice = match advice {
            Populate::Read => libc::MADV_POPULATE_READ,
            Populate::Write => libc::MADV_POPULATE_WRITE,
            Populate::Skip => continue,
        };
        for at in (start..start + len).step_by(CHUNK) {
            if stop() {
                return done;
            }
            let n = CHUNK.min(start + len - at);
            // SAFETY: the populate advice never changes a byte the process can see: it takes
            // the faults a read (or a write, copying a shared or file page first) of each page
            // would take, without reading or writing the page's contents, so no value Rust
            // code relies on changes. If the range was unmapped or remapped since the kernel
            // listed it (another thread), the advice applies to what is there now with the same
            // guarantee, or fails (EFAULT, ENOMEM), possibly after populating part of it, which
            // costs memory only; a kernel without it refuses it (EINVAL). Raw libc: rustix's
            // `Advice` has no populate variants.
            if unsafe { libc::madvise(at as *mut libc::c_void, n, advice) } == 0 {
                done += n;
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

    /// Code and read-only data of loaded objects are read in; the heap, the stack and their
    /// private data written in; data files, shared mappings, anonymous memory and the kernel's
    /// own pages never.
    #[test]
    fn each_kind_of_mapping_gets_its_advice() {
        let objects: HashSet<&str> = ["/usr/lib/libc.so.6"].into();
        let c = |perms, path| choose(&m(perms, path, 4096), &objects);
        assert_eq!(c("r-xp", "/usr/lib/libc.so.6"), Populate::Read);
        assert_eq!(c("r--p", "/usr/lib/libc.so.6"), Populate::Read);
        assert_eq!(c("rw-p", "/usr/lib/libc.so.6"), Populate::Write);
        assert_eq!(c("rw-p", "[heap]"), Populate::Write);
        assert_eq!(c("rw-p", "[stack]"), Populate::Write);
        assert_eq!(c("r--p", "/usr/lib/locale/locale-archive"), Populate::Skip);
        assert_eq!(c("rw-p", "/var/lib/data.bin"), Populate::Skip);
        assert_eq!(c("rw-s", "/memfd:steward (deleted)"), Populate::Skip);
        assert_eq!(c("rw-p", ""), Populate::Skip);
        assert_eq!(c("r-xp", "[vdso]"), Populate::Skip);
        assert_eq!(c("---p", "/usr/lib/libc.so.6"), Populate::Skip);
    }

    fn at(start: usize, len: usize, perms: &str, path: &str) -> Mapping {
        Mapping {
            start,
            end: start + len,
            perms: perms.to_owned(),
            path: path.to_owned(),
        }
    }

    /// A file is an object only if it is mapped executable somewhere or is the program; the
    /// budget bounds each kind over the whole process, the last mapping taking what is left of
    /// it; the highest mappings go first.
    #[test]
    fn the_plan_keeps_to_objects_and_the_budget() {
        const M: usize = 1 << 20;
        let maps = [
            // The program, its code moved to anonymous memory.
            at(0x0f00_0000, M, "r--p", "/usr/bin/steward"),
            at(0x1000_0000, 8 * M, "r-xp", ""),
            at(0x2000_0000, 2 * M, "rw-p", "[heap]"),
            at(0x3000_0000, 256 * M, "r--p", "/data/big.bin"),
            at(0x4000_0000, M, "r--p", "/lib/plugin.so"),
            at(0x4010_0000, 6 * M, "r-xp", "/lib/plugin.so"),
            at(0x4070_0000, 3 * M, "rw-p", "/lib/plugin.so"),
        ];
        let budget = Budget {
            read: 7 * M + M / 2,
            write: 4 * M,
        };
        assert_eq!(
            plan(&maps, Some("/usr/bin/steward"), budget),
            vec![
                (0x4070_0000, 3 * M, Populate::Write),
                (0x4010_0000, 6 * M, Populate::Read),
                (0x4000_0000, M, Populate::Read),
                (0x2000_0000, M, Populate::Write),
                (0x0f00_0000, M / 2, Populate::Read),
            ]
        );
        // Not known as the program, a file never mapped executable is left alone.
        assert!(plan(&maps, None, budget).iter().all(|r| r.0 != 0x0f00_0000));
    }

    /// On a kernel with the advice, this process's own objects are populated, within the
    /// budget; on one without it, nothing is.
    #[test]
    fn populating_keeps_to_the_budget() {
        let v: Vec<u8> = (0..=255).collect();
        let budget = Budget {
            read: 1 << 20,
            write: 256 << 10,
        };
        let done = populate_own_mappings(budget, || false);
        // SAFETY: `v`'s buffer is a live heap allocation of this process; the advice changes no
        // byte of it.
        let probe = unsafe {
            libc::madvise(
                (v.as_ptr() as usize & !4095) as *mut libc::c_void,
                4096,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if probe == 0 {
            assert!(done > 0, "nothing populated");
        } else {
            assert_eq!(done, 0);
        }
        assert!(done <= budget.read + budget.write, "{done} bytes");
        assert_eq!(v, (0..=255).collect::<Vec<u8>>());
    }

    /// Asked to stop at once, it populates nothing.
    #[test]
    fn a_stop_is_heeded_before_the_first_chunk() {
        let budget = Budget {
            read: 1 << 20,
            write: 1 << 20,
        };
        assert_eq!(populate_own_mappings(budget, || true), 0);
    }
}
