//! Subtree blobs checked over their whole `blob-size`, and "preserved"
//! answered by containment in any preserved block.

#![cfg(not(loom))]

mod common;

use common::*;
use kho_abi::{Errno, KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, ToErrno};
use kho_sim::Machine;
use kho_track::{BlobFault, Incoming, TrackError};

const PAGE: u64 = PAGE_SIZE as u64;

/// Kernel A preserves an order-3 folio and an order-0 page right after it,
/// and names subtrees of the given `(name, pa offset from the folio, size)`
/// (an absolute PA if `abs`). Returns the next machine, its kho_data and
/// the folio.
fn handover_with(subs: &[(&str, u64, u64, bool)]) -> (Machine, KhoData, PhysAddr) {
    let m = machine();
    let mut t = tracker(&m);
    let folio = m.alloc_pages(order(4)).unwrap();
    t.preserve_folio(folio, order(3)).unwrap();
    let after = PhysAddr::new(folio.as_u64() + 8 * PAGE);
    t.preserve_folio(after, Order::ZERO).unwrap();
    for &(name, off, size, abs) in subs {
        let pa = if abs { off } else { folio.as_u64().wrapping_add(off) };
        t.add_subtree(name, PhysAddr::new(pa), size).unwrap();
    }
    let data = t.finish().unwrap();
    (m.kexec(data), data, folio)
}

fn blob_err(inc: &Incoming<&Machine>, name: &str) -> (PhysAddr, BlobFault) {
    match inc.check_subtree_blob(name).unwrap_err() {
        TrackError::SubtreeBlob { name: n, at, fault, .. } => {
            assert_eq!(n, name);
            (at, fault)
        }
        e => panic!("{name}: {e:?}"),
    }
}

#[test]
fn whole_blobs_are_checked() {
    let m0 = machine();
    let ram_end = m0.ram_end().as_u64();
    drop(m0);
    let (m, data, folio) = handover_with(&[
        // Inside the order-3 folio, not at its start: contained, fine.
        ("inside", PAGE + 16, 2 * PAGE, false),
        // Across the folio and the order-0 page after it: fine.
        ("across", 6 * PAGE, 3 * PAGE, false),
        // 12 KiB from the order-0 page: only its first 4 KiB preserved.
        ("partial", 8 * PAGE, 3 * PAGE, false),
        // From the last preserved page past the end of RAM.
        ("past-ram", ram_end - PAGE, 2 * PAGE, true),
        // A size that overflows.
        ("huge", 0, 0xffff_ffff_ffff_f000, false),
        // Outside RAM, and at PA 0.
        ("outside", ram_end + 16 * PAGE, 64, true),
        ("zero", 0, 64, true),
    ]);
    let inc = Incoming::import(&m, &data).unwrap();
    let sub = inc.check_subtree_blob("inside").unwrap();
    assert_eq!(sub.pa.as_u64(), folio.as_u64() + PAGE + 16);
    inc.check_subtree_blob("across").unwrap();
    assert_eq!(blob_err(&inc, "partial"), (PhysAddr::new(folio.as_u64() + 9 * PAGE), BlobFault::NotPreserved));
    assert_eq!(blob_err(&inc, "past-ram"), (PhysAddr::new(ram_end), BlobFault::NotRam));
    assert_eq!(blob_err(&inc, "huge"), (folio, BlobFault::Overflow));
    assert_eq!(blob_err(&inc, "outside"), (PhysAddr::new(ram_end + 16 * PAGE), BlobFault::NotRam));
    assert_eq!(blob_err(&inc, "zero"), (PhysAddr::NULL, BlobFault::ZeroAddress));
    let e = inc.check_subtree_blob("partial").unwrap_err();
    assert_eq!(e.errno(), Errno::Inval);
    assert!(e.to_string().contains("\"partial\""), "{e}");
    assert_eq!(inc.check_subtree_blob("nope").unwrap_err().errno(), Errno::NoEnt);
    // Once its block is restored, a blob no longer checks out.
    inc.restore_folio(folio, order(3)).unwrap();
    assert_eq!(blob_err(&inc, "inside"), (PhysAddr::new(folio.as_u64() + PAGE + 16), BlobFault::NotPreserved));
}

#[test]
fn preserved_means_contained_in_any_block() {
    let (m, data, folio) = handover_with(&[]);
    let inc = Incoming::import(&m, &data).unwrap();
    let at = |pages: u64| PhysAddr::new(folio.as_u64() + pages * PAGE);
    assert!(inc.is_preserved(at(3), PAGE).unwrap());
    assert!(inc.is_preserved(at(0), 9 * PAGE).unwrap());
    assert!(inc.is_preserved(PhysAddr::new(at(7).as_u64() + 100), 200).unwrap());
    assert!(!inc.is_preserved(at(0), 9 * PAGE + 1).unwrap());
    assert!(!inc.is_preserved(at(9), 1).unwrap());
    assert!(inc.is_preserved(at(0), u64::MAX).is_err());
    // The root FDT page, claimed by the import, is reported separately.
    assert!(inc.root_fdt_preserved().unwrap());
}

#[test]
fn root_fdt_inside_a_larger_block_is_preserved() {
    // Kernel A's FDT copied into the second page of a preserved order-2
    // folio, and kho_data pointed there: the page is no block of its own,
    // but lies inside one.
    let m = machine();
    let t = tracker(&m);
    let folio = m.alloc_pages(order(2)).unwrap();
    t.preserve_folio(folio, order(2)).unwrap();
    let mut data = t.finish().unwrap();
    let mut fdt = vec![0u8; PAGE as usize];
    m.read(PhysAddr::new(data.fdt_addr), &mut fdt).unwrap();
    let inner = PhysAddr::new(folio.as_u64() + PAGE);
    m.write(inner, &fdt).unwrap();
    data.fdt_addr = inner.as_u64();
    let m = m.kexec(data);
    let inc = Incoming::import(&m, &data).unwrap();
    assert!(inc.root_fdt_preserved().unwrap());
    assert!(inc.is_preserved(inner, PAGE).unwrap());
}
