//! `array-v1`: a sparse array of `u64` entries at `u64` positions, kept in
//! a chain of preserved pages, whose cost per entry is bounded whatever the
//! positions are.
//!
//! The kernel's KHO array RFC (never merged) stored a sparse array as
//! pages of `{next, startpos, entries[510]}`: an isolated entry cost a
//! whole 4 KiB page. `array-v1` keeps its descriptor, its entry tagging and
//! its linear access, and stores *runs* of consecutive positions instead:
//! an isolated entry costs 16 bytes (24 after a gap above 2^50) and a dense
//! array 8.05 bytes per entry.
//!
//! # Format
//!
//! All integers are native-endian `u64` words unless said otherwise;
//! offsets are in bytes. The format is versioned by the compatible string
//! `"array-v1"` ([`ARRAY_V1`]) and the descriptor's version 1.
//!
//! ## Entries
//!
//! | raw word | meaning |
//! |---|---|
//! | `0` | empty: never stored in a run |
//! | `(v << 1) \| 1` | the value `v`, `0 ≤ v ≤ i64::MAX` |
//! | non-zero, `raw & 7 == 0` | a pointer or PA, stored as is |
//! | `raw & 7` in `{2, 4, 6}` | malformed: rejected |
//!
//! ## Descriptor (16 bytes, in the user's own preserved data)
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u32 magic` = `0x4b415252` (`'KARR'`) |
//! | 4 | `u16 version` = 1 |
//! | 6 | `u16 reserved` = 0 |
//! | 8 | `u64 first`: PA of the first page; 0 = empty array (no page) |
//!
//! ## Page (one order-0 page, `PAGE_SIZE / 8` words: 512 for 4 KiB)
//!
//! | word | field |
//! |---|---|
//! | 0 | `next`: PA of the next page, 0 for the last |
//! | 1 | `start`: the base position of the page's first record |
//! | 2.. | records, back to back; then zero words to the end of the page |
//!
//! ## Records
//!
//! A record is a run header, for an escape a 64-bit position, then
//! `count` entries at consecutive positions. Run header bits:
//!
//! | bits | field |
//! |---|---|
//! | 0 | `escape` |
//! | 1..=13 | `count`: entries in the run, `1..=8191` |
//! | 14..=63 | `skip` (50 bits): must be 0 when `escape` is set |
//!
//! The walk keeps a *base*: at a page's first record it is the page's
//! `start`; after a run it is one past the run's last position. A plain
//! run's first position is `base + skip`; an escape run's is the word after
//! the header, which must be `>= base` (so a jump of any size costs one
//! extra word). A header word of 0 ends the page's records; a page's
//! records may also run to its very last word.
//!
//! ## Validation ([`KhoArray::restore`])
//!
//! Magic, version, reserved = 0. Each link page aligned, RAM, claimable as
//! an order-0 block, within the caller's `max_pages`, not a cycle. A page's
//! `start` at or above the base left by the page before (positions ascend
//! strictly across pages); at least one record per page; in each record
//! `count != 0`, escape `skip == 0`, the whole record inside the page,
//! escape position `>= base`, last position `<= u64::MAX`; every entry
//! non-zero and well tagged; every word after the terminator zero. Errors
//! name the page (index, PA), the run (index, word), the field and the
//! fault ([`ArrayError`]); a failed restore unclaims every page it claimed.
//!
//! ## Cost
//!
//! A run of `n` entries costs `8 + 8n` bytes, `16 + 8n` after a gap above
//! 2^50 (`gap = position - previous position`; a gap of `g` is `skip =
//! g - 1`, so `skip` reaches gaps up to 2^50 inclusive). The first entry of
//! each page costs no escape, since `start` carries its position. So the
//! records cost at most 16 bytes per entry when no gap exceeds 2^50 and at
//! most 24 otherwise ([`KhoArray::record_bytes`]). The writer moves to a
//! new page only when the next record does not fit, wasting at most two
//! words, so a page holds at least 255 entries in the first case and 170 in
//! the second (4 KiB pages): at most 16.07 and 24.1 bytes of page per
//! entry. A dense page holds 509 entries: 8.047 bytes each (+0.59%).
//!
//! ## Worked example
//!
//! Values 1, 2 and pointer `0x1_0000_8000` at positions 5, 6, 7; value 0
//! at 1000; value 9 at 2^60; value 3 at `u64::MAX`. One page:
//!
//! | word | value | meaning |
//! |---|---|---|
//! | 0 | `0` | no next page |
//! | 1 | `5` | start |
//! | 2 | `0x6` | run: count 3, skip 0 → positions 5..=7 |
//! | 3..=5 | `0x3`, `0x5`, `0x1_0000_8000` | entries |
//! | 6 | `0xf8_0002` | run: count 1, skip 992 → position 8 + 992 = 1000 |
//! | 7 | `0x1` | value 0 |
//! | 8 | `0x3` | escape run, count 1 |
//! | 9 | `0x1000_0000_0000_0000` | position 2^60 |
//! | 10 | `0x13` | value 9 |
//! | 11, 12, 13 | `0x3`, `0xffff_ffff_ffff_ffff`, `0x7` | escape run at `u64::MAX`, value 3 |
//! | 14.. | `0` | end of records |
//!
//! # Using it
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_array::{ArrayDesc, Entry, KhoArray};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! // The outgoing kernel writes, preserves, and stores the descriptor.
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let p = WithTracker::new(&m, &t);
//! let mut a = KhoArray::new();
//! let mut w = a.writer(&p);
//! for pos in [3, 4, 5, 1 << 33, u64::MAX] {
//!     w.push(pos, Entry::value(pos >> 1)?)?;
//! }
//! a.preserve(&p)?;
//! let desc: ArrayDesc = a.descriptor(); // goes into the user's preserved data
//!
//! // The next kernel restores, reads, frees.
//! let preserved = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut preserved.iter().copied())?;
//! let t2 = ModelTracker::incoming(preserved);
//! let p2 = WithTracker::new(&m2, &t2);
//! let b = KhoArray::restore(&p2, &desc, 16)?;
//! let positions: Vec<u64> = b.iter(&p2).map(|e| e.map(|(pos, _)| pos)).collect::<Result<_, _>>()?;
//! assert_eq!(positions, [3, 4, 5, 1 << 33, u64::MAX]);
//! b.destroy(&p2)?;
//! assert_eq!(m2.reserved_pages(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! All memory is reached through the platform seam of [`kho_abi`]: pages
//! come from [`PageAlloc`](kho_abi::PageAlloc), are preserved through
//! [`Preserve`](kho_abi::Preserve) and claimed through
//! [`Claim`](kho_abi::Claim). No global state, no allocator, `no_std`.
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "fuzzing")]
extern crate std;

mod array;
mod error;
pub mod format;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod walk;
mod writer;

pub use array::{Iter, KhoArray};
pub use error::{ArrayError, Field, Op, PageFault, RunFault};
pub use format::{ARRAY_MAGIC, ARRAY_V1, ARRAY_VERSION, ArrayDesc, Entry};
pub use writer::Writer;
