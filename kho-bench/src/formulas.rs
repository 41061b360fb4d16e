//! Metadata cost by formula for formats kho does not write: the legacy
//! `kho-v1` bitmap map, a plain sorted range list, and the kernel RFC's
//! array layout.

use kho_abi::{GEOMETRY, PAGE_SIZE};

/// Orders a block may have (a key can encode up to `64 - PAGE_SHIFT`).
const ORDERS: usize = 64;

/// Bytes of one range-list entry: `(start, size, info)` as three `u64`.
pub const RANGE_ENTRY_BYTES: u64 = 24;

/// Slots of one page in the kernel RFC's array layout: a 4 KiB page is
/// `{next, startpos, entries[510]}`.
pub const RFC_SLOTS: u64 = (PAGE_SIZE as u64 - 16) / 8;

/// Per-order state of [`MapCosts`].
#[derive(Clone, Copy, Debug, Default)]
struct OrderState {
    /// Bitmap pages of this order counted so far.
    bitmaps: u64,
    /// The bitmap window of the last block of this order.
    window: Option<u64>,
    /// One past the last byte of the last block of this order.
    run_end: Option<u64>,
}

/// Accumulates the cost of a preserved set in the legacy `kho-v1` format and
/// as a range list, block by block.
///
/// Blocks must come in ascending PA within each order (orders may
/// interleave); the radix walk's order (by order, then by PA) is one such
/// order.
///
/// - `kho-v1` (ABI.md section 6, `kho_track::legacy`): one bitmap page per
///   order and window of `PAGE_SIZE * 8` blocks of that order that holds at
///   least one block, the windows aligned to their own size; chunk pages
///   list the bitmaps of one order each, [`GEOMETRY`]`.v1_chunk_entries`
///   (255 for 4 KiB pages) per chunk. Cost: (bitmaps + chunks) pages.
/// - Range list: one 24-byte `(start, size, info)` entry per maximal run of
///   PA-contiguous blocks of the same order (the order lives in `info`).
///   Cost: entries × 24 bytes, not rounded up to pages.
#[derive(Clone, Debug)]
pub struct MapCosts {
    orders: [OrderState; ORDERS],
    blocks: u64,
    ranges: u64,
}

impl Default for MapCosts {
    fn default() -> Self {
        MapCosts { orders: [OrderState::default(); ORDERS], blocks: 0, ranges: 0 }
    }
}

impl MapCosts {
    /// Adds the block of `2^order` pages at `pa`.
    ///
    /// # Panics
    ///
    /// If `order` is 64 or more.
    pub fn add(&mut self, pa: u64, order: u32) {
        let s = &mut self.orders[order as usize];
        let shift = GEOMETRY.page_shift + order;
        let window = (pa >> shift) >> GEOMETRY.bitmap_bits;
        if s.window != Some(window) {
            debug_assert!(s.window.is_none_or(|w| w < window), "blocks of one order must ascend");
            s.bitmaps += 1;
            s.window = Some(window);
        }
        if s.run_end != Some(pa) {
            self.ranges += 1;
        }
        s.run_end = Some(pa + (1u64 << shift));
        self.blocks += 1;
    }

    /// Blocks added.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Range-list entries.
    pub fn ranges(&self) -> u64 {
        self.ranges
    }

    /// Bitmap pages of the `kho-v1` map.
    pub fn v1_bitmaps(&self) -> u64 {
        self.orders.iter().map(|s| s.bitmaps).sum()
    }

    /// Chunk pages of the `kho-v1` map.
    pub fn v1_chunks(&self) -> u64 {
        self.orders.iter().map(|s| s.bitmaps.div_ceil(GEOMETRY.v1_chunk_entries as u64)).sum()
    }

    /// Bytes of the `kho-v1` map: bitmap and chunk pages.
    pub fn v1_bytes(&self) -> u64 {
        (self.v1_bitmaps() + self.v1_chunks()) * PAGE_SIZE as u64
    }

    /// Bytes of the range list.
    pub fn range_list_bytes(&self) -> u64 {
        self.ranges * RANGE_ENTRY_BYTES
    }
}

/// Pages the kernel RFC's array layout needs for entries at `positions`
/// (ascending): a page covers [`RFC_SLOTS`] consecutive slots starting at
/// the first entry it holds.
pub fn rfc_array_pages(positions: impl IntoIterator<Item = u64>) -> u64 {
    let mut pages = 0;
    // The last slot of the current page.
    let mut last: Option<u64> = None;
    for pos in positions {
        if last.is_none_or(|l| pos > l) {
            pages += 1;
            last = Some(pos.saturating_add(RFC_SLOTS - 1));
        }
    }
    pages
}

/// Bytes of the kernel RFC's array layout for `positions`: pages × 4096.
pub fn rfc_array_bytes(positions: impl IntoIterator<Item = u64>) -> u64 {
    rfc_array_pages(positions) * PAGE_SIZE as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = PAGE_SIZE as u64;

    fn costs(blocks: &[(u64, u32)]) -> MapCosts {
        let mut c = MapCosts::default();
        for &(pa, o) in blocks {
            c.add(pa, o);
        }
        c
    }

    #[test]
    fn constants_for_4k_pages() {
        if PAGE_SIZE != 4096 {
            return;
        }
        assert_eq!(RFC_SLOTS, 510);
        assert_eq!(GEOMETRY.v1_chunk_entries, 255);
        assert_eq!(GEOMETRY.bitmap_bits, 15);
    }

    #[test]
    fn one_block_costs_one_bitmap_one_chunk_one_entry() {
        let c = costs(&[(0x1_0000_0000, 0)]);
        assert_eq!((c.blocks(), c.ranges(), c.v1_bitmaps(), c.v1_chunks()), (1, 1, 1, 1));
        assert_eq!(c.v1_bytes(), 2 * PAGE);
        assert_eq!(c.range_list_bytes(), 24);
    }

    #[test]
    fn hand_computed_mixed_case() {
        // 4 KiB pages: an order-0 bitmap covers 32768 pages = 128 MiB, an
        // order-9 bitmap 32768 × 2 MiB = 64 GiB.
        //
        // Order 9 (walked first, as the radix walk does): two adjacent 2 MiB
        // blocks at 4 GiB (one run), one at 8 GiB (a second run, same
        // 64 GiB window) -> 1 bitmap, 2 entries.
        // Order 0: pages 0..3 at 4 GiB + 4 MiB (one run, window 32 of
        // 128 MiB), a page at 4 GiB + 128 MiB (window 33, new run), and a
        // page right after it (same run) -> 2 bitmaps, 2 entries.
        // Chunks: one per order -> 2. v1: (3 + 2) pages; list: 4 entries.
        let g = 1u64 << 30;
        let m2 = 2u64 << 20;
        let mut blocks = vec![(4 * g, 9), (4 * g + m2, 9), (8 * g, 9)];
        blocks.extend((0..4).map(|i| (4 * g + 2 * m2 + i * PAGE, 0)));
        blocks.push((4 * g + (128 << 20), 0));
        blocks.push((4 * g + (128 << 20) + PAGE, 0));
        let c = costs(&blocks);
        assert_eq!(c.blocks(), 9);
        assert_eq!(c.v1_bitmaps(), 3);
        assert_eq!(c.v1_chunks(), 2);
        assert_eq!(c.v1_bytes(), 5 * PAGE);
        assert_eq!(c.ranges(), 4);
        assert_eq!(c.range_list_bytes(), 96);
    }

    #[test]
    fn adjacent_blocks_of_different_orders_are_separate_entries() {
        // An order-1 block right after an order-0 page: contiguous in PA but
        // not the same order, so two entries; both in window 0 of their
        // order, so one bitmap each.
        let c = costs(&[(0x2000, 1), (0x1000, 0)]);
        assert_eq!(c.ranges(), 2);
        assert_eq!(c.v1_bitmaps(), 2);
        // Interleaved orders keep their own runs.
        let c = costs(&[(0x0, 0), (0x2000, 1), (0x1000, 0)]);
        assert_eq!(c.ranges(), 2);
    }

    #[test]
    fn chunk_pages_fill_up() {
        // One page in every 128 MiB: one bitmap each. 256 bitmaps of one
        // order need two chunk pages (255 per chunk for 4 KiB pages).
        let per = GEOMETRY.v1_chunk_entries as u64;
        let window = PAGE << GEOMETRY.bitmap_bits;
        let c = costs(&(0..=per).map(|i| (i * window, 0)).collect::<Vec<_>>());
        assert_eq!(c.v1_bitmaps(), per + 1);
        assert_eq!(c.v1_chunks(), 2);
        assert_eq!(c.ranges(), per + 1);
        let c = costs(&(0..per).map(|i| (i * window, 0)).collect::<Vec<_>>());
        assert_eq!(c.v1_chunks(), 1);
    }

    #[test]
    fn a_full_window_is_one_bitmap_and_one_entry() {
        let n = 1u64 << GEOMETRY.bitmap_bits;
        let c = costs(&(0..n).map(|i| (i * PAGE, 0)).collect::<Vec<_>>());
        assert_eq!((c.v1_bitmaps(), c.v1_chunks(), c.ranges()), (1, 1, 1));
        // One more page opens the next window.
        let c = costs(&(0..=n).map(|i| (i * PAGE, 0)).collect::<Vec<_>>());
        assert_eq!((c.v1_bitmaps(), c.v1_chunks(), c.ranges()), (2, 1, 1));
    }

    #[test]
    fn rfc_pages_by_hand() {
        assert_eq!(rfc_array_pages([]), 0);
        // 0..509 fit one page; 510 opens the second.
        assert_eq!(rfc_array_pages(0..510), 1);
        assert_eq!(rfc_array_pages(0..511), 2);
        // Isolated entries: a page each.
        assert_eq!(rfc_array_pages([0, 1000, 2000]), 3);
        // A page starts at its first entry, not at a multiple of 510:
        // 5 and 514 share a page (514 < 5 + 510), 515 does not.
        assert_eq!(rfc_array_pages([5, 514]), 1);
        assert_eq!(rfc_array_pages([5, 515]), 2);
        // No overflow at the top of the position space.
        assert_eq!(rfc_array_pages([u64::MAX - 1, u64::MAX]), 1);
        assert_eq!(rfc_array_bytes([7, 1 << 40]), 2 * PAGE);
    }
}
