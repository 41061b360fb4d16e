//! Building a complete handover for a next Linux kernel, and the plan that
//! carries it there with `kexec_load`.
//!
//! The next kernel's memory is staged on a [`kho_sim::Machine`] whose RAM
//! is the *arena*: the physical range where the handover's pages will sit
//! (its preserved data, the radix tree, the root FDT and the scratch
//! array). The crates that write each layer (kho-track, kho-luo,
//! kho-memfd, kho-memblock, kho-kexec-meta, kho-selftest) allocate from it
//! exactly as they would in a kernel. Around the arena the plan places:
//!
//! ```text
//!  1 MiB   scratch (4 MiB aligned, below 4 GiB)                     arena (4 MiB aligned)
//!  |       |-kernel window-|-initrd-|-boot-|---- free for B's early boot ----|  |--handover pages--|-reserve_mem-|
//!          ^ load address           ^ zero page, command line, setup_data, entry stub
//! ```
//!
//! - the scratch area holds the kernel's decompression window, the initrd
//!   and four boot pages (zero page, command line, the `SETUP_KEXEC_KHO`
//!   entry, the entry stub and its stack), as a KHO kernel's own
//!   `kexec_file_load` places them, plus the room the next kernel needs to
//!   allocate from before it has read the handover;
//! - the arena follows the scratch area, so nothing preserved can lie in
//!   scratch, below 1 MiB or in a boot window.
//!
//! [`build`] writes it all and checks the plan ([`kho_handoff::plan`]);
//! [`validate`] saves the arena as an image and reads it back with the
//! same code as `kho inspect`, so a handover kho's own incoming side would
//! refuse is never loaded.

use std::collections::BTreeMap;
use std::path::Path;

use kho_abi::{KhoData, KhoScratch, PAGE_SIZE, PhysAddr, WithTracker};
use kho_handoff::plan::{self, BOOT_PAGES, Layout, LayoutRequest, Plan, PlanError, SegmentRange, Window};
use kho_handoff::setup_data;
use kho_handoff::x86::boot_params::{BOOT_PARAMS_SIZE, BootParams, E820Entry, E820Type};
use kho_handoff::x86::bzimage::{BzImage, ENTRY_64_OFFSET};
use kho_handoff::x86::trampoline;
use kho_sim::{Machine, MachineConfig};
use kho_track::{Tracker, TrackerOptions};

use crate::image::OpenOptions;
use crate::load::{Request as LoadRequest, load_handover};
use crate::progress::Progress;

const PAGE: u64 = PAGE_SIZE as u64;
const MIB: u64 = 1 << 20;
/// The longest LUO session name (the kernel's 64-byte array keeps a NUL).
pub const SESSION_NAME_MAX: usize = 63;

/// One memfd to hand over: the next kernel's user space retrieves it from
/// LUO session `session` by `token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemfdSpec {
    /// The LUO session's name.
    pub session: String,
    /// The file's token, unique in its session.
    pub token: u64,
    /// The file's contents.
    pub bytes: Vec<u8>,
    /// The file position the next kernel restores.
    pub pos: u64,
}

/// One `reserve_mem` region to hand over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveSpec {
    /// Its name (the next kernel's `reserve_mem=SIZE:ALIGN:NAME`).
    pub name: String,
    /// Bytes, a multiple of the page size.
    pub size: u64,
    /// Alignment of its start, a power of two of at least a page.
    pub align: u64,
    /// Its contents (at most `size` bytes; the rest is zero).
    pub bytes: Vec<u8>,
}

/// Everything a handover for a next kernel is built from.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The next kernel's bzImage.
    pub kernel: Vec<u8>,
    /// Its initrd, if any.
    pub initrd: Option<Vec<u8>>,
    /// Its command line.
    pub cmdline: String,
    /// The memory map the next kernel gets (the running system's).
    pub e820: Vec<E820Entry>,
    /// The ACPI RSDP's PA, if known.
    pub rsdp: Option<u64>,
    /// Total bytes of the scratch area; `None`: what the plan needs with
    /// `min_scratch_free` free.
    pub scratch_size: Option<u64>,
    /// Where the scratch area starts; `None`: the lowest fitting address.
    pub scratch_addr: Option<u64>,
    /// Bytes of scratch that must stay free for the next kernel's early
    /// allocations (the default is [`plan::DEFAULT_SCRATCH_RESERVE`]).
    pub min_scratch_free: u64,
    /// Bytes of self-test data (`kho_test`), 0 for none.
    pub test_data: u64,
    /// Seed of the self-test data.
    pub test_seed: u64,
    /// The memfds, in session order of first appearance.
    pub memfds: Vec<MemfdSpec>,
    /// The LUO live-update number to hand over (1 for a first update).
    pub liveupdate_num: u64,
    /// The `reserve_mem` regions.
    pub reserve: Vec<ReserveSpec>,
    /// `kexec-metadata`: the release to report and the kexec count.
    pub release: Option<(String, u32)>,
}

/// One segment of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// What it carries.
    pub what: String,
    /// Destination PA.
    pub mem: u64,
    /// Destination bytes (page multiple; beyond `data` it is zero-filled).
    pub memsz: u64,
    /// The bytes to copy.
    pub data: Vec<u8>,
}

/// A memfd as placed in the handover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedMemfd {
    /// Session name.
    pub session: String,
    /// Token.
    pub token: u64,
    /// Size in bytes.
    pub size: u64,
    /// File position.
    pub pos: u64,
    /// PA of its memfd-v2 descriptor.
    pub desc: u64,
    /// Folios (all order 0).
    pub folios: usize,
}

/// A built handover and its plan.
#[derive(Debug)]
pub struct Produced {
    /// The segments, ascending by address.
    pub segments: Vec<Segment>,
    /// Where the CPU enters: the entry stub.
    pub entry: u64,
    /// The next kernel's 64-bit entry point.
    pub kernel_entry: u64,
    /// What `setup_data` hands over.
    pub kho_data: KhoData,
    /// The scratch areas.
    pub scratch: Vec<KhoScratch>,
    /// The boot windows inside scratch.
    pub windows: Vec<Window>,
    /// The arena `(start, end)`.
    pub arena: (u64, u64),
    /// Usable RAM of the next kernel.
    pub ram: Vec<(u64, u64)>,
    /// The `reserve_mem` regions `(name, start, size)`.
    pub regions: Vec<(String, u64, u64)>,
    /// The memfds.
    pub memfds: Vec<PlacedMemfd>,
    /// Self-test folios and checksum, if any.
    pub test: Option<(usize, u32)>,
    /// The staged arena (with the regions).
    pub machine: Machine,
    /// Bytes free in scratch for the next kernel's early allocations.
    pub scratch_free: u64,
}

/// Why a handover cannot be built or is unsafe to load.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The request itself is wrong (a bad name, a duplicate token, ...).
    #[error("{0}")]
    Request(String),
    /// The kernel image cannot be started this way.
    #[error("{0}")]
    Image(#[from] kho_handoff::HandoffError),
    /// The plan breaks a rule the next kernel depends on.
    #[error("unsafe plan: {0}")]
    Plan(#[from] PlanError),
    /// RAM has no room for the plan.
    #[error("no room: {0}")]
    NoRoom(String),
    /// A layer's writer failed.
    #[error("{layer}: {msg} ({kind})")]
    Layer {
        /// The layer.
        layer: &'static str,
        /// Its error's stable kind.
        kind: &'static str,
        /// Its message.
        msg: String,
    },
    /// kho's own incoming side refuses the handover.
    #[error("the handover does not validate: {0}")]
    Invalid(String),
    /// Reading or writing a file.
    #[error("{0}")]
    Io(String),
}

impl ProduceError {
    /// A stable name for the error's class (and the plan rule broken).
    pub fn kind(&self) -> &'static str {
        match self {
            ProduceError::Request(_) => "bad_request",
            ProduceError::Image(e) => e.kind(),
            ProduceError::Plan(e) => e.kind(),
            ProduceError::NoRoom(_) => "no_room",
            ProduceError::Layer { kind, .. } => kind,
            ProduceError::Invalid(_) => "invalid_handover",
            ProduceError::Io(_) => "io",
        }
    }
}

fn layer<E: std::fmt::Display>(layer: &'static str, kind: &'static str) -> impl FnOnce(E) -> ProduceError {
    move |e| ProduceError::Layer { layer, kind, msg: e.to_string() }
}

const fn up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Usable RAM of a memory map: its RAM entries, page-trimmed, sorted and
/// merged.
pub fn usable_ram(e820: &[E820Entry]) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = e820
        .iter()
        .filter(|e| e.kind == E820Type::Ram)
        .map(|e| (up(e.addr, PAGE), e.addr.saturating_add(e.size) / PAGE * PAGE))
        .filter(|(s, e)| s < e)
        .collect();
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn check_request(req: &Request) -> Result<(), ProduceError> {
    let bad = |m: String| Err(ProduceError::Request(m));
    let mut seen: BTreeMap<(&str, u64), ()> = BTreeMap::new();
    for m in &req.memfds {
        if m.session.is_empty() || m.session.len() > SESSION_NAME_MAX || m.session.contains('\0') {
            return bad(format!(
                "session name {:?}: 1 to {SESSION_NAME_MAX} bytes without NUL (LUO keeps a NUL in 64)",
                m.session
            ));
        }
        if seen.insert((m.session.as_str(), m.token), ()).is_some() {
            return bad(format!("token {} used twice in session {:?}", m.token, m.session));
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for r in &req.reserve {
        if names.contains(&r.name.as_str()) {
            return bad(format!("reserve_mem region {:?} named twice", r.name));
        }
        names.push(&r.name);
        if r.size == 0 || r.size % PAGE != 0 || !r.align.is_power_of_two() || r.align < PAGE {
            return bad(format!(
                "reserve_mem region {:?}: size must be a non-zero page multiple and align a power of two of at least a page",
                r.name
            ));
        }
        if r.bytes.len() as u64 > r.size {
            return bad(format!("reserve_mem region {:?}: contents larger than the region", r.name));
        }
    }
    if let Some((rel, _)) = &req.release
        && (rel.len() >= kho_kexec_meta::RELEASE_LEN || rel.contains('\0'))
    {
        return bad(format!("release {rel:?}: at most {} bytes", kho_kexec_meta::RELEASE_LEN - 1));
    }
    Ok(())
}

/// A generous estimate of the arena a request needs (data, lists, tree,
/// FDTs), before rounding.
fn arena_estimate(req: &Request) -> u64 {
    let files: u64 = req.memfds.iter().map(|m| up(m.bytes.len() as u64, PAGE) * 257 / 256 + 3 * PAGE).sum();
    // Mixed-order test folios may leave holes as large as the largest order.
    let test = if req.test_data > 0 { 2 * up(req.test_data, PAGE) + 8 * MIB } else { 0 };
    files + test + 8 * MIB
}

/// Builds the handover and its plan for `req`.
pub fn build(req: &Request) -> Result<Produced, ProduceError> {
    check_request(req)?;
    let bz = BzImage::parse(&req.kernel)?;
    let ram = usable_ram(&req.e820);
    let ram_total: u64 = ram.iter().map(|(s, e)| e - s).sum();
    if ram.is_empty() {
        return Err(ProduceError::NoRoom("the memory map has no RAM".into()));
    }
    let cmdline = req.cmdline.as_bytes();
    if cmdline.len() > bz.cmdline_size as usize || cmdline.len() >= PAGE as usize || cmdline.contains(&0) {
        return Err(ProduceError::Request(format!(
            "command line of {} bytes: the kernel reads at most {}",
            cmdline.len(),
            bz.cmdline_size
        )));
    }
    let initrd = req.initrd.as_deref().unwrap_or(&[]);

    // Scratch holds the kernel window, initrd and boot pages, then free
    // room; its rules are checked before anything is built.
    let layout = Layout::new(&LayoutRequest {
        ram: &ram,
        kernel: &bz,
        initrd_len: initrd.len() as u64,
        scratch_size: req.scratch_size,
        scratch_addr: req.scratch_addr,
        min_scratch_free: req.min_scratch_free,
    })?;
    let scratch = vec![layout.scratch];
    let windows: Vec<Window> = layout.windows().into_iter().filter(|w| w.start < w.end).collect();

    // The arena: handover pages, then the reserve_mem regions.
    let regions_len: u64 = req.reserve.iter().map(|r| up(r.size, r.align.max(PAGE))).sum::<u64>()
        + req.reserve.iter().map(|r| r.align).max().unwrap_or(0);
    let mut arena_len = up(arena_estimate(req), plan::SCRATCH_ALIGN);
    for _attempt in 0..4 {
        let total = arena_len + up(regions_len, plan::SCRATCH_ALIGN);
        if total > ram_total / 2 {
            return Err(ProduceError::NoRoom(format!(
                "the handover needs {} MiB, more than half of RAM ({} MiB)",
                total / MIB,
                ram_total / MIB / 2
            )));
        }
        let arena = layout.place_arena(&ram, total)?;
        match stage(req, arena, arena_len, total, &scratch) {
            Ok(staged) => {
                return finish(req, &bz, staged, FinishCtx { ram, scratch, windows, layout });
            }
            Err(ProduceError::Layer { kind: "no_memory", .. }) => arena_len *= 2,
            Err(e) => return Err(e),
        }
    }
    Err(ProduceError::NoRoom("the arena kept running out of memory".into()))
}

struct Staged {
    machine: Machine,
    kho_data: KhoData,
    regions: Vec<(String, u64, u64)>,
    memfds: Vec<PlacedMemfd>,
    test: Option<(usize, u32)>,
    arena: (u64, u64),
}

/// Writes every layer into a machine whose RAM is `[arena, arena + total)`;
/// the regions sit after the first `arena_len` bytes, where the machine
/// never allocates.
fn stage(
    req: &Request,
    arena: u64,
    arena_len: u64,
    total: u64,
    scratch: &[KhoScratch],
) -> Result<Staged, ProduceError> {
    let mut at = arena + arena_len;
    let mut regions = Vec::new();
    let mut keep_out = Vec::new();
    for r in &req.reserve {
        let start = up(at, r.align);
        regions.push((r.name.clone(), start, r.size));
        keep_out.push(KhoScratch { addr: start, size: r.size });
        at = start + r.size;
    }
    let mut cfg = MachineConfig::with_ram(PhysAddr::new(arena), total);
    // The machine never allocates from its "scratch": here, the regions.
    cfg.scratch = keep_out;
    let m = Machine::new(cfg).map_err(|e| ProduceError::NoRoom(format!("staging memory: {e}")))?;
    for (r, (_, start, _)) in req.reserve.iter().zip(&regions) {
        m.write(PhysAddr::new(*start), &r.bytes).map_err(layer("reserve_mem", "io"))?;
    }
    let mut t = Tracker::new(&m, scratch, TrackerOptions::default()).map_err(|e| ProduceError::Layer {
        layer: "tracker",
        kind: e.kind(),
        msg: e.to_string(),
    })?;
    let mut subtrees: Vec<(&str, PhysAddr, u64)> = Vec::new();
    let mut memfds = Vec::new();
    let mut test = None;
    {
        let p = WithTracker::new(&m, &t);
        if req.test_data > 0 {
            let b = kho_selftest::write(&p, req.test_data, req.test_seed).map_err(|e| ProduceError::Layer {
                layer: "kho_test",
                kind: e.kind(),
                msg: e.to_string(),
            })?;
            test = Some((b.folios.len(), b.csum));
            subtrees.push((kho_selftest::SUBTREE, b.pa, b.size));
        }
        if !req.memfds.is_empty() {
            let luo_err =
                |e: kho_luo::LuoError| ProduceError::Layer { layer: "LUO", kind: e.kind(), msg: e.to_string() };
            let mut w = kho_luo::LuoWriter::new(&p, req.liveupdate_num).map_err(luo_err)?;
            let mut sessions: Vec<(String, kho_luo::SessionId)> = Vec::new();
            for f in &req.memfds {
                let s = match sessions.iter().find(|(n, _)| *n == f.session) {
                    Some((_, s)) => *s,
                    None => {
                        let s = w.create_session(&p, f.session.as_bytes()).map_err(luo_err)?;
                        sessions.push((f.session.clone(), s));
                        s
                    }
                };
                let mf = kho_memfd::preserve_bytes(&p, &f.bytes, f.pos, 0).map_err(|e| ProduceError::Layer {
                    layer: "memfd",
                    kind: e.kind(),
                    msg: e.to_string(),
                })?;
                w.preserve_file(&p, s, kho_memfd::MEMFD_V2, mf.desc.as_u64(), f.token).map_err(luo_err)?;
                memfds.push(PlacedMemfd {
                    session: f.session.clone(),
                    token: f.token,
                    size: f.bytes.len() as u64,
                    pos: f.pos,
                    desc: mf.desc.as_u64(),
                    folios: mf.folios.len(),
                });
            }
            w.serialize(&p).map_err(luo_err)?;
            subtrees.push((kho_luo::LUO_SUBTREE, w.blob(), kho_luo::LuoWriter::BLOB_SIZE));
        }
        if !regions.is_empty() {
            let list: Vec<(&str, PhysAddr, u64)> =
                regions.iter().map(|(n, s, z)| (n.as_str(), PhysAddr::new(*s), *z)).collect();
            let b = kho_memblock::write(&p, &list).map_err(|e| ProduceError::Layer {
                layer: "memblock",
                kind: e.kind(),
                msg: e.to_string(),
            })?;
            subtrees.push((kho_memblock::SUBTREE, b.pa, b.size));
        }
        if let Some((rel, count)) = &req.release {
            let pa = kho_kexec_meta::write(&p, rel, *count).map_err(|e| ProduceError::Layer {
                layer: "kexec-metadata",
                kind: e.kind(),
                msg: e.to_string(),
            })?;
            subtrees.push((kho_kexec_meta::SUBTREE, pa, kho_kexec_meta::SIZE));
        }
    }
    for (name, pa, size) in subtrees {
        t.add_subtree(name, pa, size).map_err(|e| ProduceError::Layer {
            layer: "tracker",
            kind: e.kind(),
            msg: e.to_string(),
        })?;
    }
    let kho_data =
        t.finish().map_err(|e| ProduceError::Layer { layer: "tracker", kind: e.kind(), msg: e.to_string() })?;
    Ok(Staged { machine: m, kho_data, regions, memfds, test, arena: (arena, arena + total) })
}

struct FinishCtx {
    ram: Vec<(u64, u64)>,
    scratch: Vec<KhoScratch>,
    windows: Vec<Window>,
    layout: Layout,
}

fn finish(req: &Request, bz: &BzImage, s: Staged, c: FinishCtx) -> Result<Produced, ProduceError> {
    let l = &c.layout;
    let kernel_entry = l.load + ENTRY_64_OFFSET;
    let (bp_pa, cmd_pa, sd_pa, stub_pa) = (l.zero_page(), l.cmdline(), l.setup_data(), l.stub());
    let mut boot = vec![0u8; (BOOT_PAGES * PAGE) as usize];
    {
        let (zp, rest) = boot.split_at_mut(BOOT_PARAMS_SIZE);
        let zp: &mut [u8; BOOT_PARAMS_SIZE] = zp.try_into().map_err(|_| ProduceError::Io("zero page".into()))?;
        let mut bp = BootParams::new(zp, bz, &req.kernel, l.load)?;
        bp.set_cmdline(cmd_pa).set_setup_data(sd_pa).set_rsdp(req.rsdp.unwrap_or(0));
        if let Some(i) = &req.initrd {
            bp.set_initrd(l.initrd.start, i.len() as u64);
        }
        let map: Vec<E820Entry> = req.e820.iter().copied().take(kho_handoff::x86::boot_params::E820_MAX).collect();
        bp.set_e820(&map)?;
        let cmd = req.cmdline.as_bytes();
        rest[..cmd.len()].copy_from_slice(cmd);
        let sd = &mut rest[PAGE as usize..];
        setup_data::write(&s.kho_data, 0, sd)?;
        let stub = trampoline::build(stub_pa, kernel_entry, bp_pa, stub_pa + PAGE)?;
        rest[2 * PAGE as usize..2 * PAGE as usize + stub.len()].copy_from_slice(&stub);
    }
    let mut segments = vec![Segment {
        what: "kernel".into(),
        mem: l.load,
        memsz: up(bz.init_size, PAGE),
        data: bz.kernel(&req.kernel).to_vec(),
    }];
    if let Some(i) = &req.initrd {
        segments.push(Segment {
            what: "initrd".into(),
            mem: l.initrd.start,
            memsz: up(i.len() as u64, PAGE),
            data: i.clone(),
        });
    }
    segments.push(Segment { what: "boot pages".into(), mem: l.boot.start, memsz: BOOT_PAGES * PAGE, data: boot });

    // The arena: every allocated block and every region, in few runs.
    let mut runs: Vec<(u64, u64)> = s
        .machine
        .allocated_blocks()
        .into_iter()
        .map(|(pa, o)| (pa.as_u64(), pa.as_u64() + o.pages() * PAGE))
        .chain(s.regions.iter().map(|(_, st, z)| (*st, st + z)))
        .collect();
    runs.sort_unstable();
    let budget = plan::MAX_SEGMENTS - segments.len();
    let n = plan::coalesce(&mut runs, budget);
    for &(st, en) in &runs[..n] {
        let mut data = vec![0u8; (en - st) as usize];
        s.machine
            .read(PhysAddr::new(st), &mut data)
            .map_err(|e| ProduceError::Io(format!("reading the arena: {e}")))?;
        // Trailing zeros need not be copied: kexec zero-fills memsz.
        let used = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        data.truncate(used);
        segments.push(Segment { what: "handover".into(), mem: st, memsz: en - st, data });
    }
    segments.sort_by_key(|g| g.mem);

    let ranges: Vec<SegmentRange> = segments.iter().map(|g| SegmentRange { mem: g.mem, memsz: g.memsz }).collect();
    let p = Plan { ram: &c.ram, scratch: &c.scratch, min_scratch: l.need, windows: &c.windows, segments: &ranges };
    p.check()?;
    // Everything preserved lies in the arena; the whole arena is checked.
    p.check_preserved(s.arena.0, s.arena.1 - s.arena.0)?;
    Ok(Produced {
        segments,
        entry: stub_pa,
        kernel_entry,
        kho_data: s.kho_data,
        scratch: c.scratch,
        windows: c.windows,
        arena: s.arena,
        ram: c.ram,
        regions: s.regions,
        memfds: s.memfds,
        test: s.test,
        machine: s.machine,
        scratch_free: l.scratch_free,
    })
}

/// Saves the arena as an image (ELF core file with the handover's
/// `kho_data` note) at `path` and reads it back with `kho inspect`'s code:
/// the import must succeed, every payload decode, and every preserved
/// range pass the plan's rules. Returns the inspection's text report.
pub fn validate(p: &Produced, path: &Path) -> Result<String, ProduceError> {
    p.machine
        .save_image_with(path, Some(&p.kho_data))
        .map_err(|e| ProduceError::Io(format!("writing {}: {e}", path.display())))?;
    let req = LoadRequest {
        path: path.to_path_buf(),
        // The next kernel's largest order (x86-64's MAX_PAGE_ORDER).
        open: OpenOptions { max_order: p.machine.config().max_order, ram: Vec::new() },
        find: Default::default(),
        want_runs: false,
    };
    let (_image, a) =
        load_handover(&req, &Progress::new(false)).map_err(|f| ProduceError::Invalid(f.failure.message()))?;
    if a.report.exit_code() != 0 {
        return Err(ProduceError::Invalid(crate::report::text(&a.report)));
    }
    let rules = Plan { ram: &p.ram, scratch: &p.scratch, min_scratch: 0, windows: &p.windows, segments: &[] };
    for &(s, e) in &a.ranges {
        rules.check_preserved(s, e - s)?;
    }
    Ok(crate::report::text(&a.report))
}

/// The plan as text, one line per fact.
pub fn plan_text(p: &Produced) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "entry stub {:#x} -> kernel 64-bit entry {:#x}", p.entry, p.kernel_entry);
    for s in &p.scratch {
        let _ = writeln!(
            o,
            "scratch {:#x}..{:#x} ({} MiB, {} MiB free for early boot)",
            s.addr,
            s.addr + s.size,
            s.size / MIB,
            p.scratch_free / MIB
        );
    }
    for w in &p.windows {
        let _ = writeln!(o, "window {:#x}..{:#x} {}", w.start, w.end, w.what);
    }
    let _ = writeln!(o, "arena {:#x}..{:#x}", p.arena.0, p.arena.1);
    let KhoData { fdt_addr, fdt_size, scratch_addr, scratch_size } = p.kho_data;
    let _ = writeln!(o, "kho_data fdt {fdt_addr:#x}+{fdt_size:#x} scratch array {scratch_addr:#x}+{scratch_size:#x}");
    for (i, g) in p.segments.iter().enumerate() {
        let _ = writeln!(
            o,
            "segment {i}: {:#x}..{:#x} ({} KiB, {} KiB copied) {}",
            g.mem,
            g.mem + g.memsz,
            g.memsz / 1024,
            g.data.len() / 1024,
            g.what
        );
    }
    for (n, s, z) in &p.regions {
        let _ = writeln!(o, "reserve_mem {n} {s:#x}+{z:#x}");
    }
    for m in &p.memfds {
        let _ = writeln!(
            o,
            "memfd {}/{}: {} bytes, pos {}, {} folios, descriptor {:#x}",
            m.session, m.token, m.size, m.pos, m.folios, m.desc
        );
    }
    if let Some((n, csum)) = p.test {
        let _ = writeln!(o, "kho_test: {n} folios, csum {csum:#010x}");
    }
    o
}

/// The plan as JSON.
pub fn plan_json(p: &Produced) -> serde_json::Value {
    use serde_json::json;
    let KhoData { fdt_addr, fdt_size, scratch_addr, scratch_size } = p.kho_data;
    json!({
        "entry": p.entry,
        "kernel_entry": p.kernel_entry,
        "scratch": p.scratch.iter().map(|s| json!({"addr": s.addr, "size": s.size})).collect::<Vec<_>>(),
        "scratch_free": p.scratch_free,
        "windows": p.windows.iter().map(|w| json!({"what": w.what, "start": w.start, "end": w.end})).collect::<Vec<_>>(),
        "arena": [p.arena.0, p.arena.1],
        "kho_data": {"fdt_addr": fdt_addr, "fdt_size": fdt_size, "scratch_addr": scratch_addr, "scratch_size": scratch_size},
        "segments": p.segments.iter().map(|g| json!({"what": g.what, "mem": g.mem, "memsz": g.memsz, "bufsz": g.data.len()})).collect::<Vec<_>>(),
        "regions": p.regions.iter().map(|(n, s, z)| json!({"name": n, "start": s, "size": z})).collect::<Vec<_>>(),
        "memfds": p.memfds.iter().map(|m| json!({"session": m.session, "token": m.token, "size": m.size, "pos": m.pos, "desc": m.desc, "folios": m.folios})).collect::<Vec<_>>(),
        "kho_test": p.test.map(|(n, c)| json!({"folios": n, "csum": c})),
    })
}

/// Parses a memory map from `/proc/iomem` text: top-level entries only
/// (the firmware's map; nested lines are the kernel's own resources).
pub fn e820_from_iomem(text: &str) -> Vec<E820Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            continue;
        }
        let Some((range, name)) = line.split_once(" : ") else { continue };
        let Some((s, e)) = range.trim().split_once('-') else { continue };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else { continue };
        if let Some(kind) = e820_type(name.trim())
            && e >= s
        {
            out.push(E820Entry { addr: s, size: e - s + 1, kind });
        }
    }
    out
}

/// The memory map type of a firmware map name (`/sys/firmware/memmap/N/type`
/// or a top-level `/proc/iomem` name); `None` for non-memory resources.
pub fn e820_type(name: &str) -> Option<E820Type> {
    Some(match name {
        "System RAM" => E820Type::Ram,
        "Reserved" | "reserved" => E820Type::Reserved,
        "ACPI Tables" => E820Type::Acpi,
        "ACPI Non-volatile Storage" => E820Type::Nvs,
        "Unusable memory" => E820Type::Unusable,
        "Persistent Memory (legacy)" => E820Type::Pram,
        _ => return None,
    })
}
