//! Dumps of a real Linux 7.2.13 handover chain (A → B → C), taken by the
//! QEMU lab (`kho-lab`) and reduced to the pages kho reads
//! (`tests/vectors/README.md`), checked against what the next kernel itself
//! stated (`tests/vectors/lab-chain.truth.json`): the `kho_data` it was
//! handed, the blocks it reserved (`memblock=debug`), the scratch areas and
//! the subtree blobs it found.
//!
//! B's dumps hold two root FDTs: B's own and its predecessor's, whose tree
//! pages B freed and reused. `kho inspect` must choose B's with no options.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

fn truth() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/lab-chain.truth.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn phase<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The blocks the successor reserved, `(pa, order)`, ascending.
fn reserved(next: &Value) -> Vec<(u64, u32)> {
    let mut v: Vec<(u64, u32)> = next["reserved_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["pa"].as_u64().unwrap(), b["order"].as_u64().unwrap() as u32))
        .collect();
    v.sort_unstable();
    v
}

/// Checks the report of the dump of a kernel at its kexec point against
/// what its successor `next` stated.
fn agrees_with_successor(v: &Value, next: &Value, image: &Path) {
    let kho_data = &next["kho_data"];
    assert_eq!(v["root"]["fdt_pa"], kho_data["fdt_addr"], "root PA");
    let in_fdt = &next["in_fdt"];
    assert_eq!(v["root"]["compatible"], in_fdt["compatible"]);
    assert_eq!(v["root"]["memory_map_pa"], in_fdt["memory_map_pa"]);
    // Subtrees: names, PAs, sizes, and the bytes of the blobs as the next
    // kernel's debugfs showed them.
    let want: Vec<(String, u64, u64)> = in_fdt["subtrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["pa"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
        .collect();
    let got: Vec<(String, u64, u64)> = v["subtrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["pa"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, want, "subtrees");
    let img = kho_cli::image::Image::open(image, kho_abi::Order::new(18, "max").unwrap()).unwrap();
    // LUO's blob is the exception: the next kernel frees it once LUO has
    // taken its state, so what its debugfs shows later is other data (the
    // blob's contents are checked by decoding them).
    for (name, pa, size) in got.iter().filter(|(n, _, _)| n != "LUO") {
        let kernel = hex(next["debugfs_boot"][format!("in/sub_fdts/{name}")].as_str().unwrap());
        let mut bytes = vec![0u8; *size as usize];
        img.read_original(*pa, &mut bytes).unwrap();
        assert_eq!(bytes, kernel, "blob of {name}");
    }
    // Scratch areas.
    let scratch: Vec<(u64, u64)> = v["scratch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["pa"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
        .collect();
    let want: Vec<(u64, u64)> = next["scratch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["pa"].as_u64().unwrap(), s["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(scratch, want, "scratch areas");
    // Blocks by order, pages and coalesced ranges, from the reservations.
    let blocks = reserved(next);
    let mut by: BTreeMap<u32, u64> = BTreeMap::new();
    for &(_, o) in &blocks {
        *by.entry(o).or_default() += 1;
    }
    let got: BTreeMap<u32, u64> = v["preserved"]["by_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["order"].as_u64().unwrap() as u32, o["blocks"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, by, "blocks by order");
    assert_eq!(v["preserved"]["blocks"].as_u64(), Some(blocks.len() as u64));
    let pages: u64 = blocks.iter().map(|&(_, o)| 1u64 << o).sum();
    assert_eq!(v["preserved"]["pages"].as_u64(), Some(pages));
    assert_eq!(v["ranges"]["count"].as_u64(), Some(coalesce(&blocks).len() as u64), "coalesced ranges");
}

#[test]
fn kernel_a_at_its_kexec_point_reads_as_kernel_b_received_it() {
    let t = truth();
    let path = vector("lab-chain-A-kexec.elf");
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    agrees_with_successor(&v, phase(&t, "B"), &path);
    assert_eq!(v["root"]["candidates"].as_array().unwrap().len(), 1);
    assert_eq!(v["image"]["ram_source"], "segments_less_device_window");
    assert_eq!(v["image"]["not_ram"][0]["pa"], 0xfd00_0000u64, "QEMU's VGA BAR is not RAM");
}

#[test]
fn kernel_b_with_its_predecessors_stale_root_reads_as_kernel_c_received_it() {
    let t = truth();
    let stale = phase(&t, "B")["kho_data"]["fdt_addr"].as_u64().unwrap();
    for dump in ["lab-chain-B-kexec.elf", "lab-chain-B-live.elf"] {
        let path = vector(dump);
        let (code, v) = inspect_json(&path, &[]);
        assert_eq!(code, 0, "{dump}: {v}");
        let next = phase(&t, "C");
        assert_eq!(v["root"]["fdt_pa"], next["kho_data"]["fdt_addr"], "{dump}");
        let cands = v["root"]["candidates"].as_array().unwrap();
        assert_eq!(cands.len(), 2, "{dump}");
        let lost = cands.iter().find(|c| c["fdt_pa"] == stale).unwrap();
        assert_ne!(lost["verdict"], "chosen", "{dump}: the predecessor's root");
        assert_eq!(v["root"]["ambiguous"], false);
        if dump.contains("kexec") {
            agrees_with_successor(&v, next, &path);
        } else {
            // Live: LUO serialises more at reboot, so the live tree is a
            // subset of what C reserved.
            let all = reserved(next);
            assert!(v["preserved"]["blocks"].as_u64().unwrap() <= all.len() as u64);
        }
    }
}
