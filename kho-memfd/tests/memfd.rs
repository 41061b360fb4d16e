//! memfds carried across a simulated kexec: round trips, holes and large
//! folios, the bytes the writer leaves, and every fault a reader must
//! refuse, each leaving nothing claimed.

use kho_abi::{KhoData, Order, PAGE_SIZE, PhysAddr, WithTracker};
use kho_memfd::abi::{F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, FOLIO_DIRTY, FOLIO_UPTODATE, FolioSer, MemfdSer};
use kho_memfd::{Fault, FolioSpec, MemfdError, PreservedMemfd, inspect, preserve, preserve_bytes, restore};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use zerocopy::{FromBytes, IntoBytes};

const PAGE: u64 = PAGE_SIZE as u64;

fn machine() -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, 32 << 20)).unwrap()
}

fn handover(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    (m2, ModelTracker::incoming(blocks))
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = SmallRng::seed_from_u64(seed);
    (0..n).map(|_| r.random()).collect()
}

/// A kernel A holding one memfd of `n` random bytes.
fn kernel_a(n: usize) -> (Machine, ModelTracker, PreservedMemfd, Vec<u8>) {
    let m = machine();
    let t = ModelTracker::new();
    let data = bytes(n, n as u64);
    let saved = preserve_bytes(&WithTracker::new(&m, &t), &data, 123, F_SEAL_SEAL | F_SEAL_GROW).unwrap();
    (m, t, saved, data)
}

fn entry_pa(saved: &PreservedMemfd, i: u64) -> PhysAddr {
    PhysAddr::new(saved.list_pages[(i * 16 / PAGE) as usize].as_u64() + (i * 16) % PAGE)
}

fn read<T: FromBytes + IntoBytes>(m: &Machine, pa: PhysAddr) -> T {
    let mut v = T::new_zeroed();
    m.read(pa, v.as_mut_bytes()).unwrap();
    v
}

fn write<T: IntoBytes + zerocopy::Immutable>(m: &Machine, pa: PhysAddr, v: &T) {
    m.write(pa, v.as_bytes()).unwrap();
}

fn refuse(m: Machine, t: &ModelTracker, desc: PhysAddr) -> MemfdError {
    let (m2, t2) = handover(m, t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, desc).unwrap_err();
    assert!(t2.claimed().is_empty(), "{e}: left {:?} claimed", t2.claimed());
    assert_eq!(inspect(&p2, desc).unwrap_err(), e);
    assert!(t2.claimed().is_empty());
    e
}

#[test]
fn a_memfd_round_trips() {
    // 300 pages and a tail: 301 folios, a list of two pages.
    let n = 300 * PAGE_SIZE + 1000;
    let (m, t, saved, data) = kernel_a(n);
    assert_eq!(saved.list_pages.len(), 2);
    let preserved = t.blocks().len();
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let seen = inspect(&p2, saved.desc).unwrap();
    assert!(t2.claimed().is_empty());
    let r = restore(&p2, saved.desc).unwrap();
    let memfd = r.memfd();
    assert_eq!(memfd, &seen);
    assert_eq!((memfd.size, memfd.pos, memfd.seals), (n as u64, 123, F_SEAL_SEAL | F_SEAL_GROW));
    assert_eq!((memfd.folios.len(), memfd.pages(), memfd.dirty(), memfd.uptodate()), (301, 301, 301, 301));
    for (i, f) in memfd.folios.iter().enumerate() {
        assert_eq!((f.pa, f.order, f.index), (saved.folios[i].0, Order::ZERO, i as u64));
    }
    assert_eq!(memfd.list_blocks, saved.list_pages);
    assert_eq!(memfd.list_chunks.len(), 1);
    let mut back = vec![0u8; n];
    assert_eq!(memfd.read_at(&p2, 0, &mut back).unwrap(), n);
    assert_eq!(back, data);
    // Unaligned windows, and reads stopping at the size.
    let mut w = vec![0u8; 10_000];
    assert_eq!(memfd.read_at(&p2, 4000, &mut w).unwrap(), 10_000);
    assert_eq!(w, data[4000..14_000]);
    assert_eq!(memfd.read_at(&p2, n as u64 - 5, &mut w).unwrap(), 5);
    assert!(matches!(memfd.read_at(&p2, n as u64 + 1, &mut w), Err(MemfdError::Beyond { .. })));
    // Everything preserved is claimed (descriptor, list, chunk, folios);
    // the chunk page was already freed, as the kernel frees it.
    assert_eq!(t2.claimed().len(), preserved);
    let kept = r.finish(&p2);
    assert_eq!(m2.reserved_pages(), 301, "only the folios are left, now the file's");
    for f in &kept.folios {
        kho_abi::PageAlloc::free_pages(&p2, f.pa, f.order);
    }
    assert_eq!(m2.reserved_pages(), 0);
}

#[test]
fn holes_and_large_folios() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let big = bytes(4 * PAGE_SIZE, 1);
    let small = bytes(100, 2);
    let o2 = Order::new(2, "o").unwrap();
    let specs = [
        FolioSpec { index: 4, order: o2, data: &big, flags: FOLIO_DIRTY | FOLIO_UPTODATE },
        FolioSpec { index: 10, order: Order::ZERO, data: &small, flags: FOLIO_UPTODATE },
    ];
    let size = 11 * PAGE + 7;
    let saved = preserve(&p, size, 0, F_SEAL_SHRINK, &specs).unwrap();
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let memfd = inspect(&p2, saved.desc).unwrap();
    assert_eq!(
        memfd.folios.iter().map(|f| (f.index, f.order.get(), f.flags)).collect::<Vec<_>>(),
        [(4, 2, 3), (10, 0, 2)]
    );
    assert_eq!((memfd.dirty(), memfd.uptodate(), memfd.pages()), (1, 2, 5));
    let segs: Vec<(u64, u64)> = memfd.segments().map(|(o, _, l)| (o, l)).collect();
    assert_eq!(segs, [(4 * PAGE, 4 * PAGE), (10 * PAGE, PAGE)]);
    let mut all = vec![0xffu8; size as usize];
    memfd.read_at(&p2, 0, &mut all).unwrap();
    let mut want = vec![0u8; size as usize];
    want[4 * PAGE_SIZE..8 * PAGE_SIZE].copy_from_slice(&big);
    want[10 * PAGE_SIZE..10 * PAGE_SIZE + 100].copy_from_slice(&small);
    assert_eq!(all, want, "holes read as zeros");
}

#[test]
fn the_writer_leaves_the_kernels_bytes() {
    let (m, _t, saved, _) = kernel_a(2 * PAGE_SIZE + 1);
    let mut raw = [0u8; 48];
    m.read(saved.desc, &mut raw).unwrap();
    assert_eq!(raw[0..8], 123u64.to_ne_bytes());
    assert_eq!(raw[8..16], (2 * PAGE + 1).to_ne_bytes());
    assert_eq!(raw[16..20], (F_SEAL_SEAL | F_SEAL_GROW).to_ne_bytes());
    assert_eq!(raw[20..24], 0u32.to_ne_bytes());
    assert_eq!(raw[24..32], 3u64.to_ne_bytes());
    assert_eq!(raw[40..44], 1u32.to_ne_bytes(), "one list page");
    assert_eq!(raw[44..46], 1u16.to_ne_bytes(), "flag ALLOC");
    assert_eq!(raw[46..48], 0u16.to_ne_bytes(), "order 0");
    for i in 0..3u64 {
        let mut e = [0u8; 16];
        m.read(entry_pa(&saved, i), &mut e).unwrap();
        let word = (saved.folios[i as usize].0.as_u64() >> 12) | (3 << 52);
        assert_eq!(e[..8], word.to_ne_bytes());
        assert_eq!(e[8..], i.to_ne_bytes());
    }
}

#[test]
fn an_empty_memfd() {
    let m = machine();
    let t = ModelTracker::new();
    let saved = preserve_bytes(&WithTracker::new(&m, &t), &[], 0, 0).unwrap();
    assert_eq!(t.blocks().len(), 1, "the descriptor only");
    let (m2, t2) = handover(m, &t);
    let memfd = inspect(&WithTracker::new(&m2, &t2), saved.desc).unwrap();
    assert_eq!((memfd.size, memfd.folios.len()), (0, 0));
}

#[test]
fn descriptor_faults() {
    type Edit = fn(&mut MemfdSer);
    let cases: [(&str, Edit); 6] = [
        ("size", |d| d.size = (u64::from(u32::MAX) + 1) * PAGE),
        ("seals", |d| d.seals = 0x40),
        ("flags", |d| d.flags = 1),
        ("nr_folios", |d| d.nr_folios += 300), // the list is shorter than nr_folios
        ("nr_folios", |d| d.nr_folios = 0),
        ("nr_folios", |d| d.nr_folios = u64::MAX),
    ];
    for (field, f) in cases {
        let (m, t, saved, _) = kernel_a(5 * PAGE_SIZE);
        let mut d: MemfdSer = read(&m, saved.desc);
        f(&mut d);
        write(&m, saved.desc, &d);
        let e = refuse(m, &t, saved.desc);
        assert!(matches!(e, MemfdError::Descriptor { field: f, .. } if f == field), "{field}: {e}");
    }
    let (m, t, saved, _) = kernel_a(PAGE_SIZE);
    let mut d: MemfdSer = read(&m, saved.desc);
    d.seals = 0x41;
    write(&m, saved.desc, &d);
    let e = refuse(m, &t, saved.desc);
    assert_eq!(e.to_string(), format!("memfd descriptor at {}, field seals: unknown bits 0x40", saved.desc));
    assert_eq!(kho_abi::ToErrno::errno(&e), kho_abi::Errno::OpNotSupp);
    // The descriptor itself misaligned, unpreserved, outside RAM.
    let (m, t, saved, _) = kernel_a(PAGE_SIZE);
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let plus8 = PhysAddr::new(saved.desc.as_u64() + 8);
    assert!(matches!(restore(&p2, plus8), Err(MemfdError::Descriptor { fault: Fault::Misaligned, .. })));
    let foreign = PhysAddr::new(m2.ram_end().as_u64() - PAGE);
    assert!(matches!(restore(&p2, foreign), Err(MemfdError::Descriptor { fault: Fault::NotPreserved, .. })));
    assert!(matches!(restore(&p2, PhysAddr::new(0x7000_0000_0000)), Err(MemfdError::Descriptor { .. })));
    assert!(t2.claimed().is_empty());
}

#[test]
fn folio_list_chain_faults() {
    // The list's first chunk misaligned, and a chunk linking to itself.
    let (m, t, saved, _) = kernel_a(3 * PAGE_SIZE);
    let mut d: MemfdSer = read(&m, saved.desc);
    d.folios_first += 8;
    write(&m, saved.desc, &d);
    assert!(matches!(refuse(m, &t, saved.desc), MemfdError::List { .. }));
    let (m, t, saved, _) = kernel_a(3 * PAGE_SIZE);
    let d: MemfdSer = read(&m, saved.desc);
    write(&m, PhysAddr::new(d.folios_first), &{ d.folios_first });
    let e = refuse(m, &t, saved.desc);
    assert!(matches!(e, MemfdError::List { .. }), "{e}");
    // A list whose total_pages is larger than its chain.
    let (m, t, saved, _) = kernel_a(3 * PAGE_SIZE);
    let mut d: MemfdSer = read(&m, saved.desc);
    d.nr_folios = 300;
    d.folios_total_pages = 2;
    write(&m, saved.desc, &d);
    assert!(matches!(refuse(m, &t, saved.desc), MemfdError::List { .. }));
}

#[test]
fn folio_faults() {
    type Edit = fn(&Machine, &PreservedMemfd) -> FolioSer;
    let cases: [(&str, u64, Edit); 7] = [
        // pfn beyond any RAM
        ("pfn", 1, |_, _| FolioSer::new((1 << 52) - 1, 3, 1)),
        // pfn of a RAM page nobody preserved
        ("pfn", 1, |m, _| FolioSer::new((m.ram_end().as_u64() - PAGE) >> 12, 3, 1)),
        // the same folio twice
        ("pfn", 1, |_, s| FolioSer::new(s.folios[0].0.as_u64() >> 12, 3, 1)),
        // a folio list page as a folio (claimed already)
        ("pfn", 1, |_, s| FolioSer::new(s.list_pages[0].as_u64() >> 12, 3, 1)),
        // unknown folio flag
        ("flags", 2, |_, s| FolioSer::new(s.folios[2].0.as_u64() >> 12, 4 | 3, 2)),
        // index not ascending
        ("index", 2, |_, s| FolioSer::new(s.folios[2].0.as_u64() >> 12, 3, 1)),
        // index beyond the size
        ("index", 3, |_, s| FolioSer::new(s.folios[3].0.as_u64() >> 12, 3, 4)),
    ];
    for (field, entry, edit) in cases {
        let (m, t, saved, _) = kernel_a(4 * PAGE_SIZE);
        let e = edit(&m, &saved);
        write(&m, entry_pa(&saved, entry), &e);
        match refuse(m, &t, saved.desc) {
            MemfdError::Folio { entry: got, field: f, .. } => assert_eq!((got, f), (entry, field)),
            other => panic!("{field}: {other}"),
        }
    }
}
