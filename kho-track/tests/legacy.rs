//! The `kho-v1` import on hostile maps: repeated and overlapping spans are
//! refused as the entry is read, blocks are checked before anything is
//! inserted, and a 1 GiB map of full bitmaps is refused at once.

#![cfg(not(loom))]

mod common;

use std::time::Instant;

use common::*;
use kho_abi::{GEOMETRY, KhoData, PAGE_SIZE, PhysAddr};
use kho_sim::{Machine, MachineConfig};
use kho_track::{BlockFault, ImportLimits, Incoming, TrackError, TreeFault, V1Fault};

const PAGE: u64 = PAGE_SIZE as u64;

fn write_u64(m: &Machine, pa: u64, v: u64) {
    m.write(PhysAddr::new(pa), &v.to_ne_bytes()).unwrap();
}

/// One chunk of a hand-built map: its order and `(phys_start, bitmap)`
/// entries.
struct Chunk {
    order: u32,
    entries: Vec<(u64, u64)>,
}

/// Lays out a `kho-v1` handover on `m`: chunk `i` at `chunk_pas[i]`, the
/// root FDT and the scratch array at the two given pages.
fn lay_out(m: &Machine, chunks: &[Chunk], chunk_pas: &[u64], fdt: u64, scratch_array: u64) -> KhoData {
    use dtoolkit::model::{DeviceTree, DeviceTreeProperty};
    for (i, c) in chunks.iter().enumerate() {
        let pa = chunk_pas[i];
        write_u64(m, pa, chunk_pas.get(i + 1).copied().unwrap_or(0));
        m.write(PhysAddr::new(pa + 8), &c.order.to_ne_bytes()).unwrap();
        m.write(PhysAddr::new(pa + 12), &(c.entries.len() as u32).to_ne_bytes()).unwrap();
        let mut bytes = Vec::with_capacity(16 * c.entries.len());
        for &(start, bitmap) in &c.entries {
            bytes.extend_from_slice(&start.to_ne_bytes());
            bytes.extend_from_slice(&bitmap.to_ne_bytes());
        }
        m.write(PhysAddr::new(pa + 16), &bytes).unwrap();
    }
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v1"));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", chunk_pas[0].to_ne_bytes()));
    m.write(PhysAddr::new(fdt), &tree.to_dtb()).unwrap();
    kho_abi::write_phys(m, PhysAddr::new(scratch_array), &m.scratch()[0]).unwrap();
    KhoData { fdt_addr: fdt, fdt_size: PAGE, scratch_addr: scratch_array, scratch_size: 16 }
}

/// Imports a map of `chunks` on a default machine; pages 0.. hold the
/// chunks, then the FDT and the scratch array. `bitmaps` are written first.
fn import_v1(chunks: &[Chunk], bitmaps: &[(u64, Vec<u64>)]) -> (Result<(), TrackError>, u64) {
    let m = machine();
    let n = chunks.len() as u64;
    let chunk_pas: Vec<u64> = (0..n).map(|i| page(&m, 2 + i).as_u64()).collect();
    for (pa, words) in bitmaps {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        m.write(PhysAddr::new(*pa), &bytes).unwrap();
    }
    let data = lay_out(&m, chunks, &chunk_pas, page(&m, 0).as_u64(), page(&m, 1).as_u64());
    let m = m.kexec(data);
    let before = m.allocation_count();
    let r = Incoming::import(&m, &data).map(|inc| inc.finish());
    let allocations = m.allocation_count() - before;
    assert_eq!(m.outstanding_pages(), 0, "the import left pages allocated: {r:?}");
    (r, allocations)
}

#[test]
fn repeated_span_is_refused_at_its_entry() {
    let m = machine();
    let (b0, b1) = (page(&m, 100).as_u64(), page(&m, 101).as_u64());
    let start = m.ram_base().as_u64();
    let chunks = [Chunk { order: 0, entries: vec![(start, b0), (start, b1)] }];
    let (r, _) = import_v1(&chunks, &[(b0, vec![1]), (b1, vec![1])]);
    let e = r.unwrap_err();
    let chunk = page(&m, 2);
    assert!(
        matches!(e, TrackError::V1Entry { chunk: c, index: 1, fault: V1Fault::Repeated, .. } if c == chunk),
        "{e:?}"
    );
    assert_eq!(kho_abi::ToErrno::errno(&e), kho_abi::Errno::Inval);
}

#[test]
fn overlapping_span_is_refused_at_its_entry() {
    // Two order-0 entries whose spans (32768 pages each at 4 KiB) overlap
    // by one block, in separate chunks: the second chunk's entry is named.
    let m = machine();
    let (b0, b1) = (page(&m, 100).as_u64(), page(&m, 101).as_u64());
    let span = GEOMETRY.bitmap_len as u64 * PAGE;
    let s0 = m.ram_base().as_u64();
    let s1 = s0 + span - PAGE;
    let chunks = [Chunk { order: 0, entries: vec![(s0, b0)] }, Chunk { order: 0, entries: vec![(s1, b1)] }];
    // (Bit 0 of the second span is the last page below the scratch area.)
    let (r, _) = import_v1(&chunks, &[(b0, vec![1 << 20]), (b1, vec![1])]);
    let e = r.unwrap_err();
    let chunk = page(&m, 3);
    assert!(
        matches!(e, TrackError::V1Entry { chunk: c, index: 0, fault: V1Fault::Overlaps, .. } if c == chunk),
        "{e:?}"
    );
    // Below the earlier span works the same way.
    // (An empty bitmap for the first entry: its span may lie beyond RAM.)
    let chunks = [Chunk { order: 0, entries: vec![(s1, b1), (s0, b0)] }];
    let (r, _) = import_v1(&chunks, &[(b0, vec![1 << 20]), (b1, vec![0])]);
    assert!(matches!(r, Err(TrackError::V1Entry { index: 1, fault: V1Fault::Overlaps, .. })), "{r:?}");
    // Spans of different orders may overlap (their blocks must not).
    let chunks = [Chunk { order: 0, entries: vec![(s0, b0)] }, Chunk { order: 1, entries: vec![(s0, b1)] }];
    let (r, _) = import_v1(&chunks, &[(b0, vec![1 << 20]), (b1, vec![1 << 30])]);
    r.unwrap();
}

#[test]
fn span_past_the_address_space_is_refused() {
    let m = machine();
    let b0 = page(&m, 100).as_u64();
    let start = u64::MAX - PAGE + 1;
    let chunks = [Chunk { order: 0, entries: vec![(start, b0)] }];
    let (r, _) = import_v1(&chunks, &[(b0, vec![1])]);
    assert!(matches!(r, Err(TrackError::V1Entry { fault: V1Fault::SpanOverflow, .. })), "{r:?}");
}

#[test]
fn blocks_are_checked_before_anything_is_inserted() {
    // A bitmap of 64 blocks whose last lies just past the end of RAM: the
    // import names that block and allocated only the new tree's root table
    // (no leaf, no table below it).
    let m = machine();
    let b0 = page(&m, 100).as_u64();
    let start = m.ram_end().as_u64() - 63 * PAGE;
    let chunks = [Chunk { order: 0, entries: vec![(start, b0)] }];
    let (r, allocations) = import_v1(&chunks, &[(b0, vec![u64::MAX])]);
    let e = r.unwrap_err();
    assert!(matches!(e, TrackError::Block { pa, fault: BlockFault::NotRam, .. } if pa == m.ram_end()), "{e:?}");
    assert_eq!(allocations, 1, "blocks were inserted before they were checked");
    // A block in scratch, in a run that starts outside it.
    let scratch = m.scratch()[0].addr;
    let start = scratch - 64 * PAGE;
    let start = start & !((PAGE << 6) - 1);
    let chunks = [Chunk { order: 0, entries: vec![(start, b0)] }];
    let (r, allocations) = import_v1(&chunks, &[(b0, vec![u64::MAX, u64::MAX])]);
    let e = r.unwrap_err();
    assert!(matches!(e, TrackError::Block { pa, fault: BlockFault::InScratch, .. } if pa.as_u64() == scratch), "{e:?}");
    assert_eq!(allocations, 1);
}

#[test]
fn first_chunk_faults_name_the_map_root() {
    let m = machine();
    let chunks = [Chunk { order: 0, entries: vec![] }];
    let data = lay_out(&m, &chunks, &[page(&m, 2).as_u64()], page(&m, 0).as_u64(), page(&m, 1).as_u64());
    // The first chunk in scratch: named as the map's root.
    let fdt = kho_track::fdt::build("kho-v1", PhysAddr::new(m.scratch()[0].addr), &[]).unwrap();
    m.write(page(&m, 0), &fdt).unwrap();
    let m = m.kexec(data);
    let e = Incoming::import(&m, &data).unwrap_err();
    assert_eq!(e, TrackError::MapRoot { pa: PhysAddr::new(m.scratch()[0].addr), fault: TreeFault::InScratch });
}

#[test]
fn map_pages_are_capped() {
    // Three chunks of one entry each: six map pages; a cap of five refuses.
    let m = machine();
    let bitmaps: Vec<u64> = (0..3).map(|i| page(&m, 100 + i).as_u64()).collect();
    let span = GEOMETRY.bitmap_len as u64 * PAGE;
    let chunks: Vec<Chunk> = (0..3)
        .map(|i| Chunk { order: 0, entries: vec![(m.ram_base().as_u64() + i * span, bitmaps[i as usize])] })
        .collect();
    let chunk_pas: Vec<u64> = (0..3).map(|i| page(&m, 2 + i).as_u64()).collect();
    for &b in &bitmaps {
        write_u64(&m, b, 0);
    }
    let data = lay_out(&m, &chunks, &chunk_pas, page(&m, 0).as_u64(), page(&m, 1).as_u64());
    let m = m.kexec(data);
    let e = Incoming::import_with(&m, &data, &ImportLimits { max_map_pages: 5 }).unwrap_err();
    assert_eq!(e, TrackError::MapTooLarge { pages: 6, max: 5 });
    assert_eq!(m.outstanding_pages(), 0);
    Incoming::import_with(&m, &data, &ImportLimits { max_map_pages: 6 }).unwrap().finish();
}

/// The hostile map of the round-2 review, at 1 GiB: every page not used by
/// chunks is a full bitmap, and every entry names the same 32768 blocks.
/// The importer refuses it at the second entry; the time is printed (run
/// with `--nocapture`), never asserted. (4 KiB pages: with larger pages
/// one bitmap names more than this RAM, so the first is refused for its
/// blocks.)
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
#[test]
fn hostile_1gib_v1_map_is_refused_at_once() {
    const RAM: u64 = 1 << 30;
    let cfg = MachineConfig::with_ram(PhysAddr::new(0x1_0000_0000), RAM);
    let m = Machine::new(cfg).unwrap();
    let base = m.ram_base().as_u64();
    let scratch = m.scratch()[0];
    let total = RAM / PAGE;
    // Pages 0 and 1: FDT and scratch array; then the chunks; then bitmaps
    // on every other page outside scratch.
    let per_chunk = kho_abi::legacy::V1_CHUNK_ENTRIES as u64;
    let free: Vec<u64> = (2..total)
        .map(|i| base + i * PAGE)
        .filter(|&pa| !scratch_overlaps(&[scratch], PhysAddr::new(pa), PAGE))
        .collect();
    // c chunks + c * per_chunk bitmaps <= free pages.
    let nchunks = free.len() as u64 / (per_chunk + 1);
    let (chunk_pas, bitmap_pas) = free.split_at(nchunks as usize);
    let bitmap_pas = &bitmap_pas[..(nchunks * per_chunk) as usize];
    // Full bitmaps, written in 16 MiB strokes (bitmaps are contiguous but
    // for the scratch hole).
    let ones = vec![0xffu8; 16 << 20];
    let mut i = 0;
    while i < bitmap_pas.len() {
        let mut j = i + 1;
        while j < bitmap_pas.len() && bitmap_pas[j] == bitmap_pas[j - 1] + PAGE && (j - i) < ones.len() / PAGE as usize
        {
            j += 1;
        }
        m.write(PhysAddr::new(bitmap_pas[i]), &ones[..(j - i) * PAGE as usize]).unwrap();
        i = j;
    }
    let chunks: Vec<Chunk> = bitmap_pas
        .chunks(per_chunk as usize)
        .map(|b| Chunk { order: 0, entries: b.iter().map(|&pa| (base, pa)).collect() })
        .collect();
    let data = lay_out(&m, &chunks, chunk_pas, base, base + PAGE);
    let m = m.kexec(data);
    let t = Instant::now();
    let e = Incoming::import(&m, &data).unwrap_err();
    let took = t.elapsed();
    eprintln!(
        "hostile kho-v1 map over 1 GiB ({} chunks, {} full bitmaps): refused in {:?}: {e}",
        chunk_pas.len(),
        bitmap_pas.len(),
        took
    );
    assert!(
        matches!(e, TrackError::V1Entry { chunk, index: 1, fault: V1Fault::Repeated, .. } if chunk.as_u64() == chunk_pas[0]),
        "{e:?}"
    );
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn chunk_links_are_checked_by_the_chain_walker() {
    use kho_abi::chain::{ChainError, ChainFault, LinkField};
    let m = machine();
    let chunks = [Chunk { order: 0, entries: vec![] }, Chunk { order: 0, entries: vec![] }];
    let (c0, c1) = (page(&m, 2), page(&m, 3));
    let data = lay_out(&m, &chunks, &[c0.as_u64(), c1.as_u64()], page(&m, 0).as_u64(), page(&m, 1).as_u64());
    // The second chunk links back to the first: a cycle, named as such.
    write_u64(&m, c1.as_u64(), c0.as_u64());
    let m = m.kexec(data);
    let e = Incoming::import(&m, &data).unwrap_err();
    let fault = ChainFault::Cycle { first: 0 };
    assert_eq!(e, TrackError::V1Chain(ChainError { index: 2, pa: c0, field: LinkField::Next, fault }));
    assert_eq!(e.kind(), "chain_cycle");
    // A misaligned link.
    write_u64(&m, c1.as_u64(), c0.as_u64() + 8);
    let e = Incoming::import(&m, &data).unwrap_err();
    assert_eq!(e.kind(), "chain_misaligned");
    assert!(matches!(e, TrackError::V1Chain(ChainError { index: 2, field: LinkField::Next, .. })), "{e:?}");
    // A link past RAM.
    write_u64(&m, c1.as_u64(), m.ram_end().as_u64());
    let e = Incoming::import(&m, &data).unwrap_err();
    assert_eq!(e.kind(), "chain_not_ram");
    assert_eq!(m.outstanding_pages(), 0);
}
