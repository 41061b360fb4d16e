//! Interoperability: the machine image in `tests/vectors/`, written by an
//! independent implementation of the formats, read as its README says.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]
#![cfg(not(loom))]

mod common;

use std::path::PathBuf;

use common::*;
use kho_abi::{Order, PhysAddr};
use kho_sim::{Machine, MachineConfig};
use kho_track::Incoming;

/// `tests/vectors/independent-v4.img.zst`, unpacked.
fn image() -> PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/independent-v4.img.zst");
    kho_sim::vector::unpack(&src, &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kho-vectors"))
}

fn load() -> Machine {
    let cfg = MachineConfig {
        scratch: vec![kho_abi::KhoScratch { addr: 0x8080_0000, size: 4 << 20 }],
        ..MachineConfig::default()
    };
    Machine::load_image(&image(), cfg).expect("tests/vectors/independent-v4.img must be readable")
}

#[test]
fn independent_image_imports_exactly() {
    let m = load();
    let data = m.kho_data().expect("the image carries a KHO note");
    let inc = Incoming::import(&m, &data).unwrap();
    assert_eq!(inc.compatible(), "kho-v4");
    assert_eq!(inc.scratch(), &[kho_abi::KhoScratch { addr: 0x8080_0000, size: 4 << 20 }]);
    let pa = |v: u64| PhysAddr::new(v);
    // Walked in the kernel's order: order 9, order 3, order 1, then the
    // order-0 blocks by ascending PA.
    assert_eq!(
        incoming_blocks(&inc),
        vec![
            (pa(0x8020_0000), order(9)),
            (pa(0x80c0_0000), order(3)),
            (pa(0x8040_2000), order(1)),
            (pa(0x8001_0000), Order::ZERO),
            (pa(0x8040_0000), Order::ZERO),
            (pa(0x8040_1000), Order::ZERO),
            (pa(0x80e0_0000), Order::ZERO),
        ]
    );
    assert_eq!(inc.stats().blocks, 7);
    assert_eq!(inc.stats().pages, 526);
    assert_eq!(inc.stats().tree_pages, 20);
    // The README lists these ranges. Two of them touch (the order-9 block
    // ends at 0x8040_0000, where the next range starts); the range walk
    // merges adjacent blocks of any order, so it returns them as one. Same
    // memory, one range fewer.
    let readme: [(u64, u64); 5] = [
        (0x8001_0000, 4 << 10),
        (0x8020_0000, 2 << 20),
        (0x8040_0000, 16 << 10),
        (0x80c0_0000, 32 << 10),
        (0x80e0_0000, 4 << 10),
    ];
    let ours = incoming_ranges(&inc);
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, len) in readme {
        match merged.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => merged.push((start, len)),
        }
    }
    assert_eq!(ours, merged);
    assert_eq!(
        ours,
        vec![
            (0x8001_0000, 4 << 10),
            (0x8020_0000, (2 << 20) + (16 << 10)),
            (0x80c0_0000, 32 << 10),
            (0x80e0_0000, 4 << 10)
        ]
    );
    assert_eq!(ours.iter().map(|r| r.1).sum::<u64>(), readme.iter().map(|r| r.1).sum::<u64>());
    let sub = inc.subtree("test-blob").unwrap();
    assert_eq!((sub.pa, sub.size), (pa(0x8001_0000), Some(64)));
    let mut blob = [0u8; 64];
    m.read(sub.pa, &mut blob).unwrap();
    assert_eq!(blob.to_vec(), (0u8..64).collect::<Vec<_>>());
    // Tree pages were allocated downward from the top of RAM.
    assert!(inc.tree_nodes().iter().all(|n| n.as_u64() >= 0x8000_0000 + (16 << 20) - (64 << 12)));
}

#[test]
fn independent_image_restores_and_poisons_the_rest() {
    let m = load();
    let data = m.kho_data().unwrap();
    let inc = Incoming::import(&m, &data).unwrap();
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    inc.restore_folio(PhysAddr::new(0x8001_0000), Order::ZERO).unwrap();
    let mut blob = [0u8; 64];
    m.read(PhysAddr::new(0x8001_0000), &mut blob).unwrap();
    assert_eq!(blob[63], 63);
    assert!(inc.restore_folio(PhysAddr::new(0x8020_0000), order(8)).is_err());
    // These 4 pages were preserved as 0/0/1, not as the kernel's split of
    // a 4-page range (one order-2 block): a range restore fails and takes
    // nothing; restoring the folios works.
    assert!(inc.restore_pages(PhysAddr::new(0x8040_0000), 4).is_err());
    assert_eq!(inc.unclaimed().unwrap().len(), 6);
    inc.restore_folio(PhysAddr::new(0x8040_0000), Order::ZERO).unwrap();
    inc.restore_folio(PhysAddr::new(0x8040_1000), Order::ZERO).unwrap();
    inc.restore_folio(PhysAddr::new(0x8040_2000), order(1)).unwrap();
    assert_eq!(inc.unclaimed().unwrap().len(), 3);
    // Poisoned: a page that was neither preserved nor a tree page.
    assert!(m.is_poisoned(PhysAddr::new(0x8060_0000)));
    assert!(!m.is_poisoned(PhysAddr::new(0x8020_0000)));
    inc.finish();
}
