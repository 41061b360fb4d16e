//! The self-test state across a simulated kexec: the next kernel's check,
//! the FDT bytes, and every fault, each leaving nothing claimed.

use kho_abi::{KhoData, Order, PAGE_SIZE, PhysAddr, WithTracker};
use kho_selftest::{Fault, KhoTestBlob, SelftestError, csum_partial, fdt_bytes, inspect, restore, write};
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

fn kernel_a(max_mem: u64) -> (Machine, ModelTracker, KhoTestBlob) {
    let m = machine();
    let t = ModelTracker::new();
    let blob = write(&WithTracker::new(&m, &t), max_mem, 7).unwrap();
    (m, t, blob)
}

fn refuse(m: Machine, t: &ModelTracker, blob: &KhoTestBlob, size: u64) -> SelftestError {
    let (m2, t2) = kexec(m, t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, blob.pa, size).unwrap_err();
    assert!(t2.claimed().is_empty(), "{e}: {:?} left claimed", t2.claimed());
    assert_eq!(inspect(&p2, blob.pa, size).unwrap_err(), e);
    assert!(t2.claimed().is_empty());
    e
}

/// Rewrites the FDT (before kexec) with other values.
fn rewrite(m: &Machine, blob: &KhoTestBlob, dtb: &[u8]) -> u64 {
    m.write(blob.pa, &vec![0; PAGE_SIZE]).unwrap();
    m.write(blob.pa, dtb).unwrap();
    dtb.len() as u64
}

#[test]
fn the_next_kernels_check_passes() {
    // The kernel's default: two largest-order blocks' worth.
    let (m, t, blob) = kernel_a(8 * MIB);
    assert_eq!(blob.folios.iter().map(|(_, o)| o.pages()).sum::<u64>(), 2048);
    let orders: std::collections::BTreeSet<u32> = blob.folios.iter().map(|(_, o)| o.get()).collect();
    assert!(orders.len() > 3, "mixed orders: {orders:?}");
    // The stored checksum is csum_partial carried over the folios.
    let mut sum = 0;
    for &(pa, o) in &blob.folios {
        let mut b = vec![0u8; (o.pages() * PAGE) as usize];
        m.read(pa, &mut b).unwrap();
        sum = csum_partial(&b, sum);
    }
    assert_eq!(sum, blob.csum);
    let preserved = t.blocks().len();
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let seen = inspect(&p2, blob.pa, blob.size).unwrap();
    assert!(t2.claimed().is_empty());
    assert!(seen.checksum_holds());
    assert_eq!(seen.folios, blob.folios);
    assert_eq!(seen.pages(), 2048);
    let r = restore(&p2, blob.pa, blob.size).unwrap();
    assert_eq!(r.test(), &seen);
    assert_eq!(t2.claimed().len(), preserved);
    r.free(&p2);
    assert_eq!(m2.reserved_pages(), 0);
}

#[test]
fn changed_data_fails_the_check() {
    let (m, t, blob) = kernel_a(MIB);
    let (pa, _) = blob.folios[blob.folios.len() / 2];
    let mut b = [0u8; 1];
    m.read(PhysAddr::new(pa.as_u64() + 100), &mut b).unwrap();
    m.write(PhysAddr::new(pa.as_u64() + 100), &[b[0] ^ 0x10]).unwrap();
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let e = restore(&p2, blob.pa, blob.size).unwrap_err();
    assert!(
        matches!(e, SelftestError::Checksum { stored, computed } if stored == blob.csum && computed != stored),
        "{e}"
    );
    assert!(t2.claimed().is_empty());
    let seen = inspect(&p2, blob.pa, blob.size).unwrap();
    assert!(!seen.checksum_holds(), "inspect reports, it does not refuse");
    assert!(t2.claimed().is_empty());
}

#[test]
fn fdt_bytes_are_libfdts() {
    let list = kho_abi::KhoVmalloc { first: 0x1000, total_pages: 1, flags: 1, order: 0 };
    let b = fdt_bytes(3, &list, 0xdead_beef);
    let be = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let (off, len) = (be(12) as usize, be(32) as usize);
    assert_eq!(&b[off..off + len], b"csum\0folios_info\0nr_folios\0magic\0compatible\0");
    assert_eq!(be(4) as usize, b.len());
    let s = &b[64..off];
    // magic: PROP, 4, offset of "magic" (27), raw native-endian value.
    assert_eq!(&s[32..48], &[0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 27, 0x21, 0x4f, 0x48, 0x4b]);
    assert_eq!(&s[48..56], &[0, 0, 0, 1, b'd', b'a', b't', b'a']);
}

#[test]
fn property_faults() {
    let list_of = |b: &KhoTestBlob| b.list;
    // Wrong compatible, wrong magic, missing properties.
    let (m, t, blob) = kernel_a(MIB);
    let mut d = fdt_bytes(blob.folios.len() as u32, &list_of(&blob), blob.csum);
    let at = d.windows(12).position(|w| w == b"kho-test-v1\0").unwrap();
    d[at + 10] = b'2';
    let n = rewrite(&m, &blob, &d);
    assert!(matches!(refuse(m, &t, &blob, n), SelftestError::Compatible { .. }));
    let (m, t, blob) = kernel_a(MIB);
    let mut d = fdt_bytes(blob.folios.len() as u32, &list_of(&blob), blob.csum);
    let at = d.windows(4).position(|w| w == 0x4b48_4f21u32.to_ne_bytes()).unwrap();
    d[at] = 0;
    let n = rewrite(&m, &blob, &d);
    assert!(matches!(refuse(m, &t, &blob, n), SelftestError::Magic { found: 0x4b48_4f00 }));
    // nr_folios above the list: the list is shorter than nr_folios.
    let (m, t, blob) = kernel_a(MIB);
    let d = fdt_bytes(blob.folios.len() as u32 + 600, &list_of(&blob), blob.csum);
    let n = rewrite(&m, &blob, &d);
    assert!(matches!(refuse(m, &t, &blob, n), SelftestError::ListSize { .. }));
    // A list whose chain links to itself.
    let (m, t, blob) = kernel_a(MIB);
    m.write(PhysAddr::new(blob.list.first), &blob.list.first.to_ne_bytes()).unwrap();
    assert!(matches!(refuse(m, &t, &blob, blob.size), SelftestError::List(_)));
    // Garbage where the FDT was, and a blob too small.
    let (m, t, blob) = kernel_a(MIB);
    m.write(PhysAddr::new(blob.pa.as_u64() + 8), &[0x55; 64]).unwrap();
    assert!(matches!(refuse(m, &t, &blob, blob.size), SelftestError::Fdt { .. }));
    let (m, t, blob) = kernel_a(MIB);
    assert!(matches!(refuse(m, &t, &blob, 20), SelftestError::Blob { field: "blob-size", .. }));
}

#[test]
fn folio_faults() {
    type Edit = fn(&Machine, &KhoTestBlob) -> u64;
    let cases: [(&str, Edit); 5] = [
        ("order", |_, b| b.folios[1].0.as_u64() | 11),
        ("pa", |_, b| (b.folios[1].0.as_u64() + PAGE) | u64::from(b.folios[1].1.get().max(1))),
        ("pa", |_, _| 0x7000_0000_0000),
        ("pa", |m, _| m.ram_end().as_u64() - PAGE),
        ("pa", |_, b| b.folios[0].0.as_u64() | u64::from(b.folios[0].1.get())),
    ];
    for (field, edit) in cases {
        let (m, t, blob) = kernel_a(MIB);
        let raw = edit(&m, &blob);
        m.write(PhysAddr::new(blob.list_pages[0].as_u64() + 8), &raw.to_ne_bytes()).unwrap();
        match refuse(m, &t, &blob, blob.size) {
            SelftestError::Folio { entry: 1, field: f, .. } => assert_eq!(f, field),
            e => panic!("{field}: {e}"),
        }
    }
    let _ = Fault::Misaligned;
    let _ = Order::ZERO;
}

/// The `kho_test` blob a Linux 7.2.13 kernel wrote (read from its debugfs
/// in the lab): 9 folios, the list at 0x313000, csum 0xfc5daa19.
const KERNEL_KHO_TEST: &str = "d00dfeed000000f000000040000000c4000000300000001100000010000000000000002c000000840000000000000000000000000000000000000000000000000000000100000000000000030000000c000000216b686f2d746573742d76310000000003000000040000001b214f484b000000016461746100000000000000030000000400000011090000000000000300000010000000050030310000000000010000000100000000000003000000040000000019aa5dfc0000000200000002000000096373756d00666f6c696f735f696e666f006e725f666f6c696f73006d6167696300636f6d70617469626c6500";

#[test]
fn the_writer_matches_the_kernels_bytes() {
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    let list = kho_abi::KhoVmalloc { first: 0x31_3000, total_pages: 1, flags: 1, order: 0 };
    assert_eq!(fdt_bytes(9, &list, 0xfc5d_aa19), unhex(KERNEL_KHO_TEST));
}
