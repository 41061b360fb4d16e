//! Preserving and restoring a 1 GiB vmalloc area of order-0 pages
//! (262144 blocks, 514 chunk pages), beside the same pages preserved and
//! claimed one by one through the tracker in the same run.
//!
//! The design target (DESIGN.md) is vmalloc preserve within 1.3x of
//! preserving the pages one by one: the chunk pages and the checks must
//! cost little next to the tracker. Preserve is measured against both
//! trackers: kho-track's lock-free radix tree (the real one, a fresh
//! tracker per run, so tree pages are allocated as they would be) and
//! kho-sim's `ModelTracker` (a mutex and a map); restore and claiming
//! against `ModelTracker` (a kho-track restore needs a whole new handover
//! per run).
//!
//! The area is the `kho-bench` report's vmalloc workload
//! ([`kho_bench::primitives::vmalloc_area`]); the ratios measured in one
//! run are the report's job.
//!
//! `cargo bench -p kho-bench --bench vmalloc -- --quick`

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kho_abi::{Claim, KhoData, Order, Preserve, VmallocFlags, WithTracker};
use kho_bench::primitives::{vmalloc_area, vmalloc_machine};
use kho_sim::ModelTracker;
use kho_track::{Tracker, TrackerOptions};

const PAGES: usize = 1 << 18;

fn benches(c: &mut Criterion) {
    let m = vmalloc_machine(PAGES);
    let blocks = vmalloc_area(&m, PAGES);
    let mut g = c.benchmark_group("vmalloc_1GiB_order0");
    g.sample_size(10);

    g.bench_function("track_preserve_one_by_one", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).expect("tracker");
                let start = Instant::now();
                for &pa in &blocks {
                    t.preserve(pa, Order::ZERO).expect("preserve");
                }
                total += start.elapsed();
                t.destroy();
            }
            total
        })
    });

    g.bench_function("track_preserve_vmalloc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).expect("tracker");
                let p = WithTracker::new(&m, &t);
                let start = Instant::now();
                let d = kho_vmalloc::preserve(&p, blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
                    .expect("preserve");
                total += start.elapsed();
                kho_vmalloc::unpreserve(&p, black_box(&d)).expect("unpreserve");
                t.destroy();
            }
            total
        })
    });

    g.bench_function("model_preserve_one_by_one", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = ModelTracker::new();
                let start = Instant::now();
                for &pa in &blocks {
                    t.preserve(pa, Order::ZERO).expect("preserve");
                }
                total += start.elapsed();
                black_box(&t);
            }
            total
        })
    });

    g.bench_function("model_preserve_vmalloc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = ModelTracker::new();
                let p = WithTracker::new(&m, &t);
                let start = Instant::now();
                let d = kho_vmalloc::preserve(&p, blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
                    .expect("preserve");
                total += start.elapsed();
                kho_vmalloc::unpreserve(&p, black_box(&d)).expect("unpreserve");
            }
            total
        })
    });

    // The incoming side: one preservation, handed over again before every
    // restore (the restore frees the chunk pages; a new boot reserves them).
    let t = ModelTracker::new();
    let d = kho_vmalloc::preserve(&WithTracker::new(&m, &t), blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
        .expect("preserve");
    let preserved = t.blocks();
    let mut next = Some(m.kexec(KhoData::default()));

    g.bench_function("model_claim_one_by_one", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let incoming = ModelTracker::incoming(preserved.clone());
                let start = Instant::now();
                for &pa in &blocks {
                    incoming.claim(pa, Order::ZERO).expect("claim");
                }
                total += start.elapsed();
                black_box(&incoming);
            }
            total
        })
    });

    g.bench_function("model_restore_vmalloc", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let booted = next.take().expect("machine").kexec(KhoData::default());
                booted.boot_done(&mut preserved.iter().copied()).expect("boot");
                let incoming = ModelTracker::incoming(preserved.clone());
                let mut n = 0u64;
                let start = Instant::now();
                kho_vmalloc::restore(&WithTracker::new(&booted, &incoming), &d, |pa| {
                    n += 1;
                    black_box(pa);
                })
                .expect("restore");
                total += start.elapsed();
                assert_eq!(n as usize, PAGES);
                next = Some(booted);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(vmalloc, benches);
criterion_main!(vmalloc);
