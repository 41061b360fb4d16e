//! The limits each tracker measurement is set against, shared by the
//! report (`kho-bench`) and the criterion benches (`benches/`): what the
//! same work costs with nothing but the data structure's floor.
//!
//! - [`Bitmap`]: preserving is an atomic bit-set into a flat bitmap
//!   allocated beforehand over the whole region (no tree, no allocation,
//!   no checks).
//! - [`scan_blocks`] and [`scan_ranges`]: walking is a word scan of the
//!   tree's own leaf pages (no interior nodes, no checks) that calls the
//!   same kind of callback with the same blocks or ranges.
//! - [`sum_words`]: the raw floor of a walk, every leaf word added up.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use kho_abi::{Order, PAGE_SHIFT, PageAlloc, PhysAddr, PhysMem};
use kho_track::mem::WORDS;
use kho_track::walk::{Guard, TreeView};

/// A flat bitmap, one bit per page of a region, set atomically.
#[derive(Debug)]
pub struct Bitmap {
    base: u64,
    words: Vec<AtomicU64>,
}

impl Bitmap {
    /// A clear bitmap over `pages` pages from PA `base`.
    pub fn new(base: u64, pages: u64) -> Bitmap {
        Bitmap { base, words: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Sets the bit of the page at `pa` (inside the region).
    #[inline(always)]
    pub fn set(&self, pa: u64) {
        let bit = (pa - self.base) >> PAGE_SHIFT;
        self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
    }

    /// Pages set.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.load(Ordering::Relaxed).count_ones())).sum()
    }
}

/// One leaf page of a tracker's tree: the key of its bit 0 (order and
/// first PA, encoded as the tree encodes them) and its words.
pub type Leaf<'m> = (u64, &'m [kho_track::sync::AtomicU64; WORDS]);

/// The leaf pages of the tree at `root` in `mem`, in key order.
pub fn leaves<M: PhysMem + PageAlloc + ?Sized>(mem: &M, root: PhysAddr) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    let _ = TreeView::new(mem, root)
        .for_each_leaf::<()>(&mut Guard::trusted(), &mut |base, words| {
            out.push((base, words));
            Ok(ControlFlow::Continue(()))
        })
        .expect("leaf walk of a tree built in this process");
    out
}

/// The limit of the per-block walk: every set bit of `leaves`, as a block,
/// to `f` through `&mut dyn FnMut` (as a C scan would call a function
/// pointer). Each leaf's order and first PA are decoded once; a block is
/// then a shift and an add from them.
#[inline(never)]
pub fn scan_blocks(leaves: &[Leaf<'_>], f: &mut dyn FnMut(PhysAddr, Order) -> ControlFlow<()>) {
    for &(base, words) in leaves {
        if base == 0 {
            continue;
        }
        let (pa0, order) = crate::kernel::decode(base);
        let shift = PAGE_SHIFT + order;
        let Ok(o) = Order::new(u64::from(order), "order") else { continue };
        for (w, word) in words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let bit = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if f(PhysAddr::new(pa0 + (bit << shift)), o).is_break() {
                    return;
                }
            }
        }
    }
}

/// The limit of the range walk: runs of set bits of `leaves`, merged across
/// words and leaves, as `(PA, length)` to `emit`. For leaves of one order
/// (a range is not merged across orders).
pub fn scan_ranges(leaves: &[Leaf<'_>], emit: &mut dyn FnMut(u64, u64)) {
    let (mut run_start, mut run_end) = (0u64, 0u64);
    for &(base, words) in leaves {
        if base == 0 {
            continue;
        }
        let (pa0, order) = crate::kernel::decode(base);
        let shift = PAGE_SHIFT + order;
        for (w, word) in words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let s = bits.trailing_zeros();
                let ones = (!(bits >> s)).trailing_zeros();
                let first = pa0 + ((w as u64 * 64 + u64::from(s)) << shift);
                let last = first + (u64::from(ones) << shift);
                if first == run_end && run_end != 0 {
                    run_end = last;
                } else {
                    if run_end != 0 {
                        emit(run_start, run_end - run_start);
                    }
                    (run_start, run_end) = (first, last);
                }
                let done = s + ones;
                bits = if done >= 64 { 0 } else { bits & (u64::MAX << done) };
            }
        }
    }
    if run_end != 0 {
        emit(run_start, run_end - run_start);
    }
}

/// The raw floor: every word of `leaves` added up (emits nothing).
pub fn sum_words(leaves: &[Leaf<'_>]) -> u64 {
    let mut acc = 0u64;
    for &(_, words) in leaves {
        for word in words.iter() {
            acc = acc.wrapping_add(word.load(Ordering::Relaxed));
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_abi::PAGE_SIZE;
    use kho_sim::{Machine, MachineConfig};
    use kho_track::{Tracker, TrackerOptions};

    #[test]
    fn bitmap_counts_each_page_once() {
        let b = Bitmap::new(1 << 30, 200);
        for p in [0u64, 1, 63, 64, 199, 1] {
            b.set((1 << 30) + p * PAGE_SIZE as u64);
        }
        assert_eq!(b.count(), 5);
    }

    #[test]
    fn scans_emit_what_the_tracker_walks_emit() {
        let m = Machine::new(MachineConfig { ram_size: 256 << 20, scratch: vec![], ..MachineConfig::default() })
            .expect("machine");
        let t = Tracker::new(&m, &[], TrackerOptions::default()).expect("tracker");
        let base = m.ram_base().as_u64();
        // Runs crossing a word and a leaf boundary, and isolated pages.
        let pages: Vec<u64> = (60..70).chain(32_760..32_780).chain([5, 7, 9_000]).collect();
        for &p in &pages {
            t.preserve_folio(PhysAddr::new(base + p * PAGE_SIZE as u64), Order::ZERO).expect("preserve");
        }
        let leaves = leaves(&m, t.tree_root());
        let mut scanned = Vec::new();
        scan_blocks(&leaves, &mut |pa, o| {
            scanned.push((pa, o));
            ControlFlow::Continue(())
        });
        let mut walked = Vec::new();
        let done = t
            .for_each_block::<()>(&mut |pa, o| {
                walked.push((pa, o));
                ControlFlow::Continue(())
            })
            .expect("walk");
        assert!(done.is_continue());
        assert_eq!(scanned, walked);
        let mut ranges = Vec::new();
        scan_ranges(&leaves, &mut |pa, len| ranges.push((pa, len)));
        let mut tracker_ranges = Vec::new();
        let done = t
            .for_each_range::<()>(&mut |pa, len| {
                tracker_ranges.push((pa.as_u64(), len));
                ControlFlow::Continue(())
            })
            .expect("walk");
        assert!(done.is_continue());
        assert_eq!(ranges, tracker_ranges);
        // One range across a word boundary, one across a leaf boundary.
        let page = PAGE_SIZE as u64;
        assert!(ranges.contains(&(base + 60 * page, 10 * page)), "{ranges:x?}");
        assert!(ranges.contains(&(base + 32_760 * page, 20 * page)), "{ranges:x?}");
        assert_ne!(sum_words(&leaves), 0);
        assert_eq!(sum_words(&[]), 0);
        drop(leaves);
        t.destroy();
    }
}
