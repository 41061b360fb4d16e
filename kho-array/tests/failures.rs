//! Failures: refused allocations and preservations while writing, misuse
//! of the writer, corrupt chains restored through strict and careless
//! platforms. Nothing may leak and nothing may stay claimed.

mod common;

use common::*;
use kho_abi::chain::ChainFault;
use kho_abi::{Errno, PhysAddr, ToErrno, WithTracker, read_phys};
use kho_array::{ArrayDesc, ArrayError, Entry, Field, KhoArray, Op, PageFault, RunFault};
use kho_sim::ModelTracker;

fn pattern() -> Vec<(u64, Entry)> {
    // Dense stretches, isolated entries and far jumps: 8 pages.
    let mut v: Vec<u64> = (0..700).collect();
    v.extend((1..1300).map(|i| 1000 + i * 7));
    v.extend((1..800).map(|i| i << 52));
    v.iter().map(|&pos| (pos, entry_for(pos))).collect()
}

/// The `n`-th allocation fails: the write stops with `ENOMEM`, the array
/// holds exactly the entries before, allocated pages are exactly its own,
/// and the write resumes once memory is back.
#[test]
fn allocation_failure_at_every_page_leaves_a_consistent_array() {
    let entries = pattern();
    let pages = {
        let m = machine();
        let t = ModelTracker::new();
        let mut a = KhoArray::new();
        write(&mut a, &with(&m, &t), &entries);
        a.pages()
    };
    assert_eq!(pages, 8);
    for n in 1..=pages {
        let m = machine();
        let t = ModelTracker::new();
        let p = with(&m, &t);
        let mut a = KhoArray::new();
        m.fail_nth_allocation(n);
        let mut w = a.writer(&p);
        let mut failure = None;
        for (i, &(pos, e)) in entries.iter().enumerate() {
            if let Err(e) = w.push(pos, e) {
                failure = Some((i, e));
                break;
            }
        }
        let (failed_at, e) = failure.expect("an allocation fails");
        assert!(matches!(e, ArrayError::Platform { op: Op::Alloc, .. }), "{e}");
        assert_eq!(e.errno(), Errno::NoMem);
        assert_eq!(a.pages(), n - 1);
        assert_eq!(m.outstanding_pages(), n - 1, "nothing allocated beyond the array's pages");
        assert_eq!(a.len(), failed_at as u64);
        assert_eq!(collect(&a, &p), raw(&entries[..failed_at]));
        m.clear_failures();
        write(&mut a, &p, &entries[failed_at..]);
        assert_eq!(collect(&a, &p), raw(&entries));
        a.destroy(&p).unwrap();
        assert_eq!(m.outstanding_pages(), 0);
    }
}

/// An array preserved while it grows preserves each new page; a refused
/// preservation frees the new page and leaves the array as it was.
#[test]
fn preserve_failure_of_a_new_page_frees_it() {
    let entries = pattern();
    let m = machine();
    let t = FailingTracker::default();
    let p = WithTracker::new(&m, &t);
    let mut a = KhoArray::new();
    write(&mut a, &p, &entries[..300]);
    a.preserve(&p).unwrap();
    t.fail_at.set(1);
    let mut w = a.writer(&p);
    let failed_at =
        300 + entries[300..].iter().position(|&(pos, e)| w.push(pos, e).is_err()).expect("a preserve fails");
    assert_eq!(a.pages(), 1);
    assert_eq!(m.outstanding_pages(), 1);
    assert_eq!(t.inner.blocks().len(), 1);
    write(&mut a, &p, &entries[failed_at..]);
    assert_eq!(t.inner.blocks().len() as u64, a.pages());
    assert_eq!(collect(&a, &p), raw(&entries));
    a.destroy(&p).unwrap();
    assert_eq!((m.outstanding_pages(), t.inner.blocks().len()), (0, 0));
}

/// `preserve` refused on the k-th page rolls back the k - 1 before it.
#[test]
fn preserve_failure_rolls_back() {
    let m = machine();
    let t = FailingTracker::default();
    let p = WithTracker::new(&m, &t);
    let mut a = KhoArray::new();
    write(&mut a, &p, &pattern());
    for k in 1..=a.pages() {
        t.fail_at.set(k);
        let e = a.preserve(&p).unwrap_err();
        assert!(matches!(e, ArrayError::Platform { op: Op::Preserve, .. }), "{e}");
        assert_eq!(e.errno(), Errno::Busy);
        assert!(!a.is_preserved());
        assert_eq!(t.inner.blocks(), []);
    }
    a.preserve(&p).unwrap();
    assert_eq!(a.preserve(&p), Err(ArrayError::AlreadyPreserved));
    a.unpreserve(&p).unwrap();
    assert_eq!(t.inner.blocks(), []);
    assert_eq!(a.unpreserve(&p), Err(ArrayError::NotPreserved));
    a.preserve(&p).unwrap();
    a.destroy(&p).unwrap();
    assert_eq!((m.outstanding_pages(), t.inner.blocks().len()), (0, 0));
}

#[test]
fn writer_refuses_misuse() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    assert_eq!(w.position(), Some(0));
    w.push(10, Entry::value(1).unwrap()).unwrap();
    assert_eq!(w.seek(10), Err(ArrayError::NotAscending { pos: 10, last: 10 }));
    assert_eq!(w.seek(3), Err(ArrayError::NotAscending { pos: 3, last: 10 }));
    assert_eq!(w.extend_raw(&[1, 3, 4, 5]), Err(ArrayError::InvalidEntry { raw: 4 }));
    assert_eq!(w.position(), Some(13));
    w.extend_raw(&[0, 0, 9]).unwrap();
    w.push(u64::MAX, Entry::value(2).unwrap()).unwrap();
    assert_eq!(w.position(), None);
    assert_eq!(w.set(Entry::value(3).unwrap()), Err(ArrayError::PositionOverflow));
    assert_eq!(w.extend_raw(&[0]), Err(ArrayError::PositionOverflow));
    assert_eq!(w.extend_raw(&[]), Ok(()));
    assert_eq!(collect(&a, &p), [(10, 3), (11, 1), (12, 3), (15, 9), (u64::MAX, 5)]);
    // A new writer on a full array has no position either.
    assert_eq!(a.writer(&p).position(), None);
    a.destroy(&p).unwrap();
}

/// Corrupt the chain of a preserved array in place, hand it over, and
/// restore through a strict tracker and through a claim that never
/// refuses: both must fail, terminate, and give back every claim.
fn corrupt_and_restore(
    name: &str,
    corrupt: impl Fn(&kho_sim::Machine, &[PhysAddr]),
    want: impl Fn(&ArrayError) -> bool,
) {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    write(&mut a, &p, &pattern());
    a.preserve(&p).unwrap();
    let mut pages = vec![a.first_page()];
    while pages.len() < a.pages() as usize {
        let next = read_phys::<u64, _>(&m, *pages.last().unwrap()).unwrap();
        pages.push(PhysAddr::new(next));
    }
    corrupt(&m, &pages);
    let desc: ArrayDesc = a.descriptor();
    let (m2, t2) = kexec(m, &t);
    let e = KhoArray::restore(&with(&m2, &t2), &desc, u64::MAX).unwrap_err();
    assert!(want(&e), "{name}: strict: {e:?}");
    assert_eq!(t2.claimed(), [], "{name}");
    let lax = LaxClaim::default();
    let e = KhoArray::restore(&with(&m2, &lax), &desc, u64::MAX).unwrap_err();
    assert_eq!(lax.claims.get(), lax.unclaims.get(), "{name}: lax claims balanced ({e})");
    assert_eq!(m2.outstanding_pages(), 0);
}

#[test]
fn corrupt_chains_fail_cleanly() {
    // The last page links back to the first, to itself, to the third.
    for back in [0usize, 5, 2] {
        corrupt_and_restore(
            "cycle",
            |m, pages| set_words(m, pages[5], 0, &[pages[back].as_u64()]),
            |e| {
                matches!(
                    e,
                    ArrayError::Page {
                        field: Field::Next,
                        fault: PageFault::Link(ChainFault::Cycle { .. }) | PageFault::Link(ChainFault::NotClaimable(_)),
                        ..
                    }
                )
            },
        );
    }
    corrupt_and_restore(
        "entry zeroed",
        |m, pages| set_words(m, pages[0], 100, &[0]),
        |e| {
            matches!(
                e,
                ArrayError::Run {
                    page: 0,
                    run: 0,
                    word: 511,
                    field: Field::Entry,
                    fault: RunFault::ZeroEntry { index: 97 },
                    ..
                }
            )
        },
    );
    corrupt_and_restore(
        "start lowered",
        |m, pages| set_words(m, pages[1], 1, &[5]),
        |e| {
            matches!(
                e,
                ArrayError::Page { page: 1, field: Field::Start, fault: PageFault::NotAscending { start: 5, .. }, .. }
            )
        },
    );
    corrupt_and_restore(
        "next misaligned",
        |m, pages| set_words(m, pages[3], 0, &[pages[4].as_u64() + 8]),
        |e| {
            matches!(
                e,
                ArrayError::Page { page: 4, field: Field::Next, fault: PageFault::Link(ChainFault::Misaligned), .. }
            )
        },
    );
    corrupt_and_restore(
        "next outside RAM",
        |m, pages| set_words(m, pages[3], 0, &[0x1000]),
        |e| matches!(e, ArrayError::Page { page: 4, fault: PageFault::Link(ChainFault::NotRam(_)), .. }),
    );
    corrupt_and_restore(
        "run count grown into the descriptors",
        |m, pages| set_words(m, pages[0], 511, &[508]),
        |e| {
            matches!(
                e,
                ArrayError::Run {
                    page: 0,
                    word: 511,
                    field: Field::Count,
                    fault: RunFault::Overruns { end: 512, limit: 511 },
                    ..
                }
            )
        },
    );
}

#[test]
fn bad_descriptors() {
    let m = machine();
    let t = ModelTracker::new();
    let good = ArrayDesc::new(PhysAddr::NULL);
    for (desc, field) in [
        (ArrayDesc { magic: 0x5252_414b, ..good }, Field::Magic),
        (ArrayDesc { version: 0, ..good }, Field::Version),
        (ArrayDesc { reserved: 0x8000, ..good }, Field::Reserved),
    ] {
        let e = KhoArray::restore(&with(&m, &t), &desc, 1).unwrap_err();
        assert!(matches!(e, ArrayError::Descriptor { field: f, .. } if f == field), "{e}");
    }
}
