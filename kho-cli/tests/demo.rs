//! Images like the handover demo's (`examples/handover.rs --save`): kernel
//! A preserves folios of several orders, a page range and a manifest
//! subtree on kho-sim; `kho inspect` must report exactly that.

mod common;

use std::path::PathBuf;

use common::*;
use kho_abi::{KhoScratch, Order};
use serde_json::Value;

struct Demo {
    path: PathBuf,
    /// Every preserved block `(pa, order)`, the tracker's FDT page included.
    blocks: Vec<(u64, u32)>,
    scratch: Vec<KhoScratch>,
    fdt: u64,
    tree_pages: u64,
    manifest: u64,
    loose: u64,
}

fn demo_image(name: &str) -> Demo {
    demo_image_with(name, false)
}

/// The demo handover; with `loose`, a second subtree whose blob is not
/// preserved.
fn demo_image_with(name: &str, loose_subtree: bool) -> Demo {
    let m = machine(256);
    let mut t = tracker(&m);
    let mut blocks = Vec::new();
    for (i, o) in [0u32, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 3, 9].into_iter().enumerate() {
        let pa = alloc(&m, o);
        m.fill_random(pa, PAGE << o, i as u64).unwrap();
        t.preserve_folio(pa, order(o)).unwrap();
        blocks.push((pa.as_u64(), o));
    }
    // 300 pages from an order-9 boundary: blocks of 256, 32, 8 and 4 pages.
    let range = alloc(&m, 9).as_u64();
    t.preserve_pages(kho_abi::PhysAddr::new(range), 300).unwrap();
    blocks.extend([(range, 8), (range + 256 * PAGE, 5), (range + 288 * PAGE, 3), (range + 296 * PAGE, 2)]);
    // The manifest blob, preserved; maybe a second subtree whose blob is not.
    let manifest = alloc(&m, 0);
    m.write(manifest, b"kho-demo manifest").unwrap();
    t.preserve_folio(manifest, Order::ZERO).unwrap();
    blocks.push((manifest.as_u64(), 0));
    t.add_subtree("kho-demo", manifest, 17).unwrap();
    let loose = alloc(&m, 0);
    if loose_subtree {
        t.add_subtree("not-kept", loose, 4096).unwrap();
    }
    // The tracker keeps the root FDT in a preserved page of its own.
    blocks.push((t.fdt_page().as_u64(), 0));
    let mut walked = tracker_blocks(&t);
    walked.sort_unstable();
    blocks.sort_unstable();
    assert_eq!(walked, blocks, "the test's record of what it preserved");
    let tree_pages = t.tree_pages().unwrap();
    let data = t.finish().unwrap();
    let path = tmp(&format!("{name}.img"));
    m.save_image_with(&path, Some(&data)).unwrap();
    Demo {
        path,
        blocks,
        scratch: m.scratch().to_vec(),
        fdt: data.fdt_addr,
        tree_pages,
        manifest: manifest.as_u64(),
        loose: loose.as_u64(),
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not an integer"))
}

#[test]
fn inspect_json_matches_what_kernel_a_preserved() {
    let d = demo_image("demo-json");
    let (code, v) = inspect_json(&d.path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["root"]["source"], "note");
    assert_eq!(v["root"]["compatible"], "kho-v4");
    assert_eq!(v["root"]["version"], "kho-v4");
    assert_eq!(v["root"]["legacy"], false);
    assert_eq!(u(&v["root"]["fdt_pa"]), d.fdt);
    assert_eq!(v["root"]["fdt_page_preserved"], true);
    assert_eq!(v["image"]["ram_bytes"], 256u64 << 20);
    assert_eq!(u(&v["image"]["ram"][0]["pa"]), 0x1_0000_0000);

    // Preserved memory by order.
    let expected = by_order(&d.blocks);
    let got: Vec<(u32, u64, u64, u64)> = v["preserved"]["by_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (u(&o["order"]) as u32, u(&o["blocks"]), u(&o["pages"]), u(&o["bytes"])))
        .collect();
    let want: Vec<(u32, u64, u64, u64)> = expected.iter().map(|(&o, &n)| (o, n, n << o, (n << o) * PAGE)).collect();
    assert_eq!(got, want);
    let pages: u64 = d.blocks.iter().map(|&(_, o)| 1u64 << o).sum();
    assert_eq!(u(&v["preserved"]["blocks"]), d.blocks.len() as u64);
    assert_eq!(u(&v["preserved"]["pages"]), pages);
    assert_eq!(u(&v["preserved"]["bytes"]), pages * PAGE);

    // Coalesced ranges.
    let ranges = coalesce(&d.blocks);
    let largest = ranges.iter().max_by_key(|&&(a, b)| (b - a, std::cmp::Reverse(a))).unwrap();
    assert_eq!(u(&v["ranges"]["count"]), ranges.len() as u64);
    assert_eq!(u(&v["ranges"]["total_bytes"]), ranges.iter().map(|&(a, b)| b - a).sum::<u64>());
    assert_eq!(
        (u(&v["ranges"]["largest"]["pa"]), u(&v["ranges"]["largest"]["size"])),
        (largest.0, largest.1 - largest.0)
    );

    // Subtrees, scratch, tree.
    let subs = v["subtrees"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["name"], "kho-demo");
    assert_eq!(u(&subs[0]["pa"]), d.manifest);
    assert_eq!(u(&subs[0]["size"]), 17);
    assert_eq!(subs[0]["preserved"], true);
    let scratch: Vec<(u64, u64)> =
        v["scratch"].as_array().unwrap().iter().map(|s| (u(&s["pa"]), u(&s["size"]))).collect();
    assert_eq!(scratch, d.scratch.iter().map(|s| (s.addr, s.size)).collect::<Vec<_>>());
    assert_eq!(v["tree"]["format"], "radix-v1");
    assert_eq!(u(&v["tree"]["pages"]), d.tree_pages);
    assert_eq!(u(&v["tree"]["bytes"]), d.tree_pages * PAGE);
}

#[test]
fn inspect_text_reports_the_same() {
    let d = demo_image("demo-text");
    let run = kho(&["inspect".as_ref(), d.path.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let out = &run.stdout;
    assert!(out.contains("compatible \"kho-v4\" (version kho-v4)"), "{out}");
    assert!(out.contains("from the image's KHO note"), "{out}");
    assert!(out.contains(&format!("kho-demo  PA {:#x}  17 bytes  blob preserved: yes", d.manifest)), "{out}");
    assert!(out.contains(&format!("preserved  {} blocks", d.blocks.len())), "{out}");
    assert!(out.contains(&format!("radix-v1: {} pages", d.tree_pages)), "{out}");
    assert!(out.contains(&format!("{:#x}..{:#x}  16 MiB", d.scratch[0].addr, d.scratch[0].addr + d.scratch[0].size)));
    // One table row per order present, order 10 included.
    assert!(out.lines().any(|l| l.trim_start().starts_with("10 ") && l.contains("(4 MiB)")), "{out}");
    assert!(out.ends_with("result     well formed\n"), "{out}");
}

#[test]
fn the_image_file_is_never_written() {
    let d = demo_image("demo-ro");
    let before = std::fs::read(&d.path).unwrap();
    let mut perms = std::fs::metadata(&d.path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&d.path, perms).unwrap();
    let run = kho(&["inspect".as_ref(), d.path.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let map = tmp("demo-ro.svg");
    let run = kho(&["map".as_ref(), d.path.as_os_str(), "--svg".as_ref(), map.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.all());
    // The import clears the root FDT's bit in the tree: in a private copy.
    assert!(std::fs::read(&d.path).unwrap() == before, "the image changed");
}

#[test]
fn progress_goes_to_stderr_when_asked() {
    let d = demo_image("demo-progress");
    let run = kho(&["inspect".as_ref(), "--progress".as_ref(), d.path.as_os_str()]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("validating the handover: done"), "{}", run.stderr);
    assert!(run.stderr.contains("walking ranges: done"), "{}", run.stderr);
    assert!(!run.stdout.contains("done"), "progress leaked into the report");
    // Quiet without --progress when stderr is not a terminal.
    let run = kho(&["inspect".as_ref(), d.path.as_os_str()]);
    assert_eq!(run.stderr, "");
}

/// A subtree whose blob is not preserved would not restore in the next
/// kernel: the run fails with the subtree named and the fault's stable name.
#[test]
fn an_unpreserved_blob_fails_naming_the_subtree() {
    let d = demo_image_with("demo-loose", true);
    let run = kho(&["inspect".as_ref(), d.path.as_os_str()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("subtree \"not-kept\""), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{:#x}", d.loose)), "{}", run.stderr);
    let (code, v) = inspect_json(&d.path, &[]);
    assert_eq!(code, 2);
    assert_eq!(v["error"]["fault"], "blob_not_preserved");
}
