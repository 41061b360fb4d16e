//! Corrupt handovers: every reject path of kho-track's incoming side, each
//! produced by writing kernel A's RAM before the image is saved (as
//! kho-track's own tests do), must make `kho inspect` exit 2 and name the
//! fault. The JSON form must say the same and match the schema.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use kho_abi::{GEOMETRY, KhoData, Order, PhysAddr, RadixKey, TABLE_ENTRIES};
use kho_sim::Machine;
use kho_track::{RadixTree, Tracker};

/// Runs `kho inspect` (text, then JSON) and checks exit code 2 and that
/// every `needle` is in the output of each.
fn rejected(path: &Path, extra: &[&str], needles: &[&str]) -> String {
    let mut args = vec!["inspect".to_string(), path.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = kho(&args);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.is_empty(), "a report for a corrupt handover: {}", run.stdout);
    for n in needles {
        assert!(run.stderr.contains(n), "{n:?} not in {}", run.stderr);
    }
    assert!(run.stderr.starts_with("error: the handover is corrupt: "), "{}", run.stderr);
    let (code, v) = inspect_json(path, extra);
    assert_eq!(code, 2);
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["error"]["kind"], "corrupt");
    // The fault's stable name is given, in JSON and in the text.
    let fault = v["error"]["fault"].as_str().expect("a stable fault name");
    assert!(fault.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{fault}");
    assert!(run.stderr.contains(&format!("fault:   {fault}")), "{}", run.stderr);
    let all =
        format!("{} {} {} {}", v["error"]["fault"], v["error"]["message"], v["error"]["detail"], v["error"]["errno"]);
    for n in needles {
        assert!(all.contains(n), "{n:?} not in {all}");
    }
    run.stderr
}

fn key_of(block: PhysAddr) -> RadixKey {
    RadixKey::encode(block, Order::ZERO).unwrap()
}

/// PA of the node at `level` on the path to `key`.
fn node_on_path(m: &Machine, root: PhysAddr, key: RadixKey, level: u32) -> PhysAddr {
    let mut node = root;
    for l in ((level + 1)..=GEOMETRY.root_level()).rev() {
        node = PhysAddr::new(read_u64(m, PhysAddr::new(node.as_u64() + 8 * key.table_index(l) as u64)));
        assert!(!node.is_null());
    }
    node
}

/// The slot at `level` on the path to `block`'s key.
fn slot_of(m: &Machine, t: &Tracker<&Machine>, block: PhysAddr, level: u32) -> PhysAddr {
    let key = key_of(block);
    let node = node_on_path(m, t.tree_root(), key, level);
    PhysAddr::new(node.as_u64() + 8 * key.table_index(level) as u64)
}

fn insert(m: &Machine, t: &Tracker<&Machine>, pa: PhysAddr, o: u32) {
    RadixTree::from_root(t.tree_root()).insert(m, RadixKey::encode(pa, order(o)).unwrap()).unwrap();
}

fn tree_image(name: &str, corrupt: impl FnOnce(&Machine, &Tracker<&Machine>, PhysAddr)) -> PathBuf {
    corrupt_image(name, corrupt, |_, _| {})
}

fn data_image(name: &str, after: impl FnOnce(&Machine, &mut KhoData)) -> PathBuf {
    corrupt_image(name, |_, _, _| {}, after)
}

/// Writes a root FDT with `compatible` and `props` over kernel A's.
fn write_fdt(m: &Machine, d: &KhoData, compatible: &str, props: Vec<DeviceTreeProperty>, subs: Vec<DeviceTreeNode>) {
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", compatible));
    for p in props {
        tree.root.add_property(p);
    }
    for s in subs {
        tree.root.add_child(s);
    }
    let mut page = tree.to_dtb();
    page.resize(PAGE as usize, 0);
    m.write(PhysAddr::new(d.fdt_addr), &page).unwrap();
}

#[test]
fn a_sound_handover_passes_first() {
    let path = tree_image("sound", |_, _, _| {});
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["preserved"]["blocks"], 2, "page 7 and the FDT page");
}

#[test]
fn bad_fdt_magic() {
    let path = data_image("fdt-magic", |m, d| write_u64(m, PhysAddr::new(d.fdt_addr), 0));
    let err = rejected(&path, &[], &["root FDT at PA", "fdt_parse"]);
    assert!(err.contains("meaning: the root FDT does not parse"), "{err}");
}

#[test]
fn wrong_compatible() {
    let path = data_image("compat", |m, d| {
        let map = PhysAddr::new(d.fdt_addr + PAGE).as_u64().to_ne_bytes();
        write_fdt(m, d, "kho-v9", vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", map)], vec![]);
    });
    rejected(&path, &[], &["incompatible", "bad_compatible", "EINVAL"]);
    let path = data_image("compat-component", |m, d| {
        let map = PhysAddr::new(d.fdt_addr + PAGE).as_u64().to_ne_bytes();
        let props = vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", map)];
        write_fdt(m, d, "kho-v4;radix-v2", props, vec![]);
    });
    rejected(&path, &[], &["malformed_compatible"]);
}

#[test]
fn missing_short_or_zero_memory_map() {
    let path = data_image("map-missing", |m, d| write_fdt(m, d, "kho-v4", vec![], vec![]));
    rejected(&path, &[], &["preserved-memory-map", "bad_property"]);
    let path = data_image("map-short", |m, d| {
        write_fdt(m, d, "kho-v4", vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", [1u8; 4])], vec![])
    });
    rejected(&path, &[], &["preserved-memory-map", "value=0x8"]);
    let path = data_image("map-zero", |m, d| {
        write_fdt(m, d, "kho-v4", vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", [0u8; 8])], vec![])
    });
    rejected(&path, &[], &["preserved-memory-map: address is zero", "zero_address"]);
}

#[test]
fn misaligned_slot() {
    let path = tree_image("slot-misaligned", |m, t, b| {
        let slot = slot_of(m, t, b, 2);
        write_u64(m, slot, read_u64(m, slot) + 8);
    });
    rejected(&path, &[], &["(level 2)", "misaligned"]);
}

#[test]
fn slot_outside_ram() {
    let path = tree_image("slot-not-ram", |m, t, b| write_u64(m, slot_of(m, t, b, 2), m.ram_end().as_u64()));
    let err = rejected(&path, &[], &["(level 2)", "not_ram"]);
    assert!(err.contains("meaning: an address outside the image's RAM"), "{err}");
}

#[test]
fn slot_in_scratch() {
    let path = tree_image("slot-scratch", |m, t, b| write_u64(m, slot_of(m, t, b, 2), m.scratch()[0].addr));
    rejected(&path, &[], &["in_scratch"]);
}

#[test]
fn shared_table() {
    let path = tree_image("shared", |m, t, b| {
        let key = key_of(b);
        let l1 = node_on_path(m, t.tree_root(), key, 1);
        let leaf = read_u64(m, PhysAddr::new(l1.as_u64() + 8 * key.table_index(1) as u64));
        for i in key.table_index(1) as u64 + 1..TABLE_ENTRIES as u64 {
            write_u64(m, PhysAddr::new(l1.as_u64() + 8 * i), leaf);
        }
    });
    let err = rejected(&path, &[], &["(level 1)", "shared"]);
    assert!(err.contains("meaning: a table or leaf is reached through two slots"), "{err}");
}

#[test]
fn key_too_wide() {
    let path = tree_image("key-wide", |m, t, b| {
        let root = t.tree_root();
        let top = GEOMETRY.root_level();
        let valid = read_u64(m, PhysAddr::new(root.as_u64() + 8 * key_of(b).table_index(top) as u64));
        let first_wide = 1u64 << (GEOMETRY.key_bits - GEOMETRY.level_shift(top));
        write_u64(m, PhysAddr::new(root.as_u64() + 8 * first_wide), valid);
    });
    rejected(&path, &[], &["key_too_wide", "ERANGE"]);
}

#[test]
fn zero_key() {
    let path = tree_image("zero-key", |m, t, _| {
        let key = RadixKey::from_raw(GEOMETRY.bitmap_len as u64 / 2).unwrap();
        RadixTree::from_root(t.tree_root()).insert(m, key).unwrap();
        write_u64(m, node_on_path(m, t.tree_root(), key, 0), 1);
    });
    rejected(&path, &[], &["zero_key"]);
}

#[test]
fn block_order_too_large() {
    // Above --max-order 10 (the kernel's MAX_PAGE_ORDER) but not above the
    // default of 18: rejected only with the option.
    let path = tree_image("order-11", |m, t, _| insert(m, t, alloc(m, 11), 11));
    let (code, _) = inspect_json(&path, &[]);
    assert_eq!(code, 0);
    rejected(&path, &["--max-order", "10"], &["order 11", "order_too_large", "ERANGE"]);
    // Order 19 (2 GiB) at the 4 GiB base: above the default.
    let path = tree_image("order-19", |m, t, _| insert(m, t, page(m, 0), 19));
    rejected(&path, &[], &["order 19", "order_too_large"]);
}

#[test]
fn block_outside_ram_or_in_scratch() {
    let path = tree_image("block-not-ram", |m, t, _| insert(m, t, m.ram_end(), 0));
    rejected(&path, &[], &["preserved block", "not_ram"]);
    let path = tree_image("block-scratch", |m, t, _| insert(m, t, PhysAddr::new(m.scratch()[0].addr), 0));
    let err = rejected(&path, &[], &["preserved block", "in_scratch"]);
    assert!(err.contains("meaning: inside a scratch area"), "{err}");
}

#[test]
fn tree_page_in_preserved_block() {
    let path = tree_image("tree-in-block", |m, t, _| insert(m, t, t.tree_root(), 0));
    rejected(&path, &[], &["in_preserved_block"]);
}

#[test]
fn bad_kho_data() {
    let path = data_image("kho-data-zero", |_, d| d.fdt_addr = 0);
    rejected(&path, &[], &["kho_data.fdt_addr: address is zero"]);
    let path = data_image("kho-data-size", |_, d| d.fdt_size = 0);
    rejected(&path, &[], &["kho_data.fdt_size: invalid value"]);
    let path = data_image("kho-data-not-ram", |m, d| d.fdt_addr = m.ram_end().as_u64());
    rejected(&path, &[], &["is not RAM"]);
    let path = data_image("fdt-in-scratch", |m, d| d.fdt_addr = m.scratch()[0].addr);
    rejected(&path, &[], &["root FDT lies in a scratch area"]);
    let path = data_image("scratch-entry", |m, d| write_u64(m, PhysAddr::new(d.scratch_addr), 0x1234));
    rejected(&path, &[], &["kho_scratch.addr", "misaligned"]);
    let path = data_image("scratch-count", |_, d| d.scratch_size = 16 * 100_000);
    rejected(&path, &[], &["count_too_large"]);
}

#[test]
fn bad_kho_data_note() {
    // A note descriptor that is not 32 bytes, and two KHO notes.
    let good = corrupt_image("note-src", |_, _, _| {}, |_, _| {});
    let segs = read_segments(&good);
    let short = tmp("note-short.img");
    write_elf(&short, &segs, &[("KHO", 1, vec![0u8; 24])], 0);
    rejected(&short, &[], &["bad kho_data note", "24 bytes"]);
    let data = KhoData { fdt_addr: 0x1_0000_1000, fdt_size: PAGE, scratch_addr: 0, scratch_size: 0 };
    let twice = tmp("note-twice.img");
    write_elf(&twice, &segs, &[kho_note(&data), kho_note(&data)], 0);
    rejected(&twice, &[], &["more than one KHO note"]);
    // Other notes (and other types under the name) are ignored: without
    // the KHO note the root is found by the scan.
    let other = tmp("note-other.img");
    let notes = [("CORE", 1, vec![0u8; 40]), ("KHO", 2, vec![1u8; 8])];
    write_elf(&other, &segs, &notes, 0);
    let run = kho(&["inspect", other.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("found by scanning memory"), "{}", run.stdout);
}

#[test]
fn invalid_subtree_is_reported_with_the_rest() {
    let path = data_image("subtree-invalid", |m, d| {
        let map = read_map(m, d);
        let bad = DeviceTreeNode::builder("broken")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("preserved-data", [1u8; 4]))
            .property(DeviceTreeProperty::new_unchecked("blob-size", 8u64.to_ne_bytes()))
            .build();
        let props = vec![DeviceTreeProperty::new_unchecked("preserved-memory-map", map.to_ne_bytes())];
        write_fdt(m, d, "kho-v4", props, vec![bad]);
    });
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.contains("broken  INVALID: subtree \"broken\": property \"preserved-data\""), "{}", run.stdout);
    assert!(run.stdout.contains("NOT well formed"));
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 2);
    assert_eq!(v["ok"], false);
    assert_eq!(v["subtrees"][0]["name"], "broken");
    assert!(v["subtrees"][0]["pa"].is_null());
    assert!(v["subtrees"][0]["error"].as_str().unwrap().contains("preserved-data"));
}

/// The `preserved-memory-map` of kernel A's root FDT.
fn read_map(m: &Machine, d: &KhoData) -> u64 {
    let mut page = vec![0u8; PAGE as usize];
    m.read(PhysAddr::new(d.fdt_addr), &mut page).unwrap();
    kho_track::fdt::RootFdt::parse(PhysAddr::new(d.fdt_addr), page).unwrap().memory_map().as_u64()
}
