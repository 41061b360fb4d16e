//! The import's resource cap: a tree of many empty leaves over zero-filled
//! RAM (which costs the writer nothing but tables) is refused once it has
//! more pages than the cap, with a typed error and nothing left allocated.

#![cfg(not(loom))]

mod common;

use std::time::Instant;

use common::*;
use kho_abi::{GEOMETRY, KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, RadixKey, TABLE_ENTRIES};
use kho_sim::{Machine, MachineConfig};
use kho_track::incoming::DEFAULT_MAX_MAP_PAGES;
use kho_track::{ImportLimits, Incoming, TrackError};

const PAGE: u64 = PAGE_SIZE as u64;

fn read_u64(m: &Machine, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    m.read(PhysAddr::new(pa), &mut b).unwrap();
    u64::from_ne_bytes(b)
}

/// A handover on a 1 GiB machine whose tree has `leaves` extra empty
/// leaves: level-1 tables hung under free slots of the level-2 table on the
/// path to one preserved page, each naming 512 never-written pages.
fn empty_leaves(leaves: u64) -> (Machine, KhoData) {
    let m = Machine::new(MachineConfig::with_ram(PhysAddr::new(0x1_0000_0000), 1 << 30)).unwrap();
    let t = tracker(&m);
    let pa = m.alloc_pages(Order::ZERO).unwrap();
    t.preserve_folio(pa, Order::ZERO).unwrap();
    let key = RadixKey::encode(pa, Order::ZERO).unwrap();
    let mut l2 = t.tree_root().as_u64();
    for l in (3..=GEOMETRY.root_level()).rev() {
        l2 = read_u64(&m, l2 + 8 * key.table_index(l) as u64);
    }
    let used = key.table_index(2);
    // Leaves from 64 MiB up, below the scratch area in the middle of RAM.
    let mut next_leaf = m.ram_base().as_u64() + (64 << 20);
    let mut left = leaves;
    let mut slot = 0;
    while left > 0 {
        if slot == used {
            slot += 1;
        }
        let l1 = m.alloc_pages(Order::ZERO).unwrap();
        let n = left.min(TABLE_ENTRIES as u64);
        let words: Vec<u8> = (0..n).flat_map(|i| (next_leaf + i * PAGE).to_ne_bytes()).collect();
        m.write(l1, &words).unwrap();
        next_leaf += n * PAGE;
        left -= n;
        m.write(PhysAddr::new(l2 + 8 * slot as u64), &l1.as_u64().to_ne_bytes()).unwrap();
        slot += 1;
    }
    assert!(next_leaf <= m.scratch()[0].addr, "the leaves stay below scratch");
    let data = t.finish().unwrap();
    (m.kexec(data), data)
}

#[test]
fn many_empty_leaves_hit_the_cap() {
    // 40,000 leaves with 4 KiB pages (fewer with larger pages, as many as
    // fit below the scratch area), and a cap of a quarter of that.
    let room = ((512 << 20) - (64 << 20)) / PAGE - 16;
    let leaves = room.min(40_000);
    let cap = leaves / 4;
    let (m, data) = empty_leaves(leaves);
    let limits = ImportLimits { max_map_pages: cap };
    let t = Instant::now();
    let e = Incoming::import_with(&m, &data, &limits).unwrap_err();
    eprintln!("{leaves} empty leaves, cap {cap} pages: refused in {:?}: {e}", t.elapsed());
    assert_eq!(e, TrackError::MapTooLarge { pages: cap + 1, max: cap });
    assert_eq!(kho_abi::ToErrno::errno(&e), kho_abi::Errno::Range);
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn a_tree_within_the_cap_imports() {
    let (m, data) = empty_leaves(1500);
    // Depth-many pages on the path to the preserved page, plus the new
    // level-1 tables and leaves.
    let pages = u64::from(GEOMETRY.depth) + 1500_u64.div_ceil(TABLE_ENTRIES as u64) + 1500;
    let e = Incoming::import_with(&m, &data, &ImportLimits { max_map_pages: pages - 1 }).unwrap_err();
    assert!(matches!(e, TrackError::MapTooLarge { .. }), "{e:?}");
    // The default cap is the documented one, and far above this tree.
    assert_eq!(ImportLimits::default().max_map_pages, DEFAULT_MAX_MAP_PAGES);
    assert_eq!(DEFAULT_MAX_MAP_PAGES, 1 << 20);
    assert_eq!(Incoming::import(&m, &data).unwrap().stats().tree_pages, pages);
    let inc = Incoming::import_with(&m, &data, &ImportLimits { max_map_pages: pages }).unwrap();
    assert_eq!(inc.stats().tree_pages, pages);
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    inc.finish();
}
