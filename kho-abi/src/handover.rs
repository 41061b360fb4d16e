//! How the next kernel finds the handover: `struct kho_data`, the scratch
//! areas, and the names in the root FDT.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::addr::PhysAddr;
use crate::error::AbiError;
use crate::geometry::PAGE_SIZE;

/// Root FDT property: PA of the preserved-memory map (8 raw native-endian
/// bytes).
pub const PROP_PRESERVED_MEMORY_MAP: &str = "preserved-memory-map";
/// Subtree property (`kho-v2` on): PA of the user's blob.
pub const PROP_PRESERVED_DATA: &str = "preserved-data";
/// Subtree property (`kho-v3` on): the blob's size in bytes.
pub const PROP_BLOB_SIZE: &str = "blob-size";
/// Subtree property of `kho-v1`: PA of the subtree's own FDT.
pub const PROP_V1_FDT: &str = "fdt";
/// x86 `setup_data` type that carries [`KhoData`] (`SETUP_KEXEC_KHO`).
pub const SETUP_KEXEC_KHO: u32 = 10;
/// ELF note name under which machine images store [`KhoData`].
pub const NOTE_NAME: &str = "KHO";
/// ELF note type under which machine images store [`KhoData`].
pub const NOTE_TYPE: u32 = 1;

/// `struct kho_data`: where the root FDT and the scratch areas are. Passed
/// to the next kernel as x86 `setup_data` of type [`SETUP_KEXEC_KHO`];
/// versioned by the root compatible (`kho-v1` to `kho-v4` share it).
///
/// | offset | field |
/// |---|---|
/// | 0 | `fdt_addr`: PA of the root FDT |
/// | 8 | `fdt_size`: its size (at most a page) |
/// | 16 | `scratch_addr`: PA of an array of [`KhoScratch`] |
/// | 24 | `scratch_size`: byte size of that array |
///
/// Packed, 32 bytes, native endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct KhoData {
    /// PA of the root FDT.
    pub fdt_addr: u64,
    /// Size of the root FDT in bytes.
    pub fdt_size: u64,
    /// PA of the scratch array.
    pub scratch_addr: u64,
    /// Size of the scratch array in bytes.
    pub scratch_size: u64,
}

const _: () = assert!(size_of::<KhoData>() == 32);

/// The facts a validated [`KhoData`] guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoverRoot {
    /// PA of the root FDT, non-zero.
    pub fdt: PhysAddr,
    /// Its size, `1..=PAGE_SIZE`.
    pub fdt_size: u64,
    /// PA of the scratch array (0 when there are no scratch areas).
    pub scratch: PhysAddr,
    /// Number of [`KhoScratch`] entries.
    pub scratch_count: u64,
}

impl KhoData {
    /// Reads a `kho_data` from the start of `bytes`.
    pub fn read_from(bytes: &[u8]) -> Result<KhoData, AbiError> {
        KhoData::read_from_prefix(bytes).map(|(d, _)| d).map_err(|_| AbiError::Short {
            what: "kho_data",
            need: size_of::<KhoData>(),
            have: bytes.len(),
        })
    }

    /// Validates the fields: the FDT PA non-zero and at most a page long
    /// without crossing a page, the scratch array a whole number of 16-byte
    /// entries, 8-byte aligned, its end not overflowing.
    pub fn validate(&self) -> Result<HandoverRoot, AbiError> {
        let fdt = PhysAddr::new(self.fdt_addr).require_nonzero("kho_data.fdt_addr")?;
        let fdt_size = self.fdt_size;
        if fdt_size == 0 || fdt_size > PAGE_SIZE as u64 {
            return Err(AbiError::InvalidValue { what: "kho_data.fdt_size", value: fdt_size });
        }
        if fdt.page_offset() + fdt_size > PAGE_SIZE as u64 {
            return Err(AbiError::Misaligned { what: "kho_data.fdt_addr", pa: fdt, align: PAGE_SIZE as u64 });
        }
        let scratch = PhysAddr::new(self.scratch_addr);
        let scratch_size = self.scratch_size;
        if !scratch_size.is_multiple_of(size_of::<KhoScratch>() as u64) {
            return Err(AbiError::InvalidValue { what: "kho_data.scratch_size", value: scratch_size });
        }
        if scratch_size != 0 {
            scratch.require_nonzero("kho_data.scratch_addr")?;
            scratch.require_aligned("kho_data.scratch_addr", 8)?;
            scratch
                .checked_add(scratch_size)
                .ok_or(AbiError::Overflow { what: "kho_data.scratch_addr + scratch_size" })?;
        }
        Ok(HandoverRoot { fdt, fdt_size, scratch, scratch_count: scratch_size / size_of::<KhoScratch>() as u64 })
    }
}

/// `struct kho_scratch`: one range the next kernel may allocate from before
/// it has walked the preserved-memory map. 16 bytes: `addr` at 0, `size` at
/// 8, native endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct KhoScratch {
    /// PA of the area.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
}

const _: () = assert!(size_of::<KhoScratch>() == 16);

impl KhoScratch {
    /// Validates one entry: page-aligned non-zero start, non-zero whole-page
    /// size, end not overflowing. Returns `(start, end)`.
    pub fn validate(&self) -> Result<(PhysAddr, PhysAddr), AbiError> {
        let start = PhysAddr::new(self.addr).require_nonzero("kho_scratch.addr")?;
        start.require_aligned("kho_scratch.addr", PAGE_SIZE as u64)?;
        if self.size == 0 || !self.size.is_multiple_of(PAGE_SIZE as u64) {
            return Err(AbiError::InvalidValue { what: "kho_scratch.size", value: self.size });
        }
        let end = start.checked_add(self.size).ok_or(AbiError::Overflow { what: "kho_scratch.addr + size" })?;
        Ok((start, end))
    }

    /// Whether `[pa, pa + len)` overlaps this area.
    pub fn overlaps(&self, pa: PhysAddr, len: u64) -> bool {
        let (a0, a1) = (self.addr, self.addr.saturating_add(self.size));
        let (b0, b1) = (pa.as_u64(), pa.as_u64().saturating_add(len));
        a0 < b1 && b0 < a1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kho_data_layout() {
        let d = KhoData { fdt_addr: 0x1122334455667788, fdt_size: 0x1000, scratch_addr: 0xa000, scratch_size: 32 };
        let b = d.as_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[0..8], &0x1122334455667788u64.to_ne_bytes());
        assert_eq!(&b[8..16], &0x1000u64.to_ne_bytes());
        assert_eq!(&b[16..24], &0xa000u64.to_ne_bytes());
        assert_eq!(&b[24..32], &32u64.to_ne_bytes());
        assert_eq!(KhoData::read_from(b).unwrap(), d);
        // Unaligned reads work: the struct is packed.
        let mut buf = [0u8; 33];
        buf[1..].copy_from_slice(b);
        assert_eq!(KhoData::read_from(&buf[1..]).unwrap(), d);
    }

    #[test]
    fn kho_data_rejects() {
        let ok = KhoData { fdt_addr: 0x1000, fdt_size: 0x1000, scratch_addr: 0x8000, scratch_size: 16 };
        assert_eq!(ok.validate().unwrap().scratch_count, 1);
        assert!(matches!(KhoData::read_from(&[0; 31]), Err(AbiError::Short { need: 32, have: 31, .. })));
        let bad = |f: fn(&mut KhoData)| {
            let mut d = ok;
            f(&mut d);
            d.validate().unwrap_err()
        };
        assert_eq!(bad(|d| d.fdt_addr = 0), AbiError::ZeroAddress { what: "kho_data.fdt_addr" });
        assert!(matches!(bad(|d| d.fdt_size = 0), AbiError::InvalidValue { what: "kho_data.fdt_size", value: 0 }));
        assert!(matches!(bad(|d| d.fdt_size = PAGE_SIZE as u64 + 1), AbiError::InvalidValue { .. }));
        assert!(matches!(
            bad(|d| {
                d.fdt_addr = PAGE_SIZE as u64 * 3 / 2;
                d.fdt_size = PAGE_SIZE as u64;
            }),
            AbiError::Misaligned { .. }
        ));
        assert!(matches!(bad(|d| d.scratch_size = 15), AbiError::InvalidValue { what: "kho_data.scratch_size", .. }));
        assert!(matches!(bad(|d| d.scratch_addr = 0), AbiError::ZeroAddress { .. }));
        assert!(matches!(bad(|d| d.scratch_addr = 0x8004), AbiError::Misaligned { .. }));
        assert!(matches!(bad(|d| d.scratch_addr = u64::MAX - 7), AbiError::Overflow { .. }));
    }

    #[test]
    fn scratch_layout_and_rules() {
        let s = KhoScratch { addr: 0x8080_0000, size: 0x40_0000 };
        assert_eq!(&s.as_bytes()[0..8], &0x8080_0000u64.to_ne_bytes());
        assert_eq!(&s.as_bytes()[8..16], &0x40_0000u64.to_ne_bytes());
        assert!(s.validate().is_ok());
        assert!(s.overlaps(PhysAddr::new(0x80bf_f000), 0x1000));
        assert!(!s.overlaps(PhysAddr::new(0x80c0_0000), 0x1000));
        assert!(!s.overlaps(PhysAddr::new(0x807f_f000), 0x1000));
        assert!(KhoScratch { addr: 0, size: 0x1000 }.validate().is_err());
        assert!(KhoScratch { addr: 0x1800, size: 0x1000 }.validate().is_err());
        assert!(KhoScratch { addr: PAGE_SIZE as u64, size: 0 }.validate().is_err());
        assert!(KhoScratch { addr: PAGE_SIZE as u64, size: 0x800 }.validate().is_err());
        assert!(KhoScratch { addr: !(PAGE_SIZE as u64 - 1), size: 2 * PAGE_SIZE as u64 }.validate().is_err());
    }
}
