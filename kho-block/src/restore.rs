//! The incoming side: adopting a chain a previous kernel left, validated
//! block by block.

use kho_abi::{BLOCK_CHAIN_MAX, Claim, Order, PageAlloc, PhysAddr, PhysMem};

use crate::chain::{Chain, RawCursor, Shape, check_count, check_link, next_of, read_header};
use crate::error::{BlockError, ChainError, Fault, Field};

/// A block set adopted from the previous kernel: its block pages are
/// claimed, its entries can be read in order, and it is given up with
/// [`free`](RestoredRawBlockSet::free) (or handed back unread with
/// [`unclaim`](RestoredRawBlockSet::unclaim)).
///
/// # Invariants
///
/// The chain from `head` holds `blocks` blocks and `len` entries; each
/// block page is page aligned, RAM, claimed order 0 by this set, and has a
/// count in `1..=entries_per_block`.
#[derive(Debug, PartialEq, Eq)]
pub struct RestoredRawBlockSet {
    chain: Chain,
    blocks: usize,
}

impl RestoredRawBlockSet {
    /// Adopts the chain at `head` holding entries of `entry_size` bytes
    /// (the size the user's own compatible string implies).
    ///
    /// Head 0 is an empty set. Otherwise every block is checked in chain
    /// order, each before anything in it is trusted: the link to it must be
    /// page aligned and in RAM, the chain must not exceed
    /// [`BLOCK_CHAIN_MAX`] blocks nor come back to a block, the platform
    /// must let the page be claimed (so a chain into memory that was not
    /// preserved fails), and its count must be in `1..=entries_per_block`.
    ///
    /// On failure every block claimed so far is unclaimed again and the
    /// error names the block (position and PA), the field and the fault.
    ///
    /// Cycles are caught when a block comes round a second time: a
    /// conforming [`Claim`] refuses the second claim, and for one that
    /// does not, Brent's algorithm on the walk itself finds the cycle
    /// within a few laps of it. Either way every claim that succeeded is
    /// undone by exactly one `unclaim`.
    pub fn restore<P>(p: &P, head: PhysAddr, entry_size: usize) -> Result<Self, BlockError>
    where
        P: PhysMem + Claim + ?Sized,
    {
        let shape = Shape::new(entry_size)?;
        let mut walk = Walk { head, pa: head, index: 0, len: 0, saved: PhysAddr::NULL, saved_at: 0 };
        while !walk.pa.is_null() {
            if let Err((fault, claimed)) = walk.step(p, shape) {
                let field = match (walk.index, fault) {
                    (_, Fault::CountZero | Fault::CountTooLarge { .. }) => Field::Count,
                    (0, _) => Field::Head,
                    _ => Field::Next,
                };
                unclaim_prefix(p, head, claimed);
                return Err(ChainError { index: walk.index, pa: walk.pa, field, fault }.into());
            }
        }
        Ok(RestoredRawBlockSet { chain: Chain { shape, head, len: walk.len }, blocks: walk.index })
    }

    /// Size of one entry in bytes.
    pub fn entry_size(&self) -> usize {
        self.chain.shape.entry_size
    }

    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.chain.len
    }

    /// Whether the set has no entries (its head was 0).
    pub fn is_empty(&self) -> bool {
        self.chain.len == 0
    }

    /// Block pages in the chain.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// PA of the first block, 0 for an empty set.
    pub fn head(&self) -> PhysAddr {
        self.chain.head
    }

    /// A cursor over the entries, in chain order.
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, p: &'a P) -> RawCursor<'a, P> {
        RawCursor::new(p, self.chain)
    }

    /// Frees every block page (they were claimed, so the platform owns them
    /// again). Reads each `next` before freeing its block; stops with the
    /// platform's error if a block has become unreadable, leaving the rest.
    pub fn free<P: PhysMem + PageAlloc + ?Sized>(self, p: &P) -> Result<(), BlockError> {
        let mut b = self.chain.head;
        for _ in 0..self.blocks {
            let next = PhysAddr::new(read_header(p, b)?.next);
            p.free_pages(b, Order::ZERO);
            b = next;
        }
        Ok(())
    }

    /// Gives every block back unclaimed, as if the set had never been
    /// restored (another reader may restore it again).
    pub fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        unclaim_prefix(p, self.chain.head, self.blocks);
    }
}

/// The state of a restore walk.
struct Walk {
    head: PhysAddr,
    /// The block being visited and its position.
    pa: PhysAddr,
    index: usize,
    /// Entries counted so far.
    len: usize,
    /// Brent's checkpoint: the block at position `saved_at`, the latest
    /// power of two (or 0) passed.
    saved: PhysAddr,
    saved_at: usize,
}

impl Walk {
    /// Checks, claims and counts the block at `pa`, then moves to the next.
    /// On failure returns the fault and how many claims, of the blocks
    /// from the head on in chain order, succeeded.
    fn step<P: PhysMem + Claim + ?Sized>(&mut self, p: &P, shape: Shape) -> Result<(), (Fault, usize)> {
        let (pa, i) = (self.pa, self.index);
        if i == BLOCK_CHAIN_MAX {
            return Err((Fault::ChainTooLong { max: BLOCK_CHAIN_MAX }, i));
        }
        check_link(p, pa).map_err(|f| (f, i))?;
        if i > 0 && pa == self.saved {
            // Brent: the walk came back to its checkpoint. Only a claim that
            // accepts a block twice gets here, or the claim would have
            // failed on the first repeat.
            return Err((Fault::Cycle { first: self.saved_at }, i));
        }
        if let Err(e) = p.claim(pa, Order::ZERO) {
            let fault = match position_of(p, self.head, pa, i) {
                Some(first) => Fault::Cycle { first },
                None => Fault::NotPreserved(e),
            };
            return Err((fault, i));
        }
        let count = read_header(p, pa)
            .map_err(Fault::NotRam)
            .and_then(|h| Ok((check_count(h.count, shape.per_block)?, PhysAddr::new(h.next))));
        let (count, next) = count.map_err(|f| (f, i + 1))?;
        if i == 0 || i.is_power_of_two() {
            self.saved = pa;
            self.saved_at = i;
        }
        self.len += count;
        self.pa = next;
        self.index += 1;
        Ok(())
    }
}

/// Position of `pa` among the first `n` blocks from `head`.
fn position_of<P: PhysMem + ?Sized>(p: &P, head: PhysAddr, pa: PhysAddr, n: usize) -> Option<usize> {
    let mut b = head;
    for i in 0..n {
        if b == pa {
            return Some(i);
        }
        b = next_of(p, b)?;
    }
    None
}

/// Unclaims the first `n` blocks from `head`, in chain order (a block
/// claimed twice through a cycle comes round twice).
fn unclaim_prefix<P: PhysMem + Claim + ?Sized>(p: &P, head: PhysAddr, n: usize) {
    let mut b = head;
    for _ in 0..n {
        // Every block here was read during the walk, so reading it again
        // only fails on a platform that changed its mind about RAM.
        let next = next_of(p, b);
        p.unclaim(b, Order::ZERO);
        match next {
            Some(next) => b = next,
            None => return,
        }
    }
}
