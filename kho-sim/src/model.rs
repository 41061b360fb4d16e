//! A reference tracker, so primitives can be tested without `kho-track`.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use kho_abi::{AbiError, Claim, Order, PhysAddr, Preserve};

/// One preserved block.
#[derive(Clone, Copy, Debug)]
struct Entry {
    order: Order,
    claimed: bool,
}

/// A model of the tracker: a strict map of preserved blocks.
///
/// On the outgoing side it implements [`Preserve`] (refusing misaligned
/// blocks and blocks that overlap one already preserved), on the incoming
/// side [`Claim`] (exactly the preserved `(pa, order)`, once).
///
/// ```
/// use kho_abi::{Claim, Order, PhysAddr, Preserve};
/// use kho_sim::ModelTracker;
///
/// let t = ModelTracker::new();
/// t.preserve(PhysAddr::new(0x10_0000), Order::ZERO)?;
/// let next = ModelTracker::incoming(t.blocks());
/// next.claim(PhysAddr::new(0x10_0000), Order::ZERO)?;
/// assert!(next.claim(PhysAddr::new(0x10_0000), Order::ZERO).is_err());
/// assert_eq!(next.unclaimed(), vec![]);
/// # Ok::<(), kho_abi::AbiError>(())
/// ```
#[derive(Debug, Default)]
pub struct ModelTracker {
    blocks: Mutex<BTreeMap<u64, Entry>>,
}

impl ModelTracker {
    /// An empty tracker (outgoing side).
    pub fn new() -> Self {
        ModelTracker::default()
    }

    /// The next kernel's view of `blocks`: all preserved, none claimed.
    /// Blocks are taken as given (the previous side checked them).
    pub fn incoming(blocks: Vec<(PhysAddr, Order)>) -> ModelTracker {
        let map = blocks.into_iter().map(|(pa, order)| (pa.as_u64(), Entry { order, claimed: false })).collect();
        ModelTracker { blocks: Mutex::new(map) }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self, keep: impl Fn(&Entry) -> bool) -> Vec<(PhysAddr, Order)> {
        self.lock().iter().filter(|(_, e)| keep(e)).map(|(&pa, e)| (PhysAddr::new(pa), e.order)).collect()
    }

    /// Every preserved block, ascending PA.
    pub fn blocks(&self) -> Vec<(PhysAddr, Order)> {
        self.list(|_| true)
    }

    /// Pages in all preserved blocks.
    pub fn preserved_pages(&self) -> u64 {
        self.lock().values().map(|e| e.order.pages()).sum()
    }

    /// Blocks claimed so far, ascending PA.
    pub fn claimed(&self) -> Vec<(PhysAddr, Order)> {
        self.list(|e| e.claimed)
    }

    /// Blocks not claimed, ascending PA.
    pub fn unclaimed(&self) -> Vec<(PhysAddr, Order)> {
        self.list(|e| !e.claimed)
    }
}

/// End of the block `(pa, order)`, saturating (orders too large to fit end
/// at the top of the address space).
fn block_end(pa: u64, order: Order) -> u64 {
    order.checked_bytes().map_or(u64::MAX, |b| pa.saturating_add(b))
}

impl Preserve for ModelTracker {
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        order.require_aligned(pa, "preserve")?;
        let start = pa.as_u64();
        let end = block_end(start, order);
        let mut map = self.lock();
        let below = map.range(..=start).next_back().is_some_and(|(&p, e)| block_end(p, e.order) > start);
        let above = map.range(start..).next().is_some_and(|(&p, _)| p < end);
        if below || above {
            return Err(AbiError::Forbidden { pa, order: order.get(), why: "overlaps a preserved block" });
        }
        map.insert(start, Entry { order, claimed: false });
        Ok(())
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        let mut map = self.lock();
        match map.get(&pa.as_u64()) {
            Some(e) if e.order == order => {
                map.remove(&pa.as_u64());
                Ok(())
            }
            _ => Err(AbiError::NotPreserved { pa, order: order.get() }),
        }
    }
}

impl Claim for ModelTracker {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        match self.lock().get_mut(&pa.as_u64()) {
            Some(e) if e.order == order && !e.claimed => {
                e.claimed = true;
                Ok(())
            }
            _ => Err(AbiError::NotPreserved { pa, order: order.get() }),
        }
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        let done = match self.lock().get_mut(&pa.as_u64()) {
            Some(e) if e.order == order && e.claimed => {
                e.claimed = false;
                true
            }
            _ => false,
        };
        assert!(done, "unclaim({pa}, order {order}): not a claimed block of that order");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(n: u64) -> Order {
        Order::new(n, "test").unwrap()
    }

    fn pa(x: u64) -> PhysAddr {
        PhysAddr::new(x)
    }

    #[test]
    fn preserve_is_strict() {
        let t = ModelTracker::new();
        t.preserve(pa(0x20_0000), o(9)).unwrap();
        t.preserve(pa(0x1000), o(0)).unwrap();
        assert!(matches!(t.preserve(pa(0x1800), o(0)), Err(AbiError::Misaligned { .. })));
        assert!(matches!(t.preserve(pa(0x3000), o(1)), Err(AbiError::Misaligned { .. })));
        // Same block twice, a block inside, a block around, a block whose
        // start precedes and whose end reaches in.
        assert!(matches!(t.preserve(pa(0x1000), o(0)), Err(AbiError::Forbidden { .. })));
        assert!(matches!(t.preserve(pa(0x3f_f000), o(0)), Err(AbiError::Forbidden { .. })));
        assert!(matches!(t.preserve(pa(0), o(10)), Err(AbiError::Forbidden { .. })));
        assert!(matches!(t.preserve(pa(0), o(1)), Err(AbiError::Forbidden { .. })));
        t.preserve(pa(0x40_0000), o(0)).unwrap();
        t.preserve(pa(0x1f_f000), o(0)).unwrap();
        assert_eq!(
            t.blocks(),
            vec![(pa(0x1000), o(0)), (pa(0x1f_f000), o(0)), (pa(0x20_0000), o(9)), (pa(0x40_0000), o(0))]
        );
        assert_eq!(t.preserved_pages(), 515);
    }

    #[test]
    fn unpreserve_needs_the_same_block() {
        let t = ModelTracker::new();
        t.preserve(pa(0x4000), o(2)).unwrap();
        assert_eq!(t.unpreserve(pa(0x4000), o(1)), Err(AbiError::NotPreserved { pa: pa(0x4000), order: 1 }));
        assert!(t.unpreserve(pa(0x5000), o(0)).is_err());
        t.unpreserve(pa(0x4000), o(2)).unwrap();
        assert!(t.unpreserve(pa(0x4000), o(2)).is_err());
        assert_eq!(t.preserved_pages(), 0);
        t.preserve(pa(0x5000), o(0)).unwrap();
    }

    #[test]
    fn claim_once_exactly() {
        let t = ModelTracker::incoming(vec![(pa(0x8000), o(3)), (pa(0x1000), o(0))]);
        assert_eq!(t.unclaimed(), vec![(pa(0x1000), o(0)), (pa(0x8000), o(3))]);
        assert!(t.claim(pa(0x8000), o(2)).is_err());
        assert!(t.claim(pa(0x9000), o(0)).is_err());
        t.claim(pa(0x8000), o(3)).unwrap();
        assert_eq!(t.claim(pa(0x8000), o(3)), Err(AbiError::NotPreserved { pa: pa(0x8000), order: 3 }));
        assert_eq!(t.claimed(), vec![(pa(0x8000), o(3))]);
        assert_eq!(t.unclaimed(), vec![(pa(0x1000), o(0))]);
        t.unclaim(pa(0x8000), o(3));
        assert_eq!(t.claimed(), vec![]);
        t.claim(pa(0x8000), o(3)).unwrap();
        assert_eq!(t.blocks().len(), 2);
    }

    #[test]
    #[should_panic(expected = "not a claimed block")]
    fn unclaim_of_unclaimed_panics() {
        let t = ModelTracker::incoming(vec![(pa(0x1000), o(0))]);
        t.unclaim(pa(0x1000), o(0));
    }
}
