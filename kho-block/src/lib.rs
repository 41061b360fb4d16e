//! `block-v1`: linked-block serialization, the block ABI of Linux KHO
//! (root compatible `kho-v4`).
//!
//! A block set holds entries of one fixed size in a chain of preserved
//! pages. Each page (a *block*) starts with a packed 16-byte header and the
//! entries follow it, packed:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u64 next`: PA of the next block, 0 for the last |
//! | 8 | `u64 count`: entries used in this block |
//! | 16 | `count` entries of `entry_size` bytes |
//!
//! A block holds `(PAGE_SIZE - 16) / entry_size` entries (51 of LUO's
//! 80-byte sessions, 63 of its 64-byte files). The entry size is not
//! stored: the user's own compatible string implies it. Integers are
//! native-endian. The user keeps the PA of the first block (the *head*) in
//! their own preserved data; head 0 is an empty set.
//!
//! # Using it
//!
//! In the outgoing kernel, a [`BlockSet`] over a zerocopy entry type (or a
//! [`RawBlockSet`] with an explicit entry size) reserves capacity ahead of
//! time as objects register ([`grow`](BlockSet::grow), which allocates and
//! preserves block pages) and gives it back as they unregister
//! ([`shrink`](BlockSet::shrink)). Serializing then goes through a
//! [`Writer`] that never allocates and keeps every block's `count` current
//! after each entry, so there is no finalize step to forget; its
//! [`prev`](Writer::prev) steps back over the last entry when a
//! serialization must be unwound. [`Iter`] reads the entries back in
//! order, and steps back with [`prev`](Iter::prev).
//!
//! In the next kernel, [`BlockSet::restore`] (or
//! [`RestoredRawBlockSet::restore`]) adopts the chain from its head:
//! every link is checked (page aligned, RAM, at most [`BLOCK_CHAIN_MAX`]
//! blocks, no cycle), every block page is claimed through the platform's
//! [`Claim`](kho_abi::Claim) (so a chain into memory that was not preserved
//! fails) and every count must be in `1..=entries_per_block`. A failure
//! unclaims what was claimed and names the block, its PA and the field
//! ([`ChainError`]).
//!
//! All memory is reached through the platform seam of [`kho_abi`]: no
//! global state, no allocator, `no_std`, and no `unsafe` in this crate.
//!
//! # Throughput
//!
//! [`Writer::extend`] and [`Iter::read_into`] move a block's worth of
//! entries per platform call and run at memcpy speed (the `block` bench
//! measures them beside a plain memcpy of the same payload). Entry-by-entry
//! [`Writer::push`] and [`Iter::next`](Iterator::next) make one or two
//! platform calls per entry (the count is rewritten after every entry), so
//! their cost is set by the platform's `phys_to_virt`.
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_block::BlockSet;
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//! use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
//! #[repr(C)]
//! struct FileSer {
//!     token: u64,
//!     data: [u64; 7],
//! }
//!
//! // The outgoing kernel: reserve room for three files, then serialize.
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let p = WithTracker::new(&m, &t);
//! let mut files = BlockSet::<FileSer>::new();
//! files.grow(&p, 3)?;
//! let mut w = files.writer(&p);
//! for token in 1..=3 {
//!     w.push(&FileSer { token, data: [token; 7] })?;
//! }
//! assert_eq!(files.entries_per_block(), 63);
//! let head = files.head(); // stored in the user's own preserved data
//!
//! // The next kernel: adopt, read, free.
//! let preserved = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut preserved.iter().copied())?;
//! let t2 = ModelTracker::incoming(preserved);
//! let p2 = WithTracker::new(&m2, &t2);
//! let restored = BlockSet::<FileSer>::restore(&p2, head)?;
//! let tokens: Vec<u64> = restored.iter(&p2).map(|f| f.map(|f| f.token)).collect::<Result<_, _>>()?;
//! assert_eq!(tokens, [1, 2, 3]);
//! restored.free(&p2)?;
//! assert_eq!(m2.reserved_pages(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod chain;
mod error;
mod raw;
mod restore;
mod typed;

pub use chain::RawCursor;
pub use error::{BlockError, ChainError, Fault, Field};
pub use kho_abi::BLOCK_CHAIN_MAX;
pub use kho_abi::block::BLOCK_V1;
pub use raw::{RawBlockSet, RawWriter};
pub use restore::RestoredRawBlockSet;
pub use typed::{BlockSet, Entry, Iter, RestoredBlockSet, Writer};
