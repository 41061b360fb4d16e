//! Errors of preserving, unpreserving and restoring a vmalloc area.
//!
//! Every error about incoming state says where it was found: the chunk (its
//! index in the chain and its PA), the entry inside the chunk, and what was
//! wrong with the value there.

use core::fmt;

use kho_abi::chain::{ChainError, ChainFault};
use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};

/// A chunk page of a chain: its position and its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkAt {
    /// Position in the chain, 0 for the page `kho_vmalloc.first` names.
    pub index: u64,
    /// Physical address of the chunk page.
    pub pa: PhysAddr,
}

impl fmt::Display for ChunkAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chunk {} at {}", self.index, self.pa)
    }
}

/// An entry (`phys[entry]`) of a chunk page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryAt {
    /// The chunk holding the entry.
    pub chunk: ChunkAt,
    /// Index into the chunk's `phys` array.
    pub entry: usize,
}

impl fmt::Display for EntryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, phys[{}]", self.chunk, self.entry)
    }
}

/// Which kind of page a tracker operation was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// A block of the area (`2^order` pages).
    Block,
    /// A chunk page of the chain (order 0).
    Chunk,
}

impl fmt::Display for PageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageKind::Block => "block",
            PageKind::Chunk => "chunk",
        })
    }
}

/// Errors of this crate. Each maps to a Linux errno through [`ToErrno`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VmallocError {
    /// Preserve was asked for flag bits other than `ALLOC` and `HUGE_VMAP`
    /// (`EOPNOTSUPP`).
    #[error("vmalloc flags {flags:#x}: bits other than ALLOC and HUGE_VMAP are not supported")]
    UnsupportedFlags {
        /// The flags asked for.
        flags: u16,
    },
    /// Preserve was asked for an order above the platform's maximum
    /// (`ERANGE`).
    #[error("block order {order} above the platform maximum {max}")]
    OrderTooLarge {
        /// The order asked for.
        order: u32,
        /// The platform's largest order.
        max: u32,
    },
    /// A block handed to preserve is zero (which the chunk format cannot
    /// store) or misaligned for the order (`EINVAL`).
    #[error("block {index} at {pa}: {source}")]
    BadBlock {
        /// Position of the block in the area.
        index: u64,
        /// Its address.
        pa: PhysAddr,
        /// What is wrong with it.
        source: AbiError,
    },
    /// The area would hold more pages than `kho_vmalloc.total_pages` (a
    /// `u32`) can count (`ERANGE`).
    #[error("{blocks} blocks of order {order} do not fit a u32 page count")]
    TooManyPages {
        /// Blocks handed so far, the one that overflowed included.
        blocks: u64,
        /// Their order.
        order: u32,
    },
    /// The platform could not allocate a chunk page (`ENOMEM`).
    #[error("allocating chunk {chunk}: {source}")]
    NoMemory {
        /// Index the chunk would have had in the chain.
        chunk: u64,
        /// The allocator's error.
        source: AbiError,
    },
    /// The tracker refused to preserve a block or a chunk page (its errno).
    #[error("preserving {kind} {index} at {pa}: {source}")]
    PreserveFailed {
        /// Block or chunk.
        kind: PageKind,
        /// Position of the block in the area, or of the chunk in the chain.
        index: u64,
        /// Its address.
        pa: PhysAddr,
        /// The tracker's error.
        source: AbiError,
    },
    /// The tracker refused to unpreserve a block or chunk page (its errno).
    /// Unpreserve carries on with the rest and reports the first failure.
    #[error("unpreserving {kind} at {pa}: {source}")]
    UnpreserveFailed {
        /// Block or chunk.
        kind: PageKind,
        /// Its address.
        pa: PhysAddr,
        /// The tracker's error.
        source: AbiError,
    },
    /// The descriptor itself is invalid: unknown flags (`EOPNOTSUPP`), an
    /// order above the platform maximum (`ERANGE`), a misaligned `first`, or
    /// a `total_pages` that is not a whole number of blocks or disagrees
    /// with `first` (`EINVAL`). The inner error names the field.
    #[error("kho_vmalloc descriptor: {0}")]
    Descriptor(AbiError),
    /// A chunk link (`kho_vmalloc.first` or a chunk's `next`) failed a
    /// check of the chain walker ([`kho_abi::chain`]): misaligned, not RAM,
    /// not claimable (`ENOENT`), a cycle, or more chunks than `total_pages`
    /// can need. Its kind is the walker's (`chain_*`).
    #[error("chunk chain: {0}")]
    Chain(ChainError),
    /// A chunk page, or the chain the caller's own descriptor names when
    /// unpreserving, could not be read or written (`EINVAL`).
    #[error("{at}: {source}")]
    ChunkNotRam {
        /// The chunk.
        at: ChunkAt,
        /// The platform's refusal.
        source: AbiError,
    },
    /// A zero entry ends the list before `total_pages` are reached
    /// (`EINVAL`).
    #[error("{at}: zero entry after {restored} of {expected} blocks")]
    ZeroEntry {
        /// The zero entry.
        at: EntryAt,
        /// Blocks seen before it.
        restored: u64,
        /// Blocks `total_pages` requires.
        expected: u64,
    },
    /// More blocks than `total_pages` allows (`EINVAL`).
    #[error("{at}: more than the {expected} blocks total_pages allows")]
    TooManyBlocks {
        /// The first entry in excess.
        at: EntryAt,
        /// Blocks `total_pages` requires.
        expected: u64,
    },
    /// The chain ended with fewer blocks than `total_pages` requires
    /// (`EINVAL`).
    #[error("the chain ends after {restored} of {expected} blocks")]
    TooFewBlocks {
        /// Blocks found.
        restored: u64,
        /// Blocks `total_pages` requires.
        expected: u64,
    },
    /// A block address is not aligned to the area's order (`EINVAL`).
    #[error("{at}: block {pa} is not aligned to order {order}")]
    BlockMisaligned {
        /// The entry.
        at: EntryAt,
        /// The block address found there.
        pa: PhysAddr,
        /// The area's order.
        order: u32,
    },
    /// A block is not RAM (`EINVAL`).
    #[error("{at}: {source}")]
    BlockNotRam {
        /// The entry.
        at: EntryAt,
        /// The platform's refusal.
        source: AbiError,
    },
    /// A block was not preserved at the area's order, or was already
    /// claimed (`ENOENT`).
    #[error("{at}: {source}")]
    BlockNotPreserved {
        /// The entry.
        at: EntryAt,
        /// The tracker's refusal.
        source: AbiError,
    },
    /// The caller's output slice cannot hold every block (`ENOSPC`).
    #[error("output holds {have} blocks, the area has {need}")]
    OutputTooSmall {
        /// Blocks in the area.
        need: u64,
        /// Room in the slice.
        have: usize,
    },
}

impl ToErrno for VmallocError {
    fn errno(&self) -> Errno {
        match self {
            VmallocError::UnsupportedFlags { .. } => Errno::OpNotSupp,
            VmallocError::OrderTooLarge { .. } | VmallocError::TooManyPages { .. } => Errno::Range,
            VmallocError::NoMemory { .. } => Errno::NoMem,
            VmallocError::PreserveFailed { source, .. }
            | VmallocError::UnpreserveFailed { source, .. }
            | VmallocError::Descriptor(source) => source.errno(),
            VmallocError::Chain(ChainError { fault: ChainFault::NotClaimable(_), .. })
            | VmallocError::BlockNotPreserved { .. } => Errno::NoEnt,
            VmallocError::OutputTooSmall { .. } => Errno::NoSpc,
            VmallocError::BadBlock { .. }
            | VmallocError::Chain(_)
            | VmallocError::ChunkNotRam { .. }
            | VmallocError::ZeroEntry { .. }
            | VmallocError::TooManyBlocks { .. }
            | VmallocError::TooFewBlocks { .. }
            | VmallocError::BlockMisaligned { .. }
            | VmallocError::BlockNotRam { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers and logs: they do not change
/// when a message is reworded, and are never Rust `Debug` text.
impl VmallocError {
    /// The variant's stable name (`"chain_cycle"`, `"zero_entry"`, ...); for
    /// a descriptor error, `"descriptor_"` and the wire-layer kind.
    pub const fn kind(&self) -> &'static str {
        match self {
            VmallocError::UnsupportedFlags { .. } => "unsupported_flags",
            VmallocError::OrderTooLarge { .. } => "order_too_large",
            VmallocError::BadBlock { .. } => "bad_block",
            VmallocError::TooManyPages { .. } => "too_many_pages",
            VmallocError::NoMemory { .. } => "no_memory",
            VmallocError::PreserveFailed { .. } => "preserve_failed",
            VmallocError::UnpreserveFailed { .. } => "unpreserve_failed",
            VmallocError::Descriptor(_) => "descriptor",
            VmallocError::Chain(e) => e.kind(),
            VmallocError::ChunkNotRam { .. } => "chunk_not_ram",
            VmallocError::ZeroEntry { .. } => "zero_entry",
            VmallocError::TooManyBlocks { .. } => "too_many_blocks",
            VmallocError::TooFewBlocks { .. } => "too_few_blocks",
            VmallocError::BlockMisaligned { .. } => "block_misaligned",
            VmallocError::BlockNotRam { .. } => "block_not_ram",
            VmallocError::BlockNotPreserved { .. } => "block_not_preserved",
            VmallocError::OutputTooSmall { .. } => "output_too_small",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn errnos_and_messages_name_the_place() {
        let chunk = ChunkAt { index: 2, pa: PhysAddr::new(0x1_0000_3000) };
        let at = EntryAt { chunk, entry: 17 };
        let e = VmallocError::ZeroEntry { at, restored: 1039, expected: 2000 };
        assert_eq!(e.errno(), Errno::Inval);
        assert_eq!(e.to_string(), "chunk 2 at PA 0x100003000, phys[17]: zero entry after 1039 of 2000 blocks");
        let src = AbiError::NotPreserved { pa: PhysAddr::new(0x2000), order: 0 };
        assert_eq!(VmallocError::BlockNotPreserved { at, source: src }.errno(), Errno::NoEnt);
        let link = |fault| {
            VmallocError::Chain(ChainError { index: 2, pa: chunk.pa, field: kho_abi::chain::LinkField::Next, fault })
        };
        assert_eq!(link(ChainFault::NotClaimable(src)).errno(), Errno::NoEnt);
        assert_eq!(link(ChainFault::Cycle { first: 0 }).errno(), Errno::Inval);
        assert_eq!(link(ChainFault::Cycle { first: 0 }).kind(), "chain_cycle");
        assert_eq!(VmallocError::UnsupportedFlags { flags: 4 }.errno(), Errno::OpNotSupp);
        assert_eq!(VmallocError::OrderTooLarge { order: 11, max: 10 }.errno(), Errno::Range);
        assert_eq!(VmallocError::NoMemory { chunk: 0, source: AbiError::NoMemory { order: 0 } }.errno(), Errno::NoMem);
        assert_eq!(VmallocError::OutputTooSmall { need: 3, have: 2 }.errno(), Errno::NoSpc);
        let flags = AbiError::UnsupportedFlags { what: "kho_vmalloc.flags", flags: 8 };
        assert_eq!(VmallocError::Descriptor(flags).errno(), Errno::OpNotSupp);
        let forbidden = AbiError::Forbidden { pa: PhysAddr::new(0x2000), order: 0, why: "scratch" };
        let e = VmallocError::PreserveFailed {
            kind: PageKind::Chunk,
            index: 0,
            pa: PhysAddr::new(0x2000),
            source: forbidden,
        };
        assert_eq!(e.errno(), Errno::Busy);
        assert!(e.to_string().starts_with("preserving chunk 0 at PA 0x2000"));
    }
}
