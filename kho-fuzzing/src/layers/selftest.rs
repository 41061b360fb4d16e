//! The `selftest_restore` fuzz target's harness, shared with the test
//! replaying `fuzz/corpus/selftest_restore`. Byte 0 shapes the test data
//! (amount, random seed); the rest overwrites the FDT, the list and the
//! folios (see [`super`]). A changed folio byte makes the next kernel's
//! check fail: restore refuses, inspect reports.

use kho_abi::{Order, PhysAddr, WithTracker};
use kho_selftest::{KhoTest, inspect, restore, write};
use kho_sim::ModelTracker;

use crate::Machines;

/// Runs one input; panics only if the reader breaks a promise. Returns
/// whether the restore succeeded.
pub fn run(ms: &mut Machines, data: &[u8]) -> bool {
    let shape = data.first().copied().unwrap_or(0);
    let m = super::machine_of(ms, 1 << 20); // room for every shape
    let t = ModelTracker::new();
    // Memory for folios: mostly small (every byte is checksummed three
    // times), one shape large.
    let max_mem = [0u64, 8, 16, 24, 32, 48, 96, 128][usize::from(shape & 7)] << 10;
    let blob = write(&WithTracker::new(&*m, &t), max_mem, u64::from(shape >> 3)).expect("kho_test");
    // Blocks in role order: FDT, list chunk, list pages, folios.
    let mut blocks = vec![(blob.pa, Order::new(1, "o").expect("order"))];
    if blob.list.first != 0 {
        blocks.push((PhysAddr::new(blob.list.first), Order::ZERO));
    }
    blocks.extend(blob.list_pages.iter().map(|&p| (p, Order::ZERO)));
    blocks.extend(blob.folios.iter().copied());
    super::mutate(&m, &blocks, data.get(1..).unwrap_or(&[]));
    let (m2, t2) = super::kexec(m, &t);
    let p2 = WithTracker::new(&*m2, &t2);
    super::check(
        &t2,
        &p2,
        |p| restore(p, blob.pa, blob.size),
        |p| inspect(p, blob.pa, blob.size),
        |r| r.test().clone(),
        |r| owned(r.test()),
        true,
    )
}

fn owned(t: &KhoTest) -> Vec<(PhysAddr, Order)> {
    let mut out = vec![(t.blob, t.blob_order)];
    out.extend(t.list_blocks.iter().map(|&b| (b, t.list_order)));
    out.extend(t.list_chunks.iter().map(|&c| (c, Order::ZERO)));
    out.extend(t.folios.iter().copied());
    out
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..8u8).map(|s| vec![s | 0x08]).collect();
    out.push(vec![0x0b, 3, 0, 0, 1, 0xaa]); // a folio byte changed: checksum
    out.push(vec![0x0b, 1, 0, 0, 0xff, 1]); // list chunk linking to itself
    out.push(vec![0x0b, 2, 0, 0, 1, 0x0f]); // folio 0 with order 15
    out.push(vec![0x0b, 0, 0, 0, 1, 0]); // FDT magic broken
    out
}
