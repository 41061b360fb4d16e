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
            MemfdError::Descriptor {
                fault:
                    Fault::Misaligned
                    | Fault::NotRam(_)
                    | Fault::NotPreserved
                    | Fault::OutOfRange { .. }
                    | Fault::NotAscending { .. }
                    | Fault::ListSize { .. },
                ..
            }
            | MemfdError::List { .. }
            | MemfdError::Folio { .. }
            | MemfdError::Beyond { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers, logs and reports: they do
/// not change when a message is reworded, and are never Rust `Debug` text.
impl MemfdError {
    /// The error's stable name, `memfd_<variant>`; where the variant
    /// carries a [`Fault`], `memfd_<variant>_<fault>`
    /// (`"memfd_descriptor_unknown_bits"`, `"memfd_folio_not_ascending"`).
    ///
    /// A wrapped error (`List`, `Vmalloc`, `Platform`) gives
    /// `memfd_<variant>` alone; its own `kind()` ([`VmallocError::kind`],
    /// [`AbiError::kind`]) names the lower fault.
    pub const fn kind(&self) -> &'static str {
        match self {
            MemfdError::Descriptor { fault, .. } => match fault {
                Fault::Misaligned => "memfd_descriptor_misaligned",
                Fault::NotRam(_) => "memfd_descriptor_not_ram",
                Fault::NotPreserved => "memfd_descriptor_not_preserved",
                Fault::UnknownBits { .. } => "memfd_descriptor_unknown_bits",
                Fault::OutOfRange { .. } => "memfd_descriptor_out_of_range",
                Fault::NotAscending { .. } => "memfd_descriptor_not_ascending",
                Fault::ListSize { .. } => "memfd_descriptor_list_size",
            },
            MemfdError::List { .. } => "memfd_list",
            MemfdError::Folio { fault, .. } => match fault {
                Fault::Misaligned => "memfd_folio_misaligned",
                Fault::NotRam(_) => "memfd_folio_not_ram",
                Fault::NotPreserved => "memfd_folio_not_preserved",
                Fault::UnknownBits { .. } => "memfd_folio_unknown_bits",
                Fault::OutOfRange { .. } => "memfd_folio_out_of_range",
                Fault::NotAscending { .. } => "memfd_folio_not_ascending",
                Fault::ListSize { .. } => "memfd_folio_list_size",
            },
            MemfdError::Unsupported { .. } => "memfd_unsupported",
            MemfdError::Beyond { .. } => "memfd_beyond",
            MemfdError::Vmalloc(_) => "memfd_vmalloc",
            MemfdError::Platform(_) => "memfd_platform",
        }
    }
}

impl Fault {
    /// The fault's stable name, `memfd_<fault>` (`"memfd_unknown_bits"`, `"memfd_not_ram"`, ...);
    /// [`MemfdError::kind`] puts the `<fault>` part after the error's variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            Fault::Misaligned => "memfd_misaligned",
            Fault::NotRam(_) => "memfd_not_ram",
            Fault::NotPreserved => "memfd_not_preserved",
            Fault::UnknownBits { .. } => "memfd_unknown_bits",
            Fault::OutOfRange { .. } => "memfd_out_of_range",
            Fault::NotAscending { .. } => "memfd_not_ascending",
            Fault::ListSize { .. } => "memfd_list_size",
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_snake_case_and_join_the_fault() {
        let pa = PhysAddr::new(0x1000);
        let abi = AbiError::NotRam { pa, len: 1 };
        let vm = VmallocError::UnsupportedFlags { flags: 4 };
        let errors = [
            MemfdError::Descriptor { pa, field: "flags", fault: Fault::UnknownBits { bits: 8 } },
            MemfdError::Descriptor { pa, field: "data", fault: Fault::NotRam(abi) },
            MemfdError::List { pa, source: vm },
            MemfdError::Folio {
                entry: 1,
                pfn: 2,
                index: 3,
                field: "index",
                fault: Fault::NotAscending { index: 0, prev_last: 0 },
            },
            MemfdError::Folio { entry: 1, pfn: 2, index: 3, field: "pfn", fault: Fault::NotPreserved },
            MemfdError::Unsupported { what: "seals" },
            MemfdError::Beyond { offset: 2, size: 1 },
            MemfdError::Vmalloc(vm),
            MemfdError::Platform(abi),
        ];
        let kinds = errors.map(|e| e.kind());
        assert_eq!(kho_abi::error::first_bad_kind(&kinds, "memfd_"), None);
        assert_eq!(kinds[0], "memfd_descriptor_unknown_bits");
        assert_eq!(kinds[1], "memfd_descriptor_not_ram");
        assert_eq!(kinds[2], "memfd_list");
        assert_eq!(kinds[3], "memfd_folio_not_ascending");
        assert_eq!(kinds[8], "memfd_platform");
        let faults = [
            Fault::Misaligned,
            Fault::NotRam(abi),
            Fault::NotPreserved,
            Fault::UnknownBits { bits: 1 },
            Fault::OutOfRange { value: 2, max: 1 },
            Fault::NotAscending { index: 0, prev_last: 0 },
            Fault::ListSize { nr_folios: 1, need: 1, pages: 0 },
        ];
        let names = faults.map(|f| f.kind());
        assert_eq!(kho_abi::error::first_bad_kind(&names, "memfd_"), None);
        for f in faults {
            let e = MemfdError::Folio { entry: 0, pfn: 0, index: 0, field: "flags", fault: f };
            assert_eq!(e.kind().strip_prefix("memfd_folio_"), f.kind().strip_prefix("memfd_"));
        }
    }
}
