//! Sparse arrays (`array-v1`, this project's own format): the descriptor a
//! user embeds in its own preserved data, and the page layout — a header,
//! entries packed from the front, and bit-packed run descriptors packed
//! from the back.
//!
//! `kho-array` implements the format (writer, reader, validated restore),
//! and its crate documentation (section *Format*) is the one full
//! description of it, with the validation rules and a worked example; this
//! module holds the layouts and the bit arithmetic both sides of a
//! handover must agree on, whose items name the words and fields.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::PhysAddr;
use crate::geometry::PAGE_SIZE;

pub use crate::compat::ARRAY_V1;

/// Descriptor magic: `'KARR'` as a native-endian `u32`.
pub const ARRAY_MAGIC: u32 = 0x4b41_5252;

/// The only descriptor version defined.
pub const ARRAY_VERSION: u16 = 1;

/// Words in one array page (512 for 4 KiB pages).
pub const ARRAY_PAGE_WORDS: usize = PAGE_SIZE / 8;

/// Word index of a page's `next` link.
pub const ARRAY_NEXT_WORD: usize = 0;

/// Word index of a page's `start` position.
pub const ARRAY_START_WORD: usize = 1;

/// Word index of a page's [`ArrayLayout`].
pub const ARRAY_LAYOUT_WORD: usize = 2;

/// Words of the page header: the first entry is at this word.
pub const ARRAY_HEADER_WORDS: usize = 3;

/// Widest `count - 1` field a layout may declare.
pub const ARRAY_COUNT_BITS_MAX: u32 = 16;

/// Widest `skip` field a layout may declare.
pub const ARRAY_SKIP_BITS_MAX: u32 = 64;

/// Entries a page holds as one run: every word but the header and the
/// word holding the run's descriptor (508 for 4 KiB pages).
pub const ARRAY_DENSE_ENTRIES: usize = ARRAY_PAGE_WORDS - ARRAY_HEADER_WORDS - 1;

const _: () = assert!(size_of::<ArrayDesc>() == 16);
const _: () = assert!(ARRAY_DENSE_ENTRIES < 1 << ARRAY_COUNT_BITS_MAX);

/// The array descriptor (16 bytes), embedded by the user in their own
/// preserved data.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u32 magic`: [`ARRAY_MAGIC`] |
/// | 4 | `u16 version`: [`ARRAY_VERSION`] |
/// | 6 | `u16 reserved`: 0 |
/// | 8 | `u64 first`: PA of the first page, 0 for an empty array |
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
}

/// A page's `layout` word (word 2).
///
/// | bits | field |
/// |---|---|
/// | 0..=15 | `runs`: run descriptors in the page, at least 1 |
/// | 16..=23 | `count_bits`: width of each descriptor's `count - 1`, `0..=16` |
/// | 24..=31 | `skip_bits`: width of each descriptor's `skip`, `0..=64` |
/// | 32..=63 | reserved, 0 |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArrayLayout {
    /// Run descriptors in the page.
    pub runs: u16,
    /// Bits of each descriptor's `count - 1`.
    pub count_bits: u8,
    /// Bits of each descriptor's `skip`.
    pub skip_bits: u8,
}

/// Why a `layout` word is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LayoutFault {
    /// Reserved bits 32..=63 are set.
    #[error("reserved bits set")]
    Reserved,
    /// `runs` is 0.
    #[error("no runs")]
    NoRuns,
    /// `count_bits` exceeds [`ARRAY_COUNT_BITS_MAX`].
    #[error("count width above 16 bits")]
    CountBits,
    /// `skip_bits` exceeds [`ARRAY_SKIP_BITS_MAX`].
    #[error("skip width above 64 bits")]
    SkipBits,
    /// The descriptors, with one entry per run, do not fit the page.
    #[error("the runs' descriptors and entries do not fit the page")]
    TooManyRuns,
}

impl ArrayLayout {
    /// The layout word.
    pub const fn encode(self) -> u64 {
        self.runs as u64 | (self.count_bits as u64) << 16 | (self.skip_bits as u64) << 24
    }

    /// Decodes and checks a layout word: reserved bits clear, at least one
    /// run, widths within their maxima, and room in the page for the
    /// descriptors plus one entry per run.
    pub const fn decode(raw: u64) -> Result<ArrayLayout, LayoutFault> {
        let layout = ArrayLayout { runs: raw as u16, count_bits: (raw >> 16) as u8, skip_bits: (raw >> 24) as u8 };
        if raw >> 32 != 0 {
            Err(LayoutFault::Reserved)
        } else if layout.runs == 0 {
            Err(LayoutFault::NoRuns)
        } else if layout.count_bits as u32 > ARRAY_COUNT_BITS_MAX {
            Err(LayoutFault::CountBits)
        } else if layout.skip_bits as u32 > ARRAY_SKIP_BITS_MAX {
            Err(LayoutFault::SkipBits)
        } else if ARRAY_HEADER_WORDS + layout.runs as usize + layout.descriptor_words() > ARRAY_PAGE_WORDS {
            Err(LayoutFault::TooManyRuns)
        } else {
            Ok(layout)
        }
    }

    /// Bits of one run descriptor.
    pub const fn width(self) -> u32 {
        self.count_bits as u32 + self.skip_bits as u32
    }

    /// Words the descriptor stream takes at the end of the page.
    pub const fn descriptor_words(self) -> usize {
        (self.runs as usize * self.width() as usize).div_ceil(64)
    }

    /// The first word past the entries area: the lowest descriptor word.
    pub const fn entries_end(self) -> usize {
        ARRAY_PAGE_WORDS.saturating_sub(self.descriptor_words())
    }

    /// Stream bit of descriptor `run`'s `count - 1` field.
    pub const fn count_bit(self, run: usize) -> usize {
        run * self.width() as usize
    }

    /// Stream bit of descriptor `run`'s `skip` field.
    pub const fn skip_bit(self, run: usize) -> usize {
        run * self.width() as usize + self.count_bits as usize
    }
}

/// Bits needed to write `v` (0 for 0).
pub const fn bits_for(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Page word and bit shift of stream bit `bit`.
pub const fn stream_word(bit: usize) -> (usize, u32) {
    (ARRAY_PAGE_WORDS - 1 - bit / 64, (bit % 64) as u32)
}

/// The `n`-bit field (`n <= 64`) that starts at bit `shift` of the stream
/// word `lo` and continues into the next (lower-addressed) stream word
/// `hi` when it crosses a word boundary.
pub const fn stream_field(lo: u64, hi: u64, shift: u32, n: u32) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut v = lo >> shift;
    if shift != 0 && shift + n > 64 {
        v |= hi << (64 - shift);
    }
    if n < 64 { v & ((1 << n) - 1) } else { v }
}

/// The words of an array page: a copy in memory (`[u64]`) or the page in
/// RAM itself ([`PageWords`](crate::PageWords)).
pub trait Words {
    /// Word `i`; panics if out of range.
    fn word(&self, i: usize) -> u64;

    /// Sets word `i` to `v`; panics if out of range.
    fn set_word(&mut self, i: usize, v: u64);
}

impl Words for [u64] {
    fn word(&self, i: usize) -> u64 {
        self[i]
    }

    fn set_word(&mut self, i: usize, v: u64) {
        self[i] = v;
    }
}

impl<const N: usize> Words for [u64; N] {
    fn word(&self, i: usize) -> u64 {
        self[i]
    }

    fn set_word(&mut self, i: usize, v: u64) {
        self[i] = v;
    }
}

impl Words for crate::PageWords<'_> {
    fn word(&self, i: usize) -> u64 {
        self.get(i)
    }

    fn set_word(&mut self, i: usize, v: u64) {
        self.set(i, v);
    }
}

/// Reads the `n`-bit field (`n <= 64`) at stream bit `bit` of `page`
/// ([`ARRAY_PAGE_WORDS`] words).
///
/// # Panics
///
/// If the field lies outside the page.
pub fn stream_get<W: Words + ?Sized>(page: &W, bit: usize, n: u32) -> u64 {
    if n == 0 {
        return 0;
    }
    let (word, shift) = stream_word(bit);
    let hi = if shift + n > 64 { page.word(word - 1) } else { 0 };
    stream_field(page.word(word), hi, shift, n)
}

/// Writes `v` (its low `n` bits, `n <= 64`) as the field at stream bit
/// `bit` of `page`, leaving every other bit as it is.
///
/// # Panics
///
/// If the field lies outside the page.
pub fn stream_put<W: Words + ?Sized>(page: &mut W, bit: usize, n: u32, v: u64) {
    if n == 0 {
        return;
    }
    let mask = if n < 64 { (1u64 << n) - 1 } else { u64::MAX };
    let v = v & mask;
    let (word, shift) = stream_word(bit);
    page.set_word(word, page.word(word) & !(mask << shift) | v << shift);
    if shift + n > 64 {
        let spill = 64 - shift;
        let high_mask = mask >> spill;
        page.set_word(word - 1, page.word(word - 1) & !high_mask | v >> spill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_bytes() {
        let d = ArrayDesc::new(PhysAddr::new(0x1_2345_6000));
        let mut want = [0u8; 16];
        want[0..4].copy_from_slice(&0x4b41_5252u32.to_ne_bytes());
        want[4..6].copy_from_slice(&1u16.to_ne_bytes());
        want[8..16].copy_from_slice(&0x1_2345_6000u64.to_ne_bytes());
        assert_eq!(d.as_bytes(), &want);
        assert_eq!(ArrayDesc::read_from_bytes(&want), Ok(d));
    }

    #[test]
    fn layout_word() {
        let l = ArrayLayout { runs: 3, count_bits: 9, skip_bits: 50 };
        assert_eq!(l.encode(), 0x3209_0003);
        assert_eq!(ArrayLayout::decode(l.encode()), Ok(l));
        assert_eq!((l.width(), l.descriptor_words(), l.count_bit(2), l.skip_bit(2)), (59, 3, 118, 127));
        assert_eq!(ArrayLayout::decode(1 << 32 | 1), Err(LayoutFault::Reserved));
        assert_eq!(ArrayLayout::decode(0x0900_0000), Err(LayoutFault::NoRuns));
        assert_eq!(ArrayLayout::decode(0x0011_0001), Err(LayoutFault::CountBits));
        assert_eq!(ArrayLayout::decode(0x4110_0001), Err(LayoutFault::SkipBits));
        assert_eq!(ArrayLayout::decode(0x4010_0001).map(ArrayLayout::width), Ok(80));
        // Every run needs an entry: as many runs as words cannot fit.
        assert_eq!(ArrayLayout::decode(ARRAY_PAGE_WORDS as u64), Err(LayoutFault::TooManyRuns));
        let most = (ARRAY_PAGE_WORDS - ARRAY_HEADER_WORDS) as u64;
        assert_eq!(ArrayLayout::decode(most).map(|l| l.runs as u64), Ok(most));
        assert_eq!(ArrayLayout::decode(most | 1 << 24), Err(LayoutFault::TooManyRuns));
        assert_eq!(ArrayLayout { runs: 1, count_bits: 0, skip_bits: 0 }.entries_end(), ARRAY_PAGE_WORDS);
    }

    #[test]
    fn bit_stream() {
        let mut page = [0u64; ARRAY_PAGE_WORDS];
        let last = ARRAY_PAGE_WORDS - 1;
        stream_put(&mut page, 0, 9, 0x1ff);
        assert_eq!(page[last], 0x1ff);
        // A 50-bit field at bit 59 spans the last two words.
        stream_put(&mut page, 59, 50, (1 << 50) - 2);
        assert_eq!(stream_get(&page, 59, 50), (1 << 50) - 2);
        assert_eq!(stream_get(&page, 0, 9), 0x1ff);
        assert_eq!(page[last] >> 59, 0b11110);
        assert_eq!(page[last - 1], (1 << 45) - 1);
        // A full-width field, aligned and not.
        stream_put(&mut page, 128, 64, u64::MAX - 5);
        assert_eq!(page[last - 2], u64::MAX - 5);
        stream_put(&mut page, 200, 64, 0x0123_4567_89ab_cdef);
        assert_eq!(stream_get(&page, 200, 64), 0x0123_4567_89ab_cdef);
        assert_eq!(stream_get(&page, 128, 64) & 0xff, 0xfa);
        // Rewriting clears the old bits of the field only.
        stream_put(&mut page, 59, 50, 1);
        assert_eq!((stream_get(&page, 59, 50), stream_get(&page, 0, 9)), (1, 0x1ff));
        stream_put(&mut page, 7, 0, u64::MAX);
        assert_eq!(stream_get(&page, 7, 0), 0);
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(1), 1);
        assert_eq!(bits_for(508), 9);
        assert_eq!(bits_for((1 << 50) - 1), 50);
        assert_eq!(bits_for(u64::MAX), 64);
    }
}
