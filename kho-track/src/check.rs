//! Checks shared by the two incoming map formats: what an import may
//! spend and what it found, scratch areas as a sorted set, runs of set bits
//! in a bitmap page, and the per-block checks of a run of blocks (order,
//! RAM, scratch) done once per run.

use alloc::vec::Vec;

#[cfg(not(loom))]
use kho_abi::{AbiError, Order, PhysMem};
use kho_abi::{KhoScratch, PhysAddr};

#[cfg(not(loom))]
use crate::error::{BlockFault, TrackError};

/// What an import found.
#[cfg(not(loom))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStats {
    /// Preserved blocks.
    pub blocks: u64,
    /// Pages in them.
    pub pages: u64,
    /// Pages of the radix tree.
    pub tree_pages: u64,
    /// Blocks per order.
    pub blocks_by_order: [u64; 64],
}

/// Caps on what an import may spend, whatever the handover declares.
///
/// The import reads each page of the memory map once and keeps a few words
/// of bookkeeping per page, so its time and memory are bounded by the
/// number of map pages it accepts; this caps that number. The default,
/// [`DEFAULT_MAX_MAP_PAGES`], is far above what a real kernel writes; a
/// caller that knows how much memory could hold a map (an inspector
/// reading an image file of `N` stored pages) passes a tighter cap.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportLimits {
    /// The most pages the memory map may have: radix tree nodes, or
    /// `kho-v1` chunk and bitmap pages. Beyond it the import fails with
    /// [`TrackError::MapTooLarge`].
    pub max_map_pages: u64,
}

/// The default cap on memory map pages: 2^20 pages (4 GiB of map with
/// 4 KiB pages). A kernel preserving every order-0 page of 64 TiB of RAM
/// writes about 2^19 leaves; the import of a map at the cap reads 4 GiB and
/// keeps about 40 MiB of bookkeeping.
#[cfg(not(loom))]
pub const DEFAULT_MAX_MAP_PAGES: u64 = 1 << 20;

#[cfg(not(loom))]
impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { max_map_pages: DEFAULT_MAX_MAP_PAGES }
    }
}

/// Scratch areas as disjoint, sorted `[start, end)` intervals, so that an
/// overlap test costs a binary search whatever the number of areas.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScratchSet {
    spans: Vec<(u64, u64)>,
}

impl ScratchSet {
    /// The union of `areas` (each already validated, so `addr + size` does
    /// not overflow; it saturates if it would).
    pub(crate) fn new(areas: &[KhoScratch]) -> ScratchSet {
        let mut spans: Vec<(u64, u64)> = areas.iter().map(|s| (s.addr, s.addr.saturating_add(s.size))).collect();
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        ScratchSet { spans: merged }
    }

    /// Whether `[pa, pa + len)` overlaps any area.
    pub(crate) fn overlaps(&self, pa: PhysAddr, len: u64) -> bool {
        let (a, b) = (pa.as_u64(), pa.as_u64().saturating_add(len));
        // The first area ending after `a` is the only candidate.
        let i = self.spans.partition_point(|&(_, e)| e <= a);
        self.spans.get(i).is_some_and(|&(s, _)| s < b)
    }
}

#[cfg(not(loom))]
/// Calls `f(first_bit, count)` for every maximal run of set bits in
/// `words` (Linux bitmap order), ascending. A word of zeros or of ones
/// costs one compare, so the cost is the number of words plus the number
/// of runs.
pub(crate) fn for_each_run<E>(words: &[u64], f: &mut dyn FnMut(u64, u64) -> Result<(), E>) -> Result<(), E> {
    let mut start: Option<u64> = None;
    for (w, &word) in words.iter().enumerate() {
        let base = w as u64 * 64;
        if word == 0 {
            if let Some(s) = start.take() {
                f(s, base - s)?;
            }
            continue;
        }
        if word == u64::MAX {
            start.get_or_insert(base);
            continue;
        }
        let mut bit = 0u32;
        while bit < 64 {
            let rest = word >> bit;
            if start.is_some() {
                // In a run: it ends at the next clear bit.
                let ones = (!rest).trailing_zeros().min(64 - bit);
                bit += ones;
                if bit < 64
                    && let Some(s) = start.take()
                {
                    f(s, base + u64::from(bit) - s)?;
                }
            } else {
                if rest == 0 {
                    break;
                }
                bit += rest.trailing_zeros();
                start = Some(base + u64::from(bit));
            }
        }
    }
    if let Some(s) = start {
        f(s, words.len() as u64 * 64 - s)?;
    }
    Ok(())
}

#[cfg(not(loom))]
/// Checks `count` consecutive blocks of `order` from `pa`: order within
/// `max_order`, entirely RAM, outside scratch. The run is checked as one
/// range; only if that fails are its blocks checked one by one, so the
/// error names the first bad block (a platform may also refuse one range
/// over two adjacent RAM regions that are each fine).
pub(crate) fn check_run<M: PhysMem + ?Sized>(
    mem: &M,
    scratch: &ScratchSet,
    max_order: Order,
    pa: PhysAddr,
    order: Order,
    count: u64,
) -> Result<(), TrackError> {
    let fault = |pa, fault| TrackError::Block { pa, order, fault };
    if order > max_order {
        return Err(fault(pa, BlockFault::OrderTooLarge));
    }
    let Some(block) = order.checked_bytes() else { return Err(fault(pa, BlockFault::NotRam)) };
    let whole = count.checked_mul(block).filter(|&len| pa.checked_add(len).is_some());
    if let Some(len) = whole
        && mem.is_ram(pa, len)
        && !scratch.overlaps(pa, len)
    {
        return Ok(());
    }
    for i in 0..count {
        let at = i
            .checked_mul(block)
            .and_then(|off| pa.checked_add(off))
            .ok_or(AbiError::Overflow { what: "preserved block address" })?;
        if at.checked_add(block).is_none() || !mem.is_ram(at, block) {
            return Err(fault(at, BlockFault::NotRam));
        }
        if scratch.overlaps(at, block) {
            return Err(fault(at, BlockFault::InScratch));
        }
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::vec;

    fn runs(words: &[u64]) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let _ = for_each_run::<()>(words, &mut |s, n| {
            v.push((s, n));
            Ok(())
        });
        v
    }

    /// The reference: bit by bit.
    fn runs_slow(words: &[u64]) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for b in 0..words.len() as u64 * 64 {
            if words[(b / 64) as usize] >> (b % 64) & 1 == 1 {
                match v.last_mut() {
                    Some(last) if last.0 + last.1 == b => last.1 += 1,
                    _ => v.push((b, 1)),
                }
            }
        }
        v
    }

    #[test]
    fn runs_match_bit_by_bit() {
        let cases: Vec<Vec<u64>> = vec![
            vec![0, 0],
            vec![u64::MAX, u64::MAX],
            vec![1, 1 << 63],
            vec![1 << 63, 1],
            vec![0xf0f0_0000_0000_000f, u64::MAX, 0x8000_0000_0000_0001],
            vec![0x5555_5555_5555_5555; 3],
            vec![0, u64::MAX, 0, 0x7fff_ffff_ffff_fffe],
        ];
        for c in &cases {
            assert_eq!(runs(c), runs_slow(c), "{c:x?}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let words: Vec<u64> = (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match x % 4 {
                        0 => 0,
                        1 => u64::MAX,
                        _ => x,
                    }
                })
                .collect();
            assert_eq!(runs(&words), runs_slow(&words), "{words:x?}");
        }
    }

    #[test]
    fn scratch_set_overlaps() {
        let s = ScratchSet::new(&[
            KhoScratch { addr: 0x10_0000, size: 0x1000 },
            KhoScratch { addr: 0x4000, size: 0x2000 },
            KhoScratch { addr: 0x5000, size: 0x4000 },
        ]);
        assert_eq!(s.spans, vec![(0x4000, 0x9000), (0x10_0000, 0x10_1000)]);
        assert!(!s.overlaps(PhysAddr::new(0x3000), 0x1000));
        assert!(s.overlaps(PhysAddr::new(0x3000), 0x1001));
        assert!(s.overlaps(PhysAddr::new(0x8fff), 1));
        assert!(!s.overlaps(PhysAddr::new(0x9000), 0x1000));
        assert!(s.overlaps(PhysAddr::new(0), u64::MAX));
        assert!(!s.overlaps(PhysAddr::new(0x10_1000), u64::MAX));
    }
}
