//! The subtree payloads (`kho inspect`) and `kho extract`, checked on the
//! real kernel's kexec-point dump of the lab chain's kernel A against what
//! the guest agent created (`tests/vectors/lab-chain.truth.json`, phase
//! A) and what kernel B then restored (phase B).

mod common;

use std::path::Path;

use common::*;
use kho_abi::{Order, PhysAddr};
use serde_json::{Value, json};

fn truth() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/lab-chain.truth.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn phase<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

fn subtree<'a>(v: &'a Value, name: &str) -> &'a Value {
    let s = v["subtrees"].as_array().unwrap().iter().find(|s| s["name"] == name);
    &s.unwrap_or_else(|| panic!("no subtree {name}: {v}"))["payload"]
}

// ---- the guest agent's memfd pattern (kho-lab-agent/src/pattern.rs) ----

/// The seed of one memfd's pattern: FNV-1a over the session name, with the
/// token and the phase that wrote it mixed in.
fn pattern_seed(session: &str, token: u64, phase: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ token.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(phase) << 56)
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pattern's first `len` bytes.
fn pattern(seed: u64, len: u64) -> Vec<u8> {
    (0..len).map(|at| mix(seed ^ (at / 8)).to_le_bytes()[(at % 8) as usize]).collect()
}

#[test]
fn pattern_matches_the_agents_definition() {
    // Values of the definition, computed by hand from its formula for a
    // short input: a change to either side shows here.
    let seed = pattern_seed("", 0, 0);
    assert_eq!(seed, 0xcbf2_9ce4_8422_2325);
    let p = pattern(seed, 16);
    assert_eq!(p[..8], mix(seed).to_le_bytes());
    assert_eq!(p[8..], mix(seed ^ 1).to_le_bytes());
    assert_ne!(pattern_seed("a", 1, 0), pattern_seed("a", 1, 1));
}

#[test]
fn a_kexec_payloads_equal_what_the_agent_created() {
    let t = truth();
    let (a, b) = (phase(&t, "A"), phase(&t, "B"));
    let (code, v) = inspect_json(&vector("lab-chain-A-kexec.elf"), &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["subtrees"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["memblock", "LUO", "kho_test", "kexec-metadata"]);

    // LUO: the sessions and memfds the agent created, in its order.
    let luo = subtree(&v, "LUO");
    assert_eq!(luo["kind"], "luo");
    assert_eq!(luo["liveupdate_num"], b["log"]["luo_liveupdate"]);
    assert_eq!(luo["flbs"], json!([]));
    let sessions = luo["sessions"].as_array().unwrap();
    assert_eq!(sessions.iter().map(|s| s["name"].clone()).collect::<Vec<_>>(), a["sessions"].as_array().unwrap()[..]);
    let mut got = Vec::new();
    for s in sessions {
        let files = s["files"].as_array().unwrap();
        assert_eq!(s["file_count"], files.len());
        for f in files {
            assert_eq!(f["compatible"], "memfd-v2");
            got.push((s["name"].clone(), f["token"].clone(), f["memfd"].clone()));
        }
    }
    let created = a["memfds"].as_array().unwrap();
    assert_eq!(got.len(), created.len());
    for ((session, token, memfd), c) in got.iter().zip(created) {
        assert_eq!((session, token), (&c["session"], &c["token"]));
        assert_eq!((&memfd["size"], &memfd["pos"]), (&c["size"], &c["pos"]), "{session} {token}");
        // The agent's page frames (runs of `[pfn, pages]`, from pagemap)
        // are the pages preserved; every folio was written, so dirty and
        // up to date.
        let pages: u64 = c["pfns"].as_array().unwrap().iter().map(|p| p[1].as_u64().unwrap()).sum();
        assert_eq!(memfd["pages"], pages, "{session} {token}");
        assert_eq!(memfd["pages"], c["size"].as_u64().unwrap().div_ceil(PAGE), "{session} {token}");
        assert_eq!(memfd["dirty"], memfd["folios"]);
        assert_eq!(memfd["uptodate"], memfd["folios"]);
    }
    // And kernel B restored each of them.
    let restored: Vec<(Value, Value)> = b["restores"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|r| assert_eq!(r["ok"], true))
        .map(|r| (r["session"].clone(), r["token"].clone()))
        .collect();
    assert_eq!(restored, got.iter().map(|(s, t, _)| (s.clone(), t.clone())).collect::<Vec<_>>());

    // memblock: the scenario's reserve_mem, revived by B at the range B
    // reserved for it.
    let mb = subtree(&v, "memblock");
    assert_eq!(mb["kind"], "memblock");
    let regions = mb["regions"].as_array().unwrap();
    let wanted = t["scenario"]["reserve_mem"].as_array().unwrap();
    assert_eq!(regions.len(), wanted.len());
    let reserved = b["reserved_blocks"].as_array().unwrap();
    for (r, w) in regions.iter().zip(wanted) {
        assert_eq!((&r["name"], &r["size"]), (&w["name"], &w["size"]));
        let (start, size) = (r["start"].as_u64().unwrap(), r["size"].as_u64().unwrap());
        assert_eq!(start % w["align"].as_u64().unwrap(), 0);
        assert!(b["log"]["revived"].as_array().unwrap().contains(&r["name"]));
        let block =
            reserved.iter().find(|x| x["pa"] == start).unwrap_or_else(|| panic!("B did not reserve {start:#x}"));
        assert_eq!(PAGE << block["order"].as_u64().unwrap(), size);
    }

    // kexec-metadata: A's release, and the count B printed.
    let km = subtree(&v, "kexec-metadata");
    assert_eq!(km["kind"], "kexec_metadata");
    assert_eq!(km["version"], 1);
    assert_eq!(km["previous_release"], a["release"]);
    let from = b["log"]["exec_from"].as_str().unwrap();
    assert_eq!(from, format!("{} (count {})", a["release"].as_str().unwrap(), km["kexec_count"]));

    // kho_test: the checksum holds, as B's self-test found.
    let kt = subtree(&v, "kho_test");
    assert_eq!(kt["kind"], "kho_test");
    assert_eq!(kt["checksum_holds"], true);
    assert_eq!(b["log"]["test_kho_restore"], true);
    assert_eq!(kt["stored_csum"], kt["computed_csum"]);
    assert!(kt["folios"].as_u64().unwrap() > 0);

    // The text report shows the same.
    let run = kho(&["inspect".to_string(), vector("lab-chain-A-kexec.elf").display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.all());
    for line in [
        "luo-v5: liveupdate_num 1, 2 session(s), 0 FLB(s)",
        "session \"lab0-s1\": 1 file(s)",
        "token 0x2  memfd-v2  size 12345 pos 100",
        "\"lab_chain\"  0x3e000000..0x3e400000  4 MiB",
        "previous release \"7.2.13\", kexec count 1",
        "checksum holds",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not in\n{}", run.stdout);
    }
}

#[test]
fn extract_reproduces_every_memfd_of_a_kexec() {
    extract_phase("A", 0);
}

/// B's kexec-point dump holds what B's agent created (its phase 1) for C.
#[test]
fn extract_reproduces_every_memfd_of_b_kexec() {
    let t = truth();
    let (code, v) = inspect_json(&vector("lab-chain-B-kexec.elf"), &[]);
    assert_eq!(code, 0, "{v}");
    let luo = subtree(&v, "LUO");
    let mut got = Vec::new();
    for s in luo["sessions"].as_array().unwrap() {
        for f in s["files"].as_array().unwrap() {
            got.push(json!({ "session": s["name"], "token": f["token"], "size": f["memfd"]["size"], "pos": f["memfd"]["pos"] }));
        }
    }
    let created: Vec<Value> = phase(&t, "B")["memfds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({ "session": c["session"], "token": c["token"], "size": c["size"], "pos": c["pos"] }))
        .collect();
    assert_eq!(got, created);
    extract_phase("B", 1);
}

/// Extracts every memfd phase `name`'s agent (its phase number `n`)
/// created from the phase's kexec-point dump and compares it with the
/// agent's pattern.
fn extract_phase(name: &str, n: u32) {
    let t = truth();
    let image = vector(&format!("lab-chain-{name}-kexec.elf"));
    for c in phase(&t, name)["memfds"].as_array().unwrap() {
        let (session, token, size) =
            (c["session"].as_str().unwrap(), c["token"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let out = tmp(&format!("{name}-{session}-{token}.bin"));
        let run = kho(&[
            "extract".to_string(),
            image.display().to_string(),
            session.to_string(),
            format!("{token:#x}"),
            out.display().to_string(),
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len() as u64, size, "{session} {token}");
        let want = pattern(pattern_seed(session, token, n), size);
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first, None, "{session} token {token}: first mismatch");
    }
}

#[test]
fn extract_names_what_is_missing() {
    let image = vector("lab-chain-A-kexec.elf").display().to_string();
    let out = tmp("missing.bin").display().to_string();
    let run = kho(&["extract", &image, "nope", "1", &out]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no LUO session named \"nope\""), "{}", run.stderr);
    assert!(run.stderr.contains("lab0-s0"), "{}", run.stderr);
    let run = kho(&["extract", &image, "lab0-s1", "7", &out]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("session \"lab0-s1\" has no file with token 0x7 (tokens: 0x3)"), "{}", run.stderr);
    assert!(!Path::new(&out).exists());
    // A handover with no LUO subtree.
    let other = vector("independent-v4.img").display().to_string();
    let run = kho(&["extract", &other, "vm", "1", &out]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("the handover has no LUO subtree"), "{}", run.stderr);
}

// ---- kho-sim handovers -------------------------------------------------

/// A kho-sim image holding a LUO subtree (one session `vm`: a memfd of
/// three pages whose middle page is a hole, token 7, and a file of an
/// unknown handler, token 8) and a subtree no layer knows; `corrupt` may
/// change the machine after the handover is finished.
fn sim_image(name: &str, corrupt: impl FnOnce(&kho_sim::Machine, PhysAddr, PhysAddr)) -> (std::path::PathBuf, Vec<u8>) {
    use kho_abi::WithTracker;
    use kho_memfd::FolioSpec;
    use kho_memfd::abi::{F_SEAL_SEAL, FOLIO_DIRTY, FOLIO_UPTODATE};
    let m = machine(64);
    let mut t = tracker(&m);
    let (blob, desc, contents) = {
        let p = WithTracker::new(&m, &t);
        let (a, c) = (vec![0xa5u8; PAGE as usize], vec![0x3cu8; 100]);
        let flags = FOLIO_DIRTY | FOLIO_UPTODATE;
        let specs = [
            FolioSpec { index: 0, order: Order::ZERO, data: &a, flags },
            FolioSpec { index: 2, order: Order::ZERO, data: &c, flags },
        ];
        let size = 2 * PAGE + c.len() as u64;
        let memfd = kho_memfd::preserve(&p, size, 5, F_SEAL_SEAL, &specs).unwrap();
        let mut w = kho_luo::LuoWriter::new(&p, 3).unwrap();
        let s = w.create_session(&p, b"vm").unwrap();
        w.preserve_file(&p, s, kho_memfd::MEMFD_V2, memfd.desc.as_u64(), 7).unwrap();
        w.preserve_file(&p, s, "vfio-v9", 0x1234_5000, 8).unwrap();
        w.serialize(&p).unwrap();
        let mut contents = a.clone();
        contents.extend(vec![0u8; PAGE as usize]);
        contents.extend(&c);
        (w.blob(), memfd.desc, contents)
    };
    t.add_subtree("LUO", blob, kho_luo::LuoWriter::BLOB_SIZE).unwrap();
    let other = alloc(&m, 0);
    t.preserve_folio(other, Order::ZERO).unwrap();
    t.add_subtree("mystery", other, 64).unwrap();
    let data = t.finish().unwrap();
    corrupt(&m, blob, desc);
    let path = tmp(&format!("{name}.img"));
    m.save_image_with(&path, Some(&data)).unwrap();
    (path, contents)
}

#[test]
fn unknown_subtrees_and_handlers_are_opaque() {
    let (path, contents) = sim_image("opaque", |_, _, _| {});
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(subtree(&v, "mystery"), &json!({ "kind": "opaque" }));
    let luo = subtree(&v, "LUO");
    assert_eq!(luo["liveupdate_num"], 3);
    let files = &luo["sessions"][0]["files"];
    assert_eq!(luo["sessions"][0]["name"], "vm");
    assert_eq!(luo["sessions"][0]["file_count"], 2);
    assert_eq!(
        files[0]["memfd"],
        json!({ "size": 2 * PAGE + 100, "pos": 5, "seals": 1, "folios": 2, "pages": 2, "dirty": 2, "uptodate": 2 })
    );
    assert_eq!((&files[1]["compatible"], &files[1]["token"]), (&json!("vfio-v9"), &json!(8)));
    assert!(files[1]["memfd"].is_null());
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("token 0x8  \"vfio-v9\"  opaque (data at 0x12345000)"), "{}", run.stdout);
    assert!(run.stdout.contains("opaque (no decoder for this subtree)"), "{}", run.stdout);

    // The memfd comes back with its hole; the unknown handler's file is
    // refused by name.
    let out = tmp("sim-memfd.bin");
    let run = kho(&["extract", path.to_str().unwrap(), "vm", "7", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(std::fs::read(&out).unwrap(), contents);
    let run = kho(&["extract", path.to_str().unwrap(), "vm", "8", out.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("handler is \"vfio-v9\", not a memfd"), "{}", run.stderr);
}

#[test]
fn a_corrupt_luo_blob_exits_2_with_its_fault() {
    // The blob's compatible, "luo-v5", becomes "luo-v4".
    let (path, _) = sim_image("bad-luo", |m, blob, _| m.write(PhysAddr::new(blob.as_u64() + 5), b"4").unwrap());
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["ok"], false);
    let luo = subtree(&v, "LUO");
    assert_eq!(luo["kind"], "error");
    assert_eq!(luo["fault"], "luo_compatible");
    assert!(luo["message"].as_str().unwrap().contains("LUO compatible"), "{luo}");
    // The other subtree is still listed.
    assert_eq!(subtree(&v, "mystery"), &json!({ "kind": "opaque" }));
    let run = kho(&["inspect", path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.contains("PAYLOAD INVALID (luo_compatible)"), "{}", run.stdout);
    let out = tmp("bad.bin");
    let run = kho(&["extract", path.to_str().unwrap(), "vm", "7", out.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("the LUO subtree does not decode"), "{}", run.stderr);
}

#[test]
fn a_corrupt_memfd_names_session_file_and_field() {
    // The memfd descriptor's seals (bytes 16..20) gain an unknown bit.
    let (path, _) =
        sim_image("bad-memfd", |m, _, desc| m.write(PhysAddr::new(desc.as_u64() + 16), &[0x01, 0x01, 0, 0]).unwrap());
    let (code, v) = inspect_json(&path, &[]);
    assert_eq!(code, 2, "{v}");
    let luo = subtree(&v, "LUO");
    assert_eq!(luo["kind"], "error");
    assert_eq!(luo["fault"], "memfd_descriptor_unknown_bits");
    let msg = luo["message"].as_str().unwrap();
    assert!(msg.starts_with("session \"vm\", file 0 (token 0x7): memfd descriptor at"), "{msg}");
    assert!(msg.contains("field seals"), "{msg}");
}

#[test]
fn the_map_colours_memory_by_owner() {
    let svg = tmp("a-kexec.svg");
    let image = vector("lab-chain-A-kexec.elf");
    let run = kho(&["map", image.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let class = |n: &roxmltree::Node<'_, '_>, c: &str| n.attribute("class") == Some(c);
    let legend: Vec<String> = doc
        .descendants()
        .filter(|n| class(n, "legend-owner"))
        .filter_map(|n| n.next_sibling_element())
        .filter_map(|t| t.text().map(str::to_string))
        .collect();
    let owners =
        ["memfd lab0-s0/0x1", "memfd lab0-s0/0x2", "memfd lab0-s1/0x3", "reserve_mem lab_chain", "kho_test data"];
    for o in owners {
        assert!(legend.iter().any(|l| l == o), "{o:?} not in the legend {legend:?}");
        let tip = format!("{o}: ");
        let drawn = doc
            .descendants()
            .filter(|n| class(n, "owner"))
            .any(|n| n.descendants().any(|t| t.text().is_some_and(|x| x.starts_with(&tip))));
        assert!(drawn, "no band for {o}");
    }
    // The reserve_mem region's band spans exactly its range.
    assert!(text.contains("reserve_mem lab_chain: 0x3e000000..0x3e400000"));
}
