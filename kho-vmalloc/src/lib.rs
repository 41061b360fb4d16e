//! `vmalloc-v1`: preserving virtually contiguous areas across kexec,
//! byte-compatible with Linux's `kho_preserve_vmalloc` /
//! `kho_restore_vmalloc`.
//!
//! A vmalloc area is physically scattered: a list of blocks of `2^order`
//! pages each, contiguous only in virtual memory. To hand it to the next
//! kernel, every block is preserved and its address written into a chain
//! of *chunk pages*, and a 16-byte descriptor names the chain:
//!
//! ```text
//!  kho_vmalloc (16 bytes, in the user's own preserved data)
//!  +-----------+-------------------+-----------+-----------+
//!  | u64 first | u32 total_pages   | u16 flags | u16 order |
//!  +-----|-----+-------------------+-----------+-----------+
//!        v
//!  chunk page (order 0, preserved)        chunk page
//!  +----------+----------+-----+-------+  +----------+---------+---+---+
//!  | u64 next |  phys[0] | ... | [510] |->| u64 next | phys[0] | 0 |...|
//!  +----------+----|-----+-----+-------+  +----------+---------+---+---+
//!                  v
//!           block of 2^order pages (preserved at `order`)
//! ```
//!
//! - `first` is the PA of the first chunk page (0 for an empty area);
//!   `next` links the chunks, 0 ends the chain. Each chunk holds up to 511
//!   block PAs (4 KiB pages), zero-terminated when not full.
//! - `total_pages` counts pages, so the area has `total_pages >> order`
//!   blocks; `flags` may only hold `ALLOC` (bit 0) and `HUGE_VMAP` (bit 1).
//! - Every chunk page is preserved at order 0 and every block at `order`.
//!   The next kernel claims both, maps the blocks, and frees the chunk
//!   pages.
//!
//! The layouts themselves ([`KhoVmalloc`], [`VmallocChunk`]) live in
//! `kho-abi`; this crate is the logic over them:
//!
//! - [`preserve`] / [`unpreserve`] on the outgoing side, through a platform
//!   that is `PhysMem + PageAlloc + Preserve`;
//! - [`restore`] (a callback per block) or [`restore_into`] (a slice) on
//!   the incoming side, through `PhysMem + PageAlloc + Claim`, treating the
//!   descriptor and chunks as untrusted: the order is bounded by the
//!   platform's, every block's alignment is checked, the block count must
//!   match `total_pages` exactly and never exceed it on the way, the chain
//!   is bounded by [`max_chunks`] and a link back to an earlier chunk is
//!   reported as a cycle. Every failure is a [`VmallocError`] naming the
//!   chunk, the entry and the field, and leaves nothing claimed.
//!
//! Linux's writer allocates a new chunk as soon as one fills up, so an area
//! whose block count is a multiple of 511 ends with an empty chunk. This
//! crate's writer does not emit that page, and its reader accepts it, as
//! the kernel's does.
//!
//! The crate needs neither `std` nor `alloc` and contains no `unsafe`
//! code. In tests, kho-sim's `Machine::map_same_order` maps the blocks a
//! restore reports into one slice, as the kernel's `vmap` does.
//!
//! # Example
//!
//! ```
//! use kho_abi::{KhoData, Order, PageAlloc, PhysAddr, VmallocFlags, WithTracker};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let order = Order::new(1, "order")?;
//! let m = Machine::new(MachineConfig::default())?;
//! let tracker = ModelTracker::new();
//! // Four scattered order-1 blocks: an 8-page "vmalloc area".
//! let blocks = (0..4).map(|_| m.alloc_pages(order)).collect::<Result<Vec<_>, _>>()?;
//! let desc = kho_vmalloc::preserve(&WithTracker::new(&m, &tracker), blocks.iter().copied(), order, VmallocFlags::ALLOC)?;
//! assert_eq!((desc.total_pages, desc.order), (8, 1));
//!
//! // The next kernel boots (everything not preserved is reused) and
//! // claims the area back, block by block.
//! let preserved = tracker.blocks();
//! let next = m.kexec(KhoData::default());
//! next.boot_done(&mut preserved.iter().copied())?;
//! let incoming = ModelTracker::incoming(preserved);
//! let mut restored: Vec<PhysAddr> = Vec::new();
//! let area = kho_vmalloc::restore(&WithTracker::new(&next, &incoming), &desc, |pa| restored.push(pa))?;
//! assert_eq!(restored, blocks);
//! assert_eq!(area.chunks, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod chunk;
pub mod error;
mod preserve;
mod restore;

pub use chunk::max_chunks;
pub use error::{ChunkAt, EntryAt, PageKind, VmallocError};
pub use kho_abi::vmalloc::{VMALLOC_CHUNK_ENTRIES, VMALLOC_V1};
pub use kho_abi::{KhoVmalloc, VmallocChunk, VmallocFlags};
pub use preserve::{preserve, unpreserve};
pub use restore::{RestoredArea, block_count, restore, restore_into};
