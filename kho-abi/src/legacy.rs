//! The legacy `kho-v1` preserved-memory map (kernels v6.16 to v7.0), read
//! only: a linked list of chunk pages, each listing per-order bitmap pages.
//! A bitmap page has one bit per block of its order, bit *i* standing for
//! the block at `phys_start + (i << (PAGE_SHIFT + order))`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;
use crate::geometry::{GEOMETRY, PAGE_SIZE};

/// Bitmap references in one chunk page (255 for 4 KiB pages).
pub const V1_CHUNK_ENTRIES: usize = GEOMETRY.v1_chunk_entries;

/// Header of a `kho-v1` chunk page (`khoser_mem_chunk_hdr`), 16 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 next`: PA of the next chunk, 0 = last |
/// | 8 | `u32 order`: order of every bitmap in this chunk |
/// | 12 | `u32 num_elms`: bitmap references used |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct V1ChunkHeader {
    /// PA of the next chunk page.
    pub next: u64,
    /// Order of the blocks the bitmaps describe.
    pub order: u32,
    /// Number of used entries.
    pub num_elms: u32,
}

/// One bitmap reference of a `kho-v1` chunk, 16 bytes: `phys_start` at 0,
/// the bitmap page's PA at 8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct V1BitmapRef {
    /// PA of the block that bit 0 stands for.
    pub phys_start: u64,
    /// PA of the bitmap page.
    pub bitmap: u64,
}

/// A `kho-v1` chunk page.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct V1Chunk {
    /// The header.
    pub hdr: V1ChunkHeader,
    /// The bitmap references; `hdr.num_elms` of them are used.
    pub bitmaps: [V1BitmapRef; V1_CHUNK_ENTRIES],
}

const _: () = assert!(size_of::<V1ChunkHeader>() == 16);
const _: () = assert!(size_of::<V1BitmapRef>() == 16);
const _: () = assert!(size_of::<V1Chunk>() == PAGE_SIZE);

impl V1Chunk {
    /// Validates the header: order at most `max_order`, `num_elms` within
    /// capacity. Returns the order and the used references. The `next`
    /// link is the chain walker's to check ([`crate::chain`]).
    pub fn validate(&self, max_order: Order) -> Result<(Order, &[V1BitmapRef]), AbiError> {
        let order = Order::new_at_most(u64::from(self.hdr.order), max_order, "kho-v1 chunk order")?;
        let n = self.hdr.num_elms as usize;
        if n > V1_CHUNK_ENTRIES {
            return Err(AbiError::CountTooLarge {
                what: "kho-v1 chunk num_elms",
                count: n as u64,
                max: V1_CHUNK_ENTRIES as u64,
            });
        }
        Ok((order, &self.bitmaps[..n]))
    }
}

impl V1BitmapRef {
    /// Validates a reference for blocks of `order`: `phys_start` aligned to
    /// the block size, the bitmap page non-zero and page aligned.
    pub fn validate(&self, order: Order) -> Result<(PhysAddr, PhysAddr), AbiError> {
        let start = order.require_aligned(PhysAddr::new(self.phys_start), "kho-v1 bitmap phys_start")?;
        let bitmap = PhysAddr::new(self.bitmap)
            .require_nonzero("kho-v1 bitmap PA")?
            .require_aligned("kho-v1 bitmap PA", PAGE_SIZE as u64)?;
        Ok((start, bitmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn chunk_layout_and_validation() {
        let mut c = V1Chunk::new_zeroed();
        c.hdr = V1ChunkHeader { next: 3 * PAGE_SIZE as u64, order: 2, num_elms: 1 };
        c.bitmaps[0] = V1BitmapRef { phys_start: 0x100_0000, bitmap: 4 * PAGE_SIZE as u64 };
        let b = c.as_bytes();
        assert_eq!(&b[0..8], &(3 * PAGE_SIZE as u64).to_ne_bytes());
        assert_eq!(&b[8..12], &2u32.to_ne_bytes());
        assert_eq!(&b[12..16], &1u32.to_ne_bytes());
        assert_eq!(&b[16..24], &0x100_0000u64.to_ne_bytes());
        assert_eq!(&b[24..32], &(4 * PAGE_SIZE as u64).to_ne_bytes());
        let max = Order::new(10, "t").unwrap();
        let (order, refs) = c.validate(max).unwrap();
        assert_eq!(order.get(), 2);
        assert_eq!(refs[0].validate(order).unwrap(), (PhysAddr::new(0x100_0000), PhysAddr::new(4 * PAGE_SIZE as u64)));
        c.hdr.num_elms = V1_CHUNK_ENTRIES as u32 + 1;
        assert!(matches!(c.validate(max), Err(AbiError::CountTooLarge { .. })));
        c.hdr.num_elms = 1;
        c.hdr.order = 11;
        assert!(matches!(c.validate(max), Err(AbiError::OrderTooLarge { .. })));
        c.hdr.order = 2;
        // A misaligned `next` is the chain walker's fault, not the header's.
        c.hdr.next = 3 * PAGE_SIZE as u64 + 8;
        assert!(c.validate(max).is_ok());
        assert!(V1BitmapRef { phys_start: PAGE_SIZE as u64, bitmap: 0x4_0000 }.validate(order).is_err());
        assert!(V1BitmapRef { phys_start: 0x40_0000, bitmap: 0 }.validate(order).is_err());
        assert!(V1BitmapRef { phys_start: 0x40_0000, bitmap: 0x4_0010 }.validate(order).is_err());
    }
}
