//! vmalloc area preservation (`vmalloc-v1`): the descriptor a user embeds in
//! its own preserved data and the chunk pages listing the area's blocks.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;
use crate::geometry::{GEOMETRY, PAGE_SIZE};

/// Compatible string of the vmalloc format.
pub const VMALLOC_V1: &str = "vmalloc-v1";

/// Entries in one chunk page after its `next` link (511 for 4 KiB pages).
pub const VMALLOC_CHUNK_ENTRIES: usize = GEOMETRY.vmalloc_chunk_entries;

/// Flags of a preserved vmalloc area (`kho_vmalloc.flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct VmallocFlags(u16);

bitflags::bitflags! {
    impl VmallocFlags: u16 {
        /// The area was allocated by vmalloc (`VM_ALLOC`).
        const ALLOC = 0x1;
        /// The area is mapped with huge pages (`VM_ALLOW_HUGE_VMAP`).
        const HUGE_VMAP = 0x2;
    }
}

/// `struct kho_vmalloc`: the descriptor of a preserved vmalloc area,
/// versioned by [`VMALLOC_V1`]. 16 bytes, 8-aligned, not packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 first`: PA of the first [`VmallocChunk`], 0 = none |
/// | 8 | `u32 total_pages`: pages in the area |
/// | 12 | `u16 flags`: [`VmallocFlags`] |
/// | 14 | `u16 order`: every block is `2^order` pages |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct KhoVmalloc {
    /// PA of the first chunk page, 0 if the area is empty.
    pub first: u64,
    /// Number of pages in the area.
    pub total_pages: u32,
    /// Raw [`VmallocFlags`] bits.
    pub flags: u16,
    /// Order of every block.
    pub order: u16,
}

const _: () = assert!(size_of::<KhoVmalloc>() == 16);
const _: () = assert!(align_of::<KhoVmalloc>() == 8);

/// The facts a validated [`KhoVmalloc`] guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmallocDesc {
    /// First chunk page (page aligned), or null for an empty area.
    pub first: Option<PhysAddr>,
    /// Pages in the area.
    pub total_pages: u32,
    /// Known flags only.
    pub flags: VmallocFlags,
    /// Block order, at most the platform maximum.
    pub order: Order,
}

impl KhoVmalloc {
    /// Validates the descriptor against the platform's largest order:
    /// unknown flag bits fail with `UnsupportedFlags` (`EOPNOTSUPP`), an
    /// order above `max_order` with `OrderTooLarge`, a misaligned `first`
    /// with `Misaligned`, a `total_pages` that is not a whole number of
    /// blocks, or an empty chain with pages (or the reverse), with
    /// `InvalidValue`.
    pub fn validate(&self, max_order: Order) -> Result<VmallocDesc, AbiError> {
        let flags = VmallocFlags::from_bits(self.flags)
            .ok_or(AbiError::UnsupportedFlags { what: "kho_vmalloc.flags", flags: u64::from(self.flags) })?;
        let order = Order::new_at_most(u64::from(self.order), max_order, "kho_vmalloc.order")?;
        let first = PhysAddr::new(self.first);
        if (first.is_null()) != (self.total_pages == 0) {
            return Err(AbiError::InvalidValue { what: "kho_vmalloc.total_pages", value: u64::from(self.total_pages) });
        }
        if u64::from(self.total_pages) % order.pages() != 0 {
            return Err(AbiError::InvalidValue { what: "kho_vmalloc.total_pages", value: u64::from(self.total_pages) });
        }
        let first =
            if first.is_null() { None } else { Some(first.require_aligned("kho_vmalloc.first", PAGE_SIZE as u64)?) };
        Ok(VmallocDesc { first, total_pages: self.total_pages, flags, order })
    }
}

/// A vmalloc chunk page: a link to the next chunk and one PA per block,
/// zero-terminated when the chunk is not full. Every chunk page is itself
/// preserved at order 0.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 next`: PA of the next chunk, 0 = last |
/// | 8 | `u64 phys[VMALLOC_CHUNK_ENTRIES]`: block PAs |
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VmallocChunk {
    /// PA of the next chunk page, 0 for the last.
    pub next: u64,
    /// Block PAs; 0 ends the list early.
    pub phys: [u64; VMALLOC_CHUNK_ENTRIES],
}

const _: () = assert!(size_of::<VmallocChunk>() == PAGE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn o(n: u64) -> Order {
        Order::new(n, "t").unwrap()
    }

    #[test]
    fn descriptor_layout() {
        let d = KhoVmalloc { first: 0x1122_3344_5566_7000, total_pages: 0xaabbccdd, flags: 0x3, order: 0x0102 };
        let b = d.as_bytes();
        assert_eq!(&b[0..8], &0x1122_3344_5566_7000u64.to_ne_bytes());
        assert_eq!(&b[8..12], &0xaabbccddu32.to_ne_bytes());
        assert_eq!(&b[12..14], &3u16.to_ne_bytes());
        assert_eq!(&b[14..16], &0x0102u16.to_ne_bytes());
        assert_eq!(KhoVmalloc::read_from_bytes(b).unwrap(), d);
    }

    #[test]
    fn chunk_layout() {
        let mut c = VmallocChunk::new_zeroed();
        c.next = 0x5000;
        c.phys[0] = 0x6000;
        c.phys[VMALLOC_CHUNK_ENTRIES - 1] = 0x7000;
        let b = c.as_bytes();
        assert_eq!(&b[0..8], &0x5000u64.to_ne_bytes());
        assert_eq!(&b[8..16], &0x6000u64.to_ne_bytes());
        assert_eq!(&b[PAGE_SIZE - 8..], &0x7000u64.to_ne_bytes());
    }

    #[test]
    fn descriptor_validation() {
        let max = o(10);
        let ok = KhoVmalloc { first: 0x10000, total_pages: 4, flags: 1, order: 1 };
        let v = ok.validate(max).unwrap();
        assert_eq!(v.order, o(1));
        assert_eq!(v.flags, VmallocFlags::ALLOC);
        assert_eq!(v.first, Some(PhysAddr::new(0x10000)));
        let empty = KhoVmalloc { first: 0, total_pages: 0, flags: 0, order: 0 };
        assert_eq!(empty.validate(max).unwrap().first, None);
        let bad = |f: fn(&mut KhoVmalloc)| {
            let mut d = ok;
            f(&mut d);
            d.validate(max).unwrap_err()
        };
        assert_eq!(bad(|d| d.flags = 4), AbiError::UnsupportedFlags { what: "kho_vmalloc.flags", flags: 4 });
        assert_eq!(bad(|d| d.order = 11), AbiError::OrderTooLarge { what: "kho_vmalloc.order", order: 11, max: 10 });
        assert!(matches!(bad(|d| d.order = u16::MAX), AbiError::OrderTooLarge { .. }));
        assert!(matches!(bad(|d| d.first = 0x10008), AbiError::Misaligned { what: "kho_vmalloc.first", .. }));
        assert!(matches!(bad(|d| d.total_pages = 3), AbiError::InvalidValue { what: "kho_vmalloc.total_pages", .. }));
        assert!(matches!(bad(|d| d.total_pages = 0), AbiError::InvalidValue { .. }));
        assert!(matches!(bad(|d| d.first = 0), AbiError::InvalidValue { .. }));
    }
}
