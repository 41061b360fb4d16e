//! Decodes the layers of a real kernel's handover from a kexec-point dump
//! of the lab (an ELF core with physical `PT_LOAD`s) and compares them with
//! the lab's truth and with what this project's writers produce for the
//! same state.
//!
//! ```sh
//! cargo run -p kho-luo --example lab_compare -- DIR/A-kexec.elf DIR/truth.json [PHASE]
//! ```
//!
//! `PHASE` (default 1) is the truth phase that *received* the handover: its
//! `kho_data` locates the root FDT, its `reserved_blocks` (the receiving
//! kernel's own walk of the tree) are the preserved blocks the readers
//! claim against, and the phase before it wrote the memfds. Not part of
//! `cargo test`: the dumps are not in the repository.

use std::fs::File;
use std::ptr::NonNull;

use dtoolkit::fdt::Fdt;
use dtoolkit::{Node, Property};
use kho_abi::{AbiError, Order, PageAlloc, PhysAddr, PhysMem, WithTracker, read_phys_bytes};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use memmap2::{MmapMut, MmapOptions};
use serde_json::Value;

/// Guest RAM from the dump, mapped copy-on-write.
struct Dump {
    map: MmapMut,
    /// `(pa, file offset, bytes)` of each `PT_LOAD`.
    loads: Vec<(u64, u64, u64)>,
}

impl Dump {
    fn open(path: &str) -> Dump {
        let file = File::open(path).expect("dump");
        // SAFETY: a private copy-on-write mapping of a file nobody writes
        // while this runs; writes land in private pages.
        let map = unsafe { MmapOptions::new().map_copy(&file) }.expect("map dump");
        let u16_at = |at: usize| u16::from_le_bytes(map[at..at + 2].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap());
        let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38) as usize);
        let mut loads = Vec::new();
        for i in 0..phnum {
            let h = phoff + i * phentsize;
            if u32::from_le_bytes(map[h..h + 4].try_into().unwrap()) == 1 {
                let (off, pa, filesz) = (u64_at(h + 8), u64_at(h + 24), u64_at(h + 32));
                assert_eq!(off % 8, pa % 8, "segment keeps 8-byte alignment");
                loads.push((pa, off, filesz));
            }
        }
        Dump { map, loads }
    }
}

// SAFETY: pointers are into the private mapping, valid while `self` lives,
// for a range inside one segment's file bytes; every segment's file offset
// has its PA's alignment modulo 8 (checked in `open`).
unsafe impl PhysMem for Dump {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        let (a, end) = (pa.as_u64(), pa.as_u64().checked_add(len).ok_or(AbiError::NotRam { pa, len })?);
        for &(start, off, size) in &self.loads {
            if start <= a && end <= start + size {
                let at = (off + a - start) as usize;
                return NonNull::new(self.map.as_ptr().wrapping_add(at).cast_mut()).ok_or(AbiError::NotRam { pa, len });
            }
        }
        Err(AbiError::NotRam { pa, len })
    }
}

impl PageAlloc for Dump {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        Err(AbiError::NoMemory { order: order.get() })
    }
    fn free_pages(&self, _: PhysAddr, _: Order) {}
    fn max_order(&self) -> Order {
        Order::new(10, "max").unwrap()
    }
}

fn read(d: &Dump, pa: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    read_phys_bytes(d, PhysAddr::new(pa), &mut b).expect("dump bytes");
    b
}

/// The lab agent's memfd pattern (see kho-lab-agent/src/pattern.rs).
fn pattern(session: &str, token: u64, phase: u32, offset: u64, len: usize) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let seed = h ^ token.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(phase) << 56);
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..len as u64).map(|i| mix(seed ^ ((offset + i) / 8)).to_le_bytes()[((offset + i) % 8) as usize]).collect()
}

struct Tally {
    ok: u32,
    bad: u32,
}

impl Tally {
    fn check(&mut self, what: &str, good: bool, detail: impl std::fmt::Display) {
        if good {
            self.ok += 1;
            println!("  ok   {what}");
        } else {
            self.bad += 1;
            println!("  FAIL {what}: {detail}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dump_path, truth_path) = (&args[1], &args[2]);
    let phase: usize = args.get(3).map_or(1, |s| s.parse().expect("phase"));
    let truth: Value = serde_json::from_reader(File::open(truth_path).expect("truth")).expect("truth json");
    let recv = &truth["phases"][phase];
    let writer_phase = (phase - 1) as u32;
    let d = Dump::open(dump_path);
    let blocks: Vec<(PhysAddr, Order)> = recv["reserved_blocks"]
        .as_array()
        .expect("reserved_blocks")
        .iter()
        .map(|b| (PhysAddr::new(b["pa"].as_u64().unwrap()), Order::new(b["order"].as_u64().unwrap(), "o").unwrap()))
        .collect();
    let tracker = ModelTracker::incoming(blocks.clone());
    let p = WithTracker::new(&d, &tracker);
    let mut t = Tally { ok: 0, bad: 0 };
    println!("{dump_path}: {} preserved blocks (phase {phase}'s walk)", blocks.len());

    let fdt_addr = recv["kho_data"]["fdt_addr"].as_u64().expect("kho_data.fdt_addr");
    let mut root_bytes = read(&d, fdt_addr, 4096);
    let total = u32::from_be_bytes(root_bytes[4..8].try_into().unwrap()) as usize;
    root_bytes.truncate(total.min(4096));
    let root = Fdt::new(&root_bytes).expect("root FDT");
    let mut subtrees = Vec::new();
    for c in root.root().children() {
        let raw = |n| u64::from_ne_bytes(c.property(n).unwrap().value().try_into().unwrap());
        subtrees.push((c.name().to_string(), raw("preserved-data"), raw("blob-size")));
    }
    println!("subtrees: {subtrees:?}");
    let sub = |name: &str| subtrees.iter().find(|s| s.0 == name).map(|s| (s.1, s.2));

    // Writers run on a simulated machine for the byte comparisons.
    let m = Machine::new(MachineConfig::default()).unwrap();
    let mt = ModelTracker::new();
    let wp = WithTracker::new(&m, &mt);

    if let Some((pa, size)) = sub("kexec-metadata") {
        println!("kexec-metadata at {pa:#x}, {size} bytes");
        match kho_kexec_meta::inspect(&p, PhysAddr::new(pa), size) {
            Ok(kho_kexec_meta::KexecMetadata::V1 { previous_release, kexec_count }) => {
                let want = recv["log"]["exec_from"].as_str().unwrap_or("");
                t.check("exec from", want == format!("{previous_release} (count {kexec_count})"), want);
                let w = kho_kexec_meta::write(&wp, &previous_release, kexec_count).unwrap();
                let mine = read_sim(&m, w, kho_kexec_meta::SIZE as usize);
                t.check("writer bytes (73)", mine == read(&d, pa, 73), "differ");
                t.check("blob-size", size == kho_kexec_meta::SIZE, size);
            }
            other => t.check("decode", false, format!("{other:?}")),
        }
    }
    if let Some((pa, size)) = sub("memblock") {
        println!("memblock at {pa:#x}, {size} bytes");
        match kho_memblock::inspect(&p, PhysAddr::new(pa), size) {
            Ok(mb) => {
                let names: Vec<&str> = mb.regions.iter().map(|r| r.name.as_str()).collect();
                let want: Vec<&str> = truth["scenario"]["reserve_mem"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap())
                    .collect();
                t.check("reserve_mem names", names == want, format!("{names:?}"));
                for r in &mb.regions {
                    println!(
                        "    {} {:#x}+{:#x} in {:?}",
                        r.name,
                        r.start.as_u64(),
                        r.size,
                        r.blocks.iter().map(|b| b.1.get()).collect::<Vec<_>>()
                    );
                }
                let regions: Vec<(&str, PhysAddr, u64)> =
                    mb.regions.iter().map(|r| (r.name.as_str(), r.start, r.size)).collect();
                let mine = kho_memblock::fdt_bytes(&regions);
                t.check(
                    "writer FDT bytes",
                    mine == read(&d, pa, size as usize),
                    format!("{} vs {} bytes", mine.len(), size),
                );
            }
            Err(e) => t.check("decode", false, e),
        }
    }
    if let Some((pa, size)) = sub("kho_test") {
        println!("kho_test at {pa:#x}, {size} bytes");
        match kho_selftest::inspect(&p, PhysAddr::new(pa), size) {
            Ok(kt) => {
                println!(
                    "    {} folios, {} pages, orders {:?}",
                    kt.folios.len(),
                    kt.pages(),
                    kt.folios.iter().map(|f| f.1.get()).collect::<Vec<_>>()
                );
                t.check(
                    "checksum holds",
                    kt.checksum_holds(),
                    format!("{:#x} vs {:#x}", kt.stored_csum, kt.computed_csum),
                );
                let bytes = read(&d, pa, size as usize);
                let fdt = Fdt::new(&bytes).unwrap();
                let data = fdt.root().child("data").unwrap();
                let info: [u8; 16] = data.property("folios_info").unwrap().value().try_into().unwrap();
                let info = <kho_abi::KhoVmalloc as zerocopy::FromBytes>::read_from_bytes(&info).unwrap();
                println!("    folios_info {info:?}");
                let mine = kho_selftest::fdt_bytes(kt.folios.len() as u32, &info, kt.stored_csum);
                t.check("writer FDT bytes", mine == bytes, format!("{} vs {} bytes", mine.len(), size));
            }
            Err(e) => t.check("decode", false, e),
        }
    }
    if let Some((pa, size)) = sub("LUO") {
        println!("LUO at {pa:#x}, {size} bytes");
        match kho_luo::inspect(&p, PhysAddr::new(pa), size) {
            Ok(luo) => {
                t.check(
                    "liveupdate number",
                    Some(luo.liveupdate_num) == recv["log"]["luo_liveupdate"].as_u64(),
                    luo.liveupdate_num,
                );
                let want = truth["phases"][phase - 1]["memfds"].as_array().unwrap();
                let decoded: usize = luo.file_count();
                t.check("file count", decoded == want.len(), decoded);
                // The same sessions through this project's writer.
                let mut w = kho_luo::LuoWriter::new(&wp, luo.liveupdate_num).unwrap();
                for s in &luo.sessions {
                    let id = w.create_session(&wp, &s.raw_name).unwrap();
                    for f in &s.files {
                        w.preserve_file(&wp, id, &f.compatible, f.data, f.token).unwrap();
                    }
                }
                w.serialize(&wp).unwrap();
                let mine = kho_luo::inspect(&wp, w.blob(), kho_luo::LuoWriter::BLOB_SIZE).expect("own LUO state");
                compare_luo(&mut t, &d, &luo, &m, &mine);
                for wf in want {
                    let (sname, token) = (wf["session"].as_str().unwrap(), wf["token"].as_u64().unwrap());
                    let Some(file) = luo.session(sname).and_then(|s| s.file(token)) else {
                        t.check(&format!("{sname}/{token} present"), false, "missing");
                        continue;
                    };
                    check_memfd(&mut t, &d, &p, &m, &wp, wf, sname, token, file.data, writer_phase);
                }
            }
            Err(e) => t.check("decode", false, e),
        }
    }
    assert!(tracker.claimed().is_empty(), "inspection left claims");
    println!("{} checks passed, {} failed", t.ok, t.bad);
    std::process::exit(i32::from(t.bad > 0));
}

fn read_sim(m: &Machine, pa: PhysAddr, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    m.read(pa, &mut b).unwrap();
    b
}

/// Compares the dump's LUO entries with the writer's, PAs aside.
fn compare_luo(t: &mut Tally, d: &Dump, luo: &kho_luo::Luo, m: &Machine, mine: &kho_luo::Luo) {
    let blob_d = read(d, luo.blob.as_u64(), 32);
    let blob_m = read_sim(m, mine.blob, 32);
    t.check("blob compatible and number", blob_d[..16] == blob_m[..16], "differ");
    t.check("session blocks", luo.session_blocks.len() == mine.session_blocks.len(), luo.session_blocks.len());
    // Each session entry: the name bytes (64) and count (8) equal; `files`
    // is a PA.
    let mut entries_equal = true;
    let mut headers_equal = true;
    for (i, (sd, sm)) in luo.sessions.iter().zip(&mine.sessions).enumerate() {
        let at = |head: PhysAddr, n: usize| head.as_u64() + 16 + 80 * n as u64;
        let (ed, em) = (
            read(d, at(luo.session_blocks[i / 51], i % 51), 80),
            read_sim(m, PhysAddr::new(at(mine.session_blocks[i / 51], i % 51)), 80),
        );
        entries_equal &= ed[..64] == em[..64] && ed[72..] == em[72..];
        for (j, _) in sd.files.iter().enumerate() {
            let at = |b: &[PhysAddr]| b[j / 63].as_u64() + 16 + 64 * (j % 63) as u64;
            let (fd, fm) = (read(d, at(&sd.file_blocks), 64), read_sim(m, PhysAddr::new(at(&sm.file_blocks)), 64));
            entries_equal &= fd == fm; // data is the same value here, so all 64 bytes
        }
        for (bd, bm) in sd.file_blocks.iter().zip(&sm.file_blocks) {
            let (hd, hm) = (read(d, bd.as_u64(), 16), read_sim(m, *bm, 16));
            headers_equal &= hd[8..] == hm[8..] && (hd[..8] == [0; 8]) == (hm[..8] == [0; 8]);
        }
    }
    t.check("session and file entries byte-equal (PAs aside)", entries_equal, "differ");
    t.check("block headers (counts, chain ends)", headers_equal, "differ");
    match (&luo.flbs, &mine.flbs) {
        (Some(fd), Some(fm)) => t.check(
            "FLB header",
            read(d, fd.pa.as_u64(), 16) == read_sim(m, fm.pa, 16),
            format!("pgcnt {} count {}", fd.pgcnt, fd.entries.len()),
        ),
        (a, b) => t.check("FLB region present in both", a.is_some() == b.is_some(), format!("{a:?}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_memfd(
    t: &mut Tally,
    d: &Dump,
    p: &WithTracker<'_, Dump, ModelTracker>,
    m: &Machine,
    wp: &WithTracker<'_, Machine, ModelTracker>,
    wf: &Value,
    sname: &str,
    token: u64,
    desc: u64,
    writer_phase: u32,
) {
    let name = format!("memfd {sname}/{token}");
    let memfd = match kho_memfd::inspect(p, PhysAddr::new(desc)) {
        Ok(mf) => mf,
        Err(e) => return t.check(&name, false, e),
    };
    let (size, pos) = (wf["size"].as_u64().unwrap(), wf["pos"].as_u64().unwrap());
    t.check(
        &format!("{name} size and pos"),
        (memfd.size, memfd.pos) == (size, pos),
        format!("{} {}", memfd.size, memfd.pos),
    );
    let pfns: Vec<u64> = wf["pfns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let (start, n) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
            start..start + n
        })
        .collect();
    let got: Vec<u64> = memfd.folios.iter().map(|f| f.pa.as_u64() >> 12).collect();
    t.check(&format!("{name} folio pfns = pagemap"), got == pfns, format!("{got:?} vs {pfns:?}"));
    let mut bytes = vec![0u8; size as usize];
    memfd.read_at(d, 0, &mut bytes).unwrap();
    t.check(
        &format!("{name} contents = pattern"),
        bytes == pattern(sname, token, writer_phase, 0, size as usize),
        "differ",
    );
    println!(
        "    {name}: {} folios, dirty {}, uptodate {}, list order {} in {} blocks",
        memfd.folios.len(),
        memfd.dirty(),
        memfd.uptodate(),
        memfd.list_order.get(),
        memfd.list_blocks.len()
    );
    // The writer, for the same bytes: descriptor (PAs aside) and entries'
    // flags and indexes.
    let saved = kho_memfd::preserve_bytes(wp, &bytes, pos, memfd.seals).unwrap();
    let (dd, dm) = (read(d, desc, 48), read_sim(m, saved.desc, 48));
    t.check(
        &format!("{name} writer descriptor (PA aside)"),
        dd[..32] == dm[..32] && dd[40..] == dm[40..],
        format!("{dd:02x?} vs {dm:02x?}"),
    );
    let mut flags_equal = true;
    for (i, f) in memfd.folios.iter().enumerate() {
        let e = read_sim(m, PhysAddr::new(saved.list_pages[i * 16 / 4096].as_u64() + (i * 16 % 4096) as u64), 16);
        let word = u64::from_le_bytes(e[..8].try_into().unwrap());
        flags_equal &= (word >> 52) as u16 == f.flags && u64::from_le_bytes(e[8..].try_into().unwrap()) == f.index;
    }
    t.check(&format!("{name} writer folio flags and indexes"), flags_equal, "differ");
}
