//! reserve_mem regions carried across a simulated kexec, the FDT bytes the
//! writer lays out, and every fault, each leaving nothing claimed.

use kho_abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, WithTracker};
use kho_memblock::{Fault, MemblockBlob, MemblockError, fdt_bytes, inspect, restore, write};
use kho_probe::fdt::SwFdt;
use kho_sim::{Machine, MachineConfig, ModelTracker};

const PAGE: u64 = PAGE_SIZE as u64;
const MIB: u64 = 1 << 20;

fn machine() -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, 64 * MIB)).unwrap()
}

fn kexec(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).unwrap();
    (m2, ModelTracker::incoming(blocks))
}

/// Kernel A with a 4 MiB region on a 2 MiB (not 4 MiB) boundary and a
/// 64 KiB one.
fn kernel_a() -> (Machine, ModelTracker, MemblockBlob, PhysAddr, PhysAddr) {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let o10 = Order::new(10, "o").unwrap();
    let a = p.alloc_pages(o10).unwrap();
    let b = p.alloc_pages(o10).unwrap();
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(hi.as_u64(), lo.as_u64() + 4 * MIB, "adjacent blocks from the buddy allocator");
    let big = PhysAddr::new(lo.as_u64() + 2 * MIB);
    let small = p.alloc_pages(Order::new(4, "o").unwrap()).unwrap();
    let blob = write(&p, &[("trace", big, 4 * MIB), ("oops", small, 64 << 10)]).unwrap();
    (m, t, blob, big, small)
}

/// Replaces the blob's FDT with `dtb` (before kexec) and expects refusal.
fn refuse_with(dtb: &[u8]) -> MemblockError {
    let (m, t, blob, _, _) = kernel_a();
    m.write(blob.pa, &vec![0; PAGE_SIZE]).unwrap();
    m.write(blob.pa, dtb).unwrap();
    refuse(m, &t, blob.pa, dtb.len() as u64)
}

fn refuse(m: Machine, t: &ModelTracker, pa: PhysAddr, size: u64) -> MemblockError {
    let (m2, t2) = kexec(m, t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, pa, size).unwrap_err();
    assert!(t2.claimed().is_empty(), "{e}: {:?} left claimed", t2.claimed());
    assert_eq!(inspect(&p2, pa, size).unwrap_err(), e);
    e
}

/// An FDT with root compatible `root` and the given region nodes
/// `(name, compatible, start bytes, size bytes)`.
/// A region node: name, compatible, start bytes, size bytes.
type NodeSpec<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);

fn dtb(root: &[u8], nodes: &[NodeSpec<'_>]) -> Vec<u8> {
    let mut w = SwFdt::new();
    w.begin_node("");
    w.property("compatible", root);
    for &(name, compat, start, size) in nodes {
        w.begin_node(name);
        w.property("compatible", compat);
        if let Some(s) = start {
            w.property("start", s);
        }
        if let Some(s) = size {
            w.property("size", s);
        }
        w.end_node();
    }
    w.end_node();
    w.finish()
}

#[test]
fn regions_round_trip() {
    let (m, t, blob, big, small) = kernel_a();
    let o9 = Order::new(9, "o").unwrap();
    let preserved = t.blocks().len();
    assert_eq!(preserved, 4, "two order-9 blocks, one order-4 block, the blob");
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let mb = inspect(&p2, blob.pa, blob.size).unwrap();
    assert!(t2.claimed().is_empty());
    assert_eq!(mb.regions.len(), 2);
    assert_eq!((mb.regions[0].name.as_str(), mb.regions[0].start, mb.regions[0].size), ("trace", big, 4 * MIB));
    assert_eq!(mb.regions[0].blocks, [(big, o9), (PhysAddr::new(big.as_u64() + 2 * MIB), o9)]);
    assert_eq!((mb.regions[1].name.as_str(), mb.regions[1].start, mb.regions[1].size), ("oops", small, 64 << 10));
    let r = restore(&p2, blob.pa, blob.size).unwrap();
    assert_eq!(r.memblock(), &mb);
    assert_eq!(t2.claimed().len(), preserved);
    r.finish(&p2);
    assert_eq!(m2.reserved_pages(), 1024 + 16, "the regions stay reserved, the blob is freed");
}

#[test]
fn fdt_bytes_are_libfdts() {
    let bytes = fdt_bytes(&[("r", PhysAddr::new(0x1234_5000), 0x40_0000)]);
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(be(0), 0xd00d_feed);
    assert_eq!(be(4) as usize, bytes.len());
    assert_eq!((be(8), be(16), be(20), be(24), be(28)), (64, 48, 17, 16, 0));
    // Strings: the newest first.
    let (off, len) = (be(12) as usize, be(32) as usize);
    assert_eq!(&bytes[off..off + len], b"size\0start\0compatible\0");
    // Structure: root, its compatible, node "r", compatible, start, size.
    let s = &bytes[64..off];
    assert_eq!(&s[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(&s[8..20], &[0, 0, 0, 3, 0, 0, 0, 12, 0, 0, 0, 11]);
    assert_eq!(&s[20..32], b"memblock-v1\0");
    assert_eq!(&s[32..40], &[0, 0, 0, 1, b'r', 0, 0, 0]);
    assert_eq!(&s[52..68], b"reserve-mem-v1\0\0");
    // start: PROP, 8, offset 5, raw native-endian value.
    assert_eq!(&s[68..80], &[0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5]);
    assert_eq!(&s[80..88], &0x1234_5000u64.to_ne_bytes());
    assert_eq!(&s[88..100], &[0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0]);
    assert_eq!(&s[100..108], &0x40_0000u64.to_ne_bytes());
    assert_eq!(&s[108..], &[0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 9]);
}

#[test]
fn compatible_faults() {
    let start = 0x1_0000_0000u64.to_ne_bytes();
    let size = PAGE.to_ne_bytes();
    for root in [&b"memblock-v2\0"[..], b"memblock-v1", b"memblock-v1\0\0", b""] {
        let e = refuse_with(&dtb(root, &[]));
        assert!(matches!(&e, MemblockError::Compatible { node, .. } if node == "/"), "{e}");
    }
    let e = refuse_with(&dtb(b"memblock-v1\0", &[("r", b"reserve-mem-v2\0", Some(&start), Some(&size))]));
    assert!(matches!(&e, MemblockError::Compatible { node, expected: "reserve-mem-v1", .. } if node == "r"), "{e}");
}

#[test]
fn region_faults() {
    let (m, _, _, _, _) = kernel_a();
    let ram = m.ram_base().as_u64();
    drop(m);
    let v = |x: u64| x.to_ne_bytes();
    type Case = (&'static str, Option<Vec<u8>>, Option<Vec<u8>>, Fault);
    let cases: Vec<Case> = vec![
        ("start", None, Some(v(PAGE).to_vec()), Fault::BadProperty { len: 8 }),
        ("start", Some(vec![0; 4]), Some(v(PAGE).to_vec()), Fault::BadProperty { len: 8 }),
        ("size", Some(v(ram).to_vec()), None, Fault::BadProperty { len: 8 }),
        ("start", Some(v(ram + 8).to_vec()), Some(v(PAGE).to_vec()), Fault::Misaligned(ram + 8)),
        ("size", Some(v(ram).to_vec()), Some(v(0).to_vec()), Fault::Zero),
        ("size", Some(v(ram).to_vec()), Some(v(100).to_vec()), Fault::Misaligned(100)),
        (
            "size",
            Some(v(ram).to_vec()),
            Some(v(u64::MAX - 4095).to_vec()),
            Fault::OutOfRange { value: u64::MAX - 4095, max: u64::MAX - ram },
        ),
    ];
    for (field, start, size, fault) in cases {
        let e = refuse_with(&dtb(b"memblock-v1\0", &[("r", b"reserve-mem-v1\0", start.as_deref(), size.as_deref())]));
        match e {
            MemblockError::Region { index: 0, field: f, fault: got, .. } => assert_eq!((f, got), (field, fault)),
            e => panic!("{field}: {e}"),
        }
    }
    // Outside RAM, and RAM nobody preserved.
    let e = refuse_with(&dtb(b"memblock-v1\0", &[("r", b"reserve-mem-v1\0", Some(&v(0x1000)), Some(&v(PAGE)))]));
    assert!(matches!(e, MemblockError::Region { field: "start", fault: Fault::NotRam(_), .. }), "{e}");
    let top = ram + 64 * MIB - 2 * PAGE;
    let e = refuse_with(&dtb(b"memblock-v1\0", &[("r", b"reserve-mem-v1\0", Some(&v(top)), Some(&v(2 * PAGE)))]));
    assert!(matches!(e, MemblockError::Region { field: "start", fault: Fault::NotPreserved(_), .. }), "{e}");
}

#[test]
fn duplicate_and_overlapping_regions() {
    let (m, t, blob, big, _) = kernel_a();
    let v = |x: u64| x.to_ne_bytes();
    let two = |n2: &str, s2: u64| {
        dtb(
            b"memblock-v1\0",
            &[
                ("a", b"reserve-mem-v1\0", Some(&v(big.as_u64())), Some(&v(2 * MIB))),
                (n2, b"reserve-mem-v1\0", Some(&v(s2)), Some(&v(2 * MIB))),
            ],
        )
    };
    let d = two("a", big.as_u64() + 2 * MIB);
    m.write(blob.pa, &d).unwrap();
    let e = refuse(m, &t, blob.pa, d.len() as u64);
    assert!(
        matches!(e, MemblockError::Region { index: 1, field: "name", fault: Fault::Duplicate { first: 0 }, .. }),
        "{e}"
    );
    let e = refuse_with(&two("b", big.as_u64()));
    assert!(matches!(e, MemblockError::Region { index: 1, fault: Fault::Overlaps { other: 0 }, .. }), "{e}");
}

#[test]
fn blob_faults() {
    let (m, t, blob, _, _) = kernel_a();
    // totalsize above the blob size; a header that is not an FDT.
    let mut d = fdt_bytes(&[]);
    let len = d.len() as u64;
    d[4..8].copy_from_slice(&(PAGE as u32 * 2).to_be_bytes());
    m.write(blob.pa, &d).unwrap();
    let e = refuse(m, &t, blob.pa, len);
    assert!(matches!(e, MemblockError::Blob { field: "totalsize", .. }), "{e}");
    let mut bad = fdt_bytes(&[]);
    bad[0] = 0;
    let e = refuse_with(&bad);
    assert!(matches!(e, MemblockError::Fdt { .. }), "{e}");
    let (m, t, blob, _, _) = kernel_a();
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    assert!(matches!(restore(&p2, blob.pa, 39), Err(MemblockError::Blob { field: "blob-size", .. })));
    assert!(matches!(restore(&p2, blob.pa, 8 * MIB), Err(MemblockError::Blob { field: "blob-size", .. })));
    let foreign = PhysAddr::new(m2.ram_end().as_u64() - PAGE);
    assert!(matches!(restore(&p2, foreign, 100), Err(MemblockError::Blob { fault: Fault::NotPreserved(_), .. })));
    assert!(matches!(restore(&p2, PhysAddr::new(blob.pa.as_u64() + 4), 100), Err(MemblockError::Blob { .. })));
    assert!(t2.claimed().is_empty());
}

#[test]
fn writer_refuses_bad_regions_and_leaves_nothing() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let a = p.alloc_pages(Order::ZERO).unwrap();
    assert!(write(&p, &[("", a, PAGE)]).is_err());
    assert!(write(&p, &[("x/y", a, PAGE)]).is_err());
    assert!(write(&p, &[("x", a, 100)]).is_err());
    // The second region overlaps the first: its preserve fails, the first
    // is unpreserved again.
    assert!(write(&p, &[("x", a, PAGE), ("y", a, PAGE)]).is_err());
    assert!(t.blocks().is_empty());
    assert_eq!(m.outstanding_pages(), 1);
}

/// The `memblock` blob a Linux 7.2.13 kernel wrote for
/// `reserve_mem=4M:4K:lab_chain` (read from its debugfs in the lab).
const KERNEL_MEMBLOCK: &str = "d00dfeed000000d600000040000000c00000003000000011000000100000000000000016000000800000000000000000000000000000000000000000000000000000000100000000000000030000000c0000000b6d656d626c6f636b2d763100000000016c61625f636861696e000000000000030000000f0000000b726573657276652d6d656d2d763100000000000300000008000000050000003e00000000000000030000000800000000000040000000000000000002000000020000000973697a6500737461727400636f6d70617469626c6500";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn the_writer_matches_the_kernels_bytes() {
    let mine = fdt_bytes(&[("lab_chain", PhysAddr::new(0x3e00_0000), 0x40_0000)]);
    assert_eq!(mine, unhex(KERNEL_MEMBLOCK));
}
