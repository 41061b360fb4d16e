//! Whole handovers through kho-sim: preserve, kexec, boot (which poisons
//! every page neither preserved nor in use), restore, map the blocks at
//! consecutive virtual addresses and check the contents by checksum.

mod common;

use common::*;
use kho_abi::{Order, PageAlloc, PhysAddr, WithTracker};
use kho_sim::{ByteStream, Checksum, Machine, ModelTracker, SimMapping};
use kho_vmalloc::{KhoVmalloc, VmallocError};

/// The area's checksum in virtual order, block by block.
fn area_checksum(m: &Machine, blocks: &[PhysAddr], order: Order) -> u64 {
    let bytes = order.checked_bytes().unwrap() as usize;
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; bytes];
    for &b in blocks {
        m.read(b, &mut buf).unwrap();
        sum.update(&buf);
    }
    sum.finish()
}

fn map(m: &Machine, blocks: &[PhysAddr], order: Order) -> SimMapping {
    m.map_same_order(blocks, order).unwrap()
}

/// Preserves `blocks` (filled with `fill`), hands over, restores, maps and
/// checks; returns the next kernel's machine, tracker and descriptor.
fn round_trip(m: Machine, blocks: &[PhysAddr], order: Order) -> (Machine, ModelTracker, KhoVmalloc) {
    let sum = area_checksum(&m, blocks, order);
    let (t, d) = preserve(&m, blocks, order);
    let chunks: Vec<PhysAddr> = chain(&m, &d).iter().map(|c| c.0).collect();
    // A page in use but not preserved: the next kernel reuses it.
    let scrap = m.alloc_pages(Order::ZERO).unwrap();
    m.fill_random(scrap, PAGE, 99).unwrap();

    let (next, incoming) = handover(m, &t);
    assert!(next.is_poisoned(scrap), "unpreserved memory is gone");
    assert!(chunks.iter().all(|&c| !next.is_poisoned(c)), "chunk pages survive");
    assert_eq!(next.reserved_pages(), t.preserved_pages());

    let (area, got) = restore(&next, &incoming, &d).unwrap();
    assert_eq!(got, blocks, "blocks in virtual order");
    assert_eq!(area.chunks as usize, chunks.len());
    assert_eq!(incoming.unclaimed(), vec![]);
    assert_eq!(next.reserved_pages(), t.preserved_pages() - chunks.len() as u64, "chunk pages released");
    assert_eq!(next.outstanding_pages(), 0);

    // One mapping per window of blocks: each scattered page is a mapping of
    // its own for the host kernel, which allows only so many per process
    // (`vm.max_map_count`, 65530 by default).
    let mut s = Checksum::new();
    let mut mapped = 0;
    for window in got.chunks(MAP_WINDOW) {
        let mapping = map(&next, window, order);
        s.update(&mapping);
        mapped += mapping.len() as u64;
    }
    assert_eq!(mapped, u64::from(d.total_pages) * PAGE);
    assert_eq!(s.finish(), sum, "the mapped area has the original contents");
    (next, incoming, d)
}

#[test]
fn scattered_pages_come_back_as_one_slice() {
    let m = machine();
    let blocks = scattered(&m, 2000, Order::ZERO, 42);
    for (i, &b) in blocks.iter().enumerate() {
        m.fill_random(b, PAGE, i as u64).unwrap();
    }
    let (next, _, _) = round_trip(m, &blocks, Order::ZERO);
    // Page i of the slice is the page filled with seed i.
    let mapping = map(&next, &blocks, Order::ZERO);
    for i in [0usize, 1, 510, 511, 1022, 1999] {
        let mut want = vec![0u8; PAGE_SIZE];
        ByteStream::new(i as u64).fill(&mut want);
        assert_eq!(&mapping[i * PAGE_SIZE..(i + 1) * PAGE_SIZE], &want[..], "page {i}");
    }
    // The chunk pages went back to the allocator: the next kernel can
    // allocate (and reuse) them.
    let _ = next.alloc_pages(Order::ZERO).unwrap();
}

const PAGE_SIZE: usize = kho_abi::PAGE_SIZE;

/// Blocks mapped at once.
const MAP_WINDOW: usize = 16384;

/// A 1 GiB area of 262144 order-0 pages in 514 chunk pages, every page
/// filled with its own content and the whole area checksummed through its mapping (a few
/// seconds in debug builds, where kho-sim is optimized).
#[test]
fn one_gib_area_of_order_0_pages() {
    let m = machine_with(1280 << 20);
    let blocks = scattered(&m, 1 << 18, Order::ZERO, 0);
    // One stream for the whole area (a stream per page costs more to seed
    // than to fill).
    let mut stream = ByteStream::new(7);
    let mut page = vec![0u8; PAGE_SIZE];
    for &b in &blocks {
        stream.fill(&mut page);
        m.write(b, &page).unwrap();
    }
    let (_, _, d) = round_trip(m, &blocks, Order::ZERO);
    assert_eq!(d.total_pages, 1 << 18);
}

/// The blocks a restore reports, mapped in that order, read as the area:
/// a failed restore claims nothing, a successful one maps block by block.
#[test]
fn restored_blocks_map_as_one_slice_or_nothing_is_claimed() {
    let m = machine();
    let order = o(2);
    let blocks: Vec<PhysAddr> = (0..6).map(|_| m.alloc_pages(order).unwrap()).rev().collect();
    for (i, &b) in blocks.iter().enumerate() {
        m.fill_random(b, 4 * PAGE, i as u64).unwrap();
    }
    let sums: Vec<u64> = blocks.iter().map(|&b| m.checksum(b, 4 * PAGE).unwrap()).collect();
    let (t, desc) = preserve(&m, &blocks, order);
    let (next, incoming) = handover(m, &t);

    let bad = KhoVmalloc { total_pages: desc.total_pages + 4, ..desc };
    let e = kho_vmalloc::restore(&WithTracker::new(&next, &incoming), &bad, |_| {}).unwrap_err();
    assert!(matches!(e, VmallocError::ZeroEntry { .. }), "{e}");
    assert!(incoming.claimed().is_empty());

    let mut got = Vec::new();
    let area = kho_vmalloc::restore(&WithTracker::new(&next, &incoming), &desc, |pa| got.push(pa)).unwrap();
    assert_eq!(area.blocks, 6);
    let slice = next.map_same_order(&got, area.order).unwrap();
    assert_eq!(slice.len(), 6 * 4 * PAGE_SIZE);
    for (i, piece) in slice.chunks(4 * PAGE_SIZE).enumerate() {
        let mut sum = Checksum::new();
        sum.update(piece);
        assert_eq!(sum.finish(), sums[i], "block {i}");
    }
    assert!(next.map_same_order(&[PhysAddr::new(0x1000)], order).is_err());
}
