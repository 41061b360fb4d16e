//! The incoming side: restoring an area a previous kernel preserved.
//!
//! The descriptor and every chunk page come from the previous kernel and
//! are checked before use. Restore runs in two walks over the chain:
//!
//! 1. *claim*: every link, entry and block is checked and every chunk
//!    page and block is claimed through the platform. The walk is bounded
//!    by the chain length `total_pages` allows ([`max_chunks`]) and by the
//!    block count, so it always ends; a link that comes back to a chunk
//!    claimed earlier is reported as a cycle. On any failure, a second walk
//!    over the prefix already claimed unclaims it, leaving the tracker as
//!    it was.
//! 2. *yield*: only once everything is claimed, the blocks are handed to
//!    the caller in order and the chunk pages, which nothing needs any
//!    more, are freed, as the kernel does.
//!
//! [`max_chunks`]: crate::max_chunks

use core::ops::ControlFlow;

use kho_abi::{Claim, KhoVmalloc, Order, PageAlloc, PhysAddr, PhysMem, VmallocDesc, VmallocFlags};

use crate::chunk;
use crate::error::{ChunkAt, EntryAt, VmallocError};

/// What a successful restore found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoredArea {
    /// Pages in the area (`blocks << order`).
    pub total_pages: u32,
    /// The area's flags (known bits only).
    pub flags: VmallocFlags,
    /// Order of every block.
    pub order: Order,
    /// Blocks handed to the caller.
    pub blocks: u64,
    /// Chunk pages the chain had (all freed).
    pub chunks: u64,
}

/// Checks the descriptor alone and returns the number of blocks the area
/// has, so a caller can size the slice it passes to [`restore_into`].
///
/// # Errors
///
/// [`VmallocError::Descriptor`] for unknown flags, an order above
/// `max_order`, a misaligned `first`, or a `total_pages` that is not a
/// whole number of blocks or disagrees with `first`.
pub fn block_count(desc: &KhoVmalloc, max_order: Order) -> Result<u64, VmallocError> {
    let d = desc.validate(max_order).map_err(VmallocError::Descriptor)?;
    Ok(u64::from(d.total_pages) >> d.order.get())
}

/// Restores the area `desc` describes: checks and claims every chunk page
/// and block, then calls `each_block` with every block address in order
/// and frees the chunk pages.
///
/// `each_block` runs only after the whole chain has been checked and
/// claimed, so a caller never sees a block of an area that fails. The
/// blocks are then the caller's, exactly as if it had allocated them at
/// `order`.
///
/// # Errors
///
/// Every error names where the chain was wrong: the descriptor field, the
/// chunk (index and PA), the entry. On error nothing is claimed, nothing
/// is freed and `each_block` was never called.
pub fn restore<P, F>(p: &P, desc: &KhoVmalloc, mut each_block: F) -> Result<RestoredArea, VmallocError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
    F: FnMut(PhysAddr),
{
    let d = desc.validate(p.max_order()).map_err(VmallocError::Descriptor)?;
    let blocks = u64::from(d.total_pages) >> d.order.get();
    let mut claimed = Claimed::default();
    if let Err(e) = claim_chain(p, &d, blocks, &mut claimed) {
        unclaim(p, &d, claimed);
        return Err(e);
    }
    let mut left = blocks;
    let mut pa = d.first.unwrap_or(PhysAddr::NULL);
    for _ in 0..claimed.chunks {
        // Both reads succeeded during the claim walk; the platform's
        // translation of a page does not change.
        let _ = chunk::scan(p, pa, |_, value| {
            if left == 0 {
                return ControlFlow::Break(());
            }
            left -= 1;
            each_block(PhysAddr::new(value));
            ControlFlow::Continue(())
        });
        let next = chunk::read_next(p, pa).unwrap_or(PhysAddr::NULL);
        p.free_pages(pa, Order::ZERO);
        pa = next;
    }
    Ok(RestoredArea { total_pages: d.total_pages, flags: d.flags, order: d.order, blocks, chunks: claimed.chunks })
}

/// [`restore`] into a slice: writes the block addresses to the front of
/// `out` and returns what was restored; `out[..blocks]` holds the blocks.
///
/// # Errors
///
/// [`VmallocError::OutputTooSmall`] (before anything is claimed) if `out`
/// cannot hold every block; otherwise as [`restore`].
pub fn restore_into<P>(p: &P, desc: &KhoVmalloc, out: &mut [PhysAddr]) -> Result<RestoredArea, VmallocError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let need = block_count(desc, p.max_order())?;
    if need > out.len() as u64 {
        return Err(VmallocError::OutputTooSmall { need, have: out.len() });
    }
    let mut slots = out.iter_mut();
    restore(p, desc, |pa| {
        if let Some(slot) = slots.next() {
            *slot = pa;
        }
    })
}

/// How far the claim walk got: the first `chunks` chunk pages of the
/// chain and the first `blocks` blocks listed in them are claimed.
#[derive(Clone, Copy, Debug, Default)]
struct Claimed {
    chunks: u64,
    blocks: u64,
}

/// The claim walk (see the module docs). Updates `claimed` as it goes so
/// that a failure can be undone exactly.
fn claim_chain<P>(p: &P, d: &VmallocDesc, blocks: u64, claimed: &mut Claimed) -> Result<(), VmallocError>
where
    P: PhysMem + Claim + ?Sized,
{
    let limit = chunk::max_chunks(blocks);
    // An order too large for its byte size to fit a u64 aligns no
    // non-zero address, so every block is refused as misaligned anyway.
    let block_bytes = d.order.checked_bytes().unwrap_or(u64::MAX);
    let mut link = d.first;
    let mut field = "kho_vmalloc.first";
    while let Some(pa) = link {
        let at = ChunkAt { index: claimed.chunks, pa };
        if claimed.chunks >= limit {
            return Err(VmallocError::ChainTooLong { at, max: limit });
        }
        if !pa.is_page_aligned() {
            return Err(VmallocError::ChunkMisaligned { at, field });
        }
        p.phys_to_virt(pa, kho_abi::PAGE_SIZE as u64).map_err(|source| VmallocError::ChunkNotRam { at, source })?;
        if let Err(source) = p.claim(pa, Order::ZERO) {
            return Err(match earlier_chunk(p, d, claimed.chunks, pa) {
                Some(first_seen) => VmallocError::ChainCycle { at, first_seen },
                None => VmallocError::ChunkNotPreserved { at, source },
            });
        }
        claimed.chunks += 1;
        let found = chunk::scan(p, pa, |entry, value| {
            let at = EntryAt { chunk: at, entry };
            if value == 0 {
                return if claimed.blocks < blocks {
                    ControlFlow::Break(Err(VmallocError::ZeroEntry { at, restored: claimed.blocks, expected: blocks }))
                } else {
                    ControlFlow::Break(Ok(()))
                };
            }
            if claimed.blocks == blocks {
                return ControlFlow::Break(Err(VmallocError::TooManyBlocks { at, expected: blocks }));
            }
            match claim_block(p, d.order, block_bytes, at, PhysAddr::new(value)) {
                Ok(()) => {
                    claimed.blocks += 1;
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(Err(e)),
            }
        });
        match found {
            Ok(Some(Err(e))) => return Err(e),
            Ok(_) => {}
            Err(source) => return Err(VmallocError::ChunkNotRam { at, source }),
        }
        let next = chunk::read_next(p, pa).map_err(|source| VmallocError::ChunkNotRam { at, source })?;
        link = (!next.is_null()).then_some(next);
        field = "chunk.next";
    }
    if claimed.blocks < blocks {
        return Err(VmallocError::TooFewBlocks { restored: claimed.blocks, expected: blocks });
    }
    Ok(())
}

/// Checks and claims one block listed at `at`.
fn claim_block<P>(p: &P, order: Order, bytes: u64, at: EntryAt, pa: PhysAddr) -> Result<(), VmallocError>
where
    P: PhysMem + Claim + ?Sized,
{
    if !order.aligns(pa) {
        return Err(VmallocError::BlockMisaligned { at, pa, order: order.get() });
    }
    p.phys_to_virt(pa, bytes).map_err(|source| VmallocError::BlockNotRam { at, source })?;
    p.claim(pa, order).map_err(|source| VmallocError::BlockNotPreserved { at, source })
}

/// The index of the chunk at `pa` among the first `chunks` chunks of the
/// chain, if it is one of them. Only called after a claim failed, so a
/// linear walk is fine; the pages walked were all read before.
fn earlier_chunk<P>(p: &P, d: &VmallocDesc, chunks: u64, pa: PhysAddr) -> Option<u64>
where
    P: PhysMem + ?Sized,
{
    let mut cur = d.first?;
    for index in 0..chunks {
        if cur == pa {
            return Some(index);
        }
        cur = chunk::read_next(p, cur).ok()?;
    }
    None
}

/// Unclaims what the claim walk recorded in `claimed`, reading the same
/// chunk pages in the same order (nothing wrote to them in between, and
/// the claimed prefix of the chain was well formed up to that point).
fn unclaim<P>(p: &P, d: &VmallocDesc, claimed: Claimed)
where
    P: PhysMem + Claim + ?Sized,
{
    let mut left = claimed.blocks;
    let mut pa = d.first.unwrap_or(PhysAddr::NULL);
    for _ in 0..claimed.chunks {
        let _ = chunk::scan(p, pa, |_, value| {
            if left == 0 || value == 0 {
                return ControlFlow::Break(());
            }
            left -= 1;
            p.unclaim(PhysAddr::new(value), d.order);
            ControlFlow::Continue(())
        });
        p.unclaim(pa, Order::ZERO);
        match chunk::read_next(p, pa) {
            Ok(next) => pa = next,
            Err(_) => return,
        }
    }
}
