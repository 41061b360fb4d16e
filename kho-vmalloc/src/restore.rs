//! The incoming side: restoring an area a previous kernel preserved.
//!
//! The descriptor and every chunk page come from the previous kernel and
//! are checked before use. Restore runs in two walks over the chain:
//!
//! 1. *claim*: the chunk chain is followed by [`kho_abi::chain`]'s walker
//!    (which checks and claims each chunk page: bound, alignment, RAM,
//!    cycle, claim), bounded by the chain length `total_pages` allows
//!    ([`max_chunks`]); each chunk's entries and blocks are checked and the
//!    blocks claimed as its payload. On any failure the walker unclaims,
//!    in reverse, every block and chunk page claimed, leaving the tracker
//!    as it was.
//! 2. *yield*: only once everything is claimed, the blocks are handed to
//!    the caller in order and the chunk pages, which nothing needs any
//!    more, are freed, as the kernel does.
//!
//! [`max_chunks`]: crate::max_chunks

use core::cell::Cell;
use core::ops::ControlFlow;

use kho_abi::chain::{self, ChainPage, ChainSpec, ClaimedChain, WalkError};

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
    let chain = claim_chain(p, &d, blocks)?;
    let mut left = blocks;
    // Every chunk page was read during the claim walk; a platform whose
    // translation changed since only leaves the rest of the pages unfreed.
    let _ = chain.for_each(p, |_, pa| {
        // The scan succeeded during the claim walk; the platform's
        // translation of a page does not change.
        let _ = chunk::scan(p, pa, |_, value| {
            if left == 0 {
                return ControlFlow::Break(());
            }
            left -= 1;
            each_block(PhysAddr::new(value));
            ControlFlow::Continue(())
        });
        p.free_pages(pa, Order::ZERO);
    });
    Ok(RestoredArea { total_pages: d.total_pages, flags: d.flags, order: d.order, blocks, chunks: chain.pages() })
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

/// The claim walk (see the module docs): [`kho_abi::chain::walk_with_undo`]
/// over the chunk pages, at most [`max_chunks`](chunk::max_chunks) of them,
/// whose payload claims the blocks each chunk lists. On failure every block
/// and chunk page claimed is unclaimed again, in reverse.
fn claim_chain<P>(p: &P, d: &VmallocDesc, blocks: u64) -> Result<ClaimedChain, VmallocError>
where
    P: PhysMem + Claim + ?Sized,
{
    let spec = ChainSpec::new(chunk::max_chunks(blocks), 0);
    // An order too large for its byte size to fit a u64 aligns no
    // non-zero address, so every block is refused as misaligned anyway.
    let block_bytes = d.order.checked_bytes().unwrap_or(u64::MAX);
    // Blocks claimed so far, by every chunk visited.
    let claimed = Cell::new(0u64);
    let per_chunk = chunk::ENTRIES as u64;
    let visit = |page: &ChainPage<'_, P>| {
        let at = ChunkAt { index: page.index(), pa: page.pa() };
        let before = claimed.get();
        let found = chunk::scan(p, at.pa, |entry, value| {
            let at = EntryAt { chunk: at, entry };
            let got = claimed.get();
            if value == 0 {
                return match got < blocks {
                    true => ControlFlow::Break(Err(VmallocError::ZeroEntry { at, restored: got, expected: blocks })),
                    false => ControlFlow::Break(Ok(())),
                };
            }
            if got == blocks {
                return ControlFlow::Break(Err(VmallocError::TooManyBlocks { at, expected: blocks }));
            }
            match claim_block(p, d.order, block_bytes, at, PhysAddr::new(value)) {
                Ok(()) => {
                    claimed.set(got + 1);
                    ControlFlow::Continue(())
                }
                Err(e) => ControlFlow::Break(Err(e)),
            }
        });
        let mut result = match found {
            Ok(Some(Err(e))) => Err(e),
            Ok(_) => Ok(()),
            Err(source) => Err(VmallocError::ChunkNotRam { at, source }),
        };
        // The last chunk must complete the area.
        if result.is_ok() && claimed.get() < blocks {
            match page.read::<u64>(0) {
                Ok(0) => result = Err(VmallocError::TooFewBlocks { restored: claimed.get(), expected: blocks }),
                Ok(_) => {}
                Err(source) => result = Err(VmallocError::ChunkNotRam { at, source }),
            }
        }
        if result.is_err() {
            // This chunk's own blocks: the walk only undoes accepted chunks.
            unclaim_blocks(p, d.order, at.pa, claimed.get() - before);
            claimed.set(before);
        }
        result
    };
    // Every accepted chunk but the last is full, so chunk `i` holds the
    // blocks from `i * ENTRIES` on, up to the number claimed.
    let undo = |page: &ChainPage<'_, P>| {
        let first = page.index().saturating_mul(per_chunk);
        let n = claimed.get().saturating_sub(first).min(per_chunk);
        unclaim_blocks(p, d.order, page.pa(), n);
        claimed.set(claimed.get() - n);
    };
    match chain::walk_with_undo(p, d.first.unwrap_or(PhysAddr::NULL), spec, visit, undo) {
        Ok(chain) if claimed.get() == blocks => Ok(chain),
        // Only a descriptor with no chain and blocks to find gets here
        // (`first` and `total_pages` agree, so this is unreachable).
        Ok(chain) => {
            chain.unclaim(p);
            Err(VmallocError::TooFewBlocks { restored: claimed.get(), expected: blocks })
        }
        Err(WalkError::Chain(e)) => Err(VmallocError::Chain(e)),
        Err(WalkError::Payload(e)) => Err(e),
    }
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

/// Unclaims the first `n` blocks the chunk page at `chunk` lists (all read
/// and claimed before, so non-zero).
fn unclaim_blocks<P>(p: &P, order: Order, chunk: PhysAddr, n: u64)
where
    P: PhysMem + Claim + ?Sized,
{
    let mut left = n;
    let _ = chunk::scan(p, chunk, |_, value| {
        if left == 0 || value == 0 {
            return ControlFlow::Break(());
        }
        left -= 1;
        p.unclaim(PhysAddr::new(value), order);
        ControlFlow::Continue(())
    });
}
