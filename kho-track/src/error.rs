//! Errors of the tracker.

use alloc::string::String;

use kho_abi::chain::ChainError;
use kho_abi::{AbiError, Errno, Order, PhysAddr, ToErrno};

/// What was wrong with a node of an incoming radix tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFault {
    /// A child PA that is not page aligned.
    Misaligned,
    /// A node outside RAM.
    NotRam,
    /// A node reached through a second slot (tables must form a tree).
    Shared,
    /// A non-empty slot whose keys would be wider than the key width.
    KeyTooWide,
    /// A node inside a scratch area, which the next kernel allocates from
    /// before it has walked the tree.
    InScratch,
    /// A node inside a preserved block.
    InPreservedBlock,
    /// A leaf bit whose key is zero (it has no order bit).
    ZeroKey,
}

/// What was wrong with a preserved block of an incoming tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFault {
    /// The block is not entirely RAM.
    NotRam,
    /// Its order is above this kernel's maximum.
    OrderTooLarge,
    /// It overlaps a scratch area.
    InScratch,
    /// It overlaps another preserved block (two owners for one page).
    Overlaps,
}

/// What was wrong with an entry of a `kho-v1` chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Fault {
    /// The same `(order, phys_start)` as an earlier entry.
    Repeated,
    /// Its span (the blocks its bitmap can name) overlaps the span of an
    /// earlier entry of the same order.
    Overlaps,
    /// Its span runs past the end of the address space.
    SpanOverflow,
}

/// What was wrong with a subtree's blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobFault {
    /// The blob's PA is zero.
    ZeroAddress,
    /// PA plus size overflows.
    Overflow,
    /// The blob is not entirely RAM.
    NotRam,
    /// A page of the blob lies in no preserved block (or its block was
    /// already restored).
    NotPreserved,
}

/// Errors of the tracker: preserve and restore, the root FDT and subtrees,
/// and validation of incoming state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// An error of the wire layer or the platform.
    #[error(transparent)]
    Abi(#[from] AbiError),
    /// A range of zero pages.
    #[error("empty range at {pa}")]
    EmptyRange {
        /// Start of the range.
        pa: PhysAddr,
    },
    /// The root FDT does not parse.
    #[error("root FDT at {pa}: {source}")]
    Fdt {
        /// Where the FDT is.
        pa: PhysAddr,
        /// What the parser found.
        source: dtoolkit::error::FdtParseError,
    },
    /// The root FDT's header claims more bytes than `kho_data` gives it.
    #[error("root FDT at {pa}: totalsize {totalsize:#x} above fdt_size {limit:#x}")]
    FdtSize {
        /// Where the FDT is.
        pa: PhysAddr,
        /// The header's `totalsize`.
        totalsize: u64,
        /// The bytes available.
        limit: u64,
    },
    /// The root FDT would not fit in its page.
    #[error("root FDT of {size} bytes does not fit in a page")]
    FdtFull {
        /// The serialized size.
        size: usize,
    },
    /// An FDT token lies outside the structure block the header declares
    /// (`off_dt_struct + size_dt_struct`), although inside `totalsize`.
    #[error("root FDT at {pa}: token at offset {offset:#x} outside the structure block ending at {end:#x}")]
    FdtStruct {
        /// Where the FDT is.
        pa: PhysAddr,
        /// Offset of the token in the FDT.
        offset: u64,
        /// End of the structure block.
        end: u64,
    },
    /// A string property without its terminating NUL.
    #[error("{node}: property {prop:?} is not NUL terminated")]
    Unterminated {
        /// The node (`/` for the root).
        node: &'static str,
        /// The property.
        prop: &'static str,
    },
    /// A property that appears twice in one node.
    #[error("{node}: property {prop:?} repeated")]
    DuplicateProperty {
        /// The node (`/` for the root, else the subtree's name).
        node: String,
        /// The property.
        prop: String,
    },
    /// Two subtrees with one name (the writer refuses this with `EEXIST`).
    #[error("subtree {name:?} appears twice")]
    DuplicateSubtree {
        /// The name.
        name: String,
    },
    /// A required property is missing or has the wrong length.
    #[error("{node}: property {prop:?} missing or not {len} bytes")]
    BadProperty {
        /// The node (`/` for the root).
        node: &'static str,
        /// The property.
        prop: &'static str,
        /// The length required.
        len: usize,
    },
    /// No subtree of that name.
    #[error("no subtree named {name:?}")]
    SubtreeNotFound {
        /// The name asked for.
        name: String,
    },
    /// A subtree of that name exists already.
    #[error("subtree {name:?} exists")]
    SubtreeExists {
        /// The name.
        name: String,
    },
    /// A subtree node lacks a valid property.
    #[error("subtree {name:?}: property {prop:?} missing or not 8 bytes")]
    SubtreeInvalid {
        /// The subtree.
        name: String,
        /// The property.
        prop: &'static str,
    },
    /// A subtree name the FDT cannot hold.
    #[error("invalid subtree name {name:?}")]
    BadName {
        /// The name.
        name: String,
    },
    /// The memory map's first page (the radix tree's root table, or the
    /// first `kho-v1` chunk), as `preserved-memory-map` names it, is
    /// unusable.
    #[error("memory map root {pa} (preserved-memory-map): {fault:?}")]
    MapRoot {
        /// The root page.
        pa: PhysAddr,
        /// What is wrong with it.
        fault: TreeFault,
    },
    /// A link of the `kho-v1` chunk list (the map's first chunk or a
    /// chunk's `next`) failed a check of the chain walker
    /// ([`kho_abi::chain`]): more than
    /// [`V1_MAX_CHUNKS`](crate::legacy::V1_MAX_CHUNKS) chunks, misaligned,
    /// not RAM, a cycle, or a page the map already used. Its kind is the
    /// walker's (`chain_*`).
    #[error("kho-v1 chunk list: {0}")]
    V1Chain(ChainError),
    /// The memory map has more pages than the import's limit
    /// ([`ImportLimits::max_map_pages`](crate::ImportLimits)).
    #[error("memory map of more than {max} pages (reached {pages})")]
    MapTooLarge {
        /// Pages reached when the limit was hit.
        pages: u64,
        /// The limit.
        max: u64,
    },
    /// A malformed entry of a `kho-v1` chunk.
    #[error("kho-v1 chunk {chunk} entry {index} (order {order}, phys_start {phys_start}): {fault:?}")]
    V1Entry {
        /// The chunk page.
        chunk: PhysAddr,
        /// The entry's index in it.
        index: usize,
        /// The chunk's order.
        order: Order,
        /// The entry's `phys_start`.
        phys_start: PhysAddr,
        /// What is wrong.
        fault: V1Fault,
    },
    /// A subtree's blob that would not restore: not entirely RAM or not
    /// entirely preserved over its `blob-size`.
    #[error("subtree {name:?}: blob at {pa} of {size:#x} bytes: {fault:?} at {at}")]
    SubtreeBlob {
        /// The subtree.
        name: String,
        /// The blob's PA.
        pa: PhysAddr,
        /// Its size in bytes (one page for roots without `blob-size`).
        size: u64,
        /// The first address at fault.
        at: PhysAddr,
        /// What is wrong.
        fault: BlobFault,
    },
    /// A malformed radix tree node.
    #[error("radix tree node {node} (level {level}) slot {index}: {fault:?}")]
    Tree {
        /// The node holding the bad slot (or the bad node itself).
        node: PhysAddr,
        /// Its level (0 = leaf).
        level: u32,
        /// The slot index in it.
        index: usize,
        /// What is wrong.
        fault: TreeFault,
    },
    /// A preserved block that the next kernel may not take.
    #[error("preserved block {pa} order {order}: {fault:?}")]
    Block {
        /// The block.
        pa: PhysAddr,
        /// Its order.
        order: Order,
        /// What is wrong.
        fault: BlockFault,
    },
}

impl ToErrno for TrackError {
    fn errno(&self) -> Errno {
        match self {
            TrackError::Abi(e) => e.errno(),
            TrackError::FdtFull { .. } => Errno::NoSpc,
            TrackError::SubtreeNotFound { .. } => Errno::NoEnt,
            TrackError::SubtreeExists { .. } | TrackError::DuplicateSubtree { .. } => Errno::Exist,
            TrackError::MapTooLarge { .. } => Errno::Range,
            TrackError::Tree { fault: TreeFault::KeyTooWide, .. }
            | TrackError::MapRoot { fault: TreeFault::KeyTooWide, .. } => Errno::Range,
            TrackError::Block { fault: BlockFault::OrderTooLarge, .. } => Errno::Range,
            TrackError::Tree {
                fault:
                    TreeFault::Misaligned
                    | TreeFault::NotRam
                    | TreeFault::Shared
                    | TreeFault::InScratch
                    | TreeFault::InPreservedBlock
                    | TreeFault::ZeroKey,
                ..
            }
            | TrackError::MapRoot {
                fault:
                    TreeFault::Misaligned
                    | TreeFault::NotRam
                    | TreeFault::Shared
                    | TreeFault::InScratch
                    | TreeFault::InPreservedBlock
                    | TreeFault::ZeroKey,
                ..
            }
            | TrackError::Block { fault: BlockFault::NotRam | BlockFault::InScratch | BlockFault::Overlaps, .. }
            | TrackError::V1Entry { .. }
            | TrackError::V1Chain(_)
            | TrackError::SubtreeBlob { .. }
            | TrackError::FdtStruct { .. }
            | TrackError::Unterminated { .. }
            | TrackError::DuplicateProperty { .. }
            | TrackError::EmptyRange { .. }
            | TrackError::Fdt { .. }
            | TrackError::FdtSize { .. }
            | TrackError::BadProperty { .. }
            | TrackError::SubtreeInvalid { .. }
            | TrackError::BadName { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers and logs: they do not change
/// when a message is reworded, and are never Rust `Debug` text.
impl TrackError {
    /// The variant's stable name; for a tree or block fault, the fault's
    /// (`"tree_node_shared"`, `"block_overlaps"`, ...); for a wire-layer
    /// error, [`AbiError::kind`].
    pub const fn kind(&self) -> &'static str {
        match self {
            TrackError::Abi(e) => e.kind(),
            TrackError::EmptyRange { .. } => "empty_range",
            TrackError::Fdt { .. } => "fdt_parse",
            TrackError::FdtSize { .. } => "fdt_size",
            TrackError::FdtFull { .. } => "fdt_full",
            TrackError::BadProperty { .. } => "bad_property",
            TrackError::SubtreeNotFound { .. } => "subtree_not_found",
            TrackError::SubtreeExists { .. } => "subtree_exists",
            TrackError::SubtreeInvalid { .. } => "subtree_invalid",
            TrackError::BadName { .. } => "bad_name",
            TrackError::FdtStruct { .. } => "fdt_struct_bounds",
            TrackError::Unterminated { .. } => "unterminated_string",
            TrackError::DuplicateProperty { .. } => "duplicate_property",
            TrackError::DuplicateSubtree { .. } => "duplicate_subtree",
            TrackError::MapRoot { fault, .. } => fault.root_kind(),
            TrackError::MapTooLarge { .. } => "map_too_large",
            TrackError::V1Entry { fault, .. } => fault.kind(),
            TrackError::V1Chain(e) => e.kind(),
            TrackError::SubtreeBlob { fault, .. } => fault.kind(),
            TrackError::Tree { fault, .. } => fault.kind(),
            TrackError::Block { fault, .. } => fault.kind(),
        }
    }
}

impl TreeFault {
    /// The fault's stable name, as [`TrackError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            TreeFault::Misaligned => "tree_node_misaligned",
            TreeFault::NotRam => "tree_node_not_ram",
            TreeFault::Shared => "tree_node_shared",
            TreeFault::KeyTooWide => "tree_key_too_wide",
            TreeFault::InScratch => "tree_node_in_scratch",
            TreeFault::InPreservedBlock => "tree_node_in_preserved_block",
            TreeFault::ZeroKey => "tree_zero_key",
        }
    }
}

impl TreeFault {
    /// The fault's stable name at the map's root page, as
    /// [`TrackError::kind`] reports it for [`TrackError::MapRoot`].
    pub const fn root_kind(&self) -> &'static str {
        match self {
            TreeFault::Misaligned => "map_root_misaligned",
            TreeFault::NotRam => "map_root_not_ram",
            TreeFault::Shared => "map_root_shared",
            TreeFault::KeyTooWide => "map_root_key_too_wide",
            TreeFault::InScratch => "map_root_in_scratch",
            TreeFault::InPreservedBlock => "map_root_in_preserved_block",
            TreeFault::ZeroKey => "map_root_zero_key",
        }
    }
}

impl V1Fault {
    /// The fault's stable name, as [`TrackError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            V1Fault::Repeated => "v1_entry_repeated",
            V1Fault::Overlaps => "v1_entry_overlaps",
            V1Fault::SpanOverflow => "v1_entry_span_overflow",
        }
    }
}

impl BlobFault {
    /// The fault's stable name, as [`TrackError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            BlobFault::ZeroAddress => "blob_zero_address",
            BlobFault::Overflow => "blob_overflow",
            BlobFault::NotRam => "blob_not_ram",
            BlobFault::NotPreserved => "blob_not_preserved",
        }
    }
}

impl BlockFault {
    /// The fault's stable name, as [`TrackError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            BlockFault::NotRam => "block_not_ram",
            BlockFault::OrderTooLarge => "block_order_too_large",
            BlockFault::InScratch => "block_in_scratch",
            BlockFault::Overlaps => "block_overlaps",
        }
    }
}
