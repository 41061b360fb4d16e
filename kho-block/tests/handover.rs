//! A block set carried across a simulated kexec, and the outgoing set's
//! life: capacity, failure injection, the writer's and cursor's `prev`,
//! and leaks.

mod common;

use common::{FailingPreserve, PAGE, entry_bytes, handover, machine, walk};
use kho_abi::{AbiError, Errno, Order, PageAlloc, PhysAddr, ToErrno, WithTracker, read_phys};
use kho_block::{BLOCK_CHAIN_MAX, BlockError, BlockSet, RawBlockSet, RestoredRawBlockSet};
use kho_sim::{Machine, ModelTracker};

type File = [u8; 64];

fn file(i: u64) -> File {
    entry_bytes(i, 64).try_into().unwrap()
}

/// What must not change when an operation fails: the set, the pages
/// allocated and preserved, and the bytes of every block.
fn snapshot(m: &Machine, t: &ModelTracker, set: &RawBlockSet) -> (String, u64, Vec<(PhysAddr, Order)>, Vec<u64>) {
    let sums = t.blocks().iter().map(|&(pa, _)| m.checksum(pa, PAGE).unwrap()).collect();
    (format!("{set:?}"), m.outstanding_pages(), t.blocks(), sums)
}

#[test]
fn sets_survive_kexec_and_poisoning() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut sessions = RawBlockSet::new(80).unwrap();
    let mut files = BlockSet::<File>::new();
    // Register more than will be serialized, then give the rest back.
    sessions.grow(&p, 200).unwrap();
    files.grow(&p, 1000).unwrap();
    let freed_page = p.alloc_pages(Order::ZERO).unwrap();
    m.write(freed_page, &[0x55; 64]).unwrap();
    p.free_pages(freed_page, Order::ZERO);
    for i in 0..120 {
        sessions.writer(&p).push(&entry_bytes(i, 80)).unwrap();
    }
    let all: Vec<File> = (0..700).map(file).collect();
    files.writer(&p).extend(&all).unwrap();
    sessions.shrink(&p, sessions.capacity() - sessions.len()).unwrap();
    files.shrink(&p, files.capacity() - files.len()).unwrap();
    assert_eq!((sessions.blocks(), files.blocks()), (3, 12));
    assert_eq!(t.blocks().len(), 15);
    assert_eq!(m.outstanding_pages(), 15);
    let (s_head, f_head) = (sessions.head(), files.head());

    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    assert!(m2.is_poisoned(freed_page), "a freed page must be poisoned by the next kernel");
    assert_eq!(m2.reserved_pages(), 15);

    let s = RestoredRawBlockSet::restore(&p2, s_head, 80).unwrap();
    assert_eq!((s.len(), s.blocks()), (120, 3));
    for (i, pa) in s.iter(&p2).enumerate() {
        let mut b = [0u8; 80];
        m2.read(pa.unwrap(), &mut b).unwrap();
        assert_eq!(b.as_slice(), entry_bytes(i as u64, 80), "session {i}");
    }
    let f = BlockSet::<File>::restore(&p2, f_head).unwrap();
    let back: Vec<File> = f.iter(&p2).collect::<Result<_, _>>().unwrap();
    assert_eq!(back, all);
    assert_eq!(t2.unclaimed(), vec![]);
    s.free(&p2).unwrap();
    f.free(&p2).unwrap();
    assert_eq!(m2.reserved_pages(), 0);
    assert_eq!(m2.outstanding_pages(), 0);
}

#[test]
fn unshrunk_capacity_stays_preserved_but_unreachable() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<File>::new();
    set.grow(&p, 100).unwrap();
    set.writer(&p).extend(&[file(1); 10]).unwrap();
    let head = set.head();
    let (m2, t2) = handover(m, &t);
    let p2 = WithTracker::new(&m2, &t2);
    let r = BlockSet::<File>::restore(&p2, head).unwrap();
    assert_eq!((r.len(), r.blocks()), (10, 1));
    assert_eq!(t2.unclaimed().len(), 1, "the spare block is preserved and never reached");
    r.free(&p2).unwrap();
}

#[test]
fn destroy_and_free_leave_nothing() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<File>::new();
    set.grow(&p, 500).unwrap();
    set.writer(&p).extend(&vec![file(3); 300]).unwrap();
    assert_eq!(m.outstanding_pages(), 8);
    set.destroy(&p).unwrap();
    assert_eq!((set.len(), set.capacity(), set.blocks(), set.head()), (0, 0, 0, PhysAddr::NULL));
    assert_eq!(m.outstanding_pages(), 0);
    assert_eq!(t.blocks(), vec![]);
    // A destroyed set is a new set: it can grow again.
    set.grow(&p, 1).unwrap();
    set.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn failed_allocation_during_grow_changes_nothing() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = RawBlockSet::new(64).unwrap();
    set.grow(&p, 100).unwrap();
    set.writer(&p).extend(&vec![9u8; 64 * 70]).unwrap();
    // Growing to 700 entries needs 10 more blocks: fail each allocation in
    // turn.
    for k in 1..=10 {
        let before = snapshot(&m, &t, &set);
        m.fail_nth_allocation(k);
        let err = set.grow(&p, 600).unwrap_err();
        m.clear_failures();
        assert_eq!(err, BlockError::Platform(AbiError::NoMemory { order: 0 }), "allocation {k}");
        assert_eq!(err.errno(), Errno::NoMem);
        assert_eq!(snapshot(&m, &t, &set), before, "allocation {k}");
    }
    set.grow(&p, 600).unwrap();
    assert_eq!((set.capacity(), set.blocks()), (700, 12));
    set.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn failed_preserve_during_grow_changes_nothing() {
    let m = machine();
    let t = FailingPreserve::default();
    let p = WithTracker::new(&m, &t);
    let mut set = RawBlockSet::new(4080).unwrap();
    set.grow(&p, 3).unwrap();
    for k in 1..=5 {
        let before = (format!("{set:?}"), m.outstanding_pages(), t.inner.blocks());
        t.calls.set(0);
        t.fail_at.set(Some(k));
        assert_eq!(set.grow(&p, 5), Err(BlockError::Platform(AbiError::NoMemory { order: 0 })));
        assert_eq!((format!("{set:?}"), m.outstanding_pages(), t.inner.blocks()), before, "preserve {k}");
    }
    t.fail_at.set(None);
    set.grow(&p, 5).unwrap();
    assert_eq!(set.blocks(), 8);
    set.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn a_refused_unpreserve_keeps_the_blocks_it_could_not_release() {
    let m = machine();
    let t = FailingPreserve::default();
    let p = WithTracker::new(&m, &t);
    let mut set = RawBlockSet::new(4080).unwrap();
    set.grow(&p, 6).unwrap();
    set.writer(&p).push(&[3; 4080]).unwrap();
    t.unpreserve_fail_at.set(Some(3));
    let err = set.shrink(&p, 5).unwrap_err();
    assert!(matches!(err, BlockError::Platform(AbiError::NotPreserved { .. })), "{err:?}");
    // Two spare blocks went; the one refused and the one after it stay,
    // still preserved, with the capacity they hold.
    assert_eq!((set.len(), set.capacity(), set.blocks()), (1, 4, 4));
    assert_eq!((m.outstanding_pages(), t.inner.blocks().len()), (4, 4));
    t.unpreserve_fail_at.set(None);
    set.destroy(&p).unwrap();
    assert_eq!((m.outstanding_pages(), t.inner.blocks().len()), (0, 0));
}

#[test]
fn capacity_limits() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = RawBlockSet::new(4080).unwrap();
    let err = set.grow(&p, BLOCK_CHAIN_MAX + 1).unwrap_err();
    assert_eq!(err, BlockError::ChainFull { blocks: BLOCK_CHAIN_MAX + 1, max: BLOCK_CHAIN_MAX });
    assert_eq!(err.errno(), Errno::NoSpc);
    set.grow(&p, 2).unwrap();
    assert!(matches!(set.grow(&p, usize::MAX), Err(BlockError::ChainFull { .. })));
    assert_eq!(set.shrink(&p, 3), Err(BlockError::ShrinkTooFar { by: 3, capacity: 2 }));
    assert_eq!(m.allocation_count(), 2, "refused grows allocate nothing");

    let mut w = set.writer(&p);
    w.push(&[1; 4080]).unwrap();
    assert_eq!(w.push(&[1; 4]), Err(BlockError::EntryLength { len: 4, entry_size: 4080 }));
    assert_eq!(w.extend(&[2; 3 * 4080]), Err(BlockError::NoSpace { len: 1, capacity: 2, wanted: 3 }));
    assert_eq!(w.len(), 1, "a refused extend writes nothing");
    w.reserve().unwrap();
    let err = w.reserve().unwrap_err();
    assert_eq!(err, BlockError::NoSpace { len: 2, capacity: 2, wanted: 1 });
    assert_eq!(err.errno(), Errno::NoSpc);
    set.destroy(&p).unwrap();
}

#[test]
fn shrink_drops_tail_entries_and_blocks() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<File>::new();
    set.grow(&p, 63 * 4).unwrap();
    let all: Vec<File> = (0..63 * 3 + 5).map(file).collect();
    set.writer(&p).extend(&all).unwrap();
    set.shrink(&p, 63 * 4 - 100).unwrap();
    assert_eq!((set.len(), set.capacity(), set.blocks()), (100, 100, 2));
    assert_eq!(m.outstanding_pages(), 2);
    let counts: Vec<u64> = walk(&m, set.head(), 10).iter().map(|b| b.1).collect();
    assert_eq!(counts, [63, 37]);
    let back: Vec<File> = set.iter(&p).collect::<Result<_, _>>().unwrap();
    assert_eq!(back, all[..100]);
    set.destroy(&p).unwrap();
}

#[test]
fn writer_prev_unwinds_across_blocks() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<File>::new();
    set.grow(&p, 130).unwrap();
    let mut w = set.writer(&p);
    for i in 0..66 {
        w.push(&file(i)).unwrap();
    }
    for i in (0..66).rev() {
        assert_eq!(w.prev().unwrap(), Some(file(i)));
    }
    assert_eq!(w.prev().unwrap(), None);
    assert_eq!(set.head(), PhysAddr::NULL);
    assert_eq!((set.len(), set.capacity(), set.blocks()), (0, 130, 3));
    // Slots come back zeroed when reserved again.
    let pa = set.writer(&p).reserve().unwrap();
    assert_eq!(read_phys::<File, _>(&p, pa).unwrap(), [0; 64]);
    set.destroy(&p).unwrap();
    assert_eq!(m.outstanding_pages(), 0);
}

#[test]
fn cursor_steps_both_ways() {
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let mut set = BlockSet::<File>::new();
    set.grow(&p, 200).unwrap();
    let all: Vec<File> = (0..200).map(file).collect();
    set.writer(&p).extend(&all).unwrap();
    let mut it = set.iter(&p);
    assert!(it.prev().is_none());
    let fwd: Vec<File> = it.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(fwd, all);
    let mut back = Vec::new();
    while let Some(e) = it.prev() {
        back.push(e.unwrap());
    }
    back.reverse();
    assert_eq!(back, all);
    // next then prev yields the same entry, across a block boundary too.
    let mut it = set.iter(&p);
    for want in &all[..64] {
        assert_eq!(&it.next().unwrap().unwrap(), want);
    }
    assert_eq!(it.prev().unwrap().unwrap(), all[63]);
    assert_eq!(it.prev().unwrap().unwrap(), all[62]);
    assert_eq!(it.next().unwrap().unwrap(), all[62]);
    assert_eq!((it.position(), it.remaining()), (63, 137));
    // Bulk reads stop at the end.
    let mut buf = vec![[0u8; 64]; 150];
    assert_eq!(it.read_into(&mut buf).unwrap(), 137);
    assert_eq!(buf[..137], all[63..]);
    assert_eq!(it.read_into(&mut buf).unwrap(), 0);
    set.destroy(&p).unwrap();
}

#[test]
fn typed_and_raw_forms_convert() {
    let mut raw = RawBlockSet::new(64).unwrap();
    assert!(BlockSet::<[u8; 80]>::from_raw(RawBlockSet::new(64).unwrap()).is_err());
    let m = machine();
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    raw.grow(&p, 1).unwrap();
    raw.writer(&p).push(&file(5)).unwrap();
    let mut typed = BlockSet::<File>::from_raw(raw).unwrap();
    assert_eq!(typed.iter(&p).next().unwrap().unwrap(), file(5));
    assert_eq!(typed.as_raw().entry_size(), 64);
    typed.destroy(&p).unwrap();
    assert_eq!(RawBlockSet::new(0), Err(BlockError::EntrySize { size: 0, max: 4080 }));
}
