//! The decode step of the real-kernel check: what `kho inspect` decoded
//! from a kexec-point dump's payloads, and what `kho extract` gets out of
//! it, against what the guest agent created and what the next kernel said.
//!
//! On the dump of kernel X at `machine_kexec`:
//!
//! - **LUO**: the sessions are exactly the ones X's agent created; each
//!   memfd the agent preserved is a `memfd-v2` file of its session with
//!   its token, size and position; no session holds a file the agent did
//!   not preserve; the live-update number is the one X's successor logged;
//! - **memfd bytes**: `kho extract DUMP SESSION TOKEN OUT` writes, for
//!   every memfd, exactly the agent's pattern
//!   ([`kho_lab_agent::pattern`], the code the agent wrote them with), of
//!   exactly the memfd's size;
//! - **memblock**: the `reserve_mem` regions are the scenario's (names,
//!   sizes, start aligned as asked), each one revived by the successor;
//! - **kexec-metadata**: the previous release is X's `uname -r` and the
//!   kexec count the one the successor logged (`KHO: exec from`);
//! - **kho_test**: its checksum holds, as the successor's `test_kho` said.
//!
//! Every subtree the successor received that a layer of kho decodes must
//! carry its decoded payload in the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kho_lab_agent::pattern;
use serde_json::Value;

use crate::truth::{Phase, Truth};

/// Gets a memfd's contents out of the dump: `(session, token)` to its
/// bytes, or why not.
pub type Extract<'a> = dyn FnMut(&str, u64) -> Result<Vec<u8>, String> + 'a;

/// The payload of subtree `name` in the report, if it has one.
fn payload<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    let s = report["subtrees"].as_array()?.iter().find(|s| s["name"].as_str() == Some(name))?;
    Some(&s["payload"]).filter(|p| !p.is_null())
}

/// The subtrees a layer of kho decodes, by the payload kind it gives.
const DECODED: [(&str, &str); 4] =
    [("LUO", "luo"), ("memblock", "memblock"), ("kexec-metadata", "kexec_metadata"), ("kho_test", "kho_test")];

/// `RELEASE (count N)`, as the successor's `KHO: exec from:` line states it.
fn exec_from(text: &str) -> Option<(&str, u64)> {
    let (release, rest) = text.rsplit_once(" (count ")?;
    Some((release, rest.strip_suffix(')')?.trim().parse().ok()?))
}

/// Checks the decoded payloads of phase `p`'s kexec-point report; `extract`
/// gets each memfd's bytes. Returns the summary for the verdict line, or
/// every disagreement.
pub fn check(truth: &Truth, p: usize, report: &Value, extract: &mut Extract<'_>) -> Result<String, Vec<String>> {
    let me = &truth.phases[p];
    let mut bad = Vec::new();
    let Some(next) = truth.phases.get(p + 1) else {
        return Err(vec![format!("no successor of {} recorded", me.name)]);
    };
    let received: Vec<&str> =
        next.in_fdt.as_ref().map(|f| f.subtrees.iter().map(|s| s.name.as_str()).collect()).unwrap_or_default();
    let mut summary = Vec::new();
    for (name, kind) in DECODED.iter().filter(|(n, _)| received.contains(n)) {
        let Some(pl) = payload(report, name) else {
            bad.push(format!("{name}: no decoded payload in the report"));
            continue;
        };
        if pl["kind"].as_str() != Some(kind) {
            let why = if pl["kind"] == "error" {
                format!("{}: {}", pl["fault"].as_str().unwrap_or("?"), pl["message"].as_str().unwrap_or("?"))
            } else {
                format!("payload kind {}", pl["kind"])
            };
            bad.push(format!("{name}: does not decode ({why})"));
            continue;
        }
        let line = match *name {
            "LUO" => luo(me, next, pl, extract, &mut bad),
            "memblock" => memblock(truth, next, pl, &mut bad),
            "kexec-metadata" => kexec_metadata(me, next, pl, &mut bad),
            _ => kho_test(next, pl, &mut bad),
        };
        summary.push(line);
    }
    if !received.contains(&"LUO") && !me.memfds.is_empty() {
        bad.push(format!("{} preserved {} memfds but handed over no LUO subtree", me.name, me.memfds.len()));
    }
    if bad.is_empty() { Ok(summary.join(", ")) } else { Err(bad) }
}

fn luo(me: &Phase, next: &Phase, pl: &Value, extract: &mut Extract<'_>, bad: &mut Vec<String>) -> String {
    let num = pl["liveupdate_num"].as_u64();
    if num != next.log.luo_liveupdate {
        bad.push(format!("LUO liveupdate_num: decoded {num:?} vs {} logged {:?}", next.name, next.log.luo_liveupdate));
    }
    let sessions = pl["sessions"].as_array().cloned().unwrap_or_default();
    let mut got: Vec<&str> = sessions.iter().filter_map(|s| s["name"].as_str()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = me.sessions.iter().map(String::as_str).collect();
    want.sort_unstable();
    if got != want {
        bad.push(format!("LUO sessions: decoded {got:?} vs agent {want:?}"));
    }
    let mut per_session: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bytes = 0u64;
    for m in &me.memfds {
        *per_session.entry(m.session.as_str()).or_default() += 1;
        let at = format!("LUO {}/{}", m.session, m.token);
        let file = sessions
            .iter()
            .find(|s| s["name"].as_str() == Some(&m.session))
            .and_then(|s| s["files"].as_array()?.iter().find(|f| f["token"].as_u64() == Some(m.token)));
        let Some(file) = file else {
            bad.push(format!("{at}: not decoded"));
            continue;
        };
        if file["compatible"].as_str() != Some("memfd-v2") {
            bad.push(format!("{at}: handler {} (expected memfd-v2)", file["compatible"]));
            continue;
        }
        let mfd = &file["memfd"];
        let (size, pos) = (mfd["size"].as_u64(), mfd["pos"].as_u64());
        if size != Some(m.size) || pos != Some(m.pos) {
            bad.push(format!("{at}: size {size:?}, position {pos:?} vs agent {}, {}", m.size, m.pos));
            continue;
        }
        // The bytes, through `kho extract`, against the agent's pattern.
        match extract(&m.session, m.token) {
            Err(e) => bad.push(format!("{at}: kho extract: {e}")),
            Ok(got) if got.len() as u64 != m.size => {
                bad.push(format!("{at}: kho extract wrote {} bytes, the memfd has {}", got.len(), m.size));
            }
            Ok(got) => {
                let seed = pattern::seed(&m.session, m.token, me.index);
                match pattern::first_mismatch(seed, 0, &got) {
                    Some(off) => bad.push(format!("{at}: kho extract output differs from the pattern at byte {off}")),
                    None => bytes += m.size,
                }
            }
        }
    }
    for s in &sessions {
        let name = s["name"].as_str().unwrap_or("");
        let files = s["files"].as_array().map_or(0, Vec::len);
        let want = per_session.get(name).copied().unwrap_or(0);
        if files != want {
            bad.push(format!("LUO session {name}: {files} files decoded, the agent preserved {want}"));
        }
    }
    format!(
        "LUO {} sessions, {} memfds (size, position, {bytes} bytes extracted equal to the pattern), liveupdate {}",
        sessions.len(),
        me.memfds.len(),
        num.unwrap_or(0)
    )
}

fn memblock(truth: &Truth, next: &Phase, pl: &Value, bad: &mut Vec<String>) -> String {
    let regions = pl["regions"].as_array().cloned().unwrap_or_default();
    let want = &truth.scenario.reserve_mem;
    if regions.len() != want.len() {
        bad.push(format!("memblock: {} regions decoded, the scenario reserves {}", regions.len(), want.len()));
    }
    for r in want {
        let Some(g) = regions.iter().find(|g| g["name"].as_str() == Some(&r.name)) else {
            bad.push(format!("memblock: region {} not decoded", r.name));
            continue;
        };
        let (start, size) = (g["start"].as_u64().unwrap_or(1), g["size"].as_u64());
        if size != Some(r.size) || start % r.align.max(1) != 0 {
            bad.push(format!(
                "memblock {}: start {start:#x} size {size:?} vs reserve_mem {}:{}:{}",
                r.name, r.size, r.align, r.name
            ));
        }
        if !next.log.revived.contains(&r.name) {
            bad.push(format!("memblock {}: decoded, but {} did not revive it", r.name, next.name));
        }
    }
    let names: Vec<String> = regions
        .iter()
        .map(|g| {
            format!(
                "{} {:#x}+{:#x}",
                g["name"].as_str().unwrap_or("?"),
                g["start"].as_u64().unwrap_or(0),
                g["size"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    format!("reserve_mem [{}]", names.join(", "))
}

fn kexec_metadata(me: &Phase, next: &Phase, pl: &Value, bad: &mut Vec<String>) -> String {
    let release = pl["previous_release"].as_str();
    let count = pl["kexec_count"].as_u64();
    if release != Some(me.release.as_str()) {
        bad.push(format!("kexec-metadata release: decoded {release:?} vs {} uname {:?}", me.name, me.release));
    }
    match next.log.exec_from.as_deref().and_then(exec_from) {
        None => bad.push(format!("kexec-metadata: {} logged no 'KHO: exec from'", next.name)),
        Some((logged, n)) => {
            if Some(n) != count || release != Some(logged) {
                bad.push(format!(
                    "kexec-metadata: decoded {release:?} count {count:?} vs {} logged {logged:?} count {n}",
                    next.name
                ));
            }
        }
    }
    format!("kexec count {}", count.unwrap_or(0))
}

fn kho_test(next: &Phase, pl: &Value, bad: &mut Vec<String>) -> String {
    let holds = pl["checksum_holds"].as_bool() == Some(true) && pl["stored_csum"] == pl["computed_csum"];
    if !holds {
        bad.push(format!("kho_test checksum: stored {} computed {}", pl["stored_csum"], pl["computed_csum"]));
    }
    if next.log.test_kho_restore != Some(true) {
        bad.push(format!("kho_test: {} did not log a successful restore", next.name));
    }
    format!("kho_test checksum {:#010x} holds", pl["stored_csum"].as_u64().unwrap_or(0))
}

/// The `kho` the lab checks with: `$KHO_LAB_KHO` if set, else the release
/// build of the workspace (built once).
fn kho_binary() -> Result<PathBuf, String> {
    static KHO: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    KHO.get_or_init(|| match std::env::var_os("KHO_LAB_KHO") {
        Some(p) => Ok(PathBuf::from(p)),
        None => crate::host_kho(None),
    })
    .clone()
}

/// Runs `kho extract IMAGE SESSION TOKEN OUT` and reads `OUT` back.
pub fn kho_extract(kho: &Path, image: &Path, session: &str, token: u64) -> Result<Vec<u8>, String> {
    let out = std::env::temp_dir().join(format!("kho-lab-extract-{}-{session}-{token}", std::process::id()));
    let run = Command::new(kho)
        .arg("extract")
        .arg(image)
        .arg(session)
        .arg(token.to_string())
        .arg(&out)
        .output()
        .map_err(|e| format!("{}: {e}", kho.display()));
    let result = run.and_then(|o| {
        if o.status.success() {
            std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
        } else {
            Err(format!("exited {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()))
        }
    });
    let _ = std::fs::remove_file(&out);
    result
}

/// The extractor of a real report: `kho extract` on the image the report
/// names (`image.path`).
pub fn extractor(report: &Value) -> impl FnMut(&str, u64) -> Result<Vec<u8>, String> + '_ {
    move |session, token| {
        let image = report["image"]["path"].as_str().ok_or("the report names no image")?;
        kho_extract(&kho_binary()?, Path::new(image), session, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's truth file of the chain vectors. It keeps the verbatim
    /// log lines out (they are the kernels' own text): `lines` is empty.
    fn chain_truth() -> Truth {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/lab-chain.truth.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for phase in v["phases"].as_array_mut().unwrap() {
            phase["log"].as_object_mut().unwrap().entry("lines").or_insert(Value::Array(vec![]));
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exec_from_lines() {
        assert_eq!(exec_from("7.2.13 (count 2)"), Some(("7.2.13", 2)));
        assert_eq!(exec_from("7.2.13-rc1 (x) (count 10)"), Some(("7.2.13-rc1 (x)", 10)));
        assert_eq!(exec_from("7.2.13"), None);
    }

    /// The lab's chain vectors (tests/vectors): A's and B's kexec-point
    /// dumps decode to what their agents created, and `kho extract` gives
    /// back every memfd byte of the pattern.
    #[test]
    fn the_lab_chain_vectors_decode_to_the_agents_state() {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
        let truth = chain_truth();
        let kho = kho_binary().unwrap();
        for (p, dump) in [(0, "lab-chain-A-kexec.elf.zst"), (1, "lab-chain-B-kexec.elf.zst")] {
            let image = kho_sim::vector::unpack(&vectors.join(dump), &std::env::temp_dir().join("kho-lab-vectors"));
            let out = Command::new(&kho).arg("inspect").arg(&image).arg("--json").output().unwrap();
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            let got = check(&truth, p, &report, &mut extractor(&report));
            let line = got.unwrap_or_else(|bad| panic!("phase {p}: {}", bad.join("; ")));
            assert!(line.contains("memfds (size, position, 1060922 bytes extracted"), "{line}");
            assert!(line.contains("kho_test checksum") || p == 1, "{line}");
            assert!(line.contains(&format!("kexec count {}", p + 1)), "{line}");
            assert!(line.contains("reserve_mem [lab_chain "), "{line}");
        }
    }

    /// Each rule can disagree.
    #[test]
    fn each_rule_can_disagree() {
        let truth = chain_truth();
        let me = &truth.phases[0];
        let mut files = Vec::new();
        for m in &me.memfds {
            files.push(serde_json::json!({"compatible": "memfd-v2", "token": m.token, "data": 0,
                "memfd": {"size": m.size, "pos": m.pos}}));
        }
        let sessions: Vec<Value> = me
            .sessions
            .iter()
            .map(|s| {
                let f: Vec<Value> =
                    files.iter().zip(&me.memfds).filter(|(_, m)| &m.session == s).map(|(f, _)| f.clone()).collect();
                serde_json::json!({"name": s, "file_count": f.len(), "files": f})
            })
            .collect();
        let good = serde_json::json!({"subtrees": [
            {"name": "LUO", "payload": {"kind": "luo", "liveupdate_num": 1, "sessions": sessions, "flbs": []}},
            {"name": "memblock", "payload": {"kind": "memblock",
                "regions": [{"name": "lab_chain", "start": 0x3e00_0000u64, "size": 4u64 << 20}]}},
            {"name": "kexec-metadata", "payload": {"kind": "kexec_metadata", "version": 1,
                "previous_release": "7.2.13", "kexec_count": 1}},
            {"name": "kho_test", "payload": {"kind": "kho_test", "folios": 9, "pages": 256,
                "stored_csum": 5, "computed_csum": 5, "checksum_holds": true}}
        ]});
        let mut pattern_of = |session: &str, token: u64| {
            let m = me.memfds.iter().find(|m| m.session == session && m.token == token).unwrap();
            let mut b = vec![0u8; m.size as usize];
            pattern::fill(pattern::seed(session, token, 0), 0, &mut b);
            Ok(b)
        };
        assert!(check(&truth, 0, &good, &mut pattern_of).is_ok());
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("LUO sessions", Box::new(|r| r["subtrees"][0]["payload"]["sessions"][1]["name"] = "x".into())),
            (
                "size Some(2)",
                Box::new(|r| r["subtrees"][0]["payload"]["sessions"][0]["files"][0]["memfd"]["size"] = 2.into()),
            ),
            ("LUO liveupdate_num", Box::new(|r| r["subtrees"][0]["payload"]["liveupdate_num"] = 9.into())),
            ("not decoded", Box::new(|r| r["subtrees"][0]["payload"]["sessions"][0]["files"][1]["token"] = 7.into())),
            (
                "memblock lab_chain: start",
                Box::new(|r| r["subtrees"][1]["payload"]["regions"][0]["start"] = 0x3e00_0800u64.into()),
            ),
            (
                "region lab_chain not decoded",
                Box::new(|r| r["subtrees"][1]["payload"]["regions"][0]["name"] = "y".into()),
            ),
            ("kexec-metadata: decoded", Box::new(|r| r["subtrees"][2]["payload"]["kexec_count"] = 3.into())),
            ("kexec-metadata release", Box::new(|r| r["subtrees"][2]["payload"]["previous_release"] = "6.1".into())),
            ("kho_test checksum", Box::new(|r| r["subtrees"][3]["payload"]["computed_csum"] = 6.into())),
            (
                "does not decode (luo_compatible",
                Box::new(|r| {
                    r["subtrees"][0]["payload"] =
                        serde_json::json!({"kind": "error", "fault": "luo_compatible", "message": "m"})
                }),
            ),
            (
                "memblock: no decoded payload",
                Box::new(|r| {
                    r["subtrees"].as_array_mut().unwrap().remove(1);
                }),
            ),
        ];
        for (want, edit) in cases {
            let mut r = good.clone();
            edit(&mut r);
            let bad = check(&truth, 0, &r, &mut pattern_of).expect_err(want);
            assert!(bad.iter().any(|b| b.contains(want)), "{want}: {bad:?}");
        }
        // The bytes: one flipped, one missing.
        let mut flipped = |s: &str, t: u64| {
            let mut b = pattern_of(s, t)?;
            if t == 3 {
                b[5000] ^= 1;
            }
            Ok(b)
        };
        let bad = check(&truth, 0, &good, &mut flipped).unwrap_err();
        assert_eq!(bad, ["LUO lab0-s1/3: kho extract output differs from the pattern at byte 5000"]);
        let bad = check(&truth, 0, &good, &mut |_: &str, _| Err("boom".into())).unwrap_err();
        assert_eq!(bad.len(), 3, "{bad:?}");
    }
}
