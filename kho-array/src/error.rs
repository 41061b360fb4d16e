//! Errors of arrays: misuse of the writer, the platform refusing something,
//! and what a restore found wrong, named by page, run and field.

use core::fmt;

use kho_abi::array::LayoutFault;
use kho_abi::chain::ChainFault;
use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};

/// The field of the format that held a bad value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// Descriptor `magic`.
    Magic,
    /// Descriptor `version`.
    Version,
    /// Descriptor `reserved`.
    Reserved,
    /// Descriptor `first`: the link to page 0.
    First,
    /// Page header `next` of the page before the one named: the link to it.
    Next,
    /// Page header `start`.
    Start,
    /// Page header `layout`.
    Layout,
    /// A run descriptor's `count - 1`.
    Count,
    /// A run descriptor's `skip`.
    Skip,
    /// An entry of a run.
    Entry,
    /// A word between the last entry and the run descriptors.
    Free,
    /// The bits after the last run descriptor in its word.
    Padding,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Magic => "magic",
            Field::Version => "version",
            Field::Reserved => "reserved",
            Field::First => "first",
            Field::Next => "next",
            Field::Start => "start",
            Field::Layout => "layout",
            Field::Count => "count",
            Field::Skip => "skip",
            Field::Entry => "entry",
            Field::Free => "free word",
            Field::Padding => "descriptor padding",
        })
    }
}

/// What was wrong with a page of an incoming chain, or with the link to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageFault {
    /// The link to the page failed a check of the chain walker
    /// ([`kho_abi::chain`]): too many pages, misaligned, not RAM, a cycle,
    /// or not claimable. Its kind is the walker's (`chain_*`).
    #[error(transparent)]
    Link(ChainFault),
    /// The page's `layout` word is malformed.
    #[error("layout {raw:#x}: {fault}")]
    Layout {
        /// The word found.
        raw: u64,
        /// What is wrong with it.
        fault: LayoutFault,
    },
    /// The page's `start` is not above the previous page's last position.
    #[error("start {start:#x} is below {min:#x}, past the previous page's last position")]
    NotAscending {
        /// The page's `start`.
        start: u64,
        /// The lowest start allowed: the previous page's last position + 1.
        min: u64,
    },
    /// The previous page's last position is `u64::MAX`: no page may follow.
    #[error("the previous page ends at u64::MAX")]
    AfterMax,
}

/// What was wrong with one run of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunFault {
    /// The run's entries reach into the run descriptors.
    #[error("entries end at word {end}, past {limit}, where the descriptors start")]
    Overruns {
        /// The word index one past the run's last entry.
        end: usize,
        /// The lowest descriptor word.
        limit: usize,
    },
    /// The run's positions would pass `u64::MAX`.
    #[error("positions pass u64::MAX")]
    Overflow,
    /// An entry of 0 inside a run (holes are skipped, never stored).
    #[error("entry {index} is 0")]
    ZeroEntry {
        /// Index of the entry in its run.
        index: u16,
    },
    /// An entry that is neither a tagged value nor an aligned pointer.
    #[error("entry {index} is malformed: {raw:#x}")]
    BadEntry {
        /// Index of the entry in its run.
        index: u16,
        /// The word found.
        raw: u64,
    },
    /// Non-zero bits where the page must be zero: a free word, or the
    /// padding after the last descriptor.
    #[error("non-zero {raw:#x} where the page must be zero")]
    NotZero {
        /// The word found (for padding: the padding bits, shifted down).
        raw: u64,
    },
}

/// What the array asked of the platform when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Allocating a page.
    Alloc,
    /// Preserving a page.
    Preserve,
    /// Unpreserving a page.
    Unpreserve,
    /// Reading or writing a page of the array.
    Access,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Alloc => "allocating",
            Op::Preserve => "preserving",
            Op::Unpreserve => "unpreserving",
            Op::Access => "accessing",
        })
    }
}

/// Errors of [`KhoArray`](crate::KhoArray) and its writer, reader and
/// restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// The descriptor has a bad magic, version or reserved field.
    #[error("descriptor {field}: invalid value {value:#x}")]
    Descriptor {
        /// The field.
        field: Field,
        /// The value found.
        value: u64,
    },
    /// A page of an incoming chain, or the link to it, is bad.
    #[error("page {page} at {pa}, {field}: {fault}")]
    Page {
        /// Index of the page in the chain (0 = the descriptor's `first`).
        page: u64,
        /// The page's PA, as linked.
        pa: PhysAddr,
        /// The field holding the bad value.
        field: Field,
        /// What was wrong.
        fault: PageFault,
    },
    /// A run of an incoming page is bad.
    #[error("page {page} at {pa}, run {run} at word {word}, {field}: {fault}")]
    Run {
        /// Index of the page in the chain.
        page: u64,
        /// The page's PA.
        pa: PhysAddr,
        /// Index of the run in its page (for the free words and padding
        /// checked after the last run: the number of runs).
        run: u64,
        /// Word index in the page: of the run's descriptor, or of the
        /// non-zero word.
        word: usize,
        /// The field holding the bad value.
        field: Field,
        /// What was wrong.
        fault: RunFault,
    },
    /// The writer was asked for a position at or below the last one.
    #[error("position {pos:#x} is not above the last position {last:#x}")]
    NotAscending {
        /// The position asked for.
        pos: u64,
        /// The array's last position.
        last: u64,
    },
    /// The writer has written at `u64::MAX`: no position is left.
    #[error("no position after u64::MAX")]
    PositionOverflow,
    /// A raw entry that is neither a tagged value nor a non-zero 8-byte
    /// aligned pointer.
    #[error("entry {raw:#x} is neither a tagged value nor an aligned pointer")]
    InvalidEntry {
        /// The raw word.
        raw: u64,
    },
    /// A value above `i64::MAX`, which the tag cannot hold.
    #[error("value {value:#x} is above i64::MAX")]
    ValueTooLarge {
        /// The value.
        value: u64,
    },
    /// The platform failed an allocation, preservation or memory access.
    #[error("{op} page {pa}: {source}")]
    Platform {
        /// What was asked.
        op: Op,
        /// The page ([`PhysAddr::NULL`] for an allocation).
        pa: PhysAddr,
        /// The platform's error.
        source: AbiError,
    },
    /// [`preserve`](crate::KhoArray::preserve) of an array already
    /// preserved.
    #[error("the array is already preserved")]
    AlreadyPreserved,
    /// [`unpreserve`](crate::KhoArray::unpreserve) of an array not
    /// preserved.
    #[error("the array is not preserved")]
    NotPreserved,
}

impl ArrayError {
    /// A platform error about page `pa`.
    pub(crate) const fn platform(op: Op, pa: PhysAddr, source: AbiError) -> Self {
        ArrayError::Platform { op, pa, source }
    }
}

impl ToErrno for ArrayError {
    fn errno(&self) -> Errno {
        match self {
            ArrayError::Descriptor { field: Field::Version, .. } => Errno::OpNotSupp,
            ArrayError::Page { fault: PageFault::Link(ChainFault::NotClaimable(e)), .. } => e.errno(),
            ArrayError::Platform { source, .. } => source.errno(),
            ArrayError::PositionOverflow | ArrayError::ValueTooLarge { .. } => Errno::Range,
            ArrayError::AlreadyPreserved => Errno::Exist,
            ArrayError::NotPreserved => Errno::NoEnt,
            ArrayError::Descriptor { .. }
            | ArrayError::Page { .. }
            | ArrayError::Run { .. }
            | ArrayError::NotAscending { .. }
            | ArrayError::InvalidEntry { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers and logs: they do not change
/// when a message is reworded, and are never Rust `Debug` text.
impl ArrayError {
    /// The variant's stable name; for a bad page or run, its fault's
    /// (`"chain_cycle"`, `"run_zero_entry"`, ...); for a platform error,
    /// [`AbiError::kind`].
    pub const fn kind(&self) -> &'static str {
        match self {
            ArrayError::Descriptor { .. } => "descriptor",
            ArrayError::Page { fault, .. } => fault.kind(),
            ArrayError::Run { fault, .. } => fault.kind(),
            ArrayError::NotAscending { .. } => "not_ascending",
            ArrayError::PositionOverflow => "position_overflow",
            ArrayError::InvalidEntry { .. } => "invalid_entry",
            ArrayError::ValueTooLarge { .. } => "value_too_large",
            ArrayError::Platform { source, .. } => source.kind(),
            ArrayError::AlreadyPreserved => "already_preserved",
            ArrayError::NotPreserved => "not_preserved",
        }
    }
}

impl PageFault {
    /// The fault's stable name, as [`ArrayError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            PageFault::Link(f) => f.kind(),
            PageFault::Layout { .. } => "page_layout",
            PageFault::NotAscending { .. } => "page_not_ascending",
            PageFault::AfterMax => "page_after_max",
        }
    }
}

impl RunFault {
    /// The fault's stable name, as [`ArrayError::kind`] reports it.
    pub const fn kind(&self) -> &'static str {
        match self {
            RunFault::Overruns { .. } => "run_overruns",
            RunFault::Overflow => "run_overflow",
            RunFault::ZeroEntry { .. } => "run_zero_entry",
            RunFault::BadEntry { .. } => "run_bad_entry",
            RunFault::NotZero { .. } => "run_not_zero",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos() {
        assert_eq!(
            ArrayError::Platform { op: Op::Alloc, pa: PhysAddr::NULL, source: AbiError::NoMemory { order: 0 } }.errno(),
            Errno::NoMem
        );
        let claim = AbiError::NotPreserved { pa: PhysAddr::new(0x1000), order: 0 };
        let e = ArrayError::Page {
            page: 2,
            pa: PhysAddr::new(0x1000),
            field: Field::Next,
            fault: PageFault::Link(ChainFault::NotClaimable(claim)),
        };
        assert_eq!(e.errno(), Errno::NoEnt);
        assert_eq!(ArrayError::Descriptor { field: Field::Version, value: 9 }.errno(), Errno::OpNotSupp);
        assert_eq!(ArrayError::Descriptor { field: Field::Magic, value: 9 }.errno(), Errno::Inval);
        assert_eq!(ArrayError::PositionOverflow.errno(), Errno::Range);
        assert_eq!(ArrayError::AlreadyPreserved.errno(), Errno::Exist);
        let run = ArrayError::Run {
            page: 1,
            pa: PhysAddr::new(0x2000),
            run: 3,
            word: 40,
            field: Field::Entry,
            fault: RunFault::ZeroEntry { index: 2 },
        };
        assert_eq!(run.errno(), Errno::Inval);
    }

    #[test]
    fn messages_name_page_run_and_field() {
        let run = ArrayError::Run {
            page: 1,
            pa: PhysAddr::new(0x2000),
            run: 3,
            word: 40,
            field: Field::Entry,
            fault: RunFault::ZeroEntry { index: 2 },
        };
        assert_eq!(run.to_string(), "page 1 at PA 0x2000, run 3 at word 40, entry: entry 2 is 0");
        let page = ArrayError::Page {
            page: 0,
            pa: PhysAddr::new(0x2010),
            field: Field::First,
            fault: PageFault::Link(ChainFault::Misaligned),
        };
        assert_eq!(page.to_string(), "page 0 at PA 0x2010, first: link is not page aligned");
    }
}
