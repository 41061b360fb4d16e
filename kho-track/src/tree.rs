//! The outgoing radix tree: lock-free insertion and removal of keys.
//!
//! Tables are installed with one compare-and-swap per missing branch: a
//! thread that finds an empty slot builds the whole missing branch below it
//! privately (tables down to the leaf, with its own bit already set) and
//! publishes it with a single CAS. If the allocation of any page fails, the
//! private pages are freed and nothing was ever visible; if another thread
//! won the slot, the loser frees its branch and descends into the winner's.
//! Leaf bits are set and cleared with atomic `or` / `and`. Nodes are never
//! freed while the tree is shared ([`RadixTree::destroy`] takes it by value),
//! exactly as in the kernel, so there is no reclamation problem.

use alloc::boxed::Box;

use kho_abi::{AbiError, GEOMETRY, PhysAddr, RadixKey};

use crate::mem::{TreeMem, WORDS};
use crate::sync::{AtomicU64, Ordering};

/// Level of the root table.
pub(crate) const ROOT_LEVEL: u32 = GEOMETRY.depth - 1;

/// Number of cached leaves (a power of two): at order 0 they cover 64 GiB
/// of consecutive leaves, each in its own slot.
#[cfg(not(loom))]
const HINTS: usize = 512;
#[cfg(loom)]
const HINTS: usize = 4;
/// Number of cached level-1 tables (a power of two): each covers 512
/// leaves (64 GiB of order-0 blocks), so a leaf missing from the leaf cache
/// is one table slot away.
#[cfg(not(loom))]
const TABLE_HINTS: usize = 64;
#[cfg(loom)]
const TABLE_HINTS: usize = 2;

/// A direct-mapped cache of `LEN` nodes of one level, one atomic word per
/// slot: the node's frame number and the high bits of its base (the key
/// shifted right by the `SHIFT` bits the node covers); the low
/// `log2(LEN)` bits of the base select the slot.
struct NodeCache<const SHIFT: u32, const LEN: usize> {
    slots: Box<[AtomicU64; LEN]>,
}

impl<const SHIFT: u32, const LEN: usize> NodeCache<SHIFT, LEN> {
    const SLOT_BITS: u32 = LEN.trailing_zeros();
    /// Bits left for the frame number.
    const PFN_BITS: u32 = 64 - (GEOMETRY.key_bits - SHIFT - Self::SLOT_BITS);

    fn new() -> Self {
        let slots: Box<[AtomicU64]> = (0..LEN).map(|_| AtomicU64::new(0)).collect();
        // PANICS: none; the slice has exactly `LEN` elements.
        let Ok(slots) = slots.try_into() else { unreachable!("LEN slots") };
        NodeCache { slots }
    }

    /// The cached node of `key`, if any.
    #[inline(always)]
    fn get(&self, key: RadixKey) -> Option<PhysAddr> {
        let base = key.as_u64() >> SHIFT;
        let hint = self.slots[base as usize % LEN].load(Ordering::Acquire);
        if hint == 0 || hint >> Self::PFN_BITS != base >> Self::SLOT_BITS {
            return None;
        }
        kho_abi::Pfn::new(hint & ((1 << Self::PFN_BITS) - 1)).checked_phys()
    }

    /// Remembers that `key`'s node is at `node`. A slot already holding it
    /// is not written again, so threads that share a node share its cache
    /// line read-only.
    #[inline(always)]
    fn put(&self, key: RadixKey, node: PhysAddr) {
        let base = key.as_u64() >> SHIFT;
        let pfn = node.pfn().as_u64();
        if pfn != 0 && pfn >> Self::PFN_BITS == 0 {
            let hint = ((base >> Self::SLOT_BITS) << Self::PFN_BITS) | pfn;
            let slot = &self.slots[base as usize % LEN];
            if slot.load(Ordering::Relaxed) != hint {
                slot.store(hint, Ordering::Release);
            }
        }
    }
}

/// Bits of a key below a level-1 table's base.
const TABLE_SHIFT: u32 = GEOMETRY.level_shift(2);

/// A radix tree of preserved blocks, identified by its root page.
///
/// Besides the root, the tree keeps two small caches of nodes it reached:
/// leaves, and the tables just above the leaves. A base key is attached to
/// one node for the tree's life (nodes are never freed or moved while it is
/// shared), so a cached entry is either absent or right: a leaf hit
/// replaces the descent through every table with one lookup, a table hit
/// with one slot. Entries are published with release ordering after the
/// node was reached through acquire loads, so a thread that uses one sees
/// the node as initialised as the thread that stored it did.
pub struct RadixTree {
    root: PhysAddr,
    leaves: NodeCache<{ GEOMETRY.bitmap_bits }, HINTS>,
    tables: NodeCache<TABLE_SHIFT, TABLE_HINTS>,
}

impl core::fmt::Debug for RadixTree {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RadixTree").field("root", &self.root).finish_non_exhaustive()
    }
}

fn leaf_word(words: &[AtomicU64; WORDS], key: RadixKey) -> (&AtomicU64, u64) {
    let bit = key.bitmap_index();
    (&words[bit / 64], 1u64 << (bit % 64))
}

impl RadixTree {
    /// Allocates an empty tree (one zeroed root table).
    pub fn new<M: TreeMem + ?Sized>(mem: &M) -> Result<RadixTree, AbiError> {
        Ok(RadixTree::from_root(mem.alloc_node()?))
    }

    /// Adopts the tree whose root table is at `root` (for example one a
    /// previous kernel left). Nothing is checked here; walks validate.
    pub fn from_root(root: PhysAddr) -> RadixTree {
        RadixTree { root, leaves: NodeCache::new(), tables: NodeCache::new() }
    }

    /// The cached leaf of `key`, if any.
    #[inline(always)]
    fn hinted_leaf<'m, M: TreeMem + ?Sized>(&self, mem: &'m M, key: RadixKey) -> Option<&'m [AtomicU64; WORDS]> {
        mem.words(self.leaves.get(key)?).ok()
    }

    /// Where a descent for `key` starts: the cached level-1 table, or the
    /// root.
    #[inline]
    fn start<'m, M: TreeMem + ?Sized>(
        &self,
        mem: &'m M,
        key: RadixKey,
    ) -> Result<(&'m [AtomicU64; WORDS], u32), AbiError> {
        if let Some(words) = self.tables.get(key).and_then(|pa| mem.words(pa).ok()) {
            return Ok((words, 1));
        }
        Ok((mem.words(self.root)?, ROOT_LEVEL))
    }

    /// Remembers the node at `level` (1 or 0) on `key`'s path.
    #[inline]
    fn remember(&self, key: RadixKey, level: u32, node: PhysAddr) {
        match level {
            0 => self.leaves.put(key, node),
            1 => self.tables.put(key, node),
            _ => {}
        }
    }

    /// PA of the root table.
    pub const fn root(&self) -> PhysAddr {
        self.root
    }

    /// Sets `key`. Returns whether it was clear before (a new preservation).
    /// On allocation failure nothing new is reachable from the root.
    #[inline]
    pub fn insert<M: TreeMem + ?Sized>(&self, mem: &M, key: RadixKey) -> Result<bool, AbiError> {
        match self.insert_cached(mem, key) {
            Some(was_clear) => Ok(was_clear),
            None => self.insert_descending(mem, key),
        }
    }

    /// [`insert`](RadixTree::insert) if `key`'s leaf is cached (then
    /// whether the key was clear before), else `None` and nothing done.
    #[inline(always)]
    pub(crate) fn insert_cached<M: TreeMem + ?Sized>(&self, mem: &M, key: RadixKey) -> Option<bool> {
        let (word, mask) = leaf_word(self.hinted_leaf(mem, key)?, key);
        Some(word.fetch_or(mask, Ordering::Relaxed) & mask == 0)
    }

    /// [`insert`](RadixTree::insert) of a key whose leaf is not cached:
    /// kept out of line, so that the cached path saves no registers.
    #[inline(never)]
    fn insert_descending<M: TreeMem + ?Sized>(&self, mem: &M, key: RadixKey) -> Result<bool, AbiError> {
        let (mut node, mut level) = self.start(mem, key)?;
        while level > 0 {
            let slot = &node[key.table_index(level)];
            let mut child = slot.load(Ordering::Acquire);
            if child == 0 {
                match graft(mem, slot, key, level)? {
                    None => return Ok(true),
                    Some(winner) => child = winner,
                }
            }
            let node_pa = PhysAddr::new(child);
            node = mem.words(node_pa)?;
            level -= 1;
            self.remember(key, level, node_pa);
        }
        let (word, mask) = leaf_word(node, key);
        Ok(word.fetch_or(mask, Ordering::Relaxed) & mask == 0)
    }

    /// Sets key `first + i` for every set bit `i` of `bits`: one word of a
    /// bitmap in one or two atomic `or`s. Every key so named must be valid
    /// (non-zero, within the key width).
    pub fn insert_bits<M: TreeMem + ?Sized>(&self, mem: &M, first: u64, bits: u64) -> Result<(), AbiError> {
        let off = (first % 64) as u32;
        let aligned = first - u64::from(off);
        self.or_word(mem, aligned, bits << off)?;
        if off != 0 {
            self.or_word(mem, aligned + 64, bits >> (64 - off))?;
        }
        Ok(())
    }

    /// Sets the keys `aligned + i` (`aligned` a multiple of 64) for the set
    /// bits `i` of `mask`, which share one leaf word.
    fn or_word<M: TreeMem + ?Sized>(&self, mem: &M, aligned: u64, mask: u64) -> Result<(), AbiError> {
        if mask == 0 {
            return Ok(());
        }
        let key = RadixKey::from_raw(aligned + u64::from(mask.trailing_zeros()))?;
        // Builds the path and the leaf if missing; then the whole word.
        self.insert(mem, key)?;
        if let Some(leaf) = self.leaf(mem, key)? {
            leaf_word(leaf, key).0.fetch_or(mask, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Clears `key`. Returns whether it was set. Tables are never freed.
    pub fn remove<M: TreeMem + ?Sized>(&self, mem: &M, key: RadixKey) -> Result<bool, AbiError> {
        match self.leaf(mem, key)? {
            None => Ok(false),
            Some(words) => {
                let (word, mask) = leaf_word(words, key);
                Ok(word.fetch_and(!mask, Ordering::Relaxed) & mask != 0)
            }
        }
    }

    /// Whether `key` is set.
    pub fn contains<M: TreeMem + ?Sized>(&self, mem: &M, key: RadixKey) -> Result<bool, AbiError> {
        match self.leaf(mem, key)? {
            None => Ok(false),
            Some(words) => {
                let (word, mask) = leaf_word(words, key);
                Ok(word.load(Ordering::Relaxed) & mask != 0)
            }
        }
    }

    /// The leaf holding `key`, if the path to it exists.
    fn leaf<'m, M: TreeMem + ?Sized>(
        &self,
        mem: &'m M,
        key: RadixKey,
    ) -> Result<Option<&'m [AtomicU64; WORDS]>, AbiError> {
        if let Some(leaf) = self.hinted_leaf(mem, key) {
            return Ok(Some(leaf));
        }
        let (mut node, top) = self.start(mem, key)?;
        for level in (1..=top).rev() {
            let child = node[key.table_index(level)].load(Ordering::Acquire);
            if child == 0 {
                return Ok(None);
            }
            let node_pa = PhysAddr::new(child);
            node = mem.words(node_pa)?;
            self.remember(key, level - 1, node_pa);
        }
        Ok(Some(node))
    }

    /// Frees every page of the tree. Slots that do not point at pages the
    /// tree could have allocated (unaligned, outside RAM) are skipped, so a
    /// damaged tree leaks rather than frees foreign memory.
    pub fn destroy<M: TreeMem + ?Sized>(self, mem: &M) {
        free_subtree(mem, self.root, ROOT_LEVEL);
    }
}

/// Frees the node at `pa` (at `level`) and everything below it.
fn free_subtree<M: TreeMem + ?Sized>(mem: &M, pa: PhysAddr, level: u32) {
    if level > 0
        && let Ok(words) = mem.words(pa)
    {
        for slot in words.iter() {
            let child = slot.load(Ordering::Acquire);
            if child != 0 {
                free_subtree(mem, PhysAddr::new(child), level - 1);
            }
        }
    }
    mem.free_node(pa);
}

/// Builds the branch for `key` below the empty `slot` of a table at `level`
/// and tries to install it. Returns `None` if installed (the key is set),
/// or the winner's child PA if another thread filled the slot first.
fn graft<M: TreeMem + ?Sized>(mem: &M, slot: &AtomicU64, key: RadixKey, level: u32) -> Result<Option<u64>, AbiError> {
    let top = mem.alloc_node()?;
    if let Err(e) = build_branch(mem, top, key, level - 1) {
        free_branch(mem, top, key, level - 1);
        return Err(e);
    }
    match slot.compare_exchange(0, top.as_u64(), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(None),
        Err(winner) => {
            free_branch(mem, top, key, level - 1);
            Ok(Some(winner))
        }
    }
}

/// Fills the private node `top` at `level` with the path to `key`, setting
/// its bit in the leaf.
fn build_branch<M: TreeMem + ?Sized>(mem: &M, top: PhysAddr, key: RadixKey, level: u32) -> Result<(), AbiError> {
    let mut node = top;
    for l in (1..=level).rev() {
        let child = mem.alloc_node()?;
        // Private until published by the CAS in `graft`, whose release
        // ordering makes these stores visible with it.
        mem.words(node)?[key.table_index(l)].store(child.as_u64(), Ordering::Relaxed);
        node = child;
    }
    let (word, mask) = leaf_word(mem.words(node)?, key);
    word.store(mask, Ordering::Relaxed);
    Ok(())
}

/// Frees a private branch built by [`build_branch`], however far it got.
fn free_branch<M: TreeMem + ?Sized>(mem: &M, top: PhysAddr, key: RadixKey, level: u32) {
    let mut node = top;
    let mut l = level;
    loop {
        let next =
            if l > 0 { mem.words(node).map(|w| w[key.table_index(l)].load(Ordering::Relaxed)).unwrap_or(0) } else { 0 };
        mem.free_node(node);
        if next == 0 {
            break;
        }
        node = PhysAddr::new(next);
        l -= 1;
    }
}
