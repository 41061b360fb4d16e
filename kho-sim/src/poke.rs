//! Named corruption of a simulated machine's memory: the little language
//! of the adversarial fixtures (`tests/fixtures/*/*.case`).
//!
//! A fixture names places in a handover by symbol — a structure's PA that
//! the test recorded while building it (`apage0`, `sblock0`), or a part of
//! an FDT ([`Symbols::add_fdt`]) — and overwrites them:
//!
//! ```text
//! write u64 apage0+8 = 0xffff_ffff_ffff_fe04
//! write be32 fdt.len.preserved-memory-map = 4
//! write str fdt.name.compatible = "kho-v0"
//! write fill sblock0+16 = 0xff*80
//! ```
//!
//! An expression is `NUMBER`, `NAME`, `NAME+NUMBER` or `NAME-NUMBER`;
//! numbers are decimal or `0x` hexadecimal, with `_` allowed between
//! digits. Names may contain `-` (FDT property names do): the operator is
//! the last `+` or `-` followed by a number. Integer widths are written in
//! the machine's byte order except `be32` (an FDT cell).
//!
//! Every fault is a [`PokeError`] naming what could not be understood;
//! nothing here panics on a bad fixture.

use std::collections::BTreeMap;
use std::path::Path;

use kho_abi::{AbiError, PAGE_SIZE, PhysAddr};

use crate::Machine;

/// What a fixture asked that could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PokeError {
    /// An expression names no symbol.
    #[error("unknown name `{0}`")]
    UnknownName(String),
    /// A `write` names no known width.
    #[error("unknown width `{0}` (str, fill, u8, u16, u32, be32, u64)")]
    UnknownWidth(String),
    /// A line is not `write WIDTH AT = VALUE` (or `fill` is not
    /// `BYTE*COUNT`).
    #[error("malformed `{0}`")]
    Malformed(String),
    /// An expression's value leaves the 64-bit range.
    #[error("`{0}` overflows 64 bits")]
    Overflow(String),
    /// The FDT to name is not one this module can walk (a token or offset
    /// outside its first page).
    #[error("FDT at {pa:#x}: {what}")]
    Fdt {
        /// The FDT's PA.
        pa: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// The machine refused the access.
    #[error("memory: {0}")]
    Memory(#[from] AbiError),
}

/// A number: decimal or `0x` hexadecimal, `_` between digits allowed.
pub fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok(),
        None => s.replace('_', "").parse().ok(),
    }
}

/// Named places and values of one handover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbols(BTreeMap<String, u64>);

impl Symbols {
    /// No names.
    pub fn new() -> Symbols {
        Symbols::default()
    }

    /// Names `value` (a PA or a number) `name`, replacing an earlier one.
    pub fn insert(&mut self, name: impl Into<String>, value: u64) {
        self.0.insert(name.into(), value);
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// Every name and its value, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, &v)| (k.as_str(), v))
    }

    /// Evaluates `NUMBER`, `NAME`, `NAME+NUMBER` or `NAME-NUMBER`.
    pub fn eval(&self, e: &str) -> Result<u64, PokeError> {
        let e = e.trim();
        if let Some(n) = number(e) {
            return Ok(n);
        }
        let split = e.rfind(['+', '-']).and_then(|i| number(&e[i + 1..]).map(|n| (i, n)));
        let (name, delta) = match split {
            Some((i, n)) => (e[..i].trim(), if &e[i..=i] == "+" { i128::from(n) } else { -i128::from(n) }),
            None => (e, 0),
        };
        let base = self.get(name).ok_or_else(|| PokeError::UnknownName(name.to_string()))?;
        u64::try_from(i128::from(base) + delta).map_err(|_| PokeError::Overflow(e.to_string()))
    }

    /// Names the parts of the FDT at `fdt` (which must fit its first page)
    /// under `prefix`:
    ///
    /// - `PREFIX.node.NAME`: a node's name;
    /// - `PREFIX.prop.PATH`: a property's value, `PATH` being the property's
    ///   name at the root and `NODE.PROP` in a node;
    /// - `PREFIX.len.PATH`: the property's big-endian length word;
    /// - `PREFIX.name.PROP`: the property's name in the strings block;
    /// - `PREFIX.nameoff.PROP`: a number, the property name's offset in the
    ///   strings block (what a property's `nameoff` holds);
    /// - `PREFIX.size_dt_struct`: a number, the header's field.
    pub fn add_fdt(&mut self, m: &Machine, prefix: &str, fdt: u64) -> Result<(), PokeError> {
        let mut bytes = vec![0u8; PAGE_SIZE];
        m.read(PhysAddr::new(fdt), &mut bytes)?;
        let bad = |what| PokeError::Fdt { pa: fdt, what };
        let be = |off: usize| -> Result<usize, PokeError> {
            let b = bytes.get(off..off + 4).ok_or(bad("a field past the first page"))?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let cstr = |off: usize| -> Result<(String, usize), PokeError> {
            let tail = bytes.get(off..).ok_or(bad("a name past the first page"))?;
            let end = tail.iter().position(|&b| b == 0).ok_or(bad("an unterminated name"))?;
            let s = core::str::from_utf8(&tail[..end]).map_err(|_| bad("a name not in UTF-8"))?;
            Ok((s.to_string(), end))
        };
        let (structs, strings) = (be(8)?, be(12)?);
        self.insert(format!("{prefix}.size_dt_struct"), be(36)? as u64);
        let mut off = structs;
        let mut node = String::new();
        // Each token advances `off` by at least 4 within one page: bounded.
        loop {
            let token = be(off)?;
            off += 4;
            match token {
                1 => {
                    let (name, len) = cstr(off)?;
                    if !name.is_empty() {
                        self.insert(format!("{prefix}.node.{name}"), fdt + off as u64);
                    }
                    node = name;
                    off += (len + 1).next_multiple_of(4);
                }
                2 => node.clear(),
                3 => {
                    let (len, nameoff) = (be(off)?, be(off + 4)?);
                    let (prop, _) = cstr(strings + nameoff)?;
                    let path = if node.is_empty() { prop.clone() } else { format!("{node}.{prop}") };
                    self.insert(format!("{prefix}.len.{path}"), fdt + off as u64);
                    self.insert(format!("{prefix}.prop.{path}"), fdt + off as u64 + 8);
                    self.insert(format!("{prefix}.name.{prop}"), fdt + (strings + nameoff) as u64);
                    self.insert(format!("{prefix}.nameoff.{prop}"), nameoff as u64);
                    off += 8 + len.next_multiple_of(4);
                }
                4 => {}
                9 => return Ok(()),
                _ => return Err(bad("an unknown token")),
            }
        }
    }
}

/// `symbols[name]`: the value of `name`.
///
/// # Panics
///
/// If no symbol is named `name`, as indexing a map does; use
/// [`Symbols::get`] to ask.
impl core::ops::Index<&str> for Symbols {
    type Output = u64;

    fn index(&self, name: &str) -> &u64 {
        match self.0.get(name) {
            Some(v) => v,
            None => panic!("no symbol named `{name}`"),
        }
    }
}

/// One `write WIDTH AT = VALUE` line of a fixture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// `str`, `fill`, `u8`, `u16`, `u32`, `be32` or `u64`.
    pub width: String,
    /// Where: an expression.
    pub at: String,
    /// What: an expression, a quoted string (`str`) or `BYTE*COUNT`
    /// (`fill`).
    pub value: String,
}

impl Write {
    /// Parses what follows `write` on a fixture line.
    pub fn parse(rest: &str) -> Result<Write, PokeError> {
        let malformed = || PokeError::Malformed(format!("write {rest}"));
        let (width, at) = rest.trim().split_once(' ').ok_or_else(malformed)?;
        let (at, value) = at.split_once('=').ok_or_else(malformed)?;
        Ok(Write { width: width.to_string(), at: at.trim().to_string(), value: value.trim().to_string() })
    }

    /// Where the write goes and the bytes it writes.
    pub fn resolve(&self, syms: &Symbols) -> Result<(PhysAddr, Vec<u8>), PokeError> {
        let v = || syms.eval(&self.value);
        let bytes = match self.width.as_str() {
            "str" => self.value.trim_matches('"').as_bytes().to_vec(),
            "fill" => {
                let (b, n) = self.value.split_once('*').ok_or_else(|| PokeError::Malformed(self.value.clone()))?;
                let n = usize::try_from(syms.eval(n)?).map_err(|_| PokeError::Overflow(n.to_string()))?;
                if n > 1 << 24 {
                    return Err(PokeError::Overflow(self.value.clone()));
                }
                vec![syms.eval(b)? as u8; n]
            }
            "u8" => vec![v()? as u8],
            "u16" => (v()? as u16).to_ne_bytes().to_vec(),
            "u32" => (v()? as u32).to_ne_bytes().to_vec(),
            "be32" => (v()? as u32).to_be_bytes().to_vec(),
            "u64" => v()?.to_ne_bytes().to_vec(),
            w => return Err(PokeError::UnknownWidth(w.to_string())),
        };
        Ok((PhysAddr::new(syms.eval(&self.at)?), bytes))
    }

    /// Writes into `m`.
    pub fn apply(&self, m: &Machine, syms: &Symbols) -> Result<(), PokeError> {
        let (pa, bytes) = self.resolve(syms)?;
        m.write(pa, &bytes)?;
        Ok(())
    }
}

/// The fixtures in `dir`: every `*.case` file as `(stem, text)`, sorted by
/// name.
pub fn read_cases(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "case") {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            v.push((stem, std::fs::read_to_string(&p)?));
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MachineConfig;

    fn syms() -> Symbols {
        let mut s = Symbols::new();
        s.insert("a", 0x1000);
        s.insert("fdt.prop.preserved-memory-map", 0x2000);
        s
    }

    #[test]
    fn expressions() {
        let s = syms();
        assert_eq!(s.eval("0x1_0"), Ok(16));
        assert_eq!(s.eval("1_000"), Ok(1000));
        assert_eq!(s.eval("a"), Ok(0x1000));
        assert_eq!(s.eval("a+8"), Ok(0x1008));
        assert_eq!(s.eval("a - 0x10"), Ok(0xff0));
        assert_eq!(s.eval("fdt.prop.preserved-memory-map+4"), Ok(0x2004));
        assert_eq!(s.eval("fdt.prop.preserved-memory-map"), Ok(0x2000));
        assert_eq!(s.eval("b+1"), Err(PokeError::UnknownName("b".into())));
        assert_eq!(s.eval("a-0x2000"), Err(PokeError::Overflow("a-0x2000".into())));
    }

    #[test]
    fn writes_resolve_to_bytes() {
        let s = syms();
        let w = |l: &str| Write::parse(l).and_then(|w| w.resolve(&s));
        assert_eq!(w("u64 a+8 = 0x0102"), Ok((PhysAddr::new(0x1008), 0x0102u64.to_ne_bytes().to_vec())));
        assert_eq!(w("be32 a = 4"), Ok((PhysAddr::new(0x1000), vec![0, 0, 0, 4])));
        assert_eq!(w("u8 a = 0x1ff"), Ok((PhysAddr::new(0x1000), vec![0xff])));
        assert_eq!(w("str a = \"kho\""), Ok((PhysAddr::new(0x1000), b"kho".to_vec())));
        assert_eq!(w("fill a = 0xee*3"), Ok((PhysAddr::new(0x1000), vec![0xee; 3])));
        assert_eq!(w("u128 a = 1"), Err(PokeError::UnknownWidth("u128".into())));
        assert_eq!(w("u64 a"), Err(PokeError::Malformed("write u64 a".into())));
        assert!(matches!(w("fill a = 1*0x1_0000_0000"), Err(PokeError::Overflow(_))));
    }

    #[test]
    fn fdt_parts_are_named_and_writes_land() {
        let m = Machine::new(MachineConfig::with_ram(crate::DEFAULT_RAM_BASE, 16 << 20)).expect("machine");
        let pa = m.ram_base().as_u64();
        // A minimal FDT: root with property "p" = 8 bytes, child "c" with "q".
        let mut structs: Vec<u8> = Vec::new();
        let be = |v: u32| v.to_be_bytes();
        structs.extend(be(1));
        structs.extend([0, 0, 0, 0]);
        structs.extend(be(3));
        structs.extend(be(8));
        structs.extend(be(0));
        structs.extend([7u8; 8]);
        structs.extend(be(1));
        structs.extend(*b"c\0\0\0");
        structs.extend(be(3));
        structs.extend(be(4));
        structs.extend(be(2));
        structs.extend([9u8; 4]);
        structs.extend(be(2));
        structs.extend(be(2));
        structs.extend(be(9));
        let strings = b"p\0q\0";
        let off_struct = 40u32;
        let off_strings = off_struct + structs.len() as u32;
        let mut blob = vec![0u8; 40];
        blob[0..4].copy_from_slice(&be(0xd00d_feed));
        blob[8..12].copy_from_slice(&be(off_struct));
        blob[12..16].copy_from_slice(&be(off_strings));
        blob[36..40].copy_from_slice(&be(structs.len() as u32));
        blob.extend(&structs);
        blob.extend(strings);
        m.write(PhysAddr::new(pa), &blob).expect("write");
        let mut s = Symbols::new();
        s.add_fdt(&m, "fdt", pa).expect("names");
        assert_eq!(s.get("fdt.size_dt_struct"), Some(structs.len() as u64));
        assert_eq!(s.get("fdt.prop.p"), Some(pa + 40 + 8 + 12));
        assert_eq!(s.get("fdt.len.p"), Some(pa + 40 + 8 + 4));
        assert_eq!(s.get("fdt.node.c"), Some(pa + 40 + 8 + 12 + 8 + 4));
        assert_eq!(s.get("fdt.nameoff.q"), Some(2));
        assert_eq!(s.get("fdt.name.q"), Some(pa + u64::from(off_strings) + 2));
        let q = s.get("fdt.prop.c.q").expect("q");
        Write::parse("u32 fdt.prop.c.q = 0x01020304").and_then(|w| w.apply(&m, &s)).expect("apply");
        let mut got = [0u8; 4];
        m.read(PhysAddr::new(q), &mut got).expect("read");
        assert_eq!(got, 0x0102_0304u32.to_ne_bytes());
        // An unknown token is a typed error, not a panic.
        m.write(PhysAddr::new(pa + 40), &be(7)).expect("write");
        assert_eq!(s.add_fdt(&m, "fdt", pa), Err(PokeError::Fdt { pa, what: "an unknown token" }));
    }
}
