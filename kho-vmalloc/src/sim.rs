//! A restored area as one slice on a `kho-sim` machine.
//!
//! The simulator's RAM is a memfd, so the blocks of a restored area can be
//! mapped one after the other into a fresh virtual range, the way the
//! kernel's `vmap` maps them: the user gets back one contiguous slice with
//! the area's original contents, wherever its blocks lie physically.
//!
//! ```
//! use kho_abi::{KhoData, Order, PageAlloc, VmallocFlags, WithTracker};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let a = m.alloc_pages(Order::ZERO)?;
//! let b = m.alloc_pages(Order::ZERO)?;
//! m.write(a, b"hello, ")?;
//! m.write(b, b"world")?;
//! // Virtual order: b first, then a.
//! let desc = kho_vmalloc::preserve(&WithTracker::new(&m, &t), [b, a], Order::ZERO, VmallocFlags::ALLOC)?;
//!
//! let blocks = t.blocks();
//! let next = m.kexec(KhoData::default());
//! next.boot_done(&mut blocks.iter().copied())?;
//! let incoming = ModelTracker::incoming(blocks);
//! let (area, map) = kho_vmalloc::sim::restore_mapped(&next, &incoming, &desc)?;
//! assert_eq!(map.len(), 2 * 4096);
//! assert_eq!(&map[..5], b"world");
//! assert_eq!(&map[4096..4103], b"hello, ");
//! assert_eq!(area.blocks, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::vec::Vec;

use kho_abi::{Claim, KhoVmalloc, Order, PageAlloc, PhysAddr, WithTracker};
use kho_sim::{Machine, SimError, SimMapping};

use crate::error::VmallocError;
use crate::restore::{RestoredArea, restore};

/// Errors of [`restore_mapped`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The restore failed; nothing is claimed.
    #[error(transparent)]
    Restore(#[from] VmallocError),
    /// The restore succeeded but mapping failed; the blocks were freed.
    #[error("mapping the restored area: {0}")]
    Map(#[from] SimError),
}

/// Maps `blocks` of `order`, in the order given, at consecutive virtual
/// addresses of the machine.
///
/// # Errors
///
/// The machine's refusal: a block misaligned or outside RAM, or a failed
/// `mmap`.
pub fn map_area(m: &Machine, blocks: &[PhysAddr], order: Order) -> Result<SimMapping, SimError> {
    let blocks: Vec<(PhysAddr, Order)> = blocks.iter().map(|&pa| (pa, order)).collect();
    m.map_blocks(&blocks)
}

/// Restores the area `desc` describes on `m`, claiming through `tracker`,
/// and maps it as one slice.
///
/// # Errors
///
/// [`MapError::Restore`] as [`restore`] (nothing claimed), or
/// [`MapError::Map`] if the blocks cannot be mapped (they are freed, as the
/// restored area cannot be used).
pub fn restore_mapped<T: Claim + ?Sized>(
    m: &Machine,
    tracker: &T,
    desc: &KhoVmalloc,
) -> Result<(RestoredArea, SimMapping), MapError> {
    let mut blocks = Vec::new();
    let area = restore(&WithTracker::new(m, tracker), desc, |pa| blocks.push(pa))?;
    match map_area(m, &blocks, area.order) {
        Ok(map) => Ok((area, map)),
        Err(e) => {
            for &pa in &blocks {
                m.free_pages(pa, area.order);
            }
            Err(MapError::Map(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_abi::{KhoData, VmallocFlags};
    use kho_sim::{MachineConfig, ModelTracker};

    #[test]
    fn restore_mapped_gives_one_slice_or_claims_nothing() {
        let m = Machine::new(MachineConfig::default()).unwrap();
        let t = ModelTracker::new();
        let order = Order::new(2, "o").unwrap();
        let blocks: Vec<PhysAddr> = (0..6).map(|_| m.alloc_pages(order).unwrap()).rev().collect();
        for (i, &b) in blocks.iter().enumerate() {
            m.fill_random(b, 4 << 12, i as u64).unwrap();
        }
        let sums: Vec<u64> = blocks.iter().map(|&b| m.checksum(b, 4 << 12).unwrap()).collect();
        let desc =
            crate::preserve(&WithTracker::new(&m, &t), blocks.iter().copied(), order, VmallocFlags::ALLOC).unwrap();

        let preserved = t.blocks();
        let next = m.kexec(KhoData::default());
        next.boot_done(&mut preserved.iter().copied()).unwrap();
        let incoming = ModelTracker::incoming(preserved);

        let bad = KhoVmalloc { total_pages: desc.total_pages + 4, ..desc };
        let e = restore_mapped(&next, &incoming, &bad).unwrap_err();
        assert!(matches!(e, MapError::Restore(VmallocError::ZeroEntry { .. })), "{e}");
        assert!(incoming.claimed().is_empty());

        let (area, map) = restore_mapped(&next, &incoming, &desc).unwrap();
        assert_eq!(area.blocks, 6);
        assert_eq!(map.len(), 6 * (4 << 12));
        for (i, piece) in map.chunks(4 << 12).enumerate() {
            let mut sum = kho_sim::Checksum::new();
            sum.update(piece);
            assert_eq!(sum.finish(), sums[i], "block {i}");
        }
        assert_eq!(map_area(&next, &[PhysAddr::new(0x1000)], order).map(|m| m.len()).ok(), None);
    }
}
