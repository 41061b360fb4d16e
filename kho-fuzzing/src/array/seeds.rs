//! Hand-made inputs for the fuzz corpus: valid arrays (the worked example
//! of `DESIGN.md` word for word, dense, chained, sparse, at the edges of
//! every field) and one corruption per validation rule (see [`seeds`]).
//!
//! Pages are built here from the description, with their own bit packing,
//! not with the crate's writer or stream helpers.

use std::vec;
use std::vec::Vec;

use kho_abi::PhysAddr;

use super::Input;
use kho_array::format::{ARRAY_PAGE_WORDS, ArrayDesc};

/// Words of a page.
const W: usize = ARRAY_PAGE_WORDS;

/// Value entry `v` (raw).
pub const fn val(v: u64) -> u64 {
    v << 1 | 1
}

/// A `layout` word.
pub const fn layout(runs: u64, count_bits: u64, skip_bits: u64) -> u64 {
    runs | count_bits << 16 | skip_bits << 24
}

/// A page holding `runs` (`(count, skip)` each) with the given widths and
/// their `entries` (as many as the counts add up to), descriptors packed
/// bit by bit from the end of the page.
pub fn page(next: u64, start: u64, count_bits: u32, skip_bits: u32, runs: &[(u64, u64)], entries: &[u64]) -> Vec<u64> {
    let mut p = vec![0u64; W];
    p[0] = next;
    p[1] = start;
    p[2] = layout(runs.len() as u64, count_bits.into(), skip_bits.into());
    p[3..3 + entries.len()].copy_from_slice(entries);
    let mut bit = 0;
    for &(count, skip) in runs {
        for (value, width) in [(count - 1, count_bits), (skip, skip_bits)] {
            for j in 0..width {
                p[W - 1 - bit / 64] |= (value >> j & 1) << (bit % 64);
                bit += 1;
            }
        }
    }
    p
}

/// The worked example of `DESIGN.md`, word for word: values 1, 2 and a
/// pointer at 5, 6, 7; value 0 at 1000; value 9 at 2^60; value 3 at
/// `u64::MAX`.
pub fn example_page() -> Vec<u64> {
    let mut p = vec![0u64; W];
    p[1] = 0x5;
    p[2] = 0x4002_0004;
    p[3..=8].copy_from_slice(&[0x3, 0x5, 0x1_0000_8000, 0x1, 0x13, 0x7]);
    p[W - 5] = 0xef;
    p[W - 4] = 0xffff_ffff_ffff_fe03;
    p[W - 3] = 0xffff_ffff_ffff_05c0;
    p[W - 2] = 0x3e00;
    p[W - 1] = 0x2;
    p
}

/// The entries the worked example holds: `(position, raw)`.
pub const EXAMPLE_ENTRIES: [(u64, u64); 6] =
    [(5, 3), (6, 5), (7, 0x1_0000_8000), (1000, 1), (1 << 60, 19), (u64::MAX, 7)];

/// `n` dense values `0..n` as one run at `start`, on one page.
fn dense(next: u64, start: u64, n: u64) -> Vec<u64> {
    let entries: Vec<u64> = (0..n).map(val).collect();
    page(next, start, 64 - (n - 1).leading_zeros(), 0, &[(n, 0)], &entries)
}

/// An input with descriptor link `first`, preserved `mask`, and `pages`
/// written to pages 0, 1, ... (only their non-zero words: fresh pages are
/// zero).
fn input(first: u64, mask: u8, pages: &[Vec<u64>]) -> Input {
    let mut segments = Vec::new();
    for (k, words) in pages.iter().enumerate() {
        let mut at = 0;
        while at < words.len() {
            if words[at] == 0 {
                at += 1;
                continue;
            }
            let end = (at..words.len()).find(|&i| words[i] == 0).unwrap_or(words.len());
            segments.push((k as u8, at as u16, words[at..end].to_vec()));
            at = end;
        }
    }
    Input { desc: ArrayDesc::new(PhysAddr::new(first)), preserved: mask, max_pages: 0, segments }
}

/// A one-page input on page 0.
fn one(p: Vec<u64>) -> Input {
    input(1, 1, &[p])
}

/// A one-page input: `p` changed by `f`.
fn one_with(mut p: Vec<u64>, f: impl FnOnce(&mut Vec<u64>)) -> Input {
    f(&mut p);
    one(p)
}

/// `(name, input)` for every seed; names start with `valid-` or `bad-`.
pub fn seeds() -> Vec<(&'static str, Input)> {
    let example = one(example_page());
    let with = |f: fn(&mut Input)| {
        let mut i = example.clone();
        f(&mut i);
        i
    };
    // 1000 values from 0x7000: 508 on page 0, 492 on page 1.
    let dense_1000 = input(
        1,
        0b11,
        &[dense(2, 0x7000, 508), {
            let entries: Vec<u64> = (508..1000).map(val).collect();
            page(0, 0x71fc, 9, 0, &[(492, 0)], &entries)
        }],
    );
    // 285 isolated values at gaps of 2^50: as many as a page holds.
    let isolated_runs: Vec<(u64, u64)> = (0..285).map(|k| (1, if k == 0 { 0 } else { (1 << 50) - 1 })).collect();
    let isolated_entries: Vec<u64> = (0..285).map(val).collect();
    let isolated = page(0, 7, 0, 50, &isolated_runs, &isolated_entries);
    // As many runs as a page can hold: widths 0, one entry each.
    let most_runs = W - 3;
    let max_runs: Vec<u64> =
        [0, 100, layout(most_runs as u64, 0, 0)].into_iter().chain((0..most_runs as u64).map(val)).collect();
    // Three pages linked 3 -> 1 -> 2, positions far apart, the last at u64::MAX.
    let three = input(
        3,
        0b111,
        &[
            page(2, 1 << 40, 0, 0, &[(1, 0)], &[val(2)]),
            page(0, u64::MAX - 1, 1, 0, &[(2, 0)], &[0xffff_ffff_ffff_fff8, u64::MAX]),
            page(1, 0, 1, 4, &[(2, 0), (1, 10)], &[val(0), val(1), 8]),
        ],
    );
    let one_run = |start: u64, entries: &[u64]| page(0, start, 1, 0, &[(entries.len() as u64, 0)], entries);
    let two_pages = |last0: u64, start1: u64| {
        input(1, 0b11, &[page(2, last0, 0, 0, &[(1, 0)], &[val(1)]), page(0, start1, 0, 0, &[(1, 0)], &[val(2)])])
    };

    vec![
        ("valid-empty", input(0, 0, &[])),
        ("valid-example", example.clone()),
        ("valid-dense-508", one(dense(0, 0x7000, 508))),
        ("valid-dense-1000-2-pages", dense_1000.clone()),
        ("valid-widths-0", one(page(0, 40, 0, 0, &[(1, 0), (1, 0), (1, 0)], &[val(0), 8, val(2)]))),
        ("valid-max-runs", one(max_runs.clone())),
        ("valid-285-isolated", one(isolated.clone())),
        (
            // DESIGN.md's second vector: 51-bit skips straddling words.
            "valid-straddle",
            one({
                let mut p = vec![0u64; W];
                p[1] = 10;
                p[2] = 0x3300_0003;
                p[3..=5].copy_from_slice(&[0x3, 0x5, 0x7]);
                p[W - 3..].copy_from_slice(&[0x100_0000, 0x1f_ffff_ffff, 0xfff8_0000_0000_0000]);
                p
            }),
        ),
        (
            // DESIGN.md's third vector: two runs after a repack.
            "valid-repacked",
            one({
                let mut p = vec![0u64; W];
                p[2] = 0x0401_0002;
                p[3..=5].copy_from_slice(&[val(0), val(10), val(11)]);
                p[W - 1] = 0x260;
                p
            }),
        ),
        ("valid-at-max", one(page(0, u64::MAX, 0, 0, &[(1, 0)], &[u64::MAX]))),
        ("valid-max-widths", one(page(0, 0, 16, 64, &[(1, u64::MAX)], &[val(5)]))),
        ("valid-3-pages", three),
        ("bad-magic", with(|i| i.desc.magic ^= 1)),
        ("bad-version", with(|i| i.desc.version = 2)),
        ("bad-reserved", with(|i| i.desc.reserved = 1)),
        ("bad-first-misaligned", with(|i| i.desc.first = 0x1_0000_0008)),
        ("bad-first-not-ram", with(|i| i.desc.first = 0x1000)),
        ("bad-unpreserved", with(|i| i.preserved = 0b10)),
        ("bad-too-many-pages", Input { max_pages: 1, ..dense_1000 }),
        ("bad-cycle-self", one(page(1, 0, 0, 0, &[(1, 0)], &[val(1)]))),
        (
            "bad-cycle-3",
            input(
                1,
                0b111,
                &[
                    page(2, 0, 0, 0, &[(1, 0)], &[val(1)]),
                    page(3, 10, 0, 0, &[(1, 0)], &[val(1)]),
                    page(1, 20, 0, 0, &[(1, 0)], &[val(1)]),
                ],
            ),
        ),
        ("bad-next-misaligned", one(page(0x1_0000_0100, 0, 0, 0, &[(1, 0)], &[val(1)]))),
        ("bad-start-descends", two_pages(100, 99)),
        ("bad-start-at-last", two_pages(100, 100)),
        ("bad-after-max", two_pages(u64::MAX, 5)),
        ("bad-layout-reserved", one_with(example_page(), |p| p[2] |= 1 << 32)),
        ("bad-layout-no-runs", one_with(example_page(), |p| p[2] = layout(0, 2, 64))),
        ("bad-layout-count-bits", one_with(dense(0, 0, 508), |p| p[2] = layout(1, 17, 0))),
        ("bad-layout-skip-bits", one_with(example_page(), |p| p[2] = layout(4, 2, 65))),
        ("bad-layout-too-many-runs", one_with(max_runs, |p| p[2] = layout(most_runs as u64 + 1, 0, 0))),
        // 255 runs of 64-bit descriptors: 3 + 255 + 255 words.
        ("bad-layout-stream-too-big", one(page(0, 0, 0, 64, &[(1, 0); 255], &[val(1); 255]))),
        ("bad-overrun", one_with(dense(0, 0, 508), |p| p[W - 1] = 508)),
        ("bad-run-overflow", one(one_run(u64::MAX, &[val(1), val(2)]))),
        ("bad-skip-overflow", one(page(0, u64::MAX - 1, 0, 1, &[(1, 0), (1, 1)], &[val(1), val(2)]))),
        ("bad-skip-wraps", one(page(0, 2, 0, 64, &[(1, u64::MAX - 1)], &[val(1)]))),
        ("bad-isolated-overflow", one_with(isolated, |p| p[1] = u64::MAX - (284 << 50) + 1)),
        ("bad-zero-entry", one_with(example_page(), |p| p[4] = 0)),
        ("bad-malformed-entry", one_with(example_page(), |p| p[7] = 0x1002)),
        ("bad-free-word", one_with(example_page(), |p| p[9] = 1)),
        ("bad-free-word-last", one_with(example_page(), |p| p[W - 6] = 1 << 63)),
        ("bad-free-word-widths-0", one_with(page(0, 0, 0, 0, &[(1, 0)], &[val(1)]), |p| p[W - 1] = 1)),
        ("bad-padding", one_with(example_page(), |p| p[W - 5] |= 1 << 8)),
        ("bad-padding-top", one_with(example_page(), |p| p[W - 5] |= 1 << 63)),
    ]
}
