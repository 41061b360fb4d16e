//! How metadata, preserve time and walk time grow with preserved memory,
//! per workload, on simulated machines of up to a few TiB of RAM.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use kho_abi::{Order, PAGE_SIZE, PhysAddr};
use kho_sim::Machine;
use kho_track::{Tracker, TrackerOptions};

use crate::formulas::MapCosts;
use std::sync::atomic::{AtomicU64, Ordering};

use kho_abi::PAGE_SHIFT;

use crate::kernel::KernelTree;
use crate::timing::{Reps, Stats, measure_all};
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
    /// Spread of each figure: preserve, per-block walk, range walk.
    pub stats: [Stats; 3],
    /// The kernel algorithm: preserve, per-block walk, walk with a
    /// merging callback.
    pub kernel: [Stats; 3],
    /// The limits: flat-bitmap preserve (none when its bitmap would
    /// exceed [`LIMIT_BITMAP_MAX`]), word scan with the same callback,
    /// range-emitting scan.
    pub limit: [Option<Stats>; 3],
    /// Timed runs per figure (1 marks a single-run point).
    pub runs: usize,
}

/// The largest flat bitmap the preserve limit allocates.
pub const LIMIT_BITMAP_MAX: u64 = 256 << 20;

/// The sizes a workload is measured at, of `sizes`.
pub fn sizes_for(w: Workload, sizes: &[u64]) -> Vec<u64> {
    sizes.iter().copied().filter(|&s| w != Workload::Sparse || s <= SPARSE_MAX).collect()
}

fn reps_for(blocks: u64) -> (Reps, Reps) {
    match blocks {
        0..=1_000_000 => (Reps { warmup: 1, runs: 5 }, Reps { warmup: 1, runs: 5 }),
        _ => (Reps { warmup: 1, runs: 3 }, Reps { warmup: 1, runs: 3 }),
    }
}

/// Preserves every block of `w` (`blocks` of them) on a fresh tracker;
/// returns it and the time spent in the preserve calls.
fn preserve_all(arena: &Arena, w: Workload, blocks: u64) -> (Tracker<&Machine>, Duration) {
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

/// Calls `f` for every block of `w`, timing only the calls: the PAs are
/// generated untimed in batches.
fn timed_batches(arena: &Arena, w: Workload, blocks: u64, mut f: impl FnMut(u64, u32)) -> Duration {
    let mut batch: Vec<u64> = Vec::with_capacity(BATCH);
    let mut total = Duration::ZERO;
    let o = w.order();
    let mut flush = |batch: &mut Vec<u64>| {
        let start = Instant::now();
        for &pa in batch.iter() {
            f(pa, o);
        }
        total += start.elapsed();
        batch.clear();
    };
    for (start, n) in w.runs(blocks) {
        for i in start..start + n {
            batch.push(arena.pa(i, o).as_u64());
            if batch.len() == BATCH {
                flush(&mut batch);
            }
        }
    }
    flush(&mut batch);
    total
}

/// Measures `w` at `preserved` bytes: kho, the kernel algorithm and the
/// limits, in turn.
pub fn point(w: Workload, preserved: u64) -> Point {
    let blocks = preserved / w.block_bytes();
    let span = w.span(blocks);
    let arena = Arena::new(span, MAX_ORDER);
    let (preserve_reps, walk_reps) = reps_for(blocks);
    let bitmap_words = (span / PAGE_SIZE as u64).div_ceil(64);
    let with_limit = bitmap_words * 8 <= LIMIT_BITMAP_MAX;
    let mut last = None;
    let mut kernel_tree = None;
    let mut fs: Vec<&mut dyn FnMut() -> Duration> = Vec::new();
    let mut ours = || {
        if let Some(t) = last.take() {
            Tracker::destroy(t);
        }
        let (t, d) = preserve_all(&arena, w, blocks);
        last = Some(t);
        d
    };
    let mut kernel = || {
        let k = KernelTree::new();
        let d = timed_batches(&arena, w, blocks, |pa, o| k.preserve(pa, o));
        kernel_tree = Some(k);
        d
    };
    let mut limit = || {
        let bitmap: Vec<AtomicU64> = (0..bitmap_words).map(|_| AtomicU64::new(0)).collect();
        let d = timed_batches(&arena, w, blocks, |pa, _| {
            let bit = (pa - arena.base) >> PAGE_SHIFT;
            bitmap[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        });
        black_box(&bitmap);
        d
    };
    fs.push(&mut ours);
    fs.push(&mut kernel);
    if with_limit {
        fs.push(&mut limit);
    }
    let st = measure_all(preserve_reps, &mut fs);
    drop(fs);
    let t = last.expect("a tracker");
    let k = kernel_tree.expect("a kernel tree");
    let walks = crate::tracker::walk_stats(&arena.machine, &t, &k, walk_reps);
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
        ranges: walks.ranges,
        radix_bytes,
        costs,
        stats: [st[0], walks.blocks_kho, walks.ranges_kho],
        kernel: [st[1], walks.blocks_kernel, walks.ranges_kernel],
        limit: [st.get(2).copied(), Some(walks.blocks_limit), walks.ranges_single_order.then_some(walks.ranges_limit)],
        runs: preserve_reps.runs,
    }
}

impl Point {
    /// Nanoseconds per block of `d`.
    pub fn ns(&self, d: Duration) -> f64 {
        d.as_nanos() as f64 / self.blocks as f64
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
