//! `kho-test-v1`: the `kho_test` subtree Linux's KHO self-test
//! (`CONFIG_TEST_KEXEC_HANDOVER`) writes at boot and checks in the next
//! kernel.
//!
//! # Layout
//!
//! The blob is an FDT in a preserved page of its own (property values raw,
//! native-endian):
//!
//! ```text
//! / {
//!     compatible = "kho-test-v1";
//!     magic = <u32 0x4b484f21>;
//!     data {
//!         nr_folios = <u32>;
//!         folios_info = <16 bytes: kho_vmalloc of a u64 array>;
//!         csum = <u32>;
//!     };
//! };
//! ```
//!
//! The `vmalloc-v1` area holds `nr_folios` u64 entries, `PA | order` (the
//! order in the bits below the page size), one per folio; each folio is
//! preserved at its order and filled with random bytes. `csum` is x86-64
//! [`csum_partial`] carried over the folios in list order, each call seeded
//! with the previous result, starting from 0.
//!
//! [`restore`] does what the next kernel does: validates, claims every
//! folio, recomputes the checksum and refuses a mismatch
//! ([`SelftestError::Checksum`]). [`inspect`] runs the same checks without
//! keeping anything and reports both checksums instead of refusing.
//! [`write()`] generates the state as the kernel does.
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let blob = kho_selftest::write(&WithTracker::new(&m, &t), 1 << 20, 42)?;
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let test = kho_selftest::inspect(&WithTracker::new(&m2, &t2), blob.pa, blob.size)?;
//! assert!(test.checksum_holds());
//! assert_eq!(test.computed_csum, blob.csum);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod csum;
mod error;

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use dtoolkit::fdt::Fdt;
use dtoolkit::{Node, Property};
use kho_abi::{
    Claim, KhoVmalloc, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, VmallocFlags, read_phys,
    read_phys_bytes, write_phys, write_phys_bytes, zero_phys,
};
use kho_probe::fdt::SwFdt;
use kho_probe::{DeferFree, Probe};
use zerocopy::FromBytes;

pub use csum::{Csum64, csum_partial};
pub use error::{Fault, SelftestError};

/// Name of the KHO subtree.
pub const SUBTREE: &str = "kho_test";
/// Compatible of the blob's root.
pub const KHO_TEST_V1: &str = "kho-test-v1";
/// The root's `magic`.
pub const MAGIC: u32 = 0x4b48_4f21;

const PAGE: u64 = PAGE_SIZE as u64;
const FDT_HEADER: u64 = 40;
/// Bytes read at a time while checksumming.
const CHUNK: usize = 64 << 10;

/// The decoded self-test state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KhoTest {
    /// PA of the FDT blob.
    pub blob: PhysAddr,
    /// Order of the preserved block holding it.
    pub blob_order: Order,
    /// The folios, in list order.
    pub folios: Vec<(PhysAddr, Order)>,
    /// The list's data blocks and their order.
    pub list_blocks: Vec<PhysAddr>,
    /// Order of the list's blocks.
    pub list_order: Order,
    /// The list's chunk pages.
    pub list_chunks: Vec<PhysAddr>,
    /// The `csum` the previous kernel stored.
    pub stored_csum: u32,
    /// The checksum of the folios as found.
    pub computed_csum: u32,
}

impl KhoTest {
    /// Whether the folios still checksum to what was stored: the next
    /// kernel's `KHO restore succeeded`.
    pub fn checksum_holds(&self) -> bool {
        self.stored_csum == self.computed_csum
    }

    /// Pages held by the folios.
    pub fn pages(&self) -> u64 {
        self.folios.iter().map(|(_, o)| o.pages()).sum()
    }
}

/// The self-test state adopted by the next kernel: blob, list and folios
/// claimed (the list's chunk pages freed, as the kernel frees them).
#[derive(Debug)]
pub struct RestoredKhoTest {
    test: KhoTest,
    blob_order: Order,
}

impl RestoredKhoTest {
    /// The decoded state.
    pub fn test(&self) -> &KhoTest {
        &self.test
    }

    /// Frees everything: blob, list and folios.
    pub fn free<P: PageAlloc + ?Sized>(self, p: &P) -> KhoTest {
        p.free_pages(self.test.blob, self.blob_order);
        for &b in &self.test.list_blocks {
            p.free_pages(b, self.test.list_order);
        }
        for &(pa, o) in &self.test.folios {
            p.free_pages(pa, o);
        }
        self.test
    }
}

/// Adopts the `kho_test` subtree at `blob`, `size` bytes, and checks it as
/// the next kernel does.
///
/// Checked: the blob (page aligned, FDT-sized, preserved as one block of
/// its size's order, claimed; `totalsize` within `size`; a well-formed
/// FDT); root `compatible` exactly `kho-test-v1` and `magic`; node `data`
/// with `nr_folios` (4 bytes), `folios_info` (16) and `csum` (4); the list
/// (a `vmalloc-v1` area restored through `kho-vmalloc`) holding exactly
/// `nr_folios` u64 entries; each entry's order at most the platform's,
/// its PA aligned to it, RAM, preserved at that order (claimed); and the
/// checksum of the folios, in list order, equal to `csum`.
///
/// # Errors
///
/// A [`SelftestError`] naming the property or the folio entry and field;
/// [`SelftestError::Checksum`] if the data changed. Nothing stays claimed.
pub fn restore<P>(p: &P, blob: PhysAddr, size: u64) -> Result<RestoredKhoTest, SelftestError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let (test, blob_order) = claim_and_decode(p, blob, size, true)?;
    Ok(RestoredKhoTest { test, blob_order })
}

/// [`restore`]'s checks and decoding with every claim given back; a
/// checksum mismatch is reported ([`KhoTest::checksum_holds`]), not an
/// error.
pub fn inspect<P>(p: &P, blob: PhysAddr, size: u64) -> Result<KhoTest, SelftestError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let probe = Probe::new(p);
    let result = claim_and_decode(&probe, blob, size, false).map(|(t, _)| t);
    probe.release();
    result
}

/// Claims and decodes; with `strict`, a checksum mismatch is an error
/// (and undone like any other).
fn claim_and_decode<P>(p: &P, blob: PhysAddr, size: u64, strict: bool) -> Result<(KhoTest, Order), SelftestError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bad = |field, fault| SelftestError::Blob { pa: blob, field, fault };
    let max_bytes = p.max_order().pages() * PAGE;
    if size < FDT_HEADER || size > max_bytes {
        return Err(bad("blob-size", Fault::OutOfRange { value: size, max: max_bytes }));
    }
    if !blob.is_page_aligned() {
        return Err(bad("blob address", Fault::Misaligned));
    }
    // The kernel keeps this FDT in a folio of its own whose order its size
    // does not tell (an order-1 folio in 7.2): claim the block there.
    let order = kho_probe::claim_block(p, blob, size).map_err(|e| bad("blob address", Fault::NotPreserved(e)))?;
    let defer = DeferFree::new(p);
    let mut held = Held::default();
    let decoded = decode(&defer, blob, order, size, &mut held).and_then(|test| {
        if strict && !test.checksum_holds() {
            held.folios = test.folios;
            return Err(SelftestError::Checksum { stored: test.stored_csum, computed: test.computed_csum });
        }
        Ok(test)
    });
    match decoded {
        Ok(test) => {
            defer.commit();
            Ok((test, order))
        }
        Err(e) => {
            for &(pa, o) in held.folios.iter().rev() {
                p.unclaim(pa, o);
            }
            for &(pa, o) in held.list.iter().rev() {
                p.unclaim(pa, o);
            }
            defer.undo();
            p.unclaim(blob, order);
            Err(e)
        }
    }
}

#[derive(Default)]
struct Held {
    folios: Vec<(PhysAddr, Order)>,
    list: Vec<(PhysAddr, Order)>,
}

/// The 8 or 4 raw bytes of a property, or which property is wrong.
fn prop<const N: usize>(
    node: &dtoolkit::fdt::FdtNode<'_>,
    path: &'static str,
    name: &'static str,
) -> Result<[u8; N], SelftestError> {
    node.property(name).and_then(|v| <[u8; N]>::try_from(v.value()).ok()).ok_or(SelftestError::Property {
        node: path,
        prop: name,
        len: N,
    })
}

fn decode<P>(
    p: &DeferFree<'_, P>,
    blob: PhysAddr,
    blob_order: Order,
    size: u64,
    held: &mut Held,
) -> Result<KhoTest, SelftestError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bytes = kho_probe::fdt::read_blob(p, blob, size).map_err(|e| match e {
        kho_probe::fdt::BlobReadError::NotRam(e) => {
            SelftestError::Blob { pa: blob, field: "blob address", fault: Fault::NotRam(e) }
        }
        kho_probe::fdt::BlobReadError::TotalSize { total } => {
            SelftestError::Blob { pa: blob, field: "totalsize", fault: Fault::OutOfRange { value: total, max: size } }
        }
    })?;
    let fdt = Fdt::new(&bytes).map_err(|source| SelftestError::Fdt { pa: blob, source })?;
    let root = fdt.root();
    let compat = root.property("compatible").map(|c| c.value().to_vec()).unwrap_or_default();
    if compat.split_last() != Some((&0, KHO_TEST_V1.as_bytes())) {
        return Err(SelftestError::Compatible { found: alloc::string::String::from_utf8_lossy(&compat).to_string() });
    }
    let magic = u32::from_ne_bytes(prop::<4>(&root, "/", "magic")?);
    if magic != MAGIC {
        return Err(SelftestError::Magic { found: magic });
    }
    let data = root.child("data").ok_or(SelftestError::Property { node: "/", prop: "data", len: 0 })?;
    let nr = u32::from_ne_bytes(prop::<4>(&data, "/data", "nr_folios")?);
    let info = prop::<16>(&data, "/data", "folios_info")?;
    let stored_csum = u32::from_ne_bytes(prop::<4>(&data, "/data", "csum")?);
    let list = KhoVmalloc::read_from_bytes(&info).map_err(|_| SelftestError::Property {
        node: "/data",
        prop: "folios_info",
        len: 16,
    })?;
    let need = (u64::from(nr) * 8).div_ceil(PAGE);
    if need != u64::from(list.total_pages) {
        return Err(SelftestError::ListSize { nr_folios: nr, need, pages: u64::from(list.total_pages) });
    }
    let mut list_blocks = Vec::new();
    let area = kho_vmalloc::restore(p, &list, |pa| list_blocks.push(pa)).map_err(SelftestError::List)?;
    let list_order = area.order;
    held.list = list_blocks.iter().map(|&b| (b, list_order)).collect();
    let list_chunks = p.pending().iter().map(|&(pa, _)| pa).collect();
    let block_bytes = list_order.pages() * PAGE;
    let max = p.max_order();
    let mut sum = 0u32;
    let mut buf = vec![0u8; CHUNK];
    for entry in 0..u64::from(nr) {
        let off = entry * 8;
        let raw: u64 =
            read_phys(p, PhysAddr::new(list_blocks[(off / block_bytes) as usize].as_u64() + off % block_bytes))?;
        let bad = |field, fault| SelftestError::Folio { entry, raw, field, fault };
        let order = Order::new_at_most(raw & (PAGE - 1), max, "folio order")
            .map_err(|_| bad("order", Fault::OutOfRange { value: raw & (PAGE - 1), max: u64::from(max.get()) }))?;
        let pa = PhysAddr::new(raw & !(PAGE - 1));
        if !order.aligns(pa) {
            return Err(bad("pa", Fault::Misaligned));
        }
        let len = order.pages() * PAGE;
        p.phys_to_virt(pa, len).map_err(|e| bad("pa", Fault::NotRam(e)))?;
        p.claim(pa, order).map_err(|e| bad("pa", Fault::NotPreserved(e)))?;
        held.folios.push((pa, order));
        let mut c = Csum64::new(sum);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK as u64) as usize;
            read_phys_bytes(p, PhysAddr::new(pa.as_u64() + at), &mut buf[..n])?;
            c = c.add_bytes(&buf[..n]);
            at += n as u64;
        }
        sum = c.fold();
    }
    Ok(KhoTest {
        blob,
        blob_order,
        folios: core::mem::take(&mut held.folios),
        list_blocks,
        list_order,
        list_chunks,
        stored_csum,
        computed_csum: sum,
    })
}

/// What [`write()`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KhoTestBlob {
    /// PA of the FDT: the subtree's `preserved-data`.
    pub pa: PhysAddr,
    /// Its size (`totalsize`): the subtree's `blob-size`.
    pub size: u64,
    /// The folios, in list order.
    pub folios: Vec<(PhysAddr, Order)>,
    /// The checksum stored.
    pub csum: u32,
    /// The list's descriptor (`folios_info`).
    pub list: KhoVmalloc,
    /// The list's pages, in order.
    pub list_pages: Vec<PhysAddr>,
}

/// The FDT bytes for a list descriptor, folio count and checksum, laid out
/// as the kernel's libfdt sequential writer lays them out.
pub fn fdt_bytes(nr_folios: u32, folios_info: &KhoVmalloc, csum: u32) -> Vec<u8> {
    let mut w = SwFdt::new();
    w.begin_node("");
    w.property("compatible", b"kho-test-v1\0");
    w.property("magic", &MAGIC.to_ne_bytes());
    w.begin_node("data");
    w.property("nr_folios", &nr_folios.to_ne_bytes());
    w.property("folios_info", zerocopy::IntoBytes::as_bytes(folios_info));
    w.property("csum", &csum.to_ne_bytes());
    w.end_node();
    w.end_node();
    w.finish()
}

/// A small deterministic generator for the folios' random bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Generates the self-test's state as the kernel does at boot: folios of
/// random orders (up to the platform's largest, never past `max_mem`
/// bytes in all) filled with random bytes from `seed`, each preserved at
/// its order; their `PA | order` list in order-0 pages preserved as a
/// `vmalloc-v1` area; the checksum; and the FDT in a preserved order-1
/// folio, as 7.2 keeps it.
/// On error nothing stays allocated or preserved.
pub fn write<P>(p: &P, max_mem: u64, seed: u64) -> Result<KhoTestBlob, SelftestError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let mut done: Vec<(PhysAddr, Order, bool)> = Vec::new();
    let mut list = None;
    let result = build(p, max_mem, seed, &mut done, &mut list);
    if result.is_err() {
        if let Some(list) = list {
            let _ = kho_vmalloc::unpreserve(p, &list);
        }
        for (pa, o, preserved) in done.into_iter().rev() {
            if preserved {
                let _ = p.unpreserve(pa, o);
            }
            p.free_pages(pa, o);
        }
    }
    result
}

fn alloc<P>(
    p: &P,
    order: Order,
    preserve: bool,
    done: &mut Vec<(PhysAddr, Order, bool)>,
) -> Result<PhysAddr, SelftestError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let pa = p.alloc_pages(order)?;
    done.push((pa, order, false));
    zero_phys(p, pa, order.pages() * PAGE)?;
    if preserve {
        p.preserve(pa, order)?;
        if let Some(last) = done.last_mut() {
            last.2 = true;
        }
    }
    Ok(pa)
}

fn build<P>(
    p: &P,
    max_mem: u64,
    seed: u64,
    done: &mut Vec<(PhysAddr, Order, bool)>,
    list_out: &mut Option<KhoVmalloc>,
) -> Result<KhoTestBlob, SelftestError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let mut rng = XorShift(seed | 1);
    let max = p.max_order().get();
    let mut left = max_mem / PAGE;
    let mut folios = Vec::new();
    let mut csum = 0u32;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let mut o = (rng.next() % u64::from(max + 1)) as u32;
        while (1u64 << o) > left {
            o -= 1;
        }
        let order = Order::new(u64::from(o), "folio order")?;
        let pa = alloc(p, order, true, done)?;
        let len = order.pages() * PAGE;
        let mut c = Csum64::new(csum);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(CHUNK as u64) as usize;
            for w in buf[..n].chunks_exact_mut(8) {
                w.copy_from_slice(&rng.next().to_le_bytes());
            }
            write_phys_bytes(p, PhysAddr::new(pa.as_u64() + at), &buf[..n])?;
            c = c.add_bytes(&buf[..n]);
            at += n as u64;
        }
        csum = c.fold();
        folios.push((pa, order));
        left -= order.pages();
    }
    let nr =
        u32::try_from(folios.len()).map_err(|_| SelftestError::Unsupported { what: "more than u32::MAX folios" })?;
    let mut pages = Vec::new();
    let per_page = PAGE_SIZE / 8;
    for chunk in folios.chunks(per_page) {
        let page = alloc(p, Order::ZERO, false, done)?;
        for (k, &(pa, o)) in chunk.iter().enumerate() {
            write_phys(p, PhysAddr::new(page.as_u64() + k as u64 * 8), &(pa.as_u64() | u64::from(o.get())))?;
        }
        pages.push(page);
    }
    let list = if pages.is_empty() {
        KhoVmalloc::default()
    } else {
        kho_vmalloc::preserve(p, pages.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
            .map_err(SelftestError::Vmalloc)?
    };
    *list_out = Some(list);
    let dtb = fdt_bytes(nr, &list, csum);
    // 7.2 keeps this FDT in an order-1 folio (seen in the lab's dumps).
    let blob = alloc(p, Order::new(1, "kho_test FDT order")?, true, done)?;
    write_phys_bytes(p, blob, &dtb)?;
    Ok(KhoTestBlob { pa: blob, size: dtb.len() as u64, folios, csum, list, list_pages: pages })
}
