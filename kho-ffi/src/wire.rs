//! The wire structs as C sees them, and the numeric constants of the
//! formats.
//!
//! Each struct mirrors its `kho_abi` counterpart field for field; the
//! compile-time assertions below check that sizes and offsets agree, and
//! the header's trailer asserts them again in C (`static_assert`), so a
//! change on either side fails a build.

use core::mem::offset_of;

use kho_abi::{BlockHeader, KhoData, KhoScratch, KhoVmalloc, Order, PAGE_SHIFT, PAGE_SIZE, VmallocFlags};
use kho_array::ArrayDesc;

// The page size of the archive. The header carries all three sizes behind
// `KHO_PAGE_16K` / `KHO_PAGE_64K` (cbindgen turns the features into those
// macros); the kho.pc of a 16 or 64 KiB install and C built in this
// repository pass the macro with `-D`.

/// Page size of this build, in bytes (4 KiB).
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
pub const KHO_PAGE_SIZE: u64 = 4096;
/// log2 of `KHO_PAGE_SIZE`.
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
pub const KHO_PAGE_SHIFT: u32 = 12;
/// The largest order a radix key can hold (`64 - KHO_PAGE_SHIFT`); a
/// platform's `max_order` is at most this.
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
pub const KHO_ORDER_MAX: u32 = 52;

/// Page size of this build, in bytes (16 KiB).
#[cfg(all(feature = "page-16k", not(feature = "page-64k")))]
pub const KHO_PAGE_SIZE: u64 = 16384;
/// log2 of `KHO_PAGE_SIZE`.
#[cfg(all(feature = "page-16k", not(feature = "page-64k")))]
pub const KHO_PAGE_SHIFT: u32 = 14;
/// The largest order a radix key can hold (`64 - KHO_PAGE_SHIFT`); a
/// platform's `max_order` is at most this.
#[cfg(all(feature = "page-16k", not(feature = "page-64k")))]
pub const KHO_ORDER_MAX: u32 = 50;

/// Page size of this build, in bytes (64 KiB).
#[cfg(feature = "page-64k")]
pub const KHO_PAGE_SIZE: u64 = 65536;
/// log2 of `KHO_PAGE_SIZE`.
#[cfg(feature = "page-64k")]
pub const KHO_PAGE_SHIFT: u32 = 16;
/// The largest order a radix key can hold (`64 - KHO_PAGE_SHIFT`); a
/// platform's `max_order` is at most this.
#[cfg(feature = "page-64k")]
pub const KHO_ORDER_MAX: u32 = 48;

/// The page size the library was built for, in bytes. A program checks it
/// against the header's KHO_PAGE_SIZE once, at start-up: a header and an
/// archive of different page sizes disagree on every page-sized quantity.
///
/// @return 4096, 16384 or 65536.
#[unsafe(no_mangle)]
pub extern "C" fn kho_page_size() -> u64 {
    KHO_PAGE_SIZE
}
/// x86 `setup_data` type that carries `struct kho_data` (`SETUP_KEXEC_KHO`).
pub const KHO_SETUP_KEXEC_KHO: u32 = 10;
/// The longest block chain a restore accepts.
pub const KHO_BLOCK_CHAIN_MAX: u32 = 10000;
/// `struct kho_vmalloc` flag: the area was allocated by vmalloc.
pub const KHO_VMALLOC_ALLOC: u16 = 0x1;
/// `struct kho_vmalloc` flag: the area is mapped with huge pages.
pub const KHO_VMALLOC_HUGE_VMAP: u16 = 0x2;
/// `struct kho_array_desc` magic (`'KARR'`).
pub const KHO_ARRAY_MAGIC: u32 = 0x4b41_5252;
/// `struct kho_array_desc` version.
pub const KHO_ARRAY_VERSION: u16 = 1;

const _: () = assert!(KHO_PAGE_SIZE == PAGE_SIZE as u64, "kho-ffi's page size is kho-abi's");
const _: () = assert!(KHO_PAGE_SHIFT == PAGE_SHIFT);
const _: () = assert!(KHO_ORDER_MAX == Order::MAX.get());
const _: () = assert!(KHO_SETUP_KEXEC_KHO == kho_abi::handover::SETUP_KEXEC_KHO);
const _: () = assert!(KHO_BLOCK_CHAIN_MAX as usize == kho_abi::BLOCK_CHAIN_MAX);
const _: () = assert!(KHO_VMALLOC_ALLOC == VmallocFlags::ALLOC.bits());
const _: () = assert!(KHO_VMALLOC_HUGE_VMAP == VmallocFlags::HUGE_VMAP.bits());
const _: () = assert!(KHO_ARRAY_MAGIC == kho_array::ARRAY_MAGIC);
const _: () = assert!(KHO_ARRAY_VERSION == kho_array::ARRAY_VERSION);

/// `struct kho_data`: where the next kernel finds the handover (x86
/// `setup_data` of type `KHO_SETUP_KEXEC_KHO`). Packed, 32 bytes,
/// native-endian.
///
/// | offset | field |
/// |---|---|
/// | 0 | `fdt_addr`: PA of the root FDT |
/// | 8 | `fdt_size`: its size (one page) |
/// | 16 | `scratch_addr`: PA of an array of `struct kho_scratch` |
/// | 24 | `scratch_size`: byte size of that array |
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_data {
    /// PA of the root FDT.
    pub fdt_addr: u64,
    /// Size of the root FDT in bytes.
    pub fdt_size: u64,
    /// PA of the scratch array.
    pub scratch_addr: u64,
    /// Size of the scratch array in bytes.
    pub scratch_size: u64,
}

/// `struct kho_scratch`: a range the next kernel may allocate from before
/// it has read the preserved-memory map. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_scratch {
    /// PA of the area, page aligned.
    pub addr: u64,
    /// Its size in bytes, whole pages.
    pub size: u64,
}

/// `struct kho_vmalloc` (`vmalloc-v1`): the descriptor of a preserved
/// vmalloc area, which the user embeds in their own preserved data.
/// 16 bytes, 8-aligned.
///
/// | offset | field |
/// |---|---|
/// | 0 | `first`: PA of the first chunk page, 0 = empty area |
/// | 8 | `total_pages`: pages in the area |
/// | 12 | `flags`: `KHO_VMALLOC_ALLOC`, `KHO_VMALLOC_HUGE_VMAP` |
/// | 14 | `order`: every block is `2^order` pages |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_vmalloc {
    /// PA of the first chunk page, 0 if the area is empty.
    pub first: u64,
    /// Number of pages in the area.
    pub total_pages: u32,
    /// Flag bits.
    pub flags: u16,
    /// Order of every block.
    pub order: u16,
}

/// The header at the start of every block of a block set (`block-v1`),
/// packed, 16 bytes; `count` entries follow it, packed.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_block_header {
    /// PA of the next block, 0 for the last.
    pub next: u64,
    /// Entries used in this block.
    pub count: u64,
}

/// `struct kho_array_desc` (`array-v1`): the descriptor of a sparse array,
/// which the user embeds in their own preserved data. 16 bytes.
///
/// | offset | field |
/// |---|---|
/// | 0 | `magic`: `KHO_ARRAY_MAGIC` |
/// | 4 | `version`: `KHO_ARRAY_VERSION` |
/// | 6 | `reserved`: 0 |
/// | 8 | `first`: PA of the first page, 0 for an empty array |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_array_desc {
    /// `KHO_ARRAY_MAGIC`.
    pub magic: u32,
    /// `KHO_ARRAY_VERSION`.
    pub version: u16,
    /// Zero.
    pub reserved: u16,
    /// PA of the first page, 0 for an empty array.
    pub first: u64,
}

macro_rules! same_layout {
    ($c:ident, $rust:ident, $($field:ident),+) => {
        const _: () = assert!(size_of::<$c>() == size_of::<$rust>());
        const _: () = assert!(align_of::<$c>() == align_of::<$rust>());
        $(const _: () = assert!(offset_of!($c, $field) == offset_of!($rust, $field));)+
        impl From<$rust> for $c {
            fn from(r: $rust) -> $c {
                $c::from_abi(r)
            }
        }
        impl From<$c> for $rust {
            fn from(c: $c) -> $rust {
                c.to_abi()
            }
        }
        impl $c {
            const fn from_abi(r: $rust) -> $c {
                $c { $($field: r.$field),+ }
            }
            const fn to_abi(self) -> $rust {
                $rust { $($field: self.$field),+ }
            }
        }
    };
}

same_layout!(kho_data, KhoData, fdt_addr, fdt_size, scratch_addr, scratch_size);
same_layout!(kho_scratch, KhoScratch, addr, size);
same_layout!(kho_vmalloc, KhoVmalloc, first, total_pages, flags, order);
same_layout!(kho_block_header, BlockHeader, next, count);
same_layout!(kho_array_desc, ArrayDesc, magic, version, reserved, first);

const _: () = assert!(size_of::<kho_data>() == 32);
const _: () = assert!(size_of::<kho_scratch>() == 16);
const _: () = assert!(size_of::<kho_vmalloc>() == 16 && align_of::<kho_vmalloc>() == 8);
const _: () = assert!(size_of::<kho_block_header>() == 16);
const _: () = assert!(size_of::<kho_array_desc>() == 16);

/// The `kho_abi` scratch areas of a C array.
pub(crate) fn scratch_as_abi(s: &[kho_scratch]) -> alloc::vec::Vec<KhoScratch> {
    s.iter().map(|&s| s.into()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_every_field() {
        let d = KhoData { fdt_addr: 1, fdt_size: 2, scratch_addr: 3, scratch_size: 4 };
        assert_eq!(KhoData::from(kho_data::from(d)), d);
        let v = KhoVmalloc { first: 0x1000, total_pages: 8, flags: 3, order: 2 };
        assert_eq!(KhoVmalloc::from(kho_vmalloc::from(v)), v);
        let a = ArrayDesc::new(kho_abi::PhysAddr::new(0x5000));
        assert_eq!(ArrayDesc::from(kho_array_desc::from(a)), a);
        let h = BlockHeader { next: 9, count: 10 };
        assert_eq!(BlockHeader::from(kho_block_header::from(h)), h);
        let s = KhoScratch { addr: 0x2000, size: 0x1000 };
        assert_eq!(scratch_as_abi(&[s.into()]), [s]);
    }
}
