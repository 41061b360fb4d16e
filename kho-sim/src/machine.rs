//! The simulated machine: RAM, page allocator, scratch rules and kexec.

use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use kho_abi::{AbiError, KhoData, KhoScratch, Order, PAGE_SHIFT, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem};

use crate::alloc::Buddy;
use crate::config::{MachineConfig, check_scratch};
use crate::content::{ByteStream, Checksum};
use crate::error::SimError;
use crate::ram::{CHUNK, Ram};

/// The byte every page that is neither preserved nor allocated holds after
/// [`Machine::boot_done`] (the kernel's `POISON_FREE`).
pub const POISON_BYTE: u8 = 0x6b;

/// Where the machine is in its life, which decides where pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A kernel booted normally (fresh machine): all RAM but scratch.
    Running,
    /// Right after kexec or image load: scratch areas only.
    EarlyBoot,
    /// After `boot_done`: all RAM but preserved blocks.
    Booted,
}

/// Allocator state and failure injection, behind the machine's mutex.
#[derive(Debug)]
struct AllocState {
    buddy: Buddy,
    phase: Phase,
    calls: u64,
    fail_at: Option<u64>,
    fail_from: Option<u64>,
}

impl AllocState {
    fn new(buddy: Buddy, phase: Phase) -> AllocState {
        AllocState { buddy, phase, calls: 0, fail_at: None, fail_from: None }
    }
}

/// A simulated machine: RAM at a non-zero physical base (never equal to its
/// virtual address in this process), a buddy page allocator with leak
/// counting and failure injection, scratch areas, and kexec emulation.
///
/// It implements [`PhysMem`] and [`PageAlloc`]; join it with a tracker
/// through [`kho_abi::WithTracker`].
///
/// ```
/// use kho_abi::{KhoData, Order, PageAlloc};
/// use kho_sim::{Machine, MachineConfig, ModelTracker};
/// use kho_abi::Preserve;
///
/// let m = Machine::new(MachineConfig::default())?;
/// let t = ModelTracker::new();
/// let pa = m.alloc_pages(Order::ZERO)?;
/// m.write(pa, b"kept")?;
/// t.preserve(pa, Order::ZERO)?;
/// let lost = m.alloc_pages(Order::ZERO)?;
/// m.write(lost, b"gone")?;
///
/// let next = m.kexec(KhoData::default());
/// next.boot_done(&mut t.blocks().into_iter())?;
/// let mut buf = [0u8; 4];
/// next.read(pa, &mut buf)?;
/// assert_eq!(&buf, b"kept");
/// assert!(next.is_poisoned(lost));
/// # Ok::<(), kho_sim::SimError>(())
/// ```
pub struct Machine {
    cfg: MachineConfig,
    ram: Ram,
    /// Sorted `(start, end)` PAs of the scratch areas.
    scratch: Vec<(u64, u64)>,
    state: Mutex<AllocState>,
    kho_data: Option<KhoData>,
}

impl std::fmt::Debug for Machine {
    /// A summary: RAM, phase and counters (not the per-page state, which
    /// has one entry per page of RAM).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Machine")
            .field("ram_base", &self.ram_base())
            .field("ram_end", &self.ram_end())
            .field("segments", &self.ram.segments().len())
            .field("scratch", &self.cfg.scratch)
            .field("phase", &s.phase)
            .field("outstanding_pages", &s.buddy.outstanding())
            .field("reserved_pages", &s.buddy.reserved())
            .field("allocation_count", &s.calls)
            .field("kho_data", &self.kho_data)
            .finish_non_exhaustive()
    }
}

/// `ranges` (sorted, disjoint) removed from `[start, end)`.
pub(crate) fn complement(start: u64, end: u64, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = start;
    for &(s, e) in ranges {
        let (s, e) = (s.clamp(start, end), e.clamp(start, end));
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < end {
        out.push((pos, end));
    }
    out
}

impl Machine {
    /// A fresh machine booted normally: zeroed RAM, every page outside the
    /// scratch areas free, no handover.
    pub fn new(cfg: MachineConfig) -> Result<Machine, SimError> {
        cfg.check_ram()?;
        let base = cfg.ram_base.as_u64();
        let ram = Ram::new(vec![(base, base + cfg.ram_size)])?;
        let mut m = Machine::assemble(cfg, ram, None, Phase::Running)?;
        m.free_all_but_scratch();
        Ok(m)
    }

    /// Makes every page outside the scratch areas free (of a machine with
    /// no free page yet).
    fn free_all_but_scratch(&mut self) {
        let base = self.ram.base();
        let free = complement(base, base + self.cfg.ram_size, &self.scratch);
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (s, e) in free {
            state.buddy.add_free_range((s - base) >> PAGE_SHIFT, (e - base) >> PAGE_SHIFT);
        }
    }

    /// Returns the machine to the state [`Machine::new`] gives for its
    /// configuration, whatever happened since (allocations, writes,
    /// kexecs, `boot_done`, reserved and claimed blocks, injected
    /// failures): RAM all zero, every page outside scratch free, no
    /// handover, counters at 0. Reusing one machine this way is much
    /// cheaper than making a new one (no new memfd and mapping, and only
    /// the pages written since, as logged, are zeroed again).
    ///
    /// The machine is then indistinguishable from a new one through its
    /// API: RAM is equal byte for byte, and allocations return the same
    /// blocks in the same order. (Pages written since are zero-filled, not
    /// returned to the memfd as holes; only the size of a saved image's
    /// allocation could tell.) Pointers and mappings obtained before the
    /// reset must not be used after it, as if the machine had been
    /// dropped.
    ///
    /// ```
    /// use kho_abi::{KhoData, Order, PageAlloc};
    /// use kho_sim::{Machine, MachineConfig};
    ///
    /// let mut m = Machine::new(MachineConfig::default())?;
    /// let first = m.alloc_pages(Order::ZERO)?;
    /// m.write(first, b"old")?;
    /// let mut m = m.kexec(KhoData::default());
    /// m.boot_done(&mut std::iter::empty())?;
    /// m.reset()?;
    /// assert_eq!(m.kho_data(), None);
    /// assert_eq!(m.alloc_pages(Order::ZERO)?, first);
    /// let mut buf = [1u8; 3];
    /// m.read(first, &mut buf)?;
    /// assert_eq!(buf, [0; 3]);
    /// # Ok::<(), kho_sim::SimError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `State` for a machine loaded from an image whose RAM has gaps (no
    /// configuration makes it), `Config` if its configuration is not one
    /// [`Machine::new`] accepts; the machine is unchanged then.
    pub fn reset(&mut self) -> Result<(), SimError> {
        if self.ram.segments().len() != 1 {
            return Err(SimError::State { what: "reset of a machine whose RAM has gaps" });
        }
        self.cfg.check_ram()?;
        self.ram.reset();
        let pages = self.cfg.ram_size >> PAGE_SHIFT;
        let buddy = Buddy::new(self.ram.base() >> PAGE_SHIFT, pages, self.cfg.max_order.get());
        *self.state.get_mut().unwrap_or_else(|e| e.into_inner()) = AllocState::new(buddy, Phase::Running);
        self.free_all_but_scratch();
        self.kho_data = None;
        Ok(())
    }

    /// A machine over `ram` with no free page yet (the caller adds them as
    /// its phase requires).
    fn assemble(
        mut cfg: MachineConfig,
        ram: Ram,
        kho_data: Option<KhoData>,
        phase: Phase,
    ) -> Result<Machine, SimError> {
        cfg.check_common()?;
        let scratch = check_scratch(&cfg.scratch, |pa, len| ram.contains(pa, len))?;
        cfg.ram_base = PhysAddr::new(ram.base());
        cfg.ram_size = ram.end() - ram.base();
        let buddy = Buddy::new(ram.base() >> PAGE_SHIFT, cfg.ram_size >> PAGE_SHIFT, cfg.max_order.get());
        let state = AllocState::new(buddy, phase);
        Ok(Machine { cfg, ram, scratch, state: Mutex::new(state), kho_data })
    }

    /// A machine over `ram` right after kexec: only the scratch areas are
    /// free.
    pub(crate) fn early_boot(cfg: MachineConfig, ram: Ram, kho_data: Option<KhoData>) -> Result<Machine, SimError> {
        let mut m = Machine::assemble(cfg, ram, kho_data, Phase::EarlyBoot)?;
        m.free_scratch();
        Ok(m)
    }

    fn free_scratch(&mut self) {
        let base = self.ram.base();
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for &(s, e) in &self.scratch {
            state.buddy.add_free_range((s - base) >> PAGE_SHIFT, (e - base) >> PAGE_SHIFT);
        }
    }

    fn lock(&self) -> MutexGuard<'_, AllocState> {
        // A panic while holding the lock cannot leave the allocator half
        // updated: every update completes before any check that panics.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ram(&self) -> &Ram {
        &self.ram
    }

    /// The configuration (for a loaded image: `ram_base` and `ram_size` as
    /// found in the image).
    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }

    /// Lowest PA of RAM.
    pub fn ram_base(&self) -> PhysAddr {
        PhysAddr::new(self.ram.base())
    }

    /// One past the highest PA of RAM.
    pub fn ram_end(&self) -> PhysAddr {
        PhysAddr::new(self.ram.end())
    }

    /// `ram_end - ram_base` (gaps of a loaded image included).
    pub fn ram_size(&self) -> u64 {
        self.ram.end() - self.ram.base()
    }

    /// The RAM ranges as `(start, size)`: one for a fresh machine, one per
    /// `PT_LOAD` segment for a loaded image.
    pub fn ram_ranges(&self) -> Vec<(PhysAddr, u64)> {
        self.ram.segments().iter().map(|&(s, e)| (PhysAddr::new(s), e - s)).collect()
    }

    /// The scratch areas, as configured.
    pub fn scratch(&self) -> &[KhoScratch] {
        &self.cfg.scratch
    }

    /// Pages handed out by `alloc_pages` and not freed since: the leak
    /// counter. Restarts at 0 on kexec; reserved blocks do not count.
    pub fn outstanding_pages(&self) -> u64 {
        self.lock().buddy.outstanding()
    }

    /// Every block handed out by `alloc_pages` and not freed since, as
    /// `(PA, order)` in ascending address order: what a loader must carry
    /// to the next kernel when this machine stands for its memory.
    pub fn allocated_blocks(&self) -> Vec<(PhysAddr, Order)> {
        let base = self.ram.base();
        self.lock()
            .buddy
            .allocated_blocks()
            .into_iter()
            .filter_map(|(i, o)| {
                Some((PhysAddr::new(base + (i << PAGE_SHIFT)), Order::new(u64::from(o), "order").ok()?))
            })
            .collect()
    }

    /// Pages `alloc_pages` could hand out now.
    pub fn available_pages(&self) -> u64 {
        self.lock().buddy.free_pages()
    }

    /// `alloc_pages` calls so far, successful or not.
    pub fn allocation_count(&self) -> u64 {
        self.lock().calls
    }

    /// Makes the `n`-th `alloc_pages` call from now (1 = the very next; 0 is
    /// taken as 1) fail with `NoMemory`, once.
    pub fn fail_nth_allocation(&self, n: u64) {
        let mut s = self.lock();
        s.fail_at = Some(s.calls + n.max(1));
    }

    /// Makes every `alloc_pages` call from the `n`-th from now on (1 = the
    /// very next; 0 is taken as 1) fail with `NoMemory`, until
    /// [`clear_failures`](Machine::clear_failures).
    pub fn fail_allocations_from(&self, n: u64) {
        let mut s = self.lock();
        s.fail_from = Some(s.calls + n.max(1));
    }

    /// Cancels every injected failure.
    pub fn clear_failures(&self) {
        let mut s = self.lock();
        s.fail_at = None;
        s.fail_from = None;
    }

    /// Copies RAM at `pa` into `buf`.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), AbiError> {
        kho_abi::read_phys_bytes(self, pa, buf)
    }

    /// Copies `buf` into RAM at `pa`.
    pub fn write(&self, pa: PhysAddr, buf: &[u8]) -> Result<(), AbiError> {
        kho_abi::write_phys_bytes(self, pa, buf)
    }

    /// Fills `len` bytes at `pa` with bytes determined by `seed` alone
    /// ([`ByteStream`]).
    pub fn fill_random(&self, pa: PhysAddr, len: u64, seed: u64) -> Result<(), AbiError> {
        self.ram.offset(pa.as_u64(), len)?;
        let mut stream = ByteStream::new(seed);
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            stream.fill(&mut buf[..n]);
            // `pa + done` is in RAM: the whole range was checked above.
            self.write(PhysAddr::new(pa.as_u64() + done), &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// A 64-bit hash of the `len` bytes at `pa` ([`Checksum`]).
    pub fn checksum(&self, pa: PhysAddr, len: u64) -> Result<u64, AbiError> {
        self.ram.offset(pa.as_u64(), len)?;
        let mut sum = Checksum::new();
        // Words, so the bytes are 8-aligned and the checksum takes its fast
        // path.
        let mut words = vec![0u64; CHUNK.min(len as usize).div_ceil(8)];
        let buf = zerocopy::IntoBytes::as_mut_bytes(&mut words[..]);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            self.read(PhysAddr::new(pa.as_u64() + done), &mut buf[..n])?;
            sum.update(&buf[..n]);
            done += n as u64;
        }
        Ok(sum.finish())
    }

    /// Kexec: the next kernel's machine, with RAM exactly as it is and
    /// `kho_data` as the only thing handed over. Until
    /// [`boot_done`](Machine::boot_done) it allocates only from the scratch
    /// areas; all allocation state is forgotten (outstanding pages restart
    /// at 0), failure injection is cleared.
    pub fn kexec(self, kho_data: KhoData) -> Machine {
        let Machine { cfg, ram, scratch, .. } = self;
        let max_order = cfg.max_order.get();
        let pages = (ram.end() - ram.base()) >> PAGE_SHIFT;
        let buddy = Buddy::new(ram.base() >> PAGE_SHIFT, pages, max_order);
        let state = AllocState::new(buddy, Phase::EarlyBoot);
        let mut m = Machine { cfg, ram, scratch, state: Mutex::new(state), kho_data: Some(kho_data) };
        m.free_scratch();
        m
    }

    /// What the previous kernel handed over: `None` on a fresh machine.
    pub fn kho_data(&self) -> Option<KhoData> {
        self.kho_data
    }

    /// Whether the machine is between kexec (or image load) and
    /// [`boot_done`](Machine::boot_done).
    pub fn in_early_boot(&self) -> bool {
        self.lock().phase == Phase::EarlyBoot
    }

    /// The next kernel has walked the preserved-memory map: `preserved` are
    /// all the preserved blocks. Every page that is in neither a preserved
    /// block nor a block allocated since kexec is filled with
    /// [`POISON_BYTE`] (when first reached, which nothing can tell from an
    /// immediate fill) and becomes free; preserved blocks become reserved
    /// (freeing one with `free_pages` after claiming it makes it free).
    ///
    /// Fails, changing nothing, outside early boot, or if a block is
    /// misaligned, not entirely RAM, or overlaps another block or pages
    /// allocated since kexec.
    pub fn boot_done(&self, preserved: &mut dyn Iterator<Item = (PhysAddr, Order)>) -> Result<(), SimError> {
        let mut s = self.lock();
        if s.phase != Phase::EarlyBoot {
            return Err(SimError::State { what: "boot_done outside early boot" });
        }
        let base = self.ram.base();
        let mut blocks = Vec::new();
        for (pa, order) in preserved {
            order.require_aligned(pa, "preserved block")?;
            let bytes = order.checked_bytes().ok_or(AbiError::NotRam { pa, len: u64::MAX })?;
            self.ram.offset(pa.as_u64(), bytes)?;
            blocks.push((pa.as_u64(), pa.as_u64() + bytes, order));
        }
        blocks.sort_unstable_by_key(|b| b.0);
        if let Some(w) = blocks.windows(2).find(|w| w[0].1 > w[1].0) {
            let (pa, order) = (PhysAddr::new(w[1].0), w[1].2.get());
            return Err(AbiError::Forbidden { pa, order, why: "overlaps another preserved block" }.into());
        }
        let page = |i: u64| base + (i << PAGE_SHIFT);
        let allocated: Vec<(u64, u64)> =
            s.buddy.allocated_blocks().into_iter().map(|(i, o)| (page(i), page(i + (1 << o)))).collect();
        for &(start, end, order) in &blocks {
            let idx = allocated.partition_point(|a| a.1 <= start);
            if allocated.get(idx).is_some_and(|a| a.0 < end) {
                let why = "overlaps pages allocated since kexec";
                return Err(AbiError::Forbidden { pa: PhysAddr::new(start), order: order.get(), why }.into());
            }
        }
        let mut used: Vec<(u64, u64)> = blocks.iter().map(|b| (b.0, b.1)).chain(allocated).collect();
        used.sort_unstable();
        s.buddy.clear_free();
        for &(seg_start, seg_end) in self.ram.segments() {
            for (a, b) in complement(seg_start, seg_end, &used) {
                // Marked only: each page gets its bytes when first reached.
                self.ram.poison(a, b - a)?;
                s.buddy.add_free_range((a - base) >> PAGE_SHIFT, (b - base) >> PAGE_SHIFT);
            }
        }
        for &(start, _, order) in &blocks {
            s.buddy.reserve((start - base) >> PAGE_SHIFT, order.get());
        }
        s.phase = Phase::Booted;
        Ok(())
    }

    /// Whether the whole page holding `pa` is filled with [`POISON_BYTE`]
    /// (false outside RAM).
    pub fn is_poisoned(&self, pa: PhysAddr) -> bool {
        let page = pa.align_down(PAGE_SIZE as u64).as_u64();
        let Ok(off) = self.ram.offset(page, PAGE_SIZE as u64) else { return false };
        static POISON_PAGE: [u8; PAGE_SIZE] = [POISON_BYTE; PAGE_SIZE];
        if self.ram.is_pending(off) {
            return true;
        }
        let mut buf = vec![0u8; PAGE_SIZE];
        self.ram.pread_all(&mut buf, off).is_ok() && buf[..] == POISON_PAGE[..]
    }

    /// Preserved pages (reserved by `boot_done`) not yet freed.
    pub fn reserved_pages(&self) -> u64 {
        self.lock().buddy.reserved()
    }

    /// Index of the page at `pa` if a block of `order` there lies in RAM.
    fn block_index(&self, pa: PhysAddr, order: Order) -> Option<u64> {
        let bytes = order.checked_bytes()?;
        if !order.aligns(pa) || !self.ram.contains(pa.as_u64(), bytes) {
            return None;
        }
        Some((pa.as_u64() - self.ram.base()) >> PAGE_SHIFT)
    }
}

// SAFETY: pointers come from `Ram::ptr`, which refuses ranges not inside one
// RAM segment and returns `mapping + (pa - base)`: valid for reads and
// writes of `len` bytes of the live shared mapping, contiguous, valid while
// the machine (which owns the mapping) lives, and congruent to `pa` modulo 8
// because both the mapping and `base` are page aligned. The machine itself
// writes RAM only in `alloc_pages` (zeroing pages nobody else owns), in the
// poisoning `boot_done` orders (done by `Ram` on the first access to a
// page, before that access: pages neither preserved nor allocated, so
// nobody holds a pointer into them yet), and in `reset` (`&mut self`), as
// documented.
unsafe impl PhysMem for Machine {
    #[inline(always)]
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        self.ram.ptr(pa.as_u64(), len)
    }

    /// The RAM segments' lookup alone: no page is logged dirty or has its
    /// pending poison written, since nothing is read or written.
    #[inline]
    fn is_ram(&self, pa: PhysAddr, len: u64) -> bool {
        self.ram.contains(pa.as_u64(), len)
    }

    #[inline]
    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        let Some(node) = self.cfg.numa_node_size else { return false };
        let Some(bytes) = order.checked_bytes() else { return true };
        let Some(off) = pa.checked_offset_from(self.ram_base()) else { return false };
        match off.checked_add(bytes - 1) {
            Some(last) => off / node != last / node,
            None => true,
        }
    }
}

impl PageAlloc for Machine {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        let max = self.cfg.max_order;
        let idx = {
            let mut s = self.lock();
            s.calls += 1;
            if order > max {
                let (order, max) = (order.get().into(), max.get());
                return Err(AbiError::OrderTooLarge { what: "alloc_pages order", order, max });
            }
            let n = s.calls;
            let injected = s.fail_at == Some(n) || s.fail_from.is_some_and(|f| n >= f);
            if s.fail_at == Some(n) {
                s.fail_at = None;
            }
            if injected {
                return Err(AbiError::NoMemory { order: order.get() });
            }
            s.buddy.alloc(order.get()).ok_or(AbiError::NoMemory { order: order.get() })?
        };
        let pa = PhysAddr::new(self.ram.base() + (idx << PAGE_SHIFT));
        // `order <= max_order <= 40`, so the size fits.
        let bytes = order.checked_bytes().ok_or(AbiError::Overflow { what: "alloc_pages size" })?;
        let off = pa.as_u64() - self.ram.base();
        // Pending poison is not written: the block is zeroed whole below.
        let stale = self.ram.unpoison(off, bytes);
        // RAM not written since the machine was made or reset is zero
        // already; zeroing it would fault every page in for nothing.
        let clean = self.ram.is_clean(off, bytes);
        let ptr = self.ram.ptr(pa.as_u64(), bytes)?;
        if stale || !clean {
            // SAFETY: the buddy allocator just handed this block to this
            // call alone (it lies in RAM: `ptr` checked it), so no one else
            // reads or writes it; `ptr` is valid for `bytes` bytes.
            unsafe { ptr.as_ptr().write_bytes(0, bytes as usize) };
        }
        Ok(pa)
    }

    fn free_pages(&self, pa: PhysAddr, order: Order) {
        let Some(idx) = self.block_index(pa, order) else {
            panic!("free_pages({pa}, order {order}): not an aligned block inside RAM");
        };
        let result = self.lock().buddy.release(idx, order.get());
        if let Err(found) = result {
            panic!(
                "free_pages({pa}, order {order}): not an allocated or reserved block of that order (found {found:?})"
            );
        }
    }

    fn max_order(&self) -> Order {
        self.cfg.max_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_of_ranges() {
        assert_eq!(complement(0, 10, &[]), vec![(0, 10)]);
        assert_eq!(complement(0, 10, &[(2, 3), (5, 10)]), vec![(0, 2), (3, 5)]);
        assert_eq!(complement(4, 10, &[(0, 5), (6, 7), (12, 14)]), vec![(5, 6), (7, 10)]);
        assert_eq!(complement(0, 10, &[(0, 10)]), vec![]);
    }
}
