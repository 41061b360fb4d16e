//! Parsers for what the guest and the kernel say: the agent's console
//! lines, `memblock=debug` reservations, System.map, root FDTs, debugfs text.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The prefix of the agent's report lines.
pub const PREFIX: &str = "KHO-LAB ";

/// The agent's JSON object on a console line, if the line carries one.
/// Err: the line has the prefix but its JSON does not parse (for example a
/// kernel message interleaved with it).
pub fn agent_line(line: &str) -> Option<Result<Value, String>> {
    let at = line.find(PREFIX)?;
    let json = line[at + PREFIX.len()..].trim_end();
    Some(match serde_json::from_str::<Value>(json) {
        Ok(v) if v.get("t").and_then(Value::as_str).is_some() => Ok(v),
        Ok(_) => Err(format!("agent line without a type: {json}")),
        Err(e) => Err(format!("agent line does not parse ({e}): {}", truncate(json, 200))),
    })
}

/// At most `n` bytes of `s`, on a character boundary.
pub fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Decodes a lowercase or uppercase hex string.
pub fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd-length hex ({} digits)", s.len()));
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let d = |c: u8| char::from(c).to_digit(16).ok_or_else(|| format!("bad hex digit {:?}", char::from(c)));
            Ok((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

/// Encodes bytes as lowercase hex.
#[cfg(test)]
pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    /// First PA.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
}

/// One `memblock_reserve` the kernel logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The range.
    pub span: Span,
    /// The caller as printed: a symbol (`name+0x1/0x2`) or a bare address.
    pub caller: String,
}

/// Parses a `memblock=debug` line: `...memblock_reserve: [0xA-0xB] ... CALLER`.
pub fn memblock_reserve(msg: &str) -> Option<Reservation> {
    let at = msg.find("memblock_reserve: [")?;
    let rest = &msg[at + "memblock_reserve: [".len()..];
    let (range, tail) = rest.split_once(']')?;
    let (a, b) = range.split_once('-')?;
    let start = parse_hex_u64(a)?;
    let last = parse_hex_u64(b)?;
    let size = last.checked_sub(start)?.checked_add(1)?;
    let caller = tail.split_whitespace().last()?.to_string();
    Some(Reservation { span: Span { pa: start, size }, caller })
}

/// Parses `0x`-prefixed (or bare) hex.
pub fn parse_hex_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    u64::from_str_radix(s, 16).ok()
}

/// Text symbols of a System.map, sorted by address.
pub struct SymbolMap {
    syms: Vec<(u64, String)>,
}

impl SymbolMap {
    /// Parses System.map text (`ADDR TYPE NAME` lines).
    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort();
        SymbolMap { syms }
    }

    /// The address of a symbol.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.syms.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }

    /// The function containing `addr` (the nearest symbol at or below it).
    pub fn function_at(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        i.checked_sub(1).map(|i| self.syms[i].1.as_str())
    }

    /// The function a printed caller names.
    pub fn caller_function<'a>(&'a self, caller: &'a str) -> Option<&'a str> {
        if caller.starts_with("0x") {
            self.function_at(parse_hex_u64(caller)?)
        } else {
            Some(caller.split('+').next().unwrap_or(caller))
        }
    }
}

/// A preserved block: `2^order` pages at `pa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Block {
    /// First PA.
    pub pa: u64,
    /// log2 of the page count.
    pub order: u32,
}

impl Block {
    /// The block a reserved span is, if it is a naturally aligned power of two pages.
    pub fn from_span(s: Span) -> Option<Block> {
        if s.size < 4096 || !s.size.is_power_of_two() || !s.pa.is_multiple_of(s.size) {
            return None;
        }
        Some(Block { pa: s.pa, order: s.size.trailing_zeros() - 12 })
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        4096u64 << self.order
    }
}

/// Preserved memory as maximal ranges: blocks that touch (or overlap) merge, whatever their order.
pub fn coalesce(blocks: &[Block]) -> Vec<Span> {
    let mut sorted: Vec<Block> = blocks.to_vec();
    sorted.sort();
    let mut out: Vec<Span> = Vec::new();
    for b in sorted {
        let end = b.pa + b.bytes();
        match out.last_mut() {
            Some(last) if b.pa <= last.pa + last.size => last.size = last.size.max(end - last.pa),
            _ => out.push(Span { pa: b.pa, size: b.bytes() }),
        }
    }
    out
}

/// One subtree of a root FDT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtree {
    /// Node name.
    pub name: String,
    /// `preserved-data`.
    pub pa: u64,
    /// `blob-size`.
    pub size: u64,
}

/// What a root FDT says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFdt {
    /// Root `compatible`.
    pub compatible: String,
    /// `preserved-memory-map`.
    pub memory_map_pa: u64,
    /// Subtree nodes, in FDT order.
    pub subtrees: Vec<Subtree>,
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    let s = b.get(at..at + 4).ok_or_else(|| format!("FDT truncated at {at}"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le_u64_prop(v: &[u8], what: &str) -> Result<u64, String> {
    let a: [u8; 8] = v.try_into().map_err(|_| format!("{what} is {} bytes, not 8", v.len()))?;
    Ok(u64::from_le_bytes(a))
}

fn cstr(b: &[u8], at: usize) -> Result<(&str, usize), String> {
    let tail = b.get(at..).ok_or_else(|| format!("FDT string at {at} out of range"))?;
    let n = tail.iter().position(|&c| c == 0).ok_or_else(|| format!("unterminated FDT string at {at}"))?;
    let s = std::str::from_utf8(&tail[..n]).map_err(|_| format!("FDT string at {at} is not UTF-8"))?;
    Ok((s, n))
}

/// Parses a KHO root FDT (property values are raw little-endian u64s).
pub fn root_fdt(b: &[u8]) -> Result<RootFdt, String> {
    if be32(b, 0)? != 0xd00d_feed {
        return Err("no FDT magic".into());
    }
    let total = be32(b, 4)? as usize;
    if total > b.len() {
        return Err(format!("FDT totalsize {total} but only {} bytes (truncated)", b.len()));
    }
    let (off_struct, off_strings) = (be32(b, 8)? as usize, be32(b, 12)? as usize);
    let mut at = off_struct;
    let mut depth = 0usize;
    let mut compatible = None;
    let mut map = None;
    let mut subtrees = Vec::new();
    let mut current: Option<(String, Option<u64>, Option<u64>)> = None;
    loop {
        let token = be32(b, at)?;
        at += 4;
        match token {
            1 => {
                let (name, n) = cstr(b, at)?;
                at += (n + 1).div_ceil(4) * 4;
                depth += 1;
                if depth == 2 {
                    current = Some((name.to_string(), None, None));
                }
            }
            2 => {
                if depth == 2
                    && let Some((name, pa, size)) = current.take()
                {
                    let pa = pa.ok_or_else(|| format!("subtree {name} has no preserved-data"))?;
                    subtrees.push(Subtree { name, pa, size: size.unwrap_or(0) });
                }
                depth = depth.checked_sub(1).ok_or("FDT END_NODE without BEGIN_NODE")?;
            }
            3 => {
                let len = be32(b, at)? as usize;
                let nameoff = be32(b, at + 4)? as usize;
                let value = b.get(at + 8..at + 8 + len).ok_or("FDT property runs past the end")?;
                at += 8 + len.div_ceil(4) * 4;
                let (pname, _) = cstr(b, off_strings + nameoff)?;
                match (depth, pname) {
                    (1, "compatible") => compatible = Some(cstr(value, 0)?.0.to_string()),
                    (1, "preserved-memory-map") => map = Some(le_u64_prop(value, pname)?),
                    (2, "preserved-data") => {
                        if let Some(c) = current.as_mut() {
                            c.1 = Some(le_u64_prop(value, pname)?);
                        }
                    }
                    (2, "blob-size") => {
                        if let Some(c) = current.as_mut() {
                            c.2 = Some(le_u64_prop(value, pname)?);
                        }
                    }
                    _ => {}
                }
            }
            4 => {}
            9 => break,
            t => return Err(format!("bad FDT token {t:#x} at {}", at - 4)),
        }
    }
    Ok(RootFdt {
        compatible: compatible.ok_or("root has no compatible")?,
        memory_map_pa: map.ok_or("root has no preserved-memory-map")?,
        subtrees,
    })
}

/// Parses debugfs `scratch_phys` + `scratch_len` (one hex number per line each).
pub fn scratch_areas(phys: &str, len: &str) -> Result<Vec<Span>, String> {
    let p: Vec<&str> = phys.lines().filter(|l| !l.trim().is_empty()).collect();
    let l: Vec<&str> = len.lines().filter(|l| !l.trim().is_empty()).collect();
    if p.len() != l.len() {
        return Err(format!("{} scratch addresses but {} lengths", p.len(), l.len()));
    }
    p.iter()
        .zip(&l)
        .map(|(a, s)| {
            let pa = parse_hex_u64(a).ok_or_else(|| format!("bad scratch address {a:?}"))?;
            let size = parse_hex_u64(s).ok_or_else(|| format!("bad scratch length {s:?}"))?;
            Ok(Span { pa, size })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines_parse_and_garbage_is_named() {
        let v = agent_line("noise KHO-LAB {\"t\":\"ready\",\"phase\":0}\r").unwrap().unwrap();
        assert_eq!(v["t"], "ready");
        assert!(agent_line("[ 1.0] plain kernel line").is_none());
        assert!(agent_line("KHO-LAB {\"t\":\"rea[  2.1] interleaved").unwrap().is_err());
        assert!(agent_line("KHO-LAB {\"x\":1}").unwrap().is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_decode("00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(hex_encode(&[0, 255, 16]), "00ff10");
        assert!(hex_decode("abc").is_err());
        assert!(hex_decode("zz").is_err());
    }

    #[test]
    fn memblock_lines_parse() {
        let r = memblock_reserve(
            "__memblock_reserve: [0x0000000003c00000-0x0000000003dfffff] nid=-1 flags=0 0xffffffff81910b53",
        )
        .unwrap();
        assert_eq!(r.span, Span { pa: 0x3c0_0000, size: 0x20_0000 });
        assert_eq!(r.caller, "0xffffffff81910b53");
        assert_eq!(Block::from_span(r.span), Some(Block { pa: 0x3c0_0000, order: 9 }));
        let r = memblock_reserve("memblock_reserve: [0x1000-0x1fff] kho_preserved_memory_reserve+0x3a/0x80").unwrap();
        assert_eq!(r.caller, "kho_preserved_memory_reserve+0x3a/0x80");
        assert!(memblock_reserve("memblock_reserve: [0x2000-0x1000] x").is_none());
        assert!(memblock_reserve("Memory: 1G").is_none());
        // Not a block: unaligned or not a power of two pages.
        assert_eq!(Block::from_span(Span { pa: 0x1000, size: 0x2000 }), None);
        assert_eq!(Block::from_span(Span { pa: 0x2000, size: 0x3000 }), None);
        assert_eq!(Block::from_span(Span { pa: 0xf5ba0, size: 16 }), None);
    }

    #[test]
    fn system_map_resolves_callers() {
        let m = SymbolMap::parse(
            "ffffffff81910b19 t kho_preserved_memory_reserve\nffffffff81910c00 T next_fn\nffffffff819ff7a4 b data\n",
        );
        assert_eq!(m.caller_function("0xffffffff81910b53"), Some("kho_preserved_memory_reserve"));
        assert_eq!(m.caller_function("0xffffffff81910c00"), Some("next_fn"));
        assert_eq!(m.caller_function("0xffffffff81000000"), None);
        assert_eq!(m.caller_function("kho_preserved_memory_reserve+0x3a/0x80"), Some("kho_preserved_memory_reserve"));
        assert_eq!(m.address("next_fn"), Some(0xffffffff81910c00));
        assert_eq!(m.address("data"), None);
    }

    #[test]
    fn adjacent_blocks_of_any_order_coalesce() {
        let b = |pa, order| Block { pa, order };
        let r = coalesce(&[b(0x20_0000, 9), b(0x1000, 0), b(0x40_0000, 0), b(0x2000, 1), b(0x10_0000, 0)]);
        assert_eq!(
            r,
            vec![
                Span { pa: 0x1000, size: 0x3000 },
                Span { pa: 0x10_0000, size: 0x1000 },
                Span { pa: 0x20_0000, size: 0x20_1000 },
            ]
        );
        assert!(coalesce(&[]).is_empty());
    }

    /// A root FDT as the kernel writes one (captured from a 7.2.13 guest's debugfs in/fdt).
    pub const ROOT: &str = "d00dfeed00000195000000380000015c0000002800000011000000100000000000000039000001240000000000000000000000000000000000000001000000000000000300000007000000156b686f2d7634000000000003000000080000000000e0390000000000000000016d656d626c6f636b00000000030000000800000000000010a13b00000000000000030000000800000022d20000000000000000000002000000016b686f5f746573740000000000000003000000080000000000c0313b0000000000000003000000080000002220010000000000000000000200000001";

    #[test]
    fn root_fdt_reads_little_endian_values() {
        // The captured prefix is truncated: the parser must say so, not guess.
        let short = hex_decode(ROOT).unwrap();
        assert!(root_fdt(&short).unwrap_err().contains("truncated"));
        let fdt = crate::testdata::root_fdt_bytes();
        let r = root_fdt(&fdt).unwrap();
        assert_eq!(r.compatible, "kho-v4");
        assert_eq!(r.memory_map_pa, 0x3a6000);
        assert_eq!(r.subtrees, vec![Subtree { name: "LUO".into(), pa: 0x1c48000, size: 32 }]);
        let mut bad = fdt.clone();
        bad[0] = 0;
        assert!(root_fdt(&bad).is_err());
    }

    #[test]
    fn scratch_text_parses() {
        let s = scratch_areas("0x3d000000\n0x35000000\n", "0x1000000\n0x8000000\n").unwrap();
        assert_eq!(s, vec![Span { pa: 0x3d00_0000, size: 0x100_0000 }, Span { pa: 0x3500_0000, size: 0x800_0000 }]);
        assert!(scratch_areas("0x1\n", "").is_err());
        assert!(scratch_areas("zz\n", "0x1\n").is_err());
    }
}
