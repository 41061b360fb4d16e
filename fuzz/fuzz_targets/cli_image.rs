//! `kho inspect`'s whole loading path on hostile machine images: ELF
//! headers, RAM segments, the root scan, choosing among candidate roots,
//! the scratch search and the import, plus the raw-FDT input.
//!
//! Input: a list of patches applied to a small valid image built once (a
//! 256 KiB machine with a handover, saved without the KHO note so the scan
//! and the candidate choice run): each patch is `[where: u8][offset: u16
//! LE][len: u8][bytes]`, `where` picking the ELF headers, the root FDT's
//! page, the tree's pages or anywhere. An input starting with `0xff` is a
//! raw FDT file instead. Whatever the bytes, loading must end in a report
//! or a typed failure.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::LazyLock;

use kho_abi::{Order, PhysAddr};
use kho_cli::find::FindOptions;
use kho_cli::image::OpenOptions;
use kho_cli::load::{Request, load_handover};
use kho_cli::progress::Progress;
use kho_sim::{Machine, MachineConfig};
use kho_track::{Tracker, TrackerOptions};

/// The base image and where its interesting parts are in the file.
struct Base {
    bytes: Vec<u8>,
    fdt_off: usize,
    ram_off: usize,
}

const RAM_BASE: u64 = 0x4000_0000;
/// Small: every input writes the whole image and the loader reads it.
const RAM_SIZE: u64 = 256 << 10;

static BASE: LazyLock<Base> = LazyLock::new(|| {
    let m = Machine::new(MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE)).expect("machine");
    let mut t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).expect("tracker");
    for o in [0u32, 0, 1, 3] {
        let pa = kho_abi::PageAlloc::alloc_pages(&m, Order::new(u64::from(o), "order").unwrap()).unwrap();
        m.fill_random(pa, 4096 << o, u64::from(o)).unwrap();
        t.preserve_folio(pa, Order::new(u64::from(o), "order").unwrap()).unwrap();
    }
    let blob = kho_abi::PageAlloc::alloc_pages(&m, Order::ZERO).unwrap();
    m.write(blob, b"blob").unwrap();
    t.preserve_folio(blob, Order::ZERO).unwrap();
    t.add_subtree("blob", blob, 4).unwrap();
    let data = t.finish().unwrap();
    let path = std::env::temp_dir().join(format!("kho-fuzz-base-{}.img", std::process::id()));
    m.save_image_with(&path, None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    // RAM is the file's last RAM_SIZE bytes (one PT_LOAD after the headers).
    let ram_off = bytes.len() - RAM_SIZE as usize;
    Base { fdt_off: ram_off + (data.fdt_addr - RAM_BASE) as usize, ram_off, bytes }
});

/// The file each input is written to: in memory where the system has a
/// tmpfs at `/dev/shm`.
fn scratch_file() -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    dir.join(format!("kho-fuzz-cli-{}.img", std::process::id()))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = scratch_file();
    let bytes = if data.first() == Some(&0xff) {
        data[1..].to_vec()
    } else {
        let base = &*BASE;
        let mut img = base.bytes.clone();
        let mut rest = data;
        while rest.len() >= 4 {
            let (which, off, len) = (rest[0], u16::from_le_bytes([rest[1], rest[2]]) as usize, rest[3] as usize);
            rest = &rest[4..];
            let patch = &rest[..len.min(rest.len())];
            rest = &rest[patch.len()..];
            let at = match which % 4 {
                0 => off % base.ram_off,
                1 => base.fdt_off + off % 4096,
                2 => base.ram_off + off as usize * 8 % RAM_SIZE as usize,
                _ => off * 32 % img.len(),
            };
            let end = (at + patch.len()).min(img.len());
            img[at..end].copy_from_slice(&patch[..end - at]);
        }
        img
    };
    // Overwritten in place, not truncated first: the file keeps its pages
    // from one input to the next.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).unwrap();
    f.write_all(&bytes).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
    drop(f);
    if bytes.starts_with(&0xd00d_feed_u32.to_be_bytes()) {
        let _ = kho_cli::fdtfile::inspect_fdt(&path);
        return;
    }
    let req = Request {
        path: path.clone(),
        open: OpenOptions { max_order: Order::new(18, "max order").unwrap(), ram: Vec::new() },
        find: FindOptions::default(),
        want_runs: true,
    };
    let _ = load_handover(&req, &Progress::new(false));
});
