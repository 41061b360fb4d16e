//! The handover demo: kernel A preserves memory on a simulated machine and
//! kexecs; kernel B adopts it, restores everything and verifies it.
//!
//! ```text
//! cargo run --release --example handover [-- --seed N --folios N --ram-mib N]
//! cargo run --release --example handover -- --save machine.img   # stop at kexec
//! cargo run --release --example handover -- --load machine.img   # kernel B only
//! ```
//!
//! Kernel A fills folios of random orders with random bytes, preserves them,
//! a page range and a manifest blob (a subtree) that lists every folio with
//! its checksum. The sim then kexecs: RAM is kept, only `kho_data` is handed
//! over, and once kernel B has walked the tree every page that was not
//! preserved is poisoned. Kernel B restores each folio, checks it against
//! the manifest, and reports. Any mismatch exits non-zero.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kho::abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr};
use kho::track::{Incoming, Tracker, TrackerOptions};
use kho_sim::{Machine, MachineConfig};

const MANIFEST: &str = "kho-demo";
const MANIFEST_MAGIC: u64 = u64::from_le_bytes(*b"KHODEMO1");

struct Args {
    seed: u64,
    folios: u64,
    ram_mib: u64,
    save: Option<PathBuf>,
    load: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { seed: 1, folios: 256, ram_mib: 1024, save: None, load: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--folios" => a.folios = value()?.parse().map_err(|e| format!("--folios: {e}"))?,
            "--ram-mib" => a.ram_mib = value()?.parse().map_err(|e| format!("--ram-mib: {e}"))?,
            "--save" => a.save = Some(value()?.into()),
            "--load" => a.load = Some(value()?.into()),
            "-h" | "--help" => {
                println!("usage: handover [--seed N] [--folios N] [--ram-mib N] [--save IMAGE | --load IMAGE]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

/// A small deterministic generator (xorshift*), enough for a demo.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn order(n: u64) -> Order {
    Order::new(n, "demo order").expect("demo orders are small")
}

fn mib(pages: u64) -> f64 {
    (pages * PAGE_SIZE as u64) as f64 / (1 << 20) as f64
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Kernel A. Returns the `kho_data` to hand over.
fn kernel_a(m: &Machine, args: &Args) -> Result<KhoData, String> {
    let mut tracker = Tracker::new(m, m.scratch(), TrackerOptions::default()).map_err(|e| e.to_string())?;
    let mut preserve_time = Duration::ZERO;
    let mut rng = Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut entries: Vec<[u64; 3]> = Vec::new();
    let mut pages = 0;
    for _ in 0..args.folios {
        let o = order(rng.next() % 10);
        let pa = m.alloc_pages(o).map_err(|e| format!("allocating a folio: {e}"))?;
        let len = o.pages() * PAGE_SIZE as u64;
        m.fill_random(pa, len, rng.next()).map_err(|e| e.to_string())?;
        let t = Instant::now();
        tracker.preserve_folio(pa, o).map_err(|e| format!("preserving {pa}: {e}"))?;
        preserve_time += t.elapsed();
        entries.push([pa.as_u64(), u64::from(o.get()), m.checksum(pa, len).map_err(|e| e.to_string())?]);
        pages += o.pages();
    }
    // A page range: 300 pages (not a power of two), preserved as blocks.
    let range = m.alloc_pages(order(9)).map_err(|e| e.to_string())?;
    m.fill_random(range, 300 * PAGE_SIZE as u64, rng.next()).map_err(|e| e.to_string())?;
    let t = Instant::now();
    tracker.preserve_pages(range, 300).map_err(|e| e.to_string())?;
    preserve_time += t.elapsed();
    let range_sum = m.checksum(range, 300 * PAGE_SIZE as u64).map_err(|e| e.to_string())?;
    // The manifest blob: magic, count, range (pa, pages, sum), then
    // (pa, order, checksum) per folio.
    let mut blob: Vec<u64> = vec![MANIFEST_MAGIC, entries.len() as u64, range.as_u64(), 300, range_sum];
    blob.extend(entries.iter().flatten());
    let bytes: Vec<u8> = blob.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let blob_pages = (bytes.len() as u64).div_ceil(PAGE_SIZE as u64).next_power_of_two();
    let blob_order = order(u64::from(blob_pages.trailing_zeros()));
    let blob_pa = m.alloc_pages(blob_order).map_err(|e| e.to_string())?;
    m.write(blob_pa, &bytes).map_err(|e| e.to_string())?;
    tracker.preserve_folio(blob_pa, blob_order).map_err(|e| e.to_string())?;
    tracker.add_subtree(MANIFEST, blob_pa, bytes.len() as u64).map_err(|e| e.to_string())?;
    let tree_pages = tracker.tree_pages().map_err(|e| e.to_string())?;
    let mut ranges = 0;
    let _ = tracker
        .for_each_range::<()>(&mut |_, _| {
            ranges += 1;
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    let data = tracker.finish().map_err(|e| e.to_string())?;
    println!(
        "kernel A: preserved {} folios ({} pages, {:.1} MiB), a range of 300 pages and a {}-byte manifest",
        entries.len(),
        pages,
        mib(pages),
        bytes.len()
    );
    println!(
        "          radix tree: {tree_pages} pages; {ranges} coalesced ranges (the FDT page included); preserving took {}",
        ms(preserve_time)
    );
    let KhoData { fdt_addr, fdt_size, scratch_addr, scratch_size } = data;
    println!(
        "kexec:    kho_data: FDT at {fdt_addr:#x} (+{fdt_size:#x}), scratch array at {scratch_addr:#x} ({} areas)",
        scratch_size / 16
    );
    Ok(data)
}

/// Kernel B: import, reserve, restore and verify. Returns the number of
/// mismatches.
fn kernel_b(m: &Machine) -> Result<u64, String> {
    let data = m.kho_data().ok_or("no kho_data was handed over")?;
    let t0 = Instant::now();
    let inc = Incoming::import(m, &data).map_err(|e| format!("import: {e}"))?;
    let import_time = t0.elapsed();
    let t1 = Instant::now();
    let mut ranges = 0;
    let mut range_bytes = 0;
    let _ = inc
        .for_each_range::<()>(&mut |_, len| {
            ranges += 1;
            range_bytes += len;
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
    let ranges_time = t1.elapsed();
    let reserved = inc.reserved_blocks().map_err(|e| e.to_string())?;
    m.boot_done(&mut reserved.iter().copied()).map_err(|e| e.to_string())?;
    let stats = inc.stats().clone();
    println!(
        "kernel B: {} ({}), {} blocks, {} pages, tree {} pages; import+validate {}",
        inc.compatible(),
        format_args!("{:?}", inc.version()),
        stats.blocks,
        stats.pages,
        stats.tree_pages,
        ms(import_time)
    );
    println!(
        "          {ranges} coalesced ranges ({:.1} MiB) walked in {}",
        range_bytes as f64 / (1 << 20) as f64,
        ms(ranges_time)
    );

    let t2 = Instant::now();
    let sub = inc.subtree(MANIFEST).map_err(|e| e.to_string())?;
    let size = sub.size.ok_or("manifest without blob-size")?;
    let blob_pages = size.div_ceil(PAGE_SIZE as u64).next_power_of_two();
    inc.restore_folio(sub.pa, order(u64::from(blob_pages.trailing_zeros()))).map_err(|e| format!("manifest: {e}"))?;
    let mut bytes = vec![0u8; size as usize];
    m.read(sub.pa, &mut bytes).map_err(|e| e.to_string())?;
    let words: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    if words.len() < 5 || words[0] != MANIFEST_MAGIC || words.len() as u64 != 5 + 3 * words[1] {
        return Err("the manifest is corrupt".into());
    }
    let mut bad = 0;
    let (range, range_pages, range_sum) = (PhysAddr::new(words[2]), words[3], words[4]);
    inc.restore_pages(range, range_pages).map_err(|e| format!("range {range}: {e}"))?;
    if m.checksum(range, range_pages * PAGE_SIZE as u64).map_err(|e| e.to_string())? != range_sum {
        eprintln!("MISMATCH: range {range}");
        bad += 1;
    }
    for e in words[5..].chunks_exact(3) {
        let (pa, o, sum) = (PhysAddr::new(e[0]), order(e[1]), e[2]);
        inc.restore_folio(pa, o).map_err(|err| format!("folio {pa} order {o}: {err}"))?;
        let got = m.checksum(pa, o.pages() * PAGE_SIZE as u64).map_err(|e| e.to_string())?;
        if got != sum {
            eprintln!("MISMATCH: folio {pa} order {o}");
            bad += 1;
        }
        if inc.restore_folio(pa, o).is_ok() {
            eprintln!("MISMATCH: folio {pa} restored twice");
            bad += 1;
        }
    }
    let restore_time = t2.elapsed();
    let unclaimed = inc.unclaimed().map_err(|e| e.to_string())?;
    println!(
        "          restored and verified {} folios + the range in {}; {} blocks left unclaimed",
        words[1],
        ms(restore_time),
        unclaimed.len()
    );
    for (pa, o) in &unclaimed {
        println!("          unclaimed: {pa} order {o}");
    }
    inc.finish();
    Ok(bad)
}

fn run() -> Result<u64, String> {
    let args = parse_args()?;
    if let Some(path) = &args.load {
        let m = Machine::load_image(path, MachineConfig::default()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("loaded {} ({} MiB of RAM at {})", path.display(), m.ram_size() >> 20, m.ram_base());
        return kernel_b(&m);
    }
    let cfg = MachineConfig { ram_size: args.ram_mib << 20, ..MachineConfig::default() };
    let m = Machine::new(cfg).map_err(|e| e.to_string())?;
    println!(
        "machine: {} MiB of RAM at {}, {} KiB pages, scratch {:#x}+{:#x}",
        m.ram_size() >> 20,
        m.ram_base(),
        PAGE_SIZE >> 10,
        m.scratch()[0].addr,
        m.scratch()[0].size
    );
    let data = kernel_a(&m, &args)?;
    if let Some(path) = &args.save {
        m.save_image_with(path, Some(&data)).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("saved the machine at the kexec point to {}", path.display());
        return Ok(0);
    }
    let m = m.kexec(data);
    kernel_b(&m)
}

fn main() -> ExitCode {
    match run() {
        Ok(0) => {
            println!("handover OK");
            ExitCode::SUCCESS
        }
        Ok(bad) => {
            eprintln!("handover FAILED: {bad} mismatches");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("handover FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
