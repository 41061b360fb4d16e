//! `memblock-v1`: the `reserve_mem` regions of a Linux 7.2 Kexec HandOver.
//!
//! # Layout
//!
//! The `memblock` subtree's blob is an FDT (in a preserved page of its own;
//! property values are raw native-endian bytes):
//!
//! ```text
//! / {
//!     compatible = "memblock-v1";
//!     NAME {                              // one per reserve_mem=SIZE:ALIGN:NAME
//!         compatible = "reserve-mem-v1";
//!         start = <8 bytes: PA>;
//!         size = <8 bytes: bytes>;
//!     };
//! };
//! ```
//!
//! Each region's memory is preserved through the tracker as the kernel
//! preserves a page range: maximal naturally aligned blocks, never across
//! a NUMA node (a 4 MiB region on a 2 MiB boundary is two order-9 blocks).
//! The next kernel revives a region of the same name.
//!
//! [`restore`] validates the blob and claims the blob page and every block
//! of every region; [`inspect`] does the same and gives everything back;
//! [`write()`] preserves the regions and lays the FDT out byte for byte as
//! the kernel's libfdt does.
//!
//! ```
//! use kho_abi::{KhoData, Order, PageAlloc, WithTracker};
//! use kho_memblock::{inspect, write};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let p = WithTracker::new(&m, &t);
//! let start = p.alloc_pages(Order::new(4, "order")?)?;
//! let blob = write(&p, &[("trace", start, 64 << 10)])?;
//!
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let mb = inspect(&WithTracker::new(&m2, &t2), blob.pa, blob.size)?;
//! assert_eq!((mb.regions[0].name.as_str(), mb.regions[0].start, mb.regions[0].size), ("trace", start, 64 << 10));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::fdt::Fdt;
use dtoolkit::{Node, Property};
use kho_abi::{
    AbiError, Claim, Errno, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, ToErrno, write_phys_bytes,
    zero_phys,
};
use kho_probe::Probe;
use kho_probe::fdt::SwFdt;

/// Name of the KHO subtree.
pub const SUBTREE: &str = "memblock";
/// Compatible of the blob's root.
pub const MEMBLOCK_V1: &str = "memblock-v1";
/// Compatible of a region node.
pub const RESERVE_MEM_V1: &str = "reserve-mem-v1";

const PAGE: u64 = PAGE_SIZE as u64;
/// An FDT header is 40 bytes.
const FDT_HEADER: u64 = 40;

/// A `reserve_mem` region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its name (the node name).
    pub name: String,
    /// First byte.
    pub start: PhysAddr,
    /// Bytes.
    pub size: u64,
    /// The preserved blocks that make it up, ascending.
    pub blocks: Vec<(PhysAddr, Order)>,
}

/// The decoded `memblock` subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memblock {
    /// PA of the FDT blob.
    pub blob: PhysAddr,
    /// Order of the preserved block holding it.
    pub blob_order: Order,
    /// The regions, in node order.
    pub regions: Vec<Region>,
}

/// What was wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// A property that is missing or not of its length.
    #[error("missing or not {len} bytes")]
    BadProperty {
        /// The length it must have.
        len: usize,
    },
    /// A value that must be page aligned is not.
    #[error("{0:#x} is not page aligned")]
    Misaligned(u64),
    /// A value that must not be zero is.
    #[error("zero")]
    Zero,
    /// A value out of its range.
    #[error("{value:#x} above {max:#x}")]
    OutOfRange {
        /// The value found.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// Memory outside RAM.
    #[error("{0}")]
    NotRam(AbiError),
    /// Memory the tracker would not let be claimed.
    #[error("not preserved: {0}")]
    NotPreserved(AbiError),
    /// A name used by an earlier region.
    #[error("same name as region {first}")]
    Duplicate {
        /// Position of the earlier region.
        first: usize,
    },
    /// Memory shared with an earlier region.
    #[error("overlaps region {other}")]
    Overlaps {
        /// Position of the other region.
        other: usize,
    },
}

/// Errors of the memblock layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemblockError {
    /// The blob: size, address, preservation.
    #[error("memblock blob at {pa}, {field}: {fault}")]
    Blob {
        /// Where the blob is.
        pa: PhysAddr,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The blob is not a well-formed FDT.
    #[error("memblock blob at {pa}: {source}")]
    Fdt {
        /// Where the blob is.
        pa: PhysAddr,
        /// What the parser found.
        source: dtoolkit::error::FdtParseError,
    },
    /// A compatible that is not the expected one.
    #[error("node {node:?}: compatible {found:?}, expected {expected:?}")]
    Compatible {
        /// The node (`"/"` for the root).
        node: String,
        /// What was found (lossy, NUL-terminated or not).
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A field of a region node.
    #[error("region {index} {name:?}, field {field}: {fault}")]
    Region {
        /// Position of the region.
        index: usize,
        /// Its name.
        name: String,
        /// The field (`start`, `size`, `name`).
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The writer was given a bad region (name, alignment, size), or the
    /// FDT would not fit a page.
    #[error("cannot write region {name:?}: {what}")]
    Unsupported {
        /// The region.
        name: String,
        /// Why.
        what: &'static str,
    },
    /// The platform failed.
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for MemblockError {
    fn errno(&self) -> Errno {
        match self {
            MemblockError::Platform(e) => e.errno(),
            MemblockError::Blob { .. }
            | MemblockError::Fdt { .. }
            | MemblockError::Compatible { .. }
            | MemblockError::Region { .. }
            | MemblockError::Unsupported { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers, logs and reports: they do
/// not change when a message is reworded, and are never Rust `Debug` text.
impl MemblockError {
    /// The error's stable name, `memblock_<variant>`; where the variant
    /// carries a [`Fault`], `memblock_<variant>_<fault>`
    /// (`"memblock_blob_zero"`, `"memblock_region_overlaps"`).
    ///
    /// A wrapped error (`Fdt`, `Platform`) gives `memblock_<variant>` alone;
    /// the platform's [`AbiError::kind`] names the lower fault.
    pub const fn kind(&self) -> &'static str {
        match self {
            MemblockError::Blob { fault, .. } => match fault {
                Fault::BadProperty { .. } => "memblock_blob_bad_property",
                Fault::Misaligned(_) => "memblock_blob_misaligned",
                Fault::Zero => "memblock_blob_zero",
                Fault::OutOfRange { .. } => "memblock_blob_out_of_range",
                Fault::NotRam(_) => "memblock_blob_not_ram",
                Fault::NotPreserved(_) => "memblock_blob_not_preserved",
                Fault::Duplicate { .. } => "memblock_blob_duplicate",
                Fault::Overlaps { .. } => "memblock_blob_overlaps",
            },
            MemblockError::Fdt { .. } => "memblock_fdt",
            MemblockError::Compatible { .. } => "memblock_compatible",
            MemblockError::Region { fault, .. } => match fault {
                Fault::BadProperty { .. } => "memblock_region_bad_property",
                Fault::Misaligned(_) => "memblock_region_misaligned",
                Fault::Zero => "memblock_region_zero",
                Fault::OutOfRange { .. } => "memblock_region_out_of_range",
                Fault::NotRam(_) => "memblock_region_not_ram",
                Fault::NotPreserved(_) => "memblock_region_not_preserved",
                Fault::Duplicate { .. } => "memblock_region_duplicate",
                Fault::Overlaps { .. } => "memblock_region_overlaps",
            },
            MemblockError::Unsupported { .. } => "memblock_unsupported",
            MemblockError::Platform(_) => "memblock_platform",
        }
    }
}

impl Fault {
    /// The fault's stable name, `memblock_<fault>` (`"memblock_zero"`, `"memblock_overlaps"`, ...);
    /// [`MemblockError::kind`] puts the `<fault>` part after the error's variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            Fault::BadProperty { .. } => "memblock_bad_property",
            Fault::Misaligned(_) => "memblock_misaligned",
            Fault::Zero => "memblock_zero",
            Fault::OutOfRange { .. } => "memblock_out_of_range",
            Fault::NotRam(_) => "memblock_not_ram",
            Fault::NotPreserved(_) => "memblock_not_preserved",
            Fault::Duplicate { .. } => "memblock_duplicate",
            Fault::Overlaps { .. } => "memblock_overlaps",
        }
    }
}

/// The blocks a range of pages is preserved as, the kernel's way: from the
/// start, the largest order the PA is aligned to that fits in what is
/// left, is at most the platform's largest, and does not cross a NUMA
/// node.
pub fn split<P: PhysMem + PageAlloc + ?Sized>(p: &P, start: PhysAddr, pages: u64) -> Vec<(PhysAddr, Order)> {
    let max = p.max_order().get();
    let mut out = Vec::new();
    let (mut pfn, end) = (start.as_u64() / PAGE, start.as_u64() / PAGE + pages);
    while pfn < end {
        let align = if pfn == 0 { 63 } else { pfn.trailing_zeros() };
        let fit = 63 - (end - pfn).leading_zeros();
        let mut o = align.min(fit).min(max);
        let pa = PhysAddr::new(pfn * PAGE);
        while o > 0 && p.crosses_node(pa, Order::new(u64::from(o), "split").unwrap_or(Order::ZERO)) {
            o -= 1;
        }
        let order = Order::new(u64::from(o), "split").unwrap_or(Order::ZERO);
        out.push((pa, order));
        pfn += order.pages();
    }
    out
}

/// The memblock state adopted by the next kernel: the blob page and every
/// region block are claimed.
#[derive(Debug)]
pub struct RestoredMemblock {
    memblock: Memblock,
    blob_order: Order,
}

impl RestoredMemblock {
    /// The decoded regions.
    pub fn memblock(&self) -> &Memblock {
        &self.memblock
    }

    /// Frees the blob page; the regions stay claimed, now the caller's
    /// (the kernel keeps them reserved for their users).
    pub fn finish<P: PageAlloc + ?Sized>(self, p: &P) -> Memblock {
        p.free_pages(self.memblock.blob, self.blob_order);
        self.memblock
    }

    /// Gives everything back unclaimed.
    pub fn unclaim<P: Claim + ?Sized>(self, p: &P) {
        for r in self.memblock.regions.iter().rev() {
            for &(pa, o) in r.blocks.iter().rev() {
                p.unclaim(pa, o);
            }
        }
        p.unclaim(self.memblock.blob, self.blob_order);
    }
}

/// Adopts the `memblock` subtree whose blob is at `blob`, `size` bytes.
///
/// Checked: the blob is page aligned, at least an FDT header and at most
/// the largest order's bytes, the start of a preserved block that holds it
/// (claimed at that block's order); the FDT is well formed with `totalsize` within `size`; the
/// root's compatible is exactly `memblock-v1`; each child's compatible is
/// exactly `reserve-mem-v1`, its name unique, `start` and `size` 8 bytes,
/// page aligned, `size` non-zero, the range in RAM, not overlapping
/// another region, and every block of it claimable (claimed).
///
/// Nothing stays claimed on error.
pub fn restore<P>(p: &P, blob: PhysAddr, size: u64) -> Result<RestoredMemblock, MemblockError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bad = |field, fault| MemblockError::Blob { pa: blob, field, fault };
    let max_bytes = p.max_order().pages() * PAGE;
    if size < FDT_HEADER || size > max_bytes {
        return Err(bad("blob-size", Fault::OutOfRange { value: size, max: max_bytes }));
    }
    if !blob.is_page_aligned() {
        return Err(bad("blob address", Fault::Misaligned(blob.as_u64())));
    }
    // The block preserved at the blob's address, whatever its order, must
    // hold the blob.
    let order = kho_probe::claim_block(p, blob, size).map_err(|e| bad("blob address", Fault::NotPreserved(e)))?;
    let mut regions = Vec::new();
    match decode(p, blob, size, &mut regions) {
        Ok(()) => Ok(RestoredMemblock { memblock: Memblock { blob, blob_order: order, regions }, blob_order: order }),
        Err(e) => {
            for r in regions.iter().rev() {
                for &(pa, o) in r.blocks.iter().rev() {
                    p.unclaim(pa, o);
                }
            }
            p.unclaim(blob, order);
            Err(e)
        }
    }
}

/// [`restore`]'s checks and decoding, with every claim given back.
pub fn inspect<P>(p: &P, blob: PhysAddr, size: u64) -> Result<Memblock, MemblockError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let probe = Probe::new(p);
    let result = restore(&probe, blob, size).map(|r| r.memblock);
    probe.release();
    result
}

fn compatible_of(node: &dtoolkit::fdt::FdtNode<'_>) -> Option<Vec<u8>> {
    node.property("compatible").map(|c| c.value().to_vec())
}

fn check_compatible(node: &str, found: Option<&[u8]>, expected: &'static str) -> Result<(), MemblockError> {
    let ok = found.and_then(|v| v.split_last()).is_some_and(|(&nul, s)| nul == 0 && s == expected.as_bytes());
    if ok {
        return Ok(());
    }
    let found = found.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    Err(MemblockError::Compatible { node: node.to_string(), found, expected })
}

/// Decodes the FDT, claiming each region's blocks into `regions` as it
/// goes (so the caller can undo exactly those).
fn decode<P>(p: &P, blob: PhysAddr, size: u64, regions: &mut Vec<Region>) -> Result<(), MemblockError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bytes = kho_probe::fdt::read_blob(p, blob, size).map_err(|e| match e {
        kho_probe::fdt::BlobReadError::NotRam(e) => {
            MemblockError::Blob { pa: blob, field: "blob address", fault: Fault::NotRam(e) }
        }
        kho_probe::fdt::BlobReadError::TotalSize { total } => {
            MemblockError::Blob { pa: blob, field: "totalsize", fault: Fault::OutOfRange { value: total, max: size } }
        }
    })?;
    let fdt = Fdt::new(&bytes).map_err(|source| MemblockError::Fdt { pa: blob, source })?;
    let root = fdt.root();
    check_compatible("/", compatible_of(&root).as_deref(), MEMBLOCK_V1)?;
    for (index, node) in root.children().enumerate() {
        let name = node.name().to_string();
        let bad = |field, fault| MemblockError::Region { index, name: name.clone(), field, fault };
        check_compatible(&name, compatible_of(&node).as_deref(), RESERVE_MEM_V1)?;
        if let Some(first) = regions.iter().position(|r| r.name == name) {
            return Err(bad("name", Fault::Duplicate { first }));
        }
        let prop = |field: &'static str| {
            node.property(field)
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_ne_bytes)
                .ok_or(bad(field, Fault::BadProperty { len: 8 }))
        };
        let (start, len) = (prop("start")?, prop("size")?);
        if start % PAGE != 0 {
            return Err(bad("start", Fault::Misaligned(start)));
        }
        if len == 0 {
            return Err(bad("size", Fault::Zero));
        }
        if len % PAGE != 0 {
            return Err(bad("size", Fault::Misaligned(len)));
        }
        let end = start.checked_add(len).ok_or(bad("size", Fault::OutOfRange { value: len, max: u64::MAX - start }))?;
        p.phys_to_virt(PhysAddr::new(start), len).map_err(|e| bad("start", Fault::NotRam(e)))?;
        if let Some(other) = regions.iter().position(|r| r.start.as_u64() < end && start < r.start.as_u64() + r.size) {
            return Err(bad("start", Fault::Overlaps { other }));
        }
        let blocks = split(p, PhysAddr::new(start), len / PAGE);
        for (claimed, &(pa, o)) in blocks.iter().enumerate() {
            if let Err(e) = p.claim(pa, o) {
                for &(pa, o) in blocks[..claimed].iter().rev() {
                    p.unclaim(pa, o);
                }
                return Err(bad("start", Fault::NotPreserved(e)));
            }
        }
        regions.push(Region { name, start: PhysAddr::new(start), size: len, blocks });
    }
    Ok(())
}

/// The blob [`write()`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemblockBlob {
    /// Its PA: the subtree's `preserved-data`.
    pub pa: PhysAddr,
    /// Its size (the FDT's `totalsize`): the subtree's `blob-size`.
    pub size: u64,
}

/// The FDT bytes for `regions` `(name, start, size)`, laid out as the
/// kernel's libfdt sequential writer lays them out.
pub fn fdt_bytes(regions: &[(&str, PhysAddr, u64)]) -> Vec<u8> {
    let mut w = SwFdt::new();
    w.begin_node("");
    w.property("compatible", b"memblock-v1\0");
    for &(name, start, size) in regions {
        w.begin_node(name);
        w.property("compatible", b"reserve-mem-v1\0");
        w.property("start", &start.as_u64().to_ne_bytes());
        w.property("size", &size.to_ne_bytes());
        w.end_node();
    }
    w.end_node();
    w.finish()
}

/// Preserves each region (`name`, page-aligned `start`, non-zero page
/// multiple `size`) through the tracker, split as the kernel splits a page
/// range, and writes the FDT into a preserved order-0 page. On error
/// nothing stays preserved or allocated.
pub fn write<P>(p: &P, regions: &[(&str, PhysAddr, u64)]) -> Result<MemblockBlob, MemblockError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let unsupported = |name: &str, what| MemblockError::Unsupported { name: name.to_string(), what };
    for &(name, start, size) in regions {
        if name.is_empty() || name.contains(['/', '\0', '@']) {
            return Err(unsupported(name, "a node name needs 1 or more characters, none of '/', '@', NUL"));
        }
        if !start.is_page_aligned() || size == 0 || size % PAGE != 0 {
            return Err(unsupported(name, "start and size must be page aligned, size non-zero"));
        }
    }
    let dtb = fdt_bytes(regions);
    if dtb.len() > PAGE_SIZE {
        return Err(unsupported("", "the FDT exceeds a page"));
    }
    let mut preserved: Vec<(PhysAddr, Order)> = Vec::new();
    let undo = |p: &P, preserved: &[(PhysAddr, Order)]| {
        for &(pa, o) in preserved.iter().rev() {
            let _ = p.unpreserve(pa, o);
        }
    };
    for &(_, start, size) in regions {
        for (pa, o) in split(p, start, size / PAGE) {
            if let Err(e) = p.preserve(pa, o) {
                undo(p, &preserved);
                return Err(e.into());
            }
            preserved.push((pa, o));
        }
    }
    let page = p.alloc_pages(Order::ZERO).inspect_err(|_| undo(p, &preserved))?;
    let done = zero_phys(p, page, PAGE)
        .and_then(|()| write_phys_bytes(p, page, &dtb))
        .and_then(|()| p.preserve(page, Order::ZERO));
    if let Err(e) = done {
        p.free_pages(page, Order::ZERO);
        undo(p, &preserved);
        return Err(e.into());
    }
    Ok(MemblockBlob { pa: page, size: dtb.len() as u64 })
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_snake_case_and_join_the_fault() {
        let pa = PhysAddr::new(0x1000);
        let abi = AbiError::NotRam { pa, len: 1 };
        let region = |field, fault| MemblockError::Region { index: 0, name: String::new(), field, fault };
        let errors = [
            MemblockError::Blob { pa, field: "blob-size", fault: Fault::Zero },
            MemblockError::Blob { pa, field: "blob address", fault: Fault::NotPreserved(abi) },
            MemblockError::Compatible { node: String::new(), found: String::new(), expected: "x" },
            region("start", Fault::Misaligned(1)),
            region("size", Fault::BadProperty { len: 8 }),
            region("name", Fault::Duplicate { first: 0 }),
            region("start", Fault::Overlaps { other: 0 }),
            MemblockError::Unsupported { name: String::new(), what: "size" },
            MemblockError::Platform(abi),
        ];
        let kinds: Vec<&str> = errors.iter().map(MemblockError::kind).collect();
        assert_eq!(kho_abi::error::first_bad_kind(&kinds, "memblock_"), None);
        assert_eq!(kinds[0], "memblock_blob_zero");
        assert_eq!(kinds[2], "memblock_compatible");
        assert_eq!(kinds[3], "memblock_region_misaligned");
        assert_eq!(kinds[4], "memblock_region_bad_property");
        assert_eq!(kinds[8], "memblock_platform");
        let faults = [
            Fault::BadProperty { len: 8 },
            Fault::Misaligned(1),
            Fault::Zero,
            Fault::OutOfRange { value: 2, max: 1 },
            Fault::NotRam(abi),
            Fault::NotPreserved(abi),
            Fault::Duplicate { first: 0 },
            Fault::Overlaps { other: 0 },
        ];
        let names = faults.map(|f| f.kind());
        assert_eq!(kho_abi::error::first_bad_kind(&names, "memblock_"), None);
        for f in faults {
            assert_eq!(region("size", f).kind().strip_prefix("memblock_region_"), f.kind().strip_prefix("memblock_"));
        }
    }
}
