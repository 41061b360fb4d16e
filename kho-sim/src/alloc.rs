//! The buddy page allocator of the simulated machine.
//!
//! Pure bookkeeping over page indexes; it never touches RAM. Blocks are
//! naturally aligned by *absolute* frame number (a block of order `o` starts
//! at a PFN that is a multiple of `2^o`), exactly as in the kernel, so a
//! RAM base that is not aligned to the largest order merely makes the first
//! and last blocks smaller.
//!
//! # Invariants
//!
//! - Every page belongs to at most one block: a free block (in `free[o]`), an
//!   allocated block or a reserved block; pages in no block are unavailable
//!   (outside the managed ranges).
//! - Only the first page of a block has a non-zero `state` byte; it records
//!   the kind and the order of the block. All other pages hold 0.
//! - `free[o]` holds exactly the indexes whose state is `FREE | o`.

use std::collections::BTreeSet;

const KIND_MASK: u8 = 0xc0;
const ORDER_MASK: u8 = 0x3f;
const FREE: u8 = 0x40;
const ALLOCATED: u8 = 0x80;
const RESERVED: u8 = 0xc0;

/// What a block head is, as read from the state array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageState {
    /// Not the head of any block (a tail page, or unavailable).
    None,
    /// Head of a free block of this order.
    Free(u32),
    /// Head of an allocated block of this order.
    Allocated(u32),
    /// Head of a reserved (preserved by the previous kernel) block.
    Reserved(u32),
}

/// A buddy allocator over `npages` pages starting at frame `base_pfn`.
#[derive(Debug)]
pub(crate) struct Buddy {
    base_pfn: u64,
    npages: u64,
    max_order: u32,
    state: Vec<u8>,
    free: Vec<BTreeSet<u64>>,
    outstanding: u64,
    reserved: u64,
}

impl Buddy {
    /// An allocator with every page unavailable. `state` costs one byte per
    /// page, allocated zeroed (so untouched for large machines).
    pub(crate) fn new(base_pfn: u64, npages: u64, max_order: u32) -> Buddy {
        assert!(max_order <= u32::from(ORDER_MASK), "max_order {max_order} too large for the buddy allocator");
        let len = usize::try_from(npages).expect("page count fits in memory");
        Buddy {
            base_pfn,
            npages,
            max_order,
            state: vec![0; len],
            free: (0..=max_order).map(|_| BTreeSet::new()).collect(),
            outstanding: 0,
            reserved: 0,
        }
    }

    /// Pages handed out by [`alloc`](Buddy::alloc) and not released.
    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Pages in reserved blocks not released.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    /// The state of the page at index `i` (which must be `< npages`).
    pub(crate) fn state(&self, i: u64) -> PageState {
        // PANICS: callers check `i < npages`, the length of `state`.
        let s = self.state[i as usize];
        let order = u32::from(s & ORDER_MASK);
        match s & KIND_MASK {
            FREE => PageState::Free(order),
            ALLOCATED => PageState::Allocated(order),
            RESERVED => PageState::Reserved(order),
            _ => PageState::None,
        }
    }

    fn set(&mut self, i: u64, kind: u8, order: u32) {
        // PANICS: every index passed here lies inside a block, so `< npages`;
        // orders are at most 63 (checked in `new` and by `Order`).
        self.state[i as usize] = kind | order as u8;
    }

    fn clear(&mut self, i: u64) {
        // PANICS: as in `set`.
        self.state[i as usize] = 0;
    }

    /// Makes pages `[start, end)` (indexes) free, as maximal aligned blocks
    /// merged with free neighbours. The pages must be in no block.
    pub(crate) fn add_free_range(&mut self, start: u64, end: u64) {
        let end = end.min(self.npages);
        // Frame 0 stays unavailable: PA 0 means "none" in every KHO layout.
        let mut i = if self.base_pfn == 0 { start.max(1) } else { start };
        while i < end {
            let pfn = self.base_pfn + i;
            let align = if pfn == 0 { self.max_order } else { pfn.trailing_zeros().min(self.max_order) };
            let fit = 63 - (end - i).leading_zeros();
            let order = align.min(fit);
            self.free_block(i, order);
            i += 1 << order;
        }
    }

    /// Puts the block `(i, order)` (in no other block) on the free lists,
    /// merging it with its free buddies.
    fn free_block(&mut self, mut i: u64, mut order: u32) {
        while order < self.max_order {
            let buddy_pfn = (self.base_pfn + i) ^ (1 << order);
            let Some(b) = buddy_pfn.checked_sub(self.base_pfn).filter(|&b| b < self.npages) else { break };
            if self.state(b) != PageState::Free(order) {
                break;
            }
            self.free[order as usize].remove(&b);
            self.clear(b);
            self.clear(i);
            i = i.min(b);
            order += 1;
        }
        self.set(i, FREE, order);
        self.free[order as usize].insert(i);
    }

    /// Allocates a block of `order` (at most `max_order`), lowest index
    /// first within the smallest order that has a free block.
    pub(crate) fn alloc(&mut self, order: u32) -> Option<u64> {
        let from = (order..=self.max_order).find(|&k| !self.free[k as usize].is_empty())?;
        let i = self.free[from as usize].pop_first()?;
        let mut k = from;
        while k > order {
            k -= 1;
            let upper = i + (1 << k);
            self.set(upper, FREE, k);
            self.free[k as usize].insert(upper);
        }
        self.set(i, ALLOCATED, order);
        self.outstanding += 1 << order;
        Some(i)
    }

    /// Marks `(i, order)` as reserved. The pages must be in no block; `order`
    /// may exceed `max_order`.
    pub(crate) fn reserve(&mut self, i: u64, order: u32) {
        self.set(i, RESERVED, order);
        self.reserved += 1 << order;
    }

    /// Takes back an allocated or reserved block. Returns the state found
    /// instead when `(i, order)` is neither.
    pub(crate) fn release(&mut self, i: u64, order: u32) -> Result<(), PageState> {
        match self.state(i) {
            PageState::Allocated(o) if o == order => self.outstanding -= 1 << order,
            PageState::Reserved(o) if o == order => self.reserved -= 1 << order,
            other => return Err(other),
        }
        self.clear(i);
        if order <= self.max_order {
            self.free_block(i, order);
        } else {
            let step = 1u64 << self.max_order;
            for j in 0..(1u64 << (order - self.max_order)) {
                self.free_block(i + j * step, self.max_order);
            }
        }
        Ok(())
    }

    /// Forgets every free block: its pages become unavailable.
    pub(crate) fn clear_free(&mut self) {
        for order in 0..self.free.len() {
            for i in std::mem::take(&mut self.free[order]) {
                self.clear(i);
            }
        }
    }

    /// Every allocated block as `(index, order)`, ascending.
    pub(crate) fn allocated_blocks(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.npages {
            match self.state(i) {
                PageState::Allocated(o) => {
                    out.push((i, o));
                    i += 1 << o;
                }
                PageState::Free(o) | PageState::Reserved(o) => i += 1 << o,
                PageState::None => i += 1,
            }
        }
        out
    }

    /// Number of free pages.
    pub(crate) fn free_pages(&self) -> u64 {
        self.free.iter().enumerate().map(|(o, set)| (set.len() as u64) << o).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_merges_back() {
        let mut b = Buddy::new(0x100, 64, 4);
        b.add_free_range(0, 64);
        assert_eq!(b.free_pages(), 64);
        assert_eq!(b.free[4].len(), 4);
        let a = b.alloc(0).unwrap();
        assert_eq!(a, 0);
        assert_eq!(b.free_pages(), 63);
        assert_eq!(b.outstanding(), 1);
        // The split left one free block of each order 0..4 above `a`.
        for o in 0..4 {
            assert_eq!(b.free[o].len(), 1, "order {o}");
        }
        b.release(a, 0).unwrap();
        assert_eq!(b.free[4].len(), 4);
        assert_eq!(b.free_pages(), 64);
        assert_eq!(b.outstanding(), 0);
    }

    #[test]
    fn unaligned_base_gives_smaller_edge_blocks() {
        // PFN 0x103..0x10d: blocks 0x103/0, 0x104/2, 0x108/2, 0x10c/0.
        let mut b = Buddy::new(0x103, 10, 4);
        b.add_free_range(0, 10);
        assert_eq!(b.free_pages(), 10);
        assert_eq!(b.free[2].len(), 2);
        assert_eq!(b.free[0].len(), 2);
        assert!(b.alloc(3).is_none());
        let x = b.alloc(2).unwrap();
        assert_eq!((b.base_pfn + x) % 4, 0);
    }

    #[test]
    fn release_checks_kind_and_order() {
        let mut b = Buddy::new(0, 16, 2);
        b.add_free_range(0, 16);
        // Frame 0 is never handed out.
        assert_eq!(b.free_pages(), 15);
        let x = b.alloc(1).unwrap();
        assert_eq!(b.release(x, 0), Err(PageState::Allocated(1)));
        assert_eq!(b.release(x + 1, 0), Err(PageState::None));
        b.release(x, 1).unwrap();
        assert_eq!(b.release(x, 1), Err(PageState::Free(1)));
    }

    #[test]
    fn reserved_blocks_above_max_order_free_as_max_order_blocks() {
        let mut b = Buddy::new(0x400, 32, 2);
        b.reserve(0, 4);
        b.add_free_range(16, 32);
        assert_eq!(b.reserved(), 16);
        assert_eq!(b.allocated_blocks(), vec![]);
        b.release(0, 4).unwrap();
        assert_eq!(b.reserved(), 0);
        assert_eq!(b.free_pages(), 32);
        assert_eq!(b.free[2].len(), 8);
        assert_eq!(b.outstanding(), 0);
    }

    #[test]
    fn clear_free_and_allocated_blocks() {
        let mut b = Buddy::new(0x10, 16, 3);
        b.add_free_range(0, 16);
        let x = b.alloc(0).unwrap();
        let y = b.alloc(2).unwrap();
        b.clear_free();
        assert_eq!(b.free_pages(), 0);
        assert!(b.alloc(0).is_none());
        assert_eq!(b.allocated_blocks(), vec![(x, 0), (y, 2)]);
        assert_eq!(b.state(x + 1), PageState::None);
    }
}
