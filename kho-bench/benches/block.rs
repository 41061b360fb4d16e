//! Append and read throughput of a block set on kho-sim, beside a plain
//! memcpy of the same payload (target: within 2x): the `kho-bench` report's
//! block set workload ([`kho_bench::primitives::entries64`]) under
//! criterion. The ratios measured in one run are the report's job.
//!
//! `cargo bench -p kho-bench --bench block -- --quick`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kho_abi::WithTracker;
use kho_bench::primitives::{Entry64 as Entry, block_machine, entries64 as payload};
use kho_block::BlockSet;
use kho_sim::ModelTracker;

const SIZES: [usize; 2] = [1 << 20, 16 << 20];

fn bench(c: &mut Criterion) {
    let m = block_machine(SIZES[1]);
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);

    let mut append = c.benchmark_group("append");
    for bytes in SIZES {
        let src = payload(bytes);
        let mut set = BlockSet::<Entry>::new();
        set.grow(&p, src.len()).expect("grow");
        append.throughput(Throughput::Bytes(bytes as u64));
        append.bench_with_input(BenchmarkId::new("memcpy", bytes), &src, |b, src| {
            let mut dst = vec![[0u8; 64]; src.len()];
            b.iter(|| {
                dst.copy_from_slice(black_box(src));
                black_box(&dst);
            })
        });
        append.bench_with_input(BenchmarkId::new("extend", bytes), &src, |b, src| {
            b.iter(|| {
                set.clear(&p).expect("clear");
                set.writer(&p).extend(black_box(src)).expect("extend");
            })
        });
        append.bench_with_input(BenchmarkId::new("push", bytes), &src, |b, src| {
            b.iter(|| {
                set.clear(&p).expect("clear");
                let mut w = set.writer(&p);
                for e in black_box(src) {
                    w.push(e).expect("push");
                }
            })
        });
        set.destroy(&p).expect("destroy");
    }
    append.finish();

    let mut read = c.benchmark_group("read");
    for bytes in SIZES {
        let src = payload(bytes);
        let mut set = BlockSet::<Entry>::new();
        set.grow(&p, src.len()).expect("grow");
        set.writer(&p).extend(&src).expect("extend");
        let mut dst = vec![[0u8; 64]; src.len()];
        read.throughput(Throughput::Bytes(bytes as u64));
        read.bench_function(BenchmarkId::new("memcpy", bytes), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        read.bench_function(BenchmarkId::new("read_into", bytes), |b| {
            b.iter(|| {
                let n = set.iter(&p).read_into(&mut dst).expect("read");
                black_box((&dst, n));
            })
        });
        read.bench_function(BenchmarkId::new("iter", bytes), |b| {
            b.iter(|| {
                for (d, e) in dst.iter_mut().zip(set.iter(&p)) {
                    *d = e.expect("entry");
                }
                black_box(&dst);
            })
        });
        set.destroy(&p).expect("destroy");
    }
    read.finish();
    assert_eq!(m.outstanding_pages(), 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
