//! Space bounds on adversarial position patterns.
//!
//! For every pattern: the records cost at most 16 bytes per entry whose
//! gap from the previous position is at most 2^50 and 24 per larger gap;
//! every page but the last is filled to within two words; so an array
//! whose gaps are all at most 2^50 takes at most ⌈n / 255⌉ pages (4 KiB),
//! any array at most ⌈n / 170⌉, and a dense one is within 1% of 8 bytes
//! per entry. `cargo test -p kho-array --test space -- --nocapture` prints
//! the figures.

mod common;

use common::*;
use kho_abi::PAGE_SIZE;
use kho_array::format::PAGE_WORDS;
use kho_array::{Entry, KhoArray};
use kho_sim::ModelTracker;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BIG: u64 = 1 << 50;

/// Positions from a start and a gap generator, `n` of them.
fn from_gaps(n: usize, mut gap: impl FnMut(usize) -> u64) -> Vec<u64> {
    let mut pos = 0u64;
    (0..n)
        .map(|i| {
            if i > 0 {
                pos = pos.checked_add(gap(i)).expect("pattern stays below u64::MAX");
            }
            pos
        })
        .collect()
}

struct Figures {
    n: u64,
    pages: u64,
    record: u64,
    bound: u64,
    big_gaps: u64,
}

/// Writes `positions` and checks the bounds; returns the figures.
fn measure(name: &str, positions: &[u64]) -> Figures {
    let m = machine_with(128 << 20);
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    for &pos in positions {
        w.push(pos, Entry::value(pos >> 1).unwrap()).unwrap();
    }
    let n = positions.len() as u64;
    let big_gaps = positions.windows(2).filter(|w| w[1] - w[0] > BIG).count() as u64;
    let bound = 16 * n + 8 * big_gaps;
    let record = a.record_bytes();
    let pages = a.pages();
    assert_eq!(a.len(), n);
    assert!(record <= bound, "{name}: {record} record bytes, bound {bound}");
    // Every page but the last holds at least PAGE_WORDS - 4 record words.
    let full = (PAGE_WORDS - 4) as u64;
    assert!(pages <= (record / 8).saturating_sub(1) / full + 1, "{name}: {pages} pages for {record} bytes");
    let per_page = if big_gaps == 0 { (PAGE_WORDS as u64 - 2) / 2 } else { (PAGE_WORDS as u64 - 4).div_ceil(3) };
    assert!(pages <= n.div_ceil(per_page), "{name}: {pages} pages for {n} entries");
    a.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
    let f = Figures { n, pages, record, bound, big_gaps };
    println!(
        "{name:<28} n={n:>7} pages={pages:>5} record B/entry={:>6.3} page B/entry={:>7.3} (bound {:>6.3})",
        f.record as f64 / n as f64,
        (pages * PAGE_SIZE as u64) as f64 / n as f64,
        f.bound as f64 / n as f64,
    );
    f
}

#[test]
fn dense_is_within_one_percent_of_8_bytes() {
    for (name, start) in [("dense from 0", 0), ("dense at 2^63", 1 << 63), ("dense to u64::MAX", u64::MAX - 99_999)] {
        let positions: Vec<u64> = (0..100_000).map(|i| start + i).collect();
        let f = measure(name, &positions);
        let per_entry = (f.pages * PAGE_SIZE as u64) as f64 / f.n as f64;
        assert!(per_entry <= 8.08, "{name}: {per_entry} bytes per entry");
    }
}

#[test]
fn isolated_entries_cost_16_bytes_up_to_a_gap_of_2_to_the_50() {
    for (name, gap, n) in
        [("gap 2", 2, 50_000), ("gap 2^20", 1 << 20, 50_000), ("gap 2^49", 1 << 49, 20_000), ("gap 2^50", BIG, 16_000)]
    {
        let f = measure(name, &from_gaps(n, |_| gap));
        assert_eq!(f.record, 16 * f.n, "{name}: exactly a header and an entry each");
        assert_eq!(f.pages, f.n.div_ceil((PAGE_WORDS as u64 - 2) / 2), "{name}: 255 to a 4 KiB page");
    }
}

#[test]
fn escapes_cost_24_bytes_above_2_to_the_50() {
    for (name, gap, n) in [("gap 2^50+1", BIG + 1, 16_000), ("gap 2^60", 1 << 60, 15), ("gap 2^63", 1 << 63, 2)] {
        let f = measure(name, &from_gaps(n, |_| gap));
        // The first entry of each page needs no escape: `start` has it.
        assert_eq!(f.record, 24 * f.n - 8 * f.pages, "{name}");
        assert_eq!(f.big_gaps, f.n - 1);
    }
}

#[test]
fn mixed_adversarial_patterns() {
    let alt = |a: u64, b: u64| move |i: usize| if i.is_multiple_of(2) { a } else { b };
    measure("alternate 1, 2^50+1", &from_gaps(20_000, alt(1, BIG + 1)));
    measure("alternate 2^50, 2^50+1", &from_gaps(16_000, alt(BIG, BIG + 1)));
    measure("alternate 1, 2", &from_gaps(50_000, alt(1, 2)));
    measure("pairs 2^49 apart", &from_gaps(20_000, alt(1, 1 << 49)));
    for k in 2..=5 {
        measure(&format!("runs of {k}, 2^50+1 apart"), &from_gaps(15_000, |i| if i % k == 0 { BIG + 1 } else { 1 }));
    }
    // 254 isolated entries leave two words of a page, too few for the
    // escape that follows: the worst waste the writer allows.
    let f = measure("254 isolated then an escape", &from_gaps(255 * 60, |i| if i % 255 == 0 { BIG + 1 } else { 2 }));
    assert_eq!(f.pages, 60);
}

#[test]
fn random_patterns() {
    let mut rng = SmallRng::seed_from_u64(7);
    measure("random gaps in [2, 2^50]", &from_gaps(10_000, |_| rng.random_range(2..=BIG)));
    let mut rng = SmallRng::seed_from_u64(8);
    let mut uniform: Vec<u64> = (0..20_000).map(|_| rng.random::<u64>()).collect();
    uniform.sort_unstable();
    uniform.dedup();
    measure("uniform over u64", &uniform);
    let mut rng = SmallRng::seed_from_u64(9);
    let mut clustered = Vec::new();
    let mut pos = 0u64;
    for _ in 0..500 {
        pos += rng.random_range(1 << 10..1 << 40);
        clustered.extend(pos..pos + rng.random_range(1..200));
        pos = *clustered.last().unwrap() + 1;
    }
    measure("clustered", &clustered);
}

/// The RFC's layout spends a page on each isolated entry (2,550 pages
/// here); array-v1 needs 10.
#[test]
fn isolated_entries_take_a_255th_of_the_rfc_pages() {
    let f = measure("gap 2^20 (RFC: 4096 B/entry)", &from_gaps(2_550, |_| 1 << 20));
    assert_eq!(f.pages, 2_550 / ((PAGE_WORDS as u64 - 2) / 2));
}
