//! kho: Linux Kexec HandOver (KHO) serialization, byte-compatible with
//! mainline Linux (`kho-v4`), hardened against corrupt input from the
//! previous kernel. This facade re-exports the layers:
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`abi`] | `kho-abi` | wire layouts, addresses, the platform traits, errors |
//! | [`track`] | `kho-track` | the preserved-memory radix tree, the root FDT, both sides of a handover |
//! | [`block`] | `kho-block` | linked-block serialization (`block-v1`) |
//! | [`vmalloc`] | `kho-vmalloc` | vmalloc areas (`vmalloc-v1`) |
//! | [`array`](mod@array) | `kho-array` | sparse arrays (`array-v1`) |
//! | [`handoff`] | `kho-handoff` | how the next kernel finds the handover: x86 `setup_data`, `/chosen` |
//!
//! `no_std` (with `alloc`). C callers use `kho-ffi` (`libkho.a`, `kho.h`).
//!
//! # Example: from one kernel to the next
//!
//! Kernel A preserves folios and names a blob as a subtree, then passes the
//! handover's location as x86 `setup_data`; kernel B reads it, imports and
//! validates the handover, and restores. The platform is
//! [kho-sim](https://docs.rs/kho-sim)'s simulated machine; a kernel passes
//! its own implementation of the [`abi::platform`] traits.
//!
//! ```
//! use kho::abi::{Order, PAGE_SIZE, PageAlloc, PhysAddr};
//! use kho::handoff::setup_data;
//! use kho::track::{Incoming, Tracker, TrackerOptions};
//! use kho_sim::{Machine, MachineConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let a = Machine::new(MachineConfig::default())?;
//! let mut tracker = Tracker::new(&a, a.scratch(), TrackerOptions::default())?;
//!
//! // Folios of orders 0 to 3, full of data; their PAs go in a blob.
//! let mut folios = Vec::new();
//! for n in 0..4u32 {
//!     let order = Order::new(u64::from(n), "folio order")?;
//!     let pa = a.alloc_pages(order)?;
//!     let bytes = (PAGE_SIZE as u64) << n;
//!     a.fill_random(pa, bytes, u64::from(n))?;
//!     tracker.preserve_folio(pa, order)?;
//!     folios.push((pa, order, a.checksum(pa, bytes)?));
//! }
//! let blob = a.alloc_pages(Order::ZERO)?;
//! for (i, (pa, _, _)) in folios.iter().enumerate() {
//!     a.write(PhysAddr::new(blob.as_u64() + 8 * i as u64), &pa.as_u64().to_ne_bytes())?;
//! }
//! tracker.preserve_folio(blob, Order::ZERO)?;
//! tracker.add_subtree("example", blob, 8 * folios.len() as u64)?;
//! let data = tracker.finish()?;
//!
//! // The boot loader's part: a SETUP_KEXEC_KHO entry for the next kernel.
//! let mut entry = [0u8; setup_data::SETUP_KHO_LEN];
//! setup_data::write(&data, 0, &mut entry)?;
//! let b = a.kexec(data);
//!
//! // Kernel B finds the handover, validates it, reserves what it holds.
//! let found = setup_data::read(&entry)?.data;
//! let incoming = Incoming::import(&b, &found)?;
//! b.boot_done(&mut incoming.reserved_blocks()?.into_iter())?;
//! let subtree = incoming.subtree("example")?;
//! incoming.restore_folio(subtree.pa, Order::ZERO)?;
//! for (i, (pa, order, sum)) in folios.iter().enumerate() {
//!     let mut raw = [0u8; 8];
//!     b.read(PhysAddr::new(subtree.pa.as_u64() + 8 * i as u64), &mut raw)?;
//!     assert_eq!(u64::from_ne_bytes(raw), pa.as_u64());
//!     incoming.restore_folio(*pa, *order)?;
//!     assert_eq!(b.checksum(*pa, (PAGE_SIZE as u64) << order.get())?, *sum);
//! }
//! assert!(incoming.unclaimed()?.is_empty());
//! incoming.finish();
//! # Ok(())
//! # }
//! ```
#![no_std]

pub use kho_abi as abi;
pub use kho_array as array;
pub use kho_block as block;
pub use kho_handoff as handoff;
pub use kho_track as track;
pub use kho_vmalloc as vmalloc;
