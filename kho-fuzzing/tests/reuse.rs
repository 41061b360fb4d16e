//! The fuzz targets run every input on one pool of machines, each reset
//! after the input before (`kho_fuzzing::Machines`). This replays the
//! corpora of the block, array, vmalloc and import harnesses that way and
//! again with a new machine per input: the results must be the same, so no
//! input's result depends on the input before. (The payload-layer corpora
//! get the same check in `tests/layers.rs`; `handover_ops` builds its own
//! machine per input.)

use std::fmt::Debug;
use std::path::Path;

use kho_fuzzing::{Machines, array, block, import, vmalloc};

/// Every file of `fuzz/corpus/TARGET` (which must not be empty).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the {target} corpus is checked in: {e}"))
        .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"))
        .collect();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs every input of `target` on a shared pool and on a new one; the
/// results must agree, and the pool must have kept its machines.
fn same_on_reuse<R: PartialEq + Debug>(target: &str, run: impl Fn(&mut Machines, &[u8]) -> R) {
    let mut shared = Machines::new();
    for f in corpus(target) {
        let reused = run(&mut shared, &f);
        assert_eq!(reused, run(&mut Machines::new(), &f), "{target}: a reused machine changes the result of {f:?}");
    }
    assert!(shared.kept() >= 1, "{target}: no machine went back to the pool");
}

#[test]
fn block_restore() {
    same_on_reuse("block_restore", block::run_in);
}

#[test]
fn array_restore() {
    same_on_reuse("array_restore", array::run_in);
}

#[test]
fn vmalloc_restore() {
    same_on_reuse("vmalloc_restore", vmalloc::restore_input_in);
}

#[test]
fn track_import() {
    same_on_reuse("track_import", import::run_in);
}

#[test]
fn v1_import() {
    same_on_reuse("v1_import", import::run_v1_in);
}

#[test]
fn kho_data_import() {
    same_on_reuse("kho_data_import", import::run_kho_data_in);
}

#[test]
fn blob_restore() {
    same_on_reuse("blob_restore", import::run_blob_in);
}

#[test]
fn a_lease_is_a_new_machine() {
    use kho_abi::{KhoData, Order, PageAlloc, PhysAddr};
    use kho_sim::{Machine, MachineConfig};

    let cfg = MachineConfig::with_ram(PhysAddr::new(0x4000_0000), 64 << 12);
    let fresh = Machine::new(cfg.clone()).expect("machine");
    let mut ms = Machines::new();
    {
        let m = ms.lease(cfg.clone());
        let pa = m.alloc_pages(Order::ZERO).expect("page");
        m.write(pa, b"left behind").expect("RAM");
        let m = m.kexec(KhoData::default());
        m.boot_done(&mut [(pa, Order::ZERO)].into_iter()).expect("boot");
        assert_eq!(m.reserved_pages(), 1);
    }
    assert_eq!(ms.kept(), 1);
    let m = ms.lease(cfg.clone());
    assert_eq!(m.kho_data(), None);
    assert_eq!(m.reserved_pages(), 0);
    assert!(!m.in_early_boot());
    assert_eq!(m.available_pages(), fresh.available_pages());
    let (mut a, mut b) = (vec![1u8; 64 << 12], vec![1u8; 64 << 12]);
    m.read(m.ram_base(), &mut a).expect("RAM");
    fresh.read(fresh.ram_base(), &mut b).expect("RAM");
    assert!(a == b, "RAM of a leased machine differs from a new one's");
    // Another configuration gets a machine of its own.
    drop(m);
    assert_eq!(ms.kept(), 1, "the kept machine was leased, not a new one");
    let other = MachineConfig::with_ram(PhysAddr::new(0x4000_0000), 32 << 12);
    assert_eq!(ms.lease(other).ram_size(), 32 << 12);
    assert_eq!(ms.kept(), 2);
}
