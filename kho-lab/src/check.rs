//! The real-kernel check: `kho inspect`'s report of each dump against what
//! the kernels said.
//!
//! Rules:
//! - A dump of kernel X at `machine_kexec` must agree **exactly** with what
//!   X's successor received: the root PA from its `kho_data`, compatible,
//!   memory map and subtrees from its debugfs `in/fdt`, blob bytes from its
//!   `in/sub_fdts/` (except LUO's, which the successor frees once read: that
//!   one from X's own `out/sub_fdts/` read live, with `sessions_pa` exempt,
//!   because LUO writes it only at reboot), scratch from X's
//!   `out/scratch_*`, and the blocks from the successor's own reservations
//!   (`memblock=debug`, one line per preserved block): by order, pages and
//!   coalesced ranges.
//! - A live dump of X (and `kho inspect /proc/kcore` inside X) is compared
//!   with what X's debugfs `out/` said at that moment (subtree names, sizes,
//!   bytes; scratch), with the root and blob PAs the successor received (the
//!   root page, the map's root node and the blobs do not move). Its blocks
//!   are compared by order as a **subset** of the successor's reservations:
//!   LUO serialises its sessions, files and memfd folio lists only at reboot,
//!   so the kexec point preserves more than the live kernel does.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::decode;
use crate::parse::{self, Block, Span};
use crate::truth::{Phase, Truth};

/// What a dump is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// While live (after the ready marker).
    Live,
    /// At `machine_kexec`.
    Kexec,
    /// `kho inspect /proc/kcore` inside the guest, just before kexec.
    Kcore,
}

impl Point {
    fn label(self) -> &'static str {
        match self {
            Point::Live => "live",
            Point::Kexec => "kexec",
            Point::Kcore => "kcore",
        }
    }
}

/// One expected subtree.
#[derive(Debug, Clone)]
struct ExpectSubtree {
    name: String,
    pa: Option<u64>,
    size: u64,
    bytes: Option<Vec<u8>>,
    /// Byte ranges whose content the kernel states nowhere.
    exempt: Vec<std::ops::Range<usize>>,
}

/// The outcome for one dump: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether everything agreed.
    pub ok: bool,
    /// The line to print.
    pub line: String,
}

fn hx(v: u64) -> String {
    format!("{v:#x}")
}

fn spans_text(s: &[Span]) -> String {
    let items: Vec<String> = s.iter().map(|s| format!("{:#x}+{:#x}", s.pa, s.size)).collect();
    format!("[{}]", items.join(", "))
}

fn by_order(blocks: &[Block]) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for b in blocks {
        *m.entry(u64::from(b.order)).or_insert(0) += 1;
    }
    m
}

fn orders_text(m: &BTreeMap<u64, u64>) -> String {
    let items: Vec<String> = m.iter().map(|(o, n)| format!("o{o} {n}")).collect();
    items.join(", ")
}

/// Checks one report (`kho inspect --json` output) of phase `p`'s handover.
/// `read_pa(pa, len)` reads the inspected image (None: not readable
/// there); without it (the guest's own memory) blob bytes are not compared.
///
/// At the kexec point the decoded payloads are checked too
/// ([`decode::check`]), memfd bytes through `kho extract` on the image the
/// report names.
pub fn check_dump(
    truth: &Truth,
    p: usize,
    point: Point,
    report: &Value,
    read_pa: Option<&mut dyn FnMut(u64, usize) -> Option<Vec<u8>>>,
) -> Verdict {
    check_dump_with(truth, p, point, report, read_pa, &mut decode::extractor(report))
}

/// [`check_dump`] with the memfd extractor given: `extract(session, token)`
/// returns the memfd's bytes as `kho extract` writes them.
pub fn check_dump_with(
    truth: &Truth,
    p: usize,
    point: Point,
    report: &Value,
    mut read_pa: Option<&mut dyn FnMut(u64, usize) -> Option<Vec<u8>>>,
    extract: &mut decode::Extract<'_>,
) -> Verdict {
    let me = &truth.phases[p];
    let label = format!("{}-{}", me.name, point.label());
    let mut bad: Vec<String> = Vec::new();
    let fail = |bad: Vec<String>| Verdict { ok: false, line: format!("{label}: DISAGREE: {}", bad.join("; ")) };
    let Some(next) = truth.phases.get(p + 1) else {
        return fail(vec![format!("no successor of {} recorded, nothing to compare with", me.name)]);
    };
    if let Some(err) = report.get("error").filter(|e| !e.is_null()) {
        return fail(vec![format!(
            "kho inspect failed (exit {}): {}: {}",
            report["exit_code"],
            err["kind"].as_str().unwrap_or("?"),
            err["message"].as_str().unwrap_or("?")
        )]);
    }
    let Some(kd) = next.kho_data else {
        return fail(vec![format!("{} received no kho_data in setup_data", next.name)]);
    };
    let Some(in_fdt) = &next.in_fdt else {
        return fail(vec![format!("{} has no debugfs in/fdt", next.name)]);
    };
    if !next.reserved_irregular.is_empty() {
        bad.push(format!(
            "{} reserved {} ranges that are not aligned blocks",
            next.name,
            next.reserved_irregular.len()
        ));
    }

    // Root.
    let root = &report["root"];
    let got_root = root["fdt_pa"].as_u64();
    if got_root != Some(kd.fdt_addr) {
        bad.push(format!("root: inspect {} vs kernel {}", opt_hex(got_root), hx(kd.fdt_addr)));
    }
    let got_size = root["fdt_size"].as_u64();
    if got_size != Some(kd.fdt_size) {
        bad.push(format!("root size: inspect {got_size:?} vs kernel {}", kd.fdt_size));
    }
    let got_compat = root["compatible"].as_str().unwrap_or("");
    if got_compat != in_fdt.compatible {
        bad.push(format!("compatible: inspect {got_compat:?} vs kernel {:?}", in_fdt.compatible));
    }
    let got_map = root["memory_map_pa"].as_u64();
    if got_map != Some(in_fdt.memory_map_pa) {
        bad.push(format!("map: inspect {} vs kernel {}", opt_hex(got_map), hx(in_fdt.memory_map_pa)));
    }

    // Subtrees.
    let expect = expected_subtrees(me, next, point);
    let got = report["subtrees"].as_array().cloned().unwrap_or_default();
    let mut got_names: Vec<String> = got.iter().map(|s| s["name"].as_str().unwrap_or("").to_string()).collect();
    got_names.sort();
    let mut want_names: Vec<String> = expect.iter().map(|s| s.name.clone()).collect();
    want_names.sort();
    if got_names != want_names {
        bad.push(format!("subtrees: inspect {got_names:?} vs kernel {want_names:?}"));
    }
    for e in &expect {
        let Some(g) = got.iter().find(|s| s["name"].as_str() == Some(&e.name)) else { continue };
        let (gpa, gsize) = (g["pa"].as_u64(), g["size"].as_u64());
        if let Some(pa) = e.pa
            && gpa != Some(pa)
        {
            bad.push(format!("subtree {} PA: inspect {} vs kernel {}", e.name, opt_hex(gpa), hx(pa)));
        }
        if gsize != Some(e.size) {
            bad.push(format!("subtree {} size: inspect {:?} vs kernel {}", e.name, gsize, e.size));
        }
        if let (Some(want), Some(pa), Some(read_pa)) = (&e.bytes, gpa, read_pa.as_mut()) {
            match read_pa(pa, want.len()) {
                None => bad.push(format!("subtree {}: blob at {} not in the image", e.name, hx(pa))),
                Some(have) => {
                    let differs = have
                        .iter()
                        .zip(want)
                        .enumerate()
                        .position(|(i, (a, b))| a != b && !e.exempt.iter().any(|r| r.contains(&i)));
                    if let Some(i) = differs {
                        bad.push(format!(
                            "subtree {} bytes differ at offset {i} (dump {:#04x}, kernel {:#04x})",
                            e.name, have[i], want[i]
                        ));
                    }
                }
            }
        }
    }

    // Scratch.
    let mut got_scratch: Vec<Span> = report["scratch"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| Some(Span { pa: s["pa"].as_u64()?, size: s["size"].as_u64()? })).collect())
        .unwrap_or_default();
    got_scratch.sort();
    let mut want_scratch = me.scratch.clone();
    want_scratch.sort();
    if got_scratch != want_scratch {
        bad.push(format!("scratch: inspect {} vs kernel {}", spans_text(&got_scratch), spans_text(&want_scratch)));
    }

    // Blocks.
    let want_blocks = &next.reserved_blocks;
    let want_orders = by_order(want_blocks);
    let want_pages: u64 = want_blocks.iter().map(|b| 1u64 << b.order).sum();
    let pres = &report["preserved"];
    let got_orders: BTreeMap<u64, u64> = pres["by_order"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| Some((o["order"].as_u64()?, o["blocks"].as_u64()?))).collect())
        .unwrap_or_default();
    let got_blocks = pres["blocks"].as_u64().unwrap_or(0);
    let got_pages = pres["pages"].as_u64().unwrap_or(0);
    let exact = point == Point::Kexec;
    if exact {
        if got_orders != want_orders {
            bad.push(format!(
                "blocks by order: inspect ({}) vs {} reserved ({})",
                orders_text(&got_orders),
                next.name,
                orders_text(&want_orders)
            ));
        }
        if got_pages != want_pages {
            bad.push(format!("pages: inspect {got_pages} vs {} reserved {want_pages}", next.name));
        }
        let ranges = parse::coalesce(want_blocks);
        let total: u64 = ranges.iter().map(|r| r.size).sum();
        let largest = ranges.iter().fold(None::<Span>, |best, r| match best {
            Some(b) if b.size >= r.size => Some(b),
            _ => Some(*r),
        });
        let r = &report["ranges"];
        let got_largest = r["largest"]
            .as_object()
            .and_then(|o| Some(Span { pa: o.get("pa")?.as_u64()?, size: o.get("size")?.as_u64()? }));
        if r["count"].as_u64() != Some(ranges.len() as u64)
            || r["total_bytes"].as_u64() != Some(total)
            || got_largest != largest
        {
            bad.push(format!(
                "ranges: inspect {} ({} bytes, largest {:?}) vs kernel {} ({total} bytes, largest {largest:?})",
                r["count"],
                r["total_bytes"],
                got_largest,
                ranges.len()
            ));
        }
    } else {
        let over: Vec<String> = got_orders
            .iter()
            .filter(|(o, n)| want_orders.get(o).copied().unwrap_or(0) < **n)
            .map(|(o, n)| format!("o{o} {n} > {}", want_orders.get(o).copied().unwrap_or(0)))
            .collect();
        if !over.is_empty() {
            bad.push(format!("blocks not within {}'s reservations: {}", next.name, over.join(", ")));
        }
        if got_pages > want_pages {
            bad.push(format!("pages: inspect {got_pages} > {} reserved {want_pages}", next.name));
        }
    }

    // The payloads, decoded, against the agent and the successor.
    let decoded = if exact {
        match decode::check(truth, p, report, extract) {
            Ok(summary) => format!("; decoded: {summary}"),
            Err(problems) => {
                bad.extend(problems);
                String::new()
            }
        }
    } else {
        String::new()
    };

    if !bad.is_empty() {
        return fail(bad);
    }
    let read_bytes = read_pa.is_some();
    let ranges_text = if exact { format!(", {} ranges", report["ranges"]["count"]) } else { String::new() };
    let rule = if exact {
        String::new()
    } else {
        format!(" (blocks within {}'s {} reservations)", next.name, want_blocks.len())
    };
    Verdict {
        ok: true,
        line: format!(
            "{label}: agree{rule}: root {}, {}, map {}, {} subtrees ({}: {}), {} scratch areas, {got_blocks} blocks ({}), {got_pages} pages{ranges_text}{decoded}",
            hx(kd.fdt_addr),
            in_fdt.compatible,
            hx(in_fdt.memory_map_pa),
            expect.len(),
            want_names.join(" "),
            if read_bytes { "PAs, sizes, bytes" } else { "PAs, sizes" },
            want_scratch.len(),
            orders_text(&got_orders),
        ),
    }
}

fn opt_hex(v: Option<u64>) -> String {
    v.map(hx).unwrap_or_else(|| "none".into())
}

/// LUO's subtree name.
const LUO_NAME: &str = "LUO";

/// LUO blob offsets of `sessions_pa`, written only at reboot.
const LUO_SESSIONS_PA: std::ops::Range<usize> = 16..24;

fn expected_subtrees(me: &Phase, next: &Phase, point: Point) -> Vec<ExpectSubtree> {
    let in_fdt = next.in_fdt.as_ref();
    let pa_of = |name: &str| in_fdt.and_then(|f| f.subtrees.iter().find(|s| s.name == name)).map(|s| s.pa);
    let live_bytes = |name: &str| me.debugfs_bytes(&format!("out/sub_fdts/{name}"), true);
    match point {
        Point::Kexec => in_fdt
            .map(|f| {
                f.subtrees
                    .iter()
                    .map(|s| {
                        let (bytes, exempt) = if s.name == LUO_NAME {
                            // The successor's LUO frees its blob once read, so
                            // its in/ copy no longer holds it: use the live copy.
                            (live_bytes(&s.name), vec![LUO_SESSIONS_PA])
                        } else {
                            (next.debugfs_bytes(&format!("in/sub_fdts/{}", s.name), false), vec![])
                        };
                        ExpectSubtree { name: s.name.clone(), pa: Some(s.pa), size: s.size, bytes, exempt }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Point::Live | Point::Kcore => {
            let mut names: Vec<String> = me
                .debugfs_ready
                .keys()
                .chain(me.debugfs_boot.keys())
                .filter_map(|k| k.strip_prefix("out/sub_fdts/").map(String::from))
                .collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|name| {
                    let bytes = live_bytes(&name);
                    ExpectSubtree {
                        pa: pa_of(&name),
                        size: bytes.as_ref().map_or(0, |b| b.len() as u64),
                        bytes,
                        exempt: vec![],
                        name,
                    }
                })
                .collect()
        }
    }
}

/// Checks what the kernel of phase `p` (after the first) said about its restore.
pub fn check_restore(truth: &Truth, p: usize) -> Verdict {
    let me = &truth.phases[p];
    let label = format!("{}-restore", me.name);
    let sc = &truth.scenario;
    let mut bad = Vec::new();
    let log = &me.log;
    if me.kho_data.is_none() {
        bad.push("no kho_data in setup_data".to_string());
    }
    if !log.kho_found {
        bad.push("no 'KHO: found kexec handover data'".to_string());
    }
    if log.luo_liveupdate.is_none() {
        bad.push("no 'luo: Retrieved live update data'".to_string());
    }
    if log.exec_from.is_none() {
        bad.push("no 'KHO: exec from'".to_string());
    }
    // test_kho saves only in a cold-booted kernel: expect its verdict when
    // the received root carries its subtree.
    let test_kho_expected = me.in_fdt.as_ref().is_some_and(|f| f.subtrees.iter().any(|s| s.name == "kho_test"));
    match (test_kho_expected, log.test_kho_restore) {
        (true, Some(true)) | (false, None) => {}
        (_, Some(false)) => bad.push("test_kho restore failed".to_string()),
        (true, None) => bad.push("kho_test handed over but no test_kho verdict".to_string()),
        (false, Some(true)) => bad.push("test_kho verdict without a kho_test subtree".to_string()),
    }
    for r in &sc.reserve_mem {
        if !log.revived.contains(&r.name) {
            bad.push(format!("reserve_mem '{}' not revived", r.name));
        }
    }
    if me.reserved_blocks.is_empty() {
        bad.push("no kho_preserved_memory_reserve reservations logged".to_string());
    }
    let verified = me.restores.iter().filter(|r| r.ok).count();
    for r in me.restores.iter().filter(|r| !r.ok) {
        bad.push(format!("{}/{}: {}", r.session, r.token, r.why.as_deref().unwrap_or("failed")));
    }
    if verified != sc.memfds.len() && me.restores.len() != sc.memfds.len() {
        bad.push(format!("{} of {} memfds checked", me.restores.len(), sc.memfds.len()));
    }
    if me.restore_ok != Some(true) {
        bad.push(format!("agent restore verdict {:?}", me.restore_ok));
    }
    for e in &me.errors {
        bad.push(e.clone());
    }
    if !bad.is_empty() {
        return Verdict { ok: false, line: format!("{label}: FAILED: {}", bad.join("; ")) };
    }
    let revived = if sc.reserve_mem.is_empty() {
        String::new()
    } else {
        format!(", {} reserve_mem revived", sc.reserve_mem.len())
    };
    Verdict {
        ok: true,
        line: format!(
            "{label}: agree: KHO found, LUO liveupdate {}, exec from {}, {}{revived}, {verified}/{} memfds verified (size, position, every byte), {} blocks reserved",
            log.luo_liveupdate.unwrap_or(0),
            log.exec_from.as_deref().unwrap_or("?"),
            if test_kho_expected { "test_kho restore succeeded" } else { "no test_kho data (none handed over)" },
            sc.memfds.len(),
            me.reserved_blocks.len(),
        ),
    }
}

/// The in-guest `kho inspect /proc/kcore` of phase `p`, if it ran.
pub fn check_kcore(truth: &Truth, p: usize) -> Option<Verdict> {
    let me = &truth.phases[p];
    let k = me.kcore.as_ref()?;
    let label = format!("{}-kcore", me.name);
    let Some(report) = &k.report else {
        return Some(Verdict {
            ok: false,
            line: format!(
                "{label}: DISAGREE: kho exited {} without a JSON report: {}",
                k.exit,
                parse::truncate(k.stderr.trim(), 200)
            ),
        });
    };
    let msg = report["error"]["message"].as_str().unwrap_or("");
    if msg.contains("/proc/kcore") && msg.contains("No such file") {
        return Some(Verdict {
            ok: true,
            line: format!(
                "{label}: skipped: the kernel has no /proc/kcore (built without CONFIG_PROC_KCORE); kho said: {msg}"
            ),
        });
    }
    // The guest's own memory cannot be read from the host: blob bytes are
    // compared on the live dump instead.
    Some(check_dump(truth, p, Point::Kcore, report, None))
}

#[cfg(test)]
mod tests;
