//! The handover demo: kernel A preserves memory on a simulated machine and
//! kexecs; kernel B adopts it, restores everything and verifies it.
//!
//! ```text
//! cargo run --release --example handover [-- --seed N --folios N --ram-mib N]
//! cargo run --release --example handover -- --save machine.img   # stop at kexec
//! cargo run --release --example handover -- --load machine.img   # kernel B only
//! ```
//!
//! Kernel A fills folios of random orders with random bytes and preserves
//! them and a page range. As the kernel's own KHO test does, it lists every
//! folio (PA, order, checksum) in a vmalloc'ed array — pages scattered in
//! physical memory, preserved as a `vmalloc-v1` area — and it groups the
//! folios into sessions recorded in a block set (`block-v1`, 80-byte entries
//! like LUO's session table). A small manifest blob, added as the subtree
//! `kho-demo`, holds the vmalloc descriptor and the block set's head.
//!
//! The sim then kexecs: RAM is kept, only `kho_data` is handed over, and
//! once kernel B has walked the tree every page that was not preserved is
//! poisoned. Kernel B finds the manifest, restores the vmalloc area mapped
//! back into one virtually contiguous slice, restores the session table,
//! restores each folio and checks it, and reports. Any mismatch exits
//! non-zero.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kho::abi::{
    KhoData, KhoScratch, KhoVmalloc, Order, PAGE_SIZE, PageAlloc, PhysAddr, VmallocFlags, WithTracker, read_phys,
    write_phys,
};
use kho::block::BlockSet;
use kho::track::{Incoming, Tracker, TrackerOptions};
use kho_sim::{Machine, MachineConfig};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const MANIFEST: &str = "kho-demo";
const MANIFEST_MAGIC: u64 = u64::from_le_bytes(*b"KHODEMO3");
/// Folios per session.
const SESSION_FOLIOS: u64 = 8;

/// One preserved folio, an element of the vmalloc'ed folio array.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct FolioSer {
    pa: u64,
    order: u64,
    checksum: u64,
}

/// A session: a named group of consecutive folios, an entry of the block
/// set (80 bytes, the size of LUO's session entries).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct SessionSer {
    id: u64,
    first_folio: u64,
    folio_count: u64,
    name: [u8; 56],
}

/// The subtree blob: where everything else is.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Manifest {
    magic: u64,
    folios: u64,
    folio_array: KhoVmalloc,
    sessions: u64,
    session_head: u64,
    range_pa: u64,
    range_pages: u64,
    range_checksum: u64,
}

/// The handover demo: kernel A preserves folios, a page range and a
/// manifest on a simulated machine, kexecs, and kernel B imports,
/// restores and verifies everything.
#[derive(clap::Parser)]
#[command(name = "handover")]
struct Args {
    /// Seed of the random orders and bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Folios kernel A preserves.
    #[arg(long, default_value_t = 512)]
    folios: u64,
    /// RAM of the simulated machine in MiB.
    #[arg(long, default_value_t = 1024)]
    ram_mib: u64,
    /// Stop at the kexec point and write the machine as an ELF core image.
    #[arg(long, value_name = "IMAGE", conflicts_with = "load")]
    save: Option<PathBuf>,
    /// Run kernel B from an image written by --save.
    #[arg(long, value_name = "IMAGE")]
    load: Option<PathBuf>,
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
    let mut entries: Vec<FolioSer> = Vec::new();
    let mut pages = 0;
    for _ in 0..args.folios {
        let o = order(rng.next() % 10);
        let pa = m.alloc_pages(o).map_err(|e| format!("allocating a folio: {e}"))?;
        let len = o.pages() * PAGE_SIZE as u64;
        m.fill_random(pa, len, rng.next()).map_err(|e| e.to_string())?;
        let t = Instant::now();
        tracker.preserve_folio(pa, o).map_err(|e| format!("preserving {pa}: {e}"))?;
        preserve_time += t.elapsed();
        let checksum = m.checksum(pa, len).map_err(|e| e.to_string())?;
        entries.push(FolioSer { pa: pa.as_u64(), order: u64::from(o.get()), checksum });
        pages += o.pages();
    }
    // A page range: 300 pages (not a power of two), preserved as blocks.
    let range = m.alloc_pages(order(9)).map_err(|e| e.to_string())?;
    m.fill_random(range, 300 * PAGE_SIZE as u64, rng.next()).map_err(|e| e.to_string())?;
    let t = Instant::now();
    tracker.preserve_pages(range, 300).map_err(|e| e.to_string())?;
    preserve_time += t.elapsed();
    let range_checksum = m.checksum(range, 300 * PAGE_SIZE as u64).map_err(|e| e.to_string())?;
    // The folio array, vmalloc'ed: order-0 pages allocated one at a time
    // (and so scattered), preserved as a vmalloc area.
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    let mut array_pages = Vec::new();
    for chunk in bytes.chunks(PAGE_SIZE) {
        let pa = m.alloc_pages(Order::ZERO).map_err(|e| e.to_string())?;
        m.write(pa, chunk).map_err(|e| e.to_string())?;
        array_pages.push(pa);
        // A page of padding between array pages keeps them apart.
        let _ = m.alloc_pages(Order::ZERO).map_err(|e| e.to_string())?;
    }
    let folio_array = kho::vmalloc::preserve(
        &WithTracker::new(m, &tracker),
        array_pages.iter().copied(),
        Order::ZERO,
        VmallocFlags::ALLOC,
    )
    .map_err(|e| format!("preserving the folio array: {e}"))?;
    // The session table: a block set whose pages the tracker preserves.
    let sessions: Vec<SessionSer> = (0..entries.len() as u64)
        .step_by(SESSION_FOLIOS as usize)
        .enumerate()
        .map(|(i, first)| {
            let mut name = [0u8; 56];
            let text = format!("session-{i}");
            name[..text.len()].copy_from_slice(text.as_bytes());
            SessionSer {
                id: i as u64,
                first_folio: first,
                folio_count: SESSION_FOLIOS.min(entries.len() as u64 - first),
                name,
            }
        })
        .collect();
    let mut session_set = BlockSet::<SessionSer>::new();
    let session_head = {
        let p = WithTracker::new(m, &tracker);
        session_set.grow(&p, sessions.len()).map_err(|e| format!("growing the session table: {e}"))?;
        session_set.writer(&p).extend(&sessions).map_err(|e| format!("writing the session table: {e}"))?;
        session_set.head()
    };
    // The manifest blob, named by a subtree.
    let manifest = Manifest {
        magic: MANIFEST_MAGIC,
        folios: entries.len() as u64,
        folio_array,
        sessions: sessions.len() as u64,
        session_head: session_head.as_u64(),
        range_pa: range.as_u64(),
        range_pages: 300,
        range_checksum,
    };
    let blob = m.alloc_pages(Order::ZERO).map_err(|e| e.to_string())?;
    write_phys(m, blob, &manifest).map_err(|e| e.to_string())?;
    tracker.preserve_folio(blob, Order::ZERO).map_err(|e| e.to_string())?;
    tracker.add_subtree(MANIFEST, blob, size_of::<Manifest>() as u64).map_err(|e| e.to_string())?;
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
        "kernel A: preserved {} folios ({} pages, {:.1} MiB) and a range of 300 pages",
        entries.len(),
        pages,
        mib(pages),
    );
    println!(
        "          folio array: vmalloc area of {} scattered pages; session table: block set of {} blocks ({} sessions, {} of {} bytes per block)",
        array_pages.len(),
        session_set.blocks(),
        sessions.len(),
        session_set.entries_per_block(),
        size_of::<SessionSer>()
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
    if sub.size != Some(size_of::<Manifest>() as u64) {
        return Err(format!("manifest of {:?} bytes", sub.size));
    }
    inc.restore_folio(sub.pa, Order::ZERO).map_err(|e| format!("manifest: {e}"))?;
    let manifest: Manifest = read_phys(m, sub.pa).map_err(|e| e.to_string())?;
    if manifest.magic != MANIFEST_MAGIC {
        return Err("the manifest is corrupt".into());
    }
    let mut bad = 0;
    let range = PhysAddr::new(manifest.range_pa);
    inc.restore_pages(range, manifest.range_pages).map_err(|e| format!("range {range}: {e}"))?;
    if m.checksum(range, manifest.range_pages * PAGE_SIZE as u64).map_err(|e| e.to_string())? != manifest.range_checksum
    {
        eprintln!("MISMATCH: range {range}");
        bad += 1;
    }
    // The folio array, mapped back into one virtually contiguous slice.
    let mut blocks = Vec::new();
    let area = kho::vmalloc::restore(&WithTracker::new(m, &inc), &manifest.folio_array, |pa| blocks.push(pa))
        .map_err(|e| format!("folio array: {e}"))?;
    let map = m.map_same_order(&blocks, area.order).map_err(|e| {
        // The restored blocks cannot be used: give them back.
        for &pa in &blocks {
            m.free_pages(pa, area.order);
        }
        format!("folio array: {e}")
    })?;
    let array_bytes = manifest.folios as usize * size_of::<FolioSer>();
    let folios = <[FolioSer]>::ref_from_bytes(map.get(..array_bytes).ok_or("folio array too short")?)
        .map_err(|_| "folio array misaligned")?
        .to_vec();
    drop(map);
    // The session table: every folio in exactly one session, in order.
    let p = WithTracker::new(m, &inc);
    let session_set = BlockSet::<SessionSer>::restore(&p, PhysAddr::new(manifest.session_head))
        .map_err(|e| format!("session table: {e}"))?;
    let mut next_folio = 0;
    for s in session_set.iter(&p) {
        let s = s.map_err(|e| format!("session table: {e}"))?;
        if s.first_folio != next_folio || s.folio_count == 0 || !s.name.starts_with(b"session-") {
            eprintln!("MISMATCH: session {} covers folios {}+{}", s.id, s.first_folio, s.folio_count);
            bad += 1;
        }
        next_folio = s.first_folio + s.folio_count;
    }
    if next_folio != manifest.folios || session_set.len() as u64 != manifest.sessions {
        eprintln!("MISMATCH: {} sessions cover {next_folio} of {} folios", session_set.len(), manifest.folios);
        bad += 1;
    }
    for e in &folios {
        let (pa, o) = (PhysAddr::new(e.pa), Order::new(e.order, "folio order").map_err(|e| e.to_string())?);
        inc.restore_folio(pa, o).map_err(|err| format!("folio {pa} order {o}: {err}"))?;
        let got = m.checksum(pa, o.pages() * PAGE_SIZE as u64).map_err(|e| e.to_string())?;
        if got != e.checksum {
            eprintln!("MISMATCH: folio {pa} order {o}");
            bad += 1;
        }
        if inc.restore_folio(pa, o).is_ok() {
            eprintln!("MISMATCH: folio {pa} restored twice");
            bad += 1;
        }
    }
    let table_blocks = session_set.blocks();
    session_set.free(&p).map_err(|e| format!("freeing the session table: {e}"))?;
    let restore_time = t2.elapsed();
    let unclaimed = inc.unclaimed().map_err(|e| e.to_string())?;
    println!(
        "          restored the folio array ({} pages, mapped contiguously), the session table ({table_blocks} blocks), {} folios and the range, all verified, in {}; {} blocks left unclaimed",
        area.blocks,
        manifest.folios,
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
    let args = <Args as clap::Parser>::parse();
    if let Some(path) = &args.load {
        // The image names its scratch areas in the handover itself: read
        // them first, then boot kernel B with them as its scratch.
        let load = |scratch| {
            let cfg = MachineConfig { scratch, ..MachineConfig::default() };
            Machine::load_image(path, cfg).map_err(|e| format!("{}: {e}", path.display()))
        };
        let probe = load(Vec::new())?;
        let data = probe.kho_data().ok_or("the image has no KHO note")?;
        let count = { data.scratch_size } / size_of::<KhoScratch>() as u64;
        let scratch = (0..count.min(64))
            .map(|i| read_phys(&probe, PhysAddr::new(data.scratch_addr + i * size_of::<KhoScratch>() as u64)))
            .collect::<Result<Vec<KhoScratch>, _>>()
            .map_err(|e| format!("scratch array: {e}"))?;
        drop(probe);
        let m = load(scratch)?;
        println!("loaded {} ({} MiB of RAM at {})", path.display(), m.ram_size() >> 20, m.ram_base());
        return kernel_b(&m);
    }
    let cfg = MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, args.ram_mib << 20);
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
