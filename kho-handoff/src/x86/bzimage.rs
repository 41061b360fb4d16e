//! The boot header of an x86 bzImage.
//!
//! A bzImage is a real-mode setup part of `setup_sects + 1` 512-byte
//! sectors followed by the protected-mode kernel (the compressed kernel
//! and its decompressor). The setup header starts at offset 0x1f1; its
//! fields from 0x1f1 to `0x202 + image[0x201]` are copied into the zero
//! page by the loader. Offsets used here:
//!
//! | offset | field | use |
//! |---|---|---|
//! | 0x1f1 | `u8 setup_sects` | 0 means 4 |
//! | 0x1fe | `u16 boot_flag` | 0xaa55 |
//! | 0x201 | `u8` jump displacement | the header ends at `0x202 + it` |
//! | 0x202 | `u32 header` | `"HdrS"` |
//! | 0x206 | `u16 version` | boot protocol version, at least 2.12 here |
//! | 0x230 | `u32 kernel_alignment` | the load address's alignment |
//! | 0x234 | `u8 relocatable_kernel` | may load anywhere aligned |
//! | 0x236 | `u16 xloadflags` | bit 0: has a 64-bit entry at load + 0x200 |
//! | 0x238 | `u32 cmdline_size` | longest command line, NUL excluded |
//! | 0x258 | `u64 pref_address` | where a non-relocatable kernel must go |
//! | 0x260 | `u32 init_size` | bytes the kernel needs from its load address while it decompresses and starts |

use super::{le16, le32, le64};
use crate::HandoffError;

/// Offset of the setup header in the image and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Offset of the 64-bit entry point from the protected-mode kernel's start.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// `xloadflags` bit: the kernel has a 64-bit entry point.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit: the kernel, zero page and initrd may lie above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// The oldest boot protocol read here (2.12: `xloadflags`).
pub const MIN_PROTOCOL: u16 = 0x020c;

/// The parsed header of a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// Offset of the protected-mode kernel in the image.
    pub kernel_offset: usize,
    /// Bytes of the protected-mode kernel.
    pub kernel_len: usize,
    /// End of the setup header in the image (exclusive).
    pub header_end: usize,
    /// Boot protocol version (`0x020f` is 2.15).
    pub version: u16,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// Whether the kernel may load at any `kernel_alignment`-aligned
    /// address.
    pub relocatable: bool,
    /// Alignment of the load address (a power of two).
    pub kernel_alignment: u64,
    /// Where a non-relocatable kernel must load, and the lowest address a
    /// relocatable one decompresses to.
    pub pref_address: u64,
    /// Bytes the kernel needs from its load address.
    pub init_size: u64,
    /// The longest command line the kernel reads, NUL excluded.
    pub cmdline_size: u32,
}

fn bad(what: &'static str) -> HandoffError {
    HandoffError::Image { what }
}

impl BzImage {
    /// Reads and checks the header of `image`: it must be a bzImage of
    /// boot protocol 2.12 or later with a 64-bit entry point and a
    /// power-of-two alignment, whose protected-mode kernel is non-empty.
    pub fn parse(image: &[u8]) -> Result<BzImage, HandoffError> {
        if image.len() < 0x264 {
            return Err(bad("shorter than a bzImage setup header"));
        }
        if le16(image, 0x1fe) != Some(0xaa55) {
            return Err(bad("no boot flag 0xaa55 at 0x1fe"));
        }
        if image.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
            return Err(bad("no \"HdrS\" at 0x202: not a bzImage"));
        }
        let version = le16(image, 0x206).ok_or(bad("version"))?;
        if version < MIN_PROTOCOL {
            return Err(bad("boot protocol older than 2.12"));
        }
        let xloadflags = le16(image, 0x236).ok_or(bad("xloadflags"))?;
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(bad("no 64-bit entry point (xloadflags bit 0 clear)"));
        }
        let sects = match image[0x1f1] {
            0 => 4,
            n => usize::from(n),
        };
        let kernel_offset = (sects + 1) * 512;
        if kernel_offset >= image.len() {
            return Err(bad("setup part covers the whole image"));
        }
        let header_end = 0x202 + usize::from(image[0x201]);
        if header_end > kernel_offset || header_end < 0x264 {
            return Err(bad("setup header length out of range"));
        }
        let kernel_alignment = u64::from(le32(image, 0x230).ok_or(bad("kernel_alignment"))?);
        if !kernel_alignment.is_power_of_two() || kernel_alignment < 4096 {
            return Err(bad("kernel_alignment is not a power of two of at least a page"));
        }
        let init_size = u64::from(le32(image, 0x260).ok_or(bad("init_size"))?);
        let kernel_len = image.len() - kernel_offset;
        if init_size < kernel_len as u64 {
            return Err(bad("init_size smaller than the protected-mode kernel"));
        }
        Ok(BzImage {
            kernel_offset,
            kernel_len,
            header_end,
            version,
            xloadflags,
            relocatable: image[0x234] != 0,
            kernel_alignment,
            pref_address: le64(image, 0x258).ok_or(bad("pref_address"))?,
            init_size,
            cmdline_size: le32(image, 0x238).ok_or(bad("cmdline_size"))?,
        })
    }

    /// The protected-mode kernel's bytes within `image` (the one parsed).
    pub fn kernel<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        image.get(self.kernel_offset..).unwrap_or(&[])
    }

    /// The setup header's bytes within `image`, copied to the zero page at
    /// [`SETUP_HEADER_OFFSET`].
    pub fn header<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        image.get(SETUP_HEADER_OFFSET..self.header_end).unwrap_or(&[])
    }

    /// Whether the kernel may start at `load`: aligned, and for a
    /// non-relocatable kernel exactly its `pref_address`.
    pub fn can_load_at(&self, load: u64) -> bool {
        load.is_multiple_of(self.kernel_alignment) && (self.relocatable || load == self.pref_address)
    }

    /// The physical window `[start, end)` the kernel occupies while it
    /// decompresses and starts, when loaded at `load` without address
    /// randomisation: from the load address (raised to `pref_address` if
    /// below it, as the decompressor does) for `init_size` bytes.
    pub fn window(&self, load: u64) -> (u64, u64) {
        let start = if self.relocatable { load.max(self.pref_address) } else { self.pref_address };
        (load.min(start), start.saturating_add(self.init_size))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal image with a valid header: 4 setup sectors + 1, then
    /// `kernel` bytes.
    pub(crate) fn image(kernel: usize) -> [u8; 4096] {
        let mut b = [0u8; 4096];
        b[0x1f1] = 3;
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x201] = 0x6a;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x211] = 1;
        b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[0x234] = 1;
        b[0x236..0x238].copy_from_slice(&0x63u16.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&0xc7_a000u32.to_le_bytes());
        assert!(2048 + kernel <= 4096);
        b
    }

    #[test]
    fn reads_the_header_fields() {
        let img = image(2048);
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.kernel_offset, 2048);
        assert_eq!(bz.kernel_len, 2048);
        assert_eq!(bz.header_end, 0x26c);
        assert_eq!(bz.version, 0x020f);
        assert!(bz.relocatable);
        assert_eq!(bz.kernel_alignment, 2 << 20);
        assert_eq!(bz.init_size, 0xc7_a000);
        assert_eq!(bz.header(&img).len(), 0x26c - 0x1f1);
        assert!(bz.can_load_at(0x200_0000));
        assert!(!bz.can_load_at(0x200_1000));
        assert_eq!(bz.window(0x400_0000), (0x400_0000, 0x400_0000 + 0xc7_a000));
        assert_eq!(bz.window(0x20_0000), (0x20_0000, 0x100_0000 + 0xc7_a000), "raised to pref_address");
    }

    #[test]
    fn refuses_what_is_not_a_64_bit_bzimage() {
        let img = image(2048);
        let kind = |b: &[u8]| match BzImage::parse(b) {
            Err(HandoffError::Image { what }) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(&img[..0x200]), "shorter than a bzImage setup header");
        let mut elf = img;
        elf[0x202..0x206].copy_from_slice(b"\x7fELF");
        assert_eq!(kind(&elf), "no \"HdrS\" at 0x202: not a bzImage");
        let mut old = img;
        old[0x206] = 0x0b;
        assert_eq!(kind(&old), "boot protocol older than 2.12");
        let mut x32 = img;
        x32[0x236] = 0x62;
        assert_eq!(kind(&x32), "no 64-bit entry point (xloadflags bit 0 clear)");
        let mut flag = img;
        flag[0x1fe] = 0;
        assert_eq!(kind(&flag), "no boot flag 0xaa55 at 0x1fe");
        let mut align = img;
        align[0x230..0x234].copy_from_slice(&0x30_0000u32.to_le_bytes());
        assert_eq!(kind(&align), "kernel_alignment is not a power of two of at least a page");
        let mut sects = img;
        sects[0x1f1] = 7;
        assert_eq!(kind(&sects), "setup part covers the whole image");
        let mut hdr = img;
        hdr[0x201] = 0x10;
        assert_eq!(kind(&hdr), "setup header length out of range");
        let mut small = img;
        small[0x260..0x264].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(kind(&small), "init_size smaller than the protected-mode kernel");
    }
}
