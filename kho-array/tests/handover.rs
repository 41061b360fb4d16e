//! A handover through kho-sim: write, preserve, kexec, boot (which poisons
//! everything not preserved), restore from a descriptor kept in the
//! user's own preserved page, read back, free.

mod common;

use common::*;
use kho_abi::chain::ChainFault;
use kho_abi::{Claim, Order, PageAlloc, PhysAddr, Preserve, read_phys, write_phys};
use kho_array::{ArrayDesc, ArrayError, Entry, Field, KhoArray, PageFault};
use kho_sim::ModelTracker;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Offset of the descriptor inside the user's page, as a user struct
/// would place it.
const DESC_AT: u64 = 0x40;

#[test]
fn handover_restores_what_was_written() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut positions: Vec<u64> = (0..3000).map(|_| rng.random::<u64>() >> rng.random_range(0..64)).collect();
    positions.extend(0..600);
    positions.push(u64::MAX);
    positions.sort_unstable();
    positions.dedup();
    let entries: Vec<(u64, Entry)> = positions.iter().map(|&pos| (pos, entry_for(pos))).collect();

    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    write(&mut a, &p, &entries);
    a.preserve(&p).unwrap();
    assert!(a.is_preserved());
    // The user's own preserved page holds the descriptor.
    let user = p.alloc_pages(Order::ZERO).unwrap();
    write_phys(&m, PhysAddr::new(user.as_u64() + DESC_AT), &a.descriptor()).unwrap();
    p.preserve(user, Order::ZERO).unwrap();
    // A page neither preserved nor freed: the next kernel poisons it.
    let scribble = p.alloc_pages(Order::ZERO).unwrap();
    let array_pages = a.pages();

    let (m2, t2) = kexec(m, &t);
    let p2 = with(&m2, &t2);
    assert!(m2.is_poisoned(scribble), "boot_done poisons what was not preserved");
    assert!(!m2.is_poisoned(user));
    p2.claim(user, Order::ZERO).unwrap();
    let desc: ArrayDesc = read_phys(&m2, PhysAddr::new(user.as_u64() + DESC_AT)).unwrap();
    let b = KhoArray::restore(&p2, &desc, array_pages).unwrap();
    assert_eq!(collect(&b, &p2), raw(&entries));
    assert_eq!(t2.claimed().len() as u64, array_pages + 1);
    assert_eq!(t2.unclaimed(), []);
    b.destroy(&p2).unwrap();
    p2.free_pages(user, Order::ZERO);
    assert_eq!((m2.reserved_pages(), m2.outstanding_pages()), (0, 0));
}

#[test]
fn forgetting_to_preserve_fails_the_restore_cleanly() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let entries: Vec<_> = (0..2000u64).map(|i| (i * 3, entry_for(i))).collect();
    write(&mut a, &p, &entries);
    let desc = a.descriptor();
    let first = a.first_page();

    let (m2, t2) = kexec(m, &t);
    let p2 = with(&m2, &t2);
    assert!(m2.is_poisoned(first));
    let e = KhoArray::restore(&p2, &desc, u64::MAX).unwrap_err();
    assert!(
        matches!(e, ArrayError::Page { page: 0, field: Field::First, fault: PageFault::Link(ChainFault::NotClaimable(_)), pa } if pa == first),
        "{e:?}"
    );
    assert_eq!(kho_abi::ToErrno::errno(&e), kho_abi::Errno::NoEnt);
    assert_eq!((m2.outstanding_pages(), t2.claimed().len()), (0, 0));
}

#[test]
fn preserving_only_part_of_the_chain_fails_at_the_first_unpreserved_page() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let entries: Vec<_> = (0..2000u64).map(|i| (i * 3, entry_for(i))).collect();
    write(&mut a, &p, &entries);
    // 493 entries with 2-bit skips fill a page: 3 + 493 + 16 words.
    assert_eq!(a.pages(), 5);
    a.preserve(&p).unwrap();
    // Take the fifth page out of the preserved set behind the array's back.
    let mut pa = a.first_page();
    for _ in 0..4 {
        pa = PhysAddr::new(read_phys::<u64, _>(&m, pa).unwrap());
    }
    t.unpreserve(pa, Order::ZERO).unwrap();
    let desc = a.descriptor();

    let (m2, t2) = kexec(m, &t);
    let p2 = with(&m2, &t2);
    let e = KhoArray::restore(&p2, &desc, u64::MAX).unwrap_err();
    assert!(
        matches!(
            e,
            ArrayError::Page { page: 4, field: Field::Next, fault: PageFault::Link(ChainFault::NotClaimable(_)), .. }
        ),
        "{e}"
    );
    assert_eq!(t2.claimed(), [], "the four claimed pages are given back");
    assert_eq!(t2.unclaimed().len(), 4, "the pages after it");
}

#[test]
fn restore_bounds_the_chain() {
    let m = machine();
    let t = ModelTracker::new();
    let p = with(&m, &t);
    let mut a = KhoArray::new();
    let entries: Vec<_> = (0..1100u64).map(|i| (i, entry_for(i))).collect();
    write(&mut a, &p, &entries);
    assert_eq!(a.pages(), 3);
    a.preserve(&p).unwrap();
    let desc = a.descriptor();
    let (m2, t2) = kexec(m, &t);
    let p2 = with(&m2, &t2);
    let e = KhoArray::restore(&p2, &desc, 2).unwrap_err();
    assert!(
        matches!(e, ArrayError::Page { page: 2, fault: PageFault::Link(ChainFault::TooLong { max: 2 }), .. }),
        "{e}"
    );
    assert_eq!(t2.claimed(), []);
    let b = KhoArray::restore(&p2, &desc, 3).unwrap();
    assert_eq!(collect(&b, &p2), raw(&entries));
    b.destroy(&p2).unwrap();
}
