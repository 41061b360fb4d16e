//! Page geometry and the radix tree geometry derived from it.
//!
//! The page shift is chosen at build time: 4 KiB pages by default, 16 KiB
//! with the `page-16k` feature and 64 KiB with `page-64k` (the sizes arm64
//! kernels are built with). Everything else — the radix table fan-out, the
//! leaf bitmap width, the tree depth, chunk capacities — is computed from the
//! shift by [`Geometry`], never written down as a separate number, so the
//! same code serves every page size and the computation itself is tested for
//! each of them.

#[cfg(all(feature = "page-16k", feature = "page-64k"))]
compile_error!("features `page-16k` and `page-64k` are mutually exclusive");

/// log2 of the page size this build was configured for.
#[cfg(feature = "page-64k")]
pub const PAGE_SHIFT: u32 = 16;
/// log2 of the page size this build was configured for.
#[cfg(all(feature = "page-16k", not(feature = "page-64k")))]
pub const PAGE_SHIFT: u32 = 14;
/// log2 of the page size this build was configured for.
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
pub const PAGE_SHIFT: u32 = 12;

/// The geometry of this build (see [`Geometry::new`]).
pub const GEOMETRY: Geometry = Geometry::new(PAGE_SHIFT);

/// Size of a page in bytes.
pub const PAGE_SIZE: usize = GEOMETRY.page_size;

/// Number of `u64` slots in one radix table page.
pub const TABLE_ENTRIES: usize = GEOMETRY.table_entries;

/// Number of 64-bit words in one radix leaf page.
pub const LEAF_WORDS: usize = PAGE_SIZE / 8;

/// Layout facts that follow from one page shift.
///
/// `Geometry::new(12)` is the kernel's 4 KiB geometry: 512-entry tables,
/// 32768-bit leaves, depth 6, 53-bit keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the page size.
    pub page_shift: u32,
    /// Page size in bytes.
    pub page_size: usize,
    /// log2 of the number of slots in a radix table (`page_shift - 3`).
    pub table_bits: u32,
    /// Number of slots in a radix table.
    pub table_entries: usize,
    /// log2 of the number of bits in a radix leaf (`page_shift + 3`).
    pub bitmap_bits: u32,
    /// Number of bits in a radix leaf.
    pub bitmap_len: usize,
    /// The widest key the tree may hold, in bits (`64 - page_shift + 1`):
    /// the order-0 key of the highest page frame sets exactly this bit count.
    pub key_bits: u32,
    /// Largest order a key can encode (`64 - page_shift`); its order bit is
    /// bit 0.
    pub max_key_order: u32,
    /// Number of levels, the leaf included: the root is at level
    /// `depth - 1`, the leaf at level 0.
    pub depth: u32,
    /// Entries of a vmalloc chunk page after its `next` link.
    pub vmalloc_chunk_entries: usize,
    /// Bitmap references in a legacy kho-v1 chunk page after its header.
    pub v1_chunk_entries: usize,
}

impl Geometry {
    /// Computes the geometry for pages of `1 << page_shift` bytes.
    ///
    /// # Panics
    ///
    /// At compile time (it is only used in constants) if `page_shift` is not
    /// in `12..=16`, the range of page sizes Linux supports on LP64.
    pub const fn new(page_shift: u32) -> Self {
        assert!(page_shift >= 12 && page_shift <= 16, "unsupported page shift");
        let page_size = 1usize << page_shift;
        let table_bits = page_shift - 3;
        let bitmap_bits = page_shift + 3;
        let key_bits = 64 - page_shift + 1;
        // Bits above the leaf index that tables must resolve, rounded up to
        // whole tables, plus the leaf level itself.
        let table_levels = (key_bits - bitmap_bits).div_ceil(table_bits);
        Geometry {
            page_shift,
            page_size,
            table_bits,
            table_entries: 1 << table_bits,
            bitmap_bits,
            bitmap_len: 1 << bitmap_bits,
            key_bits,
            max_key_order: 64 - page_shift,
            depth: table_levels + 1,
            vmalloc_chunk_entries: page_size / 8 - 1,
            v1_chunk_entries: (page_size - 16) / 16,
        }
    }

    /// Level of the root table (`depth - 1`).
    pub const fn root_level(&self) -> u32 {
        self.depth - 1
    }

    /// Bit position in a key where the index for table `level` (1 = the
    /// table just above the leaves) starts.
    pub const fn level_shift(&self, level: u32) -> u32 {
        self.bitmap_bits + self.table_bits * (level - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_kib_matches_the_kernel() {
        let g = Geometry::new(12);
        assert_eq!(g.page_size, 4096);
        assert_eq!(g.table_entries, 512);
        assert_eq!(g.bitmap_len, 32768);
        assert_eq!(g.bitmap_bits, 15);
        assert_eq!(g.key_bits, 53);
        assert_eq!(g.depth, 6);
        assert_eq!(g.root_level(), 5);
        assert_eq!(g.level_shift(1), 15);
        assert_eq!(g.level_shift(5), 51);
        assert_eq!(g.vmalloc_chunk_entries, 511);
        assert_eq!(g.v1_chunk_entries, 255);
    }

    #[test]
    fn sixty_four_kib() {
        let g = Geometry::new(16);
        assert_eq!(g.table_entries, 8192);
        assert_eq!(g.bitmap_len, 1 << 19);
        assert_eq!(g.key_bits, 49);
        // 49 - 19 = 30 bits of tables at 13 bits each: 3 tables + leaf.
        assert_eq!(g.depth, 4);
        assert_eq!(g.vmalloc_chunk_entries, 8191);
    }

    #[test]
    fn every_geometry_covers_the_whole_key() {
        for shift in 12..=16 {
            let g = Geometry::new(shift);
            let covered = g.bitmap_bits + g.table_bits * (g.depth - 1);
            assert!(covered >= g.key_bits, "shift {shift}");
            assert!(covered - g.key_bits < g.table_bits, "shift {shift}: one table too many");
        }
    }

    #[test]
    fn build_geometry_is_consistent() {
        assert_eq!(PAGE_SIZE, 1 << PAGE_SHIFT);
        assert_eq!(TABLE_ENTRIES * 8, PAGE_SIZE);
        assert_eq!(LEAF_WORDS * 64, GEOMETRY.bitmap_len);
    }
}
