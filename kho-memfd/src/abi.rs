//! The `memfd-v2` wire layouts: packed, native-endian.

use kho_abi::KhoVmalloc;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Compatible string of the memfd file handler (a LUO file's
/// `compatible`).
pub const MEMFD_V2: &str = "memfd-v2";

/// `F_SEAL_SEAL`.
pub const F_SEAL_SEAL: u32 = 0x0001;
/// `F_SEAL_SHRINK`.
pub const F_SEAL_SHRINK: u32 = 0x0002;
/// `F_SEAL_GROW`.
pub const F_SEAL_GROW: u32 = 0x0004;
/// `F_SEAL_WRITE`.
pub const F_SEAL_WRITE: u32 = 0x0008;
/// `F_SEAL_FUTURE_WRITE`.
pub const F_SEAL_FUTURE_WRITE: u32 = 0x0010;
/// `F_SEAL_EXEC`.
pub const F_SEAL_EXEC: u32 = 0x0020;
/// Every seal `memfd-v2` may carry; any other bit is refused.
pub const ALL_SEALS: u32 = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

/// Descriptor flags `memfd-v2` defines: none, so `flags` must be 0.
pub const ALL_FLAGS: u32 = 0;

/// Folio flag: the folio holds data written by the user.
pub const FOLIO_DIRTY: u16 = 1 << 0;
/// Folio flag: the folio was zeroed (shmem's "up to date").
pub const FOLIO_UPTODATE: u16 = 1 << 1;
/// Every folio flag `memfd-v2` defines.
pub const FOLIO_ALL_FLAGS: u16 = FOLIO_DIRTY | FOLIO_UPTODATE;

/// Bits of a folio entry's first word that hold the pfn.
pub const PFN_BITS: u32 = 52;
/// Mask of the pfn in a folio entry's first word.
pub const PFN_MASK: u64 = (1 << PFN_BITS) - 1;

/// The memfd descriptor (`struct memfd_luo_ser`) a LUO file entry's `data`
/// points at: 48 bytes, packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 pos`: file position |
/// | 8 | `u64 size`: file size in bytes |
/// | 16 | `u32 seals`: `F_SEAL_*`, within [`ALL_SEALS`] |
/// | 20 | `u32 flags`: 0 (no flag defined) |
/// | 24 | `u64 nr_folios`: entries in the folio list |
/// | 32 | `struct kho_vmalloc folios` (16 bytes): the folio list, a `vmalloc-v1` area |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct MemfdSer {
    /// File position.
    pub pos: u64,
    /// File size in bytes.
    pub size: u64,
    /// Seals.
    pub seals: u32,
    /// Flags (must be 0).
    pub flags: u32,
    /// Entries in the folio list.
    pub nr_folios: u64,
    /// `kho_vmalloc.first`.
    pub folios_first: u64,
    /// `kho_vmalloc.total_pages`.
    pub folios_total_pages: u32,
    /// `kho_vmalloc.flags`.
    pub folios_flags: u16,
    /// `kho_vmalloc.order`.
    pub folios_order: u16,
}

impl MemfdSer {
    /// The folio list's `kho_vmalloc` descriptor.
    pub fn folios(&self) -> KhoVmalloc {
        KhoVmalloc {
            first: self.folios_first,
            total_pages: self.folios_total_pages,
            flags: self.folios_flags,
            order: self.folios_order,
        }
    }

    /// Stores `v` as the folio list's descriptor.
    pub fn set_folios(&mut self, v: &KhoVmalloc) {
        self.folios_first = v.first;
        self.folios_total_pages = v.total_pages;
        self.folios_flags = v.flags;
        self.folios_order = v.order;
    }
}

/// A folio entry (`struct memfd_luo_folio_ser`), 16 bytes, packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64`: pfn in bits 0..=51, flags in bits 52..=63 |
/// | 8 | `u64 index`: the folio's page offset in the file |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct FolioSer {
    /// pfn (bits 0..=51) and flags (bits 52..=63).
    pub pfn_flags: u64,
    /// Page offset in the file.
    pub index: u64,
}

impl FolioSer {
    /// Packs a pfn (at most 52 bits) and flags (at most 12 bits).
    pub const fn new(pfn: u64, flags: u16, index: u64) -> FolioSer {
        FolioSer { pfn_flags: (pfn & PFN_MASK) | ((flags as u64 & 0xfff) << PFN_BITS), index }
    }

    /// The pfn.
    pub const fn pfn(&self) -> u64 {
        self.pfn_flags & PFN_MASK
    }

    /// The flag bits (12 of them).
    pub const fn flags(&self) -> u16 {
        (self.pfn_flags >> PFN_BITS) as u16
    }
}

const _: () = assert!(size_of::<MemfdSer>() == 48);
const _: () = assert!(core::mem::offset_of!(MemfdSer, seals) == 16);
const _: () = assert!(core::mem::offset_of!(MemfdSer, flags) == 20);
const _: () = assert!(core::mem::offset_of!(MemfdSer, nr_folios) == 24);
const _: () = assert!(core::mem::offset_of!(MemfdSer, folios_first) == 32);
const _: () = assert!(core::mem::offset_of!(MemfdSer, folios_order) == 46);
const _: () = assert!(size_of::<FolioSer>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folio_entry_bit_split() {
        let f = FolioSer::new(0x000f_ffff_ffff_ffff, 0x3, 7);
        assert_eq!({ f.pfn_flags }, 0x003f_ffff_ffff_ffff);
        assert_eq!((f.pfn(), f.flags(), { f.index }), (PFN_MASK, 3, 7));
        let f = FolioSer { pfn_flags: 0xfff0_0000_0001_2345, index: 0 };
        assert_eq!((f.pfn(), f.flags()), (0x1_2345, 0xfff));
        assert_eq!(&FolioSer::new(0x12345, 1, 2).as_bytes()[..8], &0x0010_0000_0001_2345u64.to_ne_bytes());
    }

    #[test]
    fn descriptor_layout() {
        let mut d = MemfdSer { pos: 1, size: 2, seals: 3, flags: 0, nr_folios: 5, ..Default::default() };
        d.set_folios(&KhoVmalloc { first: 0x6000, total_pages: 7, flags: 1, order: 0 });
        let b = d.as_bytes();
        assert_eq!(&b[16..20], &3u32.to_ne_bytes());
        assert_eq!(&b[24..32], &5u64.to_ne_bytes());
        assert_eq!(&b[32..40], &0x6000u64.to_ne_bytes());
        assert_eq!(&b[40..44], &7u32.to_ne_bytes());
        assert_eq!(&b[44..46], &1u16.to_ne_bytes());
        assert_eq!(d.folios().first, 0x6000);
    }
}
