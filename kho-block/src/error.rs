//! Errors of block sets, and what a restore found wrong with a chain.

use core::fmt;

use kho_abi::chain::{ChainFault, LinkField};
use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};

/// The field of a chain that held a bad value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The head PA the caller passed to restore (it came from the caller's
    /// own preserved data).
    Head,
    /// The `next` link of the block before the one named by the error.
    Next,
    /// The `count` of the block named by the error.
    Count,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Head => "head",
            Field::Next => "next",
            Field::Count => "count",
        })
    }
}

/// What was wrong with one block of an incoming chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The link to the block failed a check of the chain walker
    /// ([`kho_abi::chain`]): too many blocks, misaligned, not RAM, a
    /// cycle, or not claimable. Its kind is the walker's (`chain_*`).
    #[error(transparent)]
    Link(ChainFault),
    /// A `next` of 0 before all the set's entries were read: only a chain
    /// overwritten behind its set's back does this (a restore takes the
    /// length from the chain itself).
    #[error("chain ends before the set's last entry")]
    Ended,
    /// A block with no entries: the kernel never writes one.
    #[error("count is zero")]
    CountZero,
    /// More entries than fit in a block.
    #[error("count {count} above the {max} entries a block holds")]
    CountTooLarge {
        /// The count found.
        count: u64,
        /// Entries per block for the entry size.
        max: usize,
    },
}

/// A corrupt block in a chain: which block, where, which field, and what
/// was wrong.
///
/// `index` is the block's position in the chain (0 = the head) and `pa` its
/// address, that is the value of the link that led to it. For [`Field::Head`]
/// and [`Field::Next`] the link itself is bad (misaligned, outside RAM, not
/// preserved, a cycle, one block too many); for [`Field::Count`] the block's
/// own count is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block {index} at {pa}, field {field}: {fault}")]
pub struct ChainError {
    /// Position of the block in the chain, 0 for the head.
    pub index: usize,
    /// Address of the block (the link value that led to it).
    pub pa: PhysAddr,
    /// The field holding the bad value.
    pub field: Field,
    /// What was wrong.
    pub fault: Fault,
}

impl ChainError {
    /// A link fault found by the chain walker, as a block set reports it.
    pub const fn from_link(e: kho_abi::chain::ChainError) -> ChainError {
        let field = match e.field {
            LinkField::Head => Field::Head,
            LinkField::Next => Field::Next,
        };
        // A block chain is at most `BLOCK_CHAIN_MAX` long.
        ChainError { index: e.index as usize, pa: e.pa, field, fault: Fault::Link(e.fault) }
    }
}

/// Errors of block sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// An entry size of zero or one that leaves no room in a page for a
    /// single entry after the header.
    #[error("entry size {size} not in 1..={max}")]
    EntrySize {
        /// The size asked for.
        size: usize,
        /// The largest size a block can hold (`PAGE_SIZE - 16`).
        max: usize,
    },
    /// A buffer passed as entries whose length is not what the entry size
    /// requires.
    #[error("buffer of {len} bytes for entries of {entry_size} bytes")]
    EntryLength {
        /// The buffer length.
        len: usize,
        /// The set's entry size.
        entry_size: usize,
    },
    /// The writer ran out of the capacity reserved with `grow`.
    #[error("no reserved capacity left: {len} of {capacity} entries used, {wanted} more wanted")]
    NoSpace {
        /// Entries written.
        len: usize,
        /// Entries reserved.
        capacity: usize,
        /// Entries the failed call would have added.
        wanted: usize,
    },
    /// Growing would need more blocks than a restore accepts.
    #[error("{blocks} blocks needed, the chain cap is {max}")]
    ChainFull {
        /// Blocks the requested capacity needs (saturated on overflow).
        blocks: usize,
        /// The cap ([`BLOCK_CHAIN_MAX`](kho_abi::BLOCK_CHAIN_MAX)).
        max: usize,
    },
    /// Shrinking by more than the capacity.
    #[error("cannot shrink {capacity} entries of capacity by {by}")]
    ShrinkTooFar {
        /// The amount asked for.
        by: usize,
        /// The capacity at the time.
        capacity: usize,
    },
    /// A chain that does not check out: found by restore, or by a reader
    /// whose chain was overwritten behind the set's back.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The platform failed: allocation, preservation, or access to memory.
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for BlockError {
    fn errno(&self) -> Errno {
        match self {
            BlockError::NoSpace { .. } | BlockError::ChainFull { .. } => Errno::NoSpc,
            BlockError::Platform(e) => e.errno(),
            BlockError::EntrySize { .. }
            | BlockError::EntryLength { .. }
            | BlockError::ShrinkTooFar { .. }
            | BlockError::Chain(_) => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers and logs: they do not change
/// when a message is reworded, and are never Rust `Debug` text.
impl BlockError {
    /// The variant's stable name; for a corrupt chain, its fault's
    /// (`"chain_cycle"`, `"count_zero"`, ...); for a platform error,
    /// [`AbiError::kind`].
    pub const fn kind(&self) -> &'static str {
        match self {
            BlockError::EntrySize { .. } => "entry_size",
            BlockError::EntryLength { .. } => "entry_length",
            BlockError::NoSpace { .. } => "no_space",
            BlockError::ChainFull { .. } => "chain_full",
            BlockError::ShrinkTooFar { .. } => "shrink_too_far",
            BlockError::Chain(c) => c.fault.kind(),
            BlockError::Platform(e) => e.kind(),
        }
    }
}

impl Fault {
    /// The fault's stable name, as [`BlockError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            Fault::Link(f) => f.kind(),
            Fault::Ended => "chain_ended",
            Fault::CountZero => "count_zero",
            Fault::CountTooLarge { .. } => "count_too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(BlockError::NoSpace { len: 3, capacity: 3, wanted: 1 }.errno(), Errno::NoSpc);
        assert_eq!(BlockError::ChainFull { blocks: 10_001, max: 10_000 }.errno(), Errno::NoSpc);
        assert_eq!(BlockError::Platform(AbiError::NoMemory { order: 0 }).errno(), Errno::NoMem);
        assert_eq!(BlockError::EntrySize { size: 0, max: 4080 }.errno(), Errno::Inval);
        let chain = ChainError {
            index: 2,
            pa: PhysAddr::new(0x1000),
            field: Field::Next,
            fault: Fault::Link(ChainFault::NotClaimable(AbiError::NotPreserved {
                pa: PhysAddr::new(0x1000),
                order: 0,
            })),
        };
        // A chain into unpreserved memory is corrupt input, not a missing
        // object: EINVAL rather than the claim's own ENOENT.
        assert_eq!(BlockError::Chain(chain).errno(), Errno::Inval);
    }

    #[test]
    fn messages_name_block_and_field() {
        let e = BlockError::Chain(ChainError {
            index: 7,
            pa: PhysAddr::new(0x1_2345_6000),
            field: Field::Count,
            fault: Fault::CountTooLarge { count: 64, max: 63 },
        });
        assert_eq!(
            e.to_string(),
            "block 7 at PA 0x123456000, field count: count 64 above the 63 entries a block holds"
        );
    }
}
