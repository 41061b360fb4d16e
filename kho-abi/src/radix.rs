//! The preserved-memory radix tree (`radix-v1`, the kernel's root versions
//! `kho-v2` to `kho-v4`).
//!
//! Every node is one page, page aligned. A table page is an array of
//! [`TABLE_ENTRIES`] `u64` child PAs (0 = empty); a leaf page is a bitmap of
//! `PAGE_SIZE * 8` bits in Linux bitmap order (bit *n* in word *n / 64*, bit
//! *n % 64*). A preserved block of `2^order` pages at `pa` is the key
//!
//! ```text
//! key = (1 << (64 - PAGE_SHIFT - order)) | (pa >> (PAGE_SHIFT + order))
//! ```
//!
//! whose low `bitmap_bits` select the leaf bit and whose higher bits, in
//! groups of `table_bits`, select the slot of each table from level 1 (just
//! above the leaves) up to the root at level `depth - 1`. The tree pages are
//! not themselves preserved.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;
use crate::geometry::{GEOMETRY, LEAF_WORDS, PAGE_SHIFT, PAGE_SIZE, TABLE_ENTRIES};

/// Compatible string of the radix tree format.
pub const RADIX_V1: &str = "radix-v1";

/// The key of one preserved block: its order and PA folded into one integer.
///
/// # Invariants
///
/// The key is non-zero and at most [`Geometry::key_bits`] wide, so it always
/// decodes to an order at most [`Order::MAX`] and the PA of an aligned block.
///
/// [`Geometry::key_bits`]: crate::Geometry::key_bits
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct RadixKey(u64);

impl RadixKey {
    /// Encodes a block. Fails with `Misaligned` if `pa` is not aligned to
    /// the block size; `order` is already bounded by [`Order::MAX`].
    pub const fn encode(pa: PhysAddr, order: Order) -> Result<RadixKey, AbiError> {
        if !order.aligns(pa) {
            return Err(AbiError::Misaligned {
                what: "radix key PA",
                pa,
                align: match order.checked_bytes() {
                    Some(b) => b,
                    None => u64::MAX,
                },
            });
        }
        let shift = order.byte_shift();
        let frame = if shift >= 64 { 0 } else { pa.as_u64() >> shift };
        // INVARIANT: the order bit is at position max_key_order - order
        // >= 0, and `frame` has fewer bits than that, so the key is
        // non-zero and at most key_bits wide.
        Ok(RadixKey((1u64 << (GEOMETRY.max_key_order - order.get())) | frame))
    }

    /// Validates a raw key read from a tree: zero is rejected, and a key
    /// wider than the key width yields `KeyTooWide` (`ERANGE`).
    pub const fn from_raw(raw: u64) -> Result<RadixKey, AbiError> {
        if raw == 0 {
            return Err(AbiError::ZeroKey { what: "radix key" });
        }
        let fls = 64 - raw.leading_zeros();
        if fls > GEOMETRY.key_bits {
            return Err(AbiError::KeyTooWide { what: "radix key", key: raw, bits: GEOMETRY.key_bits });
        }
        Ok(RadixKey(raw))
    }

    /// The raw key.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The block's order: `key_bits - fls64(key)`.
    pub const fn order(self) -> Order {
        let fls = 64 - self.0.leading_zeros();
        // PANICS: none; by the invariant 1 <= fls <= key_bits, so the result
        // is at most max_key_order and `Order::new` cannot fail.
        match Order::new((GEOMETRY.key_bits - fls) as u64, "radix key") {
            Ok(o) => o,
            Err(_) => Order::ZERO,
        }
    }

    /// The block's PA: the key shifted back up, which pushes the order bit
    /// out of the 64-bit word.
    pub const fn pa(self) -> PhysAddr {
        let shift = self.order().byte_shift();
        PhysAddr::new(if shift >= 64 { 0 } else { self.0 << shift })
    }

    /// Both halves of the key.
    pub const fn decode(self) -> (PhysAddr, Order) {
        (self.pa(), self.order())
    }

    /// Index of the key's bit inside its leaf.
    pub const fn bitmap_index(self) -> usize {
        (self.0 & (GEOMETRY.bitmap_len as u64 - 1)) as usize
    }

    /// Index of the key's slot in the table at `level` (1 = just above the
    /// leaves, `depth - 1` = the root).
    pub const fn table_index(self, level: u32) -> usize {
        ((self.0 >> GEOMETRY.level_shift(level)) & (TABLE_ENTRIES as u64 - 1)) as usize
    }

    /// Rebuilds a key from the path a walk took: the slot index at every
    /// table level (`path[level - 1]` for level 1..depth-1) and the leaf bit.
    /// The result is validated like [`RadixKey::from_raw`].
    pub fn from_path(path: &[usize], bit: usize) -> Result<RadixKey, AbiError> {
        let mut raw = (bit as u64) & (GEOMETRY.bitmap_len as u64 - 1);
        for (i, &slot) in path.iter().enumerate() {
            let shift = GEOMETRY.level_shift(i as u32 + 1);
            let slot = (slot as u64) & (TABLE_ENTRIES as u64 - 1);
            if shift >= 64 || (slot << shift) >> shift != slot {
                return Err(AbiError::KeyTooWide { what: "radix path", key: u64::MAX, bits: GEOMETRY.key_bits });
            }
            raw |= slot << shift;
        }
        RadixKey::from_raw(raw)
    }
}

/// A radix table page: child PAs, 0 for an empty slot.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct RadixTable {
    /// Child node PAs (page aligned), indexed by [`RadixKey::table_index`].
    pub slots: [u64; TABLE_ENTRIES],
}

/// A radix leaf page: one bit per key, Linux bitmap order.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct RadixLeaf {
    /// The bitmap as native-endian 64-bit words.
    pub words: [u64; LEAF_WORDS],
}

const _: () = assert!(size_of::<RadixTable>() == PAGE_SIZE);
const _: () = assert!(size_of::<RadixLeaf>() == PAGE_SIZE);

impl RadixLeaf {
    /// Whether `bit` is set.
    pub const fn test(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1u64 << (bit % 64)) != 0
    }

    /// Sets `bit`.
    pub const fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1u64 << (bit % 64);
    }

    /// Clears `bit`.
    pub const fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1u64 << (bit % 64));
    }
}

impl RadixTable {
    /// Validates the child PA in slot `index`: it must be page aligned
    /// (zero means empty and is returned as `None`).
    pub fn child(&self, index: usize) -> Result<Option<PhysAddr>, AbiError> {
        let raw = self.slots[index % TABLE_ENTRIES];
        if raw == 0 {
            return Ok(None);
        }
        PhysAddr::new(raw).require_aligned("radix table slot", 1 << PAGE_SHIFT).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn o(n: u64) -> Order {
        Order::new(n, "test").unwrap()
    }

    // ABI.md section 2, worked examples (4 KiB pages).
    #[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
    #[test]
    fn worked_examples() {
        let cases: [(u64, u64, u64, [usize; 5], usize); 3] = [
            (0x1_0000_0000, 0, 0x0010_0000_0010_0000, [2, 0, 0, 0, 32], 0),
            (0x4000_0000, 9, 0x0000_0800_0000_0200, [0, 2, 0, 0, 0], 512),
            (0x0, 0, 0x0010_0000_0000_0000, [2, 0, 0, 0, 0], 0),
        ];
        for (pa, order, key, levels, bit) in cases {
            let k = RadixKey::encode(PhysAddr::new(pa), o(order)).unwrap();
            assert_eq!(k.as_u64(), key, "key of {pa:#x}/{order}");
            for (i, want) in levels.iter().enumerate() {
                let level = 5 - i as u32;
                assert_eq!(k.table_index(level), *want, "L{level} of {pa:#x}");
            }
            assert_eq!(k.bitmap_index(), bit);
            assert_eq!(k.decode(), (PhysAddr::new(pa), o(order)));
            let path: [usize; 5] = core::array::from_fn(|l| k.table_index(l as u32 + 1));
            assert_eq!(RadixKey::from_path(&path, bit).unwrap(), k);
        }
    }

    #[test]
    fn key_width_rule() {
        let widest = (1u64 << GEOMETRY.key_bits) - 1;
        assert!(RadixKey::from_raw(widest).is_ok());
        assert_eq!(
            RadixKey::from_raw(widest + 1),
            Err(AbiError::KeyTooWide { what: "radix key", key: widest + 1, bits: GEOMETRY.key_bits })
        );
        assert!(RadixKey::from_raw(u64::MAX).is_err());
        assert_eq!(RadixKey::from_raw(0), Err(AbiError::ZeroKey { what: "radix key" }));
        // Key 1 is the single block of the largest order at PA 0.
        assert_eq!(RadixKey::from_raw(1).unwrap().decode(), (PhysAddr::NULL, Order::MAX));
    }

    #[test]
    fn misaligned_pa_rejected() {
        let e = RadixKey::encode(PhysAddr::new(0x1000), o(1)).unwrap_err();
        assert!(matches!(e, AbiError::Misaligned { .. }));
    }

    #[test]
    fn leaf_bits_follow_linux_bitmap_order() {
        let mut leaf = RadixLeaf::new_zeroed();
        leaf.set(0);
        leaf.set(65);
        assert_eq!(leaf.words[0], 1);
        assert_eq!(leaf.words[1], 2);
        // On little-endian the bit is byte n / 8, bit n % 8.
        #[cfg(target_endian = "little")]
        assert_eq!(leaf.as_bytes()[8], 2);
        assert!(leaf.test(65));
        leaf.clear(65);
        assert!(!leaf.test(65));
    }

    #[test]
    fn table_child_rejects_misaligned() {
        let mut t = RadixTable::new_zeroed();
        t.slots[3] = 0x1234;
        t.slots[4] = 0x2000 << 4;
        assert!(t.child(3).is_err());
        assert_eq!(t.child(4).unwrap(), Some(PhysAddr::new(0x20000)));
        assert_eq!(t.child(0).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn encode_decode_round_trip(frame in 0u64..(1u64 << (64 - PAGE_SHIFT)), order in 0u64..=(GEOMETRY.max_key_order as u64)) {
            let order = o(order);
            let pa = PhysAddr::new(if order.byte_shift() >= 64 { 0 } else { (frame << PAGE_SHIFT) & !((1u64 << order.byte_shift()) - 1) });
            let key = RadixKey::encode(pa, order).unwrap();
            proptest::prop_assert_eq!(key.decode(), (pa, order));
            proptest::prop_assert_eq!(RadixKey::from_raw(key.as_u64()).unwrap(), key);
            let path: [usize; 8] = core::array::from_fn(|l| if (l as u32) < GEOMETRY.depth - 1 { key.table_index(l as u32 + 1) } else { 0 });
            proptest::prop_assert_eq!(RadixKey::from_path(&path[..GEOMETRY.depth as usize - 1], key.bitmap_index()).unwrap(), key);
        }

        #[test]
        fn keys_order_larger_orders_first(a in 0u64..(1u64 << 40), b in 0u64..(1u64 << 40), oa in 0u64..20, ob in 0u64..20) {
            let (oa, ob) = (o(oa), o(ob));
            let pa = PhysAddr::new((a << PAGE_SHIFT) & !((1u64 << oa.byte_shift()) - 1));
            let pb = PhysAddr::new((b << PAGE_SHIFT) & !((1u64 << ob.byte_shift()) - 1));
            let ka = RadixKey::encode(pa, oa).unwrap();
            let kb = RadixKey::encode(pb, ob).unwrap();
            if oa > ob { proptest::prop_assert!(ka < kb); }
            if oa == ob { proptest::prop_assert_eq!(ka.cmp(&kb), pa.cmp(&pb)); }
        }

        #[test]
        fn any_raw_key_is_either_valid_or_rejected(raw: u64) {
            match RadixKey::from_raw(raw) {
                Ok(k) => {
                    let (pa, order) = k.decode();
                    proptest::prop_assert_eq!(RadixKey::encode(pa, order).unwrap(), k);
                }
                Err(e) => {
                    let expected = raw == 0 || matches!(e, AbiError::KeyTooWide { .. });
                    proptest::prop_assert!(expected);
                }
            }
        }
    }
}
