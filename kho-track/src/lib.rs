//! The preserved-memory tracker of Linux Kexec HandOver (KHO): the radix
//! tree of preserved blocks, the root FDT with its subtrees, scratch areas,
//! and both sides of a handover.
//!
//! - [`Tracker`] is the outgoing side. It preserves folios and page ranges
//!   from any number of threads without locks, keeps the root FDT current in
//!   a preserved page, and ends with [`Tracker::finish`], which yields the
//!   `struct kho_data` the next kernel boots with.
//! - [`Incoming`] is the next kernel's side. It takes a `kho_data`, checks
//!   everything it points at as untrusted input (FDT, compatible, the whole
//!   tree, every block), and then restores blocks, walks them one by one or
//!   as coalesced ranges, looks subtrees up, and lists what nobody claimed.
//!
//! The formats are byte-compatible with mainline Linux (`kho-v4`, the radix
//! tree of `kho-v2` and later). Memory is reached only through the
//! [`kho_abi::platform`] traits.
//!
//! Under `--cfg loom` only the tree, its walks and the memory seam are
//! built, over loom's atomics, for the model checker.
//!
//! This crate needs `alloc` (for the FDT writer and for bookkeeping of the
//! incoming side); the pages of the handover itself always come from the
//! platform's page allocator.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod check;
pub mod error;
pub mod fdt;
#[cfg(not(loom))]
pub mod incoming;
#[cfg(not(loom))]
pub mod legacy;
pub mod mem;
#[cfg(not(loom))]
pub mod outgoing;
pub mod split;
pub mod sync;
pub mod tree;
pub mod walk;

#[cfg(all(test, not(loom)))]
mod miri_tests;

pub use error::{BlobFault, BlockFault, TrackError, TreeFault, V1Fault};
pub use fdt::Subtree;
#[cfg(not(loom))]
pub use incoming::{ImportLimits, ImportStats, Incoming};
pub use mem::TreeMem;
#[cfg(not(loom))]
pub use outgoing::{RootCompat, Tracker, TrackerOptions};
pub use tree::RadixTree;
