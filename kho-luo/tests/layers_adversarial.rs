//! The adversarial suite of the payload layers: corrupt LUO, memfd,
//! memblock, kexec-metadata and kho_test state, one mutation each, every
//! one of which must fail with its own stable error kind at its own place
//! and leave nothing behind.
//!
//! Kernel A builds one deterministic handover on kho-sim ([`Base`]) with
//! all four subtrees a Linux 7.2 kernel hands over:
//!
//! - `LUO`: sessions `vm0` (three files: two memfds, one of a handler kho
//!   does not know), `vm1` (one memfd of 300 pages, whose folio list spans
//!   two pages) and `idle` (no file), and one FLB;
//! - `memblock`: the `reserve_mem` regions `trace` and `oops`;
//! - `kexec-metadata`: release and kexec count;
//! - `kho_test`: the self-test's folios, list and checksum.
//!
//! Every address gets a name, so each fixture under
//! `tests/fixtures/layers/` states its mutation in names (`session1`,
//! `file0.2`, `desc2`, `fentry2.256`, `mb.prop.trace.start`, ...). The
//! runner applies it, kexecs, imports, restores every layer in the order a
//! kernel does (LUO, each memfd, memblock, kexec-metadata, kho_test) and
//! checks:
//!
//! - the step that fails, the error's stable `kind()` (never its `Debug`
//!   text), its location fields and its errno;
//! - the failed step left the claims as they were;
//! - after giving back everything restored and unclaimed, and finishing,
//!   the machine has no outstanding and no reserved page.
//!
//! # Fixture format
//!
//! One case per `*.case` file; `#` starts a comment line. Lines:
//!
//! - `write W AT = EXPR`: write kernel A's memory at `AT` with width `W`
//!   (`u8`, `u16`, `u32`, `u64` native-endian, `be32` big-endian, `str`
//!   for a quoted string, `fill` for `AT = BYTE*COUNT`);
//! - `step NAME`: the step expected to fail (`luo`, `memfd`, `memblock`,
//!   `kexec-meta`, `selftest`);
//! - `kind NAME`: the error's `kind()`;
//! - `at KEY=VALUE ...`: location fields of the error (see [`location`]);
//!   a value that is a number in the error is compared as a number, and
//!   the fixture may give it as a name expression;
//! - `errno NAME`: the Linux errno it maps to (`Inval`, `OpNotSupp`, ...).
//!
//! `EXPR` and `AT` are a number, a name, or a name plus or minus a number.

use std::collections::BTreeMap;
use std::path::Path;

use kho_abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, ToErrno, WithTracker};
use kho_luo::{LuoError, LuoWriter, RestoredLuo};
use kho_memfd::{FolioSpec, MemfdError, RestoredMemfd};
use kho_sim::poke::{Symbols, Write};
use kho_sim::{Machine, MachineConfig};
use kho_track::{Incoming, Tracker, TrackerOptions};

const PAGE: u64 = PAGE_SIZE as u64;
/// Bytes of a block-v1 header before the entries.
const BLOCK_HEADER: u64 = 16;
const SESSION_ENTRY: u64 = 80;
const FILE_ENTRY: u64 = 64;
/// Pages of the big memfd (`desc2`): 300 folio entries, two list pages.
const BIG_PAGES: u64 = 300;
const LIVEUPDATE_NUM: u64 = 7;
const RELEASE: &str = "7.2.13-kho";
const KEXEC_COUNT: u32 = 2;

fn order(n: u32) -> Order {
    Order::new(u64::from(n), "test order").unwrap()
}

fn read_u64(m: &Machine, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    m.read(PhysAddr::new(pa), &mut b).unwrap();
    u64::from_ne_bytes(b)
}

/// Byte `off` of memfd `k`.
fn pattern(k: usize, off: u64) -> u8 {
    (off.wrapping_mul(7) + k as u64 * 13 + (off >> 9) + 1) as u8
}

/// A memfd kernel A preserves: session, token, size, position, seals, and
/// its folios as (page index, order, flags).
struct Spec {
    session: usize,
    token: u64,
    size: u64,
    pos: u64,
    seals: u32,
    folios: Vec<(u64, u32, u16)>,
}

fn specs() -> Vec<Spec> {
    use kho_memfd::abi::{F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_WRITE, FOLIO_DIRTY as D, FOLIO_UPTODATE as U};
    vec![
        // A hole at page 2, a partial last page.
        Spec {
            session: 0,
            token: 10,
            size: 3 * PAGE + 100,
            pos: 4096,
            seals: F_SEAL_GROW,
            folios: vec![(0, 0, D | U), (1, 0, U), (3, 0, D | U)],
        },
        // One order-2 folio, sealed.
        Spec {
            session: 0,
            token: 11,
            size: 4 * PAGE,
            pos: 0,
            seals: F_SEAL_SEAL | F_SEAL_GROW | F_SEAL_WRITE,
            folios: vec![(0, 2, D | U)],
        },
        // 300 order-0 folios: the folio list spans two pages.
        Spec {
            session: 1,
            token: 0x7fff_ffff_ffff_ffff,
            size: BIG_PAGES * PAGE,
            pos: 17,
            seals: 0,
            folios: (0..BIG_PAGES).map(|i| (i, 0, D | U)).collect(),
        },
    ]
}

const SESSIONS: [&str; 3] = ["vm0", "vm1", "idle"];
const OTHER_TOKEN: u64 = 12;

/// Kernel A's handover, before kexec, with a name for every address.
struct Base {
    m: Machine,
    data: KhoData,
    syms: Symbols,
}

impl Base {
    fn build() -> Base {
        let m = Machine::new(MachineConfig::default()).unwrap();
        let mut t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).unwrap();
        let mut syms = Symbols::new();
        let p = WithTracker::new(&m, &t);
        // Subtrees are added once the writers are done with the tracker.
        let mut subtrees: Vec<(&str, PhysAddr, u64)> = Vec::new();

        // LUO with its memfds.
        let mut w = LuoWriter::new(&p, LIVEUPDATE_NUM).unwrap();
        let ids: Vec<_> = SESSIONS.iter().map(|s| w.create_session(&p, s.as_bytes()).unwrap()).collect();
        for (k, s) in specs().iter().enumerate() {
            let bytes: Vec<Vec<u8>> = s
                .folios
                .iter()
                .map(|&(index, o, _)| {
                    let start = index * PAGE;
                    let end = (start + order(o).pages() * PAGE).min(s.size);
                    (start..end).map(|off| pattern(k, off)).collect()
                })
                .collect();
            let folios: Vec<FolioSpec<'_>> = s
                .folios
                .iter()
                .zip(&bytes)
                .map(|(&(index, o, flags), data)| FolioSpec { index, order: order(o), data, flags })
                .collect();
            let saved = kho_memfd::preserve(&p, s.size, s.pos, s.seals, &folios).unwrap();
            w.preserve_file(&p, ids[s.session], kho_memfd::MEMFD_V2, saved.desc.as_u64(), s.token).unwrap();
            syms.insert(format!("desc{k}"), saved.desc.as_u64());
            syms.insert(format!("mchunk{k}"), saved.ser.folios_first);
            for (j, pa) in saved.list_pages.iter().enumerate() {
                syms.insert(format!("mlist{k}.{j}"), pa.as_u64());
            }
            for (j, &(pa, _)) in saved.folios.iter().enumerate() {
                syms.insert(format!("mfolio{k}.{j}"), pa.as_u64());
                let list = saved.list_pages[j * 16 / PAGE_SIZE];
                syms.insert(format!("fentry{k}.{j}"), list.as_u64() + (j as u64 * 16) % PAGE);
            }
            if k == 1 {
                w.preserve_file(&p, ids[0], "other-v1", 0x1234, OTHER_TOKEN).unwrap();
            }
        }
        w.add_flb("iommu", 0xabcd, 2).unwrap();
        w.serialize(&p).unwrap();
        subtrees.push((kho_luo::LUO_SUBTREE, w.blob(), LuoWriter::BLOB_SIZE));
        syms.insert("luo", w.blob().as_u64());
        syms.insert("flbs", w.flbs().as_u64());
        let sessions = read_u64(&m, w.blob().as_u64() + 16);
        syms.insert("sblock0", sessions);
        for s in 0..SESSIONS.len() as u64 {
            let entry = sessions + BLOCK_HEADER + s * SESSION_ENTRY;
            syms.insert(format!("session{s}"), entry);
            let files = read_u64(&m, entry + 64);
            if files != 0 {
                syms.insert(format!("fblock{s}"), files);
                for f in 0..read_u64(&m, entry + 72) {
                    syms.insert(format!("file{s}.{f}"), files + BLOCK_HEADER + f * FILE_ENTRY);
                }
            }
        }

        // memblock: two reserve_mem regions.
        let trace = p.alloc_pages(order(4)).unwrap();
        let oops = p.alloc_pages(order(1)).unwrap();
        let mb = kho_memblock::write(&p, &[("trace", trace, 16 * PAGE), ("oops", oops, 2 * PAGE)]).unwrap();
        subtrees.push((kho_memblock::SUBTREE, mb.pa, mb.size));
        syms.insert("mb", mb.pa.as_u64());
        syms.insert("trace", trace.as_u64());
        syms.insert("oops", oops.as_u64());

        // kexec-metadata.
        let km = kho_kexec_meta::write(&p, RELEASE, KEXEC_COUNT).unwrap();
        subtrees.push((kho_kexec_meta::SUBTREE, km, kho_kexec_meta::SIZE));
        syms.insert("km", km.as_u64());

        // kho_test.
        let kt = kho_selftest::write(&p, 64 * PAGE, 5).unwrap();
        subtrees.push((kho_selftest::SUBTREE, kt.pa, kt.size));
        syms.insert("kt", kt.pa.as_u64());
        syms.insert("ktchunk", kt.list.first);
        syms.insert("ktlist0", kt.list_pages[0].as_u64());
        syms.insert("kt.nr_folios", kt.folios.len() as u64);
        syms.insert("kt.csum", u64::from(kt.csum));
        syms.insert("ktentry0", read_u64(&m, kt.list_pages[0].as_u64()));
        for (i, &(pa, _)) in kt.folios.iter().enumerate() {
            syms.insert(format!("ktfolio{i}"), pa.as_u64());
        }

        // A page in use but not preserved: kernel B poisons and reuses it.
        let scrap = p.alloc_pages(Order::ZERO).unwrap();
        syms.insert("scrap", scrap.as_u64());
        syms.insert("ram_base", m.ram_base().as_u64());
        syms.insert("ram_end", m.ram_end().as_u64());
        syms.insert("scratch0", m.scratch()[0].addr);
        for (name, pa, size) in subtrees {
            t.add_subtree(name, pa, size).unwrap();
        }
        let data = t.finish().unwrap();
        syms.add_fdt(&m, "fdt", data.fdt_addr).expect("an FDT kernel A wrote");
        syms.add_fdt(&m, "mb", mb.pa.as_u64()).expect("an FDT kernel A wrote");
        syms.add_fdt(&m, "kt", kt.pa.as_u64()).expect("an FDT kernel A wrote");
        // `NAME.pfn`: the page frame number of every page-aligned name, as
        // a memfd folio entry stores it.
        let pfns: Vec<(String, u64)> = syms
            .iter()
            .filter(|&(_, v)| v % PAGE == 0 && v != 0)
            .map(|(k, v)| (format!("{k}.pfn"), v >> kho_abi::PAGE_SHIFT))
            .collect();
        for (k, v) in pfns {
            syms.insert(k, v);
        }
        Base { m, data, syms }
    }
}

/// One parsed fixture.
#[derive(Debug, Default)]
struct Case {
    name: String,
    writes: Vec<Write>,
    step: String,
    kind: String,
    at: Vec<(String, String)>,
    errno: String,
}

fn parse_case(name: &str, text: &str) -> Case {
    let mut c = Case { name: name.to_string(), ..Case::default() };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match kw {
            "write" => c.writes.push(Write::parse(rest).unwrap_or_else(|e| panic!("{name}: {e}"))),
            "step" => c.step = rest.to_string(),
            "kind" => c.kind = rest.to_string(),
            "at" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{name}: `{kv}` needs `=`"));
                    c.at.push((k.to_string(), v.to_string()));
                }
            }
            "errno" => c.errno = rest.to_string(),
            _ => panic!("{name}: unknown keyword in `{line}`"),
        }
    }
    assert!(!c.step.is_empty() && !c.kind.is_empty() && !c.errno.is_empty(), "{name}: step, kind and errno");
    assert!(!c.at.is_empty(), "{name}: at least one location field (`at`)");
    c
}

/// Evaluates an expression of a checked-in fixture (a bad one is a bug
/// in the fixture: the test stops, naming it).
fn eval(syms: &Symbols, e: &str) -> u64 {
    syms.eval(e).unwrap_or_else(|err| panic!("`{e}`: {err}"))
}

/// A location field of an error: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Num(u64),
    Text(String),
}

fn num(v: impl TryInto<u64>) -> Val {
    Val::Num(v.try_into().unwrap_or(u64::MAX))
}

fn text(v: impl ToString) -> Val {
    Val::Text(v.to_string())
}

/// The location fields of a block chain fault: `chain`, `block` (its
/// position), `pa`, `field`; other block errors give their `kind()`.
fn chain_loc(loc: &mut BTreeMap<&'static str, Val>, chain: &'static str, e: &kho_block::BlockError) {
    loc.insert("chain", text(chain));
    if let kho_block::BlockError::Chain(c) = e {
        loc.insert("block", num(c.index));
        loc.insert("pa", num(c.pa.as_u64()));
        loc.insert("field", text(c.field));
    } else {
        loc.insert("source", text(e.kind()));
    }
}

/// How an incoming step failed: step, `kind()`, location fields, errno.
#[derive(Debug)]
struct Failure {
    step: String,
    kind: String,
    loc: BTreeMap<&'static str, Val>,
    errno: String,
}

/// The location fields each layer error carries, by name:
///
/// - LUO: `pa`, `field` (blob, FLB region); `session` (position), `field`;
///   `session`, `chain`, `block`, `pa`, `field` (a chain); `session`,
///   `file` (position), `token`, `field`; `flb`, `field`;
/// - memfd: `token` (the LUO file's), then `desc`, `field`; `desc`, `list`
///   (the vmalloc layer's kind); `entry`, `pfn`, `index`, `field`;
/// - memblock: `pa`, `field`; `node` (compatible); `region`, `name`,
///   `field`;
/// - kexec-metadata: `pa`, `len`, `need`; `pa`, `source` (the platform's
///   kind); `pa`, `field`;
/// - kho_test: `pa`, `field`; `node`, `prop`; `nr_folios`, `pages`;
///   `list`; `entry`, `field`; `stored`, `computed`; `found`.
fn location(e: &Layer) -> BTreeMap<&'static str, Val> {
    let mut l = BTreeMap::new();
    match e {
        Layer::Luo(e) => match e {
            LuoError::Blob { pa, field, .. } | LuoError::Flbs { pa, field, .. } => {
                l.insert("pa", num(pa.as_u64()));
                l.insert("field", text(field));
            }
            LuoError::Compatible { found } => {
                l.insert("field", text("compatible"));
                l.insert("found", text(String::from_utf8_lossy(found).trim_end_matches('\0')));
            }
            LuoError::Sessions(b) => chain_loc(&mut l, "sessions", b),
            LuoError::Session { at, field, .. } => {
                l.insert("session", num(at.index));
                l.insert("field", text(field));
            }
            LuoError::Files { at, source } => {
                l.insert("session", num(at.index));
                chain_loc(&mut l, "files", source);
            }
            LuoError::File { at, index, token, field, .. } => {
                l.insert("session", num(at.index));
                l.insert("file", num(*index));
                l.insert("token", num(*token));
                l.insert("field", text(field));
            }
            LuoError::Flb { index, field, .. } => {
                l.insert("flb", num(*index));
                l.insert("field", text(field));
            }
            other => panic!("unexpected LUO error {other}"),
        },
        Layer::Memfd(token, e) => {
            l.insert("token", num(*token));
            match e {
                MemfdError::Descriptor { pa, field, .. } => {
                    l.insert("desc", num(pa.as_u64()));
                    l.insert("field", text(field));
                }
                MemfdError::List { pa, source } => {
                    l.insert("desc", num(pa.as_u64()));
                    l.insert("list", text(source.kind()));
                }
                MemfdError::Folio { entry, pfn, index, field, .. } => {
                    l.insert("entry", num(*entry));
                    l.insert("pfn", num(*pfn));
                    l.insert("index", num(*index));
                    l.insert("field", text(field));
                }
                other => panic!("unexpected memfd error {other}"),
            }
        }
        Layer::Memblock(e) => match e {
            kho_memblock::MemblockError::Blob { pa, field, .. } => {
                l.insert("pa", num(pa.as_u64()));
                l.insert("field", text(field));
            }
            kho_memblock::MemblockError::Fdt { pa, .. } => {
                l.insert("pa", num(pa.as_u64()));
            }
            kho_memblock::MemblockError::Compatible { node, .. } => {
                l.insert("node", text(node));
            }
            kho_memblock::MemblockError::Region { index, name, field, .. } => {
                l.insert("region", num(*index));
                l.insert("name", text(name));
                l.insert("field", text(field));
            }
            other => panic!("unexpected memblock error {other}"),
        },
        Layer::KexecMeta(e) => match e {
            kho_kexec_meta::KexecMetaError::TooShort { pa, len, need, .. } => {
                l.insert("pa", num(pa.as_u64()));
                l.insert("len", num(*len));
                l.insert("need", num(*need));
            }
            kho_kexec_meta::KexecMetaError::Blob { pa, source } => {
                l.insert("pa", num(pa.as_u64()));
                l.insert("source", text(source.kind()));
            }
            kho_kexec_meta::KexecMetaError::Unterminated { pa } => {
                l.insert("pa", num(pa.as_u64()));
                l.insert("field", text("previous_release"));
            }
            other => panic!("unexpected kexec-metadata error {other}"),
        },
        Layer::Selftest(e) => {
            use kho_selftest::SelftestError as S;
            match e {
                S::Blob { pa, field, .. } => {
                    l.insert("pa", num(pa.as_u64()));
                    l.insert("field", text(field));
                }
                S::Fdt { pa, .. } => {
                    l.insert("pa", num(pa.as_u64()));
                }
                S::Compatible { found } => {
                    l.insert("found", text(found.trim_end_matches('\0')));
                }
                S::Magic { found } => {
                    l.insert("found", num(*found));
                }
                S::Property { node, prop, .. } => {
                    l.insert("node", text(node));
                    l.insert("prop", text(prop));
                }
                S::ListSize { nr_folios, pages, .. } => {
                    l.insert("nr_folios", num(*nr_folios));
                    l.insert("pages", num(*pages));
                }
                S::List(v) => {
                    l.insert("list", text(v.kind()));
                }
                S::Folio { entry, field, .. } => {
                    l.insert("entry", num(*entry));
                    l.insert("field", text(field));
                }
                S::Checksum { stored, computed } => {
                    l.insert("stored", num(*stored));
                    l.insert("computed", num(*computed));
                }
                other => panic!("unexpected kho_test error {other}"),
            }
        }
        Layer::Track(e) => {
            l.insert("source", text(e.kind()));
        }
    }
    l
}

/// An error of one of the layers (or of the tracker, for a subtree
/// lookup).
enum Layer {
    Luo(LuoError),
    Memfd(u64, MemfdError),
    Memblock(kho_memblock::MemblockError),
    KexecMeta(kho_kexec_meta::KexecMetaError),
    Selftest(kho_selftest::SelftestError),
    Track(kho_track::TrackError),
}

impl Layer {
    fn kind(&self) -> &'static str {
        match self {
            Layer::Luo(e) => e.kind(),
            Layer::Memfd(_, e) => e.kind(),
            Layer::Memblock(e) => e.kind(),
            Layer::KexecMeta(e) => e.kind(),
            Layer::Selftest(e) => e.kind(),
            Layer::Track(e) => e.kind(),
        }
    }

    fn errno(&self) -> String {
        let e = match self {
            Layer::Luo(e) => e.errno(),
            Layer::Memfd(_, e) => e.errno(),
            Layer::Memblock(e) => e.errno(),
            Layer::KexecMeta(e) => e.errno(),
            Layer::Selftest(e) => e.errno(),
            Layer::Track(e) => e.errno(),
        };
        format!("{e:?}")
    }
}

fn failure(e: Layer) -> Failure {
    Failure { step: String::new(), kind: e.kind().to_string(), loc: location(&e), errno: e.errno() }
}

type In<'a> = Incoming<&'a Machine>;
type P<'a> = WithTracker<'a, Machine, In<'a>>;

/// What kernel B restored, to give back at the end.
#[derive(Default)]
struct Restored {
    luo: Option<RestoredLuo>,
    memfds: Vec<RestoredMemfd>,
    memblock: Option<kho_memblock::RestoredMemblock>,
    kexec_meta: Option<kho_kexec_meta::RestoredKexecMeta>,
    selftest: Option<kho_selftest::RestoredKhoTest>,
}

/// Runs one case; returns how the incoming side failed (None: it did not)
/// and, when it did not, checks everything decoded against what A wrote.
fn run(case: &Case) -> Option<Failure> {
    let Base { m, data, syms } = Base::build();
    for w in &case.writes {
        w.apply(&m, &syms).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap_or_else(|e| panic!("{}: import failed: {e}", case.name));
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    let mut done = Restored::default();
    let ctx = Ctx { m: &m, inc: &inc, case };
    let result = ctx.restore_all(&mut done);
    if result.is_ok() {
        ctx.check_decoded(&done, &syms);
    }
    // Give back what was restored (freed through the platform) and what
    // nobody claimed; then nothing may be left.
    let p = ctx.p();
    for mfd in done.memfds {
        mfd.free(&p);
    }
    if let Some(luo) = done.luo {
        luo.free(&p).unwrap();
    }
    if let Some(mb) = done.memblock {
        for r in mb.finish(&p).regions {
            for (pa, o) in r.blocks {
                p.free_pages(pa, o);
            }
        }
    }
    if let Some(km) = done.kexec_meta {
        km.free(&p);
    }
    if let Some(kt) = done.selftest {
        kt.free(&p);
    }
    for (pa, o) in inc.unclaimed().unwrap() {
        m.free_pages(pa, o);
    }
    inc.finish();
    assert_eq!(m.outstanding_pages(), 0, "{}: pages left allocated", case.name);
    assert_eq!(m.reserved_pages(), 0, "{}: pages left reserved (claimed and lost)", case.name);
    result.err()
}

struct Ctx<'a> {
    m: &'a Machine,
    inc: &'a In<'a>,
    case: &'a Case,
}

impl Ctx<'_> {
    fn p(&self) -> P<'_> {
        WithTracker::new(self.m, self.inc)
    }

    /// Runs `f` as step `name`: on failure the claims must be as before.
    fn step<T>(&self, name: &str, f: impl FnOnce() -> Result<T, Layer>) -> Result<T, Failure> {
        let before = self.inc.unclaimed().unwrap();
        let r = f();
        if let Err(e) = &r {
            assert_eq!(
                self.inc.unclaimed().unwrap(),
                before,
                "{}: step {name} failed ({}) but kept claims",
                self.case.name,
                e.kind()
            );
        }
        r.map_err(|e| Failure { step: name.to_string(), ..failure(e) })
    }

    fn subtree(&self, step: &str, name: &str) -> Result<(PhysAddr, u64), Failure> {
        self.step(step, || {
            let s = self.inc.subtree(name).map_err(Layer::Track)?;
            Ok((s.pa, s.size.unwrap_or(0)))
        })
    }

    fn restore_all(&self, done: &mut Restored) -> Result<(), Failure> {
        let p = self.p();
        let (pa, size) = self.subtree("luo", kho_luo::LUO_SUBTREE)?;
        let luo = self.step("luo", || kho_luo::restore(&p, pa, size).map_err(Layer::Luo))?;
        let files: Vec<(u64, u64)> = luo
            .luo()
            .sessions
            .iter()
            .flat_map(|s| s.files.iter())
            .filter(|f| f.compatible == kho_memfd::MEMFD_V2)
            .map(|f| (f.token, f.data))
            .collect();
        done.luo = Some(luo);
        for (token, desc) in files {
            let mfd =
                self.step("memfd", || kho_memfd::restore(&p, PhysAddr::new(desc)).map_err(|e| Layer::Memfd(token, e)))?;
            done.memfds.push(mfd);
        }
        let (pa, size) = self.subtree("memblock", kho_memblock::SUBTREE)?;
        done.memblock = Some(self.step("memblock", || kho_memblock::restore(&p, pa, size).map_err(Layer::Memblock))?);
        let (pa, size) = self.subtree("kexec-meta", kho_kexec_meta::SUBTREE)?;
        done.kexec_meta =
            Some(self.step("kexec-meta", || kho_kexec_meta::restore(&p, pa, size).map_err(Layer::KexecMeta))?);
        let (pa, size) = self.subtree("selftest", kho_selftest::SUBTREE)?;
        done.selftest = Some(self.step("selftest", || kho_selftest::restore(&p, pa, size).map_err(Layer::Selftest))?);
        Ok(())
    }

    /// Everything B decoded equals what A wrote.
    fn check_decoded(&self, done: &Restored, syms: &Symbols) {
        let luo = done.luo.as_ref().unwrap().luo();
        assert_eq!(luo.liveupdate_num, LIVEUPDATE_NUM);
        let names: Vec<&str> = luo.sessions.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, SESSIONS);
        assert_eq!(luo.sessions[0].files.len(), 3);
        assert_eq!(luo.sessions[0].files[2].token, OTHER_TOKEN);
        assert_eq!(luo.sessions[0].files[2].compatible, "other-v1");
        assert_eq!(luo.flbs.as_ref().unwrap().entries[0].name, "iommu");
        let specs = specs();
        assert_eq!(done.memfds.len(), specs.len());
        for (k, (mfd, s)) in done.memfds.iter().zip(&specs).enumerate() {
            let mfd = mfd.memfd();
            assert_eq!(mfd.desc.as_u64(), syms[&format!("desc{k}")]);
            assert_eq!((mfd.size, mfd.pos, mfd.seals, mfd.folios.len()), (s.size, s.pos, s.seals, s.folios.len()));
            let mut bytes = vec![0u8; s.size as usize];
            assert_eq!(mfd.read_at(self.m, 0, &mut bytes).unwrap(), bytes.len());
            for (off, &b) in bytes.iter().enumerate() {
                let off = off as u64;
                let held = s.folios.iter().any(|&(i, o, _)| off / PAGE >= i && off / PAGE < i + order(o).pages());
                assert_eq!(b, if held { pattern(k, off) } else { 0 }, "memfd {k} byte {off}");
            }
        }
        let mb = done.memblock.as_ref().unwrap().memblock();
        let regions: Vec<(&str, u64, u64)> =
            mb.regions.iter().map(|r| (r.name.as_str(), r.start.as_u64(), r.size)).collect();
        assert_eq!(regions, [("trace", syms["trace"], 16 * PAGE), ("oops", syms["oops"], 2 * PAGE)]);
        assert_eq!(
            done.kexec_meta.as_ref().unwrap().meta(),
            &kho_kexec_meta::KexecMetadata::V1 { previous_release: RELEASE.into(), kexec_count: KEXEC_COUNT }
        );
        let kt = done.selftest.as_ref().unwrap().test();
        assert!(kt.checksum_holds());
        assert_eq!(kt.folios.len() as u64, syms["kt.nr_folios"]);
    }
}

fn fixtures() -> Vec<(String, String)> {
    kho_sim::poke::read_cases(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/layers")))
        .expect("the layer fixtures are checked in")
}

/// Whether the failure matches the case; the differences otherwise.
fn matches(case: &Case, f: &Failure, syms: &Symbols) -> Result<(), String> {
    let mut wrong = Vec::new();
    if f.step != case.step {
        wrong.push(format!("step {} (expected {})", f.step, case.step));
    }
    if f.kind != case.kind {
        wrong.push(format!("kind {} (expected {})", f.kind, case.kind));
    }
    if f.errno != case.errno {
        wrong.push(format!("errno {} (expected {})", f.errno, case.errno));
    }
    for (k, v) in &case.at {
        match f.loc.get(k.as_str()) {
            None => wrong.push(format!("no location field {k}")),
            Some(Val::Num(n)) if *n != eval(syms, v) => wrong.push(format!("{k}={n:#x} (expected {v})")),
            // Spaces are written `_` in fixtures (`field=blob_address`).
            Some(Val::Text(t)) if t.replace(' ', "_") != *v => wrong.push(format!("{k}={t} (expected {v})")),
            Some(_) => {}
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(format!("{} [loc {:?}]", wrong.join(", "), f.loc)) }
}

/// The base handover restores through every layer, and decodes to what
/// kernel A wrote.
#[test]
fn base_handover_restores_every_layer() {
    let case = Case { name: "base".into(), ..Case::default() };
    let got = run(&case);
    assert!(got.is_none(), "{got:?}");
}

#[test]
fn every_layer_fixture_fails_with_its_error() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "only {} fixtures", fixtures.len());
    let syms = Base::build().syms;
    let mut wrong = Vec::new();
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    for (name, text) in &fixtures {
        let case = parse_case(name, text);
        let Some(f) = run(&case) else {
            wrong.push(format!("{name}: no error"));
            continue;
        };
        *steps.entry(f.step.clone()).or_default() += 1;
        if let Err(e) = matches(&case, &f, &syms) {
            wrong.push(format!("{name}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} fixtures wrong:\n{}", wrong.len(), fixtures.len(), wrong.join("\n"));
    // Every layer is attacked.
    for step in ["luo", "memfd", "memblock", "kexec-meta", "selftest"] {
        assert!(steps.get(step).is_some_and(|&n| n >= 3), "step {step}: {steps:?}");
    }
}

/// What the layers accept although it looks odd, as the kernel does: a
/// file position past the end of the file (`lseek` allows it), a
/// kexec-metadata version this reader does not know (ignored), a session
/// that lost its files (count 0, no chain), and a memfd whose `nr_folios`
/// drops one folio while its list keeps the same page count (the folio
/// past it is not the file's: it stays preserved, unclaimed).
#[test]
fn legal_oddities_decode() {
    let Base { m, data, syms } = Base::build();
    let size = 3 * PAGE + 100;
    m.write(PhysAddr::new(syms["desc0"]), &(size + 5000).to_ne_bytes()).unwrap();
    m.write(PhysAddr::new(syms["km"]), &2u32.to_ne_bytes()).unwrap();
    m.write(PhysAddr::new(syms["session1"] + 64), &[0u8; 16]).unwrap();
    m.write(PhysAddr::new(syms["desc2"] + 24), &(BIG_PAGES - 1).to_ne_bytes()).unwrap();
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap();
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    let p = WithTracker::new(&m, &inc);
    let before = inc.unclaimed().unwrap();
    let mfd = kho_memfd::inspect(&p, PhysAddr::new(syms["desc0"])).unwrap();
    assert_eq!((mfd.pos, mfd.size), (size + 5000, size));
    let km = kho_kexec_meta::inspect(&p, PhysAddr::new(syms["km"]), kho_kexec_meta::SIZE).unwrap();
    assert_eq!(km, kho_kexec_meta::KexecMetadata::Unknown { version: 2 });
    let luo = kho_luo::inspect(&p, PhysAddr::new(syms["luo"]), LuoWriter::BLOB_SIZE).unwrap();
    assert_eq!((luo.sessions[1].name.as_str(), luo.sessions[1].files.len()), ("vm1", 0));
    let big = kho_memfd::restore(&p, PhysAddr::new(syms["desc2"])).unwrap();
    assert_eq!(big.memfd().folios.len() as u64, BIG_PAGES - 1);
    let last = PhysAddr::new(syms[&format!("mfolio2.{}", BIG_PAGES - 1)]);
    assert!(inc.unclaimed().unwrap().contains(&(last, Order::ZERO)), "the dropped folio stays unclaimed");
    big.unclaim(&p);
    // (The restore freed the list's chunk page, as the kernel does.)
    let chunk = (PhysAddr::new(syms["mchunk2"]), Order::ZERO);
    let after: Vec<_> = inc.unclaimed().unwrap();
    let mut want = before.clone();
    want.retain(|b| *b != chunk);
    assert_eq!(after, want, "inspection keeps no claim");
}

/// Every name a fixture uses resolves, and the parser refuses what it does
/// not know.
#[test]
fn layer_fixture_names_resolve() {
    let base = Base::build();
    for (name, text) in fixtures() {
        let case = parse_case(&name, text.as_str());
        for w in &case.writes {
            w.resolve(&base.syms).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert!(std::panic::catch_unwind(|| parse_case("x", "bogus line")).is_err());
    assert!(std::panic::catch_unwind(|| parse_case("x", "step luo\nkind k\nerrno Inval")).is_err());
    assert_eq!(eval(&base.syms, "session1+72"), base.syms["sblock0"] + 16 + 80 + 72);
}
