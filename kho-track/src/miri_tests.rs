//! The tracker over a plain in-memory platform, so that its `unsafe` (the
//! view of a page as atomics) runs under Miri; kho-sim's memfd RAM is out
//! of Miri's reach. `cargo +nightly miri test -p kho-track --lib`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::{Cell, UnsafeCell};
use core::ops::ControlFlow;
use core::ptr::NonNull;

use kho_abi::{AbiError, Claim, KhoScratch, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem};

use crate::error::{TrackError, TreeFault};
use crate::{Incoming, Tracker, TrackerOptions};

const BASE: u64 = 0x10_0000;
const PAGES: usize = 64;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; PAGE_SIZE]>);

/// 64 pages of RAM at `BASE`, a bump allocator with a free list.
struct VecRam {
    pages: Box<[Page]>,
    next: Cell<usize>,
    free: UnsafeCell<Vec<usize>>,
    live: Cell<usize>,
}

impl VecRam {
    fn new() -> Self {
        let pages = (0..PAGES).map(|_| Page(UnsafeCell::new([0; PAGE_SIZE]))).collect();
        VecRam { pages, next: Cell::new(0), free: UnsafeCell::new(Vec::new()), live: Cell::new(0) }
    }

    fn pa(i: usize) -> PhysAddr {
        PhysAddr::new(BASE + (i * PAGE_SIZE) as u64)
    }
}

// SAFETY: pointers are into `self.pages`, a boxed slice that lives as long
// as `self` and never moves; pages are 4096-aligned and `BASE` is too, so
// offsets keep a PA's alignment; ranges outside the 64 pages are refused.
unsafe impl PhysMem for VecRam {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        let not_ram = AbiError::NotRam { pa, len };
        let off = pa.checked_offset_from(PhysAddr::new(BASE)).ok_or(not_ram)?;
        if off.checked_add(len).is_none_or(|end| end > (PAGES * PAGE_SIZE) as u64) {
            return Err(not_ram);
        }
        let (page, within) = (off as usize / PAGE_SIZE, off as usize % PAGE_SIZE);
        // SAFETY: `page < PAGES` and `within < PAGE_SIZE`, so the pointer
        // stays inside that page's array.
        let p = unsafe { self.pages[page].0.get().cast::<u8>().add(within) };
        NonNull::new(p).ok_or(not_ram)
    }
}

impl PageAlloc for VecRam {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        if order != Order::ZERO {
            return Err(AbiError::NoMemory { order: order.get() });
        }
        // SAFETY: the free list is only touched here and in `free_pages`,
        // never while a reference to it is alive (single-threaded tests).
        let reused = unsafe { (*self.free.get()).pop() };
        let i = match reused {
            Some(i) => i,
            None if self.next.get() < PAGES => {
                self.next.set(self.next.get() + 1);
                self.next.get() - 1
            }
            None => return Err(AbiError::NoMemory { order: 0 }),
        };
        kho_abi::zero_phys(self, Self::pa(i), PAGE_SIZE as u64)?;
        self.live.set(self.live.get() + 1);
        Ok(Self::pa(i))
    }

    fn free_pages(&self, pa: PhysAddr, order: Order) {
        assert_eq!(order, Order::ZERO);
        let i = ((pa.as_u64() - BASE) as usize) / PAGE_SIZE;
        // SAFETY: as in `alloc_pages`.
        unsafe { (*self.free.get()).push(i) };
        self.live.set(self.live.get() - 1);
    }

    fn max_order(&self) -> Order {
        Order::new(3, "max order").unwrap_or(Order::ZERO)
    }
}

fn o(n: u64) -> Order {
    Order::new(n, "order").unwrap_or(Order::ZERO)
}

#[test]
fn handover_round_trip_in_plain_memory() {
    let ram = VecRam::new();
    let scratch = [KhoScratch { addr: VecRam::pa(56).as_u64(), size: 8 * PAGE_SIZE as u64 }];
    let mut t = Tracker::new(&ram, &scratch, TrackerOptions::default()).unwrap();
    // Blocks in pages 40..48, away from the allocator's low pages.
    t.preserve_folio(VecRam::pa(40), o(3)).unwrap();
    t.preserve_pages(VecRam::pa(49), 3).unwrap();
    assert!(t.preserve_folio(VecRam::pa(57), o(0)).is_err(), "scratch");
    t.add_subtree("blob", VecRam::pa(49), 12).unwrap();
    let mut ranges = Vec::new();
    let _ = t.for_each_range::<()>(&mut |pa, len| {
        ranges.push((pa, len));
        ControlFlow::Continue(())
    });
    assert!(ranges.contains(&(VecRam::pa(40), 8 * PAGE_SIZE as u64)));
    let data = t.finish().unwrap();

    // The next kernel, on the same memory.
    let inc = Incoming::import(&ram, &data).unwrap();
    assert_eq!(inc.stats().pages, 8 + 3 + 1);
    assert_eq!(inc.subtree("blob").unwrap().pa, VecRam::pa(49));
    inc.restore_folio(VecRam::pa(40), o(3)).unwrap();
    assert!(inc.restore_folio(VecRam::pa(40), o(3)).is_err());
    inc.restore_pages(VecRam::pa(49), 3).unwrap();
    assert!(inc.unclaimed().unwrap().is_empty());
    inc.unclaim(VecRam::pa(40), o(3));
    assert_eq!(inc.unclaimed().unwrap(), [(VecRam::pa(40), o(3))]);
    inc.finish();
}

#[test]
fn shared_tables_are_refused_in_plain_memory() {
    let ram = VecRam::new();
    let t = Tracker::new(&ram, &[], TrackerOptions::default()).unwrap();
    t.preserve_folio(VecRam::pa(40), Order::ZERO).unwrap();
    let root = t.tree_root();
    let data = t.finish().unwrap();
    // In the table below the root, hang the used child under the next slot
    // as well, which the walk reaches second. (Every slot of a table below
    // the root is inside the key width; the root's next slot may not be,
    // as at 16 KiB pages.)
    let root_table: kho_abi::RadixTable = kho_abi::read_phys(&ram, root).unwrap();
    let table = PhysAddr::new(*root_table.slots.iter().find(|&&s| s != 0).unwrap());
    let slots = kho_abi::read_phys::<kho_abi::RadixTable, _>(&ram, table).unwrap().slots;
    let used = slots.iter().position(|&s| s != 0).unwrap();
    assert!(used + 1 < slots.len());
    kho_abi::write_phys(&ram, PhysAddr::new(table.as_u64() + 8 * (used as u64 + 1)), &slots[used]).unwrap();
    let e = Incoming::import(&ram, &data).unwrap_err();
    assert!(matches!(e, TrackError::Tree { fault: TreeFault::Shared, .. }), "{e:?}");
}

#[test]
fn destroy_frees_every_page() {
    let ram = VecRam::new();
    let t = Tracker::new(&ram, &[], TrackerOptions::default()).unwrap();
    for i in 30..40 {
        t.preserve_folio(VecRam::pa(i), Order::ZERO).unwrap();
    }
    t.preserve_folio(VecRam::pa(40), o(3)).unwrap();
    assert!(ram.live.get() > 2);
    t.destroy();
    assert_eq!(ram.live.get(), 0);
}
