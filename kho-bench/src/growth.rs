//! How metadata, preserve time and walk time grow with preserved memory,
//! per workload, on simulated machines of up to a few TiB of RAM.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use kho_abi::{Order, PAGE_SIZE, PhysAddr};
use kho_sim::Machine;
use kho_track::{Tracker, TrackerOptions};

use crate::formulas::MapCosts;
use crate::timing::{Reps, median};
use crate::workloads::{Arena, Workload};

/// Largest order the growth machines serve (1 GiB pages).
const MAX_ORDER: u32 = 18;

/// Blocks handed to the tracker per timed batch: the batch is generated
/// untimed, then preserved timed.
const BATCH: usize = 1 << 16;

/// The sparse workload needs 512 times its preserved memory as RAM; it
/// stops at this much preserved memory (32 TiB of simulated RAM).
pub const SPARSE_MAX: u64 = 64 << 30;

/// One workload at one size.
#[derive(Clone, Debug)]
pub struct Point {
    /// The workload.
    pub workload: Workload,
    /// Preserved bytes (the workload's blocks).
    pub preserved: u64,
    /// Blocks in the tree: the workload's and the root FDT page.
    pub blocks: u64,
    /// Ranges the range walk returns.
    pub ranges: u64,
    /// Bytes of the radix tree the tracker allocated (measured).
    pub radix_bytes: u64,
    /// Costs of the same blocks in the other formats (by formula).
    pub costs: MapCosts,
    /// Median time to preserve every block, one thread.
    pub preserve: Duration,
    /// Median per-block walk.
    pub walk_blocks: Duration,
    /// Median range walk.
    pub walk_ranges: Duration,
}

/// The sizes a workload is measured at, of `sizes`.
pub fn sizes_for(w: Workload, sizes: &[u64]) -> Vec<u64> {
    sizes.iter().copied().filter(|&s| w != Workload::Sparse || s <= SPARSE_MAX).collect()
}

fn reps_for(blocks: u64) -> (Reps, Reps) {
    match blocks {
        0..=1_000_000 => (Reps { warmup: 1, runs: 3 }, Reps { warmup: 1, runs: 5 }),
        1_000_001..=20_000_000 => (Reps { warmup: 0, runs: 1 }, Reps { warmup: 0, runs: 3 }),
        _ => (Reps { warmup: 0, runs: 1 }, Reps { warmup: 0, runs: 1 }),
    }
}

/// Preserves every block of `w` (`blocks` of them) on a fresh tracker;
/// returns it and the time spent in the preserve calls.
fn preserve_all<'m>(arena: &'m Arena, w: Workload, blocks: u64) -> (Tracker<'m, Machine>, Duration) {
    let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker");
    let order = Order::new(u64::from(w.order()), "order").expect("order");
    let mut batch: Vec<PhysAddr> = Vec::with_capacity(BATCH);
    let mut total = Duration::ZERO;
    let mut flush = |batch: &mut Vec<PhysAddr>| {
        let start = Instant::now();
        for &pa in batch.iter() {
            t.preserve_folio(pa, order).expect("preserve");
        }
        total += start.elapsed();
        batch.clear();
    };
    for (start, n) in w.runs(blocks) {
        for i in start..start + n {
            batch.push(arena.pa(i, w.order()));
            if batch.len() == BATCH {
                flush(&mut batch);
            }
        }
    }
    flush(&mut batch);
    (t, total)
}

/// Measures `w` at `preserved` bytes.
pub fn point(w: Workload, preserved: u64) -> Point {
    let blocks = preserved / w.block_bytes();
    let arena = Arena::new(w.span(blocks), MAX_ORDER);
    let (preserve_reps, walk_reps) = reps_for(blocks);
    for _ in 0..preserve_reps.warmup {
        preserve_all(&arena, w, blocks).0.destroy();
    }
    let mut times = Vec::new();
    let mut tracker = None;
    for _ in 0..preserve_reps.runs.max(1) {
        if let Some(t) = tracker.take() {
            Tracker::destroy(t);
        }
        let (t, d) = preserve_all(&arena, w, blocks);
        times.push(d);
        tracker = Some(t);
    }
    let t = tracker.expect("a tracker");
    let preserve = median(&mut times);

    let walk_blocks = crate::timing::measure(walk_reps, || {
        let start = Instant::now();
        let mut sum = 0u64;
        let _ = t.for_each_block::<()>(&mut |pa, o| {
            sum = sum.wrapping_add(pa.as_u64() ^ u64::from(o.get()));
            ControlFlow::Continue(())
        });
        black_box(sum);
        start.elapsed()
    });
    let mut ranges = 0;
    let walk_ranges = crate::timing::measure(walk_reps, || {
        let start = Instant::now();
        let mut n = 0u64;
        let _ = t.for_each_range::<()>(&mut |pa, len| {
            n = n.wrapping_add(1);
            black_box((pa, len));
            ControlFlow::Continue(())
        });
        ranges = n;
        start.elapsed()
    });
    let mut costs = MapCosts::default();
    let _ = t.for_each_block::<()>(&mut |pa, o| {
        costs.add(pa.as_u64(), o.get());
        ControlFlow::Continue(())
    });
    let radix_bytes = t.tree_pages().expect("tree pages") * PAGE_SIZE as u64;
    t.destroy();
    Point {
        workload: w,
        preserved: blocks * w.block_bytes(),
        blocks: costs.blocks(),
        ranges,
        radix_bytes,
        costs,
        preserve,
        walk_blocks,
        walk_ranges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_points_count_every_block() {
        for w in Workload::ALL {
            let p = point(w, 1 << 30);
            let n = (1u64 << 30) / w.block_bytes();
            // The workload's blocks plus the root FDT page.
            assert_eq!(p.blocks, n + 1, "{w:?}");
            assert_eq!(p.preserved, 1 << 30);
            // Every format costs something; the tree has at least a root,
            // tables and one leaf per order.
            assert!(p.radix_bytes >= 6 * PAGE_SIZE as u64, "{w:?}");
            assert!(p.costs.v1_bytes() >= 2 * PAGE_SIZE as u64);
            assert!(p.ranges >= 2 && p.ranges <= p.costs.ranges(), "{w:?}");
        }
        // The contiguous 1 GiB-page VM is one range (and the FDT page).
        assert_eq!(point(Workload::Vm1G, 4 << 30).costs.ranges(), 2);
    }

    #[test]
    fn sparse_is_capped() {
        let sizes = [1 << 30, 64 << 30, 256 << 30];
        assert_eq!(sizes_for(Workload::Sparse, &sizes), vec![1 << 30, 64 << 30]);
        assert_eq!(sizes_for(Workload::Vm2M, &sizes), sizes.to_vec());
    }
}
