//! The kernel's truth about one run: what each kernel of the chain said
//! about the handover it received and the one it left (`truth.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::parse::{self, Block, RootFdt, Span, SymbolMap};
use crate::scenario::Scenario;

/// Version of the truth file's layout.
pub const TRUTH_VERSION: u32 = 1;

/// The function whose reservations are the preserved blocks.
pub const KHO_RESERVE_FN: &str = "kho_preserved_memory_reserve";

/// `SETUP_KEXEC_KHO`.
pub const SETUP_KEXEC_KHO: u32 = 0xa;

/// The truth file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truth {
    /// [`TRUTH_VERSION`].
    pub truth_version: u32,
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The kernel image booted.
    pub kernel: String,
    /// One entry per kernel of the chain, in boot order.
    pub phases: Vec<Phase>,
}

/// `struct kho_data`, as the next kernel received it in setup_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KhoData {
    /// PA of the root FDT.
    pub fdt_addr: u64,
    /// Its size.
    pub fdt_size: u64,
    /// PA of the scratch array.
    pub scratch_addr: u64,
    /// Byte size of the scratch array.
    pub scratch_size: u64,
}

impl KhoData {
    /// Decodes the 32-byte payload.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != 32 {
            return Err(format!("kho_data is {} bytes, not 32", b.len()));
        }
        let w = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        Ok(KhoData { fdt_addr: w(0), fdt_size: w(1), scratch_addr: w(2), scratch_size: w(3) })
    }
}

/// A memfd the agent preserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemfdOut {
    /// Session name.
    pub session: String,
    /// LUO token.
    pub token: u64,
    /// Size in bytes.
    pub size: u64,
    /// File position.
    pub pos: u64,
    /// Page frames, as `[first PFN, count]` runs.
    pub pfns: Vec<[u64; 2]>,
}

/// The agent's check of one restored memfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// Session name (of the previous phase).
    pub session: String,
    /// LUO token.
    pub token: u64,
    /// Size, position and every byte as written.
    pub ok: bool,
    /// Why not, if not.
    pub why: Option<String>,
}

/// `kho inspect /proc/kcore --json` run inside the guest before kexec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kcore {
    /// Exit code (-1: killed or timed out).
    pub exit: i64,
    /// The JSON report, if stdout parsed as JSON.
    pub report: Option<Value>,
    /// Raw stdout (when it did not parse) and stderr.
    pub stdout: String,
    /// Raw stderr.
    pub stderr: String,
}

/// What the kernel's log says about the handover it received.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KernelLog {
    /// `KHO: found kexec handover data.`
    pub kho_found: bool,
    /// `luo: Retrieved live update data, liveupdate number: N`.
    pub luo_liveupdate: Option<u64>,
    /// `KHO: exec from: RELEASE (count N)`: the whole text after "exec from: ".
    pub exec_from: Option<String>,
    /// `test_kho: KHO restore succeeded` (true), a test_kho failure line (false), or nothing.
    pub test_kho_restore: Option<bool>,
    /// Names of `reserve_mem` regions revived from KHO.
    pub revived: Vec<String>,
    /// The handover-related lines, verbatim (not the memblock ones).
    pub lines: Vec<String>,
}

/// One kernel of the chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    /// "A", "B", "C", ...
    pub name: String,
    /// Index in the chain (0 = cold boot).
    pub index: u32,
    /// `uname -r`.
    pub release: String,
    /// `/proc/cmdline`.
    pub cmdline: String,
    /// The `kho_data` this kernel received (setup_data type 0xa), if any.
    pub kho_data: Option<KhoData>,
    /// Every setup_data entry: (type, hex payload).
    pub setup_data: Vec<(u32, String)>,
    /// debugfs `in/fdt` parsed (the root this kernel received).
    pub in_fdt: Option<RootFdt>,
    /// debugfs files read at boot (`in/...`, `out/...`), hex.
    pub debugfs_boot: BTreeMap<String, String>,
    /// debugfs `out/` files read just before the ready marker, hex.
    pub debugfs_ready: BTreeMap<String, String>,
    /// This kernel's scratch areas (debugfs out/scratch_phys and scratch_len).
    pub scratch: Vec<Span>,
    /// The blocks this kernel reserved for its predecessor's handover
    /// (`memblock=debug` reservations made by [`KHO_RESERVE_FN`]), ascending.
    pub reserved_blocks: Vec<Block>,
    /// Reservations by [`KHO_RESERVE_FN`] that are not a naturally aligned block.
    pub reserved_irregular: Vec<Span>,
    /// All `memblock_reserve` lines seen (for the record).
    pub memblock_lines: usize,
    /// The kernel log's handover story.
    pub log: KernelLog,
    /// Sessions this kernel's agent created.
    pub sessions: Vec<String>,
    /// Memfds this kernel's agent preserved.
    pub memfds: Vec<MemfdOut>,
    /// The agent's checks of the previous phase's memfds.
    pub restores: Vec<Restore>,
    /// The agent's overall restore verdict (phases after the first).
    pub restore_ok: Option<bool>,
    /// The in-guest `kho inspect /proc/kcore`.
    pub kcore: Option<Kcore>,
    /// Failed calls the agent reported.
    pub errors: Vec<String>,
    /// Whether the kernel lacked debugfs `kho/`.
    pub no_kho: bool,
    /// Dump files (names relative to the truth file).
    pub dumps: Dumps,
    /// The agent's final verdict in the last phase.
    pub end_ok: Option<bool>,
    /// Producer scenario: `kho kexec`'s exit code and its JSON plan.
    #[serde(default)]
    pub produced: Option<Value>,
    /// Producer scenario: how `kho kexec --dry-run` treated an unsafe plan.
    #[serde(default)]
    pub refusal: Option<Value>,
    /// Producer scenario: `kho kexec` run without `CAP_SYS_BOOT`.
    #[serde(default)]
    pub noperm: Option<Value>,
}

/// The RAM dumps taken of one kernel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dumps {
    /// While live, after the ready marker.
    pub live: Option<String>,
    /// At the `machine_kexec` breakpoint.
    pub kexec: Option<String>,
}

/// The phase name of index `i`: A, B, C, ...
pub fn phase_name(i: u32) -> String {
    char::from_u32(u32::from(b'A') + i.min(25)).map(String::from).unwrap_or_else(|| format!("P{i}"))
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}
fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

impl Phase {
    /// A phase about to boot.
    pub fn new(index: u32) -> Self {
        Phase { name: phase_name(index), index, ..Default::default() }
    }

    /// Takes in one agent line. Err: the line is malformed.
    pub fn absorb(&mut self, v: &Value, symbols: &SymbolMap) -> Result<(), String> {
        match v["t"].as_str().unwrap_or("") {
            "boot" => {
                self.release = s(v, "release");
                self.cmdline = s(v, "cmdline");
            }
            "setup_data" => {
                let kind = parse::parse_hex_u64(&s(v, "type")).ok_or("setup_data without a type")?;
                let kind = u32::try_from(kind).map_err(|_| "setup_data type too large")?;
                let data = s(v, "data");
                if kind == SETUP_KEXEC_KHO {
                    self.kho_data = Some(KhoData::decode(&parse::hex_decode(&data)?)?);
                }
                self.setup_data.push((kind, data));
            }
            "dmesg" => self.dmesg(&s(v, "msg"), symbols),
            "debugfs" => {
                let path = s(v, "path");
                let data = s(v, "data");
                let ready = s(v, "when") == "ready";
                if path == "in/fdt" {
                    self.in_fdt =
                        Some(parse::root_fdt(&parse::hex_decode(&data)?).map_err(|e| format!("in/fdt: {e}"))?);
                }
                if ready { &mut self.debugfs_ready } else { &mut self.debugfs_boot }.insert(path, data);
                self.scratch = self.read_scratch()?;
            }
            "nokho" => self.no_kho = true,
            "session" => self.sessions.push(s(v, "name")),
            "memfd" => {
                let pfns = v["pfns"]
                    .as_array()
                    .ok_or("memfd without pfns")?
                    .iter()
                    .map(|r| Ok([r[0].as_u64().ok_or("bad pfn run")?, r[1].as_u64().ok_or("bad pfn run")?]))
                    .collect::<Result<Vec<_>, &str>>()?;
                self.memfds.push(MemfdOut {
                    session: s(v, "session"),
                    token: n(v, "token"),
                    size: n(v, "size"),
                    pos: n(v, "pos"),
                    pfns,
                });
            }
            "restore" => self.restores.push(Restore {
                session: s(v, "session"),
                token: n(v, "token"),
                ok: v["ok"].as_bool().unwrap_or(false),
                why: v.get("why").and_then(Value::as_str).map(String::from),
            }),
            "restore_verdict" => self.restore_ok = v["ok"].as_bool(),
            "kcore" => {
                let stdout = s(v, "stdout");
                self.kcore = Some(Kcore {
                    exit: v["exit"].as_i64().unwrap_or(-1),
                    report: serde_json::from_str(&stdout).ok(),
                    stdout,
                    stderr: s(v, "stderr"),
                });
            }
            "error" => self.errors.push(format!("{}: errno {} ({})", s(v, "call"), v["errno"], s(v, "msg"))),
            "end" => self.end_ok = v["ok"].as_bool(),
            "produce" => {
                let plan: Value = serde_json::from_str(&s(v, "json")).unwrap_or(Value::Null);
                self.produced = Some(serde_json::json!({"exit": v["exit"], "stderr": v["stderr"], "report": plan}));
            }
            "refusal" => self.refusal = Some(v.clone()),
            "noperm" => self.noperm = Some(v.clone()),
            _ => {}
        }
        Ok(())
    }

    fn dmesg(&mut self, msg: &str, symbols: &SymbolMap) {
        if let Some(r) = parse::memblock_reserve(msg) {
            self.memblock_lines += 1;
            if symbols.caller_function(&r.caller) == Some(KHO_RESERVE_FN) {
                match Block::from_span(r.span) {
                    Some(b) => {
                        let at = self.reserved_blocks.partition_point(|x| *x < b);
                        self.reserved_blocks.insert(at, b);
                    }
                    None => self.reserved_irregular.push(r.span),
                }
            }
            return;
        }
        if msg.contains("Command line") {
            return;
        }
        let log = &mut self.log;
        log.lines.push(msg.to_string());
        if msg.contains("KHO: found kexec handover data") {
            log.kho_found = true;
        }
        if let Some(rest) = msg.split("liveupdate number: ").nth(1) {
            log.luo_liveupdate = rest.trim().parse().ok();
        }
        if let Some(rest) = msg.split("KHO: exec from: ").nth(1) {
            log.exec_from = Some(rest.trim().to_string());
        }
        if msg.contains("test_kho") {
            if msg.contains("KHO restore succeeded") {
                log.test_kho_restore.get_or_insert(true);
            } else if msg.contains("fail") || msg.contains("mismatch") || msg.contains("error") {
                log.test_kho_restore = Some(false);
            }
        }
        if let Some(rest) = msg.split("Revived memory reservation '").nth(1)
            && let Some(name) = rest.split('\'').next()
        {
            log.revived.push(name.to_string());
        }
    }

    fn read_scratch(&self) -> Result<Vec<Span>, String> {
        let get = |k: &str| self.debugfs_ready.get(k).or_else(|| self.debugfs_boot.get(k));
        match (get("out/scratch_phys"), get("out/scratch_len")) {
            (Some(p), Some(l)) => {
                let text = |h: &String| parse::hex_decode(h).map(|b| String::from_utf8_lossy(&b).into_owned());
                parse::scratch_areas(&text(p)?, &text(l)?)
            }
            _ => Ok(self.scratch.clone()),
        }
    }

    /// The bytes of a debugfs file as read at ready (else at boot).
    pub fn debugfs_bytes(&self, path: &str, ready_first: bool) -> Option<Vec<u8>> {
        let (a, b) = if ready_first {
            (&self.debugfs_ready, &self.debugfs_boot)
        } else {
            (&self.debugfs_boot, &self.debugfs_ready)
        };
        a.get(path).or_else(|| b.get(path)).and_then(|h| parse::hex_decode(h).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> SymbolMap {
        SymbolMap::parse("ffffffff81910b19 t kho_preserved_memory_reserve\nffffffff81910c00 T other\n")
    }

    fn feed(p: &mut Phase, line: &str) {
        let v = parse::agent_line(line).unwrap().unwrap();
        p.absorb(&v, &map()).unwrap();
    }

    #[test]
    fn phase_collects_the_kernels_story() {
        let mut p = Phase::new(1);
        feed(
            &mut p,
            r#"KHO-LAB {"t":"setup_data","index":"0","type":"0xa","data":"00203d000000000000100000000000000000ff3d000000003000000000000000"}"#,
        );
        feed(
            &mut p,
            r#"KHO-LAB {"t":"dmesg","seq":1,"msg":"__memblock_reserve: [0x0000000000200000-0x00000000003fffff] nid=-1 flags=0 0xffffffff81910b53"}"#,
        );
        feed(
            &mut p,
            r#"KHO-LAB {"t":"dmesg","seq":2,"msg":"__memblock_reserve: [0x0000000000001000-0x0000000000001fff] nid=-1 flags=0 0xffffffff81910b53"}"#,
        );
        feed(
            &mut p,
            r#"KHO-LAB {"t":"dmesg","seq":3,"msg":"__memblock_reserve: [0x0000000000005000-0x0000000000006fff] nid=-1 flags=0 0xffffffff81910c10"}"#,
        );
        feed(
            &mut p,
            r#"KHO-LAB {"t":"dmesg","seq":4,"msg":"__memblock_reserve: [0x0000000000005000-0x0000000000007fff] nid=-1 flags=0 0xffffffff81910b60"}"#,
        );
        feed(&mut p, r#"KHO-LAB {"t":"dmesg","seq":5,"msg":"KHO: found kexec handover data."}"#);
        feed(&mut p, r#"KHO-LAB {"t":"dmesg","seq":6,"msg":"luo: Retrieved live update data, liveupdate number: 2"}"#);
        feed(&mut p, r#"KHO-LAB {"t":"dmesg","seq":7,"msg":"KHO: exec from: 7.2.13 (count 2)"}"#);
        feed(&mut p, r#"KHO-LAB {"t":"dmesg","seq":8,"msg":"test_kho: KHO restore succeeded"}"#);
        feed(&mut p, r#"KHO-LAB {"t":"dmesg","seq":9,"msg":"Revived memory reservation 'labmem' from KHO"}"#);
        feed(
            &mut p,
            r#"KHO-LAB {"t":"debugfs","when":"boot","path":"out/scratch_phys","data":"307833643030303030300a"}"#,
        );
        feed(&mut p, r#"KHO-LAB {"t":"debugfs","when":"boot","path":"out/scratch_len","data":"3078313030303030300a"}"#);
        feed(&mut p, r#"KHO-LAB {"t":"memfd","session":"lab1-s0","token":3,"size":5,"pos":1,"pfns":[[10,2]]}"#);
        feed(&mut p, r#"KHO-LAB {"t":"restore","session":"lab0-s0","token":1,"ok":false,"why":"byte 3 differs"}"#);
        feed(&mut p, r#"KHO-LAB {"t":"restore_verdict","phase":1,"ok":false}"#);
        let kd = p.kho_data.unwrap();
        assert_eq!((kd.fdt_addr, kd.fdt_size, kd.scratch_addr, kd.scratch_size), (0x3d2000, 4096, 0x3dff0000, 48));
        assert_eq!(p.reserved_blocks, vec![Block { pa: 0x1000, order: 0 }, Block { pa: 0x20_0000, order: 9 }]);
        assert_eq!(p.reserved_irregular, vec![Span { pa: 0x5000, size: 0x3000 }]);
        assert_eq!(p.memblock_lines, 4);
        assert!(p.log.kho_found);
        assert_eq!(p.log.luo_liveupdate, Some(2));
        assert_eq!(p.log.exec_from.as_deref(), Some("7.2.13 (count 2)"));
        assert_eq!(p.log.test_kho_restore, Some(true));
        assert_eq!(p.log.revived, vec!["labmem".to_string()]);
        assert_eq!(p.scratch, vec![Span { pa: 0x3d00_0000, size: 0x100_0000 }]);
        assert_eq!(p.memfds[0].pfns, vec![[10, 2]]);
        assert_eq!(p.restores[0].why.as_deref(), Some("byte 3 differs"));
        assert_eq!(p.restore_ok, Some(false));
    }

    #[test]
    fn malformed_lines_are_errors() {
        let mut p = Phase::new(1);
        let v = serde_json::json!({"t": "setup_data", "type": "0xa", "data": "0011"});
        assert!(p.absorb(&v, &map()).is_err());
        let v = serde_json::json!({"t": "memfd", "session": "s"});
        assert!(p.absorb(&v, &map()).is_err());
        let v = serde_json::json!({"t": "debugfs", "when": "boot", "path": "in/fdt", "data": "00"});
        assert!(p.absorb(&v, &map()).is_err());
    }

    #[test]
    fn phase_names() {
        assert_eq!(phase_name(0), "A");
        assert_eq!(phase_name(2), "C");
    }
}
