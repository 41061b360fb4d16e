//! Model-based tests: arrays written from random patterns must read back,
//! before and after a handover, exactly what a `BTreeMap` holds.

mod common;

use std::collections::BTreeMap;

use common::*;
use kho_abi::PhysMem;
use kho_array::{Entry, KhoArray};
use kho_sim::ModelTracker;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Position patterns, each a BTreeMap model.
fn model(positions: impl IntoIterator<Item = u64>) -> BTreeMap<u64, Entry> {
    positions.into_iter().map(|pos| (pos, entry_for(pos))).collect()
}

fn random_sparse(rng: &mut SmallRng, n: usize) -> BTreeMap<u64, Entry> {
    model((0..n).map(|_| rng.random::<u64>()))
}

fn dense(start: u64, n: u64) -> BTreeMap<u64, Entry> {
    model(start..start + n)
}

fn clustered(rng: &mut SmallRng, clusters: usize) -> BTreeMap<u64, Entry> {
    let mut positions = Vec::new();
    for _ in 0..clusters {
        let base = rng.random::<u64>() >> rng.random_range(0..64);
        let len = rng.random_range(1..700u64);
        // Clusters with holes: every slot kept with probability 3/4.
        positions.extend((0..len).filter_map(|i| base.checked_add(i)).filter(|_| rng.random_ratio(3, 4)));
    }
    model(positions)
}

/// Gaps drawn from every scale, so that runs and skip fields of every
/// width occur.
fn mixed_gaps(rng: &mut SmallRng, n: usize) -> BTreeMap<u64, Entry> {
    let mut pos = 0u64;
    let mut positions = Vec::new();
    for _ in 0..n {
        positions.push(pos);
        // One gap in eight is above 2^50; the rest span every scale
        // from 1 to 2^50.
        let gap = if rng.random_ratio(1, 8) {
            rng.random_range((1 << 50) + 1..1 << 52)
        } else {
            let bits = rng.random_range(0..=50u32);
            (rng.random::<u64>() >> (64 - bits).min(63)).max(1)
        };
        match pos.checked_add(gap) {
            Some(next) => pos = next,
            None => break,
        }
    }
    assert_eq!(positions.len(), n, "the pattern stays below u64::MAX");
    model(positions)
}

/// Writes the model one way or another: `push` per entry, or
/// `extend_raw` over windows of the position space.
fn write_model<P>(a: &mut KhoArray, p: &P, model: &BTreeMap<u64, Entry>, bulk: bool)
where
    P: PhysMem + kho_abi::PageAlloc + kho_abi::Preserve + ?Sized,
{
    if !bulk {
        let entries: Vec<_> = model.iter().map(|(&p, &e)| (p, e)).collect();
        return write(a, p, &entries);
    }
    let mut w = a.writer(p);
    let mut iter = model.iter().peekable();
    while let Some(&(&start, _)) = iter.peek() {
        // A window of up to 64 slots from this entry, holes as 0.
        let mut raws = Vec::new();
        while let Some(&(&pos, e)) = iter.peek() {
            let off = pos - start;
            if off >= 64 {
                break;
            }
            raws.resize(off as usize, 0);
            raws.push(e.raw());
            iter.next();
        }
        w.seek(start).unwrap();
        w.extend_raw(&raws).unwrap();
    }
}

fn check(name: &str, model: &BTreeMap<u64, Entry>) {
    for bulk in [false, true] {
        let m = machine();
        let t = ModelTracker::new();
        let p = with(&m, &t);
        let mut a = KhoArray::new();
        write_model(&mut a, &p, model, bulk);
        let want: Vec<(u64, u64)> = model.iter().map(|(&pos, e)| (pos, e.raw())).collect();
        assert_eq!(collect(&a, &p), want, "{name} (bulk {bulk}): read back");
        assert_eq!(a.len(), model.len() as u64);
        assert_eq!(a.last_position(), model.keys().next_back().copied());
        a.preserve(&p).unwrap();
        assert_eq!(t.blocks().len() as u64, a.pages());
        let desc = a.descriptor();
        let pages = a.pages();

        let (m2, t2) = kexec(m, &t);
        let p2 = with(&m2, &t2);
        let b = KhoArray::restore(&p2, &desc, pages).unwrap();
        assert_eq!(collect(&b, &p2), want, "{name} (bulk {bulk}): restored");
        assert_eq!((b.len(), b.pages(), b.last_position()), (model.len() as u64, pages, a.last_position()));
        b.destroy(&p2).unwrap();
        assert_eq!((m2.reserved_pages(), m2.outstanding_pages()), (0, 0), "{name}: all freed");
    }
}

#[test]
fn empty() {
    check("empty", &BTreeMap::new());
}

#[test]
fn single_entries_at_the_ends() {
    check("position 0", &model([0]));
    check("u64::MAX", &model([u64::MAX]));
    check("0 and u64::MAX", &model([0, u64::MAX]));
    check("top run", &model(u64::MAX - 600..=u64::MAX));
}

#[test]
fn dense_arrays() {
    check("dense from 0", &dense(0, 5000));
    check("dense high", &dense(1 << 63, 1531));
}

#[test]
fn random_sparse_arrays() {
    let mut rng = SmallRng::seed_from_u64(1);
    for n in [1, 2, 300, 3000] {
        check("random sparse", &random_sparse(&mut rng, n));
    }
}

#[test]
fn clustered_arrays() {
    let mut rng = SmallRng::seed_from_u64(2);
    for clusters in [1, 5, 40] {
        check("clustered", &clustered(&mut rng, clusters));
    }
}

#[test]
fn mixed_gap_arrays() {
    let mut rng = SmallRng::seed_from_u64(3);
    for n in [10, 1000, 4000] {
        check("mixed gaps", &mixed_gaps(&mut rng, n));
    }
}

/// Appending after a restore continues the same array, across as many
/// handovers as one likes.
#[test]
fn appending_across_two_handovers() {
    let mut rng = SmallRng::seed_from_u64(4);
    let full = mixed_gaps(&mut rng, 3000);
    let entries: Vec<_> = full.iter().map(|(&p, &e)| (p, e)).collect();
    let (one, two) = entries.split_at(1700);

    let m = machine();
    let t = ModelTracker::new();
    let mut a = KhoArray::new();
    a.preserve(&with(&m, &t)).unwrap(); // preserved while empty: pages are preserved as they come
    write(&mut a, &with(&m, &t), one);
    assert_eq!(t.blocks().len() as u64, a.pages());
    let desc = a.descriptor();

    let (m2, t2) = kexec(m, &t);
    let mut b = KhoArray::restore(&with(&m2, &t2), &desc, u64::MAX).unwrap();
    write(&mut b, &with(&m2, &t2), two);
    assert_eq!(collect(&b, &with(&m2, &t2)), raw(&entries));
    // Hand it over again: the next tracker starts empty.
    let t2b = ModelTracker::new();
    b.preserve(&with(&m2, &t2b)).unwrap();
    let desc = b.descriptor();
    let (m3, t3) = kexec(m2, &t2b);
    let c = KhoArray::restore(&with(&m3, &t3), &desc, u64::MAX).unwrap();
    assert_eq!(collect(&c, &with(&m3, &t3)), raw(&entries));
    c.destroy(&with(&m3, &t3)).unwrap();
    assert_eq!(m3.reserved_pages(), 0);
}

/// Every call leaves the array readable: after each push (runs growing,
/// widths widening and descriptors repacked, pages opening) the array
/// reads back exactly the model so far.
#[test]
fn every_push_leaves_the_array_well_formed() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut rng = SmallRng::seed_from_u64(11);
    let mut a = KhoArray::new();
    let mut want = Vec::new();
    let mut pos = 0u64;
    while a.pages() < 3 {
        let gap = match rng.random_range(0..4) {
            0 => 1,
            1 => rng.random_range(2..64),
            2 => 1 << rng.random_range(6..50),
            _ => rng.random_range(1..1 << 44),
        };
        pos += gap;
        let e = entry_for(pos);
        a.writer(&p).push(pos, e).unwrap();
        want.push((pos, e.raw()));
        assert_eq!(collect(&a, &p), want, "after {} pushes", want.len());
    }
    a.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
}
