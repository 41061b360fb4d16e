//! Physical addresses, page frame numbers and orders.
//!
//! These are newtypes with explicit, checked arithmetic and no operator
//! overloads: every place an address could overflow or lose its alignment
//! says so at the call site.

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::geometry::{GEOMETRY, PAGE_SHIFT, PAGE_SIZE};

/// A physical address.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Address zero, which KHO layouts use for "none".
    pub const NULL: PhysAddr = PhysAddr(0);

    /// Wraps a raw address.
    pub const fn new(raw: u64) -> Self {
        PhysAddr(raw)
    }

    /// The raw address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether this is address zero.
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// `self + offset`, or `None` on overflow.
    pub const fn checked_add(self, offset: u64) -> Option<PhysAddr> {
        match self.0.checked_add(offset) {
            Some(v) => Some(PhysAddr(v)),
            None => None,
        }
    }

    /// `self - offset`, or `None` on underflow.
    pub const fn checked_sub(self, offset: u64) -> Option<PhysAddr> {
        match self.0.checked_sub(offset) {
            Some(v) => Some(PhysAddr(v)),
            None => None,
        }
    }

    /// The distance from `base` up to `self`, or `None` if `self < base`.
    pub const fn checked_offset_from(self, base: PhysAddr) -> Option<u64> {
        self.0.checked_sub(base.0)
    }

    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        debug_assert!(align.is_power_of_two());
        self.0 & (align - 1) == 0
    }

    /// Whether the address is page aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.is_aligned(PAGE_SIZE as u64)
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub const fn align_down(self, align: u64) -> PhysAddr {
        debug_assert!(align.is_power_of_two());
        PhysAddr(self.0 & !(align - 1))
    }

    /// Rounds up to a multiple of `align` (a power of two), or `None` on
    /// overflow.
    pub const fn checked_align_up(self, align: u64) -> Option<PhysAddr> {
        debug_assert!(align.is_power_of_two());
        match self.0.checked_add(align - 1) {
            Some(v) => Some(PhysAddr(v & !(align - 1))),
            None => None,
        }
    }

    /// Offset of the address inside its page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE as u64 - 1)
    }

    /// The frame that contains this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PA {:#x}", self.0)
    }
}

/// A page frame number: a physical address divided by the page size.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Pfn(u64);

impl Pfn {
    /// Wraps a raw frame number.
    pub const fn new(raw: u64) -> Self {
        Pfn(raw)
    }

    /// The raw frame number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + pages`, or `None` on overflow.
    pub const fn checked_add(self, pages: u64) -> Option<Pfn> {
        match self.0.checked_add(pages) {
            Some(v) => Some(Pfn(v)),
            None => None,
        }
    }

    /// Frames from `base` up to `self`, or `None` if `self < base`.
    pub const fn checked_offset_from(self, base: Pfn) -> Option<u64> {
        self.0.checked_sub(base.0)
    }

    /// The address of the frame's first byte, or `None` if the frame number
    /// is beyond the 64-bit address space.
    pub const fn checked_phys(self) -> Option<PhysAddr> {
        if self.0 >> (64 - PAGE_SHIFT) != 0 { None } else { Some(PhysAddr(self.0 << PAGE_SHIFT)) }
    }

    /// Whether the frame is the first of a naturally aligned block of
    /// `order`.
    pub const fn is_order_aligned(self, order: Order) -> bool {
        self.0 & (order.pages() - 1) == 0
    }

    /// The largest order a block starting at this frame can have by
    /// alignment alone (frame 0 is aligned to every order).
    pub const fn alignment_order(self) -> u32 {
        if self.0 == 0 { GEOMETRY.max_key_order } else { self.0.trailing_zeros() }
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

/// The order of a block of pages: the block holds `2^order` pages.
///
/// An `Order` is never above [`Order::MAX`], the largest order a radix key
/// can encode for this page size (52 for 4 KiB pages); platform limits are
/// lower and are checked separately.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Order(u8);

impl Order {
    /// Order 0: one page.
    pub const ZERO: Order = Order(0);

    /// The largest order representable in a radix key.
    pub const MAX: Order = Order(GEOMETRY.max_key_order as u8);

    /// An order of at most [`Order::MAX`], or `None`; the public
    /// constructors, which name what failed, are [`Order::new`] and
    /// [`Order::new_at_most`] (in `checked.rs`).
    pub(crate) const fn try_new(order: u64) -> Option<Order> {
        if order > Order::MAX.0 as u64 { None } else { Some(Order(order as u8)) }
    }

    /// The order as a number.
    pub const fn get(self) -> u32 {
        self.0 as u32
    }

    /// Pages in a block of this order.
    pub const fn pages(self) -> u64 {
        1u64 << self.0
    }

    /// Bytes in a block of this order (saturating at `u64::MAX` would be
    /// wrong, so orders whose size does not fit yield `None`).
    pub const fn checked_bytes(self) -> Option<u64> {
        let shift = self.0 as u32 + PAGE_SHIFT;
        if shift >= 64 { None } else { Some(1u64 << shift) }
    }

    /// log2 of the block size in bytes.
    pub const fn byte_shift(self) -> u32 {
        self.0 as u32 + PAGE_SHIFT
    }

    /// Whether `pa` is naturally aligned for a block of this order.
    pub const fn aligns(self, pa: PhysAddr) -> bool {
        let shift = self.byte_shift();
        shift >= 64 && pa.0 == 0 || shift < 64 && pa.0 & ((1u64 << shift) - 1) == 0
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Order({})", self.0)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic() {
        let pa = PhysAddr::new(0x1000);
        assert_eq!(pa.checked_add(0x10), Some(PhysAddr::new(0x1010)));
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(pa.checked_sub(0x1001), None);
        assert_eq!(PhysAddr::new(0x3000).checked_offset_from(pa), Some(0x2000));
        assert_eq!(pa.checked_offset_from(PhysAddr::new(0x3000)), None);
        assert_eq!(PhysAddr::new(0x1234).align_down(0x1000), pa);
        assert_eq!(PhysAddr::new(0x1234).checked_align_up(0x1000), Some(PhysAddr::new(0x2000)));
        assert_eq!(PhysAddr::new(u64::MAX).checked_align_up(0x1000), None);
        assert!(PhysAddr::new(0x2000).is_aligned(0x2000));
        assert!(!PhysAddr::new(0x3000).is_aligned(0x2000));
    }

    #[test]
    fn pfn_round_trip() {
        let pa = PhysAddr::new(0x1_2345 << PAGE_SHIFT);
        assert_eq!(pa.pfn().checked_phys(), Some(pa));
        assert_eq!(Pfn::new(u64::MAX).checked_phys(), None);
        assert_eq!(Pfn::new(0).alignment_order(), GEOMETRY.max_key_order);
        assert_eq!(Pfn::new(0x200).alignment_order(), 9);
    }

    #[test]
    fn orders() {
        assert_eq!(Order::try_new(Order::MAX.get() as u64).map(Order::get), Some(Order::MAX.get()));
        assert_eq!(Order::try_new(Order::MAX.get() as u64 + 1), None);
        let o9 = Order::try_new(9).unwrap();
        assert_eq!(o9.pages(), 512);
        assert!(o9.aligns(PhysAddr::new(0x4000_0000)));
        assert!(!o9.aligns(PhysAddr::new(0x4000_1000)));
        // The largest order only aligns address zero.
        assert!(Order::MAX.aligns(PhysAddr::NULL));
        assert!(!Order::MAX.aligns(PhysAddr::new(1 << 63)));
        assert_eq!(Order::MAX.checked_bytes(), None);
    }
}
