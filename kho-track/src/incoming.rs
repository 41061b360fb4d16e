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

use crate::error::{BlockFault, TrackError, TreeFault};
use crate::fdt::{RootFdt, Subtree};
use crate::split::Blocks;
use crate::tree::RadixTree;
use crate::walk::{Guard, TreeView};

/// The most scratch areas a handover may list.
pub const MAX_SCRATCH: u64 = 1024;

/// What an import found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStats {
    /// Preserved blocks.
    pub blocks: u64,
    /// Pages in them.
    pub pages: u64,
    /// Pages of the radix tree.
    pub tree_pages: u64,
    /// Blocks per order.
    pub blocks_by_order: [u64; 64],
}

/// The handover a previous kernel left, validated.
pub struct Incoming<'p, P: PhysMem + PageAlloc + ?Sized> {
    mem: &'p P,
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

impl<P: PhysMem + PageAlloc + ?Sized> core::fmt::Debug for Incoming<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Incoming")
            .field("compatible", &self.fdt.compatible())
            .field("root", &self.tree.root())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<'p, P: PhysMem + PageAlloc + ?Sized> Incoming<'p, P> {
    /// Validates the handover described by `data` and everything it points
    /// at. The tree is walked once; nothing is claimed except the root FDT's
    /// own page, which the returned value owns.
    pub fn import(mem: &'p P, data: &KhoData) -> Result<Self, TrackError> {
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
                read_phys(mem, PhysAddr::new(root.scratch.as_u64() + i * size_of::<KhoScratch>() as u64))?;
            s.validate()?;
            scratch.push(s);
        }
        if scratch.iter().any(|s| s.overlaps(root.fdt, root.fdt_size)) {
            return Err(AbiError::Forbidden { pa: root.fdt, order: 0, why: "root FDT lies in a scratch area" }.into());
        }
        let mut bytes = vec![0u8; root.fdt_size as usize];
        read_phys_bytes(mem, root.fdt, &mut bytes)?;
        let fdt = RootFdt::parse(root.fdt, bytes)?;
        let max_order = mem.max_order();
        // A kho-v1 map is converted into a radix tree of this kernel's own,
        // allocated from scratch; a radix map is adopted in place and must
        // pass every check of an untrusted tree.
        let legacy = !fdt.version().has_radix_tree();
        let tree = if legacy {
            crate::legacy::convert_v1(mem, fdt.memory_map(), &scratch)?
        } else {
            RadixTree::from_root(fdt.memory_map())
        };
        let view = TreeView::new(mem, tree.root());
        let mut guard = if legacy { Guard::collecting() } else { Guard::untrusted(&scratch) };
        let mut stats = ImportStats { blocks: 0, pages: 0, tree_pages: 0, blocks_by_order: [0; 64] };
        let walked = view.for_each_block(&mut guard, &mut |pa, order| {
            let fault = |fault| ControlFlow::Break(TrackError::Block { pa, order, fault });
            if order > max_order {
                return fault(BlockFault::OrderTooLarge);
            }
            match order.checked_bytes() {
                Some(len) if mem.phys_to_virt(pa, len).is_ok() => {
                    if scratch.iter().any(|s| s.overlaps(pa, len)) {
                        return fault(BlockFault::InScratch);
                    }
                }
                _ => return fault(BlockFault::NotRam),
            }
            stats.blocks += 1;
            stats.pages += order.pages();
            stats.blocks_by_order[order.get() as usize] += 1;
            ControlFlow::Continue(())
        });
        // Blocks must not overlap either: each page has at most one owner.
        let checked = match walked {
            Ok(ControlFlow::Continue(())) => Self::check_disjoint(mem, &tree, max_order, stats.pages),
            Ok(ControlFlow::Break(e)) | Err(e) => Err(e),
        };
        if let Err(e) = checked {
            // A converted kho-v1 tree is this kernel's own allocation.
            if legacy {
                tree.destroy(mem);
            }
            return Err(e);
        }
        let nodes = guard.into_nodes();
        stats.tree_pages = nodes.len() as u64;
        if !legacy {
            for &node in &nodes {
                for o in 0..=max_order.get() {
                    let order = Order::new(u64::from(o), "order")?;
                    let base = node.align_down(order.checked_bytes().unwrap_or(u64::MAX));
                    if tree.contains(mem, RadixKey::encode(base, order)?)? {
                        return Err(TrackError::Tree { node, level: 0, index: 0, fault: TreeFault::InPreservedBlock });
                    }
                }
            }
        }
        let fdt_key = RadixKey::encode(root.fdt.align_down(PAGE_SIZE as u64), Order::ZERO)?;
        let fdt_claimed = tree.remove(mem, fdt_key)?;
        Ok(Incoming { mem, fdt, scratch, tree, nodes, stats, max_order, fdt_claimed, tree_owned: legacy })
    }

    /// Fails with `Overlaps`, naming the later of the first two blocks
    /// that share a page, unless the blocks of `tree` (`pages` in all) are
    /// disjoint.
    fn check_disjoint(mem: &P, tree: &RadixTree, max_order: Order, pages: u64) -> Result<(), TrackError> {
        let view = TreeView::new(mem, tree.root());
        let mut covered = 0u64;
        let _ = view.for_each_range::<()>(max_order, &mut |_, len| {
            covered += len;
            ControlFlow::Continue(())
        })?;
        if covered == pages.saturating_mul(PAGE_SIZE as u64) {
            return Ok(());
        }
        // Rare: find the culprit.
        let mut blocks = Vec::new();
        let _ = view.for_each_block::<()>(&mut Guard::trusted(), &mut |pa, order| {
            blocks.push((pa, order));
            ControlFlow::Continue(())
        })?;
        blocks.sort_unstable();
        let mut end = 0u64;
        for (pa, order) in blocks {
            if pa.as_u64() < end {
                return Err(TrackError::Block { pa, order, fault: BlockFault::Overlaps });
            }
            end = end.max(pa.as_u64().saturating_add(order.checked_bytes().unwrap_or(u64::MAX)));
        }
        Ok(())
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
        TreeView::new(self.mem, self.tree.root()).for_each_block(&mut Guard::trusted(), f)
    }

    /// Calls `f` for every coalesced range of preserved memory not yet
    /// restored, ascending: what a kernel feeds its boot-time reservation.
    pub fn for_each_range<B>(
        &self,
        f: &mut dyn FnMut(PhysAddr, u64) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        TreeView::new(self.mem, self.tree.root()).for_each_range(self.max_order, f)
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
        if self.tree.remove(self.mem, key)? {
            Ok(())
        } else {
            Err(AbiError::NotPreserved { pa, order: order.get() }.into())
        }
    }

    /// Restores `nr_pages` pages from `pa`, split into blocks as the
    /// previous kernel split them when it preserved the range. All or
    /// nothing: on failure the blocks restored by this call are given back.
    pub fn restore_pages(&self, pa: PhysAddr, nr_pages: u64) -> Result<(), TrackError> {
        let blocks = Blocks::new(self.mem, pa, nr_pages, self.max_order)?;
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
}

impl<P: PhysMem + PageAlloc + ?Sized> Claim for Incoming<'_, P> {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.restore_folio(pa, order).map_err(crate::outgoing::to_abi)
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        if let Ok(key) = RadixKey::encode(pa, order) {
            let _ = self.tree.insert(self.mem, key);
        }
    }
}
