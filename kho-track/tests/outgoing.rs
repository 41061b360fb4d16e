//! The outgoing side: preserve semantics, splitting, rejects, FDT and
//! subtrees, allocation failures and leaks, against a model.

#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;

use common::*;
use kho_abi::{AbiError, Errno, Order, PAGE_SIZE, PhysAddr, ToErrno};
use kho_sim::{Machine, MachineConfig};
use kho_track::{RootCompat, TrackError, Tracker, TrackerOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[test]
fn preserve_walk_and_unpreserve() {
    let m = machine();
    let t = tracker(&m);
    let a = page(&m, 512); // 2 MiB aligned
    t.preserve_folio(a, order(9)).unwrap();
    t.preserve_folio(page(&m, 3), order(0)).unwrap();
    t.preserve_folio(page(&m, 4), order(2)).unwrap();
    assert!(t.is_preserved(a, order(9)).unwrap());
    assert!(!t.is_preserved(a, order(8)).unwrap());
    let fdt = t.fdt_page();
    // Kernel order: order 9, then order 2, then order 0 by PA (the FDT page
    // is an order-0 block too).
    let mut want = vec![(a, order(9)), (page(&m, 4), order(2))];
    let mut zeros = vec![(page(&m, 3), order(0)), (fdt, order(0))];
    zeros.sort();
    want.extend(zeros);
    assert_eq!(blocks_of(&t), want);
    t.unpreserve_folio(page(&m, 4), order(2)).unwrap();
    assert_eq!(
        t.unpreserve_folio(page(&m, 4), order(2)).unwrap_err(),
        TrackError::Abi(AbiError::NotPreserved { pa: page(&m, 4), order: 2 })
    );
    // Preserve twice, unpreserve once: not preserved (no count).
    t.preserve_folio(page(&m, 8), order(0)).unwrap();
    t.preserve_folio(page(&m, 8), order(0)).unwrap();
    t.unpreserve_folio(page(&m, 8), order(0)).unwrap();
    assert!(!t.is_preserved(page(&m, 8), order(0)).unwrap());
    t.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn ranges_coalesce_across_orders() {
    let m = machine();
    let t = tracker(&m);
    // 0..4 as order 2, 4 as order 0, 5 as order 0, 6..8 as order 1: one run
    // of 8 pages, plus a lone page further away.
    t.preserve_folio(page(&m, 0), order(2)).unwrap();
    t.preserve_folio(page(&m, 4), order(0)).unwrap();
    t.preserve_folio(page(&m, 5), order(0)).unwrap();
    t.preserve_folio(page(&m, 6), order(1)).unwrap();
    t.preserve_folio(page(&m, 100), order(0)).unwrap();
    let blocks = blocks_of(&t);
    assert_eq!(ranges_of(&t), coalesce(&blocks));
    let r = ranges_of(&t);
    assert_eq!(r[0], (page(&m, 0).as_u64(), 8 * PAGE_SIZE as u64));
    t.destroy();
}

#[test]
fn a_fully_preserved_gib_is_one_range() {
    let m = machine_with(|c| c.ram_size = 2 << 30);
    let t = Tracker::new(&m, &[], TrackerOptions::default()).unwrap();
    let base = PhysAddr::new(m.ram_base().as_u64() + (1 << 30));
    t.preserve_pages(base, (1 << 30) / PAGE_SIZE as u64).unwrap();
    let ranges = ranges_of(&t);
    assert!(ranges.contains(&(base.as_u64(), 1 << 30)), "{ranges:x?}");
    // The same GiB of order-0 pages is one range too.
    let t2 = Tracker::new(&m, &[], TrackerOptions::default()).unwrap();
    for i in 0..(1u64 << 30) / PAGE_SIZE as u64 {
        t2.preserve_folio(PhysAddr::new(base.as_u64() + i * PAGE_SIZE as u64), Order::ZERO).unwrap();
    }
    assert!(ranges_of(&t2).contains(&(base.as_u64(), 1 << 30)));
    t.destroy();
    t2.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

/// The kernel's split: order = min(ctz(pfn), floor(log2(left)), max).
fn reference_split(pa: u64, mut n: u64, max: u32) -> Vec<(PhysAddr, Order)> {
    let mut out = vec![];
    let mut pfn = pa / PAGE_SIZE as u64;
    while n > 0 {
        let o = pfn.trailing_zeros().min(63 - n.leading_zeros()).min(max);
        out.push((PhysAddr::new(pfn * PAGE_SIZE as u64), order(o)));
        pfn += 1 << o;
        n -= 1 << o;
    }
    out
}

#[test]
fn preserve_pages_splits_like_the_kernel() {
    let m = machine();
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..50 {
        let ram_pages = m.ram_size() / PAGE_SIZE as u64;
        let start = rng.random_range(0..ram_pages / 2);
        let n = rng.random_range(1..(ram_pages / 4).min(5_000));
        let pa = page(&m, start);
        if scratch_overlaps(m.scratch(), pa, n * PAGE_SIZE as u64) {
            continue;
        }
        let mut want = reference_split(pa.as_u64(), n, 10);
        let t = tracker(&m);
        t.preserve_pages(pa, n).unwrap();
        want.push((t.fdt_page(), Order::ZERO));
        let model: BTreeMap<(u64, u32), ()> = want.iter().map(|&(p, o)| ((p.as_u64(), o.get()), ())).collect();
        assert_eq!(blocks_of(&t), kernel_order(&model), "start {start} n {n}");
        t.unpreserve_pages(pa, n).unwrap();
        assert_eq!(blocks_of(&t), vec![(t.fdt_page(), Order::ZERO)]);
        t.destroy();
    }
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn blocks_never_cross_numa_nodes() {
    // Nodes of 1 MiB: a range over a boundary is split at it.
    let m = machine_with(|c| c.numa_node_size = Some(1 << 20));
    let t = tracker(&m);
    let pa = page(&m, 128); // 512 KiB into node 0
    t.preserve_pages(pa, 256).unwrap(); // 1 MiB: must split at 1 MiB
    for (bpa, o) in blocks_of(&t) {
        let start = bpa.as_u64() - m.ram_base().as_u64();
        let end = start + o.pages() * PAGE_SIZE as u64 - 1;
        assert_eq!(start >> 20, end >> 20, "{bpa} order {o} crosses a node");
    }
    // A folio inside one node is fine; one spanning two is refused.
    let node_pages = (1u64 << 20) / PAGE_SIZE as u64;
    let node_order = node_pages.trailing_zeros();
    t.preserve_folio(page(&m, 4 * node_pages), order(node_order)).unwrap();
    let e = t.preserve_folio(page(&m, 8 * node_pages), order(node_order + 1)).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::Forbidden { .. })), "{e:?}");
    t.destroy();
}

#[test]
fn rejects() {
    let m = machine();
    let t = tracker(&m);
    let max = kho_abi::PageAlloc::max_order(&m).get();
    // Misaligned PA.
    let e = t.preserve_folio(page(&m, 1), order(1)).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::Misaligned { .. })));
    assert_eq!(e.errno(), Errno::Inval);
    // Order above the platform maximum: ERANGE.
    let e = t.preserve_folio(page(&m, 0), order(max + 1)).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::OrderTooLarge { .. })));
    assert_eq!(e.errno(), Errno::Range);
    // Key wider than the key width: an order beyond what a key encodes.
    let e = Order::new(u64::from(Order::MAX.get()) + 1, "order").unwrap_err();
    assert_eq!(kho_abi::ToErrno::errno(&e), Errno::Range);
    // A block in a scratch area.
    let s = m.scratch()[0];
    let e = t.preserve_folio(PhysAddr::new(s.addr), Order::ZERO).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::Forbidden { why: "overlaps a scratch area", .. })));
    // A block overlapping a scratch area from below.
    let below = PhysAddr::new(s.addr - 4 * PAGE_SIZE as u64);
    let e = t.preserve_pages(below, 8).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::Forbidden { .. })));
    assert!(!t.is_preserved(below, order(2)).unwrap(), "all or nothing");
    // Outside RAM.
    let e = t.preserve_folio(m.ram_end(), Order::ZERO).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::NotRam { .. })));
    // Empty range, misaligned range, wrapping range.
    assert!(matches!(t.preserve_pages(page(&m, 0), 0).unwrap_err(), TrackError::EmptyRange { .. }));
    assert!(matches!(
        t.preserve_pages(PhysAddr::new(page(&m, 0).as_u64() + 8), 1).unwrap_err(),
        TrackError::Abi(AbiError::Misaligned { .. })
    ));
    assert!(matches!(t.preserve_pages(page(&m, 0), u64::MAX).unwrap_err(), TrackError::Abi(AbiError::Overflow { .. })));
    // Unpreserving what was never preserved.
    assert!(matches!(t.unpreserve_pages(page(&m, 64), 4).unwrap_err(), TrackError::Abi(AbiError::NotPreserved { .. })));
    assert_eq!(blocks_of(&t), vec![(t.fdt_page(), Order::ZERO)]);
    t.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn preserve_pages_is_all_or_nothing_under_allocation_failure() {
    let m = machine_with(|c| c.ram_size = 1 << 30);
    let t = tracker(&m);
    // Something preserved before must survive the failed call.
    t.preserve_folio(page(&m, 1), Order::ZERO).unwrap();
    let before = blocks_of(&t);
    // From page 1, the split climbs through every order: each order's keys
    // live under a different branch, so the call allocates many tables.
    let (start, n) = (page(&m, 1), (64 << 20) / PAGE_SIZE as u64);
    assert!(!scratch_overlaps(m.scratch(), start, n * PAGE_SIZE as u64));
    let mut failed = 0;
    for nth in 1..=30 {
        m.fail_nth_allocation(nth);
        let r = t.preserve_pages(start, n);
        m.clear_failures();
        match r {
            Ok(()) => {
                t.unpreserve_pages(start, n).unwrap();
                t.preserve_folio(page(&m, 1), Order::ZERO).unwrap();
            }
            Err(e) => {
                assert_eq!(e.errno(), Errno::NoMem, "{e}");
                failed += 1;
            }
        }
        assert_eq!(blocks_of(&t), before, "allocation {nth} failed");
    }
    assert!(failed >= 5, "only {failed} allocations could fail");
    t.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn model_based_random_operations_with_failures() {
    let m = machine();
    let mut rng = SmallRng::seed_from_u64(0x006b_686f);
    for round in 0..20 {
        let t = tracker(&m);
        let mut model: BTreeMap<(u64, u32), ()> = BTreeMap::new();
        model.insert((t.fdt_page().as_u64(), 0), ());
        for _ in 0..400 {
            let o = rng.random_range(0..=10u32);
            let slot = rng.random_range(0..(m.ram_size() / PAGE_SIZE as u64) >> o);
            let pa = PhysAddr::new(m.ram_base().as_u64() + (slot << o) * PAGE_SIZE as u64);
            if scratch_overlaps(m.scratch(), pa, order(o).pages() * PAGE_SIZE as u64) || pa == t.fdt_page() {
                continue;
            }
            if rng.random_bool(0.05) {
                m.fail_nth_allocation(1);
            }
            if rng.random_bool(0.7) {
                match t.preserve_folio(pa, order(o)) {
                    Ok(()) => {
                        model.insert((pa.as_u64(), o), ());
                    }
                    Err(e) => assert_eq!(e.errno(), Errno::NoMem, "{e}"),
                }
            } else {
                let was = model.remove(&(pa.as_u64(), o)).is_some();
                assert_eq!(t.unpreserve_folio(pa, order(o)).is_ok(), was);
            }
            m.clear_failures();
        }
        assert_eq!(blocks_of(&t), kernel_order(&model), "round {round}");
        assert_eq!(ranges_of(&t), coalesce(&kernel_order(&model)));
        t.destroy();
        assert_eq!(m.outstanding_pages(), 0, "round {round}: leak");
    }
}

#[test]
fn tracker_creation_failures_leak_nothing() {
    let m = machine();
    for n in 1..=2 {
        m.fail_nth_allocation(n);
        assert!(Tracker::new(&m, m.scratch(), TrackerOptions::default()).is_err());
        m.clear_failures();
        assert_eq!(m.outstanding_pages(), 0);
    }
}

#[test]
fn root_fdt_and_subtrees() {
    let m = machine();
    let mut t = tracker(&m);
    let blob = page(&m, 40);
    t.add_subtree("test-blob", blob, 64).unwrap();
    t.add_subtree("LUO", page(&m, 41), 32).unwrap();
    let e = t.add_subtree("LUO", page(&m, 42), 1).unwrap_err();
    assert_eq!(e.errno(), Errno::Exist);
    assert!(matches!(t.add_subtree("bad/name", blob, 1).unwrap_err(), TrackError::BadName { .. }));
    assert!(matches!(t.add_subtree("", blob, 1).unwrap_err(), TrackError::BadName { .. }));
    assert!(matches!(t.add_subtree(&"x".repeat(40), blob, 1).unwrap_err(), TrackError::BadName { .. }));
    assert_eq!(t.subtree("LUO").unwrap().pa, page(&m, 41));
    t.remove_subtree(page(&m, 41)).unwrap();
    assert_eq!(t.subtree("LUO").unwrap_err().errno(), Errno::NoEnt);
    assert_eq!(t.remove_subtree(page(&m, 41)).unwrap_err().errno(), Errno::NoEnt);
    // The page holds a valid FDT with raw native-endian properties.
    let mut buf = vec![0u8; PAGE_SIZE];
    m.read(t.fdt_page(), &mut buf).unwrap();
    let fdt = kho_track::fdt::RootFdt::parse(t.fdt_page(), buf.clone()).unwrap();
    assert_eq!(fdt.compatible(), "kho-v4");
    assert_eq!(fdt.memory_map(), t.tree_root());
    let sub = fdt.subtree("test-blob").unwrap();
    assert_eq!((sub.pa, sub.size), (blob, Some(64)));
    // Raw bytes: the value of preserved-memory-map is the native-endian PA.
    let needle = t.tree_root().as_u64().to_ne_bytes();
    assert!(buf.windows(8).any(|w| w == needle));
    // Too many subtrees: the FDT outgrows its page and nothing changes.
    let mut added = 0;
    let full = loop {
        match t.add_subtree(&format!("subtree-{added:05}"), blob, 1) {
            Ok(()) => added += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(full.errno(), Errno::NoSpc);
    assert_eq!(t.subtrees().len(), added + 1);
    t.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn composite_compatible() {
    let m = machine();
    let t =
        Tracker::new(&m, m.scratch(), TrackerOptions { compat: RootCompat::Composite(&["vmalloc-v1", "block-v1"]) })
            .unwrap();
    assert_eq!(t.compatible(), "kho-v4;block-v1;radix-v1;vmalloc-v1");
    let mut buf = vec![0u8; PAGE_SIZE];
    m.read(t.fdt_page(), &mut buf).unwrap();
    let fdt = kho_track::fdt::RootFdt::parse(t.fdt_page(), buf).unwrap();
    assert_eq!(fdt.version(), kho_abi::RootVersion::V4);
    t.destroy();
}

#[test]
fn concurrent_preserves_from_two_threads() {
    let m = machine_with(|c| c.ram_size = 1 << 30);
    let t = Tracker::new(&m, &[], TrackerOptions::default()).unwrap();
    let pages = (256u64 << 20) / PAGE_SIZE as u64;
    std::thread::scope(|s| {
        for th in 0..2u64 {
            let t = &t;
            let m = &m;
            s.spawn(move || {
                // Interleaved pages so both threads share every leaf.
                for i in (th..pages).step_by(2) {
                    t.preserve_folio(
                        PhysAddr::new(m.ram_base().as_u64() + (64 << 20) + i * PAGE_SIZE as u64),
                        Order::ZERO,
                    )
                    .unwrap();
                }
            });
        }
    });
    let start = m.ram_base().as_u64() + (64 << 20);
    assert!(ranges_of(&t).contains(&(start, 256 << 20)));
    let tree_pages = t.tree_pages().unwrap();
    // 256 MiB of order-0 pages = 2 leaves plus one path of tables above
    // them; the loser of every race freed its branch.
    assert!(tree_pages <= 2 + 5 + 6, "{tree_pages} tree pages");
    t.destroy();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn sixty_four_kib_geometry_is_what_the_build_uses() {
    // Runs under every page size: the tree depth follows from the shift.
    let m = machine();
    let t = tracker(&m);
    let depth = u64::from(kho_abi::GEOMETRY.depth);
    // The FDT page alone needs one path: one page per level.
    assert_eq!(t.tree_pages().unwrap(), depth);
    // An order far from order 0 shares only the root.
    t.preserve_folio(page(&m, 0), order(10)).unwrap();
    assert!(t.tree_pages().unwrap() < 2 * depth);
    t.destroy();
    let _ = MachineConfig::default();
    let _: Option<Machine> = None;
}

#[test]
fn refuses_every_scratch_area_and_accepts_between_and_around_them() {
    let m = machine();
    let p = PAGE_SIZE as u64;
    let at = |n: u64| page(&m, n);
    // Two areas, given out of order: the tracker's quick hull test must
    // still look at each.
    let scratch = [
        kho_abi::KhoScratch { addr: at(200).as_u64(), size: 8 * p },
        kho_abi::KhoScratch { addr: at(100).as_u64(), size: 4 * p },
    ];
    let t = Tracker::new(&m, &scratch, TrackerOptions::default()).unwrap();
    let forbidden =
        |e: TrackError| matches!(e, TrackError::Abi(AbiError::Forbidden { why: "overlaps a scratch area", .. }));
    for n in [99, 104, 150, 199, 208, 600] {
        t.preserve_folio(at(n), Order::ZERO).unwrap_or_else(|e| panic!("page {n}: {e:?}"));
    }
    for n in [100, 103, 200, 207] {
        let e = t.preserve_folio(at(n), Order::ZERO).unwrap_err();
        assert!(forbidden(e.clone()), "page {n}: {e:?}");
    }
    // Blocks straddling an edge of an area.
    assert!(forbidden(t.preserve_folio(at(96), order(3)).unwrap_err()), "96..104 over 100..104");
    assert!(forbidden(t.preserve_folio(at(192), order(4)).unwrap_err()), "192..208 over 200..208");
    assert!(forbidden(t.preserve_folio(at(128), order(7)).unwrap_err()), "128..256 over 200..208");
    t.preserve_folio(at(96), order(2)).unwrap();
    t.preserve_folio(at(208), order(3)).unwrap();
    t.preserve_folio(at(104), order(3)).unwrap();
    assert!(!t.is_preserved(at(100), Order::ZERO).unwrap() && !t.is_preserved(at(200), Order::ZERO).unwrap());
    t.destroy();
}

#[test]
fn refuses_blocks_reaching_outside_ram() {
    let p = PAGE_SIZE as u64;
    // RAM ends one page past a 2-page boundary, so an aligned order-1
    // block can start in RAM and end past it.
    let m = machine_with(|c| *c = MachineConfig::with_ram(c.ram_base, (64 << 20) + p));
    let t = tracker(&m);
    let end = m.ram_end().as_u64();
    let not_ram = |e: TrackError| matches!(e, TrackError::Abi(AbiError::NotRam { .. }));
    t.preserve_folio(PhysAddr::new(end - p), Order::ZERO).unwrap();
    let e = t.preserve_folio(PhysAddr::new(end - p), order(1)).unwrap_err();
    assert!(not_ram(e.clone()), "{e:?}");
    assert!(not_ram(t.preserve_folio(PhysAddr::new(end), Order::ZERO).unwrap_err()));
    let below = m.ram_base().as_u64() - p;
    assert!(not_ram(t.preserve_folio(PhysAddr::new(below), Order::ZERO).unwrap_err()));
    // The platform's RAM answer agrees with its translation everywhere
    // around both edges.
    for pa in [below - p, below, m.ram_base().as_u64(), end - 2 * p, end - p, end, end + p] {
        for len in [0, 1, p, 2 * p] {
            let pa = PhysAddr::new(pa);
            assert_eq!(
                kho_abi::PhysMem::is_ram(&m, pa, len),
                kho_abi::PhysMem::phys_to_virt(&m, pa, len).is_ok(),
                "{pa} + {len}"
            );
        }
    }
    t.destroy();
}
