//! Splitting a page range into the blocks the kernel would use.

use kho_abi::{AbiError, Order, PAGE_SIZE, PhysAddr, PhysMem};

use crate::error::TrackError;

/// The maximal naturally aligned blocks covering a page range, each at most
/// the platform's maximum order and never spanning two NUMA nodes: order =
/// min(trailing zeros of the frame, floor(log2(pages left)), max order),
/// lowered while the block would cross a node.
pub struct Blocks<'m, M: ?Sized> {
    mem: &'m M,
    next: u64,
    left: u64,
    max_order: Order,
}

impl<M: ?Sized> Clone for Blocks<'_, M> {
    fn clone(&self) -> Self {
        Blocks { mem: self.mem, next: self.next, left: self.left, max_order: self.max_order }
    }
}

impl<'m, M: PhysMem + ?Sized> Blocks<'m, M> {
    /// The blocks of `nr_pages` pages from `pa`: `EmptyRange` for zero
    /// pages, `Misaligned` for a PA that is not page aligned, `Overflow` if
    /// the range wraps.
    pub fn new(mem: &'m M, pa: PhysAddr, nr_pages: u64, max_order: Order) -> Result<Self, TrackError> {
        if nr_pages == 0 {
            return Err(TrackError::EmptyRange { pa });
        }
        pa.require_aligned("range PA", PAGE_SIZE as u64)?;
        nr_pages
            .checked_mul(PAGE_SIZE as u64)
            .and_then(|len| pa.checked_add(len))
            .ok_or(AbiError::Overflow { what: "range end" })?;
        Ok(Blocks { mem, next: pa.as_u64(), left: nr_pages, max_order })
    }
}

impl<M: PhysMem + ?Sized> Iterator for Blocks<'_, M> {
    type Item = Result<(PhysAddr, Order), TrackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let pa = PhysAddr::new(self.next);
        let by_alignment = pa.pfn().alignment_order();
        let by_size = 63 - self.left.leading_zeros();
        let mut order = by_alignment.min(by_size).min(self.max_order.get());
        while order > 0 && Order::new(u64::from(order), "block order").is_ok_and(|o| self.mem.crosses_node(pa, o)) {
            order -= 1;
        }
        let order = match Order::new(u64::from(order), "block order") {
            Ok(o) => o,
            Err(e) => return Some(Err(e.into())),
        };
        self.left -= order.pages();
        self.next += order.pages() << kho_abi::PAGE_SHIFT;
        Some(Ok((pa, order)))
    }
}
