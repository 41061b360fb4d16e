//! Linked-block serialization (`block-v1`, the kernel's block ABI of root
//! version `kho-v4`): a chain of pages, each a [`BlockHeader`] followed by
//! `count` entries of a size the user's own compatible string implies.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::AbiError;
use crate::geometry::PAGE_SIZE;

/// Compatible string of the block format.
pub const BLOCK_V1: &str = "block-v1";

/// The kernel's cap on the length of a block chain.
pub const BLOCK_CHAIN_MAX: usize = 10_000;

/// Header at offset 0 of every block page, packed, 16 bytes; entries follow
/// right after it, packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 next`: PA of the next block, 0 = last |
/// | 8 | `u64 count`: entries used in this block |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct BlockHeader {
    /// PA of the next block page, 0 for the last.
    pub next: u64,
    /// Entries used in this block.
    pub count: u64,
}

const _: () = assert!(size_of::<BlockHeader>() == 16);

/// Entries of `entry_size` bytes that fit in one block after its header.
/// Fails with `InvalidValue` for a size of zero or one that leaves no room
/// for a single entry.
pub const fn entries_per_block(entry_size: usize) -> Result<usize, AbiError> {
    let room = PAGE_SIZE - size_of::<BlockHeader>();
    if entry_size == 0 || entry_size > room {
        return Err(AbiError::InvalidValue { what: "block entry size", value: entry_size as u64 });
    }
    Ok(room / entry_size)
}

impl BlockHeader {
    /// Checks `count` of a restored block: non-zero and within `capacity`.
    pub const fn check_count(&self, capacity: usize) -> Result<usize, AbiError> {
        let count = self.count;
        if count == 0 {
            return Err(AbiError::InvalidValue { what: "block header count", value: 0 });
        }
        if count > capacity as u64 {
            return Err(AbiError::CountTooLarge { what: "block header count", count, max: capacity as u64 });
        }
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = BlockHeader { next: 0xdead_b000, count: 51 };
        assert_eq!(&h.as_bytes()[0..8], &0xdead_b000u64.to_ne_bytes());
        assert_eq!(&h.as_bytes()[8..16], &51u64.to_ne_bytes());
    }

    #[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
    #[test]
    fn luo_capacities() {
        assert_eq!(entries_per_block(80), Ok(51));
        assert_eq!(entries_per_block(64), Ok(63));
        assert_eq!(entries_per_block(32), Ok(127));
        assert_eq!(entries_per_block(4080), Ok(1));
    }

    #[test]
    fn entry_size_and_count_rules() {
        assert!(entries_per_block(0).is_err());
        assert!(entries_per_block(PAGE_SIZE - 15).is_err());
        let cap = entries_per_block(64).unwrap();
        assert_eq!(BlockHeader { next: 0, count: cap as u64 }.check_count(cap), Ok(cap));
        assert_eq!(
            BlockHeader { next: 0, count: 0 }.check_count(cap),
            Err(AbiError::InvalidValue { what: "block header count", value: 0 })
        );
        assert_eq!(
            BlockHeader { next: 0, count: cap as u64 + 1 }.check_count(cap),
            Err(AbiError::CountTooLarge { what: "block header count", count: cap as u64 + 1, max: cap as u64 })
        );
    }
}
