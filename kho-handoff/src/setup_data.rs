//! x86: `struct kho_data` as `setup_data` of type `SETUP_KEXEC_KHO`.
//!
//! The x86 boot protocol chains `setup_data` entries from
//! `boot_params.hdr.setup_data`: a 16-byte header, then `len` bytes of
//! payload. KHO's entry has type [`SETUP_KEXEC_KHO`] (10) and carries a
//! packed 32-byte `struct kho_data`:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 next`: PA of the next entry, 0 for the last |
//! | 8 | `u32 type`: 10 |
//! | 12 | `u32 len`: 32, the payload's size |
//! | 16 | `u64 fdt_addr` |
//! | 24 | `u64 fdt_size` |
//! | 32 | `u64 scratch_addr` |
//! | 40 | `u64 scratch_size` |
//!
//! All native-endian (little-endian on x86).

use kho_abi::{KhoData, PhysAddr, PhysMem, read_phys};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use kho_abi::handover::SETUP_KEXEC_KHO;

use crate::HandoffError;

/// The header of every `setup_data` entry: 16 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | `next`: PA of the next entry, 0 for the last |
/// | 8 | `type`: what the payload is |
/// | 12 | `len`: payload bytes after the header |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SetupDataHeader {
    /// PA of the next entry, 0 for the last.
    pub next: u64,
    /// The payload's type (`SETUP_KEXEC_KHO` for KHO).
    pub kind: u32,
    /// Bytes of payload after the header.
    pub len: u32,
}

const _: () = assert!(size_of::<SetupDataHeader>() == 16);
const _: () = assert!(core::mem::offset_of!(SetupDataHeader, kind) == 8);
const _: () = assert!(core::mem::offset_of!(SetupDataHeader, len) == 12);

/// Bytes of a `setup_data` header.
pub const SETUP_DATA_HEADER_LEN: usize = size_of::<SetupDataHeader>();
/// Bytes of KHO's whole `setup_data` entry: header and `struct kho_data`.
pub const SETUP_KHO_LEN: usize = SETUP_DATA_HEADER_LEN + size_of::<KhoData>();
/// The most entries [`find`] follows before it calls the chain corrupt.
pub const SETUP_DATA_MAX_LINKS: usize = 256;

/// A KHO `setup_data` entry, read and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupKho {
    /// The header's `next`: PA of the following entry, 0 for the last.
    pub next: u64,
    /// The payload.
    pub data: KhoData,
}

/// Writes KHO's `setup_data` entry (header and payload, [`SETUP_KHO_LEN`]
/// bytes) at the start of `buf`, after checking `data` as the next kernel
/// will. Returns the bytes written.
pub fn write(data: &KhoData, next: u64, buf: &mut [u8]) -> Result<usize, HandoffError> {
    data.validate()?;
    let have = buf.len();
    let Some(out) = buf.get_mut(..SETUP_KHO_LEN) else {
        return Err(HandoffError::Short { what: "setup_data buffer", need: SETUP_KHO_LEN, have });
    };
    let header = SetupDataHeader { next, kind: SETUP_KEXEC_KHO, len: size_of::<KhoData>() as u32 };
    out[..SETUP_DATA_HEADER_LEN].copy_from_slice(header.as_bytes());
    out[SETUP_DATA_HEADER_LEN..].copy_from_slice(data.as_bytes());
    Ok(SETUP_KHO_LEN)
}

/// Reads KHO's `setup_data` entry from the start of `bytes`: the type must
/// be `SETUP_KEXEC_KHO`, the payload at least a `struct kho_data` (bytes
/// beyond it are ignored, as the kernel ignores them) and the `kho_data`
/// valid.
pub fn read(bytes: &[u8]) -> Result<SetupKho, HandoffError> {
    let (header, rest) = SetupDataHeader::read_from_prefix(bytes).map_err(|_| HandoffError::Short {
        what: "setup_data header",
        need: SETUP_DATA_HEADER_LEN,
        have: bytes.len(),
    })?;
    let data = payload(&header, rest)?;
    Ok(SetupKho { next: header.next, data })
}

fn payload(header: &SetupDataHeader, rest: &[u8]) -> Result<KhoData, HandoffError> {
    if header.kind != SETUP_KEXEC_KHO {
        return Err(HandoffError::WrongType { found: header.kind, expected: SETUP_KEXEC_KHO });
    }
    if (header.len as usize) < size_of::<KhoData>() {
        return Err(HandoffError::InvalidValue { what: "setup_data.len", value: u64::from(header.len) });
    }
    let data = KhoData::read_from(rest).map_err(|_| HandoffError::Short {
        what: "setup_data payload (struct kho_data)",
        need: size_of::<KhoData>(),
        have: rest.len(),
    })?;
    data.validate()?;
    Ok(data)
}

/// Follows a `setup_data` chain in RAM from `first` (the boot header's
/// `setup_data` field) and returns the KHO entry's PA and payload, or
/// `None` if the chain has none. A chain longer than
/// [`SETUP_DATA_MAX_LINKS`] (a loop, or garbage) is refused.
pub fn find<M: PhysMem + ?Sized>(mem: &M, first: PhysAddr) -> Result<Option<(PhysAddr, KhoData)>, HandoffError> {
    let mut at = first;
    for _ in 0..SETUP_DATA_MAX_LINKS {
        if at.is_null() {
            return Ok(None);
        }
        let header: SetupDataHeader = read_phys(mem, at)?;
        if header.kind == SETUP_KEXEC_KHO {
            let payload_pa = at
                .checked_add(SETUP_DATA_HEADER_LEN as u64)
                .ok_or(HandoffError::InvalidValue { what: "setup_data.next", value: at.as_u64() })?;
            let data: KhoData = read_phys(mem, payload_pa)?;
            return payload(&header, data.as_bytes()).map(|d| Some((at, d)));
        }
        at = PhysAddr::new(header.next);
    }
    Err(HandoffError::InvalidValue { what: "setup_data.next (chain too long)", value: at.as_u64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: KhoData =
        KhoData { fdt_addr: 0x1_2345_6000, fdt_size: 4096, scratch_addr: 0x1_2345_7000, scratch_size: 48 };

    #[test]
    fn the_entry_has_the_kernel_layout() {
        let mut buf = [0xaau8; 64];
        assert_eq!(write(&DATA, 0xdead_0000, &mut buf), Ok(48));
        assert_eq!(&buf[0..8], &0xdead_0000u64.to_le_bytes());
        assert_eq!(&buf[8..12], &10u32.to_le_bytes());
        assert_eq!(&buf[12..16], &32u32.to_le_bytes());
        assert_eq!(&buf[16..24], &0x1_2345_6000u64.to_le_bytes());
        assert_eq!(&buf[24..32], &4096u64.to_le_bytes());
        assert_eq!(&buf[32..40], &0x1_2345_7000u64.to_le_bytes());
        assert_eq!(&buf[40..48], &48u64.to_le_bytes());
        assert_eq!(buf[48], 0xaa, "nothing written past the entry");
        assert_eq!(read(&buf), Ok(SetupKho { next: 0xdead_0000, data: DATA }));
    }

    #[test]
    fn bad_entries_are_refused_by_field() {
        let mut buf = [0u8; 48];
        write(&DATA, 0, &mut buf).unwrap();
        let mut other = buf;
        other[8] = 9;
        assert_eq!(read(&other), Err(HandoffError::WrongType { found: 9, expected: 10 }));
        let mut short_len = buf;
        short_len[12] = 31;
        assert_eq!(read(&short_len), Err(HandoffError::InvalidValue { what: "setup_data.len", value: 31 }));
        assert!(matches!(read(&buf[..40]), Err(HandoffError::Short { need: 32, have: 24, .. })));
        assert!(matches!(read(&buf[..8]), Err(HandoffError::Short { need: 16, have: 8, .. })));
        let mut zero_fdt = buf;
        zero_fdt[16..24].fill(0);
        assert_eq!(read(&zero_fdt).map_err(|e| e.kind()), Err("zero_address"));
        assert!(matches!(write(&DATA, 0, &mut [0u8; 47]), Err(HandoffError::Short { need: 48, have: 47, .. })));
        let bad = KhoData { scratch_size: 20, ..DATA };
        assert_eq!(write(&bad, 0, &mut buf).map_err(|e| e.kind()), Err("invalid_value"));
    }
}
