//! Reading the legacy `kho-v1` memory map (kernels v6.16 to v7.0).
//!
//! The old format is a linked list of chunk pages, each naming bitmap pages
//! for one order: bit *i* of a bitmap stands for the block at
//! `phys_start + (i << (PAGE_SHIFT + order))`. The next kernel converts it
//! into a radix tree of its own (allocated from scratch, as everything is
//! before the walk), after which restoring works exactly as for `kho-v2`
//! and later.
//!
//! The conversion costs a small constant per page of the old map, whatever
//! the bitmaps hold:
//!
//! - every chunk and bitmap page is checked like a radix tree node
//!   (aligned, RAM, outside scratch, reached once), and their number is
//!   capped ([`ImportLimits::max_map_pages`]);
//! - each entry's span (the `PAGE_SIZE * 8` blocks its bitmap can name) is
//!   refused as soon as it is read if it repeats or overlaps the span of an
//!   earlier entry of the same order, which the kernel's writer (one bitmap
//!   per aligned span and order) never produces;
//! - the blocks a bitmap names are checked (order, RAM, scratch) once per
//!   run of set bits, before anything is inserted;
//! - the bitmap then goes into the tree a 64-bit word at a time.
//!
//! So a map of `P` pages costs `O(P)` page reads, `O(P * PAGE_SIZE / 8)`
//! word operations and `O(P log P)` bookkeeping, and allocates at most two
//! leaves (plus their tables) per bitmap page.

use alloc::collections::{BTreeMap, BTreeSet};
use core::cell::RefCell;
use core::ops::ControlFlow;

use kho_abi::chain::{ChainCursor, ChainSpec};
use kho_abi::legacy::{V1_CHUNK_ENTRIES, V1Chunk};
use kho_abi::{AbiError, GEOMETRY, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, RadixKey, RadixLeaf, read_phys};

use crate::check::{ImportLimits, ImportStats, ScratchSet, check_run, for_each_run};
use crate::error::{TrackError, TreeFault, V1Fault};
use crate::tree::RadixTree;

/// The most chunk pages a `kho-v1` map may have: enough for one bitmap of
/// every order over 1 PiB of RAM, far beyond any real handover.
pub const V1_MAX_CHUNKS: u64 = 1 << 20;

/// One bitmap of a `kho-v1` map, checked: its page, order and blocks.
#[derive(Debug)]
pub struct V1Bitmap<'a> {
    /// The chunk page naming it.
    pub chunk: PhysAddr,
    /// Its entry index in that chunk.
    pub index: usize,
    /// The order of its blocks.
    pub order: Order,
    /// PA of the block that bit 0 stands for.
    pub start: PhysAddr,
    /// The bitmap's words.
    pub words: &'a [u64],
}

/// Walks the `kho-v1` map whose first chunk is at `first`, calling `f` for
/// every bitmap once its page and entry are checked: chunk and bitmap pages
/// aligned, RAM, outside scratch, each reached once and at most
/// `limits.max_map_pages` of them; chunk orders at most `max_order`;
/// `num_elms` within capacity; each entry's span disjoint from the spans of
/// earlier entries of its order. The blocks themselves are not checked
/// here (see [`convert_v1`]).
pub fn for_each_v1_bitmap<M: PhysMem + ?Sized, B>(
    mem: &M,
    first: PhysAddr,
    max_order: Order,
    scratch: &[kho_abi::KhoScratch],
    limits: &ImportLimits,
    f: &mut dyn FnMut(&V1Bitmap<'_>) -> Result<ControlFlow<B>, TrackError>,
) -> Result<ControlFlow<B>, TrackError> {
    let scratch = ScratchSet::new(scratch);
    let seen = RefCell::new(BTreeSet::new());
    let seen_ref = |pa: PhysAddr| seen.borrow().contains(&pa.as_u64());
    let page_ok = |pa: PhysAddr, parent: Option<(PhysAddr, u32, usize)>| -> Result<(), TrackError> {
        let mut seen = seen.borrow_mut();
        let fault = |fault| match parent {
            None => TrackError::MapRoot { pa, fault },
            Some((node, level, index)) => TrackError::Tree { node, level, index, fault },
        };
        if !pa.is_page_aligned() {
            return Err(fault(TreeFault::Misaligned));
        }
        if mem.phys_to_virt(pa, PAGE_SIZE as u64).is_err() {
            return Err(fault(TreeFault::NotRam));
        }
        if scratch.overlaps(pa, PAGE_SIZE as u64) {
            return Err(fault(TreeFault::InScratch));
        }
        if seen.len() as u64 >= limits.max_map_pages {
            return Err(TrackError::MapTooLarge { pages: seen.len() as u64 + 1, max: limits.max_map_pages });
        }
        if !seen.insert(pa.as_u64()) {
            return Err(fault(TreeFault::Shared));
        }
        Ok(())
    };
    // The span of every entry read so far: (order, start) -> end.
    let mut spans: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let span_blocks = GEOMETRY.bitmap_len as u64;
    let mut chunk_pa = first;
    let mut parent = None;
    // The chunk list's links: bound, alignment, RAM and cycle are the chain
    // walker's. Its claim step is the check that the page is not a map page
    // met before (nothing is claimed before import: there is no tracker),
    // so a chunk linked twice is a `chain_cycle` and a chunk that is an
    // earlier bitmap page `chain_not_claimable`.
    let mut chain = ChainCursor::new(first, ChainSpec::new(V1_MAX_CHUNKS, 0));
    while !chunk_pa.is_null() {
        let seen_before = |pa: PhysAddr| match seen_ref(pa) {
            true => Err(AbiError::InvalidValue { what: "kho-v1 map page seen before", value: pa.as_u64() }),
            false => Ok(()),
        };
        chain.enter(mem, chunk_pa, seen_before).map_err(TrackError::V1Chain)?;
        // Level 2: a chunk, level 1: a bitmap (for error reports).
        page_ok(chunk_pa, parent)?;
        let chunks = chain.entered();
        let chunk: V1Chunk = read_phys(mem, chunk_pa)?;
        let (order, refs) = chunk.validate(max_order)?;
        debug_assert!(refs.len() <= V1_CHUNK_ENTRIES);
        let block_bytes = order.checked_bytes().ok_or(AbiError::Overflow { what: "kho-v1 block size" })?;
        for (index, r) in refs.iter().enumerate() {
            let (start, bitmap_pa) = r.validate(order)?;
            let entry = |fault| TrackError::V1Entry { chunk: chunk_pa, index, order, phys_start: start, fault };
            let end = span_blocks
                .checked_mul(block_bytes)
                .and_then(|len| start.checked_add(len))
                .ok_or(entry(V1Fault::SpanOverflow))?
                .as_u64();
            let o = order.get();
            let s = start.as_u64();
            // The nearest spans of this order at or below and above `start`.
            if let Some((&(_, prev_start), &prev_end)) = spans.range((o, 0)..=(o, s)).next_back()
                && prev_end > s
            {
                return Err(entry(if prev_start == s { V1Fault::Repeated } else { V1Fault::Overlaps }));
            }
            if let Some((&(_, next_start), _)) = spans.range((o, s)..(o + 1, 0)).next()
                && next_start < end
            {
                return Err(entry(V1Fault::Overlaps));
            }
            spans.insert((o, s), end);
            page_ok(bitmap_pa, Some((chunk_pa, 1, index)))?;
            let bitmap: RadixLeaf = read_phys(mem, bitmap_pa)?;
            let b = V1Bitmap { chunk: chunk_pa, index, order, start, words: &bitmap.words };
            if let ControlFlow::Break(b) = f(&b)? {
                return Ok(ControlFlow::Break(b));
            }
        }
        parent = Some((chunk_pa, 2, chunks as usize - 1));
        chunk_pa = PhysAddr::new(chunk.hdr.next);
    }
    Ok(ControlFlow::Continue(()))
}

/// A `kho-v1` map converted into a radix tree.
#[derive(Debug)]
pub struct V1Conversion {
    /// The tree, allocated from the platform.
    pub tree: RadixTree,
    /// Its blocks (`tree_pages` is left 0).
    pub stats: ImportStats,
}

/// Converts a `kho-v1` map into a radix tree allocated from `mem`, checking
/// every block it names (order at most `mem.max_order()`, entirely RAM,
/// outside `scratch`) before it is inserted. Blocks of different orders
/// that overlap are left for the caller's overlap check. On failure every
/// page allocated is freed again.
pub fn convert_v1<M: PhysMem + PageAlloc + ?Sized>(
    mem: &M,
    first: PhysAddr,
    scratch: &[kho_abi::KhoScratch],
    limits: &ImportLimits,
) -> Result<V1Conversion, TrackError> {
    let tree = RadixTree::new(mem)?;
    let set = ScratchSet::new(scratch);
    let max_order = mem.max_order();
    let mut stats = ImportStats { blocks: 0, pages: 0, tree_pages: 0, blocks_by_order: [0; 64] };
    let result = for_each_v1_bitmap::<M, ()>(mem, first, max_order, scratch, limits, &mut |b| {
        let block_bytes = b.order.checked_bytes().ok_or(AbiError::Overflow { what: "kho-v1 block size" })?;
        // Every run of blocks first: nothing is inserted for a bad bitmap.
        for_each_run(b.words, &mut |bit, count| {
            // In range: the entry's whole span was checked for overflow.
            let pa = PhysAddr::new(b.start.as_u64() + bit * block_bytes);
            check_run(mem, &set, max_order, pa, b.order, count)?;
            stats.blocks += count;
            stats.pages += count << b.order.get();
            stats.blocks_by_order[b.order.get() as usize] += count;
            Ok::<(), TrackError>(())
        })?;
        // Key of bit i = key of bit 0 + i: the span does not overflow, so
        // neither does the frame number in the key.
        let base = RadixKey::encode(b.start, b.order)?.as_u64();
        for (w, &word) in b.words.iter().enumerate() {
            if word != 0 {
                tree.insert_bits(mem, base + w as u64 * 64, word)?;
            }
        }
        Ok(ControlFlow::Continue(()))
    });
    match result {
        Ok(_) => Ok(V1Conversion { tree, stats }),
        Err(e) => {
            tree.destroy(mem);
            Err(e)
        }
    }
}
