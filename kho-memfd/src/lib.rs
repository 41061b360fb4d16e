//! `memfd-v2`: a memfd preserved by the Live Update Orchestrator across a
//! Linux 7.2 Kexec HandOver — what keeps guest RAM alive across a host
//! kernel update.
//!
//! # Layout
//!
//! A LUO file entry with compatible `"memfd-v2"` holds in `data` the PA of
//! a 48-byte packed descriptor, itself in an order-0 preserved page:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 pos`: file position |
//! | 8 | `u64 size`: file size in bytes |
//! | 16 | `u32 seals`: `F_SEAL_SEAL`, `SHRINK`, `GROW`, `WRITE`, `FUTURE_WRITE`, `EXEC` only |
//! | 20 | `u32 flags`: none defined, must be 0 |
//! | 24 | `u64 nr_folios` |
//! | 32 | `kho_vmalloc` (16 bytes): the folio list, a `vmalloc-v1` area |
//!
//! The folio list is an array of `nr_folios` 16-byte entries in a vmalloc
//! area (order-0 pages, `total_pages = ceil(nr_folios * 16 / PAGE_SIZE)`):
//!
//! | bits / offset | field |
//! |---|---|
//! | word 0, bits 0..=51 | `pfn` of the folio |
//! | word 0, bits 52..=63 | flags: bit 0 dirty, bit 1 uptodate |
//! | offset 8 | `u64 index`: the folio's page offset in the file |
//!
//! Each folio is preserved through the tracker at its order (order 0
//! without transparent huge pages); pages of the file without a folio are
//! holes. The entry does not store the order: the reader claims the folio
//! at the one order the tracker preserved it with.
//!
//! # Use
//!
//! [`restore`] (the next kernel), [`inspect`] (same checks, nothing kept
//! claimed), [`Memfd::read_at`] and [`Memfd::segments`] (the file's bytes
//! in file order, holes as zeros), [`preserve_bytes`] / [`preserve`] (the
//! writer).
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
//! let saved = kho_memfd::preserve_bytes(&WithTracker::new(&m, &t), &data, 17, 0)?;
//!
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let p2 = WithTracker::new(&m2, &t2);
//! let memfd = kho_memfd::inspect(&p2, saved.desc)?;
//! assert_eq!((memfd.size, memfd.pos, memfd.folios.len()), (10_000, 17, 3));
//! let mut back = vec![0; 10_000];
//! memfd.read_at(&p2, 0, &mut back)?;
//! assert_eq!(back, data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod abi;
mod error;
mod read;
mod write;

pub use abi::MEMFD_V2;
pub use error::{Fault, MemfdError};
pub use read::{Folio, Memfd, RestoredMemfd, inspect, restore};
pub use write::{FolioSpec, PreservedMemfd, preserve, preserve_bytes};
