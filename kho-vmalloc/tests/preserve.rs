//! The outgoing side on a simulated machine: the exact bytes written, chunk
//! boundaries, every order, rejected arguments, and that every failure and
//! every unpreserve leaves nothing preserved and nothing allocated.

mod common;

use std::ops::ControlFlow;

use common::*;
use kho_abi::{AbiError, Errno, KhoVmalloc, Order, PageAlloc, PhysAddr, ToErrno, VmallocFlags, WithTracker};
use kho_sim::ModelTracker;
use kho_track::{Tracker, TrackerOptions};
use kho_vmalloc::{PageKind, VMALLOC_CHUNK_ENTRIES, VmallocError};
use zerocopy::IntoBytes;

#[test]
fn descriptor_and_chunk_bytes_are_exact() {
    let m = machine();
    let blocks = [0x1_0000_2000u64, 0x1_0000_7000, 0x1_0000_1000].map(PhysAddr::new);
    let t = ModelTracker::new();
    let flags = VmallocFlags::ALLOC | VmallocFlags::HUGE_VMAP;
    let d = kho_vmalloc::preserve(&WithTracker::new(&m, &t), blocks, Order::ZERO, flags).unwrap();
    assert_eq!(m.outstanding_pages(), 1, "one chunk page");
    let chunk = d.first;
    assert_ne!(chunk, 0);

    let mut want = Vec::new();
    want.extend_from_slice(&chunk.to_ne_bytes());
    want.extend_from_slice(&3u32.to_ne_bytes());
    want.extend_from_slice(&3u16.to_ne_bytes());
    want.extend_from_slice(&0u16.to_ne_bytes());
    assert_eq!(d.as_bytes(), &want[..]);

    let mut page = vec![0u8; 4096];
    m.read(PhysAddr::new(chunk), &mut page).unwrap();
    let mut want = vec![0u8; 4096];
    for (i, b) in blocks.iter().enumerate() {
        want[8 + 8 * i..16 + 8 * i].copy_from_slice(&b.as_u64().to_ne_bytes());
    }
    assert_eq!(page, want, "next = 0, three entries, zero-terminated");

    let mut preserved = t.blocks();
    preserved.sort();
    let mut expect: Vec<_> = blocks.iter().map(|&b| (b, Order::ZERO)).collect();
    expect.push((PhysAddr::new(chunk), Order::ZERO));
    expect.sort();
    assert_eq!(preserved, expect);
}

#[test]
fn chunk_boundaries() {
    for n in [1usize, 510, 511, 512, 1022, 1023] {
        let m = machine();
        let blocks = scattered(&m, n, Order::ZERO, n as u64);
        let (t, d) = preserve(&m, &blocks, Order::ZERO);
        let chunks = n.div_ceil(VMALLOC_CHUNK_ENTRIES);
        let c = chain(&m, &d);
        assert_eq!(c.len(), chunks, "{n} blocks: no trailing empty chunk");
        let listed: Vec<u64> = c.iter().flat_map(|(_, e)| e.iter().copied()).collect();
        assert_eq!(listed, blocks.iter().map(|b| b.as_u64()).collect::<Vec<_>>(), "{n}: blocks in order");
        for (i, (_, entries)) in c.iter().enumerate() {
            let want = if i + 1 < chunks { VMALLOC_CHUNK_ENTRIES } else { n - i * VMALLOC_CHUNK_ENTRIES };
            assert_eq!(entries.len(), want, "{n}: chunk {i}");
        }
        assert_eq!(d.total_pages as usize, n);
        assert_eq!(t.preserved_pages() as usize, n + chunks);
        assert_eq!(m.outstanding_pages() as usize, n + chunks);

        let (next, incoming) = handover(m, &t);
        let (area, got) = restore(&next, &incoming, &d).unwrap();
        assert_eq!(got, blocks, "{n}: restored in order");
        assert_eq!((area.blocks as usize, area.chunks as usize), (n, chunks));
        assert_eq!(incoming.unclaimed(), vec![], "{n}: everything claimed");
        assert_eq!(next.reserved_pages() as usize, n, "{n}: chunk pages freed");
    }
}

#[test]
fn every_order_the_platform_allows() {
    let m = machine();
    let max = m.max_order().get();
    assert_eq!(max, 10);
    let mut areas = Vec::new();
    let t = ModelTracker::new();
    for order in 0..=u64::from(max) {
        let blocks = scattered(&m, 3, o(order), order);
        for (i, &b) in blocks.iter().enumerate() {
            m.fill_random(b, PAGE, order * 10 + i as u64).unwrap();
        }
        let d = kho_vmalloc::preserve(&WithTracker::new(&m, &t), blocks.iter().copied(), o(order), VmallocFlags::ALLOC)
            .unwrap();
        assert_eq!((d.order, d.total_pages), (order as u16, 3 << order));
        areas.push((d, blocks));
    }
    let (next, incoming) = handover(m, &t);
    for (order, (d, blocks)) in areas.iter().enumerate() {
        let (area, got) = restore(&next, &incoming, d).unwrap();
        assert_eq!(&got, blocks, "order {order}");
        assert_eq!(area.order, o(order as u64));
        for (i, &b) in got.iter().enumerate() {
            let mut want = vec![0u8; 4096];
            kho_sim::ByteStream::new(order as u64 * 10 + i as u64).fill(&mut want);
            let mut have = vec![0u8; 4096];
            next.read(b, &mut have).unwrap();
            assert_eq!(have, want, "order {order} block {i} content");
        }
    }
    assert_eq!(incoming.unclaimed(), vec![]);
}

#[test]
fn an_empty_area_needs_no_chunk() {
    let m = machine();
    let (t, d) = preserve(&m, &[], Order::ZERO);
    assert_eq!(d, KhoVmalloc { first: 0, total_pages: 0, flags: 1, order: 0 });
    assert_eq!(m.outstanding_pages(), 0);
    assert_eq!(t.blocks(), vec![]);
    let (next, incoming) = handover(m, &t);
    let (area, got) = restore(&next, &incoming, &d).unwrap();
    assert_eq!((area.blocks, area.chunks, got.len()), (0, 0, 0));
    let m = next;
    kho_vmalloc::unpreserve(&WithTracker::new(&m, &ModelTracker::new()), &d).unwrap();
}

/// Runs a preserve that must fail and checks that it left nothing behind.
fn failing_preserve(m: &kho_sim::Machine, blocks: &[PhysAddr], order: Order, flags: VmallocFlags) -> VmallocError {
    let before = m.outstanding_pages();
    let t = ModelTracker::new();
    let e = kho_vmalloc::preserve(&WithTracker::new(m, &t), blocks.iter().copied(), order, flags).unwrap_err();
    assert_eq!(t.blocks(), vec![], "{e}: left preserved");
    assert_eq!(m.outstanding_pages(), before, "{e}: left allocated");
    e
}

#[test]
fn rejected_arguments() {
    let m = machine();
    let blocks = scattered(&m, 600, Order::ZERO, 7);

    let e = failing_preserve(&m, &blocks, Order::ZERO, VmallocFlags::from_bits_retain(0x5));
    assert_eq!(e, VmallocError::UnsupportedFlags { flags: 0x5 });
    assert_eq!(e.errno(), Errno::OpNotSupp);

    let e = failing_preserve(&m, &blocks, o(11), VmallocFlags::ALLOC);
    assert_eq!(e, VmallocError::OrderTooLarge { order: 11, max: 10 });
    assert_eq!(e.errno(), Errno::Range);

    // Bad blocks late in the list, after a chunk filled up and a second
    // one was allocated: everything before them is undone.
    let mut bad = blocks.clone();
    bad[550] = PhysAddr::NULL;
    let e = failing_preserve(&m, &bad, Order::ZERO, VmallocFlags::ALLOC);
    assert_eq!(
        e,
        VmallocError::BadBlock {
            index: 550,
            pa: PhysAddr::NULL,
            source: AbiError::ZeroAddress { what: "vmalloc block" }
        }
    );
    assert_eq!(e.errno(), Errno::Inval);

    let mut bad = blocks.clone();
    bad[599] = PhysAddr::new(bad[599].as_u64() + 8);
    let e = failing_preserve(&m, &bad, Order::ZERO, VmallocFlags::ALLOC);
    assert!(matches!(e, VmallocError::BadBlock { index: 599, source: AbiError::Misaligned { .. }, .. }), "{e}");

    let two = scattered(&m, 4, o(1), 8);
    let mut bad = two.clone();
    bad[2] = PhysAddr::new(bad[2].as_u64() + PAGE);
    let e = failing_preserve(&m, &bad, o(1), VmallocFlags::ALLOC);
    assert!(matches!(e, VmallocError::BadBlock { index: 2, source: AbiError::Misaligned { .. }, .. }), "{e}");

    // The tracker refuses a block listed twice.
    let mut bad = blocks.clone();
    bad[580] = bad[3];
    let e = failing_preserve(&m, &bad, Order::ZERO, VmallocFlags::ALLOC);
    assert!(
        matches!(
            e,
            VmallocError::PreserveFailed { kind: PageKind::Block, index: 580, source: AbiError::Forbidden { .. }, .. }
        ),
        "{e}"
    );
    assert_eq!(e.errno(), Errno::Busy);
}

/// The real tracker refuses what may not be preserved (outside RAM, in
/// scratch); everything preserved before is undone.
#[test]
fn refusals_of_the_real_tracker() {
    let m = machine();
    let blocks = scattered(&m, 700, Order::ZERO, 4);
    let scratch = PhysAddr::new(m.scratch()[0].addr);
    for (index, pa, outside) in [(10, PhysAddr::new(0x1000), true), (650, scratch, false)] {
        let t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).unwrap();
        let before = m.outstanding_pages();
        let mut bad = blocks.clone();
        bad[index] = pa;
        let e = kho_vmalloc::preserve(&WithTracker::new(&m, &t), bad.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
            .unwrap_err();
        match e {
            VmallocError::PreserveFailed { kind: PageKind::Block, index: i, pa: p, source } => {
                assert_eq!((i, p), (index as u64, pa));
                assert_eq!(matches!(source, AbiError::NotRam { .. }), outside, "{source}");
            }
            e => panic!("{e}"),
        }
        assert_eq!(m.outstanding_pages(), before, "chunk pages freed");
        let mut left = Vec::new();
        let _ = t.for_each_block::<()>(&mut |pa, order| {
            left.push((pa, order));
            ControlFlow::Continue(())
        });
        assert_eq!(left, vec![(t.fdt_page(), Order::ZERO)], "only the tracker's own FDT page stays preserved");
        t.destroy();
    }
}

#[test]
fn allocation_failures_leave_nothing_behind() {
    let m = machine();
    // 1100 blocks: chunks are allocated before blocks 0, 511 and 1022.
    let blocks = scattered(&m, 1100, Order::ZERO, 3);
    for nth in 1..=3u64 {
        m.fail_nth_allocation(nth);
        let e = failing_preserve(&m, &blocks, Order::ZERO, VmallocFlags::ALLOC);
        assert_eq!(e, VmallocError::NoMemory { chunk: nth - 1, source: AbiError::NoMemory { order: 0 } });
        assert_eq!(e.errno(), Errno::NoMem);
        m.clear_failures();
    }
    m.fail_allocations_from(1);
    let e = failing_preserve(&m, &blocks, Order::ZERO, VmallocFlags::ALLOC);
    assert!(matches!(e, VmallocError::NoMemory { chunk: 0, .. }));
    m.clear_failures();
    // And the same area preserves fine afterwards.
    let (t, d) = preserve(&m, &blocks, Order::ZERO);
    assert_eq!(chain(&m, &d).len(), 3);
    assert_eq!(t.blocks().len(), 1103);
}

#[test]
fn a_chunk_the_tracker_refuses_is_freed() {
    let m = machine();
    let blocks = scattered(&m, 5, Order::ZERO, 1);
    let t = ModelTracker::new();
    // Pre-preserve the page the allocator will hand out next as a chunk:
    // allocate it, free it, and claim it in the tracker.
    let next = m.alloc_pages(Order::ZERO).unwrap();
    m.free_pages(next, Order::ZERO);
    kho_abi::Preserve::preserve(&t, next, Order::ZERO).unwrap();
    let before = m.outstanding_pages();
    let e = kho_vmalloc::preserve(&WithTracker::new(&m, &t), blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
        .unwrap_err();
    assert!(matches!(e, VmallocError::PreserveFailed { kind: PageKind::Chunk, index: 0, pa, .. } if pa == next), "{e}");
    assert_eq!(m.outstanding_pages(), before);
    assert_eq!(t.blocks(), vec![(next, Order::ZERO)], "only the test's own block is left");
}

#[test]
fn unpreserve_undoes_everything() {
    for (n, order) in [(1usize, 0u64), (511, 0), (1023, 0), (40, 3)] {
        let m = machine();
        let blocks = scattered(&m, n, o(order), 11);
        let own = m.outstanding_pages();
        let (t, d) = preserve(&m, &blocks, o(order));
        assert!(m.outstanding_pages() > own);
        kho_vmalloc::unpreserve(&WithTracker::new(&m, &t), &d).unwrap();
        assert_eq!(t.blocks(), vec![], "{n}x{order}: nothing preserved");
        assert_eq!(m.outstanding_pages(), own, "{n}x{order}: chunk pages freed");
        for b in blocks {
            m.free_pages(b, o(order));
        }
        assert_eq!(m.outstanding_pages(), 0);
    }
}

#[test]
fn unpreserve_of_a_kernel_shaped_chain() {
    // Linux appends an empty chunk after a full one; unpreserve handles it.
    let m = machine();
    let blocks = scattered(&m, 511, Order::ZERO, 5);
    let (t, d) = preserve(&m, &blocks, Order::ZERO);
    let extra = m.alloc_pages(Order::ZERO).unwrap();
    kho_abi::Preserve::preserve(&t, extra, Order::ZERO).unwrap();
    set_next(&m, PhysAddr::new(d.first), extra.as_u64());
    kho_vmalloc::unpreserve(&WithTracker::new(&m, &t), &d).unwrap();
    assert_eq!(t.blocks(), vec![]);
    assert_eq!(m.outstanding_pages(), 511);
}

#[test]
fn unpreserve_reports_bad_descriptors_and_tracker_refusals() {
    let m = machine();
    let blocks = scattered(&m, 3, Order::ZERO, 2);
    let (t, d) = preserve(&m, &blocks, Order::ZERO);
    let p = WithTracker::new(&m, &t);
    let bad = KhoVmalloc { flags: 0x10, ..d };
    assert!(matches!(
        kho_vmalloc::unpreserve(&p, &bad),
        Err(VmallocError::Descriptor(AbiError::UnsupportedFlags { .. }))
    ));
    assert_eq!(t.blocks().len(), 4, "a bad descriptor changes nothing");
    // A block someone else already unpreserved: the rest is still undone.
    kho_abi::Preserve::unpreserve(&t, blocks[1], Order::ZERO).unwrap();
    let e = kho_vmalloc::unpreserve(&p, &d).unwrap_err();
    assert_eq!(
        e,
        VmallocError::UnpreserveFailed {
            kind: PageKind::Block,
            pa: blocks[1],
            source: AbiError::NotPreserved { pa: blocks[1], order: 0 }
        }
    );
    assert_eq!(t.blocks(), vec![]);
    assert_eq!(m.outstanding_pages(), 3);
}
