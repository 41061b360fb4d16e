//! The two-process handover: one process saves the machine image at the
//! kexec point, another loads it and restores everything.

#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use kho_abi::{Order, PAGE_SIZE, PageAlloc, PhysAddr};
use kho_sim::{Machine, MachineConfig};
use kho_track::Incoming;

const IMAGE_VAR: &str = "KHO_TRACK_TEST_IMAGE";
const SUM_VAR: &str = "KHO_TRACK_TEST_SUM";

/// The second process: only does work when the first one started it.
#[test]
fn second_process() {
    let (Ok(path), Ok(sum)) = (std::env::var(IMAGE_VAR), std::env::var(SUM_VAR)) else {
        return;
    };
    let m = Machine::load_image(&PathBuf::from(path), MachineConfig::default()).unwrap();
    let data = m.kho_data().unwrap();
    let inc = Incoming::import(&m, &data).unwrap();
    let reserved = inc.reserved_blocks().unwrap();
    m.boot_done(&mut reserved.iter().copied()).unwrap();
    let sub = inc.subtree("folio").unwrap();
    let folio = PhysAddr::new(u64::from_ne_bytes(read8(&m, sub.pa)));
    inc.restore_folio(folio, order(4)).unwrap();
    let got = m.checksum(folio, 16 * PAGE_SIZE as u64).unwrap();
    assert_eq!(got.to_string(), sum);
    println!("second process restored the folio");
}

fn read8(m: &Machine, pa: PhysAddr) -> [u8; 8] {
    let mut b = [0u8; 8];
    m.read(pa, &mut b).unwrap();
    b
}

#[test]
fn image_saved_by_one_process_restores_in_another() {
    if std::env::var(IMAGE_VAR).is_ok() {
        return;
    }
    let m = machine();
    let mut t = tracker(&m);
    let folio = m.alloc_pages(order(4)).unwrap();
    m.fill_random(folio, 16 * PAGE_SIZE as u64, 42).unwrap();
    t.preserve_folio(folio, order(4)).unwrap();
    let blob = m.alloc_pages(Order::ZERO).unwrap();
    m.write(blob, &folio.as_u64().to_ne_bytes()).unwrap();
    t.preserve_folio(blob, Order::ZERO).unwrap();
    t.add_subtree("folio", blob, 8).unwrap();
    let sum = m.checksum(folio, 16 * PAGE_SIZE as u64).unwrap();
    let data = t.finish().unwrap();
    let dir = std::env::temp_dir().join(format!("kho-track-two-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("machine.img");
    m.save_image_with(&path, Some(&data)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "second_process", "--nocapture", "--test-threads=1"])
        .env(IMAGE_VAR, &path)
        .env(SUM_VAR, sum.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "second process failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("second process restored the folio"), "{stdout}");
}
