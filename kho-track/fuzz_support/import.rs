// The incoming side under arbitrary input: shared, through `include!`, by
// the `track_import` fuzz target and by the corpus replay test, so both run
// exactly the same checks.
//
// The machine has 128 pages of RAM: the last 8 are a scratch area, page 0
// holds the root FDT and page 1 the scratch array. Input: byte 0 selects
// the mode, byte 1 the page the memory map points at, then records
// `[page, offset lo, offset hi, len, len bytes]` that write RAM (clipped to
// the page). In map mode (bit 0 of the mode) page 0 starts as a valid
// `kho-v4` FDT pointing at the chosen page, with one subtree; otherwise it
// starts empty and the records must build an FDT. Bit 1 shrinks `fdt_size`
// to `1 + (mode >> 2) * 64`.

use std::ops::ControlFlow;

use kho_abi::{KhoData, KhoScratch, Order, PAGE_SIZE, PhysAddr};
use kho_sim::{Machine, MachineConfig};
use kho_track::fdt::{Subtree, build};
use kho_track::{Incoming, TrackError};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_PAGES: u64 = 128;
const SCRATCH_PAGES: u64 = 8;
const FDT_PAGE: PhysAddr = page_pa(0);
const SCRATCH_ARRAY: PhysAddr = page_pa(1);

const fn page_pa(i: u64) -> PhysAddr {
    PhysAddr::new(RAM_BASE + i * PAGE_SIZE as u64)
}

fn machine() -> Machine {
    let cfg = MachineConfig {
        ram_base: PhysAddr::new(RAM_BASE),
        ram_size: RAM_PAGES * PAGE_SIZE as u64,
        scratch: vec![KhoScratch {
            addr: page_pa(RAM_PAGES - SCRATCH_PAGES).as_u64(),
            size: SCRATCH_PAGES * PAGE_SIZE as u64,
        }],
        ..MachineConfig::default()
    };
    Machine::new(cfg).expect("a 64-page machine")
}

/// Runs one input; panics only when kho breaks one of its guarantees.
pub fn run(data: &[u8]) {
    if let Some((m, kho_data)) = prepare(data) {
        check(&m, &kho_data);
    }
}

/// Whether the input is a handover the import accepts.
pub fn imports(data: &[u8]) -> bool {
    prepare(data).is_some_and(|(m, d)| Incoming::import(&m, &d).is_ok())
}

/// Lays the input out in a fresh machine and kexecs it.
fn prepare(data: &[u8]) -> Option<(Machine, KhoData)> {
    if data.len() < 2 {
        return None;
    }
    let (mode, root, rest) = (data[0], u64::from(data[1]) % RAM_PAGES, &data[2..]);
    let m = machine();
    if mode & 1 == 1 {
        let sub = Subtree { name: "fuzz".into(), pa: page_pa(2), size: Some(64) };
        let dtb = build("kho-v4", page_pa(root), &[sub]).expect("a small FDT fits");
        m.write(FDT_PAGE, &dtb).expect("RAM");
    }
    let mut rest = rest;
    while let [page, lo, hi, len, tail @ ..] = rest {
        let page = u64::from(*page) % (RAM_PAGES - SCRATCH_PAGES);
        let offset = usize::from(u16::from_le_bytes([*lo, *hi])) % PAGE_SIZE;
        let len = usize::from(*len).min(tail.len()).min(PAGE_SIZE - offset);
        m.write(PhysAddr::new(page_pa(page).as_u64() + offset as u64), &tail[..len]).expect("RAM");
        rest = &tail[len..];
    }
    let scratch = m.scratch()[0];
    kho_abi::write_phys(&m, SCRATCH_ARRAY, &scratch).expect("RAM");
    let fdt_size = if mode & 2 == 0 { PAGE_SIZE as u64 } else { 1 + u64::from(mode >> 2) * 64 };
    let kho_data = KhoData {
        fdt_addr: FDT_PAGE.as_u64(),
        fdt_size,
        scratch_addr: SCRATCH_ARRAY.as_u64(),
        scratch_size: 16,
    };
    Some((m.kexec(kho_data), kho_data))
}

fn check(m: &Machine, kho_data: &KhoData) {
    let inc = match Incoming::import(m, kho_data) {
        Ok(inc) => inc,
        Err(e) => {
            // A typed error, and nothing allocated on the way.
            let _ = e.to_string();
            let _ = kho_abi::ToErrno::errno(&e);
            assert_eq!(m.outstanding_pages(), 0, "failed import leaked: {e}");
            return;
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
}

/// Valid handovers in the input format, to seed the corpus: trees a
/// tracker built on the same machine, in map mode.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (k, orders) in [vec![0u32], vec![2, 0, 1], vec![3, 0, 0, 2, 1]].into_iter().enumerate() {
        let m = machine();
        let t = kho_track::Tracker::new(&m, m.scratch(), kho_track::TrackerOptions::default()).expect("tracker");
        for o in orders {
            let o = Order::new(u64::from(o), "seed").expect("order");
            let pa = kho_abi::PageAlloc::alloc_pages(&m, o).expect("room for seed blocks");
            t.preserve_folio(pa, o).expect("preserve");
        }
        let root_idx = (t.tree_root().as_u64() - RAM_BASE) / PAGE_SIZE as u64;
        let _ = t.finish();
        // The pages the harness writes itself must have stayed unused.
        let mut low = vec![0u8; 2 * PAGE_SIZE];
        m.read(FDT_PAGE, &mut low).expect("RAM");
        assert!(low.iter().all(|&b| b == 0), "seed {k} needs more RAM than the harness leaves it");
        let mut input = vec![1u8 | (k as u8) << 2, root_idx as u8];
        // One record per run of non-zero bytes (at most 255) of each page.
        for page in 2..RAM_PAGES - SCRATCH_PAGES {
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
        out.push(input);
    }
    out
}

/// The import's verdict on an input, for diagnostics.
pub fn import_error(data: &[u8]) -> Option<String> {
    let (m, d) = prepare(data)?;
    Incoming::import(&m, &d).err().map(|e| e.to_string())
}
