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
//! # Example: preserve, hand over, import, restore
//!
//! The platform here is [kho-sim](https://docs.rs/kho-sim)'s simulated
//! machine (RAM at a non-zero physical address, a page allocator, kexec that
//! keeps RAM and hands over only the `kho_data`); a kernel passes its own
//! implementation of the [`kho_abi::platform`] traits instead.
//!
//! ```
//! use kho_abi::{Order, PAGE_SIZE, PageAlloc, PhysAddr};
//! use kho_sim::{Machine, MachineConfig};
//! use kho_track::{Incoming, Tracker, TrackerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Kernel A: two folios of data and a blob naming them, as a subtree.
//! let a = Machine::new(MachineConfig::default())?;
//! let mut tracker = Tracker::new(&a, a.scratch(), TrackerOptions::default())?;
//! let order2 = Order::new(2, "folio order")?;
//! let folio = a.alloc_pages(order2)?; // four pages
//! let bytes = 4 * PAGE_SIZE as u64;
//! let page = a.alloc_pages(Order::ZERO)?;
//! a.fill_random(folio, bytes, 7)?;
//! let sum = a.checksum(folio, bytes)?;
//! tracker.preserve_folio(folio, order2)?;
//! tracker.preserve_folio(page, Order::ZERO)?;
//! // The blob: where the folio is, for the next kernel to find.
//! let blob = a.alloc_pages(Order::ZERO)?;
//! a.write(blob, &folio.as_u64().to_ne_bytes())?;
//! tracker.preserve_folio(blob, Order::ZERO)?;
//! tracker.add_subtree("my-driver", blob, 8)?;
//! let data = tracker.finish()?; // the `struct kho_data` to pass on
//!
//! // kexec: RAM is kept, only `data` reaches kernel B.
//! let b = a.kexec(data);
//!
//! // Kernel B: validate everything, keep what is preserved away from the
//! // allocator, then restore.
//! let incoming = Incoming::import(&b, &data)?;
//! let reserved = incoming.reserved_blocks()?;
//! b.boot_done(&mut reserved.iter().copied())?; // unpreserved pages are poisoned now
//! let subtree = incoming.subtree("my-driver")?;
//! assert_eq!(subtree.size, Some(8));
//! let mut pa = [0u8; 8];
//! b.read(subtree.pa, &mut pa)?;
//! let found = PhysAddr::new(u64::from_ne_bytes(pa));
//! incoming.restore_folio(subtree.pa, Order::ZERO)?;
//! incoming.restore_folio(found, order2)?; // now ours: same bytes
//! assert_eq!(b.checksum(found, bytes)?, sum);
//! // A block restores once, and only at the order it was preserved at.
//! assert!(incoming.restore_folio(found, order2).is_err());
//! // Nobody claimed `page`: free it, then give the tree's pages back.
//! assert_eq!(incoming.unclaimed()?, [(page, Order::ZERO)]);
//! b.free_pages(page, Order::ZERO);
//! incoming.finish();
//! # Ok(())
//! # }
//! ```
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
// The one unsafe view of a page lives in kho-abi (`PageWords`); the unit
// tests keep a platform of their own.
#![cfg_attr(not(test), forbid(unsafe_code))]

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
