//! The incoming side: a full handover through kho-sim, and every reject
//! path of the import on corrupt state.

#![cfg(not(loom))]

mod common;

use std::collections::BTreeMap;

use common::*;
use kho_abi::{AbiError, Errno, GEOMETRY, KhoData, Order, PAGE_SIZE, PhysAddr, RadixKey, ToErrno};
use kho_sim::Machine;
use kho_track::{BlockFault, Incoming, RadixTree, TrackError, Tracker, TreeFault};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Kernel A: random folios with random contents, a page range and a blob.
/// Returns the kho_data and, per block, its checksum.
fn kernel_a(m: &Machine, seed: u64) -> (KhoData, BTreeMap<(u64, u32), u64>, PhysAddr) {
    let mut t = tracker(m);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sums = BTreeMap::new();
    for _ in 0..60 {
        let o = rng.random_range(0..=6u32);
        let Ok(pa) = kho_abi::PageAlloc::alloc_pages(m, order(o)) else { continue };
        let len = order(o).pages() * PAGE_SIZE as u64;
        m.fill_random(pa, len, rng.random()).unwrap();
        t.preserve_folio(pa, order(o)).unwrap();
        sums.insert((pa.as_u64(), o), m.checksum(pa, len).unwrap());
    }
    let range = kho_abi::PageAlloc::alloc_pages(m, order(5)).unwrap();
    t.preserve_pages(range, 20).unwrap();
    let blob = kho_abi::PageAlloc::alloc_pages(m, Order::ZERO).unwrap();
    m.write(blob, b"hello from kernel A").unwrap();
    t.preserve_folio(blob, Order::ZERO).unwrap();
    t.add_subtree("test-blob", blob, 19).unwrap();
    (t.finish().unwrap(), sums, range)
}

#[test]
fn handover_round_trip() {
    let m = machine();
    let (data, sums, range) = kernel_a(&m, 1);
    let m = m.kexec(data);
    let data = m.kho_data().unwrap();
    let inc = Incoming::import(&m, &data).unwrap();
    assert_eq!(inc.compatible(), "kho-v4");
    assert_eq!(inc.scratch(), m.scratch());
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    // Everything preserved survived the poisoning.
    for (&(pa, o), &sum) in &sums {
        let len = order(o).pages() * PAGE_SIZE as u64;
        assert_eq!(m.checksum(PhysAddr::new(pa), len).unwrap(), sum);
        inc.restore_folio(PhysAddr::new(pa), order(o)).unwrap();
        // Twice fails.
        let e = inc.restore_folio(PhysAddr::new(pa), order(o)).unwrap_err();
        assert!(matches!(e, TrackError::Abi(AbiError::NotPreserved { .. })));
    }
    // Wrong order, misaligned, never preserved.
    let e = inc.restore_pages(range, 19).unwrap_err();
    assert!(matches!(e, TrackError::Abi(AbiError::NotPreserved { .. })), "{e:?}");
    assert!(inc.restore_folio(range, order(5)).is_err());
    assert!(matches!(
        inc.restore_folio(PhysAddr::new(range.as_u64() + 8), Order::ZERO).unwrap_err(),
        TrackError::Abi(AbiError::Misaligned { .. })
    ));
    // The failed range restore gave back what it took: the exact range works.
    inc.restore_pages(range, 20).unwrap();
    let sub = inc.subtree("test-blob").unwrap();
    assert_eq!(sub.size, Some(19));
    let mut hello = [0u8; 19];
    m.read(sub.pa, &mut hello).unwrap();
    assert_eq!(&hello, b"hello from kernel A");
    assert_eq!(inc.subtree("nope").unwrap_err().errno(), Errno::NoEnt);
    // Only the blob is left.
    assert_eq!(inc.unclaimed().unwrap(), vec![(sub.pa, Order::ZERO)]);
    inc.restore_folio(sub.pa, Order::ZERO).unwrap();
    let tree_pages = inc.stats().tree_pages;
    assert!(tree_pages >= u64::from(GEOMETRY.depth));
    inc.finish();
    // The tree and FDT pages went back to the allocator; the restored blocks
    // are the kernel's now (still reserved until it frees them).
    let restored: u64 = sums.keys().map(|&(_, o)| 1u64 << o).sum::<u64>() + 20 + 1;
    assert_eq!(m.reserved_pages(), restored);
}

#[test]
fn walks_match_between_sides() {
    let m = machine_with(|c| c.ram_size = 1 << 30);
    let t = tracker(&m);
    let mut rng = SmallRng::seed_from_u64(9);
    for _ in 0..300 {
        // Blocks up to 1 MiB whatever the page size.
        let o = rng.random_range(0..=(20 - kho_abi::PAGE_SHIFT));
        let Ok(pa) = kho_abi::PageAlloc::alloc_pages(&m, order(o)) else { continue };
        t.preserve_folio(pa, order(o)).unwrap();
    }
    let blocks = blocks_of(&t);
    let ranges = ranges_of(&t);
    let data = t.finish().unwrap();
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap();
    // The FDT page is the tracker's own: not listed for users.
    let fdt = PhysAddr::new(data.fdt_addr);
    let user: Vec<_> = blocks.iter().copied().filter(|&(pa, _)| pa != fdt).collect();
    assert_eq!(incoming_blocks(&inc), user);
    assert_eq!(incoming_ranges(&inc), coalesce(&user));
    assert_eq!(inc.stats().blocks, blocks.len() as u64);
    let _ = ranges;
}

// ---- corrupt handovers -------------------------------------------------

/// PA of the node at `level` on the path to `key` (root: depth - 1).
fn node_on_path(m: &Machine, root: PhysAddr, key: RadixKey, level: u32) -> PhysAddr {
    let mut node = root;
    for l in ((level + 1)..=GEOMETRY.root_level()).rev() {
        let mut b = [0u8; 8];
        m.read(PhysAddr::new(node.as_u64() + 8 * key.table_index(l) as u64), &mut b).unwrap();
        node = PhysAddr::new(u64::from_ne_bytes(b));
        assert!(!node.is_null());
    }
    node
}

fn write_u64(m: &Machine, pa: PhysAddr, v: u64) {
    m.write(pa, &v.to_ne_bytes()).unwrap();
}

fn read_u64(m: &Machine, pa: PhysAddr) -> u64 {
    let mut b = [0u8; 8];
    m.read(pa, &mut b).unwrap();
    u64::from_ne_bytes(b)
}

/// Builds a handover with one order-0 block at page 7 and applies
/// `corrupt` to kernel A's machine; returns the import result and the
/// machine's leak counter after the attempt.
fn import_after(corrupt: impl FnOnce(&Machine, &Tracker<&Machine>, PhysAddr)) -> Result<(), TrackError> {
    let m = machine();
    let t = tracker(&m);
    let pa = page(&m, 7);
    t.preserve_folio(pa, Order::ZERO).unwrap();
    corrupt(&m, &t, pa);
    let data = t.finish().unwrap();
    let m = m.kexec(data);
    let r = Incoming::import(&m, &data).map(|_| ());
    assert_eq!(m.outstanding_pages(), 0, "a failed import allocated");
    r
}

fn key7(m: &Machine) -> RadixKey {
    RadixKey::encode(page(m, 7), Order::ZERO).unwrap()
}

#[test]
fn shared_table_is_rejected() {
    let e = import_after(|m, t, _| {
        let key = key7(m);
        let l1 = node_on_path(m, t.tree_root(), key, 1);
        let leaf_slot = PhysAddr::new(l1.as_u64() + 8 * key.table_index(1) as u64);
        let leaf = read_u64(m, leaf_slot);
        // Hang the same leaf under every later slot of the level-1 table:
        // without the check the walk would visit it 500 times.
        for i in key.table_index(1) as u64 + 1..kho_abi::TABLE_ENTRIES as u64 {
            write_u64(m, PhysAddr::new(l1.as_u64() + 8 * i), leaf);
        }
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::Shared, level: 1, .. }), "{e:?}");
}

#[test]
fn misaligned_and_foreign_slots_are_rejected() {
    let e = import_after(|m, t, _| {
        let key = key7(m);
        let l2 = node_on_path(m, t.tree_root(), key, 2);
        let slot = PhysAddr::new(l2.as_u64() + 8 * key.table_index(2) as u64);
        write_u64(m, slot, read_u64(m, slot) + 8);
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::Misaligned, level: 2, .. }), "{e:?}");
    let e = import_after(|m, t, _| {
        let key = key7(m);
        let l2 = node_on_path(m, t.tree_root(), key, 2);
        write_u64(m, PhysAddr::new(l2.as_u64() + 8 * key.table_index(2) as u64), m.ram_end().as_u64());
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::NotRam, level: 2, .. }), "{e:?}");
    let e = import_after(|m, t, _| {
        let key = key7(m);
        let l2 = node_on_path(m, t.tree_root(), key, 2);
        write_u64(m, PhysAddr::new(l2.as_u64() + 8 * key.table_index(2) as u64), m.scratch()[0].addr);
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::InScratch, .. }), "{e:?}");
}

#[test]
fn key_wider_than_the_key_width_is_rejected() {
    let e = import_after(|m, t, _| {
        let key = key7(m);
        let root = t.tree_root();
        let top = GEOMETRY.root_level();
        let valid = read_u64(m, PhysAddr::new(root.as_u64() + 8 * key.table_index(top) as u64));
        // The first root index whose keys are wider than key_bits.
        let first_wide = 1u64 << (GEOMETRY.key_bits - GEOMETRY.level_shift(top));
        write_u64(m, PhysAddr::new(root.as_u64() + 8 * first_wide), valid);
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::KeyTooWide, .. }), "{e:?}");
    assert_eq!(e.errno(), Errno::Range);
}

#[test]
fn zero_key_is_rejected() {
    let mut leaf_pa = PhysAddr::NULL;
    let e = import_after(|m, t, _| {
        // The leaf of keys 0..bitmap_len: reach it with a valid key in it.
        let key = RadixKey::from_raw(GEOMETRY.bitmap_len as u64 / 2).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
        let leaf = node_on_path(m, t.tree_root(), key, 0);
        write_u64(m, leaf, 1);
        leaf_pa = leaf;
    })
    .unwrap_err();
    // The error names the leaf and the bit.
    assert_eq!(e, TrackError::Tree { node: leaf_pa, level: 0, index: 0, fault: TreeFault::ZeroKey });
}

#[test]
fn bad_blocks_are_rejected() {
    // Order above the maximum (inserted behind the tracker's back).
    let e = import_after(|m, t, _| {
        let max = kho_abi::PageAlloc::max_order(m).get();
        let key = RadixKey::encode(page(m, 0), order(max + 1)).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Block { fault: BlockFault::OrderTooLarge, .. }), "{e:?}");
    assert_eq!(e.errno(), Errno::Range);
    let e = import_after(|m, t, _| {
        let key = RadixKey::encode(m.ram_end(), Order::ZERO).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Block { fault: BlockFault::NotRam, .. }), "{e:?}");
    let e = import_after(|m, t, _| {
        let key = RadixKey::encode(PhysAddr::new(m.scratch()[0].addr), Order::ZERO).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Block { fault: BlockFault::InScratch, .. }), "{e:?}");
    // A tree page inside a preserved block: the root is named as the
    // map's root, another node by the slot that points at it.
    let mut root = PhysAddr::NULL;
    let e = import_after(|m, t, _| {
        root = t.tree_root();
        let key = RadixKey::encode(t.tree_root(), Order::ZERO).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
    })
    .unwrap_err();
    assert_eq!(e, TrackError::MapRoot { pa: root, fault: TreeFault::InPreservedBlock });
    // A leaf inside an order-1 block: the error names a table slot whose
    // child lies in that block (the leaf, or another tree page beside it).
    // The preserved page comes from the allocator, so that no tree page
    // allocated later can land on it (at 16 KiB pages a fixed low page
    // does).
    let m = machine();
    let t = tracker(&m);
    let p = kho_abi::PageAlloc::alloc_pages(&m, Order::ZERO).unwrap();
    t.preserve_folio(p, Order::ZERO).unwrap();
    let key = RadixKey::encode(p, Order::ZERO).unwrap();
    let leaf = node_on_path(&m, t.tree_root(), key, 0);
    let o1 = order(1);
    let block = leaf.align_down(o1.checked_bytes().unwrap());
    let data = if block == p.align_down(o1.checked_bytes().unwrap()) {
        // The page would lie in it too: take the leaf alone.
        RadixTree::from_root(t.tree_root()).insert(&m, RadixKey::encode(leaf, Order::ZERO).unwrap()).unwrap();
        t.finish().unwrap()
    } else {
        RadixTree::from_root(t.tree_root()).insert(&m, RadixKey::encode(block, o1).unwrap()).unwrap();
        t.finish().unwrap()
    };
    let m = m.kexec(data);
    let e = Incoming::import(&m, &data).unwrap_err();
    let TrackError::Tree { node, level, index, fault: TreeFault::InPreservedBlock } = e else { panic!("{e:?}") };
    assert!(level >= 1, "{e:?}");
    let child = read_u64(&m, PhysAddr::new(node.as_u64() + 8 * index as u64));
    assert!(child >= block.as_u64() && child < block.as_u64() + 2 * PAGE_SIZE as u64, "{e:?}");
}

fn import_data(corrupt: impl FnOnce(&Machine, &mut KhoData)) -> TrackError {
    let m = machine();
    let t = tracker(&m);
    let mut data = t.finish().unwrap();
    corrupt(&m, &mut data);
    let m = m.kexec(data);
    Incoming::import(&m, &data).unwrap_err()
}

#[test]
fn bad_fdt_and_kho_data_are_rejected() {
    let e = import_data(|_, d| d.fdt_addr = 0);
    assert_eq!(e, TrackError::Abi(AbiError::ZeroAddress { what: "kho_data.fdt_addr" }));
    let e = import_data(|m, d| d.fdt_addr = m.ram_end().as_u64());
    assert!(matches!(e, TrackError::Abi(AbiError::NotRam { .. })), "{e:?}");
    let e = import_data(|m, d| write_u64(m, PhysAddr::new(d.fdt_addr), 0));
    assert!(matches!(e, TrackError::Fdt { .. }), "{e:?}");
    let e = import_data(|_, d| d.fdt_size = 64);
    assert!(matches!(e, TrackError::FdtSize { .. }), "{e:?}");
    let e = import_data(|m, d| d.fdt_addr = m.scratch()[0].addr);
    assert!(matches!(e, TrackError::Abi(AbiError::Forbidden { .. })), "{e:?}");
    // Wrong compatibles: unknown base, unknown component, out of order.
    for compat in ["kho-v9", "kho-v4;radix-v2", "kho-v4;vmalloc-v1;radix-v1"] {
        let e = import_data(|m, d| {
            let map = PhysAddr::new(PAGE_SIZE as u64);
            let dtb = kho_track::fdt::build(compat, map, &[]).unwrap();
            m.write(PhysAddr::new(d.fdt_addr), &dtb).unwrap();
        });
        assert!(
            matches!(e, TrackError::Abi(AbiError::BadCompatible { .. } | AbiError::MalformedCompatible { .. })),
            "{compat}: {e:?}"
        );
    }
    // Missing, short, zero and misaligned memory maps.
    use dtoolkit::model::{DeviceTree, DeviceTreeProperty};
    let with_props = |props: Vec<DeviceTreeProperty>| {
        move |m: &Machine, d: &mut KhoData| {
            let mut tree = DeviceTree::new();
            tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v4"));
            for p in props {
                tree.root.add_property(p);
            }
            m.write(PhysAddr::new(d.fdt_addr), &tree.to_dtb()).unwrap();
        }
    };
    let e = import_data(with_props(vec![]));
    assert!(matches!(e, TrackError::BadProperty { prop: "preserved-memory-map", .. }), "{e:?}");
    let e = import_data(with_props(vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", [0u8; 4])]));
    assert!(matches!(e, TrackError::BadProperty { prop: "preserved-memory-map", len: 8, .. }), "{e:?}");
    let e = import_data(with_props(vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", [0u8; 8])]));
    assert!(matches!(e, TrackError::Abi(AbiError::ZeroAddress { .. })), "{e:?}");
    let e = import_data(with_props(vec![DeviceTreeProperty::new_unchecked(
        "preserved-memory-map",
        0x1008u64.to_ne_bytes(),
    )]));
    assert!(matches!(e, TrackError::Abi(AbiError::Misaligned { .. })), "{e:?}");
    // Scratch array: garbage entries, too many entries.
    let e = import_data(|m, d| write_u64(m, PhysAddr::new(d.scratch_addr), 0x1234));
    assert!(matches!(e, TrackError::Abi(AbiError::Misaligned { .. })), "{e:?}");
    let e = import_data(|_, d| d.scratch_size = 16 * 100_000);
    assert!(matches!(e, TrackError::Abi(AbiError::CountTooLarge { .. })), "{e:?}");
}

#[test]
fn subtree_lookups_distinguish_missing_and_invalid() {
    use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
    let m = machine();
    let t = tracker(&m);
    let root = t.tree_root();
    let data = t.finish().unwrap();
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v4"));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", root.as_u64().to_ne_bytes()));
    tree.root.add_child(
        DeviceTreeNode::builder("short")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("preserved-data", [1u8; 4]))
            .property(DeviceTreeProperty::new_unchecked("blob-size", 8u64.to_ne_bytes()))
            .build(),
    );
    tree.root.add_child(
        DeviceTreeNode::builder("nosize")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("preserved-data", 0x1000u64.to_ne_bytes()))
            .build(),
    );
    m.write(PhysAddr::new(data.fdt_addr), &tree.to_dtb()).unwrap();
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap();
    assert!(matches!(inc.subtree("short").unwrap_err(), TrackError::SubtreeInvalid { prop: "preserved-data", .. }));
    assert!(matches!(inc.subtree("nosize").unwrap_err(), TrackError::SubtreeInvalid { prop: "blob-size", .. }));
    assert_eq!(inc.subtree("other").unwrap_err().errno(), Errno::NoEnt);
}

#[test]
fn older_root_versions_are_read() {
    use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
    for (compat, prop, size) in [("kho-v2", "preserved-data", None), ("kho-v3", "preserved-data", Some(5u64))] {
        let m = machine();
        let t = tracker(&m);
        let root = t.tree_root();
        let data = t.finish().unwrap();
        let mut tree = DeviceTree::new();
        tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", compat));
        tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", root.as_u64().to_ne_bytes()));
        let mut node = DeviceTreeNode::builder("blob")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked(prop, 0x5000u64.to_ne_bytes()));
        if let Some(s) = size {
            node = node.property(DeviceTreeProperty::new_unchecked("blob-size", s.to_ne_bytes()));
        }
        tree.root.add_child(node.build());
        m.write(PhysAddr::new(data.fdt_addr), &tree.to_dtb()).unwrap();
        let m = m.kexec(data);
        let inc = Incoming::import(&m, &data).unwrap();
        let sub = inc.subtree("blob").unwrap();
        assert_eq!((sub.pa.as_u64(), sub.size), (0x5000, size), "{compat}");
    }
}

/// A `kho-v1` handover laid out by hand from ABI.md section 6: two chunks
/// (orders 0 and 3), bitmaps, subtree property `fdt`.
#[test]
fn legacy_v1_handover_is_converted_and_restored() {
    use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
    use kho_abi::PageAlloc;
    let m = machine();
    let base = m.ram_base().as_u64();
    let page = move |n: u64| PhysAddr::new(base + n * PAGE_SIZE as u64);
    let chunk0 = m.alloc_pages(Order::ZERO).unwrap();
    let chunk1 = m.alloc_pages(Order::ZERO).unwrap();
    let bitmap0 = m.alloc_pages(Order::ZERO).unwrap();
    let bitmap3 = m.alloc_pages(Order::ZERO).unwrap();
    let fdt_page = m.alloc_pages(Order::ZERO).unwrap();
    let scratch_array = m.alloc_pages(Order::ZERO).unwrap();
    // Blocks: order 0 at pages 1000, 1001, 1005; order 3 at pages 1024, 1032.
    let start0 = page(1000);
    let start3 = page(1024);
    let w = |pa: PhysAddr, off: u64, v: u64| write_u64(&m, PhysAddr::new(pa.as_u64() + off), v);
    w(chunk0, 0, chunk1.as_u64());
    m.write(PhysAddr::new(chunk0.as_u64() + 8), &0u32.to_ne_bytes()).unwrap();
    m.write(PhysAddr::new(chunk0.as_u64() + 12), &1u32.to_ne_bytes()).unwrap();
    w(chunk0, 16, start0.as_u64());
    w(chunk0, 24, bitmap0.as_u64());
    w(bitmap0, 0, 0b10_0011);
    w(chunk1, 0, 0);
    m.write(PhysAddr::new(chunk1.as_u64() + 8), &3u32.to_ne_bytes()).unwrap();
    m.write(PhysAddr::new(chunk1.as_u64() + 12), &1u32.to_ne_bytes()).unwrap();
    w(chunk1, 16, start3.as_u64());
    w(chunk1, 24, bitmap3.as_u64());
    w(bitmap3, 0, 0b11);
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v1"));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", chunk0.as_u64().to_ne_bytes()));
    tree.root.add_child(
        DeviceTreeNode::builder("memblock")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("fdt", page(1001).as_u64().to_ne_bytes()))
            .build(),
    );
    m.write(fdt_page, &tree.to_dtb()).unwrap();
    let s = m.scratch()[0];
    kho_abi::write_phys(&m, scratch_array, &s).unwrap();
    let data = KhoData {
        fdt_addr: fdt_page.as_u64(),
        fdt_size: PAGE_SIZE as u64,
        scratch_addr: scratch_array.as_u64(),
        scratch_size: 16,
    };
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap();
    assert_eq!(inc.version(), kho_abi::RootVersion::V1);
    let o3 = order(3);
    assert_eq!(
        incoming_blocks(&inc),
        vec![
            (start3, o3),
            (page(1032), o3),
            (page(1000), Order::ZERO),
            (page(1001), Order::ZERO),
            (page(1005), Order::ZERO)
        ]
    );
    assert_eq!(inc.stats().pages, 19);
    let sub = inc.subtree("memblock").unwrap();
    assert_eq!((sub.pa, sub.size), (page(1001), None));
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    inc.restore_folio(start3, o3).unwrap();
    inc.restore_folio(page(1032), o3).unwrap();
    inc.restore_folio(page(1005), Order::ZERO).unwrap();
    assert!(inc.restore_folio(page(1002), Order::ZERO).is_err());
    assert_eq!(inc.unclaimed().unwrap().len(), 2);
    // The converted tree came from scratch and goes back at finish.
    assert!(m.outstanding_pages() > 0);
    inc.finish();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn legacy_v1_rejects() {
    use dtoolkit::model::{DeviceTree, DeviceTreeProperty};
    use kho_abi::PageAlloc;
    // A chunk list that loops back on itself, and one naming a bitmap in
    // scratch: each a specific error, and nothing left allocated.
    for case in 0..3 {
        let m = machine();
        let chunk = m.alloc_pages(Order::ZERO).unwrap();
        let bitmap = m.alloc_pages(Order::ZERO).unwrap();
        let fdt_page = m.alloc_pages(Order::ZERO).unwrap();
        let scratch_array = m.alloc_pages(Order::ZERO).unwrap();
        kho_abi::write_phys(&m, scratch_array, &m.scratch()[0]).unwrap();
        let w = |pa: PhysAddr, off: u64, v: u64| write_u64(&m, PhysAddr::new(pa.as_u64() + off), v);
        w(chunk, 0, if case == 0 { chunk.as_u64() } else { 0 });
        m.write(PhysAddr::new(chunk.as_u64() + 8), &(if case == 2 { 99u32 } else { 0 }).to_ne_bytes()).unwrap();
        m.write(PhysAddr::new(chunk.as_u64() + 12), &1u32.to_ne_bytes()).unwrap();
        w(chunk, 16, m.ram_base().as_u64());
        w(chunk, 24, if case == 1 { m.scratch()[0].addr } else { bitmap.as_u64() });
        let mut tree = DeviceTree::new();
        tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v1"));
        tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", chunk.as_u64().to_ne_bytes()));
        m.write(fdt_page, &tree.to_dtb()).unwrap();
        let data = KhoData {
            fdt_addr: fdt_page.as_u64(),
            fdt_size: PAGE_SIZE as u64,
            scratch_addr: scratch_array.as_u64(),
            scratch_size: 16,
        };
        let m = m.kexec(data);
        let e = Incoming::import(&m, &data).unwrap_err();
        match case {
            0 => {
                use kho_abi::chain::{ChainError, ChainFault};
                let cycle = ChainError {
                    index: 1,
                    pa: chunk,
                    field: kho_abi::chain::LinkField::Next,
                    fault: ChainFault::Cycle { first: 0 },
                };
                assert_eq!(e, TrackError::V1Chain(cycle));
            }
            1 => assert!(matches!(e, TrackError::Tree { fault: TreeFault::InScratch, level: 1, .. }), "{e:?}"),
            _ => assert!(matches!(e, TrackError::Abi(AbiError::OrderTooLarge { .. })), "{e:?}"),
        }
        assert_eq!(m.outstanding_pages(), 0);
    }
}

#[test]
fn overlapping_blocks_are_rejected() {
    // An order-1 block and an order-0 block inside it: two owners for one
    // page. Each alone is fine; together the import refuses them.
    let e = import_after(|m, t, _| {
        let pair = page(m, 64);
        t.preserve_folio(pair, order(1)).unwrap();
        let inner = PhysAddr::new(pair.as_u64() + PAGE_SIZE as u64);
        RadixTree::from_root(t.tree_root()).insert(m, RadixKey::encode(inner, Order::ZERO).unwrap()).unwrap();
    })
    .unwrap_err();
    assert!(matches!(e, TrackError::Block { fault: BlockFault::Overlaps, order, .. } if order == Order::ZERO), "{e:?}");
    assert_eq!(e.errno(), Errno::Inval);
}
