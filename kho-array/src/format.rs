//! The `array-v1` wire format: the descriptor, the page header, the run
//! header and its large-gap escape, and the entry tagging.
//!
//! Every layout here is a contract with the next kernel, versioned by the
//! compatible string [`ARRAY_V1`] and the descriptor's [`ARRAY_VERSION`];
//! the crate documentation describes it in full with a worked example.
//! Integers are native-endian, as everywhere in KHO.

use core::num::NonZeroU64;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use kho_abi::compat::ARRAY_V1;
use kho_abi::{PAGE_SIZE, PhysAddr};

use crate::error::{ArrayError, Field, RunFault};

/// Descriptor magic: `'KARR'` as a native-endian `u32`, the value the
/// kernel's RFC chose for its array descriptor.
pub const ARRAY_MAGIC: u32 = 0x4b41_5252;

/// The only descriptor version this build reads and writes.
pub const ARRAY_VERSION: u16 = 1;

/// Bytes in a word: entries, headers and positions are all `u64`.
pub const WORD: usize = 8;

/// Words in one array page.
pub const PAGE_WORDS: usize = PAGE_SIZE / WORD;

/// Word index of the page header's `next` link.
pub const NEXT_WORD: usize = 0;

/// Word index of the page header's `start` position.
pub const START_WORD: usize = 1;

/// Words of the page header; the first record starts at this word.
pub const PAGE_HEADER_WORDS: usize = 2;

/// Bit of the run header that marks an escape record.
pub const RUN_ESCAPE_BIT: u32 = 0;

/// Lowest bit of the run header's `count` field.
pub const RUN_COUNT_SHIFT: u32 = 1;

/// Width of the run header's `count` field.
pub const RUN_COUNT_BITS: u32 = 13;

/// Lowest bit of the run header's `skip` field.
pub const RUN_SKIP_SHIFT: u32 = RUN_COUNT_SHIFT + RUN_COUNT_BITS;

/// Width of the run header's `skip` field.
pub const RUN_SKIP_BITS: u32 = 64 - RUN_SKIP_SHIFT;

/// Largest `count` a run header can hold.
pub const RUN_COUNT_MAX: u16 = (1 << RUN_COUNT_BITS) - 1;

/// Largest `skip` a plain run header can hold: a gap between two
/// consecutive positions of up to `RUN_SKIP_MAX + 1` = 2^50 costs no escape.
pub const RUN_SKIP_MAX: u64 = (1 << RUN_SKIP_BITS) - 1;

/// Entries one page holds when it is a single dense run: every word but
/// the page header and one run header.
pub const DENSE_ENTRIES_PER_PAGE: usize = PAGE_WORDS - PAGE_HEADER_WORDS - 1;

const _: () = assert!(RUN_SKIP_BITS == 50);
const _: () = assert!(DENSE_ENTRIES_PER_PAGE <= RUN_COUNT_MAX as usize);
const _: () = assert!(size_of::<ArrayDesc>() == 16);

/// The array descriptor, 16 bytes, which the user embeds in their own
/// preserved data (an FDT property, a struct in a preserved page).
///
/// | offset | field |
/// |---|---|
/// | 0 | `u32 magic`: [`ARRAY_MAGIC`] |
/// | 4 | `u16 version`: [`ARRAY_VERSION`] |
/// | 6 | `u16 reserved`: 0 |
/// | 8 | `u64 first`: PA of the first page, 0 for an empty array |
///
/// Read one from bytes with [`FromBytes::read_from_bytes`] (any
/// alignment) and write it with [`IntoBytes::as_bytes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ArrayDesc {
    /// [`ARRAY_MAGIC`].
    pub magic: u32,
    /// [`ARRAY_VERSION`].
    pub version: u16,
    /// Zero.
    pub reserved: u16,
    /// PA of the first page, 0 for an empty array.
    pub first: u64,
}

impl ArrayDesc {
    /// The descriptor of an array whose first page is at `first`
    /// ([`PhysAddr::NULL`] for an empty array).
    pub const fn new(first: PhysAddr) -> Self {
        ArrayDesc { magic: ARRAY_MAGIC, version: ARRAY_VERSION, reserved: 0, first: first.as_u64() }
    }

    /// Checks magic, version and reserved bits, and returns the first
    /// page's PA (whose alignment the walk checks, naming the page).
    pub fn check(&self) -> Result<PhysAddr, ArrayError> {
        let bad = |field, value: u64| Err(ArrayError::Descriptor { field, value });
        if self.magic != ARRAY_MAGIC {
            return bad(Field::Magic, self.magic.into());
        }
        if self.version != ARRAY_VERSION {
            return bad(Field::Version, self.version.into());
        }
        if self.reserved != 0 {
            return bad(Field::Reserved, self.reserved.into());
        }
        Ok(PhysAddr::new(self.first))
    }
}

/// A run header: the word in front of every record.
///
/// | bits | field |
/// |---|---|
/// | 0 | `escape`: a full 64-bit position follows the header |
/// | 1..=13 | `count`: entries in the run, `1..=8191` |
/// | 14..=63 | `skip`: empty positions between the previous run and this one; 0 in an escape |
///
/// The word 0 is no header: it ends the page's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunHeader {
    /// Whether the run's position is the word after the header rather than
    /// `skip` positions after the previous run.
    pub escape: bool,
    /// Entries in the run.
    pub count: u16,
    /// Empty positions before the run (0 in an escape).
    pub skip: u64,
}

impl RunHeader {
    /// The header of a plain run (`skip <= RUN_SKIP_MAX`,
    /// `1 <= count <= RUN_COUNT_MAX`; other values are masked).
    pub const fn plain(count: u16, skip: u64) -> Self {
        RunHeader { escape: false, count, skip }
    }

    /// The header of an escape run, followed by its position.
    pub const fn escape(count: u16) -> Self {
        RunHeader { escape: true, count, skip: 0 }
    }

    /// Words the record takes in front of its entries: 1, or 2 with an
    /// escape position.
    pub const fn words(&self) -> usize {
        1 + self.escape as usize
    }

    /// The header word.
    pub const fn encode(&self) -> u64 {
        let count = (self.count & RUN_COUNT_MAX) as u64;
        (self.skip & RUN_SKIP_MAX) << RUN_SKIP_SHIFT | count << RUN_COUNT_SHIFT | (self.escape as u64) << RUN_ESCAPE_BIT
    }

    /// Decodes a header word: `Ok(None)` for the terminator 0, a fault for
    /// a count of 0 or an escape with a non-zero `skip`.
    pub const fn decode(word: u64) -> Result<Option<RunHeader>, (Field, RunFault)> {
        if word == 0 {
            return Ok(None);
        }
        let escape = word >> RUN_ESCAPE_BIT & 1 == 1;
        let count = (word >> RUN_COUNT_SHIFT) as u16 & RUN_COUNT_MAX;
        let skip = word >> RUN_SKIP_SHIFT;
        if count == 0 {
            return Err((Field::Count, RunFault::ZeroCount));
        }
        if escape && skip != 0 {
            return Err((Field::Skip, RunFault::EscapeSkip { skip }));
        }
        Ok(Some(RunHeader { escape, count, skip }))
    }
}

/// One non-empty entry: a tagged value or an 8-byte-aligned pointer.
///
/// | raw word | meaning |
/// |---|---|
/// | 0 | empty (never an `Entry`) |
/// | `(v << 1) \| 1` | the value `v`, `0..=i64::MAX` |
/// | non-zero, low 3 bits 0 | a pointer or PA, stored as is |
/// | low 3 bits `010`, `100`, `110` | malformed |
///
/// ```
/// use kho_array::Entry;
///
/// let v = Entry::value(41)?;
/// assert_eq!((v.raw(), v.as_value(), v.as_pointer()), (83, Some(41), None));
/// let p = Entry::pointer(0x1_0000_2000)?;
/// assert_eq!((p.raw(), p.as_pointer()), (0x1_0000_2000, Some(0x1_0000_2000)));
/// assert!(Entry::pointer(0x1004).is_err());
/// assert!(Entry::from_raw(0).is_err());
/// # Ok::<(), kho_array::ArrayError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry(NonZeroU64);

impl Entry {
    /// The value `v`, stored as `(v << 1) | 1`; fails with `ValueTooLarge`
    /// above `i64::MAX`.
    pub const fn value(v: u64) -> Result<Entry, ArrayError> {
        if v > i64::MAX as u64 {
            return Err(ArrayError::ValueTooLarge { value: v });
        }
        match NonZeroU64::new(v << 1 | 1) {
            Some(raw) => Ok(Entry(raw)),
            None => Err(ArrayError::ValueTooLarge { value: v }),
        }
    }

    /// A pointer or PA, stored as is; fails with `InvalidEntry` unless it
    /// is non-zero and 8-byte aligned.
    pub const fn pointer(ptr: u64) -> Result<Entry, ArrayError> {
        match NonZeroU64::new(ptr) {
            Some(raw) if ptr & 7 == 0 => Ok(Entry(raw)),
            _ => Err(ArrayError::InvalidEntry { raw: ptr }),
        }
    }

    /// The entry whose raw word is `raw`; fails with `InvalidEntry` for 0
    /// (empty) and for the malformed words (even but not 8-byte aligned).
    pub const fn from_raw(raw: u64) -> Result<Entry, ArrayError> {
        match NonZeroU64::new(raw) {
            Some(nz) if raw & 1 == 1 || raw & 7 == 0 => Ok(Entry(nz)),
            _ => Err(ArrayError::InvalidEntry { raw }),
        }
    }

    /// The raw word stored in the array.
    pub const fn raw(self) -> u64 {
        self.0.get()
    }

    /// The value, if this is a tagged value.
    pub const fn as_value(self) -> Option<u64> {
        if self.0.get() & 1 == 1 { Some(self.0.get() >> 1) } else { None }
    }

    /// The pointer, if this is one.
    pub const fn as_pointer(self) -> Option<u64> {
        if self.0.get() & 1 == 0 { Some(self.0.get()) } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_header_bits() {
        assert_eq!(RunHeader::plain(1, 0).encode(), 0b10);
        assert_eq!(RunHeader::plain(509, 0).encode(), 509 << 1);
        assert_eq!(RunHeader::plain(1, 1).encode(), 1 << 14 | 1 << 1);
        assert_eq!(RunHeader::plain(RUN_COUNT_MAX, RUN_SKIP_MAX).encode(), u64::MAX - 1);
        assert_eq!(RunHeader::escape(3).encode(), 3 << 1 | 1);
        for h in [RunHeader::plain(7, 0x3_ffff_ffff_ffff), RunHeader::escape(RUN_COUNT_MAX), RunHeader::plain(1, 99)] {
            assert_eq!(RunHeader::decode(h.encode()), Ok(Some(h)));
        }
        assert_eq!(RunHeader::decode(0), Ok(None));
        assert_eq!(RunHeader::decode(1), Err((Field::Count, RunFault::ZeroCount)));
        assert_eq!(RunHeader::decode(1 << 14), Err((Field::Count, RunFault::ZeroCount)));
        assert_eq!(RunHeader::decode(1 << 14 | 0b11), Err((Field::Skip, RunFault::EscapeSkip { skip: 1 })));
        assert_eq!(RunHeader::escape(1).words(), 2);
        assert_eq!(RunHeader::plain(1, 5).words(), 1);
    }

    #[test]
    fn descriptor_bytes_and_checks() {
        let d = ArrayDesc::new(PhysAddr::new(0x1_2345_6000));
        let mut want = [0u8; 16];
        want[0..4].copy_from_slice(&0x4b41_5252u32.to_ne_bytes());
        want[4..6].copy_from_slice(&1u16.to_ne_bytes());
        want[8..16].copy_from_slice(&0x1_2345_6000u64.to_ne_bytes());
        assert_eq!(d.as_bytes(), &want);
        assert_eq!(ArrayDesc::read_from_bytes(&want), Ok(d));
        assert_eq!(d.check(), Ok(PhysAddr::new(0x1_2345_6000)));
        let bad = |f: fn(&mut ArrayDesc), field, value| {
            let mut d = d;
            f(&mut d);
            assert_eq!(d.check(), Err(ArrayError::Descriptor { field, value }));
        };
        bad(|d| d.magic = 0x4b41_5253, Field::Magic, 0x4b41_5253);
        bad(|d| d.version = 2, Field::Version, 2);
        bad(|d| d.reserved = 0x100, Field::Reserved, 0x100);
        assert_eq!(ArrayDesc::new(PhysAddr::NULL).check(), Ok(PhysAddr::NULL));
    }

    #[test]
    fn entry_tagging() {
        assert_eq!(Entry::value(0).map(Entry::raw), Ok(1));
        assert_eq!(Entry::value(i64::MAX as u64).map(Entry::raw), Ok(u64::MAX));
        assert_eq!(Entry::value(1 << 63), Err(ArrayError::ValueTooLarge { value: 1 << 63 }));
        assert_eq!(Entry::from_raw(u64::MAX).map(Entry::as_value), Ok(Some(i64::MAX as u64)));
        assert_eq!(Entry::from_raw(8).map(Entry::as_pointer), Ok(Some(8)));
        assert_eq!(Entry::from_raw(1 << 63).map(Entry::as_value), Ok(None));
        for raw in [0, 2, 4, 6, 0x1002, u64::MAX - 1] {
            assert_eq!(Entry::from_raw(raw), Err(ArrayError::InvalidEntry { raw }));
        }
        assert_eq!(Entry::pointer(0), Err(ArrayError::InvalidEntry { raw: 0 }));
    }

    #[test]
    fn page_geometry() {
        assert_eq!(PAGE_WORDS * WORD, PAGE_SIZE);
        assert_eq!(DENSE_ENTRIES_PER_PAGE, PAGE_WORDS - 3);
        if PAGE_SIZE == 4096 {
            assert_eq!(DENSE_ENTRIES_PER_PAGE, 509);
        }
    }
}
