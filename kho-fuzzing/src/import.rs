//! The incoming side under arbitrary input: the bodies of the
//! `track_import`, `v1_import`, `kho_data_import` and `blob_restore` fuzz
//! targets (and the machine `ffi_incoming` starts from), shared with the
//! corpus replay test (`kho-fuzzing/tests/import.rs`), so both run exactly
//! the same checks.
//!
//! The machine has 128 pages of RAM: the last 8 are a scratch area, page 0
//! holds the root FDT and page 1 the scratch array. Input: byte 0 selects
//! the mode, byte 1 the page the memory map points at, then records
//! `[page, offset lo, offset hi, len, len bytes]` that write RAM (clipped to
//! the page). In map mode (bit 0 of the mode) page 0 starts as a valid
//! `kho-v4` FDT pointing at the chosen page, with one subtree; otherwise it
//! starts empty and the records must build an FDT. Bit 1 shrinks `fdt_size`
//! to `1 + (mode >> 2) * 64`.

use std::ops::ControlFlow;

use kho_abi::{KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, RootVersion};
use kho_sim::{Machine, MachineConfig};
use kho_track::fdt::{Subtree, build};
use kho_track::{Incoming, TrackError};

use crate::{Leased, Machines};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_PAGES: u64 = 128;
const SCRATCH_PAGES: u64 = 8;
const FDT_PAGE: PhysAddr = page_pa(0);
const SCRATCH_ARRAY: PhysAddr = page_pa(1);

const fn page_pa(i: u64) -> PhysAddr {
    PhysAddr::new(RAM_BASE + i * PAGE_SIZE as u64)
}

/// Scratch pages of the `kho-v1` machine: a converted tree of two orders
/// needs eleven pages.
const V1_SCRATCH_PAGES: u64 = 16;

fn machine_with(scratch_pages: u64) -> Machine {
    Machine::new(config_with(scratch_pages)).expect("a 128-page machine")
}

/// The harness machine's configuration, with a scratch area of
/// `scratch_pages` at the top of RAM.
fn config_with(scratch_pages: u64) -> MachineConfig {
    MachineConfig {
        ram_base: PhysAddr::new(RAM_BASE),
        ram_size: RAM_PAGES * PAGE_SIZE as u64,
        scratch: vec![KhoScratch {
            addr: page_pa(RAM_PAGES - scratch_pages).as_u64(),
            size: scratch_pages * PAGE_SIZE as u64,
        }],
        ..MachineConfig::default()
    }
}

fn machine() -> Machine {
    machine_with(SCRATCH_PAGES)
}

/// Runs one input (`kho-v4` in map mode); panics only when kho breaks one
/// of its guarantees.
pub fn run(data: &[u8]) {
    run_in(&mut Machines::new(), data);
}

/// [`run`] on a machine from `ms` (what the fuzz target calls, with one
/// pool for every input); returns whether the import succeeded.
pub fn run_in(ms: &mut Machines, data: &[u8]) -> bool {
    prepare_in(ms, data).is_some_and(|(m, kho_data)| check(&m, &kho_data))
}

/// Runs one input with a `kho-v1` root in map mode.
pub fn run_v1(data: &[u8]) {
    run_v1_in(&mut Machines::new(), data);
}

/// [`run_v1`] on a machine from `ms`; returns whether the import
/// succeeded.
pub fn run_v1_in(ms: &mut Machines, data: &[u8]) -> bool {
    if data.len() < 2 {
        return false;
    }
    let m = ms.lease(config_with(V1_SCRATCH_PAGES));
    let kho_data = lay_out(&m, data, "kho-v1", V1_SCRATCH_PAGES);
    let m = m.kexec(kho_data);
    check(&m, &kho_data)
}

/// Whether the input is a handover the import accepts.
pub fn imports(data: &[u8]) -> bool {
    prepare(data).is_some_and(|(m, d)| Incoming::import(&m, &d).is_ok())
}

/// The root version of the handover the input describes, if it imports.
pub fn version_of(data: &[u8], v1: bool) -> Option<RootVersion> {
    let (m, d) = if v1 { prepare_as(data, "kho-v1", V1_SCRATCH_PAGES)? } else { prepare(data)? };
    Incoming::import(&m, &d).ok().map(|inc| inc.version())
}

/// Lays the input out in a fresh machine and kexecs it.
pub fn prepare(data: &[u8]) -> Option<(Machine, KhoData)> {
    prepare_as(data, "kho-v4", SCRATCH_PAGES)
}

/// As [`prepare`], with `compat` as the map-mode root's compatible and a
/// scratch area of `scratch_pages` at the top of RAM.
fn prepare_as(data: &[u8], compat: &str, scratch_pages: u64) -> Option<(Machine, KhoData)> {
    if data.len() < 2 {
        return None;
    }
    let m = machine_with(scratch_pages);
    let kho_data = lay_out(&m, data, compat, scratch_pages);
    Some((m.kexec(kho_data), kho_data))
}

/// As [`prepare`], on a machine from `ms`.
pub fn prepare_in<'a>(ms: &'a mut Machines, data: &[u8]) -> Option<(Leased<'a>, KhoData)> {
    if data.len() < 2 {
        return None;
    }
    let m = ms.lease(config_with(SCRATCH_PAGES));
    let kho_data = lay_out(&m, data, "kho-v4", SCRATCH_PAGES);
    Some((m.kexec(kho_data), kho_data))
}

/// Lays input `data` (at least 2 bytes) out in `m`, a new machine of
/// [`config_with`]`(scratch_pages)`; returns the `kho_data` to kexec with.
fn lay_out(m: &Machine, data: &[u8], compat: &str, scratch_pages: u64) -> KhoData {
    let (mode, root, rest) = (data[0], u64::from(data[1]) % RAM_PAGES, &data[2..]);
    if mode & 1 == 1 {
        let sub = Subtree { name: "fuzz".into(), pa: page_pa(2), size: Some(64) };
        let dtb = build(compat, page_pa(root), &[sub]).expect("a small FDT fits");
        m.write(FDT_PAGE, &dtb).expect("RAM");
    }
    let mut rest = rest;
    while let [page, lo, hi, len, tail @ ..] = rest {
        let page = u64::from(*page) % (RAM_PAGES - scratch_pages);
        let offset = usize::from(u16::from_le_bytes([*lo, *hi])) % PAGE_SIZE;
        let len = usize::from(*len).min(tail.len()).min(PAGE_SIZE - offset);
        m.write(PhysAddr::new(page_pa(page).as_u64() + offset as u64), &tail[..len]).expect("RAM");
        rest = &tail[len..];
    }
    let scratch = m.scratch()[0];
    kho_abi::write_phys(m, SCRATCH_ARRAY, &scratch).expect("RAM");
    let fdt_size = if mode & 2 == 0 { PAGE_SIZE as u64 } else { 1 + u64::from(mode >> 2) * 64 };
    KhoData { fdt_addr: FDT_PAGE.as_u64(), fdt_size, scratch_addr: SCRATCH_ARRAY.as_u64(), scratch_size: 16 }
}

/// Imports and checks every guarantee; returns whether the import
/// succeeded.
fn check(m: &Machine, kho_data: &KhoData) -> bool {
    let inc = match Incoming::import(m, kho_data) {
        Ok(inc) => inc,
        Err(e) => {
            // A typed error, and nothing allocated on the way.
            let _ = e.to_string();
            let _ = kho_abi::ToErrno::errno(&e);
            assert_eq!(m.outstanding_pages(), 0, "failed import leaked: {e}");
            return false;
        }
    };
    // The two walks agree.
    let mut blocks: Vec<(PhysAddr, Order)> = Vec::new();
    let _ = inc
        .for_each_block::<()>(&mut |pa, o| {
            blocks.push((pa, o));
            ControlFlow::Continue(())
        })
        .expect("a validated tree walks");
    let mut spans: Vec<(u64, u64)> =
        blocks.iter().map(|&(pa, o)| (pa.as_u64(), pa.as_u64() + o.pages() * PAGE_SIZE as u64)).collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut ranges = Vec::new();
    let _ = inc
        .for_each_range::<()>(&mut |pa, len| {
            ranges.push((pa.as_u64(), pa.as_u64() + len));
            ControlFlow::Continue(())
        })
        .expect("a validated tree walks as ranges");
    assert_eq!(ranges, merged);
    // The import counted the same blocks (plus the FDT page if preserved).
    let counted = inc.stats().blocks as usize;
    assert!(counted == blocks.len() || counted == blocks.len() + 1, "{counted} vs {}", blocks.len());
    // Subtree lookups answer without panicking.
    for s in inc.subtrees() {
        let _ = s.map(|s| s.pa);
    }
    let _ = inc.subtree("fuzz");
    // Reserve what the kernel must keep, then restore every block once.
    let reserved = inc.reserved_blocks().expect("listing reserved blocks");
    m.boot_done(&mut reserved.iter().copied()).expect("validated blocks are RAM and aligned");
    for &(pa, o) in &blocks {
        inc.restore_folio(pa, o).expect("each block restores once");
        assert!(matches!(inc.restore_folio(pa, o), Err(TrackError::Abi(kho_abi::AbiError::NotPreserved { .. }))));
    }
    assert!(inc.unclaimed().expect("walk").is_empty());
    inc.finish();
    for &(pa, o) in &blocks {
        kho_abi::PageAlloc::free_pages(m, pa, o);
    }
    assert_eq!(m.reserved_pages(), 0);
    assert_eq!(m.outstanding_pages(), 0);
    true
}

/// One record per run of non-zero bytes (at most 255) of pages
/// `from..to` of `m`, after the two header bytes.
fn encode_pages(m: &Machine, header: [u8; 2], from: u64, to: u64) -> Vec<u8> {
    let mut input = header.to_vec();
    for page in from..to {
        let mut bytes = vec![0u8; PAGE_SIZE];
        m.read(page_pa(page), &mut bytes).expect("RAM");
        let mut i = 0;
        while i < PAGE_SIZE {
            if bytes[i] == 0 {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < PAGE_SIZE && j - i < 255 && bytes[j..].iter().take(8).any(|&b| b != 0) {
                j += 1;
            }
            let j = j.min(i + 255).min(PAGE_SIZE);
            input.extend_from_slice(&[page as u8, i as u8, (i >> 8) as u8, (j - i) as u8]);
            input.extend_from_slice(&bytes[i..j]);
            i = j;
        }
    }
    input
}

/// A radix tree built by a tracker on the harness machine, with blocks of
/// `orders`; returns the machine (pages 0 and 1 untouched) and the root's
/// page index.
fn tracker_tree(orders: &[u32]) -> (Machine, u64) {
    let m = machine();
    let t = kho_track::Tracker::new(&m, m.scratch(), kho_track::TrackerOptions::default()).expect("tracker");
    for &o in orders {
        let o = Order::new(u64::from(o), "seed").expect("order");
        let pa = m.alloc_pages(o).expect("room for seed blocks");
        t.preserve_folio(pa, o).expect("preserve");
    }
    let root_idx = (t.tree_root().as_u64() - RAM_BASE) / PAGE_SIZE as u64;
    let _ = t.finish();
    // The pages the harness writes itself must have stayed unused.
    let mut low = vec![0u8; 2 * PAGE_SIZE];
    m.read(FDT_PAGE, &mut low).expect("RAM");
    assert!(low.iter().all(|&b| b == 0), "the seed needs more RAM than the harness leaves it");
    m.write(FDT_PAGE, &[0u8; PAGE_SIZE]).expect("RAM");
    (m, root_idx)
}

/// A hand-built `kho-v1` chunk: its order and `(phys_start page, bitmap
/// page, bitmap words)` entries.
type V1Chunk = (u32, Vec<(u64, u64, Vec<u64>)>);

/// Writes a `kho-v1` map on `m`: chunk `i` at page `chunk_pages[i]`.
fn write_v1(m: &Machine, chunks: &[V1Chunk], chunk_pages: &[u64]) {
    for (i, (order, entries)) in chunks.iter().enumerate() {
        let pa = page_pa(chunk_pages[i]);
        let next = chunk_pages.get(i + 1).map_or(0, |&p| page_pa(p).as_u64());
        let mut bytes = next.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&order.to_ne_bytes());
        bytes.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        for (start, bitmap, words) in entries {
            bytes.extend_from_slice(&page_pa(*start).as_u64().to_ne_bytes());
            bytes.extend_from_slice(&page_pa(*bitmap).as_u64().to_ne_bytes());
            let w: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            m.write(page_pa(*bitmap), &w).expect("RAM");
        }
        m.write(pa, &bytes).expect("RAM");
    }
}

/// Valid handovers in the input format, to seed the corpus: in map mode,
/// trees a tracker built on the same machine (`kho-v4`); with the FDT
/// written by records, a `kho-v3` and a `kho-v2` root over such trees and
/// a `kho-v1` root over a chunk list, so the seeds reach every root
/// version.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, orders) in [vec![0u32], vec![2, 0, 1], vec![3, 0, 0, 2, 1]].into_iter().enumerate() {
        let (m, root_idx) = tracker_tree(&orders);
        out.push(encode_pages(&m, [1u8 | (k as u8) << 2, root_idx as u8], 2, RAM_PAGES - SCRATCH_PAGES));
    }
    for compat in ["kho-v3", "kho-v2"] {
        let (m, root_idx) = tracker_tree(&[1, 0]);
        let sub = Subtree { name: "fuzz".into(), pa: page_pa(2), size: Some(64) };
        m.write(FDT_PAGE, &build(compat, page_pa(root_idx), &[sub]).expect("FDT")).expect("RAM");
        out.push(encode_pages(&m, [0, 0], 0, RAM_PAGES - SCRATCH_PAGES));
    }
    // kho-v1: one chunk of order-0 blocks (the converted tree of one order
    // fits the 8 scratch pages).
    let m = machine();
    write_v1(&m, &[(0, vec![(0, 4, vec![0b1011 << 40])])], &[3]);
    m.write(FDT_PAGE, &build("kho-v1", page_pa(3), &[]).expect("FDT")).expect("RAM");
    out.push(encode_pages(&m, [0, 0], 0, RAM_PAGES - SCRATCH_PAGES));
    out
}

/// Valid `kho-v1` maps for `run_v1` (map mode, chunk list at the page of
/// byte 1): one chunk, and two chunks of two orders. (An entry's span is
/// 32768 blocks, far more than this RAM: one entry per order fits.)
pub fn v1_seeds() -> Vec<Vec<u8>> {
    let maps: [(Vec<V1Chunk>, Vec<u64>); 2] = [
        (vec![(0, vec![(0, 11, vec![0b1011 << 40, 1 << 3])])], vec![10]),
        (vec![(0, vec![(0, 11, vec![0b11 << 20])]), (2, vec![(0, 13, vec![0b1001 << 24])])], vec![10, 14]),
    ];
    maps.iter()
        .map(|(chunks, pages)| {
            let m = machine_with(V1_SCRATCH_PAGES);
            write_v1(&m, chunks, pages);
            encode_pages(&m, [1, pages[0] as u8], 2, RAM_PAGES - V1_SCRATCH_PAGES)
        })
        .collect()
}

// ---- kho_data and the scratch array -------------------------------------
//
// `run_kho_data`: the machine holds a valid `kho-v4` handover (FDT at page
// 0, an empty radix tree at page 2, one subtree); the input is a flags
// byte, the four `kho_data` fields (u64 LE each) and the bytes of the
// scratch array, written at page 1. Unless its flag bit is set, an address
// field is folded near RAM (one page either side) and a size field below
// 0x1100.

/// Runs one `kho_data` input; returns whether it imported.
pub fn run_kho_data(data: &[u8]) -> bool {
    run_kho_data_in(&mut Machines::new(), data)
}

/// [`run_kho_data`] on a machine from `ms`.
pub fn run_kho_data_in(ms: &mut Machines, data: &[u8]) -> bool {
    let Some((flags, rest)) = data.split_first() else { return false };
    let mut field = [0u64; 4];
    let mut rest = rest;
    for f in &mut field {
        let mut b = [0u8; 8];
        let n = rest.len().min(8);
        b[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        *f = u64::from_le_bytes(b);
    }
    let span = (RAM_PAGES + 2) * PAGE_SIZE as u64;
    for (i, f) in field.iter_mut().enumerate() {
        if flags >> i & 1 == 0 {
            *f = if i % 2 == 0 { RAM_BASE - PAGE_SIZE as u64 + *f % span } else { *f % 0x1100 };
        }
    }
    let m = ms.lease(config_with(SCRATCH_PAGES));
    let sub = Subtree { name: "fuzz".into(), pa: page_pa(3), size: Some(64) };
    m.write(FDT_PAGE, &build("kho-v4", page_pa(2), &[sub]).expect("FDT")).expect("RAM");
    m.write(SCRATCH_ARRAY, &rest[..rest.len().min(PAGE_SIZE)]).expect("RAM");
    let kho_data = KhoData { fdt_addr: field[0], fdt_size: field[1], scratch_addr: field[2], scratch_size: field[3] };
    let m = m.kexec(kho_data);
    check(&m, &kho_data)
}

/// Seeds for `run_kho_data`: the valid handover, its scratch array as the
/// harness machine names it, and one of two areas.
pub fn kho_data_seeds() -> Vec<Vec<u8>> {
    let s = machine().scratch()[0];
    let f = |v: u64| v.to_le_bytes();
    let mut one = vec![0u8];
    for v in [FDT_PAGE.as_u64() - RAM_BASE + PAGE_SIZE as u64, PAGE_SIZE as u64, PAGE_SIZE as u64 * 2, 16] {
        one.extend_from_slice(&f(v));
    }
    one.extend_from_slice(&f(s.addr));
    one.extend_from_slice(&f(s.size));
    let mut two = one.clone();
    two[25..33].copy_from_slice(&f(32));
    two.extend_from_slice(&f(s.addr - 4 * PAGE_SIZE as u64));
    two.extend_from_slice(&f(PAGE_SIZE as u64));
    vec![one, two]
}

// ---- subtree blobs --------------------------------------------------------
//
// `run_blob`: kernel A preserves `n % 8` folios (one order byte each, order
// `% 4`) and names one subtree whose PA and size come from the input
// (`sel`, block index, u32 offset, u64 size, then a u64 PA if `sel & 1`;
// with `sel & 2` the size is folded below 64 pages, else taken raw). The
// next kernel checks the blob over its whole size against a model of
// what was preserved, restores its blocks if it checks out, and gives
// everything back.

/// Runs one blob input.
pub fn run_blob(data: &[u8]) {
    run_blob_in(&mut Machines::new(), data);
}

/// [`run_blob`] on a machine from `ms`; returns whether the blob checked
/// out.
pub fn run_blob_in(ms: &mut Machines, data: &[u8]) -> bool {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let m = ms.lease(config_with(SCRATCH_PAGES));
    let mut t = kho_track::Tracker::new(&*m, m.scratch(), kho_track::TrackerOptions::default()).expect("tracker");
    let mut blocks: Vec<(PhysAddr, Order)> = Vec::new();
    for _ in 0..next() % 8 {
        let o = Order::new(u64::from(next() % 4), "blob seed").expect("order");
        let Ok(pa) = m.alloc_pages(o) else { break };
        if t.preserve_folio(pa, o).is_err() {
            m.free_pages(pa, o);
            break;
        }
        blocks.push((pa, o));
    }
    let (sel, index) = (next(), next());
    let off = u64::from(u32::from_le_bytes([next(), next(), next(), next()]));
    let raw_size = u64::from_le_bytes([next(), next(), next(), next(), next(), next(), next(), next()]);
    let pa = if sel & 1 == 1 || blocks.is_empty() {
        u64::from_le_bytes([next(), next(), next(), next(), next(), next(), next(), next()])
    } else {
        blocks[usize::from(index) % blocks.len()].0.as_u64().wrapping_add(off % (64 * PAGE_SIZE as u64))
    };
    let size = if sel & 2 == 2 { raw_size % (64 * PAGE_SIZE as u64) } else { raw_size };
    if t.add_subtree("fuzz", PhysAddr::new(pa), size).is_err() {
        return false;
    }
    let Ok(kho_data) = t.finish() else { return false };
    let m = m.kexec(kho_data);
    let inc = Incoming::import(&*m, &kho_data).expect("kernel A's own handover imports");
    let reserved = inc.reserved_blocks().expect("reserved");
    m.boot_done(&mut reserved.iter().copied()).expect("boot");
    // The model: every page of [pa, pa + max(size, 1)) in one of `blocks`,
    // and the range in RAM without overflow.
    let page = PAGE_SIZE as u64;
    let len = size.max(1);
    let covered = |p: u64| blocks.iter().any(|&(b, o)| p >= b.as_u64() && p < b.as_u64() + o.pages() * page);
    let expect_ok = pa != 0
        && pa.checked_add(len).is_some_and(|end| {
            pa >= RAM_BASE
                && end <= RAM_BASE + RAM_PAGES * page
                && ((pa & !(page - 1))..end).step_by(PAGE_SIZE).all(covered)
        });
    let checked = inc.check_subtree_blob("fuzz");
    assert_eq!(checked.is_ok(), expect_ok, "blob {pa:#x}+{size:#x} over {blocks:?}: {checked:?}");
    let mut restored = Vec::new();
    match checked {
        Ok(sub) => {
            assert_eq!((sub.pa.as_u64(), sub.size), (pa, Some(size)));
            // Restore the blocks under the blob: each restores once, then
            // the blob no longer checks out.
            let end = pa + len;
            for &(b, o) in &blocks {
                if b.as_u64() < end && pa < b.as_u64() + o.pages() * page {
                    inc.restore_folio(b, o).expect("a block under a checked blob restores");
                    restored.push((b, o));
                }
            }
            assert!(matches!(
                inc.check_subtree_blob("fuzz"),
                Err(TrackError::SubtreeBlob { fault: kho_track::BlobFault::NotPreserved, .. })
            ));
        }
        Err(e) => {
            assert!(matches!(e, TrackError::SubtreeBlob { .. }), "{e:?}");
            let _ = (e.to_string(), kho_abi::ToErrno::errno(&e));
        }
    }
    let unclaimed = inc.unclaimed().expect("walk");
    inc.finish();
    for (b, o) in restored.into_iter().chain(unclaimed) {
        m.free_pages(b, o);
    }
    assert_eq!(m.reserved_pages(), 0);
    assert_eq!(m.outstanding_pages(), 0);
    expect_ok
}

/// Seeds for `run_blob`: a blob inside a block, one across blocks, one
/// past a block, one with a huge size.
pub fn blob_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (orders, sel, index, off, size) in [
        (vec![2u8], 2u8, 0u8, 0x1010u32, 0x2000u64),
        (vec![0, 0, 1], 2, 0, 0, 0x4000),
        (vec![1], 2, 0, 0x1000, 0x2000),
        (vec![3], 0, 0, 0, 0xffff_ffff_ffff_f000),
    ] {
        let mut v = vec![orders.len() as u8];
        v.extend_from_slice(&orders);
        v.extend_from_slice(&[sel, index]);
        v.extend_from_slice(&off.to_le_bytes());
        v.extend_from_slice(&size.to_le_bytes());
        out.push(v);
    }
    out
}

/// The import's verdict on an input, for diagnostics.
pub fn import_error(data: &[u8]) -> Option<String> {
    let (m, d) = prepare(data)?;
    Incoming::import(&m, &d).err().map(|e| e.to_string())
}
