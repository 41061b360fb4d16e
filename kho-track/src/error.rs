//! Errors of the tracker.

use alloc::string::String;

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
    /// The walk was stopped by its callback with this value.
    #[error("walk stopped by its callback ({0})")]
    Stopped(i32),
}

impl ToErrno for TrackError {
    fn errno(&self) -> Errno {
        match self {
            TrackError::Abi(e) => e.errno(),
            TrackError::FdtFull { .. } => Errno::NoSpc,
            TrackError::SubtreeNotFound { .. } => Errno::NoEnt,
            TrackError::SubtreeExists { .. } => Errno::Exist,
            TrackError::Tree { fault: TreeFault::KeyTooWide, .. } => Errno::Range,
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
            | TrackError::Block { fault: BlockFault::NotRam | BlockFault::InScratch | BlockFault::Overlaps, .. }
            | TrackError::EmptyRange { .. }
            | TrackError::Fdt { .. }
            | TrackError::FdtSize { .. }
            | TrackError::BadProperty { .. }
            | TrackError::SubtreeInvalid { .. }
            | TrackError::BadName { .. }
            | TrackError::Stopped(_) => Errno::Inval,
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
            TrackError::Tree { fault, .. } => fault.kind(),
            TrackError::Block { fault, .. } => fault.kind(),
            TrackError::Stopped(_) => "stopped",
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
