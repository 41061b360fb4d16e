//! Shared helpers of the `kho` command-line tests: running the binary,
//! building machine images with kho-sim, rewriting their ELF layout, and
//! checking JSON against the schema.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use kho_abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr};
use kho_sim::{Machine, MachineConfig};
use kho_track::{Tracker, TrackerOptions};
use serde_json::Value;

pub const PAGE: u64 = PAGE_SIZE as u64;

/// What a run of `kho` gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `kho` with `args`.
pub fn kho<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kho")).args(args).output().expect("running kho");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kho inspect --json IMAGE extra...`, checked against the schema.
pub fn inspect_json(image: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["inspect".to_string(), "--json".into(), image.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = kho(&args);
    let v = run.json();
    if let Err(e) = validate(&v) {
        panic!("output does not match the schema: {e}\n{}", run.stdout);
    }
    (run.code, v)
}

/// A fresh path for a test file, in a directory of this test process;
/// directories of test processes that are gone are removed.
pub fn tmp(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kho-cli-tests");
    let me = std::process::id();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let stale = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(me.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub fn order(n: u32) -> Order {
    Order::new(u64::from(n), "test order").unwrap()
}

/// A machine with `mib` MiB of RAM at 4 GiB (scratch in the middle).
pub fn machine(mib: u64) -> Machine {
    Machine::new(MachineConfig::with_ram(PhysAddr::new(0x1_0000_0000), mib << 20)).unwrap()
}

pub fn tracker(m: &Machine) -> Tracker<&Machine> {
    Tracker::new(m, m.scratch(), TrackerOptions::default()).unwrap()
}

/// A page of RAM `n` pages above the base (below the scratch area).
pub fn page(m: &Machine, n: u64) -> PhysAddr {
    PhysAddr::new(m.ram_base().as_u64() + n * PAGE)
}

pub fn read_u64(m: &Machine, pa: PhysAddr) -> u64 {
    let mut b = [0u8; 8];
    m.read(pa, &mut b).unwrap();
    u64::from_ne_bytes(b)
}

pub fn write_u64(m: &Machine, pa: PhysAddr, v: u64) {
    m.write(pa, &v.to_ne_bytes()).unwrap();
}

pub fn alloc(m: &Machine, o: u32) -> PhysAddr {
    m.alloc_pages(order(o)).unwrap()
}

/// Every block a tracker holds, in walk order.
pub fn tracker_blocks(t: &Tracker<&Machine>) -> Vec<(u64, u32)> {
    let mut v = Vec::new();
    let _ = t.for_each_block::<()>(&mut |pa, o| {
        v.push((pa.as_u64(), o.get()));
        ControlFlow::Continue(())
    });
    v
}

/// Blocks merged into maximal `(start, end)` ranges.
pub fn coalesce(blocks: &[(u64, u32)]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = blocks.iter().map(|&(pa, o)| (pa, pa + (PAGE << o))).collect();
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Blocks per order.
pub fn by_order(blocks: &[(u64, u32)]) -> BTreeMap<u32, u64> {
    let mut m = BTreeMap::new();
    for &(_, o) in blocks {
        *m.entry(o).or_default() += 1;
    }
    m
}

/// Kernel A on a 64 MiB machine (largest order 11) with one allocated
/// order-0 block, then `corrupt(machine, tracker, block)` applied before
/// the handover is finished and `after` to its `kho_data`; saves the image
/// and returns its path.
pub fn corrupt_image(
    name: &str,
    corrupt: impl FnOnce(&Machine, &Tracker<&Machine>, PhysAddr),
    after: impl FnOnce(&Machine, &mut KhoData),
) -> PathBuf {
    let mut cfg = MachineConfig::with_ram(PhysAddr::new(0x1_0000_0000), 64 << 20);
    cfg.max_order = order(11);
    let m = Machine::new(cfg).unwrap();
    let t = tracker(&m);
    let block = alloc(&m, 0);
    t.preserve_folio(block, Order::ZERO).unwrap();
    corrupt(&m, &t, block);
    let mut data = t.finish().unwrap();
    after(&m, &mut data);
    let path = tmp(&format!("{name}.img"));
    m.save_image_with(&path, Some(&data)).unwrap();
    path
}

// ---- ELF rewriting ---------------------------------------------------

/// One RAM segment: PA and bytes.
pub struct Seg {
    pub pa: u64,
    pub bytes: Vec<u8>,
    /// Zero bytes after `bytes` (p_memsz - p_filesz).
    pub zero_tail: u64,
}

/// Reads the `PT_LOAD` segments of an image (whole, into memory).
pub fn read_segments(path: &Path) -> Vec<Seg> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = std::fs::read(path).unwrap();
    let le = object::LittleEndian;
    let hdr = object::elf::FileHeader64::<object::LittleEndian>::parse(&*data).unwrap();
    let mut out = Vec::new();
    for ph in hdr.program_headers(le, &*data).unwrap() {
        if ph.p_type(le) == object::elf::PT_LOAD {
            let (off, len) = (ph.p_offset(le) as usize, ph.p_filesz(le) as usize);
            out.push(Seg {
                pa: ph.p_paddr(le),
                bytes: data[off..off + len].to_vec(),
                zero_tail: ph.p_memsz(le) - ph.p_filesz(le),
            });
        }
    }
    out
}

/// Writes an ELF64 core image by hand: the program headers, then the notes
/// (`(name, type, desc)`), then `pad` bytes, then each segment's bytes back
/// to back (so file offsets need not be page aligned, as in QEMU dumps).
pub fn write_elf(path: &Path, segs: &[Seg], notes: &[(&str, u32, Vec<u8>)], pad: usize) {
    let phnum = segs.len() + usize::from(!notes.is_empty());
    let mut note_bytes = Vec::new();
    for (name, ty, desc) in notes {
        let name_z = [name.as_bytes(), &[0]].concat();
        note_bytes.extend_from_slice(&(name_z.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&ty.to_le_bytes());
        note_bytes.extend_from_slice(&name_z);
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
        note_bytes.extend_from_slice(desc);
        note_bytes.resize(note_bytes.len().next_multiple_of(4), 0);
    }
    let note_off = 64 + 56 * phnum;
    let mut data_off = note_off + note_bytes.len() + pad;
    let mut out = Vec::new();
    // ELF header.
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&(phnum as u16).to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    let phdr = |out: &mut Vec<u8>, ty: u32, off: u64, pa: u64, filesz: u64, memsz: u64, align: u64| {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&6u32.to_le_bytes());
        for v in [off, pa, pa, filesz, memsz, align] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    if !notes.is_empty() {
        phdr(&mut out, 4, note_off as u64, 0, note_bytes.len() as u64, note_bytes.len() as u64, 4);
    }
    for s in segs {
        let len = s.bytes.len() as u64;
        phdr(&mut out, 1, data_off as u64, s.pa, len, len + s.zero_tail, 1);
        data_off += s.bytes.len();
    }
    out.extend_from_slice(&note_bytes);
    out.resize(out.len() + pad, 0);
    for s in segs {
        out.extend_from_slice(&s.bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// The `"KHO"` note of `data`.
pub fn kho_note(data: &KhoData) -> (&'static str, u32, Vec<u8>) {
    ("KHO", 1, zerocopy::IntoBytes::as_bytes(data).to_vec())
}

// ---- JSON schema -----------------------------------------------------

/// The schema shipped with the tool.
pub fn schema() -> Value {
    let text = include_str!("../../schema/inspect.schema.json");
    serde_json::from_str(text).expect("the schema is JSON")
}

/// Validates `v` against the shipped schema (the subset of JSON Schema it
/// uses: `$ref` into `$defs`, `type`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `enum`, `const`, `minimum`,
/// `oneOf`).
pub fn validate(v: &Value) -> Result<(), String> {
    let root = schema();
    check(&root, &root, v, "$")
}

fn check(root: &Value, s: &Value, v: &Value, at: &str) -> Result<(), String> {
    let obj = s.as_object().ok_or(format!("{at}: schema is not an object"))?;
    for key in obj.keys() {
        let known = [
            "$schema",
            "$id",
            "$ref",
            "$defs",
            "title",
            "description",
            "type",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "enum",
            "const",
            "minimum",
            "oneOf",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("{at}: schema keyword {key:?} not supported by this checker"));
        }
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").ok_or(format!("{at}: $ref {r}"))?;
        let target = root["$defs"].get(name).ok_or(format!("{at}: no $defs/{name}"))?;
        check(root, target, v, at)?;
    }
    if let Some(t) = obj.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type keyword")),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let Some(c) = obj.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = obj.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(min), Some(n)) = (obj.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        return Err(format!("{at}: {n} below {min}"));
    }
    if let Some(alts) = obj.get("oneOf").and_then(Value::as_array) {
        let matched = alts.iter().filter(|a| check(root, a, v, at).is_ok()).count();
        if matched != 1 {
            let why: Vec<String> = alts.iter().filter_map(|a| check(root, a, v, at).err()).collect();
            return Err(format!("{at}: matches {matched} of oneOf ({})", why.join("; ")));
        }
    }
    if let Some(o) = v.as_object() {
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !o.contains_key(r) {
                    return Err(format!("{at}: missing {r:?}"));
                }
            }
        }
        let props = obj.get("properties").and_then(Value::as_object);
        if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
            for k in o.keys() {
                if !props.is_some_and(|p| p.contains_key(k)) {
                    return Err(format!("{at}: unexpected member {k:?}"));
                }
            }
        }
        if let Some(p) = props {
            for (k, sub) in p {
                if let Some(val) = o.get(k) {
                    check(root, sub, val, &format!("{at}.{k}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(a)) = (obj.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(root, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The interoperability vector `tests/vectors/NAME.zst` of the repository,
/// unpacked once into the test target directory.
pub fn vector(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(format!("{name}.zst"));
    kho_sim::vector::unpack(&src, &Path::new(env!("CARGO_TARGET_TMPDIR")).join("kho-vectors"))
}
