//! Block sets typed over a zerocopy entry type: the same sets, with entries
//! read and written as values instead of byte offsets.

use core::marker::PhantomData;

use kho_abi::{Claim, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, read_phys};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::chain::{HEADER, RawCursor, Shape};
use crate::error::BlockError;
use crate::raw::{RawBlockSet, RawWriter};
use crate::restore::RestoredRawBlockSet;

/// A type that can be an entry: plain bytes both ways, as zerocopy proves.
/// Its size is the set's entry size (checked at compile time to be in
/// `1..=PAGE_SIZE - 16`); it is read and written unaligned, so
/// `#[repr(C, packed)]` wire structs work as they are.
pub trait Entry: FromBytes + IntoBytes + Immutable + KnownLayout {}

impl<T: FromBytes + IntoBytes + Immutable + KnownLayout> Entry for T {}

/// The shape of a set of `T`, rejected at compile time for a zero-sized
/// type or one larger than a block can hold.
const fn shape_of<T>() -> Shape {
    const {
        assert!(
            size_of::<T>() > 0 && size_of::<T>() <= PAGE_SIZE - HEADER,
            "a block entry must be 1..=PAGE_SIZE - 16 bytes"
        )
    };
    Shape { entry_size: size_of::<T>(), per_block: (PAGE_SIZE - HEADER) / size_of::<T>() }
}

/// An outgoing block set of `T` entries: a [`RawBlockSet`] whose entry size
/// is `size_of::<T>()`. See [`RawBlockSet`] for capacity, the chain and
/// handover.
#[derive(Debug, PartialEq, Eq)]
pub struct BlockSet<T> {
    raw: RawBlockSet,
    _entry: PhantomData<fn() -> T>,
}

impl<T: Entry> Default for BlockSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Entry> BlockSet<T> {
    /// An empty set, with no capacity and no pages.
    pub const fn new() -> Self {
        BlockSet { raw: RawBlockSet::with_shape(shape_of::<T>()), _entry: PhantomData }
    }

    /// Types a raw set; fails with [`BlockError::EntryLength`] if its entry
    /// size is not `size_of::<T>()`.
    pub fn from_raw(raw: RawBlockSet) -> Result<Self, BlockError> {
        if raw.entry_size() != size_of::<T>() {
            return Err(BlockError::EntryLength { len: size_of::<T>(), entry_size: raw.entry_size() });
        }
        Ok(BlockSet { raw, _entry: PhantomData })
    }

    /// The byte-level set.
    pub fn as_raw(&self) -> &RawBlockSet {
        &self.raw
    }

    /// The byte-level set, untyped.
    pub fn into_raw(self) -> RawBlockSet {
        self.raw
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether no entries are written.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Entries reserved, written or not.
    pub fn capacity(&self) -> usize {
        self.raw.capacity()
    }

    /// Block pages held, used and spare.
    pub fn blocks(&self) -> usize {
        self.raw.blocks()
    }

    /// Entries one block holds.
    pub fn entries_per_block(&self) -> usize {
        self.raw.entries_per_block()
    }

    /// PA of the first block, 0 while empty: see [`RawBlockSet::head`].
    pub fn head(&self) -> PhysAddr {
        self.raw.head()
    }

    /// Reserves capacity for `n` more entries: see [`RawBlockSet::grow`].
    pub fn grow<P: PhysMem + PageAlloc + Preserve + ?Sized>(&mut self, p: &P, n: usize) -> Result<(), BlockError> {
        self.raw.grow(p, n)
    }

    /// Gives back capacity for `n` entries: see [`RawBlockSet::shrink`].
    pub fn shrink<P: PhysMem + PageAlloc + Preserve + ?Sized>(&mut self, p: &P, n: usize) -> Result<(), BlockError> {
        self.raw.shrink(p, n)
    }

    /// Drops entries from `new_len` on: see [`RawBlockSet::truncate`].
    pub fn truncate<P: PhysMem + ?Sized>(&mut self, p: &P, new_len: usize) -> Result<(), BlockError> {
        self.raw.truncate(p, new_len)
    }

    /// Drops every entry, keeping the capacity.
    pub fn clear<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(), BlockError> {
        self.raw.clear(p)
    }

    /// Unpreserves and frees every block: see [`RawBlockSet::destroy`].
    pub fn destroy<P: PhysMem + PageAlloc + Preserve + ?Sized>(&mut self, p: &P) -> Result<(), BlockError> {
        self.raw.destroy(p)
    }

    /// A writer appending entries within the reserved capacity.
    pub fn writer<'a, P: PhysMem + ?Sized>(&'a mut self, p: &'a P) -> Writer<'a, T, P> {
        Writer { raw: self.raw.writer(p), p, _entry: PhantomData }
    }

    /// The entries, in order.
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, p: &'a P) -> Iter<'a, T, P> {
        Iter { raw: self.raw.iter(p), p, _entry: PhantomData }
    }

    /// Adopts the chain at `head` left by the previous kernel: see
    /// [`RestoredRawBlockSet::restore`].
    pub fn restore<P: PhysMem + Claim + ?Sized>(p: &P, head: PhysAddr) -> Result<RestoredBlockSet<T>, BlockError> {
        let raw = RestoredRawBlockSet::restore(p, head, size_of::<T>())?;
        Ok(RestoredBlockSet { raw, _entry: PhantomData })
    }
}

/// Appends `T` entries to a [`BlockSet`]: see [`RawWriter`].
#[derive(Debug)]
pub struct Writer<'a, T, P: ?Sized> {
    raw: RawWriter<'a, P>,
    p: &'a P,
    _entry: PhantomData<fn(T)>,
}

impl<T: Entry, P: PhysMem + ?Sized> Writer<'_, T, P> {
    /// Appends one entry.
    pub fn push(&mut self, entry: &T) -> Result<(), BlockError> {
        self.raw.push(entry.as_bytes())
    }

    /// Appends all of `entries`, or none if they do not fit.
    pub fn extend(&mut self, entries: &[T]) -> Result<(), BlockError> {
        self.raw.extend(entries.as_bytes())
    }

    /// Reserves the next entry, zeroed, and returns its address.
    pub fn reserve(&mut self) -> Result<PhysAddr, BlockError> {
        self.raw.reserve()
    }

    /// Steps back over the last entry, un-reserving it, and returns its
    /// value; `None` when the set is empty.
    pub fn prev(&mut self) -> Result<Option<T>, BlockError> {
        match self.raw.prev()? {
            Some(pa) => Ok(Some(read_phys(self.p, pa)?)),
            None => Ok(None),
        }
    }

    /// Entries written.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether no entries are written.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Entries that can still be reserved.
    pub fn remaining(&self) -> usize {
        self.raw.remaining()
    }
}

/// Reads the `T` entries of a set in order: see [`RawCursor`].
#[derive(Debug)]
pub struct Iter<'a, T, P: ?Sized> {
    raw: RawCursor<'a, P>,
    p: &'a P,
    _entry: PhantomData<fn() -> T>,
}

impl<T: Entry, P: PhysMem + ?Sized> Iter<'_, T, P> {
    /// Steps back: yields the entry before the cursor and moves back over
    /// it.
    pub fn prev(&mut self) -> Option<Result<T, BlockError>> {
        self.raw.prev().map(|r| self.read(r))
    }

    /// Copies entries from the cursor on into `out`, a block at a time;
    /// returns how many (fewer than `out.len()` only at the end).
    pub fn read_into(&mut self, out: &mut [T]) -> Result<usize, BlockError> {
        self.raw.read_into(out.as_mut_bytes())
    }

    /// Entries before the cursor.
    pub fn position(&self) -> usize {
        self.raw.position()
    }

    /// Entries after the cursor.
    pub fn remaining(&self) -> usize {
        self.raw.remaining()
    }

    fn read(&self, at: Result<PhysAddr, BlockError>) -> Result<T, BlockError> {
        Ok(read_phys(self.p, at?)?)
    }
}

impl<T: Entry, P: PhysMem + ?Sized> Iterator for Iter<'_, T, P> {
    type Item = Result<T, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.raw.next().map(|r| self.read(r))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.raw.size_hint()
    }
}

/// A block set of `T` adopted from the previous kernel: see
/// [`RestoredRawBlockSet`].
#[derive(Debug, PartialEq, Eq)]
pub struct RestoredBlockSet<T> {
    raw: RestoredRawBlockSet,
    _entry: PhantomData<fn() -> T>,
}

impl<T: Entry> RestoredBlockSet<T> {
    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the set has no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Block pages in the chain.
    pub fn blocks(&self) -> usize {
        self.raw.blocks()
    }

    /// PA of the first block, 0 for an empty set.
    pub fn head(&self) -> PhysAddr {
        self.raw.head()
    }

    /// The byte-level set.
    pub fn as_raw(&self) -> &RestoredRawBlockSet {
        &self.raw
    }

    /// The entries, in chain order.
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, p: &'a P) -> Iter<'a, T, P> {
        Iter { raw: self.raw.iter(p), p, _entry: PhantomData }
    }

    /// Frees the block pages: see [`RestoredRawBlockSet::free`].
    pub fn free<P: PhysMem + PageAlloc + ?Sized>(self, p: &P) -> Result<(), BlockError> {
        self.raw.free(p)
    }

    /// Gives the block pages back unclaimed.
    pub fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        self.raw.unclaim(p)
    }
}
