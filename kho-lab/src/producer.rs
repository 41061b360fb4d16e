//! The producer scenario's checks: kernel B booted from a handover `kho
//! kexec` wrote in kernel A and loaded with `kexec_load`.
//!
//! - Kernel A (booted without `kho=on`: it needs no KHO of its own):
//!   `kho kexec --dry-run` refused an unsafe plan (scratch too
//!   small, exit 2); `kho kexec` as user 65534 (no `CAP_SYS_BOOT`) failed
//!   with one clear error (exit 1) and loaded nothing; the real `kho
//!   kexec` validated and loaded its plan (exit 0).
//! - Kernel B's log: `KHO: found kexec handover data`, `test_kho: KHO
//!   restore succeeded`, `KHO: exec from: <release> (count 1)`, LUO's live
//!   update number, and the region revived by name.
//! - Kernel B's agent retrieved every session and memfd and found size,
//!   position and every byte as written.
//! - Kernel B's memory (its live dump) holds the region's bytes at the
//!   address kho placed it.

use std::path::Path;

use kho_lab_agent::pattern;
use serde_json::Value;

use crate::check::Verdict;
use crate::elf;
use crate::truth::Truth;

fn verdict(ok: bool, line: String) -> Verdict {
    Verdict { ok, line }
}

/// Checks a producer run; one verdict per claim.
pub fn check(truth: &Truth, dir: &Path) -> Vec<Verdict> {
    let mut out = Vec::new();
    let (Some(a), Some(b)) = (truth.phases.first(), truth.phases.get(1)) else {
        return vec![verdict(false, "producer: kernel B never booted".into())];
    };
    let a_kho = a.cmdline.split_whitespace().any(|w| w == "kho=on");
    out.push(verdict(
        !a_kho,
        format!("A ran {} (`{}`)", if a_kho { "WITH kho=on" } else { "without KHO (no kho=on)" }, a.cmdline),
    ));
    match &a.refusal {
        Some(r) if r["ok"].as_bool() == Some(true) => out.push(verdict(
            true,
            format!(
                "A: kho kexec --dry-run refused the unsafe plan (exit {}): {}",
                r["exit"],
                r["stdout"].as_str().unwrap_or("")
            ),
        )),
        r => out.push(verdict(false, format!("A: the unsafe plan was not refused as it must be: {r:?}"))),
    }
    match &a.noperm {
        Some(r) if r["ok"].as_bool() == Some(true) => out.push(verdict(
            true,
            format!(
                "A: kho kexec without CAP_SYS_BOOT loaded nothing (exit {}): {}",
                r["exit"],
                r["stdout"].as_str().unwrap_or("")
            ),
        )),
        r => out.push(verdict(false, format!("A: kho kexec without CAP_SYS_BOOT did not fail as it must: {r:?}"))),
    }
    let plan = a.produced.as_ref().map(|p| &p["report"]["plan"]);
    match (&a.produced, plan) {
        (Some(p), Some(plan)) if p["exit"].as_i64() == Some(0) && plan.is_object() => {
            out.push(verdict(true, format!("A: kho kexec validated and loaded: {}", plan_summary(plan))));
        }
        (p, _) => out.push(verdict(false, format!("A: kho kexec did not load: {p:?}"))),
    }
    let log = &b.log;
    let release = format!("{}+kho", a.release);
    let expect_exec = format!("{release} (count 1)");
    let revived: Vec<&str> = truth.scenario.reserve_mem.iter().map(|r| r.name.as_str()).collect();
    let log_ok = log.kho_found
        && log.test_kho_restore == Some(true)
        && log.exec_from.as_deref() == Some(expect_exec.as_str())
        && log.luo_liveupdate == Some(1)
        && revived.iter().all(|n| log.revived.iter().any(|r| r == n));
    let quoted: Vec<&String> = log
        .lines
        .iter()
        .filter(|l| !l.contains("command line"))
        .filter(|l| {
            ["found kexec handover", "test_kho", "exec from", "liveupdate number", "Revived memory"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    out.push(verdict(
        log_ok,
        format!(
            "B's log {}: {}",
            if log_ok {
                "has every line"
            } else {
                "lacks a line (want KHO found, test_kho restored, exec from, liveupdate 1, every region revived)"
            },
            quoted.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" | ")
        ),
    ));
    let restored: Vec<String> = b
        .restores
        .iter()
        .map(|r| format!("{}/{}:{}", r.session, r.token, if r.ok { "ok" } else { "FAILED" }))
        .collect();
    let all = b.restore_ok == Some(true)
        && b.restores.len() == truth.scenario.memfds.len()
        && b.restores.iter().all(|r| r.ok);
    out.push(verdict(
        all,
        format!(
            "B's agent retrieved {} of {} memfds, size, position and every byte checked: {}",
            b.restores.iter().filter(|r| r.ok).count(),
            truth.scenario.memfds.len(),
            restored.join(", ")
        ),
    ));
    out.push(check_regions(truth, plan, dir));
    out
}

fn plan_summary(plan: &Value) -> String {
    let segs: Vec<String> = plan["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let (mem, memsz) = (s["mem"].as_u64().unwrap_or(0), s["memsz"].as_u64().unwrap_or(0));
                    format!("{} {mem:#x}+{memsz:#x}", s["what"].as_str().unwrap_or("?"))
                })
                .collect()
        })
        .unwrap_or_default();
    let scratch: Vec<String> = plan["scratch"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!("{:#x}+{} MiB", s["addr"].as_u64().unwrap_or(0), s["size"].as_u64().unwrap_or(0) >> 20)
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "scratch {} ({} MiB free for early boot); {} segments: {}",
        scratch.join(", "),
        plan["scratch_free"].as_u64().unwrap_or(0) >> 20,
        segs.len(),
        segs.join(", ")
    )
}

/// Each region's bytes in B's live dump equal what A's agent gave kho.
fn check_regions(truth: &Truth, plan: Option<&Value>, dir: &Path) -> Verdict {
    let Some(b) = truth.phases.get(1) else { return verdict(false, "no kernel B".into()) };
    let Some(file) = &b.dumps.live else { return verdict(false, "B: no live dump to check the regions in".into()) };
    let img = match elf::Image::open(&dir.join(file)) {
        Ok(i) => i,
        Err(e) => return verdict(false, format!("{file}: {e}")),
    };
    let regions = plan.and_then(|p| p["regions"].as_array()).cloned().unwrap_or_default();
    if regions.len() != truth.scenario.reserve_mem.len() {
        return verdict(
            false,
            format!("the plan names {} regions, the scenario {}", regions.len(), truth.scenario.reserve_mem.len()),
        );
    }
    let mut said = Vec::new();
    for r in &regions {
        let (name, start, size) =
            (r["name"].as_str().unwrap_or(""), r["start"].as_u64().unwrap_or(0), r["size"].as_u64().unwrap_or(0));
        let Ok(Some(bytes)) = img.read_pa(start, size as usize) else {
            return verdict(false, format!("region {name}: {start:#x}+{size:#x} is not in {file}"));
        };
        if let Some(bad) = pattern::first_mismatch(pattern::region_seed(name), 0, &bytes) {
            return verdict(false, format!("region {name} at {start:#x}: byte {bad} differs from what kho put there"));
        }
        said.push(format!("{name} at {start:#x}+{size:#x}"));
    }
    verdict(true, format!("B's memory holds every region's bytes as kho placed them: {}", said.join(", ")))
}
