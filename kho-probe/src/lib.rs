//! Non-destructive inspection of KHO layers.
//!
//! Every layer reader (LUO sessions, memfds, `reserve_mem` regions, the
//! self-test) validates incoming state by *claiming* each page it trusts
//! through the platform's [`Claim`], so a chain into memory that was not
//! preserved, or a page reached twice, fails. A tool that only wants to
//! *look* at a handover (`kho inspect` over a machine image, a crash-dump
//! reader) needs exactly the same checks without changing the tracker.
//!
//! [`Probe`] wraps a platform: it forwards claims and records them, turns
//! the reader's `free_pages` of claimed pages into "keep claimed until the
//! end", refuses allocations (inspection must not allocate), and
//! [`release`](Probe::release) gives every claim back, so the tracker ends
//! as it started. The same reader code therefore serves both the next
//! kernel and the inspector: there is one set of rules.
//!
//! [`DeferFree`] holds back the frees of a lower layer until the layer
//! above knows its whole restore succeeded, and [`fdt::SwFdt`] lays out
//! the small FDT blobs some layers write exactly as the kernel's libfdt
//! does.
//!
//! ```
//! use kho_abi::{Claim, KhoData, Order, PageAlloc, Preserve, WithTracker};
//! use kho_probe::Probe;
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let pa = WithTracker::new(&m, &t).alloc_pages(Order::ZERO)?;
//! t.preserve(pa, Order::ZERO)?;
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! let t2 = ModelTracker::incoming(blocks);
//! let p2 = WithTracker::new(&m2, &t2);
//! let probe = Probe::new(&p2);
//! probe.claim(pa, Order::ZERO)?;
//! assert!(probe.claim(pa, Order::ZERO).is_err()); // the rules still apply
//! probe.free_pages(pa, Order::ZERO); // kept claimed, not freed
//! assert_eq!(probe.release(), 1);
//! assert!(t2.claimed().is_empty()); // as it was
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod fdt;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::ptr::NonNull;

use kho_abi::{AbiError, Claim, Order, PageAlloc, PhysAddr, PhysMem};

/// A platform wrapper that makes a restore non-destructive: see the crate
/// documentation.
///
/// Not `Sync`: one inspection runs on one thread.
#[derive(Debug)]
pub struct Probe<'a, P: ?Sized> {
    inner: &'a P,
    /// Blocks claimed through this probe and not unclaimed, in claim order.
    claimed: RefCell<Vec<(PhysAddr, Order)>>,
}

impl<'a, P: PhysMem + PageAlloc + Claim + ?Sized> Probe<'a, P> {
    /// Wraps `inner`.
    pub fn new(inner: &'a P) -> Self {
        Probe { inner, claimed: RefCell::new(Vec::new()) }
    }

    /// Blocks currently claimed through the probe.
    pub fn claimed(&self) -> usize {
        self.claimed.borrow().len()
    }

    /// Gives every block claimed through the probe back to the tracker and
    /// returns how many there were.
    pub fn release(self) -> usize {
        let claimed = self.claimed.into_inner();
        for &(pa, order) in claimed.iter().rev() {
            self.inner.unclaim(pa, order);
        }
        claimed.len()
    }
}

#[allow(unsafe_code)] // an impl of an unsafe trait; no unsafe block
// SAFETY: every pointer comes from `P::phys_to_virt`, whose guarantees are
// passed through unchanged.
unsafe impl<P: PhysMem + ?Sized> PhysMem for Probe<'_, P> {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        self.inner.phys_to_virt(pa, len)
    }

    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        self.inner.crosses_node(pa, order)
    }
}

impl<P: PageAlloc + ?Sized> PageAlloc for Probe<'_, P> {
    /// Refused: an inspection never allocates.
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        Err(AbiError::NoMemory { order: order.get() })
    }

    /// Kept: a page a restore frees was claimed through the probe, and
    /// stays claimed until [`Probe::release`] gives it back.
    fn free_pages(&self, _pa: PhysAddr, _order: Order) {}

    fn max_order(&self) -> Order {
        self.inner.max_order()
    }
}

impl<P: Claim + ?Sized> Claim for Probe<'_, P> {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.inner.claim(pa, order)?;
        self.claimed.borrow_mut().push((pa, order));
        Ok(())
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        let mut claimed = self.claimed.borrow_mut();
        if let Some(i) = claimed.iter().rposition(|&c| c == (pa, order)) {
            claimed.swap_remove(i);
            self.inner.unclaim(pa, order);
        }
    }
}

/// Claims the preserved block that starts at `pa` at whichever order it
/// was preserved with, as long as that block holds at least `bytes`:
/// tries each order from the smallest that holds `bytes` up to the
/// platform's largest that `pa` is aligned to (at most `max_order + 1`
/// claims), and returns the order that succeeded.
///
/// Layers use it where the order is not stored: a memfd folio, or a blob
/// whose size says nothing of the folio it was allocated in (the kernel's
/// self-test keeps a 240-byte FDT in an order-1 folio).
///
/// # Errors
///
/// `NotPreserved` for `pa` at the smallest order if no order works.
pub fn claim_block<P: PageAlloc + Claim + ?Sized>(p: &P, pa: PhysAddr, bytes: u64) -> Result<Order, AbiError> {
    let max = p.max_order().get();
    let pages = bytes.div_ceil(kho_abi::PAGE_SIZE as u64).max(1);
    let least = if pages <= 1 { 0 } else { 64 - (pages - 1).leading_zeros() };
    for o in least..=max {
        let Ok(order) = Order::new(u64::from(o), "block order") else { break };
        if !order.aligns(pa) {
            break;
        }
        if p.claim(pa, order).is_ok() {
            return Ok(order);
        }
    }
    Err(AbiError::NotPreserved { pa, order: least })
}

/// A platform wrapper that holds back `free_pages` until the caller knows
/// whether the whole restore succeeded.
///
/// Lower layers (a vmalloc area's restore) free pages they no longer need
/// once their own part succeeded, as the kernel does; a layer above that
/// can still fail afterwards must be able to hand those pages back
/// unclaimed instead. Through `DeferFree`, such frees are recorded:
/// [`commit`](DeferFree::commit) performs them, [`undo`](DeferFree::undo)
/// unclaims them.
#[derive(Debug)]
pub struct DeferFree<'a, P: ?Sized> {
    inner: &'a P,
    freed: RefCell<Vec<(PhysAddr, Order)>>,
}

impl<'a, P: PhysMem + PageAlloc + Claim + ?Sized> DeferFree<'a, P> {
    /// Wraps `inner`.
    pub fn new(inner: &'a P) -> Self {
        DeferFree { inner, freed: RefCell::new(Vec::new()) }
    }

    /// The frees held back so far, in order.
    pub fn pending(&self) -> Vec<(PhysAddr, Order)> {
        self.freed.borrow().clone()
    }

    /// Frees what was freed through the wrapper.
    pub fn commit(self) {
        for (pa, order) in self.freed.into_inner() {
            self.inner.free_pages(pa, order);
        }
    }

    /// Gives what was freed through the wrapper back unclaimed (it was
    /// claimed before it was freed).
    pub fn undo(self) {
        for (pa, order) in self.freed.into_inner().into_iter().rev() {
            self.inner.unclaim(pa, order);
        }
    }
}

#[allow(unsafe_code)] // an impl of an unsafe trait; no unsafe block
// SAFETY: every pointer comes from `P::phys_to_virt`, whose guarantees are
// passed through unchanged.
unsafe impl<P: PhysMem + ?Sized> PhysMem for DeferFree<'_, P> {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        self.inner.phys_to_virt(pa, len)
    }

    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        self.inner.crosses_node(pa, order)
    }
}

impl<P: PageAlloc + ?Sized> PageAlloc for DeferFree<'_, P> {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        self.inner.alloc_pages(order)
    }

    /// Recorded, performed by [`DeferFree::commit`].
    fn free_pages(&self, pa: PhysAddr, order: Order) {
        self.freed.borrow_mut().push((pa, order));
    }

    fn max_order(&self) -> Order {
        self.inner.max_order()
    }
}

impl<P: Claim + ?Sized> Claim for DeferFree<'_, P> {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.inner.claim(pa, order)
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        self.inner.unclaim(pa, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_abi::{KhoData, Preserve, WithTracker};
    use kho_sim::{Machine, MachineConfig, ModelTracker};

    #[test]
    fn claims_are_recorded_and_given_back() {
        let m = Machine::new(MachineConfig::default()).unwrap();
        let t = ModelTracker::new();
        let p = WithTracker::new(&m, &t);
        let a = p.alloc_pages(Order::ZERO).unwrap();
        let b = p.alloc_pages(Order::new(2, "o").unwrap()).unwrap();
        t.preserve(a, Order::ZERO).unwrap();
        t.preserve(b, Order::new(2, "o").unwrap()).unwrap();
        let blocks = t.blocks();
        let m2 = m.kexec(KhoData::default());
        m2.boot_done(&mut blocks.iter().copied()).unwrap();
        let t2 = ModelTracker::incoming(blocks);
        let p2 = WithTracker::new(&m2, &t2);
        let probe = Probe::new(&p2);
        probe.claim(a, Order::ZERO).unwrap();
        probe.claim(b, Order::new(2, "o").unwrap()).unwrap();
        assert!(probe.claim(b, Order::ZERO).is_err());
        assert_eq!(probe.claimed(), 2);
        probe.unclaim(a, Order::ZERO);
        assert_eq!(t2.claimed().len(), 1);
        // Unclaiming what the probe never claimed does not reach the tracker.
        probe.unclaim(a, Order::ZERO);
        assert!(probe.alloc_pages(Order::ZERO).is_err());
        probe.free_pages(b, Order::new(2, "o").unwrap());
        assert_eq!(probe.release(), 1);
        assert!(t2.claimed().is_empty());

        // DeferFree: a free is held back, then undone or performed.
        let d = DeferFree::new(&p2);
        d.claim(a, Order::ZERO).unwrap();
        d.free_pages(a, Order::ZERO);
        assert_eq!(t2.claimed().len(), 1);
        d.undo();
        assert!(t2.claimed().is_empty());
        let outstanding = m2.outstanding_pages();
        let d = DeferFree::new(&p2);
        d.claim(a, Order::ZERO).unwrap();
        d.free_pages(a, Order::ZERO);
        d.commit();
        assert_eq!(m2.outstanding_pages(), outstanding);
    }
}
