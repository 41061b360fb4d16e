//! `array-v1`: a sparse array of `u64` entries at `u64` positions, kept in
//! a chain of preserved pages, whose cost per entry is bounded whatever the
//! positions are.
//!
//! The kernel's KHO array RFC (never merged) stored a sparse array as
//! pages of `{next, startpos, entries[510]}`: an isolated entry cost a
//! whole 4 KiB page. `array-v1` keeps its descriptor, its entry tagging and
//! its linear access, and stores *runs* of consecutive positions instead,
//! with the runs' descriptors bit-packed at the end of each page in fields
//! as wide as that page needs: counted in whole pages, an entry costs at
//! most 15.52 bytes when no gap between positions exceeds 2^50, at most
//! 17.28 for any gaps, and a dense array 8.063 bytes (4 KiB pages; the last
//! page of an array excepted).
//!
//! # Format
//!
//! This section is the one full description of `array-v1`; `DESIGN.md`
//! gives the reasons behind it and its measured cost, and
//! [`kho_abi::array`] the layouts as constants.
//!
//! All integers are native-endian `u64` words unless said otherwise;
//! offsets are in bytes. The format is versioned by the compatible string
//! `"array-v1"` ([`ARRAY_V1`]) and the descriptor's version 1. The layouts
//! are defined in [`kho_abi::array`] and re-exported by [`format`].
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
//! ## Page (one order-0 page of `W = PAGE_SIZE / 8` words: 512 for 4 KiB)
//!
//! | word | field |
//! |---|---|
//! | 0 | `next`: PA of the next page, 0 for the last |
//! | 1 | `start`: the base position of the page's first run |
//! | 2 | `layout`: bits 0..=15 `runs` (≥ 1), 16..=23 `count_bits` (≤ 16), 24..=31 `skip_bits` (≤ 64), 32..=63 zero |
//! | 3 .. 3 + E | the page's `E` entries, run after run |
//! | .. | zero words |
//! | `W − K` .. `W − 1` | the descriptor stream, `K = ⌈runs · w / 64⌉` words, `w = count_bits + skip_bits` |
//!
//! ## Run descriptors
//!
//! The stream is read from the end of the page backwards: stream bit `k`
//! is bit `k % 64` of word `W − 1 − k / 64`. Run `i`'s descriptor is stream
//! bits `i·w .. (i+1)·w`: `count_bits` bits of `count − 1`, then
//! `skip_bits` bits of `skip`, least significant bit first (a field may
//! straddle two words). The bits after the last descriptor, to the end of
//! its word, are zero.
//!
//! The walk keeps a *base*: at a page's first run it is the page's
//! `start`; after a run it is one past the run's last position. Run `i`
//! covers positions `base + skip ..= base + skip + count − 1` and takes
//! the next `count` entry words. A width of 0 stores nothing: with
//! `count_bits = 0` every run has one entry, with `skip_bits = 0` every run
//! starts at the base.
//!
//! ## Validation ([`KhoArray::restore`])
//!
//! Magic, version, reserved = 0. Each link page aligned, RAM, within the
//! caller's `max_pages`, not back to a page seen (Brent's algorithm on the
//! links), and claimed as an order-0 block before any word of it is read.
//! A page's `start` at or above the base left by the page before
//! (positions ascend strictly across pages; after an entry at `u64::MAX`
//! no page may follow); its `layout` with reserved bits clear, at least
//! one run, widths within 16 and 64 bits, and room for the descriptors and
//! one entry per run (`3 + runs + K ≤ W`); each run's entries below the
//! descriptors and its last position `<= u64::MAX`; every entry non-zero
//! and well tagged; the words between entries and descriptors, and the
//! descriptor padding, zero (so a restored array can be appended to).
//! Errors name the page (index, PA), the run (index, word of its
//! descriptor), the field (`start`, `layout`, `count`, `skip`, `entry`,
//! free word, descriptor padding) and the fault ([`ArrayError`]); a failed
//! restore unclaims every page it claimed. A cycle cannot pass even
//! through a `Claim` that never refuses: a revisited page repeats
//! positions and fails at its `start`. The reader ([`KhoArray::iter`]) is
//! the same decoder without the claims, so the rules exist once.
//!
//! ## Cost
//!
//! An entry costs its word plus its run's descriptor: `count_bits +
//! skip_bits` bits. The writer keeps each page's widths as narrow as its
//! runs allow (9 count bits cover any run a 4 KiB page holds; a gap `g`
//! needs `skip = g − 1`, so 50 bits reach gaps up to 2^50) and starts a new
//! page only when the next entry and its descriptor, at the widths they
//! need, do not fit. A closed 4 KiB page therefore holds at least 264
//! entries when no gap exceeds 2^50 and 237 for any gaps
//! ([`format::min_entries_per_closed_page`]): at most 15.52 and 17.28
//! bytes of page per entry. A dense page holds 508 entries: 8.063 bytes
//! each (+0.79%).
//!
//! ## Worked example
//!
//! Values 1, 2 and pointer `0x1_0000_8000` at positions 5, 6, 7; value 0
//! at 1000; value 9 at 2^60; value 3 at `u64::MAX`. One page, four runs
//! (counts 3, 1, 1, 1; skips 0, 992, 2^60 − 1001, 2^64 − 2^60 − 2), so
//! `count_bits` 2, `skip_bits` 64, 66-bit descriptors in 5 words:
//!
//! | word | value | meaning |
//! |---|---|---|
//! | 0 | `0` | no next page |
//! | 1 | `0x5` | start |
//! | 2 | `0x4002_0004` | 4 runs, `count_bits` 2, `skip_bits` 64 |
//! | 3..=8 | `0x3`, `0x5`, `0x1_0000_8000`, `0x1`, `0x13`, `0x7` | entries |
//! | 9..=506 | `0` | free |
//! | 507 | `0xef` | stream bits 256..=263, then zero padding |
//! | 508 | `0xffff_ffff_ffff_fe03` | stream bits 192..=255 |
//! | 509 | `0xffff_ffff_ffff_05c0` | stream bits 128..=191 |
//! | 510 | `0x3e00` | stream bits 64..=127: run 1 at bit 66 (`skip` 992 at bit 68) |
//! | 511 | `0x2` | stream bits 0..=63: run 0, `count − 1` = 2, `skip` 0 |
//!
//! Descriptor bytes: `52 52 41 4b 01 00 00 00`, then `first`
//! little-endian (on a little-endian machine).
//!
//! More vectors, each checked word for word by `tests/layout.rs`:
//!
//! - Values 1, 2, 3 at 10, 10 + 2^50, 10 + 2^51 + 1 (skips 0, 2^50 − 1,
//!   2^50): `layout = 0x3300_0003` (3 runs, widths 0 and 51), entries
//!   `0x3, 0x5, 0x7` at words 3..=5, stream words 509..=511 =
//!   `0x100_0000, 0x1f_ffff_ffff, 0xfff8_0000_0000_0000`.
//! - Values 0, 10, 11 at 0, 10, 11: two runs (1 at 0; 2 at skip 9): the
//!   third entry widens `count_bits` from 0 to 1 and repacks; `layout =
//!   0x0401_0002`, word 511 = `0x260`.
//! - Values 0..999 at 0x7000: page 0 holds 508 (`layout = 0x0009_0001`,
//!   word 511 = 507), page 1 starts at 0x71fc and holds 492 (word 511 =
//!   491).
//! - 285 entries at gaps of 2^50 fill a page exactly (`3 + 285 + 223 ≤
//!   512`); the 286th starts page 2 with `start` at its position. A jump
//!   above 2^63 (`u64` has room for one) widens its page's skips to 64
//!   bits: 254 entries.
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
#![forbid(unsafe_code)]

mod array;
mod error;
pub mod format;
mod walk;
mod writer;

pub use array::{Iter, KhoArray};
pub use error::{ArrayError, Field, Op, PageFault, RunFault};
pub use format::{ARRAY_MAGIC, ARRAY_V1, ARRAY_VERSION, ArrayDesc, Entry};
pub use writer::Writer;
