//! The incoming side: the next kernel adopts what its predecessor left.
//!
//! [`Incoming::import`] treats everything behind a `kho_data` as untrusted:
//! the FDT is parsed with bounds, the compatible must be one this build
//! reads, and the whole radix tree is walked once with every check of
//! [`Guard::untrusted`] plus per-block checks (order within this kernel's
//! maximum, block in RAM, not in a scratch area) and a check that no tree
//! page lies inside a preserved block. After that the tree is used in
//! place: restoring a block clears its bit, so a block can be restored only
//! once, and only with the order it was preserved with.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use kho_abi::{
    AbiError, Claim, KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, RadixKey, RootVersion,
    read_phys, read_phys_bytes,
};

pub use crate::check::{DEFAULT_MAX_MAP_PAGES, ImportLimits, ImportStats};
use crate::check::{ScratchSet, check_run, for_each_run};
use crate::error::{BlobFault, BlockFault, TrackError, TreeFault};
use crate::fdt::{RootFdt, Subtree};
use crate::mem::WORDS;
use crate::split::Blocks;
use crate::sync::Ordering;
use crate::tree::RadixTree;
use crate::walk::{Guard, TreeView};

/// The most scratch areas a handover may list.
pub const MAX_SCRATCH: u64 = 1024;

/// The handover a previous kernel left, validated.
pub struct Incoming<P: PhysMem + PageAlloc> {
    mem: P,
    fdt: RootFdt,
    scratch: Vec<KhoScratch>,
    tree: RadixTree,
    nodes: Vec<PhysAddr>,
    stats: ImportStats,
    max_order: Order,
    fdt_claimed: bool,
    /// The tree was built by this kernel (from a `kho-v1` map): its pages
    /// are ordinary allocations, not memory to reserve.
    tree_owned: bool,
}

impl<P: PhysMem + PageAlloc> core::fmt::Debug for Incoming<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Incoming")
            .field("compatible", &self.fdt.compatible())
            .field("root", &self.tree.root())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: PhysMem + PageAlloc> Incoming<P> {
    /// Validates the handover described by `data` and everything it points
    /// at, within the default [`ImportLimits`]. The tree is walked once;
    /// nothing is claimed except the root FDT's own page, which the
    /// returned value owns.
    pub fn import(mem: P, data: &KhoData) -> Result<Self, TrackError> {
        Self::import_with(mem, data, &ImportLimits::default())
    }

    /// As [`import`](Incoming::import), within `limits`.
    pub fn import_with(mem: P, data: &KhoData, limits: &ImportLimits) -> Result<Self, TrackError> {
        let root = data.validate()?;
        if root.scratch_count > MAX_SCRATCH {
            return Err(AbiError::CountTooLarge {
                what: "kho_data scratch entries",
                count: root.scratch_count,
                max: MAX_SCRATCH,
            }
            .into());
        }
        let mut scratch = Vec::with_capacity(root.scratch_count as usize);
        for i in 0..root.scratch_count {
            let s: KhoScratch =
                read_phys(&mem, PhysAddr::new(root.scratch.as_u64() + i * size_of::<KhoScratch>() as u64))?;
            s.validate()?;
            scratch.push(s);
        }
        if scratch.iter().any(|s| s.overlaps(root.fdt, root.fdt_size)) {
            return Err(AbiError::Forbidden { pa: root.fdt, order: 0, why: "root FDT lies in a scratch area" }.into());
        }
        let mut bytes = vec![0u8; root.fdt_size as usize];
        read_phys_bytes(&mem, root.fdt, &mut bytes)?;
        let fdt = RootFdt::parse(root.fdt, bytes)?;
        let max_order = mem.max_order();
        // A kho-v1 map is converted into a radix tree of this kernel's own,
        // allocated from scratch, its blocks checked as it is read; a radix
        // map is adopted in place and must pass every check of an untrusted
        // tree.
        let legacy = !fdt.version().has_radix_tree();
        let (tree, nodes, stats) = if legacy {
            let conv = crate::legacy::convert_v1(&mem, fdt.memory_map(), &scratch, limits)?;
            match Self::check_converted(&mem, &conv.tree, max_order) {
                Ok(nodes) => (conv.tree, nodes, conv.stats),
                Err(e) => {
                    conv.tree.destroy(&mem);
                    return Err(e);
                }
            }
        } else {
            let tree = RadixTree::from_root(fdt.memory_map());
            let (nodes, stats) = Self::check_tree(&mem, &tree, &scratch, max_order, limits)?;
            (tree, nodes, stats)
        };
        let mut stats = stats;
        stats.tree_pages = nodes.len() as u64;
        let fdt_key = RadixKey::encode(root.fdt.align_down(PAGE_SIZE as u64), Order::ZERO)?;
        let fdt_claimed = tree.remove(&mem, fdt_key)?;
        Ok(Incoming { mem, fdt, scratch, tree, nodes, stats, max_order, fdt_claimed, tree_owned: legacy })
    }

    /// The checks of a converted `kho-v1` tree left after conversion: no
    /// two blocks (of different orders) share a page. Returns its pages.
    fn check_converted(mem: &P, tree: &RadixTree, max_order: Order) -> Result<Vec<PhysAddr>, TrackError> {
        let view = TreeView::new(mem, tree.root());
        let mut guard = Guard::collecting();
        let _ = view.for_each_leaf::<()>(&mut guard, &mut |_, _| Ok(ControlFlow::Continue(())))?;
        Self::check_disjoint(&view, max_order)?;
        Ok(guard.into_nodes())
    }

    /// Every check of an untrusted radix tree: the walk's (each node once,
    /// aligned, RAM, outside scratch, within `limits`, keys within the key
    /// width), each block's (order, RAM, scratch; checked per run of set
    /// bits), blocks disjoint, and no tree page inside a preserved block.
    /// Returns the tree's pages and what it holds.
    fn check_tree(
        mem: &P,
        tree: &RadixTree,
        scratch: &[KhoScratch],
        max_order: Order,
        limits: &ImportLimits,
    ) -> Result<(Vec<PhysAddr>, ImportStats), TrackError> {
        let view = TreeView::new(mem, tree.root());
        let set = ScratchSet::new(scratch);
        let mut guard = Guard::untrusted(scratch).with_limit(limits.max_map_pages);
        let mut stats = ImportStats { blocks: 0, pages: 0, tree_pages: 0, blocks_by_order: [0; 64] };
        let mut words = [0u64; WORDS];
        let _ = view.for_each_leaf_at::<()>(&mut guard, &mut |base, leaf_pa, leaf| {
            for (w, word) in words.iter_mut().zip(leaf.iter()) {
                *w = word.load(Ordering::Relaxed);
            }
            if base == 0 {
                // The leaf of the smallest keys: key 0 has no order bit, the
                // others are of orders no kernel can have.
                if words[0] & 1 != 0 {
                    return Err(TrackError::Tree { node: leaf_pa, level: 0, index: 0, fault: TreeFault::ZeroKey });
                }
            }
            for_each_run(&words, &mut |bit, count| {
                let key = RadixKey::from_raw(base | bit).map_err(TrackError::from)?;
                let (pa, order) = key.decode();
                // Every key of a leaf with a non-zero base has one order; in
                // the first leaf, check key by key.
                let count = if base == 0 { 1 } else { count };
                check_run(mem, &set, max_order, pa, order, count)?;
                stats.blocks += count;
                stats.pages += count << order.get();
                stats.blocks_by_order[order.get() as usize] += count;
                Ok::<(), TrackError>(())
            })?;
            Ok(ControlFlow::Continue(()))
        })?;
        // Distinct keys of one order are distinct aligned blocks, so a tree
        // holding a single order needs no overlap pass (the common case:
        // order-0 pages and the FDT's page).
        let orders = stats.blocks_by_order.iter().filter(|&&n| n > 0).count();
        if orders > 1 {
            Self::check_disjoint(&view, max_order)?;
        }
        let nodes = guard.into_nodes();
        for &node in &nodes {
            // Only an order that holds blocks can hold a tree page.
            for o in (0..=max_order.get()).filter(|&o| stats.blocks_by_order[o as usize] > 0) {
                let order = Order::new(u64::from(o), "order")?;
                let base = node.align_down(order.checked_bytes().unwrap_or(u64::MAX));
                if tree.contains(mem, RadixKey::encode(base, order)?)? {
                    return Err(match view.slot_of(node)? {
                        Some((table, level, index)) => {
                            TrackError::Tree { node: table, level, index, fault: TreeFault::InPreservedBlock }
                        }
                        None => TrackError::MapRoot { pa: node, fault: TreeFault::InPreservedBlock },
                    });
                }
            }
        }
        Ok((nodes, stats))
    }

    /// Fails with `Overlaps`, naming the later of the first two blocks
    /// that share a page, unless the blocks of the tree are disjoint.
    fn check_disjoint(view: &TreeView<'_, P>, max_order: Order) -> Result<(), TrackError> {
        match view.first_overlap(max_order)? {
            Some((pa, order)) => Err(TrackError::Block { pa, order, fault: BlockFault::Overlaps }),
            None => Ok(()),
        }
    }

    /// The root format version.
    pub fn version(&self) -> RootVersion {
        self.fdt.version()
    }

    /// The root compatible string.
    pub fn compatible(&self) -> &str {
        self.fdt.compatible()
    }

    /// The root FDT as read.
    pub fn fdt(&self) -> &RootFdt {
        &self.fdt
    }

    /// The scratch areas the previous kernel named.
    pub fn scratch(&self) -> &[KhoScratch] {
        &self.scratch
    }

    /// What the import found.
    pub fn stats(&self) -> &ImportStats {
        &self.stats
    }

    /// PA of the root table.
    pub fn tree_root(&self) -> PhysAddr {
        self.tree.root()
    }

    /// The tree's pages.
    pub fn tree_nodes(&self) -> &[PhysAddr] {
        &self.nodes
    }

    /// Everything the next kernel must keep away from its allocator until
    /// it calls [`finish`](Incoming::finish): every unclaimed preserved
    /// block, the tree's pages (unless this kernel allocated them itself,
    /// converting a `kho-v1` map), and the root FDT's page. Call it before
    /// restoring anything.
    pub fn reserved_blocks(&self) -> Result<Vec<(PhysAddr, Order)>, TrackError> {
        let mut out = self.unclaimed()?;
        if !self.tree_owned {
            out.extend(self.nodes.iter().map(|&pa| (pa, Order::ZERO)));
        }
        if self.fdt_claimed {
            out.push((self.fdt.pa().align_down(PAGE_SIZE as u64), Order::ZERO));
        }
        Ok(out)
    }

    /// Calls `f` for every preserved block not yet restored, in the kernel's
    /// order (larger orders first, then ascending PA).
    pub fn for_each_block<B>(
        &self,
        f: &mut dyn FnMut(PhysAddr, Order) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        TreeView::new(&self.mem, self.tree.root()).for_each_block(&mut Guard::trusted(), f)
    }

    /// Calls `f` for every coalesced range of preserved memory not yet
    /// restored, ascending: what a kernel feeds its boot-time reservation.
    pub fn for_each_range<B>(
        &self,
        f: &mut dyn FnMut(PhysAddr, u64) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        TreeView::new(&self.mem, self.tree.root()).for_each_range(self.max_order, f)
    }

    /// Preserved blocks nobody restored, for the kernel to free.
    pub fn unclaimed(&self) -> Result<Vec<(PhysAddr, Order)>, TrackError> {
        let mut out = Vec::with_capacity(self.stats.blocks as usize + self.nodes.len() + 1);
        let _ = self.for_each_block::<()>(&mut |pa, order| {
            out.push((pa, order));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Restores the folio at `pa`: fails with `NotPreserved` unless exactly
    /// that block was preserved with that order and not restored before.
    pub fn restore_folio(&self, pa: PhysAddr, order: Order) -> Result<(), TrackError> {
        let order = Order::new_at_most(u64::from(order.get()), self.max_order, "restore order")?;
        let key = RadixKey::encode(pa, order)?;
        if self.tree.remove(&self.mem, key)? {
            Ok(())
        } else {
            Err(AbiError::NotPreserved { pa, order: order.get() }.into())
        }
    }

    /// Restores `nr_pages` pages from `pa`, split into blocks as the
    /// previous kernel split them when it preserved the range. All or
    /// nothing: on failure the blocks restored by this call are given back.
    pub fn restore_pages(&self, pa: PhysAddr, nr_pages: u64) -> Result<(), TrackError> {
        let blocks = Blocks::new(&self.mem, pa, nr_pages, self.max_order)?;
        for (i, block) in blocks.clone().enumerate() {
            let result = block.and_then(|(pa, order)| self.restore_folio(pa, order));
            if let Err(e) = result {
                for done in blocks.clone().take(i).flatten() {
                    self.unclaim(done.0, done.1);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The subtree called `name`.
    pub fn subtree(&self, name: &str) -> Result<Subtree, TrackError> {
        self.fdt.subtree(name)
    }

    /// Whether every page of `[pa, pa + len)` (`len` 0 is taken as 1) lies
    /// inside preserved blocks not yet restored: any blocks, of any order,
    /// each containing part of the range. The root FDT's page, which the
    /// import claimed if it was preserved as its own block, counts as not
    /// preserved here (see [`root_fdt_preserved`](Incoming::root_fdt_preserved)).
    /// Costs at most `max_order + 1` lookups per block covering the range.
    pub fn is_preserved(&self, pa: PhysAddr, len: u64) -> Result<bool, TrackError> {
        let end = pa.checked_add(len.max(1)).ok_or(AbiError::Overflow { what: "preserved range" })?;
        Ok(self.first_unpreserved(pa, end)?.is_none())
    }

    /// The first page of `[pa, end)` in no unrestored preserved block.
    fn first_unpreserved(&self, pa: PhysAddr, end: PhysAddr) -> Result<Option<PhysAddr>, TrackError> {
        let mut p = pa.align_down(PAGE_SIZE as u64).as_u64();
        'pages: while p < end.as_u64() {
            for o in 0..=self.max_order.get() {
                let order = Order::new(u64::from(o), "order")?;
                let bytes = order.checked_bytes().ok_or(AbiError::Overflow { what: "block size" })?;
                let base = p & !(bytes - 1);
                if self.tree.contains(&self.mem, RadixKey::encode(PhysAddr::new(base), order)?)? {
                    // The next page after this block (the block is RAM, so
                    // its end does not overflow; saturate all the same).
                    p = base.saturating_add(bytes);
                    continue 'pages;
                }
            }
            return Ok(Some(PhysAddr::new(p)));
        }
        Ok(None)
    }

    /// Whether the root FDT's page was preserved: as a block of its own
    /// (which the import claimed) or inside a larger preserved block.
    pub fn root_fdt_preserved(&self) -> Result<bool, TrackError> {
        Ok(self.fdt_claimed || self.is_preserved(self.fdt.pa().align_down(PAGE_SIZE as u64), PAGE_SIZE as u64)?)
    }

    /// Looks up the subtree `name` and checks its blob over its whole
    /// `blob-size` (one page for roots before `kho-v3`, which have none; a
    /// size of 0 is taken as 1): PA non-zero, PA plus size without
    /// overflow, entirely RAM, and every page inside preserved blocks not
    /// yet restored. A blob that passes can be restored block by block;
    /// one that fails is reported as `SubtreeBlob`, naming the subtree and
    /// the first address at fault.
    pub fn check_subtree_blob(&self, name: &str) -> Result<Subtree, TrackError> {
        let sub = self.subtree(name)?;
        self.check_blob(&sub)?;
        Ok(sub)
    }

    /// The checks of [`check_subtree_blob`](Incoming::check_subtree_blob)
    /// on a subtree already looked up (for example from
    /// [`subtrees`](Incoming::subtrees)).
    pub fn check_blob(&self, sub: &Subtree) -> Result<(), TrackError> {
        let size = sub.size.unwrap_or(PAGE_SIZE as u64);
        let fault = |at, fault| TrackError::SubtreeBlob { name: sub.name.clone(), pa: sub.pa, size, at, fault };
        if sub.pa.is_null() {
            return Err(fault(sub.pa, BlobFault::ZeroAddress));
        }
        let len = size.max(1);
        let Some(end) = sub.pa.checked_add(len) else { return Err(fault(sub.pa, BlobFault::Overflow)) };
        if self.mem.phys_to_virt(sub.pa, len).is_err() {
            // The longest RAM prefix, by bisection: the first byte past it
            // is the one at fault.
            let (mut ok, mut bad) = (0u64, len);
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                if self.mem.phys_to_virt(sub.pa, mid).is_ok() {
                    ok = mid;
                } else {
                    bad = mid;
                }
            }
            return Err(fault(PhysAddr::new(sub.pa.as_u64() + ok), BlobFault::NotRam));
        }
        match self.first_unpreserved(sub.pa, end)? {
            Some(page) => Err(fault(page.max(sub.pa), BlobFault::NotPreserved)),
            None => Ok(()),
        }
    }

    /// Every subtree.
    pub fn subtrees(&self) -> impl Iterator<Item = Result<Subtree, TrackError>> + '_ {
        self.fdt.subtrees()
    }

    /// Ends the incoming side: frees the tree's pages and the root FDT's
    /// page, which [`reserved_blocks`](Incoming::reserved_blocks) told the
    /// kernel to keep. Unclaimed blocks stay reserved; free them with the
    /// platform once listed by [`unclaimed`](Incoming::unclaimed).
    pub fn finish(self) {
        for &pa in &self.nodes {
            self.mem.free_pages(pa, Order::ZERO);
        }
        if self.fdt_claimed {
            self.mem.free_pages(self.fdt.pa().align_down(PAGE_SIZE as u64), Order::ZERO);
        }
    }

    /// The platform the handover is reached through.
    pub fn platform(&self) -> &P {
        &self.mem
    }

    /// Gives up the handle without freeing anything (the tree's pages and
    /// the root FDT's page stay reserved, as when it is dropped) and
    /// returns its platform.
    pub fn into_platform(self) -> P {
        self.mem
    }
}

impl<P: PhysMem + PageAlloc> Claim for Incoming<P> {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.restore_folio(pa, order).map_err(crate::outgoing::to_abi)
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        if let Ok(key) = RadixKey::encode(pa, order) {
            let _ = self.tree.insert(&self.mem, key);
        }
    }
}
