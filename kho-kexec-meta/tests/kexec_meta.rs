//! The metadata carried across a simulated kexec, and every fault.

use kho_abi::{KhoData, PAGE_SIZE, PhysAddr, WithTracker};
use kho_kexec_meta::{KexecMetaError, KexecMetadata, SIZE, inspect, restore, write};
use kho_sim::{Machine, MachineConfig, ModelTracker};

fn machine() -> Machine {
    Machine::new(MachineConfig::with_ram(kho_sim::DEFAULT_RAM_BASE, 16 << 20)).unwrap()
}

fn kexec(m: Machine, t: &ModelTracker) -> (Machine, ModelTracker) {
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).unwrap();
    (m2, ModelTracker::incoming(blocks))
}

fn kernel_a(release: &str, count: u32) -> (Machine, ModelTracker, PhysAddr) {
    let m = machine();
    let t = ModelTracker::new();
    let pa = write(&WithTracker::new(&m, &t), release, count).unwrap();
    (m, t, pa)
}

#[test]
fn round_trip_and_bytes() {
    let release = "7.2.13-kho-".to_string() + &"x".repeat(53); // 64 bytes
    let (m, t, pa) = kernel_a(&release, 3);
    let mut raw = [0u8; 74];
    m.read(pa, &mut raw).unwrap();
    assert_eq!(raw[..4], 1u32.to_ne_bytes());
    assert_eq!(&raw[4..68], release.as_bytes());
    assert_eq!(raw[68], 0);
    assert_eq!(raw[69..73], 3u32.to_ne_bytes());
    assert_eq!(raw[73], 0, "nothing after the 73 bytes");
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let want = KexecMetadata::V1 { previous_release: release.clone(), kexec_count: 3 };
    assert_eq!(inspect(&p2, pa, SIZE).unwrap(), want);
    assert!(t2.claimed().is_empty());
    let r = restore(&p2, pa, SIZE).unwrap();
    assert_eq!(t2.claimed().len(), 1);
    assert_eq!(r.free(&p2), want);
    assert_eq!(m2.reserved_pages(), 0);
}

#[test]
fn other_versions_are_reported_not_refused() {
    let (m, t, pa) = kernel_a("7.2.13", 1);
    m.write(pa, &2u32.to_ne_bytes()).unwrap();
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    // Four bytes are enough to see a version.
    assert_eq!(inspect(&p2, pa, 4).unwrap(), KexecMetadata::Unknown { version: 2 });
    assert!(t2.claimed().is_empty());
}

#[test]
fn faults() {
    let (m, t, pa) = kernel_a("7.2.13", 1);
    m.write(PhysAddr::new(pa.as_u64() + 4), &[b'r'; 65]).unwrap();
    let (m2, t2) = kexec(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    assert!(matches!(restore(&p2, pa, SIZE), Err(KexecMetaError::Unterminated { .. })));
    assert!(matches!(restore(&p2, pa, 3), Err(KexecMetaError::TooShort { version: None, need: 4, .. })));
    assert!(matches!(restore(&p2, pa, 72), Err(KexecMetaError::TooShort { version: Some(1), need: 73, .. })));
    assert!(matches!(restore(&p2, PhysAddr::new(pa.as_u64() + 4), SIZE), Err(KexecMetaError::Blob { .. })));
    let foreign = PhysAddr::new(m2.ram_end().as_u64() - PAGE_SIZE as u64);
    assert!(matches!(restore(&p2, foreign, SIZE), Err(KexecMetaError::Blob { .. })));
    assert!(matches!(restore(&p2, PhysAddr::new(0x1000), SIZE), Err(KexecMetaError::Blob { .. })));
    assert!(t2.claimed().is_empty());
    let m = machine();
    let t = ModelTracker::new();
    assert!(matches!(write(&WithTracker::new(&m, &t), &"y".repeat(65), 1), Err(KexecMetaError::BadRelease(_))));
    assert!(matches!(write(&WithTracker::new(&m, &t), "a\0b", 1), Err(KexecMetaError::BadRelease(_))));
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn the_writer_matches_the_kernels_bytes() {
    // What a Linux 7.2.13 kernel wrote (read from its debugfs in the lab).
    let mut kernel = vec![1u8, 0, 0, 0];
    kernel.extend(b"7.2.13");
    kernel.extend([0u8; 59]);
    kernel.extend([1u8, 0, 0, 0]);
    let (m, _t, pa) = kernel_a("7.2.13", 1);
    let mut mine = vec![0u8; 73];
    m.read(pa, &mut mine).unwrap();
    assert_eq!(mine, kernel);
}
