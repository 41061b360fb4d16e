//! The `memblock_restore` fuzz target's harness, shared with the test
//! replaying `fuzz/corpus/memblock_restore`. Byte 0 shapes the regions
//! kernel A hands over; byte 1 (if bit 7 of byte 0 is set) overrides the
//! blob size in 64-byte steps; the rest overwrites the blob and region
//! pages (see [`super`]).

use kho_abi::{Order, PageAlloc, PhysAddr, WithTracker};
use kho_memblock::{Memblock, inspect, restore, write};
use kho_sim::ModelTracker;

use crate::Machines;

/// Runs one input; panics only if the reader breaks a promise. Returns
/// whether the restore succeeded.
pub fn run(ms: &mut Machines, data: &[u8]) -> bool {
    let shape = data.first().copied().unwrap_or(0);
    let m = super::machine_of(ms, 1 << 20); // room for every shape
    let t = ModelTracker::new();
    let p = WithTracker::new(&*m, &t);
    let names = ["a", "trace", "oops", "pstore", "b"];
    let mut regions = Vec::new();
    for (i, name) in names.iter().enumerate().take(usize::from(shape & 7).min(5)) {
        let order = Order::new((i as u64 * 3) % 7, "o").expect("order");
        let pa = p.alloc_pages(order).expect("region");
        regions.push((*name, pa, order.pages() * 4096));
    }
    let blob = write(&p, &regions).expect("memblock");
    let (size, rest) = match (shape & 0x80 != 0, data.get(1)) {
        (true, Some(&s)) => (u64::from(s) * 64, data.get(2..).unwrap_or(&[])),
        _ => (blob.size, data.get(1..).unwrap_or(&[])),
    };
    // Blocks in role order: the blob first.
    let mut blocks = vec![(blob.pa, Order::ZERO)];
    blocks.extend(t.blocks().into_iter().filter(|&(pa, _)| pa != blob.pa));
    super::mutate(&m, &blocks, rest);
    let (m2, t2) = super::kexec(m, &t);
    let p2 = WithTracker::new(&*m2, &t2);
    super::check(
        &t2,
        &p2,
        |p| restore(p, blob.pa, size),
        |p| inspect(p, blob.pa, size),
        |r| r.memblock().clone(),
        owned,
        false,
    )
}

fn owned(r: &kho_memblock::RestoredMemblock) -> Vec<(PhysAddr, Order)> {
    let mb: &Memblock = r.memblock();
    let mut out = vec![(mb.blob, mb.blob_order)];
    for region in &mb.regions {
        out.extend(region.blocks.iter().copied());
    }
    out
}

/// Seed inputs: shapes unmutated, and corruptions of the FDT (block 0).
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..6u8).map(|s| vec![s]).collect();
    out.push(vec![2, 0, 0, 0, 1, 0]); // FDT magic broken
    out.push(vec![2, 0, 4, 0, 4, 0, 0, 0x10, 0]); // totalsize above the blob
    out.push(vec![0x82, 0]); // a blob size of 0
    out.push(vec![2, 0, 80, 0, 1, b'X']); // root compatible changed
    out
}
