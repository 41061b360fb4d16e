//! Wire layouts, compatible strings, address types, the platform seam and
//! errors of Linux Kexec HandOver (KHO).
//!
//! This crate holds every layout kho reads or writes, byte-compatible with
//! mainline Linux, each with its offsets documented, the compatible string
//! that versions it, and a compile-time size check. It has no logic beyond
//! encoding, decoding and validation — including [`chain`], the one walker
//! that follows (and checks, claims and on failure unclaims) a chain of
//! preserved pages for every format that has one — needs neither `std`
//! nor `alloc`, and never panics on input: every decoder returns an
//! [`AbiError`] naming the field and the offending value.
//!
//! All integers are native-endian, as the kernel writes them; that includes
//! FDT property values, which are raw bytes rather than big-endian cells.
//!
//! ```
//! use kho_abi::{Order, PhysAddr, RadixKey};
//!
//! let key = RadixKey::encode(PhysAddr::new(0x4000_0000), Order::new(9, "order")?)?;
//! assert_eq!(key.decode(), (PhysAddr::new(0x4000_0000), Order::new(9, "order")?));
//! # Ok::<(), kho_abi::AbiError>(())
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod addr;
pub mod array;
pub mod block;
pub mod chain;
mod checked;
pub mod compat;
pub mod error;
pub mod geometry;
pub mod handover;
pub mod legacy;
pub mod platform;
pub mod radix;
pub mod vmalloc;

pub use addr::{Order, Pfn, PhysAddr};
pub use array::{ArrayDesc, ArrayLayout};
pub use block::{BLOCK_CHAIN_MAX, BlockHeader, entries_per_block};
pub use compat::{Compatible, RootVersion, compose};
pub use error::{AbiError, Errno, ToErrno};
pub use geometry::{GEOMETRY, Geometry, LEAF_WORDS, PAGE_SHIFT, PAGE_SIZE, TABLE_ENTRIES};
pub use handover::{HandoverRoot, KhoData, KhoScratch};
pub use legacy::{V1BitmapRef, V1Chunk, V1ChunkHeader};
pub use platform::{
    Claim, PAGE_WORDS, PageAlloc, PageWords, PhysMem, Preserve, WithTracker, read_phys, read_phys_bytes, write_phys,
    write_phys_bytes, zero_phys,
};
pub use radix::{RadixKey, RadixLeaf, RadixTable};
pub use vmalloc::{KhoVmalloc, VmallocChunk, VmallocDesc, VmallocFlags};
