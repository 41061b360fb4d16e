//! The `array-v1` wire format: the descriptor and page layout (defined in
//! [`kho_abi::array`] and re-exported here), the entry tagging, and the
//! descriptor check.
//!
//! Every layout here is a contract with the next kernel, versioned by the
//! compatible string [`ARRAY_V1`] and the descriptor's [`ARRAY_VERSION`];
//! the crate documentation describes it in full with a worked example.
//! Integers are native-endian, as everywhere in KHO.

use core::num::NonZeroU64;

use kho_abi::PhysAddr;
pub use kho_abi::array::{
    ARRAY_COUNT_BITS_MAX, ARRAY_DENSE_ENTRIES, ARRAY_HEADER_WORDS, ARRAY_LAYOUT_WORD, ARRAY_MAGIC, ARRAY_NEXT_WORD,
    ARRAY_PAGE_WORDS, ARRAY_SKIP_BITS_MAX, ARRAY_START_WORD, ARRAY_V1, ARRAY_VERSION, ArrayDesc, ArrayLayout,
    LayoutFault, bits_for, stream_field, stream_get, stream_put, stream_word,
};

use crate::error::{ArrayError, Field};

/// Checks a descriptor's magic, version and reserved bits, and returns the
/// first page's PA (whose alignment the walk checks, naming the page).
pub fn check_descriptor(desc: &ArrayDesc) -> Result<PhysAddr, ArrayError> {
    let bad = |field, value: u64| Err(ArrayError::Descriptor { field, value });
    if desc.magic != ARRAY_MAGIC {
        return bad(Field::Magic, desc.magic.into());
    }
    if desc.version != ARRAY_VERSION {
        return bad(Field::Version, desc.version.into());
    }
    if desc.reserved != 0 {
        return bad(Field::Reserved, desc.reserved.into());
    }
    Ok(PhysAddr::new(desc.first))
}

// The bounds the format promises, at every page size: 16 bytes per entry
// in a closed page when no gap exceeds 2^50, 24 for any gaps, and dense
// pages within 1% of 8 bytes per entry.
const _: () = assert!(min_entries_per_closed_page(50) * 16 >= kho_abi::PAGE_SIZE);
const _: () = assert!(min_entries_per_closed_page(64) * 24 >= kho_abi::PAGE_SIZE);
const _: () = assert!(ARRAY_DENSE_ENTRIES * 808 >= kho_abi::PAGE_SIZE * 100);

/// The fewest entries the writer leaves in a page it closes, when every
/// gap between consecutive positions is at most `2^skip_bits` (so every
/// `skip` fits `skip_bits` bits): the page closes only when one more entry
/// and its descriptor, at the widest widths, would not fit.
pub const fn min_entries_per_closed_page(skip_bits: u32) -> usize {
    // The page closes when E + 1 entries and E + 1 descriptors of at most
    // `per_entry - 64` bits, rounded up to whole words, pass the words after
    // the header: then 64 (E + 1) + (E + 1) (per_entry - 64) > 64 (words - 1),
    // the rounding costing less than one word.
    let bits = (ARRAY_PAGE_WORDS - ARRAY_HEADER_WORDS - 1) * 64;
    let per_entry = 64 + bits_for(ARRAY_DENSE_ENTRIES as u64 - 1) as usize + skip_bits as usize;
    bits / per_entry
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
    fn descriptor_checks() {
        let d = ArrayDesc::new(PhysAddr::new(0x1_2345_6000));
        assert_eq!(check_descriptor(&d), Ok(PhysAddr::new(0x1_2345_6000)));
        let bad = |f: fn(&mut ArrayDesc), field, value| {
            let mut d = d;
            f(&mut d);
            assert_eq!(check_descriptor(&d), Err(ArrayError::Descriptor { field, value }));
        };
        bad(|d| d.magic = 0x4b41_5253, Field::Magic, 0x4b41_5253);
        bad(|d| d.version = 2, Field::Version, 2);
        bad(|d| d.reserved = 0x100, Field::Reserved, 0x100);
        assert_eq!(check_descriptor(&ArrayDesc::new(PhysAddr::NULL)), Ok(PhysAddr::NULL));
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
        assert_eq!(ARRAY_PAGE_WORDS * 8, kho_abi::PAGE_SIZE);
        if kho_abi::PAGE_SIZE == 4096 {
            assert_eq!(ARRAY_DENSE_ENTRIES, 508);
            // 64 + 9 + 50 bits per entry: at least 264 entries, 15.5 bytes each.
            assert_eq!(min_entries_per_closed_page(50), 264);
            assert_eq!(min_entries_per_closed_page(64), 237);
        }
    }
}
