//! Finding the root without the KHO note (`--fdt`, the scan, `--scratch`),
//! and images laid out unlike kho-sim's: data at file offsets that are not
//! 8-byte aligned (as in QEMU dumps), zero-filled segment tails, RAM split
//! over several segments.

mod common;

use std::path::PathBuf;

use common::*;
use kho_abi::{KhoData, Order, PhysAddr};
use serde_json::Value;

struct Plain {
    path: PathBuf,
    data: KhoData,
    fdt: u64,
    block: u64,
}

/// A 64 MiB handover with an order-3 folio and a subtree, saved with or
/// without the KHO note.
fn image(name: &str, note: bool) -> Plain {
    let m = machine(64);
    let mut t = tracker(&m);
    let block = alloc(&m, 3);
    m.fill_random(block, 8 * PAGE, 5).unwrap();
    t.preserve_folio(block, order(3)).unwrap();
    let blob = alloc(&m, 0);
    m.write(blob, b"blob").unwrap();
    t.preserve_folio(blob, Order::ZERO).unwrap();
    t.add_subtree("blob", blob, 4).unwrap();
    let data = t.finish().unwrap();
    let path = tmp(&format!("{name}.img"));
    m.save_image_with(&path, note.then_some(&data)).unwrap();
    Plain { path, data, fdt: data.fdt_addr, block: block.as_u64() }
}

/// The report without what depends on where the root came from or how the
/// file is laid out.
fn essence(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("image");
    o.remove("scratch_source");
    let root = o["root"].as_object_mut().unwrap();
    root.remove("source");
    root.remove("fdt_size");
    root.remove("candidates");
    root.remove("ambiguous");
    v
}

#[test]
fn fdt_option_and_scan_find_the_root_without_the_note() {
    let with = image("with-note", true);
    let (code, noted) = inspect_json(&with.path, &[]);
    assert_eq!(code, 0);
    let scratch = format!("{:#x}:{}", noted["scratch"][0]["pa"].as_u64().unwrap(), noted["scratch"][0]["size"]);

    let p = image("no-note", false);
    let fdt = format!("{:#x}", p.fdt);
    let (code, by_option) = inspect_json(&p.path, &["--fdt", &fdt, "--scratch", &scratch]);
    assert_eq!(code, 0, "{by_option}");
    assert_eq!(by_option["root"]["source"], "option");
    assert_eq!(essence(&by_option), essence(&noted));

    let (code, by_scan) = inspect_json(&p.path, &["--scratch", &scratch]);
    assert_eq!(code, 0, "{by_scan}");
    assert_eq!(by_scan["root"]["source"], "scan");
    assert_eq!(by_scan["root"]["candidates"][0]["fdt_pa"], p.fdt);
    assert_eq!(by_scan["root"]["candidates"][0]["verdict"], "chosen");
    assert_eq!(by_scan["root"]["ambiguous"], false);
    assert_eq!(essence(&by_scan), essence(&noted));

    // Without --scratch the areas are found in memory: the scratch array
    // kho-sim's kernel A left in a page of its own.
    let run = kho(&["inspect", p.path.to_str().unwrap()]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("found by scanning memory"), "{}", run.stdout);
    assert!(run.stdout.contains("scratch    1 area, from a scratch array found in memory"), "{}", run.stdout);
    let (_, found) = inspect_json(&p.path, &[]);
    assert_eq!(found["scratch"], noted["scratch"]);
    assert_eq!(found["scratch_source"], "memory");
    assert_eq!(essence(&found), essence(&noted));
}

#[test]
fn scratch_option_is_checked_like_the_note_s() {
    let p = image("scratch-check", false);
    // Claim the preserved folio lies in a scratch area: the import refuses.
    let scratch = format!("{:#x}:32K", p.block);
    let run = kho(&["inspect", p.path.to_str().unwrap(), "--scratch", &scratch]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("InScratch"), "{}", run.stderr);
    // A malformed one is refused by kho_scratch's own rules.
    let run = kho(&["inspect", p.path.to_str().unwrap(), "--scratch", "0x1000:100"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("kho_scratch.size"), "{}", run.stderr);
    // With the note, --scratch is a usage error.
    let with = image("scratch-note", true);
    let run = kho(&["inspect", with.path.to_str().unwrap(), "--scratch", "0x1000:4K"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("--scratch applies"), "{}", run.stderr);
}

#[test]
fn fdt_option_wins_over_the_note_and_is_validated() {
    let p = image("fdt-wins", true);
    let wrong = format!("{:#x}", p.block);
    let run = kho(&["inspect", p.path.to_str().unwrap(), "--fdt", &wrong]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("root FDT at PA"), "{}", run.stderr);
    assert!(run.stderr.contains("given with --fdt"), "{}", run.stderr);
}

#[test]
fn nothing_found_exits_3() {
    let m = machine(16);
    let path = tmp("empty.img");
    m.write(PhysAddr::new(m.ram_base().as_u64() + 5 * PAGE), b"not a device tree").unwrap();
    m.save_image_with(&path, None).unwrap();
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stderr.contains("no handover root"), "{}", run.stderr);
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 3);
    assert_eq!(v["error"]["kind"], "not_found");
    assert_eq!(v["image"]["ram_bytes"], 16u64 << 20);
}

#[test]
fn scan_prefers_a_root_that_parses_and_lists_candidates() {
    let p = image("stale", false);
    // A stale root FDT elsewhere in memory whose map is zero: a candidate
    // that does not parse as a root.
    let mut segs = read_segments(&p.path);
    let stale = kho_track::fdt::build("kho-v4", PhysAddr::new(0x1000), &[]).unwrap();
    let off = (20 << 20) as usize;
    assert!(segs[0].bytes[off..off + PAGE as usize].iter().all(|&b| b == 0), "page in use");
    segs[0].bytes[off..off + stale.len()].copy_from_slice(&stale);
    // Zero the map of the stale copy so it fails RootFdt::parse.
    let map_at = segs[0].bytes[off..off + stale.len()].windows(8).position(|w| w == 0x1000u64.to_ne_bytes()).unwrap();
    segs[0].bytes[off + map_at..off + map_at + 8].fill(0);
    let path = tmp("stale-rewritten.img");
    write_elf(&path, &segs, &[], 0);
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    let base = segs[0].pa;
    assert_eq!(v["root"]["fdt_pa"].as_u64(), Some(p.fdt));
    let cands: Vec<u64> =
        v["root"]["candidates"].as_array().unwrap().iter().filter_map(|c| c["fdt_pa"].as_u64()).collect();
    let mut want = vec![base + (20 << 20), p.fdt];
    want.sort_unstable();
    assert_eq!(cands, want);
}

#[test]
fn progress_of_the_scan() {
    let p = image("scan-progress", false);
    let run = kho(&["inspect", "--progress", p.path.to_str().unwrap()]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("scanning memory for a kho-v* FDT: done"), "{}", run.stderr);
}

#[test]
fn qemu_like_layouts_read_the_same() {
    let p = image("layout", true);
    let (_, want) = inspect_json(&p.path, &[]);
    let segs = read_segments(&p.path);
    assert_eq!(segs.len(), 1);
    let note = kho_note(&p.data);

    // Data 4 bytes off 8-byte alignment (QEMU writes RAM right after its
    // notes): every page is served from a private aligned copy.
    let odd = tmp("layout-odd.img");
    write_elf(&odd, &segs, std::slice::from_ref(&note), 4);
    let (code, v) = inspect_json(&odd, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(essence(&v), essence(&want));

    // The zero pages at the end of RAM left out of the file (p_memsz above
    // p_filesz), and RAM cut into three segments, one of them misaligned.
    let seg = &segs[0];
    let used = seg.bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let used = used.next_multiple_of(PAGE as usize);
    let cut1 = (used / 2).next_multiple_of(PAGE as usize);
    let parts = vec![
        Seg { pa: seg.pa, bytes: seg.bytes[..cut1].to_vec(), zero_tail: 0 },
        Seg { pa: seg.pa + cut1 as u64, bytes: seg.bytes[cut1..used].to_vec(), zero_tail: 0 },
        Seg {
            pa: seg.pa + used as u64,
            bytes: seg.bytes[used..used + PAGE as usize].to_vec(),
            zero_tail: (seg.bytes.len() - used) as u64 - PAGE,
        },
    ];
    let split = tmp("layout-split.img");
    write_elf(&split, &parts, &[note], 4);
    let (code, v) = inspect_json(&split, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(essence(&v), essence(&want));
    // The segments are contiguous in PA and in the file, so they merge
    // into one RAM range.
    assert_eq!(v["image"]["load_segments"], 3);
    assert_eq!(v["image"]["ram"], want["image"]["ram"]);
}

#[test]
fn a_hole_in_ram_is_not_ram() {
    // RAM in two ranges with a hole between; a block in the hole must be
    // refused even though it is inside the span of RAM.
    let p = image("hole", true);
    let segs = read_segments(&p.path);
    let seg = &segs[0];
    let hole = (p.block - seg.pa) as usize;
    let parts = vec![
        Seg { pa: seg.pa, bytes: seg.bytes[..hole].to_vec(), zero_tail: 0 },
        Seg {
            pa: seg.pa + hole as u64 + 8 * PAGE,
            bytes: seg.bytes[hole + 8 * PAGE as usize..].to_vec(),
            zero_tail: 0,
        },
    ];
    let path = tmp("hole-rewritten.img");
    write_elf(&path, &parts, &[kho_note(&p.data)], 0);
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains(&format!("preserved block PA {:#x} order 3: NotRam", p.block)), "{}", run.stderr);
}

#[test]
fn map_shows_holes_and_gaps_in_ram() {
    // RAM at 0..40, 48..50 and 52..64 MiB: row 40..48 MiB has no RAM at
    // all (a gap line), row 48..56 MiB is partly RAM (hatched).
    let p = image("holes", true);
    let segs = read_segments(&p.path);
    let seg = &segs[0];
    let mib = |n: usize| n << 20;
    assert!(seg.bytes[mib(40)..mib(48)].iter().chain(&seg.bytes[mib(50)..mib(52)]).all(|&b| b == 0));
    let piece = |a: usize, b: usize| Seg { pa: seg.pa + a as u64, bytes: seg.bytes[a..b].to_vec(), zero_tail: 0 };
    let parts = vec![piece(0, mib(40)), piece(mib(48), mib(50)), piece(mib(52), mib(64))];
    let path = tmp("holes-rewritten.img");
    write_elf(&path, &parts, &[kho_note(&p.data)], 0);
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["image"]["ram"].as_array().unwrap().len(), 3);
    let svg = tmp("holes.svg");
    let run = kho(&["map", path.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&"no RAM"), "{texts:?}");
    let gap = format!("no RAM from {:#x} to {:#x} (8 MiB)", seg.pa + mib(40) as u64, seg.pa + mib(48) as u64);
    assert!(texts.contains(&gap.as_str()), "{texts:?}");
    // 64 MiB in 8 MiB rows, one of them absent.
    let rows = doc.descendants().filter(|n| n.attribute("class") == Some("hole")).count();
    assert_eq!(rows, 7);
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("ram")).count(), 8);
}

/// A handover on `m` with one order-2 folio, a blob subtree and, when
/// `count` is given, a `kexec-metadata` subtree (version 1) with that count.
fn handover_on(m: &kho_sim::Machine, count: Option<u32>) -> KhoData {
    let mut t = tracker(m);
    let block = alloc(m, 2);
    m.fill_random(block, 4 * PAGE, 9).unwrap();
    t.preserve_folio(block, order(2)).unwrap();
    let blob = alloc(m, 0);
    m.write(blob, b"blob").unwrap();
    t.preserve_folio(blob, Order::ZERO).unwrap();
    t.add_subtree("blob", blob, 4).unwrap();
    if let Some(n) = count {
        let meta = alloc(m, 0);
        let mut bytes = [0u8; 73];
        bytes[..4].copy_from_slice(&1u32.to_ne_bytes());
        bytes[4..10].copy_from_slice(b"7.2.13");
        bytes[69..].copy_from_slice(&n.to_ne_bytes());
        m.write(meta, &bytes).unwrap();
        t.preserve_folio(meta, Order::ZERO).unwrap();
        t.add_subtree("kexec-metadata", meta, 73).unwrap();
    }
    // The tracker's pages stay in the machine's RAM after it is dropped.
    t.finish().unwrap()
}

fn verdicts(v: &Value) -> Vec<(u64, String)> {
    v["root"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["fdt_pa"].as_u64().unwrap(), c["verdict"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn two_good_roots_are_ambiguous_unless_a_kexec_count_decides() {
    // Two complete handovers in one RAM, neither with kexec metadata.
    let m = machine(64);
    let a = handover_on(&m, None);
    let b = handover_on(&m, None);
    let path = tmp("two-roots.img");
    m.save_image_with(&path, None).unwrap();
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root"]["ambiguous"], true, "{v}");
    let low = a.fdt_addr.min(b.fdt_addr);
    assert_eq!(v["root"]["fdt_pa"].as_u64(), Some(low));
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert!(run.stdout.contains("AMBIGUOUS"), "{}", run.stdout);

    // The same with kexec metadata: the higher count is the later kernel's.
    let m = machine(64);
    let older = handover_on(&m, Some(1));
    let newer = handover_on(&m, Some(2));
    let path = tmp("two-roots-counted.img");
    m.save_image_with(&path, None).unwrap();
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root"]["ambiguous"], false, "{v}");
    assert_eq!(v["root"]["fdt_pa"].as_u64(), Some(newer.fdt_addr), "{v}");
    let mut want = vec![(older.fdt_addr, "stale".to_string()), (newer.fdt_addr, "chosen".to_string())];
    want.sort_unstable();
    assert_eq!(verdicts(&v), want);
    let stale = v["root"]["candidates"].as_array().unwrap().iter().find(|c| c["verdict"] == "stale").unwrap();
    assert!(stale["reason"].as_str().unwrap().contains("lower kexec count"), "{stale}");
    assert_eq!(stale["kexec_count"], 1);
}

/// A predecessor's root kept in memory whose tree pages were freed and
/// zeroed: it imports but preserves nothing. It must lose to the live root
/// wherever it lies, and a run never calls it well formed.
#[test]
fn a_stale_root_with_an_emptied_tree_loses() {
    let p = image("stale-empty", false);
    let mut segs = read_segments(&p.path);
    let base = segs[0].pa;
    // A root FDT in a free page whose memory map names a zeroed page: an
    // empty tree.
    let (stale_off, empty_off) = (3usize << 20, 5usize << 20);
    for off in [stale_off, empty_off] {
        assert!(segs[0].bytes[off..off + PAGE as usize].iter().all(|&b| b == 0), "page in use");
    }
    let stale = kho_track::fdt::build("kho-v4", PhysAddr::new(base + empty_off as u64), &[]).unwrap();
    segs[0].bytes[stale_off..stale_off + stale.len()].copy_from_slice(&stale);
    let path = tmp("stale-empty-rewritten.img");
    write_elf(&path, &segs, &[], 0);

    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["root"]["fdt_pa"].as_u64(), Some(p.fdt), "{v}");
    assert_ne!(v["preserved"]["blocks"], 0);
    let stale_pa = base + stale_off as u64;
    let mut want = vec![(stale_pa, "stale".to_string()), (p.fdt, "chosen".to_string())];
    want.sort_unstable();
    assert_eq!(verdicts(&v), want);
    let stale = v["root"]["candidates"].as_array().unwrap().iter().find(|c| c["verdict"] == "stale").unwrap();
    assert!(stale["reason"].as_str().unwrap().contains("root FDT page is not preserved"), "{stale}");
    assert_eq!(stale["blocks"], 0);
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert!(run.stdout.contains(&format!("{stale_pa:#x}  stale, 0 blocks")), "{}", run.stdout);
}

/// When no candidate imports, the failure names them all, in JSON too.
#[test]
fn no_candidate_importing_lists_them_all() {
    let p = image("all-corrupt", false);
    let mut segs = read_segments(&p.path);
    let base = segs[0].pa;
    // Replace the live root by one whose map is a page of garbage.
    let off = (p.fdt - base) as usize;
    let junk_off = 7 << 20;
    segs[0].bytes[junk_off..junk_off + PAGE as usize].fill(0xa5);
    let bad = kho_track::fdt::build("kho-v4", PhysAddr::new(base + junk_off as u64), &[]).unwrap();
    segs[0].bytes[off..off + PAGE as usize].fill(0);
    segs[0].bytes[off..off + bad.len()].copy_from_slice(&bad);
    let path = tmp("all-corrupt-rewritten.img");
    write_elf(&path, &segs, &[], 0);
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["candidates"][0]["verdict"], "corrupt", "{v}");
    assert!(v["candidates"][0]["reason"].as_str().unwrap().starts_with("does not import"), "{v}");
}

/// Scratch areas come from a `setup_data` `kho_data` naming the root when
/// one is in memory; two different arrays in memory leave them unknown.
#[test]
fn scratch_areas_from_setup_data_or_unknown() {
    let m = machine(64);
    let data = handover_on(&m, None);
    // A setup_data entry {next, type 10, len 32} + kho_data in a free page.
    let rec = alloc(&m, 0);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0u64.to_ne_bytes());
    bytes.extend_from_slice(&10u32.to_ne_bytes());
    bytes.extend_from_slice(&32u32.to_ne_bytes());
    for w in [data.fdt_addr, data.fdt_size, data.scratch_addr, data.scratch_size] {
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    m.write(PhysAddr::new(rec.as_u64() + 0x48), &bytes).unwrap();
    let path = tmp("setup-data.img");
    m.save_image_with(&path, None).unwrap();
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["scratch_source"], "setup_data", "{v}");
    assert_eq!(v["scratch"][0]["pa"].as_u64(), Some(m.scratch()[0].addr));

    // Without it, and with a second, different array in memory: unknown.
    m.write(PhysAddr::new(rec.as_u64() + 0x48), &[0u8; 48]).unwrap();
    let fake = alloc(&m, 0);
    let base = m.ram_base().as_u64();
    let mut arr = Vec::new();
    arr.extend_from_slice(&(base + (32 << 20)).to_ne_bytes());
    arr.extend_from_slice(&(4u64 << 20).to_ne_bytes());
    m.write(fake, &arr).unwrap();
    let path = tmp("two-arrays.img");
    m.save_image_with(&path, None).unwrap();
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["scratch_source"], "unknown", "{v}");
    assert_eq!(v["scratch"], serde_json::json!([]));
}
