//! The incoming side: adopting a chain a previous kernel left, validated
//! block by block.

use kho_abi::chain::{self, ChainPage, ChainSpec, ClaimedChain, WalkError};
use kho_abi::{BLOCK_CHAIN_MAX, BlockHeader, Claim, Order, PageAlloc, PhysAddr, PhysMem};

use crate::chain::{Chain, RawCursor, Shape, check_count};
use crate::error::{BlockError, ChainError, Field};

/// A block chain: at most [`BLOCK_CHAIN_MAX`] pages, `next` at offset 0.
pub(crate) const SPEC: ChainSpec = ChainSpec::new(BLOCK_CHAIN_MAX as u64, 0);

/// A block set adopted from the previous kernel: its block pages are
/// claimed, its entries can be read in order, and it is given up with
/// [`free`](RestoredRawBlockSet::free) (or handed back unread with
/// [`unclaim`](RestoredRawBlockSet::unclaim)).
///
/// # Invariants
///
/// The chain from `head` holds `claimed.pages()` blocks and `len` entries;
/// each
/// block page is page aligned, RAM, claimed order 0 by this set, and has a
/// count in `1..=entries_per_block`.
#[derive(Debug, PartialEq, Eq)]
pub struct RestoredRawBlockSet {
    chain: Chain,
    claimed: ClaimedChain,
}

impl RestoredRawBlockSet {
    /// Adopts the chain at `head` holding entries of `entry_size` bytes
    /// (the size the user's own compatible string implies).
    ///
    /// Head 0 is an empty set. Otherwise the chain is followed by
    /// [`kho_abi::chain::walk`], which checks every link before the block
    /// is read (at most [`BLOCK_CHAIN_MAX`] blocks, page aligned, RAM, no
    /// cycle, claimable at order 0) and claims each block once; this set
    /// adds one payload check, a count in `1..=entries_per_block`.
    ///
    /// On failure every block claimed so far is unclaimed again, in
    /// reverse, and the error names the block (position and PA), the field
    /// (`head`/`next` for a link fault wrapped as [`Fault::Link`](crate::Fault::Link), `count`
    /// for the block's own) and the fault.
    pub fn restore<P>(p: &P, head: PhysAddr, entry_size: usize) -> Result<Self, BlockError>
    where
        P: PhysMem + Claim + ?Sized,
    {
        let shape = Shape::new(entry_size)?;
        let mut len = 0usize;
        let walked = chain::walk(p, head, SPEC, |page: &ChainPage<'_, P>| {
            let at = |fault| ChainError { index: page.index() as usize, pa: page.pa(), field: Field::Count, fault };
            // The page is RAM (checked by the walk): a read only fails on a
            // platform that changed its mind.
            let header: BlockHeader = page.read(0)?;
            len += check_count(header.count, shape.per_block).map_err(at)?;
            Ok::<(), BlockError>(())
        });
        match walked {
            Ok(claimed) => Ok(RestoredRawBlockSet { chain: Chain { shape, head, len }, claimed }),
            Err(WalkError::Payload(e)) => Err(e),
            Err(WalkError::Chain(e)) => Err(ChainError::from_link(e).into()),
        }
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
        // At most `BLOCK_CHAIN_MAX`.
        self.claimed.pages() as usize
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
        self.claimed.for_each(p, |_, b| p.free_pages(b, Order::ZERO))?;
        Ok(())
    }

    /// Gives every block back unclaimed (in reverse chain order), as if the
    /// set had never been restored (another reader may restore it again).
    pub fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        self.claimed.unclaim(p);
    }
}
