//! Space bounds on adversarial position patterns, counted in whole pages.
//!
//! For every pattern, every page but the last holds at least
//! `min_entries_per_closed_page(s)` entries, `s` the widest skip of the
//! array's gaps: at least `PAGE_SIZE / 16` entries (16 bytes each) when
//! no gap exceeds 2^50, at least `PAGE_SIZE / 24` for any gaps; dense
//! arrays are within 1% of 8 bytes per entry. `cargo test -p kho-array
//! --test space -- --nocapture` prints the figures.

mod common;

use common::*;
use kho_abi::array::{ArrayLayout, bits_for, stream_get};
use kho_abi::{PAGE_SIZE, PhysAddr};
use kho_array::format::min_entries_per_closed_page;
use kho_array::{Entry, KhoArray};
use kho_sim::{Machine, ModelTracker};
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

/// Entries in each page of the chain at `first`, from the pages' own
/// layouts and descriptors.
fn entries_per_page(m: &Machine, first: PhysAddr) -> Vec<u64> {
    let mut out = Vec::new();
    let mut pa = first;
    while !pa.is_null() {
        let page = page_words(m, pa);
        let l = ArrayLayout::decode(page[2]).expect("layout");
        let runs = usize::from(l.runs);
        out.push((0..runs).map(|r| stream_get(&page[..], l.count_bit(r), l.count_bits.into()) + 1).sum());
        pa = PhysAddr::new(page[0]);
    }
    out
}

struct Figures {
    n: u64,
    pages: u64,
    /// Bytes per entry over every page but the last.
    closed: f64,
}

/// Writes `positions`, checks the bounds, prints and returns the figures.
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
    assert_eq!(a.len(), n);
    let widest = positions.windows(2).map(|w| bits_for(w[1] - w[0] - 1)).max().unwrap_or(0);
    let per_page = entries_per_page(&m, a.first_page());
    assert_eq!(per_page.iter().sum::<u64>(), n, "{name}");
    assert_eq!(per_page.len() as u64, a.pages());
    let least = min_entries_per_closed_page(widest) as u64;
    let closed = &per_page[..per_page.len().saturating_sub(1)];
    if let Some(&fewest) = closed.iter().min() {
        assert!(fewest >= least, "{name}: a closed page holds {fewest} entries, fewer than {least}");
        let bound = if widest <= 50 { 16 } else { 24 };
        assert!(fewest * bound >= PAGE_SIZE as u64, "{name}: {fewest} entries in a closed page");
    }
    let pages = a.pages();
    a.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
    let closed_bytes = (closed.len() * PAGE_SIZE) as f64 / closed.iter().sum::<u64>().max(1) as f64;
    println!(
        "{name:<30} n={n:>7} pages={pages:>5} widest skip={widest:>2} bits  B/entry: all pages {:>7.3}, closed pages {:>7.3}",
        (pages * PAGE_SIZE as u64) as f64 / n as f64,
        closed_bytes,
    );
    Figures { n, pages, closed: closed_bytes }
}

#[test]
fn dense_is_within_one_percent_of_8_bytes() {
    for (name, start) in [("dense from 0", 0), ("dense at 2^63", 1 << 63), ("dense to u64::MAX", u64::MAX - 99_999)] {
        let positions: Vec<u64> = (0..100_000).map(|i| start + i).collect();
        let f = measure(name, &positions);
        assert!(f.closed <= 8.08, "{name}: {} bytes per entry", f.closed);
        let per_entry = (f.pages * PAGE_SIZE as u64) as f64 / f.n as f64;
        if PAGE_SIZE == 4096 {
            assert!(per_entry <= 8.08, "{name}: {per_entry} bytes per entry, the last page included");
        }
    }
}

#[test]
fn isolated_entries_cost_at_most_16_bytes_up_to_a_gap_of_2_to_the_50() {
    for (name, gap, n) in
        [("gap 2", 2, 50_000), ("gap 2^20", 1 << 20, 50_000), ("gap 2^49", 1 << 49, 20_000), ("gap 2^50", BIG, 16_000)]
    {
        let f = measure(name, &from_gaps(n, |_| gap));
        // All pages counted, the last partly filled one included.
        assert!(f.pages * PAGE_SIZE as u64 <= 16 * f.n + PAGE_SIZE as u64, "{name}");
    }
}

#[test]
fn gaps_above_2_to_the_50_cost_at_most_24_bytes() {
    // u64 has room for at most 2^14 gaps above 2^50.
    for (name, gap, n) in [("gap 2^50+1", BIG + 1, 16_000), ("gap 2^60", 1 << 60, 15), ("gap 2^63", 1 << 63, 2)] {
        let f = measure(name, &from_gaps(n, |_| gap));
        assert!(f.pages * PAGE_SIZE as u64 <= 24 * f.n + PAGE_SIZE as u64, "{name}");
    }
}

#[test]
fn mixed_adversarial_patterns() {
    let alt = |a: u64, b: u64| move |i: usize| if i.is_multiple_of(2) { a } else { b };
    measure("alternate 1, 2^50+1", &from_gaps(16_000, alt(1, BIG + 1)));
    measure("alternate 2^50, 2^50+1", &from_gaps(16_000, alt(BIG, BIG + 1)));
    measure("alternate 1, 2", &from_gaps(50_000, alt(1, 2)));
    measure("pairs 2^49 apart", &from_gaps(20_000, alt(1, 1 << 49)));
    for k in 2..=5 {
        measure(&format!("runs of {k}, 2^50 apart"), &from_gaps(15_000, |i| if i % k == 0 { BIG } else { 1 }));
    }
    // A long run first widens every descriptor's count field to 9 bits,
    // then isolated entries at 2^50 pay for it: the widest page there is.
    let mut widest = Vec::new();
    let mut pos = 0u64;
    for _ in 0..40 {
        widest.extend(pos..pos + 300);
        pos += 299;
        for _ in 0..240 {
            pos += BIG;
            widest.push(pos);
        }
        pos += BIG;
    }
    measure("runs of 300, then 240 at 2^50", &widest);
    // A jump above 2^63 widens its page's skips to 64 bits.
    let mut jump = from_gaps(5_000, |_| 1 << 40);
    let far = (1 << 63) + (1 << 62);
    jump.extend((0..5_000).map(|i| far + i * (1 << 40)));
    measure("one jump above 2^63", &jump);
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
    let f = measure("clustered", &clustered);
    assert!(f.closed <= 8.5, "clustered data costs about 8 bytes per entry: {}", f.closed);
}

/// The RFC's layout spends a page on each isolated entry (2,850 pages
/// here); array-v1 needs 10 at gaps of 2^20.
#[test]
fn isolated_entries_take_a_tiny_fraction_of_the_rfc_pages() {
    let f = measure("gap 2^20 (RFC: 4096 B/entry)", &from_gaps(2_850, |_| 1 << 20));
    if PAGE_SIZE == 4096 {
        // 20-bit skips: 3 + E + ⌈20E / 64⌉ <= 512 holds up to E = 389.
        assert_eq!(f.pages, 2_850u64.div_ceil(389));
    }
}
