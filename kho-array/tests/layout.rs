//! Byte-exact layout: what the writer puts in memory, word for word.

mod common;

use common::*;
use kho_abi::{PAGE_SIZE, PhysAddr};
use kho_array::format::{ARRAY_PAGE_WORDS as W, bits_for};
use kho_array::{ArrayDesc, Entry, KhoArray};
use kho_sim::ModelTracker;
use zerocopy::IntoBytes;

fn val(v: u64) -> u64 {
    v << 1 | 1
}

/// A page of `W` words: `words` at their indexes, zero elsewhere.
fn page_of(words: &[(usize, u64)]) -> Vec<u64> {
    let mut page = vec![0u64; W];
    for &(at, v) in words {
        page[at] = v;
    }
    page
}

/// The worked example of the crate docs and DESIGN.md.
#[test]
fn worked_example_is_byte_exact() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    w.push(5, Entry::value(1).unwrap()).unwrap();
    w.set(Entry::value(2).unwrap()).unwrap();
    w.set(Entry::pointer(0x1_0000_8000).unwrap()).unwrap();
    w.push(1000, Entry::value(0).unwrap()).unwrap();
    w.push(1 << 60, Entry::value(9).unwrap()).unwrap();
    w.push(u64::MAX, Entry::value(3).unwrap()).unwrap();

    let want = page_of(&[
        (1, 5),
        (2, 0x4002_0004),
        (3, 0x3),
        (4, 0x5),
        (5, 0x1_0000_8000),
        (6, 0x1),
        (7, 0x13),
        (8, 0x7),
        (W - 5, 0xef),
        (W - 4, 0xffff_ffff_ffff_fe03),
        (W - 3, 0xffff_ffff_ffff_05c0),
        (W - 2, 0x3e00),
        (W - 1, 0x2),
    ]);
    assert_eq!(page_words(&m, a.first_page()), want);
    assert_eq!((a.pages(), a.len()), (1, 6));

    // The descriptor, byte for byte.
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&[0x52, 0x52, 0x41, 0x4b, 0x01, 0x00, 0x00, 0x00]);
    d[8..].copy_from_slice(&a.first_page().as_u64().to_le_bytes());
    assert_eq!(a.descriptor().as_bytes(), &d);
    a.destroy(&p).unwrap();
}

/// Gaps of 2^50 and 2^50 + 1 cost nothing special: the skip field is 51
/// bits wide, three descriptors straddle the last three words.
#[test]
fn large_gaps_widen_the_skip_field() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    w.push(10, Entry::value(1).unwrap()).unwrap();
    w.push(10 + (1 << 50), Entry::value(2).unwrap()).unwrap();
    w.push(10 + (2 << 50) + 1, Entry::value(3).unwrap()).unwrap();
    let want = page_of(&[
        (1, 10),
        (2, 0x3300_0003),
        (3, val(1)),
        (4, val(2)),
        (5, val(3)),
        (W - 3, 0x100_0000),
        (W - 2, 0x1f_ffff_ffff),
        (W - 1, 0xfff8_0000_0000_0000),
    ]);
    assert_eq!(page_words(&m, a.first_page()), want);
    a.destroy(&p).unwrap();
}

/// A run growing past one entry widens `count_bits` from 0 to 1, and the
/// descriptors written so far are repacked in place.
#[test]
fn growing_a_run_repacks_the_descriptors() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    w.push(0, Entry::value(0).unwrap()).unwrap();
    w.push(10, Entry::value(10).unwrap()).unwrap();
    // Two single runs: widths 0 and 4, the second's skip 9 at bit 4.
    let before = page_of(&[(2, 0x0400_0002), (3, val(0)), (4, val(10)), (W - 1, 9 << 4)]);
    assert_eq!(page_words(&m, a.first_page()), before);
    let mut w = a.writer(&p);
    w.set(Entry::value(11).unwrap()).unwrap();
    let after = page_of(&[(2, 0x0401_0002), (3, val(0)), (4, val(10)), (5, val(11)), (W - 1, 0x260)]);
    assert_eq!(page_words(&m, a.first_page()), after);
    assert_eq!(collect(&a, &p), [(0, val(0)), (10, val(10)), (11, val(11))]);
    a.destroy(&p).unwrap();
}

/// A dense run fills a page with 508 entries and continues on the next
/// page, whose `start` carries the position; the first page links it.
#[test]
fn dense_run_spills_to_a_page_with_its_start() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    w.seek(0x7000).unwrap();
    // 1000 entries with 4 KiB pages (the vector of DESIGN.md).
    let dense = W - 4;
    let total = dense + 492;
    let raws: Vec<u64> = (0..total as u64).map(val).collect();
    w.extend_raw(&raws).unwrap();
    assert_eq!(w.position(), Some(0x7000 + total as u64));
    assert_eq!(a.pages(), 2);

    let first = page_words(&m, a.first_page());
    let second_pa = PhysAddr::new(first[0]);
    assert!(second_pa.is_page_aligned() && !second_pa.is_null());
    // One run; `count - 1` needs 9 bits with 4 KiB pages.
    let layout = 1 | u64::from(bits_for(dense as u64 - 1)) << 16;
    assert_eq!(&first[1..3], &[0x7000, layout]);
    assert_eq!(&first[3..W - 1], &raws[..dense]);
    assert_eq!(first[W - 1], dense as u64 - 1);
    let second = page_words(&m, second_pa);
    let rest = total - dense;
    let layout2 = 1 | u64::from(bits_for(rest as u64 - 1)) << 16;
    assert_eq!(&second[..3], &[0, 0x7000 + dense as u64, layout2]);
    assert_eq!(&second[3..3 + rest], &raws[dense..]);
    assert!(second[3 + rest..W - 1].iter().all(|&w| w == 0));
    assert_eq!(second[W - 1], rest as u64 - 1);
    assert_eq!(a.footprint(), 2 * PAGE_SIZE as u64);
    a.destroy(&p).unwrap();
}

/// Isolated entries at gaps of 2^50: 50-bit skips, so a 4 KiB page holds
/// 285 of them (3 + 285 + 223 words); the next opens a page at its own
/// position. One jump above 2^63 first widens the page's skips to 64 bits:
/// 254 entries, 16.1 bytes each (only 2 gaps that large fit in `u64`).
#[test]
fn isolated_entries_fill_a_page() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    for (jump, skip_bits) in [(0u64, 50u64), ((1 << 63) + 1, 64)] {
        let mut a = KhoArray::new();
        let (mut pos, mut n) = (jump.max(1 << 50), 0u64);
        a.writer(&p).push(0, Entry::value(0).unwrap()).unwrap();
        let mut last = 0;
        while a.pages() < 2 {
            n += 1;
            last = pos;
            a.writer(&p).push(pos, Entry::value(n).unwrap()).unwrap();
            pos += 1 << 50;
        }
        let first = page_words(&m, a.first_page());
        let per_page = n;
        assert_eq!(first[2], per_page | skip_bits << 24, "jump {jump:#x}");
        let fits = |e: u64| 3 + e + (e * skip_bits).div_ceil(64) <= W as u64;
        assert!(fits(per_page) && !fits(per_page + 1));
        if PAGE_SIZE == 4096 {
            assert_eq!(per_page, if skip_bits == 50 { 285 } else { 254 });
        }
        let second = page_words(&m, PhysAddr::new(first[0]));
        assert_eq!(&second[..4], &[0, last, 0x0000_0001, val(n)]);
        a.destroy(&p).unwrap();
    }
}

/// The descriptor of an empty array has `first` 0, and restores as empty.
#[test]
fn empty_array_descriptor() {
    let a = KhoArray::new();
    assert_eq!(a.descriptor(), ArrayDesc::new(PhysAddr::NULL));
    let m = machine();
    let t = ModelTracker::new();
    let b = KhoArray::restore(&with(&m, &t), &a.descriptor(), 1).unwrap();
    assert_eq!((b.len(), b.pages(), b.last_position()), (0, 0, None));
    assert_eq!(collect(&b, &with(&m, &t)), []);
}
