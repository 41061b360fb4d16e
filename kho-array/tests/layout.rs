//! Byte-exact layout: what the writer puts in memory, word for word.

mod common;

use common::*;
use kho_abi::{PAGE_SIZE, PhysAddr};
use kho_array::format::{PAGE_WORDS, RunHeader};
use kho_array::{ArrayDesc, Entry, KhoArray};
use kho_sim::ModelTracker;
use zerocopy::IntoBytes;

fn val(v: u64) -> u64 {
    v << 1 | 1
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

    let mut want = vec![0u64; PAGE_WORDS];
    let words = [
        0,
        5,
        0x6,
        0x3,
        0x5,
        0x1_0000_8000,
        0xf8_0002,
        0x1,
        0x3,
        0x1000_0000_0000_0000,
        0x13,
        0x3,
        0xffff_ffff_ffff_ffff,
        0x7,
    ];
    want[..words.len()].copy_from_slice(&words);
    assert_eq!(page_words(&m, a.first_page()), want);
    assert_eq!((a.pages(), a.len(), a.record_bytes()), (1, 6, 12 * 8));

    // The descriptor, byte for byte.
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&[0x52, 0x52, 0x41, 0x4b, 0x01, 0x00, 0x00, 0x00]);
    d[8..].copy_from_slice(&a.first_page().as_u64().to_le_bytes());
    assert_eq!(a.descriptor().as_bytes(), &d);
    a.destroy(&p).unwrap();
}

/// A dense run fills a page with 509 entries and continues on the next
/// page, whose `start` carries the position; the first page links it.
#[test]
fn dense_run_spills_to_a_page_with_its_start() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    w.seek(0x7000).unwrap();
    let raws: Vec<u64> = (0..1000).map(val).collect();
    w.extend_raw(&raws).unwrap();
    assert_eq!(w.position(), Some(0x7000 + 1000));
    assert_eq!(a.pages(), 2);

    let first = page_words(&m, a.first_page());
    let second_pa = PhysAddr::new(first[0]);
    assert!(second_pa.is_page_aligned() && !second_pa.is_null());
    assert_eq!(&first[1..3], &[0x7000, RunHeader::plain(509, 0).encode()]);
    assert_eq!(&first[3..], &raws[..509]);
    let second = page_words(&m, second_pa);
    assert_eq!(&second[..3], &[0, 0x7000 + 509, RunHeader::plain(491, 0).encode()]);
    assert_eq!(&second[3..494], &raws[509..]);
    assert!(second[494..].iter().all(|&w| w == 0));
    assert_eq!(a.footprint(), 2 * PAGE_SIZE as u64);
    a.destroy(&p).unwrap();
}

/// Isolated entries: a header and an entry each, 255 to a page exactly;
/// a gap of 2^50 still fits the header, 2^50 + 1 takes the escape.
#[test]
fn isolated_entries_and_the_escape_boundary() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    let mut pos = 0u64;
    for k in 0..256u64 {
        w.push(pos, Entry::value(k).unwrap()).unwrap();
        pos += 1 << 49;
    }
    assert_eq!(a.pages(), 2);
    let first = page_words(&m, a.first_page());
    assert_eq!(first[2], RunHeader::plain(1, 0).encode());
    assert_eq!(first[4], RunHeader::plain(1, (1 << 49) - 1).encode());
    assert_eq!(first[PAGE_WORDS - 1], val(254));
    let second = page_words(&m, PhysAddr::new(first[0]));
    assert_eq!(&second[..4], &[0, 255 << 49, RunHeader::plain(1, 0).encode(), val(255)]);
    a.destroy(&p).unwrap();

    let mut b = KhoArray::new();
    let mut w = b.writer(&p);
    w.push(10, Entry::value(1).unwrap()).unwrap();
    w.push(10 + (1 << 50), Entry::value(2).unwrap()).unwrap();
    w.push(10 + (1 << 50) + (1 << 50) + 1, Entry::value(3).unwrap()).unwrap();
    let words = page_words(&m, b.first_page());
    let escape_pos = 10 + (2 << 50) + 1;
    let want = [0, 10, 2, val(1), RunHeader::plain(1, (1 << 50) - 1).encode(), val(2), 3, escape_pos, val(3), 0];
    assert_eq!(&words[..10], &want);
    assert_eq!(b.record_bytes(), 16 + 16 + 24);
    b.destroy(&p).unwrap();
}

/// A record that does not fit the rest of a page goes to a new page, where
/// it needs no escape: `start` holds its position.
#[test]
fn an_escape_that_does_not_fit_starts_a_page_without_escape() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    // 254 isolated entries leave two words: too few for an escape record.
    for k in 0..254u64 {
        w.push(k * 2, Entry::value(k).unwrap()).unwrap();
    }
    w.push(u64::MAX, Entry::value(1).unwrap()).unwrap();
    assert_eq!(a.pages(), 2);
    let first = page_words(&m, a.first_page());
    assert_eq!(&first[PAGE_WORDS - 2..], &[0, 0]);
    let second = page_words(&m, PhysAddr::new(first[0]));
    assert_eq!(&second[..4], &[0, u64::MAX, RunHeader::plain(1, 0).encode(), val(1)]);
    assert_eq!(a.record_bytes(), 254 * 16 + 16);
    a.destroy(&p).unwrap();
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
