//! The outgoing side: the kernel about to kexec preserves memory, adds
//! subtrees and produces the `kho_data` for its successor.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::ControlFlow;

use kho_abi::compat::{KHO_V4, RADIX_V1};
use kho_abi::{
    AbiError, KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, RadixKey, ToErrno,
    compose, write_phys, write_phys_bytes, zero_phys,
};

use crate::error::TrackError;
use crate::fdt::{self, Subtree};
use crate::split::Blocks;
use crate::tree::RadixTree;
use crate::walk::{Guard, TreeView};

/// How the root names its format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootCompat {
    /// `kho-v4`, what mainline kernels write and read.
    #[default]
    Plain,
    /// `kho-v4;radix-v1;...`: the base, then `radix-v1` and the given
    /// component compatibles (sorted, unique), as proposed upstream.
    Composite(&'static [&'static str]),
}

/// Options of a [`Tracker`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackerOptions {
    /// The root compatible string.
    pub compat: RootCompat,
}

/// The preserved-memory tracker of the outgoing kernel.
///
/// Preserving and unpreserving take `&self` and are lock-free, so any number
/// of threads may preserve at once. Subtree changes take `&mut self`. The
/// root FDT lives in one preserved page and is rewritten on every subtree
/// change, so it is always current.
///
/// A tracker is ended either by [`Tracker::finish`], which hands its pages
/// to the next kernel and returns the `kho_data` describing them, or by
/// [`Tracker::destroy`], which frees them. Dropping it does neither (the
/// pages stay allocated), since freeing the tree of a handover in progress
/// would be worse than a leak.
pub struct Tracker<P: PhysMem + PageAlloc> {
    mem: P,
    tree: RadixTree,
    scratch: Vec<KhoScratch>,
    /// The hull of the scratch areas, `[lo, hi)` (`(0, 0)` without any):
    /// a block outside it overlaps none of them.
    scratch_hull: (u64, u64),
    max_order: Order,
    compatible: String,
    fdt_page: PhysAddr,
    subtrees: Vec<Subtree>,
}

impl<P: PhysMem + PageAlloc> core::fmt::Debug for Tracker<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tracker")
            .field("root", &self.tree.root())
            .field("fdt_page", &self.fdt_page)
            .field("compatible", &self.compatible)
            .field("subtrees", &self.subtrees)
            .finish_non_exhaustive()
    }
}

impl<P: PhysMem + PageAlloc> Tracker<P> {
    /// A tracker on `mem` whose next kernel will boot with `scratch` as its
    /// scratch areas. Allocates the root table and the FDT page and
    /// preserves the latter.
    pub fn new(mem: P, scratch: &[KhoScratch], options: TrackerOptions) -> Result<Self, TrackError> {
        for s in scratch {
            s.validate()?;
        }
        let compatible = match options.compat {
            RootCompat::Plain => KHO_V4.to_string(),
            RootCompat::Composite(subs) => {
                let mut all: Vec<&str> = Vec::with_capacity(subs.len() + 1);
                all.push(RADIX_V1);
                all.extend(subs.iter().copied().filter(|s| *s != RADIX_V1));
                let mut buf = [0u8; 256];
                compose(KHO_V4, &all, &mut buf)?.to_string()
            }
        };
        let tree = RadixTree::new(&mem)?;
        let fdt_page = match mem.alloc_pages(Order::ZERO) {
            Ok(pa) => pa,
            Err(e) => {
                tree.destroy(&mem);
                return Err(e.into());
            }
        };
        let max_order = mem.max_order();
        let scratch_hull = scratch
            .iter()
            .map(|s| (s.addr, s.addr.saturating_add(s.size)))
            .reduce(|(lo, hi), (a, b)| (lo.min(a), hi.max(b)))
            .unwrap_or((0, 0));
        let tracker = Tracker {
            mem,
            tree,
            scratch: scratch.to_vec(),
            scratch_hull,
            max_order,
            compatible,
            fdt_page,
            subtrees: Vec::new(),
        };
        let ready = tracker.write_fdt().and_then(|()| tracker.preserve_folio(fdt_page, Order::ZERO));
        match ready {
            Ok(()) => Ok(tracker),
            Err(e) => {
                tracker.destroy();
                Err(e)
            }
        }
    }

    /// The root compatible string this tracker writes.
    pub fn compatible(&self) -> &str {
        &self.compatible
    }

    /// PA of the root table of the radix tree.
    pub fn tree_root(&self) -> PhysAddr {
        self.tree.root()
    }

    /// PA of the root FDT page.
    pub fn fdt_page(&self) -> PhysAddr {
        self.fdt_page
    }

    /// The scratch areas of the next kernel.
    pub fn scratch(&self) -> &[KhoScratch] {
        &self.scratch
    }

    /// Whether `[pa, pa + bytes)` overlaps a scratch area.
    #[inline]
    fn in_scratch(&self, pa: PhysAddr, bytes: u64) -> bool {
        let (lo, hi) = self.scratch_hull;
        let (b0, b1) = (pa.as_u64(), pa.as_u64().saturating_add(bytes));
        // Overlapping an area means overlapping the hull, so most blocks
        // are answered by the two compares.
        lo < b1 && b0 < hi && self.scratch.iter().any(|s| s.overlaps(pa, bytes))
    }

    /// Checks one block against the platform and the scratch areas and
    /// returns its key.
    ///
    /// The accepting path makes every check of [`check_block_slow`]
    /// (Tracker::check_block_slow) in a form that builds no error value;
    /// any refusal goes to the slow path, which checks again in order and
    /// names the first failure.
    #[inline]
    fn check_block(&self, pa: PhysAddr, order: Order) -> Result<RadixKey, TrackError> {
        match self.accepts(pa, order) {
            Some(key) => Ok(key),
            None => self.check_block_slow(pa, order),
        }
    }

    /// The accepting path of [`check_block`](Tracker::check_block): the
    /// block's key if every check passes, else `None`.
    #[inline(always)]
    fn accepts(&self, pa: PhysAddr, order: Order) -> Option<RadixKey> {
        if order <= self.max_order
            && order.aligns(pa)
            && let Some(bytes) = order.checked_bytes()
            && self.mem.is_ram(pa, bytes)
            && !self.in_scratch(pa, bytes)
            && !self.mem.crosses_node(pa, order)
            && let Ok(key) = RadixKey::encode(pa, order)
        {
            return Some(key);
        }
        None
    }

    /// [`check_block`](Tracker::check_block) with its errors: the first
    /// check that fails names the refusal.
    #[cold]
    #[inline(never)]
    fn check_block_slow(&self, pa: PhysAddr, order: Order) -> Result<RadixKey, TrackError> {
        let order = Order::new_at_most(u64::from(order.get()), self.max_order, "preserve order")?;
        order.require_aligned(pa, "preserve PA")?;
        let bytes = order.checked_bytes().ok_or(AbiError::Overflow { what: "block size" })?;
        if !self.mem.is_ram(pa, bytes) {
            // The platform's own refusal; `NotRam` should it translate a
            // range it just called not RAM.
            self.mem.phys_to_virt(pa, bytes)?;
            return Err(AbiError::NotRam { pa, len: bytes }.into());
        }
        if self.in_scratch(pa, bytes) {
            return Err(AbiError::Forbidden { pa, order: order.get(), why: "overlaps a scratch area" }.into());
        }
        if self.mem.crosses_node(pa, order) {
            return Err(AbiError::Forbidden { pa, order: order.get(), why: "crosses a NUMA node boundary" }.into());
        }
        Ok(RadixKey::encode(pa, order)?)
    }

    /// Preserves the block of `2^order` pages at `pa` (a folio). Preserving
    /// twice is allowed and has no further effect (there is no count).
    ///
    /// The common case (the checks pass, the leaf is cached) is inlined
    /// into the caller; everything else is one call away.
    #[inline(always)]
    pub fn preserve_folio(&self, pa: PhysAddr, order: Order) -> Result<(), TrackError> {
        if let Some(key) = self.accepts(pa, order)
            && self.tree.insert_cached(&self.mem, key).is_some()
        {
            return Ok(());
        }
        self.preserve_folio_slow(pa, order)
    }

    /// [`preserve_folio`](Tracker::preserve_folio) past its inlined fast
    /// path: every check with its error, and the descent.
    #[inline(never)]
    fn preserve_folio_slow(&self, pa: PhysAddr, order: Order) -> Result<(), TrackError> {
        let key = self.check_block(pa, order)?;
        self.tree.insert(&self.mem, key)?;
        Ok(())
    }

    /// Undoes [`preserve_folio`](Tracker::preserve_folio); fails with
    /// `NotPreserved` if the block was not preserved at that order.
    pub fn unpreserve_folio(&self, pa: PhysAddr, order: Order) -> Result<(), TrackError> {
        let key = RadixKey::encode(pa, order)?;
        if self.tree.remove(&self.mem, key)? {
            Ok(())
        } else {
            Err(AbiError::NotPreserved { pa, order: order.get() }.into())
        }
    }

    /// Preserves `nr_pages` pages from `pa` as maximal naturally aligned
    /// blocks (never above the platform's maximum order, never across a
    /// NUMA node). All or nothing: if any block fails, the blocks this call
    /// preserved are unpreserved again.
    pub fn preserve_pages(&self, pa: PhysAddr, nr_pages: u64) -> Result<(), TrackError> {
        let blocks = Blocks::new(&self.mem, pa, nr_pages, self.max_order)?;
        let mut keys = Vec::new();
        for block in blocks.clone() {
            let (pa, order) = block?;
            keys.push(self.check_block(pa, order)?);
        }
        // Remember which keys this call set, so a failure undoes only those.
        let mut newly = Vec::with_capacity(keys.len());
        for key in &keys {
            match self.tree.insert(&self.mem, *key) {
                Ok(set) => newly.push(set),
                Err(e) => {
                    for (k, _) in keys.iter().zip(&newly).filter(|(_, set)| **set) {
                        let _ = self.tree.remove(&self.mem, *k);
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Unpreserves `nr_pages` pages from `pa`, split into blocks exactly as
    /// [`preserve_pages`](Tracker::preserve_pages) split them. Fails with
    /// `NotPreserved` (after clearing the others) if a block was not
    /// preserved.
    pub fn unpreserve_pages(&self, pa: PhysAddr, nr_pages: u64) -> Result<(), TrackError> {
        let mut missing = None;
        for block in Blocks::new(&self.mem, pa, nr_pages, self.max_order)? {
            let (pa, order) = block?;
            if !self.tree.remove(&self.mem, RadixKey::encode(pa, order)?)? && missing.is_none() {
                missing = Some(AbiError::NotPreserved { pa, order: order.get() });
            }
        }
        missing.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Whether exactly this block is preserved.
    pub fn is_preserved(&self, pa: PhysAddr, order: Order) -> Result<bool, TrackError> {
        Ok(self.tree.contains(&self.mem, RadixKey::encode(pa, order)?)?)
    }

    fn write_fdt(&self) -> Result<(), TrackError> {
        let dtb = fdt::build(&self.compatible, self.tree.root(), &self.subtrees)?;
        write_phys_bytes(&self.mem, self.fdt_page, &dtb)?;
        zero_phys(&self.mem, PhysAddr::new(self.fdt_page.as_u64() + dtb.len() as u64), (PAGE_SIZE - dtb.len()) as u64)?;
        Ok(())
    }

    /// Adds a subtree `name` pointing at a blob of `size` bytes at `blob`.
    /// The blob is not preserved by this call: the caller preserves it.
    /// `SubtreeExists` (EEXIST) if the name is taken, `FdtFull` (ENOSPC) if
    /// the FDT would outgrow its page.
    pub fn add_subtree(&mut self, name: &str, blob: PhysAddr, size: u64) -> Result<(), TrackError> {
        fdt::check_name(name)?;
        if self.subtrees.iter().any(|s| s.name == name) {
            return Err(TrackError::SubtreeExists { name: name.to_string() });
        }
        self.subtrees.push(Subtree { name: name.to_string(), pa: blob, size: Some(size) });
        if let Err(e) = self.write_fdt() {
            self.subtrees.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Removes the subtree whose blob is at `blob`, as the kernel does
    /// (by blob PA). `SubtreeNotFound` if there is none.
    pub fn remove_subtree(&mut self, blob: PhysAddr) -> Result<(), TrackError> {
        let i = self
            .subtrees
            .iter()
            .position(|s| s.pa == blob)
            .ok_or_else(|| TrackError::SubtreeNotFound { name: alloc::format!("<blob at {blob}>") })?;
        let removed = self.subtrees.remove(i);
        if let Err(e) = self.write_fdt() {
            self.subtrees.insert(i, removed);
            return Err(e);
        }
        Ok(())
    }

    /// The subtree called `name`.
    pub fn subtree(&self, name: &str) -> Result<&Subtree, TrackError> {
        self.subtrees
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| TrackError::SubtreeNotFound { name: name.to_string() })
    }

    /// Every subtree, in the order they were added.
    pub fn subtrees(&self) -> &[Subtree] {
        &self.subtrees
    }

    /// Calls `f` for every preserved block in the kernel's walk order.
    pub fn for_each_block<B>(
        &self,
        f: &mut dyn FnMut(PhysAddr, Order) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        TreeView::new(&self.mem, self.tree.root()).for_each_block(&mut Guard::trusted(), f)
    }

    /// Calls `f` for every coalesced range of preserved memory, ascending.
    pub fn for_each_range<B>(
        &self,
        f: &mut dyn FnMut(PhysAddr, u64) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        TreeView::new(&self.mem, self.tree.root()).for_each_range(self.max_order, f)
    }

    /// Pages the radix tree occupies.
    pub fn tree_pages(&self) -> Result<u64, TrackError> {
        let mut guard = Guard::collecting();
        let _ = TreeView::new(&self.mem, self.tree.root())
            .for_each_leaf::<()>(&mut guard, &mut |_, _| Ok(ControlFlow::Continue(())))?;
        Ok(guard.into_nodes().len() as u64)
    }

    /// Ends the outgoing side: writes the scratch array into pages of its
    /// own and returns the `kho_data` for the next kernel. Every page the
    /// tracker holds now belongs to the handover.
    pub fn finish(self) -> Result<KhoData, TrackError> {
        self.finish_into_platform().0
    }

    /// As [`finish`](Tracker::finish), and gives the platform back (for a
    /// tracker that owns it, say in a `Box`, whose caller goes on to
    /// kexec).
    pub fn finish_into_platform(self) -> (Result<KhoData, TrackError>, P) {
        let data = self.write_scratch();
        (data, self.mem)
    }

    /// Writes the scratch array and builds the `kho_data` naming it.
    fn write_scratch(&self) -> Result<KhoData, TrackError> {
        let bytes = (self.scratch.len() * size_of::<KhoScratch>()) as u64;
        let (scratch_addr, scratch_size) = if bytes == 0 {
            (0, 0)
        } else {
            let pages = bytes.div_ceil(PAGE_SIZE as u64);
            let order = Order::new(u64::from(pages.next_power_of_two().trailing_zeros()), "scratch array order")?;
            let pa = self.mem.alloc_pages(order)?;
            for (i, s) in self.scratch.iter().enumerate() {
                write_phys(&self.mem, PhysAddr::new(pa.as_u64() + (i * size_of::<KhoScratch>()) as u64), s)?;
            }
            (pa.as_u64(), bytes)
        };
        Ok(KhoData { fdt_addr: self.fdt_page.as_u64(), fdt_size: PAGE_SIZE as u64, scratch_addr, scratch_size })
    }

    /// Frees every page the tracker allocated: the tree and the FDT page.
    /// Preserved blocks themselves belong to their owners and are not
    /// touched.
    pub fn destroy(self) {
        let Tracker { mem, tree, fdt_page, .. } = self;
        tree.destroy(&mem);
        mem.free_pages(fdt_page, Order::ZERO);
    }

    /// The platform the tracker reaches memory through.
    pub fn platform(&self) -> &P {
        &self.mem
    }

    /// Gives up the tracker without freeing anything, as dropping it does
    /// (its pages stay allocated), and returns its platform.
    pub fn into_platform(self) -> P {
        self.mem
    }
}

impl<P: PhysMem + PageAlloc> Preserve for Tracker<P> {
    #[inline(always)]
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.preserve_folio(pa, order).map_err(to_abi)
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.unpreserve_folio(pa, order).map_err(to_abi)
    }
}

/// Carries a tracker error through the seam's error type: a wire-layer
/// error as it is, any other with its stable kind and errno.
#[cold]
pub(crate) fn to_abi(e: TrackError) -> AbiError {
    match e {
        TrackError::Abi(e) => e,
        other => AbiError::Layer { layer: "tracker", kind: other.kind(), errno: other.errno() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_abi::Errno;

    #[test]
    fn a_tracker_error_crosses_the_seam_with_its_kind_and_errno() {
        let e = to_abi(TrackError::SubtreeExists { name: "LUO".into() });
        assert_eq!((e.kind(), e.errno()), ("subtree_exists", Errno::Exist));
        let abi = AbiError::NotRam { pa: PhysAddr::new(0x1000), len: 1 };
        assert_eq!(to_abi(TrackError::Abi(abi)), abi, "wire errors pass unchanged");
    }
}
