//! A tracker and an incoming handle own their platform: a borrow, an
//! exclusive borrow, a `Box` or an `Arc` all work, and the platform comes
//! back out.

mod common;

use std::sync::Arc;

use common::{incoming_blocks, machine, order};
use kho_abi::{PAGE_SIZE, PageAlloc};
use kho_sim::Machine;
use kho_track::{Incoming, Tracker, TrackerOptions};

#[test]
fn a_boxed_machine_goes_through_a_handover_and_comes_back() {
    let m = machine();
    let scratch = m.scratch().to_vec();
    let mut tracker: Tracker<Box<Machine>> = Tracker::new(Box::new(m), &scratch, TrackerOptions::default()).unwrap();
    let folio = tracker.platform().alloc_pages(order(2)).unwrap();
    tracker.platform().fill_random(folio, 4 * PAGE_SIZE as u64, 3).unwrap();
    let sum = tracker.platform().checksum(folio, 4 * PAGE_SIZE as u64).unwrap();
    tracker.preserve_folio(folio, order(2)).unwrap();
    let blob = tracker.platform().alloc_pages(order(0)).unwrap();
    tracker.preserve_folio(blob, order(0)).unwrap();
    tracker.add_subtree("owned", blob, 8).unwrap();
    let (data, m) = tracker.finish_into_platform();
    let data = data.unwrap();

    let b = Arc::new(m.kexec(data));
    let incoming: Incoming<Arc<Machine>> = Incoming::import(Arc::clone(&b), &data).unwrap();
    assert_eq!(Arc::strong_count(&b), 2, "the handle holds its own reference");
    let reserved = incoming.reserved_blocks().unwrap();
    incoming.platform().boot_done(&mut reserved.iter().copied()).unwrap();
    assert_eq!(incoming_blocks(&incoming), [(folio, order(2)), (blob, order(0))]);
    incoming.restore_folio(folio, order(2)).unwrap();
    assert_eq!(b.checksum(folio, 4 * PAGE_SIZE as u64).unwrap(), sum);
    assert!(incoming.restore_folio(folio, order(2)).is_err(), "a block restores once");
    incoming.restore_folio(blob, order(0)).unwrap();
    incoming.finish();
    assert!(Arc::try_unwrap(b).is_ok(), "finish dropped the handle's reference");
}

#[test]
fn an_exclusive_borrow_is_a_platform_and_is_given_back() {
    let mut m = machine();
    let scratch = m.scratch().to_vec();
    let tracker = Tracker::new(&mut m, &scratch, TrackerOptions::default()).unwrap();
    let page = tracker.platform().alloc_pages(order(0)).unwrap();
    tracker.preserve_folio(page, order(0)).unwrap();
    assert!(tracker.is_preserved(page, order(0)).unwrap());
    let root = tracker.tree_root();
    let held = tracker.platform().outstanding_pages();
    assert!(held >= 3, "tree root, FDT page and the preserved page");
    let back: &mut Machine = tracker.into_platform();
    // Abandoned, not destroyed: the tree's pages are still allocated.
    assert_eq!(back.outstanding_pages(), held);
    let t2 = Tracker::new(&*back, &scratch, TrackerOptions::default()).unwrap();
    assert_ne!(t2.tree_root(), root, "the abandoned tree's root stays allocated");
    t2.destroy();
}
