//! A chain of blocks in memory: block geometry, header access, and the
//! cursor that reads entries back in order.

use core::marker::PhantomData;
use core::mem::offset_of;

use kho_abi::{
    AbiError, BlockHeader, PAGE_SIZE, PhysAddr, PhysMem, entries_per_block, read_phys, read_phys_bytes, write_phys,
};

use kho_abi::chain::ChainFault;

use crate::error::{BlockError, ChainError, Fault, Field};

/// Bytes of the header at the start of every block.
pub(crate) const HEADER: usize = size_of::<BlockHeader>();

/// Entry size of a set and how many entries one block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) entry_size: usize,
    pub(crate) per_block: usize,
}

impl Shape {
    /// Validates `entry_size`: non-zero and at most a page minus the header.
    pub(crate) const fn new(entry_size: usize) -> Result<Shape, BlockError> {
        match entries_per_block(entry_size) {
            Ok(per_block) => Ok(Shape { entry_size, per_block }),
            Err(_) => Err(BlockError::EntrySize { size: entry_size, max: PAGE_SIZE - HEADER }),
        }
    }

    /// Blocks needed to hold `entries` entries.
    pub(crate) const fn blocks_for(self, entries: usize) -> usize {
        entries.div_ceil(self.per_block)
    }

    /// Address of entry `slot` of the block at `block`.
    pub(crate) fn entry_pa(self, block: PhysAddr, slot: usize) -> PhysAddr {
        debug_assert!(block.is_page_aligned() && slot < self.per_block);
        // `block` is page aligned and the offset is below PAGE_SIZE (at most
        // HEADER + (per_block - 1) * entry_size <= PAGE_SIZE - entry_size),
        // so the OR is the exact sum and stays inside the page.
        PhysAddr::new(block.as_u64() | (HEADER + slot * self.entry_size) as u64)
    }
}

/// Reads the header of the block at `block`.
pub(crate) fn read_header<P: PhysMem + ?Sized>(p: &P, block: PhysAddr) -> Result<BlockHeader, AbiError> {
    read_phys(p, block)
}

/// Writes a whole header.
pub(crate) fn write_header<P: PhysMem + ?Sized>(
    p: &P,
    block: PhysAddr,
    next: PhysAddr,
    count: usize,
) -> Result<(), AbiError> {
    write_phys(p, block, &BlockHeader { next: next.as_u64(), count: count as u64 })
}

/// Writes the `next` link of a block.
pub(crate) fn write_next<P: PhysMem + ?Sized>(p: &P, block: PhysAddr, next: PhysAddr) -> Result<(), AbiError> {
    write_phys(p, at(block, offset_of!(BlockHeader, next)), &next.as_u64())
}

/// Writes the `count` of a block.
pub(crate) fn write_count<P: PhysMem + ?Sized>(p: &P, block: PhysAddr, count: usize) -> Result<(), AbiError> {
    write_phys(p, at(block, offset_of!(BlockHeader, count)), &(count as u64))
}

fn at(block: PhysAddr, offset: usize) -> PhysAddr {
    // Same argument as `Shape::entry_pa`: a page-aligned base and an offset
    // inside the header.
    PhysAddr::new(block.as_u64() | offset as u64)
}

/// Where a chain starts and how many entries it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) shape: Shape,
    pub(crate) head: PhysAddr,
    pub(crate) len: usize,
}

/// The fault of a link to `pa` of a chain already restored or written,
/// re-checked before the block is read (in case it was overwritten): page
/// alignment and RAM, in the chain walker's vocabulary.
pub(crate) fn check_link<P: PhysMem + ?Sized>(p: &P, pa: PhysAddr) -> Result<(), Fault> {
    if !pa.is_page_aligned() {
        return Err(Fault::Link(ChainFault::Misaligned));
    }
    p.phys_to_virt(pa, PAGE_SIZE as u64).map(|_| ()).map_err(|e| Fault::Link(ChainFault::NotRam(e)))
}

/// The fault of a block's `count`, if any.
pub(crate) fn check_count(count: u64, per_block: usize) -> Result<usize, Fault> {
    match count {
        0 => Err(Fault::CountZero),
        c if c > per_block as u64 => Err(Fault::CountTooLarge { count: c, max: per_block }),
        c => Ok(c as usize),
    }
}

/// Reads the entries of a set in order, and steps back with
/// [`prev`](RawCursor::prev).
///
/// A cursor sits between two entries. [`next`](Iterator::next) yields the
/// address of the entry after it and moves past it; [`prev`](RawCursor::prev)
/// yields the one before it and moves back, so `next` then `prev` yields
/// the same entry twice. Entries are read with [`kho_abi::read_phys`] or
/// in bulk with [`read_into`](RawCursor::read_into).
///
/// Moving forward costs one header read per block. Moving back across a
/// block boundary walks the chain from its head (blocks only link forward),
/// so a full backward pass is quadratic in the number of blocks.
///
/// The cursor re-checks every header it reads; a chain overwritten behind
/// the set's back yields one [`BlockError::Chain`] and then nothing.
#[derive(Debug)]
pub struct RawCursor<'a, P: ?Sized> {
    p: &'a P,
    chain: Chain,
    /// Block holding the position; null until the first one is entered.
    block: PhysAddr,
    /// Position of `block` in the chain.
    block_index: usize,
    /// `count` and `next` of `block`, read when it was entered.
    count: usize,
    next: PhysAddr,
    /// Position inside `block`, `0..=count`.
    slot: usize,
    /// Entries before the position.
    index: usize,
    /// The cursor borrows the set it reads, so the set cannot change under it.
    _set: PhantomData<&'a ()>,
}

impl<'a, P: PhysMem + ?Sized> RawCursor<'a, P> {
    pub(crate) fn new(p: &'a P, chain: Chain) -> Self {
        RawCursor {
            p,
            chain,
            block: PhysAddr::NULL,
            block_index: 0,
            count: 0,
            next: PhysAddr::NULL,
            slot: 0,
            index: 0,
            _set: PhantomData,
        }
    }

    /// Entries before the cursor.
    pub fn position(&self) -> usize {
        self.index
    }

    /// Entries after the cursor.
    pub fn remaining(&self) -> usize {
        self.chain.len - self.index
    }

    /// Size of one entry in bytes.
    pub fn entry_size(&self) -> usize {
        self.chain.shape.entry_size
    }

    /// Yields the address of the entry before the cursor and moves back
    /// over it; `None` at the start.
    pub fn prev(&mut self) -> Option<Result<PhysAddr, BlockError>> {
        if self.index == 0 {
            return None;
        }
        if self.slot == 0 {
            // At the start of a block other than the first: re-enter the
            // one before it, found by walking from the head.
            if let Err(e) = self.enter_nth(self.block_index - 1) {
                return Some(Err(self.fail(e)));
            }
            self.slot = self.count;
        }
        self.slot -= 1;
        self.index -= 1;
        Some(Ok(self.chain.shape.entry_pa(self.block, self.slot)))
    }

    /// Copies whole entries from the cursor on into `out` (a multiple of
    /// the entry size), a block at a time, and moves past them. Returns the
    /// number of entries copied: fewer than `out` holds only at the end.
    pub fn read_into(&mut self, out: &mut [u8]) -> Result<usize, BlockError> {
        let es = self.chain.shape.entry_size;
        if !out.len().is_multiple_of(es) {
            return Err(BlockError::EntryLength { len: out.len(), entry_size: es });
        }
        let want = (out.len() / es).min(self.remaining());
        let mut done = 0;
        while done < want {
            self.advance_block_if_done().map_err(|e| self.fail(e))?;
            let k = (self.count - self.slot).min(want - done);
            let pa = self.chain.shape.entry_pa(self.block, self.slot);
            // PANICS: none; `done + k <= want <= out.len() / es`.
            read_phys_bytes(self.p, pa, &mut out[done * es..(done + k) * es]).map_err(|e| self.fail(e.into()))?;
            self.slot += k;
            self.index += k;
            done += k;
        }
        Ok(done)
    }

    /// Enters the next block once the current one is used up (or the first
    /// block, before any).
    fn advance_block_if_done(&mut self) -> Result<(), BlockError> {
        if !self.block.is_null() && self.slot < self.count {
            return Ok(());
        }
        let (target, index, field) = if self.block.is_null() {
            (self.chain.head, 0, Field::Head)
        } else {
            (self.next, self.block_index + 1, Field::Next)
        };
        self.enter(target, index, field)
    }

    /// Enters block number `index`, walking the chain from its head.
    fn enter_nth(&mut self, index: usize) -> Result<(), BlockError> {
        let mut pa = self.chain.head;
        for i in 0..index {
            let field = if i == 0 { Field::Head } else { Field::Next };
            check_link(self.p, pa).map_err(|fault| ChainError { index: i, pa, field, fault })?;
            pa = PhysAddr::new(read_header(self.p, pa)?.next);
        }
        self.enter(pa, index, if index == 0 { Field::Head } else { Field::Next })
    }

    fn enter(&mut self, pa: PhysAddr, index: usize, field: Field) -> Result<(), BlockError> {
        let err = |fault| ChainError { index, pa, field, fault };
        if pa.is_null() {
            return Err(err(Fault::Ended).into());
        }
        check_link(self.p, pa).map_err(err)?;
        let header = read_header(self.p, pa)?;
        let count = check_count(header.count, self.chain.shape.per_block).map_err(|fault| ChainError {
            index,
            pa,
            field: Field::Count,
            fault,
        })?;
        self.block = pa;
        self.block_index = index;
        self.count = count;
        self.next = PhysAddr::new(header.next);
        self.slot = 0;
        Ok(())
    }

    /// Stops the cursor after an error: nothing more in either direction.
    fn fail(&mut self, e: BlockError) -> BlockError {
        self.chain.len = 0;
        self.index = 0;
        e
    }
}

impl<P: PhysMem + ?Sized> Iterator for RawCursor<'_, P> {
    type Item = Result<PhysAddr, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index == self.chain.len {
            return None;
        }
        if let Err(e) = self.advance_block_if_done() {
            return Some(Err(self.fail(e)));
        }
        let pa = self.chain.shape.entry_pa(self.block, self.slot);
        self.slot += 1;
        self.index += 1;
        Some(Ok(pa))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_rules() {
        assert_eq!(Shape::new(0), Err(BlockError::EntrySize { size: 0, max: PAGE_SIZE - 16 }));
        assert_eq!(
            Shape::new(PAGE_SIZE - 15),
            Err(BlockError::EntrySize { size: PAGE_SIZE - 15, max: PAGE_SIZE - 16 })
        );
        let s = Shape::new(PAGE_SIZE - 16).unwrap();
        assert_eq!(s.per_block, 1);
        let s = Shape::new(64).unwrap();
        assert_eq!(s.blocks_for(0), 0);
        assert_eq!(s.blocks_for(1), 1);
        assert_eq!(s.blocks_for(s.per_block), 1);
        assert_eq!(s.blocks_for(s.per_block + 1), 2);
        let b = PhysAddr::new(0x1_0000_3000);
        assert_eq!(s.entry_pa(b, 0), PhysAddr::new(0x1_0000_3010));
        assert_eq!(s.entry_pa(b, 2), PhysAddr::new(0x1_0000_3090));
        assert_eq!(s.entry_pa(b, s.per_block - 1).as_u64(), 0x1_0000_3000 + 16 + 64 * (s.per_block as u64 - 1));
        // Entries that fill the page exactly: the last one ends at the page end.
        let s = Shape::new(8).unwrap();
        assert_eq!(s.entry_pa(PhysAddr::new(0x1000), s.per_block - 1), PhysAddr::new(0x1ff8));
    }

    #[test]
    fn count_rules() {
        assert_eq!(check_count(0, 63), Err(Fault::CountZero));
        assert_eq!(check_count(1, 63), Ok(1));
        assert_eq!(check_count(63, 63), Ok(63));
        assert_eq!(check_count(64, 63), Err(Fault::CountTooLarge { count: 64, max: 63 }));
        assert_eq!(check_count(u64::MAX, 63), Err(Fault::CountTooLarge { count: u64::MAX, max: 63 }));
    }
}
