//! The tracker's preserve and walk workloads under criterion, each beside
//! its limit and the kernel's algorithm: the same workloads
//! ([`kho_bench::tracker::PreserveCase`], [`kho_bench::workloads`]) and
//! limits ([`kho_bench::limits`]) as the `kho-bench` report, for comparing
//! one change against the previous run. The ratios themselves, measured in
//! one run, are the report's job: `cargo run --release -p kho-bench`.
//!
//! `cargo bench -p kho-bench --bench track`

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kho_abi::{Order, PAGE_SIZE, PhysAddr};
use kho_bench::kernel::KernelTree;
use kho_bench::limits::{self, Bitmap};
use kho_bench::tracker::{MAX_ORDER, PreserveCase, PreserveKind, preserve_workload};
use kho_bench::workloads::{Arena, Workload};
use kho_track::{Tracker, TrackerOptions};

/// Pages of each preserve case: 256 MiB of order-0 pages.
const PAGES: u64 = (256 << 20) / PAGE_SIZE as u64;

/// Times `iters` runs of preserving `case` with `threads` threads, each run
/// on a fresh tracker / bitmap / kernel tree made outside the timing.
fn run(arena: &Arena, case: &PreserveCase, who: &str, threads: usize, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let tracker =
            (who == "kho").then(|| Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker"));
        let bitmap = (who == "limit").then(|| Bitmap::new(arena.base, PAGES));
        let kernel = (who == "kernel").then(KernelTree::new);
        let part = |i: usize| {
            for &(pa, o) in case.thread_part(threads, i) {
                if let Some(t) = &tracker {
                    t.preserve_folio(PhysAddr::new(pa), Order::new(u64::from(o), "order").expect("order"))
                        .expect("preserve");
                } else if let Some(b) = &bitmap {
                    b.set(pa);
                } else if let Some(k) = &kernel {
                    k.preserve(pa, o);
                }
            }
        };
        let start = Instant::now();
        if threads == 1 {
            part(0);
        } else {
            std::thread::scope(|s| {
                for i in 0..threads {
                    s.spawn(move || part(i));
                }
            });
        }
        total += start.elapsed();
        black_box((&bitmap, kernel.as_ref().map(KernelTree::pages)));
        if let Some(t) = tracker {
            t.destroy();
        }
    }
    total
}

fn preserve(c: &mut Criterion) {
    let arena = Arena::new(PAGES * PAGE_SIZE as u64, MAX_ORDER);
    let mut g = c.benchmark_group("preserve");
    g.sample_size(10);
    for kind in [PreserveKind::Sequential, PreserveKind::Random, PreserveKind::Mixed] {
        let case = PreserveCase::new(kind, arena.base, PAGES);
        for threads in [1, 2] {
            for who in ["kho", "limit", "kernel"] {
                let id = format!("{}/{threads}t/{who}", case.name);
                g.bench_function(id, |b| b.iter_custom(|iters| run(&arena, &case, who, threads, iters)));
            }
        }
    }
    g.finish();
}

fn walks(c: &mut Criterion) {
    // The kernel's measured case: memfd-like order-0 runs, 526,386 keys.
    let w = Workload::MemfdRuns;
    let keys = kho_bench::tracker::KERNEL_KEYS;
    let arena = Arena::new(w.span(keys), MAX_ORDER);
    let t = preserve_workload(&arena, w, keys);
    let leaves = limits::leaves(&arena.machine, t.tree_root());
    let mut g = c.benchmark_group("walk");
    g.sample_size(20);
    g.bench_function("per-block/kho", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            let _ = t.for_each_block::<()>(&mut |pa, o| {
                sum = sum.wrapping_add(pa.as_u64() ^ u64::from(o.get()));
                ControlFlow::Continue(())
            });
            black_box(sum)
        })
    });
    g.bench_function("per-block/limit", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            limits::scan_blocks(&leaves, &mut |pa, o| {
                sum = sum.wrapping_add(pa.as_u64() ^ u64::from(o.get()));
                ControlFlow::Continue(())
            });
            black_box(sum)
        })
    });
    g.bench_function("ranges/kho", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            let _ = t.for_each_range::<()>(&mut |pa, len| {
                acc = acc.wrapping_add(pa.as_u64() ^ len);
                ControlFlow::Continue(())
            });
            black_box(acc)
        })
    });
    g.bench_function("ranges/limit", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            limits::scan_ranges(&leaves, &mut |pa, len| acc = acc.wrapping_add(pa ^ len));
            black_box(acc)
        })
    });
    g.bench_function("raw-words/limit", |b| b.iter(|| black_box(limits::sum_words(&leaves))));
    g.finish();
    drop(leaves);
    t.destroy();
}

criterion_group!(benches, preserve, walks);
criterion_main!(benches);
