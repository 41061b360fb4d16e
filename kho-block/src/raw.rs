//! The outgoing block set at byte level: capacity, the writer, and reading
//! back.

use kho_abi::{BLOCK_CHAIN_MAX, Order, PageAlloc, PhysAddr, PhysMem, Preserve, write_phys_bytes, zero_phys};

use crate::chain::{Chain, RawCursor, Shape, read_header, write_count, write_header, write_next};
use crate::error::BlockError;

/// A block set of one entry size, built in this kernel for the next one.
///
/// Capacity is reserved ahead of time with [`grow`](RawBlockSet::grow),
/// which allocates and preserves block pages, so that writing entries later
/// (through a [`RawWriter`]) never allocates and cannot fail for lack of
/// memory. [`shrink`](RawBlockSet::shrink) gives capacity back from the
/// tail.
///
/// The chain reachable from [`head`](RawBlockSet::head) always holds exactly
/// the written entries, every block but the last full and every `count`
/// current, so the set can be handed over at any moment without a finalize
/// step. Blocks reserved but not yet written are kept on a separate spare
/// list (linked through their `next` fields but reachable from no head):
/// they stay preserved, so [`shrink`](RawBlockSet::shrink) the set to its
/// length before kexec, or the next kernel keeps them reserved unclaimed.
///
/// The set does not free anything when dropped (there is no platform to
/// free it with): dropping it is how it is handed over, and
/// [`destroy`](RawBlockSet::destroy) is how it is given up.
///
/// # Invariants
///
/// - The used chain holds `blocks_for(len)` blocks from `head` to `tail`,
///   every one full but the tail, whose `next` is 0; `head` and `tail` are
///   null exactly when `len == 0`.
/// - The spare list holds `spare_blocks` blocks from `spare`, linked by
///   `next` and ending in 0.
/// - `blocks_for(len) + spare_blocks == blocks_for(capacity)` and
///   `len <= capacity`.
/// - Every block is an order-0 page from `alloc_pages`, preserved at order 0.
#[derive(Debug, PartialEq, Eq)]
pub struct RawBlockSet {
    shape: Shape,
    head: PhysAddr,
    tail: PhysAddr,
    len: usize,
    capacity: usize,
    spare: PhysAddr,
    spare_blocks: usize,
}

impl RawBlockSet {
    /// An empty set of entries of `entry_size` bytes, with no capacity and
    /// no pages. Fails with [`BlockError::EntrySize`] unless `entry_size` is
    /// in `1..=PAGE_SIZE - 16`.
    pub const fn new(entry_size: usize) -> Result<Self, BlockError> {
        match Shape::new(entry_size) {
            Ok(shape) => Ok(RawBlockSet::with_shape(shape)),
            Err(e) => Err(e),
        }
    }

    pub(crate) const fn with_shape(shape: Shape) -> Self {
        RawBlockSet {
            shape,
            head: PhysAddr::NULL,
            tail: PhysAddr::NULL,
            len: 0,
            capacity: 0,
            spare: PhysAddr::NULL,
            spare_blocks: 0,
        }
    }

    /// Size of one entry in bytes.
    pub fn entry_size(&self) -> usize {
        self.shape.entry_size
    }

    /// Entries one block holds: `(PAGE_SIZE - 16) / entry_size`.
    pub fn entries_per_block(&self) -> usize {
        self.shape.per_block
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entries are written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries reserved by [`grow`](RawBlockSet::grow), written or not.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Block pages the set holds, used and spare.
    pub fn blocks(&self) -> usize {
        self.shape.blocks_for(self.capacity)
    }

    /// PA of the first block, or 0 when the set has no entries: the value
    /// the user stores in their own preserved data for the next kernel's
    /// [`RestoredRawBlockSet::restore`](crate::RestoredRawBlockSet::restore).
    ///
    /// It changes when the first entry is written and when the set becomes
    /// empty again, so read it after the last change.
    pub fn head(&self) -> PhysAddr {
        self.head
    }

    /// Reserves capacity for `n` more entries, allocating and preserving
    /// the block pages needed.
    ///
    /// Transactional: on failure the pages this call obtained are
    /// unpreserved and freed and the set is unchanged. Fails with
    /// [`BlockError::ChainFull`] if the chain would exceed
    /// [`BLOCK_CHAIN_MAX`] blocks (a restore would refuse it), and with the
    /// platform's error if allocation or preservation fails.
    pub fn grow<P>(&mut self, p: &P, n: usize) -> Result<(), BlockError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let full = |blocks| BlockError::ChainFull { blocks, max: BLOCK_CHAIN_MAX };
        let new_capacity = self.capacity.checked_add(n).ok_or(full(usize::MAX))?;
        let need = self.shape.blocks_for(new_capacity);
        if need > BLOCK_CHAIN_MAX {
            return Err(full(need));
        }
        let add = need - self.blocks();
        // New blocks are pushed in front of the spare list; until the end
        // `self` still describes the old list, which they only link to.
        let mut list = self.spare;
        for made in 0..add {
            match new_block(p, list) {
                Ok(b) => list = b,
                Err(e) => {
                    release_blocks(p, list, made);
                    return Err(e);
                }
            }
        }
        self.spare = list;
        self.spare_blocks += add;
        self.capacity = new_capacity;
        Ok(())
    }

    /// Gives back capacity for `n` entries from the tail: entries beyond
    /// the new capacity are dropped (as [`truncate`](RawBlockSet::truncate)),
    /// then blocks no longer needed are unpreserved and freed.
    ///
    /// Fails with [`BlockError::ShrinkTooFar`] if `n` exceeds the capacity.
    /// If the platform refuses to unpreserve a block, the set keeps that
    /// block and those after it, with the capacity they hold, and returns
    /// the error.
    pub fn shrink<P>(&mut self, p: &P, n: usize) -> Result<(), BlockError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let new_capacity =
            self.capacity.checked_sub(n).ok_or(BlockError::ShrinkTooFar { by: n, capacity: self.capacity })?;
        self.truncate(p, new_capacity)?;
        let drop = self.blocks() - self.shape.blocks_for(new_capacity);
        for dropped in 0..drop {
            if let Err(e) = self.drop_spare(p) {
                if dropped > 0 {
                    // INVARIANT: the blocks kept hold this many entries;
                    // fewer blocks than before, so below the old capacity.
                    self.capacity = (self.shape.blocks_for(self.len) + self.spare_blocks) * self.shape.per_block;
                }
                return Err(e);
            }
        }
        self.capacity = new_capacity;
        Ok(())
    }

    /// Drops the entries from `new_len` on, keeping the capacity. Does
    /// nothing if `new_len >= len`. Blocks emptied go back to the spare
    /// list; the chain stays valid after every write.
    pub fn truncate<P: PhysMem + ?Sized>(&mut self, p: &P, new_len: usize) -> Result<(), BlockError> {
        if new_len >= self.len {
            return Ok(());
        }
        if new_len == 0 {
            return self.clear(p);
        }
        let used = self.shape.blocks_for(self.len);
        let keep = self.shape.blocks_for(new_len);
        let last = self.block_at(p, keep - 1)?;
        let last_count = new_len - (keep - 1) * self.shape.per_block;
        if keep < used {
            let first_dropped = PhysAddr::new(read_header(p, last)?.next);
            // Unlink first, so the chain from the head ends at `last` with
            // its old, larger count, then lower the count.
            write_next(p, last, PhysAddr::NULL)?;
            write_count(p, last, last_count)?;
            write_next(p, self.tail, self.spare)?;
            self.spare = first_dropped;
            self.spare_blocks += used - keep;
            self.tail = last;
        } else {
            write_count(p, last, last_count)?;
        }
        self.len = new_len;
        Ok(())
    }

    /// Drops every entry, keeping the capacity: the used blocks become
    /// spare and [`head`](RawBlockSet::head) becomes 0.
    pub fn clear<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(), BlockError> {
        if self.len == 0 {
            return Ok(());
        }
        write_next(p, self.tail, self.spare)?;
        self.spare = self.head;
        self.spare_blocks += self.shape.blocks_for(self.len);
        self.head = PhysAddr::NULL;
        self.tail = PhysAddr::NULL;
        self.len = 0;
        Ok(())
    }

    /// Unpreserves and frees every block, leaving an empty set with no
    /// capacity. On a platform error the set keeps what it could not
    /// release and can be destroyed again.
    pub fn destroy<P>(&mut self, p: &P) -> Result<(), BlockError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        self.clear(p)?;
        self.shrink(p, self.capacity)
    }

    /// A writer that appends entries within the reserved capacity.
    pub fn writer<'a, P: PhysMem + ?Sized>(&'a mut self, p: &'a P) -> RawWriter<'a, P> {
        RawWriter { set: self, p }
    }

    /// A cursor over the entries, in order.
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, p: &'a P) -> RawCursor<'a, P> {
        RawCursor::new(p, self.chain())
    }

    pub(crate) fn chain(&self) -> Chain {
        Chain { shape: self.shape, head: self.head, len: self.len }
    }

    /// The used block at position `index`, walking from the head.
    fn block_at<P: PhysMem + ?Sized>(&self, p: &P, index: usize) -> Result<PhysAddr, BlockError> {
        let mut b = self.head;
        for _ in 0..index {
            b = PhysAddr::new(read_header(p, b)?.next);
        }
        Ok(b)
    }

    /// Unpreserves and frees the first spare block.
    fn drop_spare<P>(&mut self, p: &P) -> Result<(), BlockError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let b = self.spare;
        let next = PhysAddr::new(read_header(p, b)?.next);
        p.unpreserve(b, Order::ZERO)?;
        p.free_pages(b, Order::ZERO);
        self.spare = next;
        self.spare_blocks -= 1;
        Ok(())
    }

    /// Appends `n` entries, copied from `src` or zeroed, a block at a time.
    /// Each block's entries are written before its count, and a new block
    /// is complete before the link to it is.
    fn append<P: PhysMem + ?Sized>(&mut self, p: &P, src: Option<&[u8]>, n: usize) -> Result<(), BlockError> {
        if self.capacity - self.len < n {
            return Err(BlockError::NoSpace { len: self.len, capacity: self.capacity, wanted: n });
        }
        let (es, per) = (self.shape.entry_size, self.shape.per_block);
        let mut done = 0;
        while done < n {
            let slot = self.len % per;
            let k = (per - slot).min(n - done);
            let block = if slot == 0 { self.spare } else { self.tail };
            let pa = self.shape.entry_pa(block, slot);
            match src {
                // PANICS: none; `src` holds `n` entries and `done + k <= n`.
                Some(bytes) => write_phys_bytes(p, pa, &bytes[done * es..(done + k) * es])?,
                None => zero_phys(p, pa, (k * es) as u64)?,
            }
            if slot == 0 {
                let next_spare = PhysAddr::new(read_header(p, block)?.next);
                write_header(p, block, PhysAddr::NULL, k)?;
                if self.tail.is_null() {
                    self.head = block;
                } else {
                    write_next(p, self.tail, block)?;
                }
                self.tail = block;
                self.spare = next_spare;
                self.spare_blocks -= 1;
            } else {
                write_count(p, block, slot + k)?;
            }
            self.len += k;
            done += k;
        }
        Ok(())
    }

    /// Removes the last entry and returns its address.
    fn pop<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<Option<PhysAddr>, BlockError> {
        if self.len == 0 {
            return Ok(None);
        }
        let slot = (self.len - 1) % self.shape.per_block;
        let tail = self.tail;
        if slot > 0 {
            write_count(p, tail, slot)?;
        } else {
            // The tail empties: unlink it, then park it on the spare list.
            let used = self.shape.blocks_for(self.len);
            let before = if used > 1 { self.block_at(p, used - 2)? } else { PhysAddr::NULL };
            if !before.is_null() {
                write_next(p, before, PhysAddr::NULL)?;
            }
            write_header(p, tail, self.spare, 0)?;
            self.spare = tail;
            self.spare_blocks += 1;
            self.tail = before;
            if before.is_null() {
                self.head = PhysAddr::NULL;
            }
        }
        self.len -= 1;
        Ok(Some(self.shape.entry_pa(tail, slot)))
    }
}

/// Allocates a zeroed block linking to `next` and preserves it; frees it
/// again if that fails.
fn new_block<P>(p: &P, next: PhysAddr) -> Result<PhysAddr, BlockError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let b = p.alloc_pages(Order::ZERO)?;
    let done = write_next(p, b, next).and_then(|()| p.preserve(b, Order::ZERO));
    if let Err(e) = done {
        p.free_pages(b, Order::ZERO);
        return Err(e.into());
    }
    Ok(b)
}

/// Best-effort undo of `new_block` for the first `n` blocks of a list: a
/// block the platform will not unpreserve is left allocated (freeing memory
/// still marked preserved would hand it to the next kernel as garbage).
fn release_blocks<P>(p: &P, mut b: PhysAddr, n: usize)
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    for _ in 0..n {
        let Ok(header) = read_header(p, b) else { return };
        if p.unpreserve(b, Order::ZERO).is_ok() {
            p.free_pages(b, Order::ZERO);
        }
        b = PhysAddr::new(header.next);
    }
}

/// Appends entries to a [`RawBlockSet`] within its reserved capacity,
/// keeping every block's `count` current after each call.
///
/// Never allocates: a call that would exceed the capacity fails with
/// [`BlockError::NoSpace`] (`ENOSPC`) and writes nothing.
/// [`prev`](RawWriter::prev) steps back over the last entry, un-reserving it,
/// which is how a caller unwinds a serialization that failed part-way.
#[derive(Debug)]
pub struct RawWriter<'a, P: ?Sized> {
    set: &'a mut RawBlockSet,
    p: &'a P,
}

impl<P: PhysMem + ?Sized> RawWriter<'_, P> {
    /// Reserves the next entry, zeroed, and returns its address for the
    /// caller to fill (for example with [`kho_abi::write_phys`]).
    pub fn reserve(&mut self) -> Result<PhysAddr, BlockError> {
        self.set.append(self.p, None, 1)?;
        // PANICS: none; the append just made `len >= 1` and `tail` non-null.
        let slot = (self.set.len - 1) % self.set.shape.per_block;
        Ok(self.set.shape.entry_pa(self.set.tail, slot))
    }

    /// Appends one entry of exactly the entry size.
    pub fn push(&mut self, entry: &[u8]) -> Result<(), BlockError> {
        if entry.len() != self.set.shape.entry_size {
            return Err(BlockError::EntryLength { len: entry.len(), entry_size: self.set.shape.entry_size });
        }
        self.set.append(self.p, Some(entry), 1)
    }

    /// Appends the entries packed in `entries` (a multiple of the entry
    /// size), a block at a time. All of them fit or none is written.
    pub fn extend(&mut self, entries: &[u8]) -> Result<(), BlockError> {
        let es = self.set.shape.entry_size;
        if !entries.len().is_multiple_of(es) {
            return Err(BlockError::EntryLength { len: entries.len(), entry_size: es });
        }
        self.set.append(self.p, Some(entries), entries.len() / es)
    }

    /// Steps back over the last entry: it is no longer counted and its
    /// address is returned (its bytes stay until the slot is reserved
    /// again); `None` when the set is empty. Emptying a block walks the
    /// chain from the head to find the one before it.
    pub fn prev(&mut self) -> Result<Option<PhysAddr>, BlockError> {
        self.set.pop(self.p)
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.set.len
    }

    /// Whether no entries are written.
    pub fn is_empty(&self) -> bool {
        self.set.len == 0
    }

    /// Entries that can still be reserved.
    pub fn remaining(&self) -> usize {
        self.set.capacity - self.set.len
    }
}
