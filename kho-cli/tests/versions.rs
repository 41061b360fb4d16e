//! Every mainline root version: legacy `kho-v1` (a chunk list of per-order
//! bitmaps laid out by hand from ABI.md section 6), and `kho-v2` / `kho-v3`
//! (radix tree; `blob-size` from v3 on).

mod common;

use std::path::PathBuf;

use common::*;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use kho_abi::{KhoData, Order, PhysAddr};
use kho_sim::Machine;
use serde_json::{Value, json};

/// A `kho-v1` handover: two chunks (order 0 with blocks at pages 1000,
/// 1001 and 1005; order 3 at pages 2048 and 2056), subtree `memblock`
/// whose `fdt` property points at page 1001. The chunks' PAs let a test
/// corrupt the map.
struct V1 {
    m: Machine,
    data: KhoData,
    chunk0: PhysAddr,
    chunk1: PhysAddr,
}

fn v1() -> V1 {
    let m = machine(64);
    let chunk0 = alloc(&m, 0);
    let chunk1 = alloc(&m, 0);
    let bitmaps = [alloc(&m, 0), alloc(&m, 0)];
    let fdt_page = alloc(&m, 0);
    let scratch_array = alloc(&m, 0);
    let w = |pa: PhysAddr, off: u64, v: u64| write_u64(&m, PhysAddr::new(pa.as_u64() + off), v);
    let w32 = |pa: PhysAddr, off: u64, v: u32| m.write(PhysAddr::new(pa.as_u64() + off), &v.to_ne_bytes()).unwrap();
    // Chunk header {u64 next; u32 order; u32 num_elms}, then {phys_start, bitmap}.
    w(chunk0, 0, chunk1.as_u64());
    w32(chunk0, 8, 0);
    w32(chunk0, 12, 1);
    w(chunk0, 16, page(&m, 1000).as_u64());
    w(chunk0, 24, bitmaps[0].as_u64());
    w(bitmaps[0], 0, 0b10_0011);
    w(chunk1, 0, 0);
    w32(chunk1, 8, 3);
    w32(chunk1, 12, 1);
    w(chunk1, 16, page(&m, 2048).as_u64());
    w(chunk1, 24, bitmaps[1].as_u64());
    w(bitmaps[1], 0, 0b11);
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v1"));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", chunk0.as_u64().to_ne_bytes()));
    tree.root.add_child(
        DeviceTreeNode::builder("memblock")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("fdt", page(&m, 1001).as_u64().to_ne_bytes()))
            .build(),
    );
    m.write(fdt_page, &tree.to_dtb()).unwrap();
    kho_abi::write_phys(&m, scratch_array, &m.scratch()[0]).unwrap();
    let data =
        KhoData { fdt_addr: fdt_page.as_u64(), fdt_size: PAGE, scratch_addr: scratch_array.as_u64(), scratch_size: 16 };
    V1 { m, data, chunk0, chunk1 }
}

fn save(m: &Machine, data: &KhoData, name: &str) -> PathBuf {
    let path = tmp(&format!("{name}.img"));
    m.save_image_with(&path, Some(data)).unwrap();
    path
}

#[test]
fn legacy_v1_is_reported_as_such() {
    let h = v1();
    let base = h.m.ram_base().as_u64();
    let path = save(&h.m, &h.data, "v1");
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root"]["compatible"], "kho-v1");
    assert_eq!(v["root"]["version"], "kho-v1");
    assert_eq!(v["root"]["legacy"], true);
    assert_eq!(v["root"]["memory_map_pa"], h.chunk0.as_u64());
    assert_eq!(v["root"]["fdt_page_preserved"], false);
    assert_eq!(
        v["preserved"],
        json!({
            "blocks": 5, "pages": 19, "bytes": 19 * PAGE,
            "by_order": [
                { "order": 0, "blocks": 3, "pages": 3, "bytes": 3 * PAGE },
                { "order": 3, "blocks": 2, "pages": 16, "bytes": 16 * PAGE },
            ],
        })
    );
    // Pages 1000-1001, 1005, and 2048-2063.
    assert_eq!(v["ranges"]["count"], 3);
    assert_eq!(v["ranges"]["largest"], json!({ "pa": base + 2048 * PAGE, "size": 16 * PAGE }));
    // The map's own pages, not the radix tree the inspector converted it to.
    assert_eq!(v["tree"], json!({ "format": "kho-v1 chunks", "pages": 4, "bytes": 4 * PAGE }));
    assert_eq!(
        v["subtrees"],
        json!([{
            "name": "memblock", "pa": base + 1001 * PAGE, "size": null, "preserved": true, "error": null,
            "payload": { "kind": "opaque" },
        }])
    );
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert!(run.stdout.contains("(version kho-v1, legacy chunk-list memory map)"), "{}", run.stdout);
    assert!(run.stdout.contains("tree       kho-v1 chunks: 4 pages"), "{}", run.stdout);
    assert!(run.stdout.contains("size n/a (before kho-v3)"), "{}", run.stdout);

    // The map draws the chunk and bitmap pages.
    let svg = tmp("v1.svg");
    let run = kho(&["map", path.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert!(doc.descendants().any(|n| n.text() == Some("kho-v1 map page")));
    let tips: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("tree"))
        .filter_map(|n| n.first_child().and_then(|c| c.text()))
        .collect();
    assert!(tips.iter().any(|t| t.contains(&format!("{:#x}", h.chunk0.as_u64()))), "{tips:?}");
}

/// A corruption of a `kho-v1` map: its name, how, and what the error says.
type Case = (&'static str, fn(&V1), &'static [&'static str]);

#[test]
fn legacy_v1_rejects() {
    let cases: [Case; 4] = [
        ("v1-loop", |h| write_u64(&h.m, h.chunk1, h.chunk0.as_u64()), &["page 2", "fault:   chain_cycle"]),
        (
            "v1-scratch",
            |h| write_u64(&h.m, PhysAddr::new(h.chunk1.as_u64() + 24), h.m.scratch()[0].addr),
            &["(level 1)", "in_scratch"],
        ),
        (
            "v1-order",
            |h| h.m.write(PhysAddr::new(h.chunk1.as_u64() + 8), &99u32.to_ne_bytes()).unwrap(),
            &["fault:   order_too_large"],
        ),
        ("v1-bitmap-not-ram", |h| write_u64(&h.m, PhysAddr::new(h.chunk0.as_u64() + 24), 0x1000), &["not_ram"]),
    ];
    for (name, corrupt, needles) in cases {
        let h = v1();
        corrupt(&h);
        let path = save(&h.m, &h.data, name);
        let run = kho(&["inspect", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{name}: {}", run.all());
        for n in needles {
            assert!(run.stderr.contains(n), "{name}: {n:?} not in {}", run.stderr);
        }
    }
}

#[test]
fn kho_v2_and_v3_roots() {
    for (compat, size) in [("kho-v2", None), ("kho-v3", Some(5u64))] {
        let m = machine(64);
        let t = tracker(&m);
        let blob = alloc(&m, 0);
        t.preserve_folio(blob, Order::ZERO).unwrap();
        let root = t.tree_root();
        let data = t.finish().unwrap();
        let mut tree = DeviceTree::new();
        tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", compat));
        tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", root.as_u64().to_ne_bytes()));
        let mut node = DeviceTreeNode::builder("blob")
            .unwrap()
            .property(DeviceTreeProperty::new_unchecked("preserved-data", blob.as_u64().to_ne_bytes()));
        if let Some(s) = size {
            node = node.property(DeviceTreeProperty::new_unchecked("blob-size", s.to_ne_bytes()));
        }
        tree.root.add_child(node.build());
        let mut fdt = tree.to_dtb();
        fdt.resize(PAGE as usize, 0);
        m.write(PhysAddr::new(data.fdt_addr), &fdt).unwrap();
        let path = save(&m, &data, compat);
        let (code, v) = inspect_json(&path, &[]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["root"]["version"], compat);
        assert_eq!(v["root"]["legacy"], false);
        assert_eq!(v["tree"]["format"], "radix-v1");
        let sub = &v["subtrees"][0];
        assert_eq!(sub["pa"], blob.as_u64());
        assert_eq!(sub["size"], size.map_or(Value::Null, Value::from));
        assert_eq!(sub["preserved"], true);
    }
}
