//! How the radix tree reaches its pages.
//!
//! Tree pages are shared between threads while a kernel preserves memory,
//! so every access to them is atomic. [`TreeMem`] hands out a page as a
//! slice of atomic words; any platform that implements `PhysMem` and
//! `PageAlloc` gets it for free. Loom models implement it over loom's own
//! atomics instead.

use kho_abi::{AbiError, PhysAddr};

use crate::sync::AtomicU64;

/// Words in a tree page.
pub const WORDS: usize = kho_abi::LEAF_WORDS;

/// Page-granular memory for the radix tree.
pub trait TreeMem {
    /// The page at `pa` as atomic words. Fails for PAs outside RAM or not
    /// page aligned.
    fn words(&self, pa: PhysAddr) -> Result<&[AtomicU64; WORDS], AbiError>;

    /// A zeroed page for a new node.
    fn alloc_node(&self) -> Result<PhysAddr, AbiError>;

    /// Returns a node page obtained from [`alloc_node`](TreeMem::alloc_node)
    /// (or one adopted from a previous kernel).
    fn free_node(&self, pa: PhysAddr);
}

#[cfg(not(loom))]
impl<P: kho_abi::PhysMem + kho_abi::PageAlloc + ?Sized> TreeMem for P {
    #[inline(always)]
    fn words(&self, pa: PhysAddr) -> Result<&[AtomicU64; WORDS], AbiError> {
        pa.require_aligned("radix node", kho_abi::PAGE_SIZE as u64)?;
        // Every access kho makes to tree pages goes through these atomics,
        // so readers and writers on other threads never race.
        Ok(kho_abi::PageWords::new(self, pa)?.as_atomics())
    }

    fn alloc_node(&self) -> Result<PhysAddr, AbiError> {
        self.alloc_pages(kho_abi::Order::ZERO)
    }

    fn free_node(&self, pa: PhysAddr) {
        self.free_pages(pa, kho_abi::Order::ZERO)
    }
}
