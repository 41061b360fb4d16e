//! Walking a radix tree: every leaf, every block, or coalesced ranges.
//!
//! A walk may run over a tree a previous kernel left, which is untrusted:
//! every slot is checked for alignment and RAM before it is followed, keys
//! are checked against the key width, and a [`Guard`] can reject nodes
//! reached twice (a hostile tree can hang one table under every slot, which
//! would otherwise make the walk exponential in the depth) or lying in
//! scratch areas. The recursion depth is the tree depth, fixed by the page
//! size.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use kho_abi::{GEOMETRY, KhoScratch, Order, PAGE_SIZE, PhysAddr, RadixKey, TABLE_ENTRIES};

use crate::check::ScratchSet;
use crate::error::{TrackError, TreeFault};
use crate::mem::{TreeMem, WORDS};
use crate::sync::{AtomicU64, Ordering};
use crate::tree::ROOT_LEVEL;

/// Checks applied to each node a walk reaches.
#[derive(Debug)]
pub struct Guard {
    /// Node PAs seen so far, when sharing is to be detected.
    seen: Option<BTreeSet<u64>>,
    /// Areas no node may lie in.
    scratch: ScratchSet,
    /// Every node reached, when collected.
    nodes: Option<Vec<PhysAddr>>,
    /// Nodes entered so far.
    entered: u64,
    /// The most nodes a walk may enter.
    max_nodes: u64,
}

/// Where a node hangs: the table holding its slot, that table's level and
/// the slot index; `None` for the root.
type Parent = Option<(PhysAddr, u32, usize)>;

/// The error for `fault` at the node `pa` reached from `parent`: the root
/// is named as such, any other node by the slot that points at it.
fn node_fault(pa: PhysAddr, parent: Parent, fault: TreeFault) -> TrackError {
    match parent {
        None => TrackError::MapRoot { pa, fault },
        Some((node, level, index)) => TrackError::Tree { node, level, index, fault },
    }
}

impl Guard {
    /// No checks beyond alignment and RAM: for trees this kernel built.
    pub fn trusted() -> Guard {
        Guard { seen: None, scratch: ScratchSet::default(), nodes: None, entered: 0, max_nodes: u64::MAX }
    }

    /// Full checks for a tree from a previous kernel: no node reached twice,
    /// none in `scratch`; every node is recorded.
    pub fn untrusted(scratch: &[KhoScratch]) -> Guard {
        Guard {
            seen: Some(BTreeSet::new()),
            scratch: ScratchSet::new(scratch),
            nodes: Some(Vec::new()),
            entered: 0,
            max_nodes: u64::MAX,
        }
    }

    /// Records every node reached, with no other checks.
    pub fn collecting() -> Guard {
        Guard { nodes: Some(Vec::new()), ..Guard::trusted() }
    }

    /// Refuses, with `MapTooLarge`, a walk that would enter more than
    /// `max` nodes.
    pub fn with_limit(self, max: u64) -> Guard {
        Guard { max_nodes: max, ..self }
    }

    /// The nodes reached, if they were recorded.
    pub fn into_nodes(self) -> Vec<PhysAddr> {
        self.nodes.unwrap_or_default()
    }

    fn enter(&mut self, pa: PhysAddr, parent: Parent) -> Result<(), TrackError> {
        if self.entered >= self.max_nodes {
            return Err(TrackError::MapTooLarge { pages: self.entered + 1, max: self.max_nodes });
        }
        self.entered += 1;
        if let Some(seen) = &mut self.seen
            && !seen.insert(pa.as_u64())
        {
            return Err(node_fault(pa, parent, TreeFault::Shared));
        }
        if self.scratch.overlaps(pa, PAGE_SIZE as u64) {
            return Err(node_fault(pa, parent, TreeFault::InScratch));
        }
        if let Some(nodes) = &mut self.nodes {
            nodes.push(pa);
        }
        Ok(())
    }
}

/// A read-only view of a tree rooted at `root`.
pub struct TreeView<'m, M: ?Sized> {
    mem: &'m M,
    root: PhysAddr,
}

type Words<'m> = &'m [AtomicU64; WORDS];

impl<'m, M: TreeMem + ?Sized> TreeView<'m, M> {
    /// A view of the tree at `root` in `mem`.
    pub fn new(mem: &'m M, root: PhysAddr) -> Self {
        TreeView { mem, root }
    }

    fn node(&self, pa: PhysAddr, parent: Parent) -> Result<Words<'m>, TrackError> {
        if !pa.is_page_aligned() {
            return Err(node_fault(pa, parent, TreeFault::Misaligned));
        }
        self.mem.words(pa).map_err(|_| node_fault(pa, parent, TreeFault::NotRam))
    }

    /// Calls `f(base_key, leaf)` for every leaf in ascending key order;
    /// `base_key` is the key of the leaf's bit 0.
    pub fn for_each_leaf<B>(
        &self,
        guard: &mut Guard,
        f: &mut dyn FnMut(u64, Words<'m>) -> Result<ControlFlow<B>, TrackError>,
    ) -> Result<ControlFlow<B>, TrackError> {
        self.for_each_leaf_at(guard, &mut |base, _, words| f(base, words))
    }

    /// As [`for_each_leaf`](TreeView::for_each_leaf), also passing each
    /// leaf's PA: `f(base_key, leaf_pa, leaf)`.
    pub fn for_each_leaf_at<B>(
        &self,
        guard: &mut Guard,
        f: &mut dyn FnMut(u64, PhysAddr, Words<'m>) -> Result<ControlFlow<B>, TrackError>,
    ) -> Result<ControlFlow<B>, TrackError> {
        let root = self.node(self.root, None)?;
        guard.enter(self.root, None)?;
        self.visit(root, self.root, ROOT_LEVEL, 0, guard, f)
    }

    fn visit<B>(
        &self,
        words: Words<'m>,
        pa: PhysAddr,
        level: u32,
        prefix: u64,
        guard: &mut Guard,
        f: &mut dyn FnMut(u64, PhysAddr, Words<'m>) -> Result<ControlFlow<B>, TrackError>,
    ) -> Result<ControlFlow<B>, TrackError> {
        if level == 0 {
            return f(prefix, pa, words);
        }
        let shift = GEOMETRY.level_shift(level);
        for (index, slot) in words.iter().enumerate().take(TABLE_ENTRIES) {
            let raw = slot.load(Ordering::Acquire);
            if raw == 0 {
                continue;
            }
            let child_prefix = prefix | ((index as u64) << shift);
            if child_prefix >> GEOMETRY.key_bits != 0 {
                return Err(TrackError::Tree { node: pa, level, index, fault: TreeFault::KeyTooWide });
            }
            let child = PhysAddr::new(raw);
            let child_words = self.node(child, Some((pa, level, index)))?;
            guard.enter(child, Some((pa, level, index)))?;
            if let ControlFlow::Break(b) = self.visit(child_words, child, level - 1, child_prefix, guard, f)? {
                return Ok(ControlFlow::Break(b));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Calls `f(pa, order)` for every block in the kernel's order
    /// (ascending key: larger orders first, then ascending PA).
    pub fn for_each_block<B>(
        &self,
        guard: &mut Guard,
        f: &mut dyn FnMut(PhysAddr, Order) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        self.for_each_leaf_at(guard, &mut |base, leaf_pa, leaf| {
            if base != 0 {
                // Every key of a leaf with a non-zero base is non-zero and
                // has the base's order bit (the bit index lies below it), and
                // the walk already refused bases wider than the key width:
                // the leaf's keys are valid and its blocks are `pa0 + i`
                // blocks of one order, so each costs a shift and an add.
                let (pa0, order) = RadixKey::from_raw(base)
                    .map_err(|_| TrackError::Tree { node: leaf_pa, level: 0, index: 0, fault: TreeFault::KeyTooWide })?
                    .decode();
                let shift = order.byte_shift();
                for (w, word) in leaf.iter().enumerate() {
                    let mut bits = word.load(Ordering::Relaxed);
                    while bits != 0 {
                        let bit = w as u64 * 64 + u64::from(bits.trailing_zeros());
                        bits &= bits - 1;
                        // No overflow: `base | bit` is a valid key whose
                        // decoded PA is exactly this sum.
                        if let ControlFlow::Break(b) = f(PhysAddr::new(pa0.as_u64() + (bit << shift)), order) {
                            return Ok(ControlFlow::Break(b));
                        }
                    }
                }
                return Ok(ControlFlow::Continue(()));
            }
            for (w, word) in leaf.iter().enumerate() {
                let mut bits = word.load(Ordering::Relaxed);
                while bits != 0 {
                    let raw = base | (w as u64 * 64 + u64::from(bits.trailing_zeros()));
                    bits &= bits - 1;
                    let key = RadixKey::from_raw(raw).map_err(|_| TrackError::Tree {
                        node: leaf_pa,
                        level: 0,
                        index: (raw & (GEOMETRY.bitmap_len as u64 - 1)) as usize,
                        fault: TreeFault::ZeroKey,
                    })?;
                    let (pa, order) = key.decode();
                    if let ControlFlow::Break(b) = f(pa, order) {
                        return Ok(ControlFlow::Break(b));
                    }
                }
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Calls `f(start, len)` for every maximal run of preserved memory in
    /// ascending PA order: adjacent or overlapping blocks of any order are
    /// merged, so a fully preserved GiB is one call. Blocks above
    /// `max_order` are not looked for (trees kho built or validated have
    /// none).
    pub fn for_each_range<B>(
        &self,
        max_order: Order,
        f: &mut dyn FnMut(PhysAddr, u64) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        let mut acc: Option<(u64, u64)> = None;
        let merged = self.for_each_run(max_order, &mut |start, end, _| {
            acc = match acc {
                Some((a, e)) if start <= e => Some((a, e.max(end))),
                Some((a, e)) => {
                    f(PhysAddr::new(a), e - a)?;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
            ControlFlow::Continue(())
        })?;
        if let ControlFlow::Break(b) = merged {
            return Ok(ControlFlow::Break(b));
        }
        if let Some((a, e)) = acc
            && let ControlFlow::Break(b) = f(PhysAddr::new(a), e - a)
        {
            return Ok(ControlFlow::Break(b));
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The first block, in ascending `(PA, order)`, that shares a page with
    /// a block before it, if any: the later of the first two blocks that
    /// overlap. Costs one pass over the runs of each order, no allocation.
    pub fn first_overlap(&self, max_order: Order) -> Result<Option<(PhysAddr, Order)>, TrackError> {
        let mut end = 0u64;
        let found = self.for_each_run(max_order, &mut |start, run_end, order| {
            // Within one order runs are disjoint, and a block inside a run
            // follows its run-mate exactly, so the first overlap is always
            // at the start of a run.
            if start < end {
                return ControlFlow::Break((PhysAddr::new(start), order));
            }
            end = end.max(run_end);
            ControlFlow::Continue(())
        })?;
        Ok(match found {
            ControlFlow::Break(b) => Some(b),
            ControlFlow::Continue(()) => None,
        })
    }

    /// Calls `f(start, end, order)` for every run of consecutive blocks of
    /// one order, in ascending `(start, order)`: one cursor per order walks
    /// that order's keys (ascending keys are ascending PAs within an order)
    /// and a merge takes the lowest run of the (few) active cursors.
    fn for_each_run<B>(
        &self,
        max_order: Order,
        f: &mut dyn FnMut(u64, u64, Order) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, TrackError> {
        let mut active: [Option<(OrderRuns<'m, M>, u64, u64)>; 64] = [const { None }; 64];
        let mut n = 0;
        for order in 0..=max_order.get().min(GEOMETRY.max_key_order) {
            let mut r = OrderRuns::new(self, order);
            if let Some((start, end)) = r.next_run()? {
                active[n] = Some((r, start, end));
                n += 1;
            }
        }
        if n == 1 {
            // One order holds every block (the common case: order-0 pages
            // and the FDT page): no merge, the cursor's runs in turn.
            if let Some((mut cursor, mut start, mut end)) = active[0].take() {
                // PANICS: none; `order` came from `0..=max_order`.
                let order = Order::new(u64::from(cursor.order), "run order").unwrap_or(Order::ZERO);
                loop {
                    if let ControlFlow::Break(b) = f(start, end, order) {
                        return Ok(ControlFlow::Break(b));
                    }
                    match cursor.next_run()? {
                        Some(next) => (start, end) = next,
                        None => break,
                    }
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        while n > 0 {
            let mut best = 0;
            for i in 1..n {
                if let (Some(a), Some(b)) = (&active[i], &active[best])
                    && (a.1, a.0.order) < (b.1, b.0.order)
                {
                    best = i;
                }
            }
            let Some((cursor, start, end)) = &mut active[best] else { break };
            // PANICS: none; `order` came from `0..=max_order`.
            let order = Order::new(u64::from(cursor.order), "run order").unwrap_or(Order::ZERO);
            if let ControlFlow::Break(b) = f(*start, *end, order) {
                return Ok(ControlFlow::Break(b));
            }
            match cursor.next_run()? {
                Some(next) => {
                    if let Some(slot) = &mut active[best] {
                        (slot.1, slot.2) = next;
                    }
                }
                None => {
                    n -= 1;
                    active.swap(best, n);
                    active[n] = None;
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The table slot that holds `target`, as `(table, level, index)`, or
    /// `None` if `target` is the root or is not in the tree. For error
    /// reports on a tree that passed an untrusted walk (each node reached
    /// once), so it costs one pass over the tables.
    pub fn slot_of(&self, target: PhysAddr) -> Result<Option<(PhysAddr, u32, usize)>, TrackError> {
        let mut found = None;
        let mut tables = alloc::vec![(self.root, ROOT_LEVEL)];
        while let Some((pa, level)) = tables.pop() {
            let words = self.node(pa, None)?;
            for (index, slot) in words.iter().enumerate().take(TABLE_ENTRIES) {
                let raw = slot.load(Ordering::Acquire);
                if raw == 0 {
                    continue;
                }
                if raw == target.as_u64() {
                    found = Some((pa, level, index));
                    return Ok(found);
                }
                if level > 1 {
                    tables.push((PhysAddr::new(raw), level - 1));
                }
            }
        }
        Ok(found)
    }
}

/// The runs of consecutive set keys of one order, as PA ranges, ascending.
struct OrderRuns<'v, M: ?Sized> {
    mem: &'v M,
    root: PhysAddr,
    order: u32,
    /// Next key to examine.
    next: u64,
    /// One past the last key of this order.
    end: u64,
    /// The leaf last descended to: its base key and words.
    leaf: Option<(u64, Words<'v>)>,
}

impl<'v, M: TreeMem + ?Sized> OrderRuns<'v, M> {
    fn new(view: &TreeView<'v, M>, order: u32) -> Self {
        let first = 1u64 << (GEOMETRY.max_key_order - order);
        OrderRuns { mem: view.mem, root: view.root, order, next: first, end: first << 1, leaf: None }
    }

    /// The first leaf holding keys at or after `key` (below `self.end`):
    /// returns the key to continue from (at least `key`) and the leaf.
    /// Empty slots are skipped by scanning the table already in hand, so
    /// each table is descended into at most once per seek.
    fn seek_leaf(&mut self, mut key: u64) -> Result<Option<(u64, Words<'v>)>, TrackError> {
        let mask = GEOMETRY.bitmap_len as u64 - 1;
        'restart: while key < self.end {
            let base = key & !mask;
            if let Some((b, words)) = self.leaf
                && b == base
            {
                return Ok(Some((key, words)));
            }
            let view = TreeView { mem: self.mem, root: self.root };
            let mut node = view.node(self.root, None)?;
            let mut pa = self.root;
            for level in (1..=ROOT_LEVEL).rev() {
                let shift = GEOMETRY.level_shift(level);
                let index = ((key >> shift) & (TABLE_ENTRIES as u64 - 1)) as usize;
                let found = node[index..].iter().position(|slot| slot.load(Ordering::Acquire) != 0);
                let Some(offset) = found else {
                    // Nothing left in this table: continue after its span.
                    let span = shift + GEOMETRY.table_bits;
                    key = if span >= 64 { u64::MAX } else { ((key >> span) + 1) << span };
                    continue 'restart;
                };
                if offset > 0 {
                    // Jump to the first key under the next non-empty slot.
                    key = ((key >> shift) + offset as u64) << shift;
                    if key >= self.end {
                        return Ok(None);
                    }
                }
                let child = PhysAddr::new(node[index + offset].load(Ordering::Acquire));
                node = view.node(child, Some((pa, level, index + offset)))?;
                pa = child;
            }
            self.leaf = Some((key & !mask, node));
            return Ok(Some((key, node)));
        }
        Ok(None)
    }

    /// The first set key in `[from, self.end)`.
    fn next_set(&mut self, mut from: u64) -> Result<Option<u64>, TrackError> {
        while let Some((at, words)) = self.seek_leaf(from)? {
            let base = at & !(GEOMETRY.bitmap_len as u64 - 1);
            let bit = (at - base) as usize;
            // The partial first word, then whole words: a word of zeros
            // costs one load and one compare.
            let first = words[bit / 64].load(Ordering::Relaxed) >> (bit % 64);
            let found = if first != 0 {
                Some(bit + first.trailing_zeros() as usize)
            } else {
                words[bit / 64 + 1..].iter().enumerate().find_map(|(i, w)| {
                    let w = w.load(Ordering::Relaxed);
                    (w != 0).then(|| (bit / 64 + 1 + i) * 64 + w.trailing_zeros() as usize)
                })
            };
            if let Some(b) = found {
                let key = base + b as u64;
                return Ok((key < self.end).then_some(key));
            }
            from = base + GEOMETRY.bitmap_len as u64;
        }
        Ok(None)
    }

    /// The first clear key in `[from, self.end)`, or `self.end`.
    fn next_clear(&mut self, mut from: u64) -> Result<u64, TrackError> {
        while from < self.end {
            let Some((at, words)) = self.seek_leaf(from)? else { return Ok(from) };
            if at != from {
                // The keys between were under empty slots: clear.
                return Ok(from);
            }
            let base = from & !(GEOMETRY.bitmap_len as u64 - 1);
            let bit = (from - base) as usize;
            // As in `next_set`, with words of ones skipped.
            let first = !words[bit / 64].load(Ordering::Relaxed) >> (bit % 64);
            let found = if first != 0 {
                Some(bit + first.trailing_zeros() as usize)
            } else {
                words[bit / 64 + 1..].iter().enumerate().find_map(|(i, w)| {
                    let w = w.load(Ordering::Relaxed);
                    (w != u64::MAX).then(|| (bit / 64 + 1 + i) * 64 + (!w).trailing_zeros() as usize)
                })
            };
            if let Some(b) = found {
                return Ok((base + b as u64).min(self.end));
            }
            from = base + GEOMETRY.bitmap_len as u64;
        }
        Ok(self.end)
    }

    /// The next run as `(start PA, end PA)`.
    fn next_run(&mut self) -> Result<Option<(u64, u64)>, TrackError> {
        let Some(first) = self.next_set(self.next)? else {
            self.next = self.end;
            return Ok(None);
        };
        let last = self.next_clear(first + 1)?;
        self.next = last;
        let shift = self.order + kho_abi::PAGE_SHIFT;
        let overflow = TrackError::Abi(kho_abi::AbiError::Overflow { what: "preserved range" });
        // The order bit is pushed out by the shift, leaving the PA.
        let start = if shift >= 64 { 0 } else { first << shift };
        let blocks = last - first;
        let len = if shift >= 64 { None } else { blocks.checked_mul(1u64 << shift) };
        let end = len.and_then(|l| start.checked_add(l)).ok_or(overflow)?;
        Ok(Some((start, end)))
    }
}
