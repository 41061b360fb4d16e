//! Tests of the comparison rules on canned reports.

use super::*;
use crate::parse::{RootFdt, Subtree, hex_encode};
use crate::scenario::{Memfd, ReserveMem, Scenario};
use crate::truth::{KernelLog, KhoData, Restore};
use serde_json::json;

const ROOT: u64 = 0x3e6000;
const MAP: u64 = 0x3a6000;
const LUO_PA: u64 = 0x1c48000;
const META_PA: u64 = 0x1c49000;

fn luo_blob(sessions_pa: u64) -> Vec<u8> {
    let mut b = b"luo-v5\0\0".to_vec();
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&sessions_pa.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b
}

fn blocks() -> Vec<Block> {
    vec![
        Block { pa: 0x100_0000, order: 0 },
        Block { pa: 0x100_1000, order: 0 },
        Block { pa: 0x120_0000, order: 9 },
        Block { pa: 0x150_0000, order: 0 },
    ]
}

fn truth() -> Truth {
    let scratch = vec![Span { pa: 0x3d00_0000, size: 16 << 20 }, Span { pa: 0x3300_0000, size: 32 << 20 }];
    let mut a = Phase::new(0);
    a.release = "7.2.13".into();
    a.scratch = scratch.clone();
    a.debugfs_ready.insert("out/sub_fdts/LUO".into(), hex_encode(&luo_blob(0)));
    a.debugfs_ready.insert("out/sub_fdts/kexec-metadata".into(), hex_encode(b"meta"));
    let mut b = Phase::new(1);
    b.scratch = scratch;
    b.kho_data = Some(KhoData { fdt_addr: ROOT, fdt_size: 4096, scratch_addr: 0x3dff0000, scratch_size: 32 });
    b.in_fdt = Some(RootFdt {
        compatible: "kho-v4".into(),
        memory_map_pa: MAP,
        subtrees: vec![
            Subtree { name: "LUO".into(), pa: LUO_PA, size: 32 },
            Subtree { name: "kexec-metadata".into(), pa: META_PA, size: 4 },
        ],
    });
    // The successor has already reused LUO's blob: its in/ copy is garbage.
    b.debugfs_boot.insert("in/sub_fdts/LUO".into(), hex_encode(&[0x7f; 32]));
    b.debugfs_boot.insert("in/sub_fdts/kexec-metadata".into(), hex_encode(b"meta"));
    b.reserved_blocks = blocks();
    b.log = KernelLog {
        kho_found: true,
        luo_liveupdate: Some(1),
        exec_from: Some("7.2.13 (count 1)".into()),
        test_kho_restore: None,
        revived: vec!["r".into()],
        lines: vec![],
    };
    b.restores = vec![Restore { session: "lab0-s0".into(), token: 1, ok: true, why: None }];
    b.restore_ok = Some(true);
    Truth {
        truth_version: 1,
        scenario: Scenario {
            name: "t".into(),
            phases: 2,
            test_kho_max_mem: None,
            reserve_mem: vec![ReserveMem { size: 4 << 20, align: 4096, name: "r".into() }],
            memfds: vec![Memfd { session: 0, token: 1, size: 1, pos: 0 }],
            producer: false,
        },
        kernel: "bzImage".into(),
        phases: vec![a, b],
    }
}

/// The report `kho inspect --json` gives when it agrees with [`truth`].
fn report() -> Value {
    json!({
        "schema_version": 1, "ok": true,
        "root": {"source": "scan", "fdt_pa": ROOT, "fdt_size": 4096, "compatible": "kho-v4", "version": "kho-v4",
                 "legacy": false, "memory_map_pa": MAP, "fdt_page_preserved": true, "scan_candidates": [ROOT]},
        "subtrees": [
            {"name": "LUO", "pa": LUO_PA, "size": 32, "preserved": true, "error": null,
             "payload": {"kind": "luo", "liveupdate_num": 1, "sessions": [], "flbs": []}},
            {"name": "kexec-metadata", "pa": META_PA, "size": 4, "preserved": true, "error": null,
             "payload": {"kind": "kexec_metadata", "version": 1, "previous_release": "7.2.13", "kexec_count": 1}}
        ],
        "scratch": [{"pa": 0x3d00_0000u64, "size": 16u64 << 20}, {"pa": 0x3300_0000u64, "size": 32u64 << 20}],
        "preserved": {"blocks": 4, "pages": 515, "bytes": 515 * 4096,
                      "by_order": [{"order": 0, "blocks": 3, "pages": 3, "bytes": 3 * 4096},
                                   {"order": 9, "blocks": 1, "pages": 512, "bytes": 512 * 4096}]},
        "ranges": {"count": 3, "total_bytes": 515 * 4096, "largest": {"pa": 0x120_0000, "size": 0x20_0000}},
        "tree": {"format": "radix-v1", "pages": 6, "bytes": 6 * 4096}
    })
}

/// Image memory: the LUO blob as written at reboot, and the metadata blob.
fn image(pa: u64, len: usize) -> Option<Vec<u8>> {
    let mem = match pa {
        LUO_PA => luo_blob(0x5000),
        META_PA => b"meta".to_vec(),
        _ => return None,
    };
    mem.get(..len).map(<[u8]>::to_vec)
}

fn kexec(report: &Value) -> Verdict {
    let mut read = image;
    check_dump(&truth(), 0, Point::Kexec, report, Some(&mut read))
}

#[test]
fn an_exact_report_agrees_on_every_field() {
    let v = kexec(&report());
    assert!(v.ok, "{}", v.line);
    assert_eq!(
        v.line,
        "A-kexec: agree: root 0x3e6000, kho-v4, map 0x3a6000, 2 subtrees (LUO kexec-metadata: PAs, sizes, bytes), \
         2 scratch areas, 4 blocks (o0 3, o9 1), 515 pages, 3 ranges; decoded: LUO 0 sessions, 0 memfds \
         (size, position, 0 bytes extracted equal to the pattern), liveupdate 1, kexec count 1"
    );
}

#[test]
fn each_field_can_disagree() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("root: inspect 0x1000 vs kernel 0x3e6000", Box::new(|r| r["root"]["fdt_pa"] = json!(0x1000))),
        ("root size: inspect Some(405) vs kernel 4096", Box::new(|r| r["root"]["fdt_size"] = json!(405))),
        ("compatible", Box::new(|r| r["root"]["compatible"] = json!("kho-v3"))),
        ("map: inspect", Box::new(|r| r["root"]["memory_map_pa"] = json!(0x2000))),
        ("subtrees: inspect", Box::new(|r| r["subtrees"].as_array_mut().unwrap().pop().map(drop).unwrap_or(()))),
        ("subtree LUO PA", Box::new(|r| r["subtrees"][0]["pa"] = json!(META_PA))),
        ("subtree kexec-metadata size", Box::new(|r| r["subtrees"][1]["size"] = json!(5))),
        ("scratch: inspect []", Box::new(|r| r["scratch"] = json!([]))),
        ("blocks by order", Box::new(|r| r["preserved"]["by_order"][0]["blocks"] = json!(2))),
        ("pages: inspect 514", Box::new(|r| r["preserved"]["pages"] = json!(514))),
        ("ranges: inspect 4", Box::new(|r| r["ranges"]["count"] = json!(4))),
        ("ranges:", Box::new(|r| r["ranges"]["largest"] = json!({"pa": 0x100_0000, "size": 0x2000}))),
        ("kexec-metadata: decoded", Box::new(|r| r["subtrees"][1]["payload"]["kexec_count"] = json!(2))),
        ("LUO: no decoded payload", Box::new(|r| r["subtrees"][0]["payload"] = Value::Null)),
    ];
    for (want, edit) in cases {
        let mut r = report();
        edit(&mut r);
        let v = kexec(&r);
        assert!(!v.ok, "{want}: {}", v.line);
        assert!(v.line.starts_with("A-kexec: DISAGREE: "), "{}", v.line);
        assert!(v.line.contains(want), "want {want:?} in {}", v.line);
    }
}

#[test]
fn blob_bytes_are_compared_with_only_luo_sessions_exempt() {
    let t = truth();
    let mut wrong_meta =
        |pa: u64, len: usize| if pa == META_PA { b"mETa".get(..len).map(<[u8]>::to_vec) } else { image(pa, len) };
    let v = check_dump(&t, 0, Point::Kexec, &report(), Some(&mut wrong_meta));
    assert!(v.line.contains("subtree kexec-metadata bytes differ at offset 1"), "{}", v.line);
    let mut wrong_luo = |pa: u64, len: usize| {
        if pa == LUO_PA {
            let mut b = luo_blob(0x5000);
            b[8] = 2; // liveupdate_num is not exempt
            b.get(..len).map(<[u8]>::to_vec)
        } else {
            image(pa, len)
        }
    };
    let v = check_dump(&t, 0, Point::Kexec, &report(), Some(&mut wrong_luo));
    assert!(v.line.contains("subtree LUO bytes differ at offset 8"), "{}", v.line);
    let mut missing = |_: u64, _: usize| None;
    let v = check_dump(&t, 0, Point::Kexec, &report(), Some(&mut missing));
    assert!(v.line.contains("not in the image"), "{}", v.line);
}

#[test]
fn a_live_dump_needs_only_a_subset_of_the_reservations() {
    let t = truth();
    let mut r = report();
    r["preserved"] = json!({"blocks": 2, "pages": 2, "bytes": 8192,
                            "by_order": [{"order": 0, "blocks": 2, "pages": 2, "bytes": 8192}]});
    r["ranges"] = json!({"count": 1, "total_bytes": 8192, "largest": {"pa": 0x100_0000, "size": 0x2000}});
    let mut live_image =
        |pa: u64, len: usize| if pa == LUO_PA { luo_blob(0).get(..len).map(<[u8]>::to_vec) } else { image(pa, len) };
    let v = check_dump(&t, 0, Point::Live, &r, Some(&mut live_image));
    assert!(v.ok, "{}", v.line);
    assert!(v.line.starts_with("A-live: agree (blocks within B's 4 reservations)"), "{}", v.line);
    // The same subset is not enough at the kexec point.
    assert!(!check_dump(&t, 0, Point::Kexec, &r, Some(&mut live_image)).ok);
    // More blocks of an order than the successor reserved is not a subset.
    r["preserved"]["by_order"] = json!([{"order": 1, "blocks": 1, "pages": 2, "bytes": 8192}]);
    let v = check_dump(&t, 0, Point::Live, &r, Some(&mut live_image));
    assert!(v.line.contains("blocks not within B's reservations: o1 1 > 0"), "{}", v.line);
}

#[test]
fn an_inspector_error_is_a_disagreement() {
    let r = json!({"schema_version": 1, "ok": false, "exit_code": 2,
                   "error": {"kind": "corrupt", "message": "bad tree", "detail": null, "errno": 22}, "image": null});
    let v = kexec(&r);
    assert!(!v.ok);
    assert!(v.line.contains("kho inspect failed (exit 2): corrupt: bad tree"), "{}", v.line);
    // Without a successor there is nothing to compare with.
    let mut t = truth();
    t.phases.pop();
    let mut read = image;
    assert!(!check_dump(&t, 0, Point::Kexec, &report(), Some(&mut read)).ok);
}

#[test]
fn the_restore_verdict_needs_every_success_line() {
    let v = check_restore(&truth(), 1);
    assert!(v.ok, "{}", v.line);
    assert!(v.line.contains("1/1 memfds verified"), "{}", v.line);
    let mut t = truth();
    t.phases[1].restores[0] =
        Restore { session: "lab0-s0".into(), token: 1, ok: false, why: Some("byte 7 differs".into()) };
    t.phases[1].restore_ok = Some(false);
    let v = check_restore(&t, 1);
    assert!(!v.ok);
    assert!(v.line.contains("lab0-s0/1: byte 7 differs"), "{}", v.line);
    let mut t = truth();
    t.phases[1].log.revived.clear();
    t.phases[1].log.kho_found = false;
    let v = check_restore(&t, 1);
    assert!(v.line.contains("reserve_mem 'r' not revived") && v.line.contains("KHO: found"), "{}", v.line);
    // A kho_test subtree handed over requires test_kho's verdict.
    let mut t = truth();
    if let Some(f) = t.phases[1].in_fdt.as_mut() {
        f.subtrees.push(Subtree { name: "kho_test".into(), pa: 0x9000, size: 240 });
    }
    assert!(check_restore(&t, 1).line.contains("no test_kho verdict"));
    t.phases[1].log.test_kho_restore = Some(true);
    assert!(check_restore(&t, 1).ok);
}

#[test]
fn kcore_without_proc_kcore_is_reported_as_skipped_and_otherwise_checked() {
    let mut t = truth();
    t.phases[0].kcore = Some(crate::truth::Kcore {
        exit: 1,
        report: Some(
            json!({"error": {"kind": "image", "message": "/proc/kcore: No such file or directory (os error 2)"}}),
        ),
        stdout: String::new(),
        stderr: String::new(),
    });
    let v = check_kcore(&t, 0).unwrap();
    assert!(v.ok && v.line.starts_with("A-kcore: skipped: "), "{}", v.line);
    t.phases[0].kcore =
        Some(crate::truth::Kcore { exit: 0, report: Some(report()), stdout: String::new(), stderr: String::new() });
    let v = check_kcore(&t, 0).unwrap();
    assert!(v.ok, "{}", v.line);
    assert!(v.line.contains("(LUO kexec-metadata: PAs, sizes)"), "{}", v.line);
    t.phases[0].kcore =
        Some(crate::truth::Kcore { exit: 101, report: None, stdout: String::new(), stderr: "panicked".into() });
    assert!(!check_kcore(&t, 0).unwrap().ok);
    assert!(check_kcore(&t, 1).is_none());
}
