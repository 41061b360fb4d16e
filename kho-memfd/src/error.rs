//! Errors of the memfd layer: the descriptor field, or the folio entry
//! and its field, and what was wrong.

use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};
use kho_vmalloc::VmallocError;

/// What was wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// An address that must be page aligned is not.
    #[error("not page aligned")]
    Misaligned,
    /// Memory that is not RAM (or not entirely).
    #[error("{0}")]
    NotRam(AbiError),
    /// Memory the platform would not let be claimed: not preserved (at any
    /// order up to the platform's largest), or claimed already (listed
    /// twice).
    #[error("not preserved, or listed twice")]
    NotPreserved,
    /// Bits this version does not define.
    #[error("unknown bits {bits:#x}")]
    UnknownBits {
        /// The bits outside the known set.
        bits: u64,
    },
    /// A value above its bound.
    #[error("{value:#x} above {max:#x}")]
    OutOfRange {
        /// The value found.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A folio index at or below the end of the folio before it.
    #[error("index {index:#x} not above the previous folio's last page {prev_last:#x}")]
    NotAscending {
        /// The index found.
        index: u64,
        /// The last page the previous folio covers.
        prev_last: u64,
    },
    /// `nr_folios` disagrees with the pages of the folio list.
    #[error("{nr_folios} folios need {need} list pages, the list has {pages}")]
    ListSize {
        /// The descriptor's `nr_folios`.
        nr_folios: u64,
        /// Pages that many 16-byte entries occupy.
        need: u64,
        /// Pages of the list area.
        pages: u64,
    },
}

/// Errors of the memfd layer. Each maps to a Linux errno through
/// [`ToErrno`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemfdError {
    /// A field of the descriptor (`data` address, `seals`, `flags`,
    /// `nr_folios`, `folios`).
    #[error("memfd descriptor at {pa}, field {field}: {fault}")]
    Descriptor {
        /// Where the descriptor is.
        pa: PhysAddr,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The folio list's vmalloc area (descriptor or chunk chain).
    #[error("memfd descriptor at {pa}, folio list: {source}")]
    List {
        /// Where the memfd descriptor is.
        pa: PhysAddr,
        /// What the vmalloc layer found.
        source: VmallocError,
    },
    /// A folio entry (`pfn`, `flags`, `index`).
    #[error("folio {entry} (pfn {pfn:#x}, index {index:#x}), field {field}: {fault}")]
    Folio {
        /// Position in the folio list.
        entry: u64,
        /// Its pfn.
        pfn: u64,
        /// Its file page index.
        index: u64,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The writer was asked for something the format cannot hold (unknown
    /// seals, folios not ascending, data larger than its folio, a folio
    /// beyond the size).
    #[error("cannot write: {what}")]
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// A read outside the file.
    #[error("offset {offset:#x} beyond the file size {size:#x}")]
    Beyond {
        /// Offset asked for.
        offset: u64,
        /// File size.
        size: u64,
    },
    /// The writer's vmalloc preservation failed.
    #[error(transparent)]
    Vmalloc(VmallocError),
    /// The platform failed (allocation, preservation, memory access).
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for MemfdError {
    fn errno(&self) -> Errno {
        match self {
            MemfdError::Descriptor { fault: Fault::UnknownBits { .. }, .. } | MemfdError::Unsupported { .. } => {
                Errno::OpNotSupp
            }
            MemfdError::Vmalloc(e) => e.errno(),
            MemfdError::Platform(e) => e.errno(),
            _ => Errno::Inval,
        }
    }
}
