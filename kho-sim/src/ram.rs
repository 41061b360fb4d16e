//! The machine's RAM: a memfd mapped shared into this process.
//!
//! RAM spans `[base, end)` in physical address space and is backed by one
//! memfd of `end - base` bytes; PA `base + x` is byte `x` of the memfd and of
//! the mapping. RAM may have gaps (a loaded image with several `PT_LOAD`
//! segments): PAs in a gap are refused although the memfd has bytes there.
//! The memfd is created sparse, so RAM that is never written costs nothing.
//!
//! Two page bitmaps make a machine cheap to reuse (see
//! [`Machine::reset`](crate::Machine::reset)):
//!
//! - the *dirty log*: a page whose bytes may have changed since the RAM was
//!   made or last reset. Every path that can write RAM sets it first: a
//!   pointer handed out ([`Ram::ptr`], which is how `PhysMem` and
//!   `alloc_pages` reach RAM), a write through the memfd, a shared mapping
//!   of the memfd ([`Ram::fd_for`]). It is conservative: a page only read
//!   through a pointer is logged too. A page not logged is zero, so
//!   `alloc_pages` zeroes only logged pages.
//! - *pending poison*: a page that holds [`POISON_BYTE`] in every byte
//!   although its memfd bytes were not written yet. Poisoning after kexec
//!   marks pages only; a page is filled the first time anything reaches
//!   it (a pointer, a read or write through the memfd, a mapping), before
//!   that access. Every way of seeing RAM goes through one of those, so the
//!   bytes seen are exactly those of an eager fill.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use kho_abi::{AbiError, PhysAddr};
use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::SimError;
use crate::machine::POISON_BYTE;

/// Bytes per page of the logs.
const PAGE: u64 = kho_abi::PAGE_SIZE as u64;

/// Bytes moved per system call when filling or copying RAM.
pub(crate) const CHUNK: usize = 1 << 20;

/// A machine's RAM.
///
/// # Invariants
///
/// - `ptr` is the start of a live `MAP_SHARED`, read-write mapping of the
///   whole of `fd` (`span` bytes), unmapped only by `Drop`.
/// - `segments` are sorted, non-empty, non-overlapping, page aligned, and lie
///   inside `[base, base + span)`; the first starts at `base` and the last
///   ends at `base + span`.
/// - `dirty` and `pending` have one bit per page of `span` (page `i` of the
///   memfd is bit `i % 64` of word `i / 64`). A page whose bit in `dirty`
///   is clear holds the bytes it held at the last [`Ram::reset`] (zero) or
///   at creation. A page whose bit in `pending` is set holds
///   [`POISON_BYTE`]s whatever its memfd bytes; bits of `pending` are set
///   and cleared only with `settle` held, and cleared only once the page
///   holds its poison (or once its owner overwrote all of it).
/// - `any_pending` is false only if no bit of `pending` is set.
#[derive(Debug)]
pub(crate) struct Ram {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    span: usize,
    base: u64,
    segments: Vec<(u64, u64)>,
    dirty: Vec<AtomicU64>,
    pending: Vec<AtomicU64>,
    any_pending: AtomicBool,
    settle: Mutex<()>,
}

// SAFETY: the mapping is shared memory with no thread affinity; `Ram` itself
// never hands out references into it, only raw pointers whose use the
// `PhysMem` contract leaves to the caller.
unsafe impl Send for Ram {}
// SAFETY: as above; every `&self` method either only computes pointers or
// goes through the file descriptor, which the kernel serializes.
unsafe impl Sync for Ram {}

impl Ram {
    /// RAM made of `segments` (absolute `(start, end)` PAs, sorted,
    /// non-overlapping, page aligned, at least one), all zero.
    pub(crate) fn new(segments: Vec<(u64, u64)>) -> Result<Ram, SimError> {
        let (Some(&(base, _)), Some(&(_, end))) = (segments.first(), segments.last()) else {
            return Err(SimError::Config { what: "RAM has no segment" });
        };
        let span = usize::try_from(end - base).map_err(|_| SimError::Config { what: "RAM too large" })?;
        if span == 0 {
            return Err(SimError::Config { what: "RAM is empty" });
        }
        let fd = rustix::fs::memfd_create("kho-sim-ram", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, span as u64)?;
        let mut ptr = map_shared(&fd, span)?;
        let virt = ptr.as_ptr() as u64;
        if virt < end && base < virt.saturating_add(span as u64) {
            // The simulator promises that virtual and physical addresses of
            // RAM never coincide, so that code confusing the two fails: map
            // again elsewhere (this mapping still holds its place), then
            // drop this one.
            let other = map_shared(&fd, span)?;
            // SAFETY: `ptr` is the mapping just made, of `span` bytes, and
            // nothing else refers to it.
            unsafe { rustix::mm::munmap(ptr.as_ptr().cast(), span)? };
            ptr = other;
        }
        let words = (span as u64).div_ceil(PAGE).div_ceil(64) as usize;
        let bitmap = || (0..words).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        // INVARIANT: `ptr` maps all `span` bytes of `fd`; segments as given;
        // the memfd is all zero, nothing is dirty or pending.
        Ok(Ram {
            fd,
            ptr,
            span,
            base,
            segments,
            dirty: bitmap(),
            pending: bitmap(),
            any_pending: AtomicBool::new(false),
            settle: Mutex::new(()),
        })
    }

    /// The memfd pages `[first, last]` holding bytes `[off, off + len)`
    /// (`len > 0`), as word ranges of the bitmaps: calls `f(word, mask)`
    /// for each word with the mask of the pages in it.
    fn for_pages(off: u64, len: u64, mut f: impl FnMut(usize, u64)) {
        let (first, last) = (off / PAGE, (off + len - 1) / PAGE);
        let (wf, wl) = (first / 64, last / 64);
        for w in wf..=wl {
            let lo = if w == wf { first % 64 } else { 0 };
            let hi = if w == wl { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            f(w as usize, mask);
        }
    }

    /// Logs the pages holding memfd bytes `[off, off + len)` as dirty.
    #[inline(always)]
    fn log_dirty(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (first, last) = (off / PAGE, (off + len - 1) / PAGE);
        if first / 64 == last / 64 {
            // One word of the log (a page, a tree node): no loop.
            let mask = (u64::MAX >> (63 - last % 64)) & (u64::MAX << (first % 64));
            let word = &self.dirty[(first / 64) as usize];
            if word.load(Ordering::Relaxed) & mask != mask {
                word.fetch_or(mask, Ordering::Relaxed);
            }
            return;
        }
        self.log_dirty_words(off, len);
    }

    /// [`log_dirty`](Ram::log_dirty) of a range over several words of the
    /// log: out of line, so that the one-page case stays small.
    #[inline(never)]
    fn log_dirty_words(&self, off: u64, len: u64) {
        Self::for_pages(off, len, |w, mask| {
            let word = &self.dirty[w];
            if word.load(Ordering::Relaxed) & mask != mask {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        });
    }

    /// Fills every page pending poison among those holding memfd bytes
    /// `[off, off + len)` with its poison, and logs `[off, off + len)`
    /// dirty: afterwards the memfd bytes of the range are what RAM holds.
    #[inline(always)]
    fn settle(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.log_dirty(off, len);
        if self.any_pending.load(Ordering::Acquire) {
            self.settle_slow(off, len);
        }
    }

    #[cold]
    fn settle_slow(&self, off: u64, len: u64) {
        let mut any = false;
        Self::for_pages(off, len, |w, mask| any |= self.pending[w].load(Ordering::Acquire) & mask != 0);
        if !any {
            return;
        }
        let _held = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        Self::for_pages(off, len, |w, mask| {
            let mut bits = self.pending[w].load(Ordering::Acquire) & mask;
            while bits != 0 {
                let page = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                // SAFETY: a pending page lies inside the mapping (bits exist
                // only for its pages); it has not been handed out since it
                // became pending (handing it out settles it first, under
                // this lock), so nothing else reads or writes it now.
                unsafe { self.ptr.as_ptr().add((page * PAGE) as usize).write_bytes(POISON_BYTE, PAGE as usize) };
                self.dirty[w].fetch_or(1 << (page % 64), Ordering::Relaxed);
                // Release: whoever sees the bit clear sees the poison.
                self.pending[w].fetch_and(!(1 << (page % 64)), Ordering::Release);
            }
        });
    }

    /// Marks the whole pages `[off, off + len)` of the memfd (page aligned)
    /// as holding [`POISON_BYTE`]s, without writing them yet.
    pub(crate) fn poison(&self, pa: u64, len: u64) -> Result<(), SimError> {
        let off = self.offset(pa, len)?;
        if len == 0 {
            return Ok(());
        }
        debug_assert!(off.is_multiple_of(PAGE) && len.is_multiple_of(PAGE), "poison of whole pages");
        let _held = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        Self::for_pages(off, len, |w, mask| {
            self.pending[w].fetch_or(mask, Ordering::Release);
        });
        self.any_pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets pending poison on the whole pages `[off, off + len)` of the
    /// memfd, which the caller is about to overwrite entirely (a block just
    /// allocated, zeroed next); returns whether any page was pending (then
    /// its memfd bytes are stale and must be overwritten).
    pub(crate) fn unpoison(&self, off: u64, len: u64) -> bool {
        if len == 0 || !self.any_pending.load(Ordering::Acquire) {
            return false;
        }
        let _held = self.settle.lock().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        Self::for_pages(off, len, |w, mask| {
            any |= self.pending[w].fetch_and(!mask, Ordering::AcqRel) & mask != 0;
        });
        any
    }

    /// Whether no page holding memfd bytes `[off, off + len)` is logged
    /// dirty: then they hold what they held when the RAM was made or last
    /// reset (zero), unless pending poison.
    pub(crate) fn is_clean(&self, off: u64, len: u64) -> bool {
        let mut clean = true;
        if len > 0 {
            Self::for_pages(off, len, |w, mask| clean &= self.dirty[w].load(Ordering::Relaxed) & mask == 0);
        }
        clean
    }

    /// Whether the page at memfd offset `off` is pending poison.
    pub(crate) fn is_pending(&self, off: u64) -> bool {
        let page = off / PAGE;
        self.pending.get((page / 64) as usize).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (page % 64)) != 0)
    }

    /// Makes every byte of RAM zero again and forgets both logs: the RAM is
    /// then as [`Ram::new`] made it (byte for byte; pages written since are
    /// zero-filled, not punched back into holes). Only dirty pages are
    /// written.
    pub(crate) fn reset(&mut self) {
        let pages = (self.span as u64).div_ceil(PAGE);
        let mut page = 0;
        while page < pages {
            let w = (page / 64) as usize;
            let bits = *self.dirty[w].get_mut() >> (page % 64);
            if bits == 0 {
                page = (w as u64 + 1) * 64;
                continue;
            }
            let start = page + u64::from(bits.trailing_zeros());
            let mut end = start;
            while end < pages && *self.dirty[(end / 64) as usize].get_mut() & (1 << (end % 64)) != 0 {
                end += 1;
            }
            // SAFETY: pages `[start, end)` lie inside the mapping (`end` is
            // at most the page count of `span`, and `span` is a whole number
            // of pages: segments are page aligned); `&mut self` rules out
            // any other access through this `Ram` now.
            unsafe {
                self.ptr.as_ptr().add((start * PAGE) as usize).write_bytes(0, ((end - start) * PAGE) as usize);
            }
            page = end;
        }
        for w in self.dirty.iter_mut().chain(self.pending.iter_mut()) {
            *w.get_mut() = 0;
        }
        *self.any_pending.get_mut() = false;
    }

    /// Lowest PA of RAM.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// One past the highest PA of RAM.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.span as u64
    }

    /// The RAM segments, as `(start, end)` PAs.
    pub(crate) fn segments(&self) -> &[(u64, u64)] {
        &self.segments
    }

    /// The memfd backing RAM (offset = PA - base), for mapping or reading
    /// bytes `[off, off + len)` of it: those pages are logged dirty and
    /// their pending poison written first.
    pub(crate) fn fd_for(&self, off: u64, len: u64) -> &OwnedFd {
        self.settle(off, len);
        &self.fd
    }

    /// Whether `[pa, pa + len)` lies inside one RAM segment (for `len == 0`:
    /// whether `pa` is inside a segment or at its end).
    #[inline(always)]
    pub(crate) fn contains(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else { return false };
        if let [(start, last)] = self.segments[..] {
            // One segment (most machines): no search.
            return start <= pa && end <= last;
        }
        // The segment that could hold `pa`: the last one starting at or
        // below it.
        let idx = self.segments.partition_point(|&(s, _)| s <= pa);
        idx > 0 && end <= self.segments[idx - 1].1
    }

    /// Offset of `pa` in the memfd, if `[pa, pa + len)` is RAM.
    #[inline(always)]
    pub(crate) fn offset(&self, pa: u64, len: u64) -> Result<u64, AbiError> {
        if self.contains(pa, len) { Ok(pa - self.base) } else { Err(AbiError::NotRam { pa: PhysAddr::new(pa), len }) }
    }

    /// A pointer to `len` bytes of RAM at `pa`, or `NotRam`.
    #[inline(always)]
    /// The pages of the range are logged dirty and their pending poison
    /// written first.
    pub(crate) fn ptr(&self, pa: u64, len: u64) -> Result<NonNull<u8>, AbiError> {
        let off = self.offset(pa, len)?;
        self.settle(off, len);
        // SAFETY: `off + len <= span` because the range is inside a segment
        // and segments lie inside the mapping; the result stays in bounds.
        Ok(unsafe { self.ptr.add(off as usize) })
    }

    /// Writes `len` bytes of value `byte` at `pa` through the memfd (no page
    /// faults in this process, the kernel allocates pages in bulk).
    #[cfg(test)]
    pub(crate) fn fill(&self, pa: u64, len: u64, byte: u8) -> Result<(), SimError> {
        let mut off = self.offset(pa, len)?;
        let end = off + len;
        let buf = vec![byte; CHUNK.min(len as usize)];
        while off < end {
            let n = (end - off).min(buf.len() as u64) as usize;
            self.pwrite_all(&buf[..n], off)?;
            off += n as u64;
        }
        Ok(())
    }

    /// Copies `buf` into the memfd at offset `off`.
    pub(crate) fn pwrite_all(&self, mut buf: &[u8], mut off: u64) -> Result<(), SimError> {
        self.settle(off, buf.len() as u64);
        while !buf.is_empty() {
            let n = rustix::io::pwrite(&self.fd, buf, off)?;
            if n == 0 {
                return Err(SimError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            buf = &buf[n..];
            off += n as u64;
        }
        Ok(())
    }

    /// Fills `buf` from the memfd at offset `off`.
    pub(crate) fn pread_all(&self, mut buf: &mut [u8], mut off: u64) -> Result<(), SimError> {
        self.settle(off, buf.len() as u64);
        while !buf.is_empty() {
            let n = rustix::io::pread(&self.fd, &mut *buf, off)?;
            if n == 0 {
                return Err(SimError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            buf = &mut buf[n..];
            off += n as u64;
        }
        Ok(())
    }

    /// Whether memfd bytes `[off, off + len)` are all a hole (never written,
    /// so zero). One `lseek`, far cheaper than faulting the pages in to zero
    /// them; `false` when unsure.
    #[cfg(test)]
    pub(crate) fn is_hole(&self, off: u64, len: u64) -> bool {
        match rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Data(off)) {
            Ok(data) => data >= off.saturating_add(len),
            Err(e) => e == rustix::io::Errno::NXIO,
        }
    }

    /// The memfd offset ranges `[start, end)` inside `[from, to)` that may
    /// hold non-zero data; holes never written are skipped without touching
    /// them.
    pub(crate) fn data_ranges(&self, from: u64, to: u64) -> Result<Vec<(u64, u64)>, SimError> {
        self.settle(from, to.saturating_sub(from));
        Ok(crate::elf::data_ranges(self.fd.as_fd(), from, to)?)
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `ptr` maps `span` bytes and is
        // unmapped only here; raw pointers handed out through `PhysMem` are
        // valid only while the platform lives, so none is used after this.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.span) };
    }
}

/// Maps all `len` bytes of `fd` shared, read-write, at an address the kernel
/// chooses.
fn map_shared(fd: &OwnedFd, len: usize) -> Result<NonNull<u8>, SimError> {
    // SAFETY: a fresh mapping at an address the kernel picks (no MAP_FIXED)
    // cannot alias any existing Rust memory.
    let p = unsafe {
        rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)?
    };
    NonNull::new(p.cast()).ok_or(SimError::Io(std::io::ErrorKind::AddrNotAvailable.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_gaps() {
        let ram = Ram::new(vec![(0x10_0000, 0x20_0000), (0x30_0000, 0x40_0000)]).unwrap();
        assert_eq!((ram.base(), ram.end()), (0x10_0000, 0x40_0000));
        assert!(ram.contains(0x10_0000, 0x10_0000));
        assert!(!ram.contains(0x10_0000, 0x10_0001));
        assert!(!ram.contains(0x0f_ffff, 1));
        assert!(!ram.contains(0x20_0000, 1));
        assert!(ram.contains(0x20_0000, 0));
        assert!(ram.contains(0x3f_f000, 0x1000));
        assert!(!ram.contains(0x40_0000, 1));
        assert!(!ram.contains(u64::MAX, 2));
        assert_eq!(ram.offset(0x30_0010, 8), Ok(0x20_0010));
        assert!(ram.ptr(0x2f_f000, 8).is_err());
    }

    #[test]
    fn one_segment_bounds() {
        let ram = Ram::new(vec![(0x10_0000, 0x20_0000)]).unwrap();
        assert!(ram.contains(0x10_0000, 0x10_0000));
        assert!(ram.contains(0x20_0000, 0));
        assert!(!ram.contains(0x10_0000, 0x10_0001));
        assert!(!ram.contains(0x0f_f000, 0x1000));
        assert!(!ram.contains(0x20_0000, 1));
        assert!(!ram.contains(u64::MAX, 2));
    }

    #[test]
    fn the_dirty_log_holds_exactly_the_pages_handed_out() {
        let dirty = |ram: &Ram| -> Vec<u64> {
            (0..ram.dirty.len() as u64 * 64)
                .filter(|&p| ram.dirty[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
                .collect()
        };
        let base = 0x1000_0000;
        let ram = Ram::new(vec![(base, base + 256 * PAGE)]).unwrap();
        // Within one word of the log: a page, a byte, pages 62-63.
        ram.ptr(base + 5 * PAGE, PAGE).unwrap();
        ram.ptr(base + 9 * PAGE + 100, 1).unwrap();
        ram.ptr(base + 62 * PAGE, 2 * PAGE).unwrap();
        // Across words: 63-64 and 120-200.
        ram.ptr(base + 63 * PAGE + 8, PAGE).unwrap();
        ram.ptr(base + 120 * PAGE, 81 * PAGE).unwrap();
        ram.ptr(base + 250 * PAGE, 0).unwrap();
        let mut want = vec![5, 9, 62, 63, 64];
        want.extend(120..=200);
        assert_eq!(dirty(&ram), want);
    }

    #[test]
    fn fill_and_data_ranges() {
        let ram = Ram::new(vec![(0x1000_0000, 0x1100_0000)]).unwrap();
        assert_eq!(ram.data_ranges(0, 0x100_0000).unwrap(), vec![]);
        ram.fill(0x1080_0000, 0x3000, 0xab).unwrap();
        let ranges = ram.data_ranges(0, 0x100_0000).unwrap();
        assert!(!ranges.is_empty());
        let covered: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        assert!(covered < 0x10_0000, "only the filled pages are data: {ranges:x?}");
        assert!(ranges.iter().any(|&(s, e)| s <= 0x80_0000 && e >= 0x80_3000));
        let mut buf = [0u8; 16];
        ram.pread_all(&mut buf, 0x80_2ff8).unwrap();
        assert_eq!(buf, [0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(ram.fill(0x10ff_f000, 0x2000, 1).is_err());
        assert!(ram.is_hole(0, 0x80_0000));
        assert!(!ram.is_hole(0, 0x80_1000));
        assert!(!ram.is_hole(0x80_2000, 0x1000));
        assert!(ram.is_hole(0x80_3000, 0x7f_d000));
    }
}
