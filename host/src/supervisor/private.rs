//! Supervisor bookkeeping in memory that forked children do not inherit.
//!
//! Runs in: the supervisor only.
//!
//! After a `fork`, every private page is shared copy-on-write, so the first write to each page
//! the supervisor touches before its next launch costs a page fault and a 4 KiB copy; with 1000
//! workers that was a third of the supervisor's time. The two tables it writes on every launch and
//! every exit, the core's worker table ([`PrivateVec`]) and its pid-to-child map ([`PidMap`]), live in
//! anonymous mappings marked `MADV_DONTFORK`: `fork` neither copies nor write-protects them, so
//! writing them costs nothing extra, and no child can read or corrupt them. A child never needs
//! them: it runs from the startup data and the segment, and ends with `_exit`.
//!
//! Both keep every field that changes after start-up inside their mapping, so a launch writes no
//! other page of the supervisor for them. The worker table grows when a worker is added at run
//! time; its length changes then, never on a launch or an exit.

use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};

/// An anonymous private mapping that `fork` leaves out of the child, zero-filled.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(bytes: usize) -> std::io::Result<Region> {
        let len = bytes.max(1).div_ceil(4096) * 4096;
        // SAFETY: a fresh anonymous mapping owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping just created.
        if unsafe { libc::madvise(ptr, len, libc::MADV_DONTFORK) } != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: as above; nothing refers to it yet.
            unsafe { libc::munmap(ptr, len) };
            return Err(e);
        }
        Ok(Region {
            ptr: ptr as *mut u8,
            len,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping this value owns; its users are dropped before it.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A growable array of `T` in a `Region`. Growing maps a region twice the size and moves the
/// elements (a bitwise move, as `Vec` does), so references into it do not outlive a `push`; a
/// table sized right at start-up never grows.
pub struct PrivateVec<T> {
    region: Region,
    len: usize,
    cap: usize,
    _t: PhantomData<T>,
}

impl<T> PrivateVec<T> {
    /// An empty table with room for `cap` elements before it first grows.
    pub fn with_capacity(cap: usize) -> std::io::Result<PrivateVec<T>> {
        assert!(std::mem::align_of::<T>() <= 4096);
        let region = Region::new(cap.max(1) * size_of::<T>().max(1))?;
        let cap = region.len / size_of::<T>().max(1);
        Ok(PrivateVec {
            region,
            len: 0,
            cap,
            _t: PhantomData,
        })
    }

    /// Moves the elements of `v` into a new table of exactly their number.
    pub fn from_vec(v: Vec<T>) -> std::io::Result<PrivateVec<T>> {
        let mut t = PrivateVec::with_capacity(v.len())?;
        for item in v {
            t.push(item)?;
        }
        Ok(t)
    }

    /// Drops every element, keeping the mapping.
    pub fn clear(&mut self) {
        let len = self.len;
        // Zero first: a panic in a destructor then leaks the rest instead of dropping twice.
        self.len = 0;
        // SAFETY: the first `len` elements were initialised, and no longer count as elements.
        unsafe { std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.region.ptr as *mut T, len)) };
    }

    pub fn push(&mut self, item: T) -> std::io::Result<()> {
        if self.len == self.cap {
            let mut bigger = PrivateVec::with_capacity(self.cap * 2)?;
            // SAFETY: both regions are page-aligned and hold at least `len` elements; the
            // elements move to `bigger` bitwise, and `self.len = 0` below keeps them from being
            // dropped a second time with the old region.
            unsafe {
                std::ptr::copy_nonoverlapping(self.region.ptr as *const T, bigger.region.ptr as *mut T, self.len)
            };
            bigger.len = self.len;
            self.len = 0;
            *self = bigger;
        }
        // SAFETY: `len < cap`, so the slot is inside the region and holds no element yet.
        unsafe { (self.region.ptr as *mut T).add(self.len).write(item) };
        self.len += 1;
        Ok(())
    }
}

impl<T> std::ops::Deref for PrivateVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements live at the start of the region.
        unsafe { std::slice::from_raw_parts(self.region.ptr as *const T, self.len) }
    }
}

impl<T> std::ops::DerefMut for PrivateVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr as *mut T, self.len) }
    }
}

impl<T> Drop for PrivateVec<T> {
    fn drop(&mut self) {
        // SAFETY: drops the initialised elements once; the region is unmapped after.
        unsafe { std::ptr::drop_in_place(&mut **self as *mut [T]) };
    }
}

#[repr(C)]
struct Slot<V> {
    /// 0: empty (pids are positive).
    pid: i32,
    val: MaybeUninit<V>,
}

/// Bytes before the first slot: the entry count.
const HEADER: usize = 64;

/// A map from pid to a small `Copy` value: open addressing with linear probing in a `Region`,
/// at most half full. The count lives in the region too.
pub struct PidMap<V: Copy> {
    region: Region,
    bits: u32,
    _v: PhantomData<V>,
}

impl<V: Copy> PidMap<V> {
    pub fn new() -> std::io::Result<PidMap<V>> {
        PidMap::with_bits(8)
    }

    fn with_bits(bits: u32) -> std::io::Result<PidMap<V>> {
        assert!(std::mem::align_of::<Slot<V>>() <= HEADER);
        Ok(PidMap {
            region: Region::new(HEADER + (1usize << bits) * size_of::<Slot<V>>())?,
            bits,
            _v: PhantomData,
        })
    }

    pub fn len(&self) -> usize {
        // SAFETY: the header is the first word of the region, zero-filled at creation.
        unsafe { *(self.region.ptr as *const usize) }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_len(&mut self, n: usize) {
        // SAFETY: as in `len`.
        unsafe { *(self.region.ptr as *mut usize) = n }
    }

    fn cap(&self) -> usize {
        1 << self.bits
    }

    fn slots(&self) -> &[Slot<V>] {
        // SAFETY: `cap` slots follow the header; an all-zero slot is a valid empty one.
        unsafe { std::slice::from_raw_parts(self.region.ptr.add(HEADER) as *const Slot<V>, self.cap()) }
    }

    fn slots_mut(&mut self) -> &mut [Slot<V>] {
        // SAFETY: as above, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr.add(HEADER) as *mut Slot<V>, self.cap()) }
    }

    fn home(&self, pid: i32) -> usize {
        ((pid as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }

    fn find(&self, pid: i32) -> Option<usize> {
        if pid <= 0 {
            return None;
        }
        let mask = self.cap() - 1;
        let slots = self.slots();
        let mut i = self.home(pid);
        loop {
            match slots[i].pid {
                0 => return None,
                p if p == pid => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    pub fn get(&self, pid: i32) -> Option<&V> {
        let i = self.find(pid)?;
        // SAFETY: an occupied slot holds an initialised value.
        Some(unsafe { self.slots()[i].val.assume_init_ref() })
    }

    pub fn get_mut(&mut self, pid: i32) -> Option<&mut V> {
        let i = self.find(pid)?;
        // SAFETY: as above.
        Some(unsafe { self.slots_mut()[i].val.assume_init_mut() })
    }

    /// Inserts or replaces the value for `pid` (which must be positive).
    pub fn insert(&mut self, pid: i32, v: V) {
        assert!(pid > 0, "pids are positive");
        if let Some(i) = self.find(pid) {
            self.slots_mut()[i].val = MaybeUninit::new(v);
            return;
        }
        if (self.len() + 1) * 2 > self.cap() {
            self.grow();
        }
        let mask = self.cap() - 1;
        let mut i = self.home(pid);
        while self.slots()[i].pid != 0 {
            i = (i + 1) & mask;
        }
        self.slots_mut()[i] = Slot {
            pid,
            val: MaybeUninit::new(v),
        };
        let n = self.len() + 1;
        self.set_len(n);
    }

    fn grow(&mut self) {
        let mut bigger = PidMap::with_bits(self.bits + 1).expect("memory for the supervisor's child table");
        for (pid, v) in self.iter() {
            bigger.insert(pid, *v);
        }
        *self = bigger;
    }

    pub fn remove(&mut self, pid: i32) -> Option<V> {
        let mut hole = self.find(pid)?;
        // SAFETY: an occupied slot holds an initialised value.
        let v = unsafe { self.slots()[hole].val.assume_init() };
        let mask = self.cap() - 1;
        // Backward-shift deletion: move later entries of the probe run into the hole, so that no
        // lookup stops early at it.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let p = self.slots()[j].pid;
            if p == 0 {
                break;
            }
            let home = self.home(p);
            // The entry at `j` may move to `hole` if its home is not cyclically in (hole, j].
            let movable = if hole <= j {
                home <= hole || home > j
            } else {
                home <= hole && home > j
            };
            if movable {
                let val = self.slots()[j].val;
                self.slots_mut()[hole] = Slot { pid: p, val };
                hole = j;
            }
        }
        self.slots_mut()[hole].pid = 0;
        let n = self.len() - 1;
        self.set_len(n);
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &V)> {
        self.slots()
            .iter()
            .filter(|s| s.pid != 0)
            // SAFETY: occupied slots hold initialised values.
            .map(|s| (s.pid, unsafe { s.val.assume_init_ref() }))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut V)> {
        self.slots_mut()
            .iter_mut()
            .filter(|s| s.pid != 0)
            // SAFETY: as above.
            .map(|s| (s.pid, unsafe { s.val.assume_init_mut() }))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn pid_map_agrees_with_a_btree_map_through_growth_and_removal() {
        let mut m: PidMap<(u32, bool)> = PidMap::new().unwrap();
        let mut r = BTreeMap::new();
        // A deterministic mix: runs of neighbouring pids (as fork hands them out) and scattered
        // ones, removals in between, and a few replacements.
        let mut x: u64 = 12345;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pid = if step % 3 == 0 {
                (x >> 33) as i32 % 4_000_000 + 1
            } else {
                (step / 2) as i32 % 3000 + 1000
            };
            if (x >> 20).is_multiple_of(3) {
                assert_eq!(m.remove(pid), r.remove(&pid), "remove {pid} at step {step}");
            } else {
                m.insert(pid, (step, pid % 2 == 0));
                r.insert(pid, (step, pid % 2 == 0));
            }
            assert_eq!(m.len(), r.len());
        }
        let mut got: Vec<(i32, (u32, bool))> = m.iter().map(|(p, v)| (p, *v)).collect();
        got.sort();
        let want: Vec<(i32, (u32, bool))> = r.iter().map(|(p, v)| (*p, *v)).collect();
        assert_eq!(got, want);
        for (p, v) in &r {
            assert_eq!(m.get(*p), Some(v));
        }
        assert_eq!(m.get(0), None);
        assert_eq!(m.get(-5), None);
        if let Some((p, _)) = r.iter().next() {
            m.get_mut(*p).unwrap().1 = true;
            assert!(m.get(*p).unwrap().1);
        }
    }

    #[test]
    fn a_private_vec_grows_and_keeps_its_elements() {
        let mut v: PrivateVec<String> = PrivateVec::with_capacity(1).unwrap();
        let first_cap = v.cap;
        for i in 0..first_cap * 3 + 1 {
            v.push(i.to_string()).unwrap();
        }
        assert!(v.cap > first_cap);
        assert_eq!(v.len(), first_cap * 3 + 1);
        assert!(v.iter().enumerate().all(|(i, s)| *s == i.to_string()));
        v[0].push('x');
        assert_eq!(v[0], "0x");
    }

    #[test]
    fn tables_are_in_mappings_forked_children_do_not_get() {
        let m: PidMap<u64> = PidMap::new().unwrap();
        let s = PrivateVec::from_vec(vec![String::from("a"), String::from("b")]).unwrap();
        assert_eq!(&*s, &["a".to_owned(), "b".to_owned()]);
        let mut v: PrivateVec<u64> = PrivateVec::with_capacity(4).unwrap();
        v.push(7).unwrap();
        v.clear();
        assert!(v.is_empty());
        v.push(8).unwrap();
        assert_eq!(&*v, &[8]);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        for addr in [m.region.ptr as usize, s.region.ptr as usize, v.region.ptr as usize] {
            // "dc": do not copy this mapping on fork.
            let flags = crate::sys::hugetext::smaps_field(&smaps, addr, "VmFlags").expect("the mapping's flags");
            assert!(flags.split_whitespace().any(|f| f == "dc"), "{flags}");
        }
    }
}
