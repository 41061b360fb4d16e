//! Reading the legacy `kho-v1` memory map (kernels v6.16 to v7.0).
//!
//! The old format is a linked list of chunk pages, each naming bitmap pages
//! for one order: bit *i* of a bitmap stands for the block at
//! `phys_start + (i << (PAGE_SHIFT + order))`. The next kernel converts it
//! into a radix tree of its own (allocated from scratch, as everything is
//! before the walk), after which restoring works exactly as for `kho-v2`
//! and later. Every page of the old map is checked like the radix tree's:
//! aligned, RAM, outside scratch, reached once.

use alloc::collections::BTreeSet;
use core::ops::ControlFlow;

use kho_abi::legacy::{V1_CHUNK_ENTRIES, V1Chunk};
use kho_abi::{GEOMETRY, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, RadixKey, read_phys};

use crate::error::{TrackError, TreeFault};
use crate::tree::RadixTree;

/// The most chunk pages a `kho-v1` map may have: enough for one bitmap of
/// every order over 1 PiB of RAM, far beyond any real handover.
pub const V1_MAX_CHUNKS: u64 = 1 << 20;

/// Calls `f(pa, order)` for every block of the `kho-v1` map whose first
/// chunk is at `first`, in map order. Chunk and bitmap pages are checked
/// (aligned, RAM, not in `scratch`, each reached once); orders above
/// `max_order` and `num_elms` above capacity are rejected.
pub fn for_each_v1_block<M: PhysMem + ?Sized, B>(
    mem: &M,
    first: PhysAddr,
    max_order: Order,
    scratch: &[KhoScratch],
    f: &mut dyn FnMut(PhysAddr, Order) -> ControlFlow<B>,
) -> Result<ControlFlow<B>, TrackError> {
    let mut seen = BTreeSet::new();
    let mut page_ok = |pa: PhysAddr, parent: PhysAddr, level: u32, index: usize| -> Result<(), TrackError> {
        let fault = |fault| TrackError::Tree { node: parent, level, index, fault };
        if !pa.is_page_aligned() {
            return Err(fault(TreeFault::Misaligned));
        }
        if mem.phys_to_virt(pa, PAGE_SIZE as u64).is_err() {
            return Err(fault(TreeFault::NotRam));
        }
        if scratch.iter().any(|s| s.overlaps(pa, PAGE_SIZE as u64)) {
            return Err(fault(TreeFault::InScratch));
        }
        if !seen.insert(pa.as_u64()) {
            return Err(fault(TreeFault::Shared));
        }
        Ok(())
    };
    let mut chunk_pa = first;
    let mut parent = PhysAddr::NULL;
    let mut chunks = 0u64;
    while !chunk_pa.is_null() {
        // Level 2: a chunk, level 1: a bitmap (for error reports).
        page_ok(chunk_pa, parent, 2, chunks as usize)?;
        chunks += 1;
        if chunks > V1_MAX_CHUNKS {
            return Err(
                kho_abi::AbiError::CountTooLarge { what: "kho-v1 chunks", count: chunks, max: V1_MAX_CHUNKS }.into()
            );
        }
        let chunk: V1Chunk = read_phys(mem, chunk_pa)?;
        let (order, refs) = chunk.validate(max_order)?;
        debug_assert!(refs.len() <= V1_CHUNK_ENTRIES);
        let block_bytes = order.checked_bytes().ok_or(kho_abi::AbiError::Overflow { what: "kho-v1 block size" })?;
        for (i, r) in refs.iter().enumerate() {
            let (start, bitmap_pa) = r.validate(order)?;
            page_ok(bitmap_pa, chunk_pa, 1, i)?;
            let bitmap: kho_abi::RadixLeaf = read_phys(mem, bitmap_pa)?;
            for (w, &word) in bitmap.words.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let bit = w as u64 * 64 + u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    let pa = bit
                        .checked_mul(block_bytes)
                        .and_then(|off| start.checked_add(off))
                        .ok_or(kho_abi::AbiError::Overflow { what: "kho-v1 block address" })?;
                    if let ControlFlow::Break(b) = f(pa, order) {
                        return Ok(ControlFlow::Break(b));
                    }
                }
            }
        }
        parent = chunk_pa;
        chunk_pa = PhysAddr::new(chunk.hdr.next);
    }
    let _ = GEOMETRY;
    Ok(ControlFlow::Continue(()))
}

/// Converts a `kho-v1` map into a radix tree allocated from `mem`. On
/// failure every page allocated is freed again.
pub fn convert_v1<M: PhysMem + PageAlloc + ?Sized>(
    mem: &M,
    first: PhysAddr,
    scratch: &[KhoScratch],
) -> Result<RadixTree, TrackError> {
    let tree = RadixTree::new(mem)?;
    let result =
        for_each_v1_block(mem, first, mem.max_order(), scratch, &mut |pa, order| match RadixKey::encode(pa, order)
            .map_err(TrackError::from)
            .and_then(|k| Ok(tree.insert(mem, k)?))
        {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        });
    match result {
        Ok(ControlFlow::Continue(())) => Ok(tree),
        Ok(ControlFlow::Break(e)) | Err(e) => {
            tree.destroy(mem);
            Err(e)
        }
    }
}
