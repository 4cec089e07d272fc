//! Fork mode: the supervisor's machine code on transparent huge pages.
//!
//! Runs in: the supervisor only, once, after preload and before the first child is forked.
//!
//! `fork` copies the page-table entries of anonymous memory but not those of file-backed code, so
//! a forked child takes a page fault for every 64 KiB of the `steward` binary's code it runs:
//! about 15 faults, a fifth of what a new worker costs, and unmapping those pages again is a large
//! part of what its exit costs. An anonymous transparent huge page is copied by `fork` as one
//! entry and never faults. So the supervisor copies its code segment into an anonymous, 2 MiB
//! aligned region backed by huge pages, makes that read-and-execute, and moves it over the
//! original mapping with `mremap`. The bytes at every address stay the same, so code that is
//! running, return addresses and function pointers are unaffected.
//!
//! The binary is linked with a 2 MiB maximum page size (see `host/build.rs`), which gives the code
//! segment 2 MiB-aligned windows of its own. Anything unexpected (a window shared with another
//! mapping, no huge page to be had) leaves the original mapping in place: this is an optimisation,
//! never a requirement. The cost: profilers that name functions from `/proc/PID/maps` see the
//! supervisor's and forked children's code as anonymous memory; `huge_code_pages = false` turns
//! the move off.

const HUGE: usize = 2 << 20;

/// What happened, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The code now sits on huge pages: `bytes` of code in `windows` 2 MiB windows.
    Moved { bytes: usize, windows: usize },
    /// Left as it was, and why.
    Skipped(String),
}

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub perms: String,
    pub path: String,
}

/// Parses `/proc/PID/maps` text.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("").to_owned();
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        out.push(Mapping {
            start,
            end,
            perms: perms.to_owned(),
            path,
        });
    }
    out
}

/// The code mapping holding `addr` and the 2 MiB-aligned window around it, if that window holds
/// nothing else; otherwise why not.
pub fn plan(maps: &[Mapping], addr: usize) -> Result<(Mapping, usize, usize), String> {
    let code = maps
        .iter()
        .find(|m| m.start <= addr && addr < m.end)
        .ok_or("the running code is in no mapping")?;
    if !code.perms.starts_with("r-x") || !code.path.starts_with('/') {
        return Err(format!(
            "the code mapping is {} {:?}, not a file's code",
            code.perms, code.path
        ));
    }
    let wstart = code.start & !(HUGE - 1);
    let wend = code.end.div_ceil(HUGE) * HUGE;
    if let Some(other) = maps.iter().find(|m| *m != code && m.start < wend && m.end > wstart) {
        return Err(format!(
            "the code's 2 MiB window also holds {} {:?} (a binary linked without a 2 MiB page size?)",
            other.perms, other.path
        ));
    }
    Ok((code.clone(), wstart, wend))
}

/// The value of `key` (such as `AnonHugePages` or `VmFlags`) for the mapping that holds `addr`,
/// in `/proc/PID/smaps` text.
pub fn smaps_field<'a>(smaps: &'a str, addr: usize, key: &str) -> Option<&'a str> {
    let mut inside = false;
    for line in smaps.lines() {
        // A mapping's header starts with its address range; field lines start with `Key:`.
        let first = line.split(' ').next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                return Some(v.trim());
            }
        }
    }
    None
}

/// Whether the mapping `[start, end)` is wholly backed by huge pages.
fn huge_backed(start: usize, end: usize) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return false;
    };
    smaps_field(&text, start, "AnonHugePages")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<usize>().ok())
        .is_some_and(|kb| kb * 1024 == end - start)
}

/// Moves this binary's code onto huge pages (see the module doc).
pub fn move_code_to_huge_pages() -> Outcome {
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(t) => parse_maps(&t),
        Err(e) => return Outcome::Skipped(format!("cannot read /proc/self/maps: {e}")),
    };
    let (code, wstart, wend) = match plan(&maps, move_code_to_huge_pages as *const () as usize) {
        Ok(p) => p,
        Err(why) => return Outcome::Skipped(why),
    };
    // SAFETY: `copy_to_huge_pages` only replaces the window `plan` found to hold nothing but this
    // binary's code, with a copy of the same bytes; the supervisor is single-threaded.
    match unsafe { copy_to_huge_pages(code.start, code.end, wstart, wend) } {
        Ok(()) => Outcome::Moved {
            bytes: code.end - code.start,
            windows: (wend - wstart) / HUGE,
        },
        Err(why) => Outcome::Skipped(why),
    }
}

/// # Safety
/// `[wstart, wend)` must hold nothing but the code mapping `[start, end)`, and no other thread
/// may run while the mapping is replaced.
unsafe fn copy_to_huge_pages(start: usize, end: usize, wstart: usize, wend: usize) -> Result<(), String> {
    let len = wend - wstart;
    let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY (all calls below): a fresh private anonymous mapping that only this function uses
    // until `mremap` puts it in place of the code mapping, whose bytes it holds unchanged. Raw
    // libc: memmap2 cannot map at or move to a fixed address, and a wrapper's mremap over code
    // that is running would be just as unsafe as this one.
    unsafe {
        let raw = libc::mmap(
            std::ptr::null_mut(),
            len + HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return Err(os("mmap"));
        }
        // Keep the 2 MiB-aligned part only.
        let raw = raw as usize;
        let tmp = raw.div_ceil(HUGE) * HUGE;
        if tmp > raw {
            libc::munmap(raw as *mut libc::c_void, tmp - raw);
        }
        let tail = raw + len + HUGE - (tmp + len);
        if tail > 0 {
            libc::munmap((tmp + len) as *mut libc::c_void, tail);
        }
        let give_up = |why: String| {
            libc::munmap(tmp as *mut libc::c_void, len);
            Err(why)
        };
        if libc::madvise(tmp as *mut libc::c_void, len, libc::MADV_HUGEPAGE) != 0 {
            return give_up(os("madvise(MADV_HUGEPAGE)"));
        }
        std::ptr::copy_nonoverlapping(start as *const u8, (tmp + (start - wstart)) as *mut u8, end - start);
        if !huge_backed(tmp, tmp + len) {
            return give_up("no transparent huge page was available".into());
        }
        if libc::mprotect(tmp as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_EXEC) != 0 {
            return give_up(os("mprotect"));
        }
        let moved = libc::mremap(
            tmp as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            wstart as *mut libc::c_void,
        );
        if moved as usize != wstart {
            return give_up(os("mremap"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
555555400000-555555461000 r--p 00000000 fe:00 1 /usr/bin/steward
555555661000-55555578f000 r-xp 00061000 fe:00 1 /usr/bin/steward
55555598f000-55555599b000 rw-p 0018f000 fe:00 1 /usr/bin/steward
555555a00000-555555a40000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fe:00 2 /usr/lib/libc.so.6
";

    #[test]
    fn a_code_segment_alone_in_its_window_is_planned() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].path, "/usr/bin/steward");
        let (code, ws, we) = plan(&maps, 0x555555700000).unwrap();
        assert_eq!((code.start, code.end), (0x555555661000, 0x55555578f000));
        assert_eq!((ws, we), (0x555555600000, 0x555555800000));
    }

    #[test]
    fn a_shared_window_or_a_non_code_address_is_refused_with_the_reason() {
        // Linked with 4 KiB pages: read-only data shares the code's window.
        let tight = MAPS.replace("555555400000-555555461000", "555555600000-555555661000");
        let why = plan(&parse_maps(&tight), 0x555555700000).unwrap_err();
        assert!(why.contains("window also holds r--p"), "{why}");
        let why = plan(&parse_maps(MAPS), 0x555555a10000).unwrap_err();
        assert!(why.contains("not a file's code"), "{why}");
        let why = plan(&parse_maps(MAPS), 0x10).unwrap_err();
        assert!(why.contains("in no mapping"), "{why}");
    }
}
