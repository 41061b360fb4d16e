//! The checks that turn a raw address or order into a typed one, naming
//! what failed as an [`AbiError`]: the meeting point of [`crate::addr`]
//! (the types) and [`crate::error`] (the error, which carries addresses),
//! so that neither of those modules needs the other's.

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;

impl PhysAddr {
    /// Checks that the address is non-zero, naming `what` otherwise.
    pub const fn require_nonzero(self, what: &'static str) -> Result<PhysAddr, AbiError> {
        if self.is_null() { Err(AbiError::ZeroAddress { what }) } else { Ok(self) }
    }

    /// Checks that the address is aligned to `align`, naming `what`
    /// otherwise.
    pub const fn require_aligned(self, what: &'static str, align: u64) -> Result<PhysAddr, AbiError> {
        if self.is_aligned(align) { Ok(self) } else { Err(AbiError::Misaligned { what, pa: self, align }) }
    }
}

impl Order {
    /// An order, or `OrderTooLarge` naming `what` if above [`Order::MAX`].
    pub const fn new(order: u64, what: &'static str) -> Result<Order, AbiError> {
        Order::new_at_most(order, Order::MAX, what)
    }

    /// An order already known to be at most `max`, else `OrderTooLarge`.
    pub const fn new_at_most(order: u64, max: Order, what: &'static str) -> Result<Order, AbiError> {
        match Order::try_new(order) {
            Some(o) if order <= max.get() as u64 => Ok(o),
            _ => Err(AbiError::OrderTooLarge { what, order, max: max.get() }),
        }
    }

    /// Checks that `pa` is aligned for this order, naming `what` otherwise.
    pub const fn require_aligned(self, pa: PhysAddr, what: &'static str) -> Result<PhysAddr, AbiError> {
        if self.aligns(pa) {
            Ok(pa)
        } else {
            let align = match self.checked_bytes() {
                Some(b) => b,
                None => u64::MAX,
            };
            Err(AbiError::Misaligned { what, pa, align })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        assert!(Order::new(Order::MAX.get() as u64, "o").is_ok());
        assert_eq!(
            Order::new(Order::MAX.get() as u64 + 1, "o"),
            Err(AbiError::OrderTooLarge { what: "o", order: Order::MAX.get() as u64 + 1, max: Order::MAX.get() })
        );
        let o9 = Order::new(9, "o").unwrap();
        assert_eq!(o9.pages(), 512);
        assert!(o9.require_aligned(PhysAddr::new(0x1000), "pa").is_err());
        assert_eq!(o9.require_aligned(PhysAddr::new(0x4000_0000), "pa"), Ok(PhysAddr::new(0x4000_0000)));
        assert!(Order::new_at_most(11, Order::new(10, "m").unwrap(), "o").is_err());
        assert_eq!(Order::new_at_most(10, Order::new(10, "m").unwrap(), "o").map(Order::get), Ok(10));
    }

    #[test]
    fn addresses() {
        assert_eq!(PhysAddr::NULL.require_nonzero("x"), Err(AbiError::ZeroAddress { what: "x" }));
        assert_eq!(PhysAddr::new(0x1000).require_nonzero("x"), Ok(PhysAddr::new(0x1000)));
        assert_eq!(
            PhysAddr::new(0x1008).require_aligned("x", 0x1000),
            Err(AbiError::Misaligned { what: "x", pa: PhysAddr::new(0x1008), align: 0x1000 })
        );
    }
}
