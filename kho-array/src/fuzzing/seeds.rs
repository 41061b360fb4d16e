//! Hand-made inputs for the fuzz corpus: valid arrays and one corruption
//! of each rule (see [`seeds`]).

use std::vec;
use std::vec::Vec;

use kho_abi::PhysAddr;

use super::Input;
use crate::format::{ArrayDesc, RunHeader};

/// Value entry `v` (raw).
const fn val(v: u64) -> u64 {
    v << 1 | 1
}

/// A plain run header word.
const fn run(count: u16, skip: u64) -> u64 {
    RunHeader::plain(count, skip).encode()
}

/// An escape run header word.
const fn esc(count: u16) -> u64 {
    RunHeader::escape(count).encode()
}

/// An input with descriptor link `first`, preserved `mask`, and `pages`
/// written from word 0 of pages 0, 1, ...
fn input(first: u64, mask: u8, pages: &[Vec<u64>]) -> Input {
    let segments = pages.iter().enumerate().map(|(k, words)| (k as u8, 0, words.clone())).collect();
    Input { desc: ArrayDesc::new(PhysAddr::new(first)), preserved: mask, max_pages: 0, segments }
}

/// The worked example of the crate documentation, on page 0.
pub fn example_page() -> Vec<u64> {
    vec![0, 5, run(3, 0), val(1), val(2), 0x1_0000_8000, run(1, 992), val(0), esc(1), 1 << 60, val(9)]
        .into_iter()
        .chain([esc(1), u64::MAX, val(3)])
        .collect()
}

/// `(name, input)` for every seed; names start with `valid-` or `bad-`.
pub fn seeds() -> Vec<(&'static str, Input)> {
    let example = input(1, 1, &[example_page()]);
    let with = |f: fn(&mut Input)| {
        let mut i = example.clone();
        f(&mut i);
        i
    };
    let dense0: Vec<u64> = [2, 0, run(509, 0)].into_iter().chain((0..509).map(val)).collect();
    let dense = input(1, 0b11, &[dense0, vec![0, 509, run(3, 0), val(509), val(510), val(511)]]);
    let isolated: Vec<u64> =
        [0, 7, run(1, 0), val(7)].into_iter().chain((1..255).flat_map(|k| [run(1, (1 << 49) - 1), val(k)])).collect();
    let escapes = input(
        1,
        0b111,
        &[
            vec![2, 1, run(1, 0), val(1), esc(2), 1 << 55, val(2), 8],
            vec![3, 1 << 56, run(1, 0), val(3), esc(1), 1 << 57, 16],
            vec![0, u64::MAX - 2, run(2, 0), val(4), val(5), run(1, 0), val(6)],
        ],
    );
    let too_many = Input { max_pages: 1, ..dense.clone() };
    vec![
        ("valid-empty", input(0, 0, &[])),
        ("valid-example", example.clone()),
        ("valid-dense-2-pages", dense),
        ("valid-escapes-3-pages", escapes),
        ("valid-at-max", input(1, 1, &[vec![0, u64::MAX, run(1, 0), val(7)]])),
        ("valid-position-0", input(1, 1, &[vec![0, 0, run(1, 0), 8]])),
        ("valid-255-isolated", input(1, 1, &[isolated])),
        ("bad-magic", with(|i| i.desc.magic ^= 1)),
        ("bad-version", with(|i| i.desc.version = 2)),
        ("bad-reserved", with(|i| i.desc.reserved = 1)),
        ("bad-first-misaligned", with(|i| i.desc.first = 0x1_0000_0008)),
        ("bad-first-not-ram", with(|i| i.desc.first = 0x1000)),
        ("bad-unpreserved", with(|i| i.preserved = 0b10)),
        ("bad-too-many-pages", too_many),
        ("bad-cycle-self", input(1, 1, &[vec![1, 0, run(1, 0), val(1)]])),
        (
            "bad-cycle-3",
            input(
                1,
                0b111,
                &[vec![2, 0, run(1, 0), val(1)], vec![3, 10, run(1, 0), val(1)], vec![1, 20, run(1, 0), val(1)]],
            ),
        ),
        ("bad-zero-count", input(1, 1, &[vec![0, 0, 1 << 14, val(1)]])),
        ("bad-escape-skip", input(1, 1, &[vec![0, 0, 1 << 14 | esc(1), 9, val(1)]])),
        ("bad-overrun", input(1, 1, &[vec![0, 0, run(510, 0), val(1)]])),
        ("bad-escape-descends", input(1, 1, &[vec![0, 100, run(1, 0), val(1), esc(1), 50, val(2)]])),
        ("bad-start-descends", input(1, 0b11, &[vec![2, 100, run(1, 0), val(1)], vec![0, 100, run(1, 0), val(2)]])),
        ("bad-run-overflow", input(1, 1, &[vec![0, u64::MAX, run(2, 0), val(1), val(2)]])),
        ("bad-skip-overflow", input(1, 1, &[vec![0, u64::MAX - 1, run(1, 0), val(1), run(1, 1), val(2)]])),
        ("bad-after-max", input(1, 0b11, &[vec![2, u64::MAX, run(1, 0), val(1)], vec![0, 5, run(1, 0), val(2)]])),
        ("bad-zero-entry", input(1, 1, &[vec![0, 0, run(3, 0), val(1), 0, val(3)]])),
        ("bad-malformed-entry", input(1, 1, &[vec![0, 0, run(2, 0), val(1), 0x1002]])),
        ("bad-trailing", input(1, 1, &[vec![0, 0, run(1, 0), val(1), 0, 0, 5]])),
        ("bad-empty-page", input(1, 1, &[vec![0, 0]])),
        ("bad-next-misaligned", input(1, 1, &[vec![0x1_0000_0100, 0, run(1, 0), val(1)]])),
    ]
}
