//! The zero page (`struct boot_params`): 4096 bytes the kernel reads
//! first, found through `rsi` at its 64-bit entry.
//!
//! Fields written here (offsets in the zero page):
//!
//! | offset | field |
//! |---|---|
//! | 0x070 | `u64 acpi_rsdp_addr` (0: the kernel searches the BIOS areas) |
//! | 0x0c0 | `u32 ext_ramdisk_image`: bits 32..63 of the initrd's PA |
//! | 0x0c4 | `u32 ext_ramdisk_size` |
//! | 0x0c8 | `u32 ext_cmd_line_ptr` |
//! | 0x1e8 | `u8 e820_entries` |
//! | 0x1ef | `u8 sentinel`: must stay 0, or the kernel clears fields it thinks a loader left stale |
//! | 0x1f1.. | the setup header, copied from the bzImage |
//! | 0x210 | `u8 type_of_loader` (0xff: a loader without an assigned id) |
//! | 0x211 | `u8 loadflags` (bit 0 set: loaded high) |
//! | 0x214 | `u32 code32_start`: the protected-mode kernel's PA |
//! | 0x218 | `u32 ramdisk_image`, 0x21c `u32 ramdisk_size` |
//! | 0x228 | `u32 cmd_line_ptr` |
//! | 0x250 | `u64 setup_data`: PA of the first `setup_data` entry |
//! | 0x2d0 | `e820_table[128]`: `{u64 addr; u64 size; u32 type}`, 20 bytes each |

use super::bzimage::{BzImage, SETUP_HEADER_OFFSET};
use crate::HandoffError;

/// Bytes of the zero page.
pub const BOOT_PARAMS_SIZE: usize = 4096;
/// Entries the zero page's memory map holds.
pub const E820_MAX: usize = 128;
/// `type_of_loader` of a loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;

const ACPI_RSDP: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0c0;
const EXT_RAMDISK_SIZE: usize = 0x0c4;
const EXT_CMD_LINE_PTR: usize = 0x0c8;
const E820_ENTRIES: usize = 0x1e8;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const SETUP_DATA: usize = 0x250;
const E820_TABLE: usize = 0x2d0;
const E820_ENTRY: usize = 20;

const _: () = assert!(E820_TABLE + E820_MAX * E820_ENTRY <= BOOT_PARAMS_SIZE);

/// Types of memory map entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved.
    Reserved = 2,
    /// ACPI tables, reclaimable after they are read.
    Acpi = 3,
    /// ACPI non-volatile storage.
    Nvs = 4,
    /// Unusable memory.
    Unusable = 5,
    /// Persistent memory (legacy type 12).
    Pram = 12,
}

/// One memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Type,
}

/// The zero page under construction, over a caller's buffer.
#[derive(Debug)]
pub struct BootParams<'a> {
    page: &'a mut [u8; BOOT_PARAMS_SIZE],
}

fn put32(p: &mut [u8; BOOT_PARAMS_SIZE], off: usize, v: u32) {
    p[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(p: &mut [u8; BOOT_PARAMS_SIZE], off: usize, v: u64) {
    p[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

impl<'a> BootParams<'a> {
    /// Zeroes `page` and copies the setup header of `image` (parsed as
    /// `bz`) into it; marks the loader and the protected-mode kernel's
    /// address `load`. The kernel must be loadable there
    /// ([`BzImage::can_load_at`]).
    pub fn new(
        page: &'a mut [u8; BOOT_PARAMS_SIZE],
        bz: &BzImage,
        image: &[u8],
        load: u64,
    ) -> Result<Self, HandoffError> {
        if !bz.can_load_at(load) {
            return Err(HandoffError::InvalidValue {
                what: "kernel load address (alignment or pref_address)",
                value: load,
            });
        }
        if load > u64::from(u32::MAX) && bz.xloadflags & super::bzimage::XLF_CAN_BE_LOADED_ABOVE_4G == 0 {
            return Err(HandoffError::InvalidValue { what: "kernel load address above 4 GiB", value: load });
        }
        page.fill(0);
        let header = bz.header(image);
        page[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + header.len()].copy_from_slice(header);
        page[TYPE_OF_LOADER] = LOADER_UNDEFINED;
        page[LOADFLAGS] |= 1;
        // Only the low 32 bits exist; the 64-bit entry does not read it.
        put32(page, CODE32_START, load as u32);
        Ok(BootParams { page })
    }

    /// Sets the command line's PA (a NUL-terminated string the caller
    /// places there).
    pub fn set_cmdline(&mut self, pa: u64) -> &mut Self {
        put32(self.page, CMD_LINE_PTR, pa as u32);
        put32(self.page, EXT_CMD_LINE_PTR, (pa >> 32) as u32);
        self
    }

    /// Sets the initrd's PA and size (both 0: none).
    pub fn set_initrd(&mut self, pa: u64, size: u64) -> &mut Self {
        put32(self.page, RAMDISK_IMAGE, pa as u32);
        put32(self.page, EXT_RAMDISK_IMAGE, (pa >> 32) as u32);
        put32(self.page, RAMDISK_SIZE, size as u32);
        put32(self.page, EXT_RAMDISK_SIZE, (size >> 32) as u32);
        self
    }

    /// Sets the ACPI RSDP's PA (0: the kernel searches for it).
    pub fn set_rsdp(&mut self, pa: u64) -> &mut Self {
        put64(self.page, ACPI_RSDP, pa);
        self
    }

    /// Sets the PA of the first `setup_data` entry (0: none).
    pub fn set_setup_data(&mut self, pa: u64) -> &mut Self {
        put64(self.page, SETUP_DATA, pa);
        self
    }

    /// Writes the memory map: at most [`E820_MAX`] entries.
    pub fn set_e820(&mut self, entries: &[E820Entry]) -> Result<&mut Self, HandoffError> {
        if entries.len() > E820_MAX {
            return Err(HandoffError::InvalidValue { what: "e820 entries", value: entries.len() as u64 });
        }
        for (i, e) in entries.iter().enumerate() {
            let off = E820_TABLE + i * E820_ENTRY;
            put64(self.page, off, e.addr);
            put64(self.page, off + 8, e.size);
            put32(self.page, off + 16, e.kind as u32);
        }
        self.page[E820_ENTRIES] = entries.len() as u8;
        Ok(self)
    }

    /// The page as built.
    pub fn bytes(&self) -> &[u8; BOOT_PARAMS_SIZE] {
        self.page
    }
}

/// Reads `acpi_rsdp_addr` from a zero page (a running kernel's own, as
/// `/sys/kernel/boot_params/data` shows it).
pub fn rsdp_of(zero_page: &[u8]) -> Option<u64> {
    super::le64(zero_page, ACPI_RSDP).filter(|&v| v != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::bzimage::tests::image;

    #[test]
    fn fields_land_at_the_zero_page_offsets() {
        let img = image(2048);
        let bz = BzImage::parse(&img).unwrap();
        let mut page = [0xeeu8; BOOT_PARAMS_SIZE];
        let mut bp = BootParams::new(&mut page, &bz, &img, 0x100_0000).unwrap();
        bp.set_cmdline(0x1_2345_6000).set_rsdp(0xf_5a00).set_setup_data(0x2000_0000);
        bp.set_initrd(0x1_8000_0000, 0x1234_5678);
        let map = [
            E820Entry { addr: 0, size: 0x9fc00, kind: E820Type::Ram },
            E820Entry { addr: 0x10_0000, size: 0x3fee_0000, kind: E820Type::Ram },
            E820Entry { addr: 0xfeff_c000, size: 0x4000, kind: E820Type::Reserved },
        ];
        bp.set_e820(&map).unwrap();
        let p = bp.bytes();
        assert_eq!(p[0], 0, "zeroed");
        assert_eq!(&p[0x202..0x206], b"HdrS", "header copied");
        assert_eq!(p[0x26c], 0, "nothing past the header");
        assert_eq!(p[0x210], 0xff);
        assert_eq!(p[0x211] & 1, 1);
        assert_eq!(&p[0x214..0x218], &0x100_0000u32.to_le_bytes());
        assert_eq!(&p[0x228..0x22c], &0x2345_6000u32.to_le_bytes());
        assert_eq!(&p[0x0c8..0x0cc], &1u32.to_le_bytes());
        assert_eq!(&p[0x218..0x21c], &0x8000_0000u32.to_le_bytes());
        assert_eq!(&p[0x0c0..0x0c4], &1u32.to_le_bytes());
        assert_eq!(&p[0x21c..0x220], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&p[0x070..0x078], &0xf_5a00u64.to_le_bytes());
        assert_eq!(&p[0x250..0x258], &0x2000_0000u64.to_le_bytes());
        assert_eq!(p[0x1e8], 3);
        assert_eq!(p[0x1ef], 0, "sentinel stays 0");
        assert_eq!(&p[0x2d0 + 20..0x2d0 + 28], &0x10_0000u64.to_le_bytes());
        assert_eq!(&p[0x2d0 + 40 + 16..0x2d0 + 40 + 20], &2u32.to_le_bytes());
        assert_eq!(rsdp_of(p), Some(0xf_5a00));
    }

    #[test]
    fn refuses_what_the_kernel_cannot_use() {
        let img = image(2048);
        let bz = BzImage::parse(&img).unwrap();
        let mut page = [0u8; BOOT_PARAMS_SIZE];
        assert!(BootParams::new(&mut page, &bz, &img, 0x100_1000).is_err(), "misaligned load");
        let mut bp = BootParams::new(&mut page, &bz, &img, 0x100_0000).unwrap();
        let map = [E820Entry { addr: 0, size: 4096, kind: E820Type::Ram }; E820_MAX + 1];
        assert!(bp.set_e820(&map).is_err());
        assert!(bp.set_e820(&map[..E820_MAX]).is_ok());
    }
}
