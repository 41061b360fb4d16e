//! array-v1 space and throughput, printed as a table: `cargo bench -p
//! kho-array --bench array`.
//!
//! For each position pattern: bytes per entry of the array (whole pages)
//! and the bound the format promises for it (16 bytes when no gap exceeds
//! 2^50, 24 otherwise), beside the kernel RFC's layout for the same
//! positions computed by formula (a page `{next, startpos, entries[510]}`
//! per window of up to 510 consecutive slots: 4096 bytes for an isolated
//! entry); then nanoseconds per entry to write (entry by entry with `push`,
//! and for dense data with `extend_raw`) beside pushing the same
//! `(position, entry)` pairs to a `Vec`, to read back, and to restore
//! (validate and claim every page) after a kexec.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kho_abi::{KhoData, PAGE_SIZE, WithTracker};
use kho_array::{Entry, KhoArray};
use kho_sim::{Machine, MachineConfig, ModelTracker};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Slots per page in the RFC's layout.
const RFC_SLOTS: u64 = 510;

/// Timed repetitions; the fastest counts.
const ROUNDS: usize = 5;

/// Pages the RFC's layout needs: each page covers 510 consecutive slots
/// from its first entry.
fn rfc_pages(positions: &[u64]) -> u64 {
    let mut pages = 0;
    let mut end: Option<u64> = None;
    for &pos in positions {
        if end.is_none_or(|e| pos >= e) {
            pages += 1;
            end = Some(pos.saturating_add(RFC_SLOTS));
        }
    }
    pages
}

fn entries(positions: &[u64]) -> Vec<(u64, Entry)> {
    positions.iter().map(|&pos| (pos, Entry::value(pos >> 1).expect("value"))).collect()
}

/// The fastest of `ROUNDS` runs of `f` (which returns its own timing).
fn fastest(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

struct Row {
    name: &'static str,
    positions: Vec<u64>,
}

fn patterns() -> Vec<Row> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut uniform: Vec<u64> = (0..1_000_000).map(|_| rng.random::<u64>()).collect();
    uniform.sort_unstable();
    uniform.dedup();
    let mut sparse_10k: Vec<u64> = (0..10_000).map(|_| rng.random::<u64>()).collect();
    sparse_10k.sort_unstable();
    sparse_10k.dedup();
    vec![
        Row { name: "dense", positions: (0..1_000_000).collect() },
        Row {
            name: "clustered 64 per 2^20",
            positions: (0..1_000_000u64).map(|i| (i / 64) << 20 | (i % 64)).collect(),
        },
        Row { name: "uniform sparse 1M/u64", positions: uniform },
        Row { name: "uniform sparse 10k/u64", positions: sparse_10k },
        Row { name: "worst: gap 2 (isolated)", positions: (0..1_000_000).map(|i| i * 2).collect() },
        Row { name: "worst: gap 2^50", positions: (0..16_000u64).map(|i| i << 50).collect() },
        Row { name: "worst: gap 2^50+1", positions: (0..16_000u64).map(|i| i * ((1 << 50) + 1)).collect() },
    ]
}

fn main() {
    println!(
        "{:<24} {:>8} {:>7} {:>8} {:>9} {:>9} | {:>7} {:>7} {:>7} {:>6} {:>7} {:>8}",
        "pattern",
        "entries",
        "B/entry",
        "bound",
        "RFC B/e",
        "RFC/ours",
        "push ns",
        "bulk ns",
        "Vec ns",
        "x Vec",
        "read ns",
        "restore"
    );
    for row in patterns() {
        bench(&row);
    }
}

fn bench(row: &Row) {
    let positions = &row.positions;
    let n = positions.len();
    let entries = entries(positions);
    let m = Machine::new(MachineConfig::default()).expect("machine");
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);

    let push = fastest(|| {
        let mut a = KhoArray::new();
        let start = Instant::now();
        let mut w = a.writer(&p);
        for &(pos, e) in &entries {
            w.push(pos, e).expect("push");
        }
        let d = start.elapsed();
        a.destroy(&p).expect("destroy");
        d
    });
    // Dense data written slot by slot through `extend_raw` in 4 KiB pieces.
    let bulk = (row.name == "dense").then(|| {
        let raws: Vec<u64> = entries.iter().map(|e| e.1.raw()).collect();
        fastest(|| {
            let mut a = KhoArray::new();
            let start = Instant::now();
            let mut w = a.writer(&p);
            for chunk in raws.chunks(512) {
                w.extend_raw(chunk).expect("extend");
            }
            let d = start.elapsed();
            a.destroy(&p).expect("destroy");
            d
        })
    });
    let vec = fastest(|| {
        let start = Instant::now();
        let mut v = Vec::new();
        for &(pos, e) in &entries {
            v.push((pos, e.raw()));
        }
        black_box(&v);
        start.elapsed()
    });

    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    for &(pos, e) in &entries {
        w.push(pos, e).expect("push");
    }
    let read = fastest(|| {
        let start = Instant::now();
        let mut sum = 0u64;
        for e in a.iter(&p) {
            let (pos, e) = e.expect("read");
            sum = sum.wrapping_add(pos ^ e.raw());
        }
        black_box(sum);
        start.elapsed()
    });
    let pages = a.pages();
    let bound = if positions.windows(2).all(|w| w[1] - w[0] <= 1 << 50) { 16.0 } else { 24.0 };
    a.preserve(&p).expect("preserve");
    let desc = a.descriptor();
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    let t2 = ModelTracker::incoming(blocks);
    let p2 = WithTracker::new(&m2, &t2);
    let start = Instant::now();
    let b = KhoArray::restore(&p2, &desc, u64::MAX).expect("restore");
    let restore = start.elapsed();
    assert_eq!(b.len(), n as u64);
    b.destroy(&p2).expect("destroy");

    let ours = (pages * PAGE_SIZE as u64) as f64 / n as f64;
    let rfc = (rfc_pages(positions) * PAGE_SIZE as u64) as f64 / n as f64;
    println!(
        "{:<24} {:>8} {:>7.3} {:>8.3} {:>9.1} {:>9.1} | {:>7.1} {:>7} {:>7.1} {:>6.1} {:>7.1} {:>8.1}",
        row.name,
        n,
        ours,
        bound,
        rfc,
        rfc / ours,
        ns_per(push, n),
        bulk.map_or("-".to_string(), |b| format!("{:.1}", ns_per(b, n))),
        ns_per(vec, n),
        ns_per(push, n) / ns_per(vec, n),
        ns_per(read, n),
        ns_per(restore, n),
    );
}
