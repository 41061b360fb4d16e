//! Machine images: round trips, sparseness, another process, the
//! independent test vector (`tests/vectors/`), and corrupt files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kho_abi::{AbiError, KhoData, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem};
use kho_sim::{Machine, MachineConfig, SimError};

const PAGE: u64 = PAGE_SIZE as u64;

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("kho-sim-{}-{name}.img", std::process::id())))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn o(n: u64) -> Order {
    Order::new(n, "test").unwrap()
}

fn small_cfg() -> MachineConfig {
    MachineConfig::with_ram(PhysAddr::new(0x3_0000_0000), 32 << 20)
}

fn kho_data(m: &Machine) -> KhoData {
    KhoData { fdt_addr: m.ram_base().as_u64() + 0x5000, fdt_size: PAGE, scratch_addr: 0, scratch_size: 0 }
}

/// A machine with recognizable content: a few random blocks, one byte at
/// the very end.
fn populated() -> Machine {
    let m = Machine::new(small_cfg()).unwrap();
    for (i, order) in [0u64, 3, 0, 9, 1].into_iter().enumerate() {
        let pa = m.alloc_pages(o(order)).unwrap();
        m.fill_random(pa, o(order).checked_bytes().unwrap(), i as u64).unwrap();
    }
    m.write(m.ram_end().checked_sub(1).unwrap(), &[0x5a]).unwrap();
    m
}

fn whole_sum(m: &Machine) -> u64 {
    m.checksum(m.ram_base(), m.ram_size()).unwrap()
}

#[test]
fn round_trip_keeps_ram_and_kho_data() {
    let m = populated();
    let img = TempFile::new("round-trip");
    let kd = kho_data(&m);
    m.save_image_with(img.path(), Some(&kd)).unwrap();
    let loaded = Machine::load_image(img.path(), small_cfg()).unwrap();
    assert_eq!(loaded.ram_base(), m.ram_base());
    assert_eq!(loaded.ram_size(), m.ram_size());
    assert_eq!(loaded.config().ram_base, m.ram_base());
    assert_eq!(whole_sum(&loaded), whole_sum(&m));
    assert_eq!(loaded.kho_data(), Some(kd));
    assert!(loaded.in_early_boot());
    let pa = loaded.alloc_pages(Order::ZERO).unwrap();
    assert!(loaded.scratch()[0].overlaps(pa, PAGE));
    // Saving the loaded machine again (its own kho_data) gives the same.
    let again = TempFile::new("round-trip-2");
    loaded.free_pages(pa, Order::ZERO);
    loaded.save_image(again.path()).unwrap();
    let twice = Machine::load_image(again.path(), small_cfg()).unwrap();
    assert_eq!(whole_sum(&twice), whole_sum(&m));
    assert_eq!(twice.kho_data(), Some(kd));
}

#[test]
fn image_without_kho_data_has_no_note() {
    let m = populated();
    let img = TempFile::new("no-note");
    m.save_image(img.path()).unwrap();
    let loaded = Machine::load_image(img.path(), small_cfg()).unwrap();
    assert_eq!(loaded.kho_data(), None);
    assert_eq!(whole_sum(&loaded), whole_sum(&m));
}

#[test]
fn images_of_mostly_untouched_ram_are_small() {
    let cfg = MachineConfig::with_ram(PhysAddr::new(0x1_0000_0000), 1 << 30);
    let m = Machine::new(cfg.clone()).unwrap();
    // 4 MiB written in 64 KiB pieces spread over the whole GiB.
    let mut written = Vec::new();
    for i in 0..64u64 {
        let pa = PhysAddr::new(0x1_0000_0000 + i * (16 << 20) + (i % 7) * PAGE);
        m.fill_random(pa, 64 << 10, i).unwrap();
        written.push((pa, m.checksum(pa, 64 << 10).unwrap()));
    }
    let img = TempFile::new("sparse");
    m.save_image_with(img.path(), Some(&kho_data(&m))).unwrap();
    let meta = std::fs::metadata(img.path()).unwrap();
    assert!(meta.len() > 1 << 30, "the file spans all of RAM: {}", meta.len());
    let allocated = meta.blocks() * 512;
    assert!(allocated < 64 << 20, "image allocates {allocated} bytes on disk");
    let loaded = Machine::load_image(img.path(), cfg).unwrap();
    for (pa, sum) in written {
        assert_eq!(loaded.checksum(pa, 64 << 10).unwrap(), sum, "{pa}");
    }
    let mut page = vec![0xffu8; PAGE_SIZE];
    loaded.read(PhysAddr::new(0x1_0000_0000 + (8 << 20)), &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
}

/// The child half of `image_loads_in_another_process`: does nothing unless
/// started by it.
#[test]
fn child_process_loads_image() {
    let Ok(path) = std::env::var("KHO_SIM_CHILD_IMAGE") else { return };
    let m = Machine::load_image(Path::new(&path), small_cfg()).unwrap();
    let kd = m.kho_data().unwrap();
    let fdt = kd.fdt_addr;
    println!("KHO-CHILD sum={:x} fdt={:x} base={:x}", whole_sum(&m), fdt, m.ram_base().as_u64());
}

#[test]
fn image_loads_in_another_process() {
    let m = populated();
    let img = TempFile::new("two-process");
    let kd = kho_data(&m);
    m.save_image_with(img.path(), Some(&kd)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_process_loads_image", "--exact", "--nocapture", "--test-threads=1"])
        .env("KHO_SIM_CHILD_IMAGE", img.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness prints the test name on the same line: take from the
    // marker to the end of its line.
    let at = stdout.find("KHO-CHILD").unwrap_or_else(|| panic!("no child line: {stdout}"));
    let line = stdout[at..].lines().next().unwrap_or_default();
    let fdt = kd.fdt_addr;
    let expect = format!("KHO-CHILD sum={:x} fdt={:x} base={:x}", whole_sum(&m), fdt, m.ram_base().as_u64());
    assert_eq!(line, expect);
}

/// The independent writer's image, `tests/vectors/independent-v4.img.zst`.
fn vector_path() -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/independent-v4.img.zst");
    kho_sim::vector::unpack(&src, &Path::new(env!("CARGO_TARGET_TMPDIR")).join("kho-vectors"))
}

fn vector_cfg() -> MachineConfig {
    MachineConfig { scratch: vec![KhoScratch { addr: 0x8080_0000, size: 4 << 20 }], ..MachineConfig::default() }
}

#[test]
fn independent_vector_image_loads() {
    let m = Machine::load_image(&vector_path(), vector_cfg()).unwrap();
    assert_eq!(m.ram_base(), PhysAddr::new(0x8000_0000));
    assert_eq!(m.ram_size(), 16 << 20);
    let kd = m.kho_data().unwrap();
    let fdt = PhysAddr::new(kd.fdt_addr);
    assert!(!fdt.is_null());
    let mut magic = [0u8; 4];
    m.read(fdt, &mut magic).unwrap();
    assert_eq!(u32::from_be_bytes(magic), 0xd00d_feed, "an FDT at kho_data.fdt_addr");
    let blob = PhysAddr::new(0x8001_0000);
    let mut buf = [0u8; 64];
    m.read(blob, &mut buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8), "{buf:?}");
    assert!(m.in_early_boot());
    let pa = m.alloc_pages(Order::ZERO).unwrap();
    assert!(pa.as_u64() >= 0x8080_0000 && pa.as_u64() < 0x80c0_0000);

    // The README's preserved blocks: after the walk, the blob is intact and
    // unpreserved pages (the FDT, the tree at the top of RAM) are poisoned.
    let blocks = [
        (0x8020_0000, 9),
        (0x8040_0000, 0),
        (0x8040_1000, 0),
        (0x8040_2000, 1),
        (0x80c0_0000, 3),
        (0x80e0_0000, 0),
        (0x8001_0000, 0),
    ];
    m.boot_done(&mut blocks.iter().map(|&(a, n)| (PhysAddr::new(a), o(n)))).unwrap();
    assert_eq!(m.reserved_pages(), 526);
    m.read(blob, &mut buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, &b)| b == i as u8));
    assert!(m.is_poisoned(fdt));
    assert!(m.is_poisoned(PhysAddr::new(0x80ff_f000)));
    assert!(!m.is_poisoned(pa));
}

#[test]
fn scratch_must_lie_in_loaded_ram() {
    // The default scratch (at 4 GiB + 128 MiB) is not in the vector's RAM.
    let err = Machine::load_image(&vector_path(), MachineConfig::default()).unwrap_err();
    assert!(matches!(err, SimError::Config { .. }), "{err}");
}

// --- Hand-made images: gaps, zero fill and corruption ---

fn put16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// One note: name (NUL added, padded to 4), type, descriptor (padded).
fn note(name: &str, ty: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put32(&mut v, name.len() as u32 + 1);
    put32(&mut v, desc.len() as u32);
    put32(&mut v, ty);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.resize(v.len().next_multiple_of(4), 0);
    v.extend_from_slice(desc);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// A core file with `notes` (one PT_NOTE) and `loads` as `(paddr, memsz,
/// data)` (p_filesz = data length), data at page-aligned offsets.
fn core_file(notes: &[u8], loads: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let phnum = loads.len() + 1;
    let note_off = 64 + 56 * phnum as u64;
    let mut off = (note_off + notes.len() as u64).next_multiple_of(PAGE);
    let mut v = Vec::new();
    v.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    put16(&mut v, 4); // ET_CORE
    put16(&mut v, 62); // EM_X86_64
    put32(&mut v, 1);
    put64(&mut v, 0);
    put64(&mut v, 64);
    put64(&mut v, 0);
    put32(&mut v, 0);
    for x in [64, 56, phnum as u16, 0, 0, 0] {
        put16(&mut v, x);
    }
    let phdr = |v: &mut Vec<u8>, ty: u32, offset: u64, paddr: u64, filesz: u64, memsz: u64, align: u64| {
        put32(v, ty);
        put32(v, 6);
        for x in [offset, 0, paddr, filesz, memsz, align] {
            put64(v, x);
        }
    };
    phdr(&mut v, 4, note_off, 0, notes.len() as u64, notes.len() as u64, 4);
    let mut places = Vec::new();
    for (paddr, memsz, data) in loads {
        phdr(&mut v, 1, off, *paddr, data.len() as u64, *memsz, PAGE);
        places.push(off);
        off += (data.len() as u64).next_multiple_of(PAGE);
    }
    v.extend_from_slice(notes);
    for ((_, _, data), at) in loads.iter().zip(places) {
        v.resize(at as usize, 0);
        v.extend_from_slice(data);
    }
    v
}

fn kho_note(kd: &KhoData) -> Vec<u8> {
    let bytes: Vec<u8> =
        [kd.fdt_addr, kd.fdt_size, kd.scratch_addr, kd.scratch_size].iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut v = note("CORE", 1, &[0; 16]);
    v.extend(note("KHO", 1, &bytes));
    v
}

fn gapped() -> Vec<u8> {
    let kd = KhoData { fdt_addr: 0x40_1000, fdt_size: PAGE, scratch_addr: 0, scratch_size: 0 };
    let mut first = vec![0u8; 2 * PAGE_SIZE];
    first[..4].copy_from_slice(b"low!");
    let mut second = vec![0u8; PAGE_SIZE + 100];
    second[PAGE_SIZE..PAGE_SIZE + 5].copy_from_slice(b"high!");
    // RAM: 4 MiB at 4 MiB (data in the first 2 pages), 4 MiB at 12 MiB
    // (data in the first page and a bit).
    core_file(&kho_note(&kd), &[(0xc0_0000, 4 << 20, second), (0x40_0000, 4 << 20, first)])
}

fn gapped_cfg() -> MachineConfig {
    MachineConfig { scratch: vec![KhoScratch { addr: 0x60_0000, size: 1 << 20 }], ..MachineConfig::default() }
}

fn load_bytes(name: &str, bytes: &[u8], cfg: MachineConfig) -> Result<Machine, SimError> {
    let img = TempFile::new(name);
    std::fs::write(img.path(), bytes).unwrap();
    Machine::load_image(img.path(), cfg)
}

#[test]
fn gaps_between_segments_are_not_ram() {
    let m = load_bytes("gapped", &gapped(), gapped_cfg()).unwrap();
    assert_eq!((m.ram_base(), m.ram_end()), (PhysAddr::new(0x40_0000), PhysAddr::new(0x100_0000)));
    assert_eq!(m.ram_ranges(), vec![(PhysAddr::new(0x40_0000), 4 << 20), (PhysAddr::new(0xc0_0000), 4 << 20)]);
    assert_eq!(m.kho_data().map(|k| k.fdt_addr), Some(0x40_1000));
    let mut buf = [0u8; 5];
    m.read(PhysAddr::new(0x40_0000), &mut buf[..4]).unwrap();
    assert_eq!(&buf[..4], b"low!");
    m.read(PhysAddr::new(0xc0_1000), &mut buf).unwrap();
    assert_eq!(&buf, b"high!");
    // Zero fill beyond p_filesz.
    m.read(PhysAddr::new(0xff_fffb), &mut buf).unwrap();
    assert_eq!(buf, [0; 5]);
    let gap = PhysAddr::new(0x80_0000);
    assert_eq!(m.phys_to_virt(gap, 1), Err(AbiError::NotRam { pa: gap, len: 1 }));
    assert!(m.phys_to_virt(PhysAddr::new(0x7f_f000), 0x1001).is_err());
    assert!(m.phys_to_virt(PhysAddr::new(0xbf_ffff), 2).is_err());
    assert!(m.phys_to_virt(PhysAddr::new(0x7f_f000), 0x1000).is_ok());
    // boot_done poisons only RAM; blocks in the gap are refused.
    assert!(m.boot_done(&mut [(gap, Order::ZERO)].into_iter()).is_err());
    m.boot_done(&mut [(PhysAddr::new(0xc0_1000), Order::ZERO)].into_iter()).unwrap();
    assert!(m.is_poisoned(PhysAddr::new(0x40_0000)));
    assert!(!m.is_poisoned(PhysAddr::new(0xc0_1000)));
    assert!(!m.is_poisoned(gap));
    assert_eq!(m.available_pages(), 2048 - 1);
    // A gapped machine saves and loads back the same.
    let img = TempFile::new("gapped-again");
    m.save_image(img.path()).unwrap();
    let again = Machine::load_image(img.path(), gapped_cfg()).unwrap();
    assert_eq!(again.ram_ranges(), m.ram_ranges());
    for (pa, size) in m.ram_ranges() {
        assert_eq!(again.checksum(pa, size).unwrap(), m.checksum(pa, size).unwrap());
    }
}

fn image_error(name: &str, bytes: &[u8]) -> (&'static str, u64) {
    match load_bytes(name, bytes, gapped_cfg()) {
        Err(SimError::Image { what, offset }) => (what, offset),
        Err(e) => panic!("{name}: not an image error: {e}"),
        Ok(_) => panic!("{name}: loaded"),
    }
}

#[test]
fn corrupt_images_are_typed_errors() {
    let good = gapped();
    assert!(load_bytes("good", &good, gapped_cfg()).is_ok());
    let patched = |at: usize, bytes: &[u8]| {
        let mut v = good.clone();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    };
    assert_eq!(image_error("empty", &[]).0, "bad ELF magic");
    assert_eq!(image_error("magic", &patched(0, b"\x7fELG")), ("bad ELF magic", 0));
    assert_eq!(image_error("header", &good[..40]).0, "truncated ELF header");
    assert_eq!(image_error("class", &patched(4, &[1])).0, "not ELF64");
    assert_eq!(image_error("endian", &patched(5, &[2])).0, "not little-endian");
    assert_eq!(image_error("type", &patched(16, &[1, 0])).0, "not a core file (e_type)");
    assert_eq!(image_error("phentsize", &patched(54, &[55, 0])).0, "program header size is not 56");
    assert_eq!(image_error("phnum", &patched(56, &[0, 0])).0, "no PT_LOAD segment");
    assert_eq!(image_error("phdrs", &good[..100]).0, "program headers beyond end of file");
    // Data of the last segment cut short.
    assert_eq!(image_error("data", &good[..good.len() - 50]), ("segment data beyond end of file", 64 + 56 * 2));
    // Second PT_LOAD (header at 176): paddr, filesz, memsz patched.
    assert_eq!(
        image_error("unaligned", &patched(176 + 24, &0x40_0800u64.to_le_bytes())).0,
        "PT_LOAD not page aligned or empty"
    );
    assert_eq!(
        image_error("filesz", &patched(176 + 32, &(8u64 << 20).to_le_bytes())).0,
        "segment data beyond end of file"
    );
    assert_eq!(
        image_error("memsz", &patched(176 + 40, &(0x1000u64).to_le_bytes())).0,
        "PT_LOAD p_filesz above p_memsz"
    );
    assert_eq!(image_error("overlap", &patched(176 + 24, &0xe0_0000u64.to_le_bytes())).0, "PT_LOAD segments overlap");
    assert_eq!(
        image_error("overflow", &patched(176 + 24, &0xffff_ffff_fff0_0000u64.to_le_bytes())).0,
        "PT_LOAD end overflows"
    );
    assert_eq!(image_error("span", &patched(176 + 24, &(1u64 << 50).to_le_bytes())).0, "RAM spans more than 1 TiB");
    assert_eq!(
        image_error("zero", &patched(176 + 24, &0u64.to_le_bytes())).0,
        "RAM at physical address 0 is not supported"
    );
    // No PT_LOAD at all: both turned into PT_NULL.
    let mut none = patched(120, &[0, 0, 0, 0]);
    none[176..180].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(image_error("no-load", &none).0, "no PT_LOAD segment");
    assert_eq!(image_error("note-align", &patched(64 + 48, &[5])).0, "PT_NOTE alignment not 4 or 8");

    // Notes: a KHO descriptor that is too short, a truncated note, two KHO notes.
    let load = vec![(0x40_0000, 4 << 20, vec![1u8; 10])];
    let short = core_file(&note("KHO", 1, &[0; 16]), &load);
    assert_eq!(image_error("note-short", &short).0, "KHO note descriptor is not 32 bytes");
    let mut cut = note("KHO", 1, &[0; 32]);
    cut.truncate(30);
    assert_eq!(image_error("note-cut", &core_file(&cut, &load)).0, "malformed note");
    let two = [note("KHO", 1, &[1; 32]), note("KHO", 1, &[2; 32])].concat();
    assert_eq!(image_error("note-two", &core_file(&two, &load)).0, "more than one KHO note");
    // Other notes, and KHO notes of another type, are ignored.
    let other = [note("KHO", 2, &[0; 3]), note("QEMU", 1, &[0; 32])].concat();
    let m = load_bytes("note-other", &core_file(&other, &load), gapped_cfg()).unwrap();
    assert_eq!(m.kho_data(), None);
}

#[test]
fn missing_file_is_io_error() {
    let err = Machine::load_image(Path::new("/nonexistent/kho-sim.img"), MachineConfig::default()).unwrap_err();
    assert!(matches!(err, SimError::Io(_)));
}
