//! The kernel's radix-tree algorithm, rewritten from its description as a
//! baseline: one mutex held around a descent per key, a zeroed page
//! allocated for every missing node on the way down, an atomic bit-set in
//! the leaf; and a walk that recurses through the tables and calls a
//! function once per set bit.
//!
//! Written in safe Rust over heap pages: a slot holds the index (plus one)
//! of its child in a page list, so following a slot is a bounds-checked
//! index, as the kernel's is an addition (`phys_to_virt`). The leaves hold
//! the same bits as kho's leaves for the same blocks (a test checks it), so
//! both walk identical bitmaps.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kho_abi::{GEOMETRY, PAGE_SHIFT, TABLE_ENTRIES};

/// Words per page (tables and leaves alike).
const WORDS: usize = kho_abi::LEAF_WORDS;

/// One page of the tree.
type Page = Box<[AtomicU64]>;

fn zeroed_page() -> Page {
    (0..WORDS).map(|_| AtomicU64::new(0)).collect()
}

/// The kernel's tree: pages behind one mutex.
#[derive(Debug)]
pub struct KernelTree {
    /// Every page; index 0 is the root.
    pages: Mutex<Vec<Page>>,
}

impl Default for KernelTree {
    fn default() -> Self {
        Self::new()
    }
}

/// The key of a block: the order bit above the frame number.
#[inline]
pub fn encode(pa: u64, order: u32) -> u64 {
    (1u64 << (GEOMETRY.max_key_order - order)) | (pa >> (PAGE_SHIFT + order))
}

/// The block of a key: `(pa, order)`.
#[inline]
pub fn decode(key: u64) -> (u64, u32) {
    let top = 63 - key.leading_zeros();
    let order = GEOMETRY.max_key_order - top;
    ((key ^ (1u64 << top)) << (PAGE_SHIFT + order), order)
}

impl KernelTree {
    /// An empty tree: one zeroed root table.
    pub fn new() -> KernelTree {
        KernelTree { pages: Mutex::new(vec![zeroed_page()]) }
    }

    /// Pages the tree holds.
    pub fn pages(&self) -> usize {
        self.pages.lock().map_or(0, |p| p.len())
    }

    /// Preserves the block: takes the mutex, descends from the root
    /// allocating each missing table and the leaf, sets the bit.
    pub fn preserve(&self, pa: u64, order: u32) {
        let key = encode(pa, order);
        let Ok(mut pages) = self.pages.lock() else { return };
        let mut node = 0usize;
        for level in (1..GEOMETRY.depth).rev() {
            let index = ((key >> GEOMETRY.level_shift(level)) & (TABLE_ENTRIES as u64 - 1)) as usize;
            let mut child = pages[node][index].load(Ordering::Acquire);
            if child == 0 {
                pages.push(zeroed_page());
                child = pages.len() as u64;
                pages[node][index].store(child, Ordering::Release);
            }
            node = child as usize - 1;
        }
        let bit = (key & (GEOMETRY.bitmap_len as u64 - 1)) as usize;
        pages[node][bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
    }

    /// Calls `f(pa, order)` for every set bit, recursing through the tables
    /// in ascending key order.
    pub fn walk(&self, f: &mut dyn FnMut(u64, u32)) {
        let Ok(pages) = self.pages.lock() else { return };
        visit(&pages, 0, GEOMETRY.depth - 1, 0, f);
    }

    /// The leaves as `(base key, words)`, ascending.
    #[cfg(test)]
    pub fn leaves(&self) -> Vec<(u64, Vec<u64>)> {
        let mut out = Vec::new();
        let Ok(pages) = self.pages.lock() else { return out };
        collect_leaves(&pages, 0, GEOMETRY.depth - 1, 0, &mut out);
        out
    }
}

fn visit(pages: &[Page], node: usize, level: u32, prefix: u64, f: &mut dyn FnMut(u64, u32)) {
    if level == 0 {
        for (w, word) in pages[node].iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let (pa, order) = decode(prefix | (w as u64 * 64 + u64::from(bits.trailing_zeros())));
                f(pa, order);
                bits &= bits - 1;
            }
        }
        return;
    }
    let shift = GEOMETRY.level_shift(level);
    for (index, slot) in pages[node].iter().enumerate() {
        let child = slot.load(Ordering::Acquire);
        if child != 0 {
            visit(pages, child as usize - 1, level - 1, prefix | ((index as u64) << shift), f);
        }
    }
}

#[cfg(test)]
fn collect_leaves(pages: &[Page], node: usize, level: u32, prefix: u64, out: &mut Vec<(u64, Vec<u64>)>) {
    if level == 0 {
        out.push((prefix, pages[node].iter().map(|w| w.load(Ordering::Relaxed)).collect()));
        return;
    }
    let shift = GEOMETRY.level_shift(level);
    for (index, slot) in pages[node].iter().enumerate() {
        let child = slot.load(Ordering::Acquire);
        if child != 0 {
            collect_leaves(pages, child as usize - 1, level - 1, prefix | ((index as u64) << shift), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_abi::{Order, PhysAddr, RadixKey};
    use kho_track::walk::{Guard, TreeView};
    use kho_track::{Tracker, TrackerOptions};

    use crate::workloads::{Arena, Rng};

    #[test]
    fn keys_match_kho_abi() {
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            let order = rng.below(19) as u32;
            let pa = rng.next_u64() & !((1u64 << (PAGE_SHIFT + order)) - 1);
            let key = RadixKey::encode(PhysAddr::new(pa), Order::new(u64::from(order), "o").unwrap()).unwrap();
            assert_eq!(encode(pa, order), key.as_u64());
            assert_eq!(decode(key.as_u64()), (pa, order));
        }
    }

    #[test]
    fn same_leaves_as_kho_and_the_walk_sees_every_block() {
        let arena = Arena::new(4 << 30, 10);
        let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).unwrap();
        let k = KernelTree::new();
        // The tracker's FDT page is preserved too.
        let mut fdt = None;
        let _ = t.for_each_block::<()>(&mut |pa, o| {
            fdt = Some((pa.as_u64(), o.get()));
            std::ops::ControlFlow::Continue(())
        });
        let (fpa, fo) = fdt.unwrap();
        k.preserve(fpa, fo);
        let mut rng = Rng::new(3);
        let mut want = vec![(fpa, fo)];
        for _ in 0..5000 {
            let order = rng.below(11) as u32;
            let index = rng.below((4 << 30) >> (PAGE_SHIFT + order));
            let pa = arena.pa(index, order).as_u64();
            t.preserve_folio(PhysAddr::new(pa), Order::new(u64::from(order), "o").unwrap()).unwrap();
            k.preserve(pa, order);
            want.push((pa, order));
        }
        let mut ours = Vec::new();
        let _ = TreeView::new(&arena.machine, t.tree_root())
            .for_each_leaf::<()>(&mut Guard::trusted(), &mut |base, words| {
                ours.push((base, words.iter().map(|w| w.load(Ordering::Relaxed)).collect::<Vec<u64>>()));
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
        assert_eq!(k.leaves(), ours);
        let mut seen = Vec::new();
        k.walk(&mut |pa, o| seen.push((pa, o)));
        let mut kho = Vec::new();
        let _ = t.for_each_block::<()>(&mut |pa, o| {
            kho.push((pa.as_u64(), o.get()));
            std::ops::ControlFlow::Continue(())
        });
        assert_eq!(seen, kho);
        want.sort_unstable_by_key(|&(pa, o)| encode(pa, o));
        want.dedup();
        assert_eq!(seen, want);
        assert!(k.pages() >= 6);
        t.destroy();
    }
}
