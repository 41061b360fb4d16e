//! The image written by an independent implementation from the ABI alone
//! (`tests/vectors/independent-v4.img.zst`, see tests/vectors/README.md).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// The independent writer's image (`tests/vectors/independent-v4.img.zst`).
static IMAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| vector("independent-v4.img").display().to_string());

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn independent_v4_image_is_reported_as_written() {
    let (code, v) = inspect_json(Path::new(IMAGE.as_str()), &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root"]["version"], "kho-v4");
    assert_eq!(v["root"]["source"], "note");
    assert_eq!(u(&v["image"]["ram"][0]["pa"]), 0x8000_0000);
    assert_eq!(u(&v["image"]["ram_bytes"]), 16 << 20);
    assert_eq!(u(&v["preserved"]["blocks"]), 7);
    assert_eq!(u(&v["preserved"]["pages"]), 526);
    let orders: Vec<(u64, u64)> =
        v["preserved"]["by_order"].as_array().unwrap().iter().map(|o| (u(&o["order"]), u(&o["blocks"]))).collect();
    assert_eq!(orders, [(0, 4), (1, 1), (3, 1), (9, 1)]);
    let subs = v["subtrees"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["name"], "test-blob");
    assert_eq!(u(&subs[0]["pa"]), 0x8001_0000);
    assert_eq!(u(&subs[0]["size"]), 64);
    assert_eq!(subs[0]["preserved"], true);
    assert_eq!(v["scratch"], serde_json::json!([{ "pa": 0x8080_0000u64, "size": 4u64 << 20 }]));
    assert_eq!(u(&v["tree"]["pages"]), 20);
    // The vector's README lists 0x8020_0000+2 MiB and 0x8040_0000+16 KiB
    // apart, but they touch: the range walk merges them into one.
    assert_eq!(u(&v["ranges"]["count"]), 4);
    assert_eq!(u(&v["ranges"]["total_bytes"]), 526 * PAGE);
    assert_eq!(v["ranges"]["largest"], serde_json::json!({ "pa": 0x8020_0000u64, "size": (2u64 << 20) + (16 << 10) }));
    // The independent writer did not preserve its root FDT page.
    assert_eq!(v["root"]["fdt_page_preserved"], false);
}

#[test]
fn independent_v4_map_has_one_rect_per_run() {
    let svg = tmp("independent.svg");
    let run = kho(&["map", IMAGE.as_str(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg "));
    assert!(text.ends_with("</svg>\n"));
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let class = |n: &roxmltree::Node<'_, '_>| n.attribute("class").unwrap_or("").to_string();
    let rects: Vec<_> = root.descendants().filter(|n| n.has_tag_name("rect")).collect();
    // Runs of one order: order 9 at 0x8020_0000, order 3 at 0x80c0_0000,
    // order 1 at 0x8040_2000, and order 0 at 0x8001_0000, 0x8040_0000 (two
    // blocks) and 0x80e0_0000.
    let mut preserved: Vec<(String, String)> = rects
        .iter()
        .filter(|n| class(n).starts_with("preserved "))
        .map(|n| (class(n), n.children().find_map(|c| c.text().map(str::to_string)).unwrap_or_default()))
        .collect();
    preserved.sort();
    let classes: Vec<&str> = preserved.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        classes,
        ["preserved o0", "preserved o0", "preserved o0", "preserved o1", "preserved o3", "preserved o9"]
    );
    assert!(preserved.iter().any(|(_, t)| t == "order 0: 2 blocks in 0x80400000..0x80402000"), "{preserved:?}");
    assert!(preserved.iter().any(|(_, t)| t == "order 9: 1 block in 0x80200000..0x80400000"), "{preserved:?}");
    // Every preserved rectangle is visible.
    for n in rects.iter().filter(|n| class(n).starts_with("preserved ")) {
        let w: f64 = n.attribute("width").unwrap().parse().unwrap();
        assert!(w >= 1.5, "{w}");
    }
    // 16 MiB in 2 MiB rows: eight RAM backgrounds; scratch over two rows.
    assert_eq!(rects.iter().filter(|n| class(n) == "ram").count(), 8);
    assert_eq!(rects.iter().filter(|n| class(n) == "scratch").count(), 2);
    assert!(rects.iter().any(|n| class(n) == "tree"));
    assert!(rects.iter().any(|n| class(n) == "fdt"));
    // Legend and labels.
    let texts: Vec<&str> = root.descendants().filter_map(|n| n.text()).collect();
    for want in ["RAM", "scratch area", "radix tree page", "root FDT page", "subtree blob", "test-blob"] {
        assert!(texts.contains(&want), "{want} missing from {texts:?}");
    }
    // RAM is one range filling every row: no hole to explain.
    assert!(!texts.contains(&"no RAM"));
    assert!(texts.iter().any(|t| t.starts_with("order 9 (2 MiB): 1 block")));
    assert!(texts.contains(&"0x80000000") && texts.contains(&"0x80e00000"), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("kho map: independent-v4.img")));
    assert!(root.descendants().any(|n| n.attribute("class") == Some("subtree")));
}
