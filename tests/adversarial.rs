//! The adversarial handover suite: corrupt handovers, one mutation each,
//! every one of which must fail with its own typed error and leave nothing
//! behind.
//!
//! Kernel A builds one deterministic handover on kho-sim ([`Base`]):
//! folios of several orders, a page range, two subtrees, a block set of
//! 80-byte entries over three blocks, an order-0 vmalloc area over two
//! chunks, an order-2 vmalloc area and a two-page array. Every address in it
//! gets a name (`folio3`, `bs1`, `vchunk0`, `node.1.folio0`,
//! `fdt.prop.compatible`, ...), so each fixture under
//! `tests/fixtures/adversarial/` describes its mutation in those names,
//! readable without a hex dump. The runner applies the mutation, kexecs,
//! runs the whole incoming side (import, boot, subtree lookups, the block
//! set, both vmalloc areas, the array, every folio and the range) and
//! checks:
//!
//! - the step that fails, the error's crate, its stable kind name, its
//!   location (the members of the C ABI's `kho_error` record that it sets)
//!   and its errno — never the error's `Debug` or `Display` text;
//! - the failed step left the claims as they were before it;
//! - after giving back everything that was restored or left unclaimed and
//!   finishing, the machine has no outstanding and no reserved page.
//!
//! # Fixture format
//!
//! One case per `*.case` file; `#` starts a comment line. Lines:
//!
//! - `data FIELD = EXPR`: set a `kho_data` field (`fdt_addr`, `fdt_size`,
//!   `scratch_addr`, `scratch_size`);
//! - `write W AT = EXPR`: write kernel A's memory at `AT` with width `W`
//!   (`u8`, `u16`, `u32`, `u64` native-endian, `be32` big-endian as FDT
//!   headers and tokens are, `str` for a quoted string);
//! - `insert AT ORDER`: set a leaf bit of the radix tree behind the
//!   tracker's back (tables are allocated as needed);
//! - `pre OP` / `post OP`: an extra incoming operation before or after the
//!   normal restores: `restore-folio AT ORDER`, `restore-pages AT N`,
//!   `restore-blockset`, `restore-vmalloc`, `restore-array`, and
//!   `check-blob NAME` (the subtree's blob over its whole `blob-size`,
//!   step `blob`);
//! - `step NAME`: the step expected to fail;
//! - `domain NAME`: the error's crate (`track`, `block`, `vmalloc`,
//!   `array`);
//! - `kind NAME`: its stable kind name (`kho_error.kind`);
//! - `at KEY=VALUE ...`: its location, every member of its `kho_error`
//!   record that the error sets and no other: `pa`, `node`, `index`,
//!   `level`, `order`, `value` (expressions) and `field` (text, spaces
//!   written `_`);
//! - `errno NAME`: the Linux errno it maps to.
//!
//! `EXPR` and `AT` are a number, a name, or a name plus or minus a number
//! (decimal or `0x` hex).

use std::fmt::Debug;
use std::path::Path;

use kho_abi::{KhoData, KhoVmalloc, Order, PAGE_SIZE, PageAlloc, PhysAddr, RadixKey, VmallocFlags, WithTracker};
use kho_array::{ArrayDesc, Entry, KhoArray};
use kho_block::{RawBlockSet, RestoredRawBlockSet};
use kho_ffi::record::{
    Describe, KHO_ERROR_HAS_INDEX, KHO_ERROR_HAS_LEVEL, KHO_ERROR_HAS_NODE, KHO_ERROR_HAS_ORDER, KHO_ERROR_HAS_PA,
    KHO_ERROR_HAS_VALUE, kho_error,
};
use kho_sim::poke::{Symbols, Write};
use kho_sim::{Machine, MachineConfig};
use kho_track::{Incoming, RadixTree, Tracker, TrackerOptions};

const PAGE: u64 = PAGE_SIZE as u64;
/// Entry size of the block set (LUO's sessions).
const ENTRY: usize = 80;
const BS_ENTRIES: usize = 120;
/// Blocks of the order-0 vmalloc area: two chunks.
const VA_BLOCKS: usize = 515;
/// Entries of the array: 600 dense, then one far away. Page 0 (`apage0`)
/// holds 508 of them as one run (layout `0x0009_0001`, descriptor word 511
/// = 507); page 1 (`apage1`, `start` 508) holds the other 92 and the far
/// one as two runs (layout `0x3707_0002`: widths 7 and 55; entries in words
/// 3..=95, descriptors in words 510 and 511).
const ARRAY_DENSE: u64 = 600;
const ARRAY_FAR: u64 = 1 << 55;
/// Folio orders, named `folio0`.. in this order.
const FOLIO_ORDERS: [u32; 6] = [0, 0, 1, 3, 5, 9];
const RANGE_PAGES: u64 = 20;

/// Manifest layout (the `manifest` subtree's blob): block set head, then
/// the three descriptors.
const MAN_BS: u64 = 0;
const MAN_VA: u64 = 16;
const MAN_VB: u64 = 32;
const MAN_ARRAY: u64 = 48;

fn order(n: u32) -> Order {
    Order::new(u64::from(n), "test order").unwrap()
}

fn read_u64(m: &Machine, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    m.read(PhysAddr::new(pa), &mut b).unwrap();
    u64::from_ne_bytes(b)
}

/// The block set entry `i`.
fn bs_entry(i: usize) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    for (k, b) in e.iter_mut().enumerate() {
        *b = (i * 7 + k) as u8;
    }
    e
}

fn array_entries() -> Vec<(u64, Entry)> {
    let mut v: Vec<(u64, Entry)> = (0..ARRAY_DENSE).map(|p| (p, Entry::value(p * 3).unwrap())).collect();
    v.push((ARRAY_FAR, Entry::value(9).unwrap()));
    v
}

/// Kernel A's handover, before kexec, with a name for every address.
struct Base {
    m: Machine,
    data: KhoData,
    syms: Symbols,
    folios: Vec<(PhysAddr, Order)>,
    range: PhysAddr,
    va_blocks: Vec<PhysAddr>,
    vb_blocks: Vec<PhysAddr>,
    array_pages: Vec<PhysAddr>,
}

impl Base {
    fn build() -> Base {
        let m = Machine::new(MachineConfig::default()).unwrap();
        let mut t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).unwrap();
        let mut syms = Symbols::new();
        let mut folios = Vec::new();
        for (i, &o) in FOLIO_ORDERS.iter().enumerate() {
            let pa = m.alloc_pages(order(o)).unwrap();
            m.fill_random(pa, order(o).pages() * PAGE, i as u64).unwrap();
            t.preserve_folio(pa, order(o)).unwrap();
            syms.insert(format!("folio{i}"), pa.as_u64());
            folios.push((pa, order(o)));
        }
        let range = m.alloc_pages(order(5)).unwrap();
        t.preserve_pages(range, RANGE_PAGES).unwrap();
        let manifest = m.alloc_pages(Order::ZERO).unwrap();
        t.preserve_folio(manifest, Order::ZERO).unwrap();
        t.add_subtree("manifest", manifest, 64).unwrap();
        let notes = m.alloc_pages(Order::ZERO).unwrap();
        m.write(notes, b"notes of kernel A").unwrap();
        t.preserve_folio(notes, Order::ZERO).unwrap();
        t.add_subtree("notes", notes, 17).unwrap();
        let p = WithTracker::new(&m, &t);

        let mut bs = RawBlockSet::new(ENTRY).unwrap();
        bs.grow(&p, BS_ENTRIES).unwrap();
        let mut w = bs.writer(&p);
        for i in 0..BS_ENTRIES {
            w.push(&bs_entry(i)).unwrap();
        }
        let mut b = bs.head().as_u64();
        for i in 0..bs.blocks() {
            syms.insert(format!("bs{i}"), b);
            b = read_u64(&m, b);
        }

        let va_blocks: Vec<PhysAddr> = (0..VA_BLOCKS).map(|_| m.alloc_pages(Order::ZERO).unwrap()).collect();
        let va = kho_vmalloc::preserve(&p, va_blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC).unwrap();
        syms.insert("vchunk0", va.first);
        syms.insert("vchunk1", read_u64(&m, va.first));
        let vb_blocks: Vec<PhysAddr> = (0..3).map(|_| m.alloc_pages(order(2)).unwrap()).collect();
        let vb = kho_vmalloc::preserve(&p, vb_blocks.iter().copied(), order(2), VmallocFlags::ALLOC).unwrap();
        syms.insert("wchunk0", vb.first);
        for (i, b) in vb_blocks.iter().enumerate() {
            syms.insert(format!("wblock{i}"), b.as_u64());
        }

        let mut a = KhoArray::new();
        let mut w = a.writer(&p);
        for (pos, e) in array_entries() {
            w.push(pos, e).unwrap();
        }
        a.preserve(&p).unwrap();
        let adesc = a.descriptor();
        let apage0 = PhysAddr::new(adesc.first);
        let apage1 = PhysAddr::new(read_u64(&m, adesc.first));
        assert_eq!(read_u64(&m, apage1.as_u64()), 0, "the array has two pages");
        syms.insert("apage0", apage0.as_u64());
        syms.insert("apage1", apage1.as_u64());

        let desc_bytes = |d: &KhoVmalloc| zerocopy::IntoBytes::as_bytes(d).to_vec();
        m.write(manifest, &bs.head().as_u64().to_ne_bytes()).unwrap();
        m.write(manifest.checked_add(MAN_VA).unwrap(), &desc_bytes(&va)).unwrap();
        m.write(manifest.checked_add(MAN_VB).unwrap(), &desc_bytes(&vb)).unwrap();
        m.write(manifest.checked_add(MAN_ARRAY).unwrap(), zerocopy::IntoBytes::as_bytes(&adesc)).unwrap();

        // A page in use but not preserved: kernel B poisons and reuses it.
        let scrap = m.alloc_pages(Order::ZERO).unwrap();
        syms.insert("scrap", scrap.as_u64());
        let root = t.tree_root();
        for (name, pa) in [("manifest", manifest), ("notes", notes), ("range", range), ("root", root)] {
            syms.insert(name, pa.as_u64());
        }
        syms.insert("ram_base", m.ram_base().as_u64());
        syms.insert("ram_end", m.ram_end().as_u64());
        syms.insert("scratch0", m.scratch()[0].addr);
        syms.insert("scratch0_end", m.scratch()[0].addr + m.scratch()[0].size);
        // The radix tree on the path to each folio: `node.L.NAME` is the
        // node at level L (0 = leaf), `slot.L.NAME` the slot of that node
        // the folio's key goes through.
        for (i, &(pa, o)) in folios.iter().enumerate() {
            let key = RadixKey::encode(pa, o).unwrap();
            let mut node = root.as_u64();
            for l in (0..=kho_abi::GEOMETRY.root_level()).rev() {
                syms.insert(format!("node.{l}.folio{i}"), node);
                if l == 0 {
                    break;
                }
                let slot = node + 8 * key.table_index(l) as u64;
                syms.insert(format!("slot.{l}.folio{i}"), slot);
                node = read_u64(&m, slot);
            }
        }
        let data = t.finish().unwrap();
        syms.insert("fdt", data.fdt_addr);
        syms.insert("scratch_array", data.scratch_addr);
        syms.add_fdt(&m, "fdt", data.fdt_addr).expect("the FDT kernel A wrote");
        let array_pages = vec![apage0, apage1];
        Base { m, data, syms, folios, range, va_blocks, vb_blocks, array_pages }
    }
}

/// One parsed fixture.
#[derive(Debug, Default)]
struct Case {
    name: String,
    data: Vec<(String, String)>,
    writes: Vec<Write>,
    inserts: Vec<(String, u32)>,
    pre: Vec<Vec<String>>,
    post: Vec<Vec<String>>,
    step: String,
    domain: String,
    kind: String,
    at: Vec<(String, String)>,
    errno: String,
}

fn parse_case(name: &str, text: &str) -> Case {
    let mut c = Case { name: name.to_string(), ..Case::default() };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let assign = |s: &str| {
            let (l, r) = s.split_once('=').unwrap_or_else(|| panic!("{name}: `{line}` needs `=`"));
            (l.trim().to_string(), r.trim().to_string())
        };
        match kw {
            "data" => c.data.push(assign(rest)),
            "write" => c.writes.push(Write::parse(rest).unwrap_or_else(|e| panic!("{name}: {e}"))),
            "insert" => {
                let (at, o) = rest.rsplit_once(' ').unwrap_or_else(|| panic!("{name}: `{line}`"));
                c.inserts.push((at.trim().to_string(), o.parse().unwrap()));
            }
            "pre" => c.pre.push(rest.split_whitespace().map(String::from).collect()),
            "post" => c.post.push(rest.split_whitespace().map(String::from).collect()),
            "step" => c.step = rest.to_string(),
            "domain" => c.domain = rest.to_string(),
            "kind" => c.kind = rest.to_string(),
            "at" => {
                for kv in rest.split_whitespace() {
                    c.at.push(assign(kv));
                }
            }
            "errno" => c.errno = rest.to_string(),
            _ => panic!("{name}: unknown keyword in `{line}`"),
        }
    }
    assert!(
        !c.step.is_empty() && !c.domain.is_empty() && !c.kind.is_empty() && !c.errno.is_empty(),
        "{name}: step, domain, kind and errno"
    );
    c
}

/// Evaluates an expression of a checked-in fixture (a bad one is a bug
/// in the fixture: the test stops, naming it).
fn eval(syms: &Symbols, e: &str) -> u64 {
    syms.eval(e).unwrap_or_else(|err| panic!("`{e}`: {err}"))
}

/// How an incoming step failed: the step, the crate, and the error's
/// record as the C ABI reports it (stable kind, location members, errno).
#[derive(Debug)]
struct Failure {
    step: String,
    domain: &'static str,
    rec: Box<kho_error>,
    errno: String,
}

fn failure<E: Describe>(step: &str, domain: &'static str, e: E) -> Failure {
    Failure { step: step.to_string(), domain, rec: Box::new(kho_error::of(&e)), errno: format!("{:?}", e.errno()) }
}

/// The location members `rec` sets, by name: numbers, and the field as
/// text (spaces written `_`, as fixtures write them).
fn location(rec: &kho_error) -> Vec<(&'static str, Result<u64, String>)> {
    let mut l = Vec::new();
    for (bit, name, v) in [
        (KHO_ERROR_HAS_PA, "pa", rec.pa),
        (KHO_ERROR_HAS_NODE, "node", rec.node),
        (KHO_ERROR_HAS_INDEX, "index", rec.index),
        (KHO_ERROR_HAS_LEVEL, "level", u64::from(rec.level)),
        (KHO_ERROR_HAS_ORDER, "order", u64::from(rec.order)),
        (KHO_ERROR_HAS_VALUE, "value", rec.value),
    ] {
        if rec.has & bit != 0 {
            l.push((name, Ok(v)));
        }
    }
    let field = rec.field_str();
    if !field.is_empty() {
        l.push(("field", Err(field.replace(' ', "_"))));
    }
    l
}

/// Whether `f` is what `case` expects; what differs otherwise.
fn check(case: &Case, f: &Failure, syms: &Symbols) -> Result<(), String> {
    let mut wrong = Vec::new();
    let kind = f.rec.kind_str();
    for (what, got, want) in [
        ("step", f.step.as_str(), case.step.as_str()),
        ("domain", f.domain, case.domain.as_str()),
        ("kind", kind, case.kind.as_str()),
        ("errno", f.errno.as_str(), case.errno.as_str()),
    ] {
        if got != want {
            wrong.push(format!("{what} {got} (expected {want})"));
        }
    }
    let loc = location(&f.rec);
    let expected: Vec<&str> = case.at.iter().map(|(k, _)| k.as_str()).collect();
    for (k, v) in &loc {
        match case.at.iter().find(|(ck, _)| ck == k) {
            None => wrong.push(format!("{k} set but not expected")),
            Some((_, want)) => match v {
                Ok(n) if *n != eval(syms, want) => wrong.push(format!("{k}={n:#x} (expected {want})")),
                Err(t) if t != want => wrong.push(format!("{k}={t} (expected {want})")),
                _ => {}
            },
        }
    }
    for k in expected {
        if !loc.iter().any(|(lk, _)| *lk == k) {
            wrong.push(format!("{k} expected but not set"));
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
}

/// Kernel B: everything it restored, to give back at the end.
#[derive(Default)]
struct Restored {
    blocks: Vec<(PhysAddr, Order)>,
    block_sets: Vec<RestoredRawBlockSet>,
}

type In<'a> = Incoming<&'a Machine>;

/// Runs one case; returns how the incoming side failed (None: it did not)
/// and the names its locations are written in.
fn run(case: &Case) -> Option<(Failure, Symbols)> {
    let base = Base::build();
    let mut data = base.data;
    let (m, syms) = (&base.m, &base.syms);
    for (field, e) in &case.data {
        let v = eval(syms, e);
        match field.as_str() {
            "fdt_addr" => data.fdt_addr = v,
            "fdt_size" => data.fdt_size = v,
            "scratch_addr" => data.scratch_addr = v,
            "scratch_size" => data.scratch_size = v,
            f => panic!("{}: unknown kho_data field {f}", case.name),
        }
    }
    // Inserts come first: the writes may name the nodes they created
    // (`insN.node.L`: the node at level L on the path to insert N's key).
    let mut syms = base.syms.clone();
    for (i, (at, o)) in case.inserts.iter().enumerate() {
        let key = RadixKey::encode(PhysAddr::new(eval(&syms, at)), order(*o)).unwrap();
        RadixTree::from_root(PhysAddr::new(syms["root"])).insert(m, key).unwrap();
        let mut node = syms["root"];
        for l in (0..=kho_abi::GEOMETRY.root_level()).rev() {
            syms.insert(format!("ins{i}.node.{l}"), node);
            if l > 0 {
                node = read_u64(m, node + 8 * key.table_index(l) as u64);
            }
        }
    }
    let syms = &syms;
    for w in &case.writes {
        w.apply(m, syms).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
    let syms = syms.clone();
    let Base { m, folios, range, va_blocks, vb_blocks, array_pages, .. } = base;
    let m = m.kexec(data);
    let inc = match Incoming::import(&m, &data) {
        Ok(inc) => inc,
        Err(e) => {
            assert_eq!(m.outstanding_pages(), 0, "{}: a failed import allocated", case.name);
            assert_eq!(m.reserved_pages(), 0);
            return Some((failure("import", "track", e), syms));
        }
    };
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    let mut done = Restored::default();
    let result = Ctx { m: &m, inc: &inc, syms: &syms, case }.restore_all(
        &mut done,
        &folios,
        range,
        &va_blocks,
        &vb_blocks,
        &array_pages,
    );
    // Give back what was restored and what nobody claimed; then nothing
    // may be left.
    for set in done.block_sets {
        set.free(&m).unwrap();
    }
    for (pa, o) in done.blocks.into_iter().chain(inc.unclaimed().unwrap()) {
        m.free_pages(pa, o);
    }
    inc.finish();
    assert_eq!(m.outstanding_pages(), 0, "{}: pages left allocated", case.name);
    assert_eq!(m.reserved_pages(), 0, "{}: pages left reserved (claimed and lost)", case.name);
    result.err().map(|f| (f, syms))
}

struct Ctx<'a> {
    m: &'a Machine,
    inc: &'a In<'a>,
    syms: &'a Symbols,
    case: &'a Case,
}

impl Ctx<'_> {
    /// Runs `f` as step `name`: on failure the claims must be as before.
    fn step<T>(&self, name: &str, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
        let before = self.inc.unclaimed().unwrap();
        let r = f();
        if let Err(e) = &r {
            assert_eq!(
                self.inc.unclaimed().unwrap(),
                before,
                "{}: step {name} failed ({e:?}) but kept claims",
                self.case.name
            );
        }
        r.map_err(|mut e| {
            e.step = name.to_string();
            e
        })
    }

    fn p(&self) -> WithTracker<'_, Machine, In<'_>> {
        WithTracker::new(self.m, self.inc)
    }

    fn manifest_u64(&self, off: u64) -> u64 {
        read_u64(self.m, self.syms["manifest"] + off)
    }

    fn desc<T: zerocopy::FromBytes + zerocopy::IntoBytes>(&self, off: u64) -> T {
        kho_abi::read_phys(self.m, PhysAddr::new(self.syms["manifest"] + off)).unwrap()
    }

    fn restore_block_set(&self, done: &mut Restored) -> Result<(), Failure> {
        let head = PhysAddr::new(self.manifest_u64(MAN_BS));
        self.step("blockset", || {
            let set = RestoredRawBlockSet::restore(&self.p(), head, ENTRY).map_err(|e| failure("", "block", e))?;
            assert_eq!(set.len(), BS_ENTRIES);
            let mut buf = vec![0u8; ENTRY * BS_ENTRIES];
            assert_eq!(set.iter(self.m).read_into(&mut buf).unwrap(), BS_ENTRIES);
            for (i, e) in buf.chunks(ENTRY).enumerate() {
                assert_eq!(e, bs_entry(i), "block set entry {i}");
            }
            done.block_sets.push(set);
            Ok(())
        })
    }

    fn restore_vmalloc(&self, off: u64, want: &[PhysAddr], done: &mut Restored) -> Result<(), Failure> {
        let d: KhoVmalloc = self.desc(off);
        self.step("vmalloc", || {
            let mut got = Vec::new();
            kho_vmalloc::restore(&self.p(), &d, |pa| got.push(pa)).map_err(|e| failure("", "vmalloc", e))?;
            assert_eq!(got, want);
            done.blocks.extend(got.iter().map(|&pa| (pa, order(u32::from(d.order)))));
            Ok(())
        })
    }

    fn restore_array(&self, pages: &[PhysAddr], done: &mut Restored) -> Result<(), Failure> {
        let d: ArrayDesc = self.desc(MAN_ARRAY);
        self.step("array", || {
            let a = KhoArray::restore(&self.p(), &d, 4).map_err(|e| failure("", "array", e))?;
            let got: Vec<(u64, Entry)> = a.iter(self.m).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, array_entries());
            done.blocks.extend(pages.iter().map(|&pa| (pa, Order::ZERO)));
            Ok(())
        })
    }

    fn restore_folio(&self, pa: PhysAddr, o: Order, done: &mut Restored) -> Result<(), Failure> {
        self.step("folio", || {
            self.inc.restore_folio(pa, o).map_err(|e| failure("", "track", e))?;
            done.blocks.push((pa, o));
            Ok(())
        })
    }

    /// An extra operation of the fixture (`pre` / `post`).
    fn extra(&self, op: &[String], state: &Extras<'_>, done: &mut Restored) -> Result<(), Failure> {
        let arg = |i: usize| eval(self.syms, op.get(i).unwrap_or_else(|| panic!("{}: {op:?}", self.case.name)));
        match op[0].as_str() {
            "restore-folio" => {
                let o = Order::new(arg(2), "fixture order").unwrap();
                self.restore_folio(PhysAddr::new(arg(1)), o, done)
            }
            "restore-pages" => {
                let (pa, n) = (PhysAddr::new(arg(1)), arg(2));
                self.step("pages", || self.inc.restore_pages(pa, n).map_err(|e| failure("", "track", e)))?;
                done.blocks.extend(split(pa, n));
                Ok(())
            }
            "check-blob" => {
                let name = op.get(1).unwrap_or_else(|| panic!("{}: check-blob NAME", self.case.name));
                self.step("blob", || self.inc.check_subtree_blob(name).map_err(|e| failure("", "track", e)))?;
                Ok(())
            }
            "restore-blockset" => self.restore_block_set(done),
            "restore-vmalloc" => self.restore_vmalloc(MAN_VA, state.va_blocks, done),
            "restore-array" => self.restore_array(state.array_pages, done),
            o => panic!("{}: unknown operation {o}", self.case.name),
        }
    }

    fn restore_all(
        &self,
        done: &mut Restored,
        folios: &[(PhysAddr, Order)],
        range: PhysAddr,
        va_blocks: &[PhysAddr],
        vb_blocks: &[PhysAddr],
        array_pages: &[PhysAddr],
    ) -> Result<(), Failure> {
        let state = Extras { va_blocks, array_pages };
        for op in &self.case.pre {
            self.extra(op, &state, done)?;
        }
        for name in ["manifest", "notes"] {
            let sub = self.step("subtree", || self.inc.subtree(name).map_err(|e| failure("", "track", e)))?;
            self.restore_folio(sub.pa, Order::ZERO, done)?;
        }
        self.restore_block_set(done)?;
        self.restore_vmalloc(MAN_VA, va_blocks, done)?;
        self.restore_vmalloc(MAN_VB, vb_blocks, done)?;
        self.restore_array(array_pages, done)?;
        for &(pa, o) in folios {
            self.restore_folio(pa, o, done)?;
        }
        self.step("pages", || self.inc.restore_pages(range, RANGE_PAGES).map_err(|e| failure("", "track", e)))?;
        done.blocks.extend(split(range, RANGE_PAGES));
        for op in &self.case.post {
            self.extra(op, &state, done)?;
        }
        Ok(())
    }
}

struct Extras<'a> {
    va_blocks: &'a [PhysAddr],
    array_pages: &'a [PhysAddr],
}

/// The blocks a range of `n` pages at `pa` is preserved as.
fn split(pa: PhysAddr, n: u64) -> Vec<(PhysAddr, Order)> {
    let mut out = Vec::new();
    let (mut pfn, mut left) = (pa.as_u64() / PAGE, n);
    while left > 0 {
        let o = pfn.trailing_zeros().min(63 - left.leading_zeros()).min(10);
        out.push((PhysAddr::new(pfn * PAGE), order(o)));
        pfn += 1 << o;
        left -= 1 << o;
    }
    out
}

fn fixtures() -> Vec<(String, String)> {
    kho_sim::poke::read_cases(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/adversarial")))
        .expect("the adversarial fixtures are checked in")
}

/// The base handover itself goes through every step.
#[test]
fn base_handover_restores_completely() {
    let case = Case { name: "base".into(), ..Case::default() };
    let got = run(&case);
    assert!(got.is_none(), "{got:?}");
}

#[test]
fn every_fixture_fails_with_its_error() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "only {} fixtures", fixtures.len());
    let mut wrong = Vec::new();
    for (name, text) in &fixtures {
        let case = parse_case(name, text);
        let Some((f, syms)) = run(&case) else {
            wrong.push(format!("{name}: no error"));
            continue;
        };
        if let Err(e) = check(&case, &f, &syms) {
            wrong.push(format!("{name}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} fixtures wrong:\n{}", wrong.len(), fixtures.len(), wrong.join("\n"));
}

/// Every name a fixture may use resolves, and the fixture parser refuses
/// what it does not know.
#[test]
fn fixture_names_resolve() {
    let base = Base::build();
    for (name, text) in fixtures() {
        let case = parse_case(&name, &text);
        // (`insN.` names exist only once the case's inserts are done.)
        for w in case.writes.iter().filter(|w| !w.at.starts_with("ins")) {
            w.resolve(&base.syms).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert!(std::panic::catch_unwind(|| parse_case("x", "bogus line")).is_err());
    assert_eq!(eval(&base.syms, "folio3+0x1000"), base.folios[3].0.as_u64() + 0x1000);
    assert_eq!(eval(&base.syms, "ram_end-8"), base.m.ram_end().as_u64() - 8);
}
