//! Errors of the self-test layer.

use alloc::string::String;

use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};
use kho_vmalloc::VmallocError;

/// What was wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// Not aligned as it must be.
    #[error("misaligned")]
    Misaligned,
    /// Memory outside RAM.
    #[error("{0}")]
    NotRam(AbiError),
    /// Memory the tracker would not let be claimed.
    #[error("not preserved: {0}")]
    NotPreserved(AbiError),
    /// A value out of its range.
    #[error("{value:#x} above {max:#x}")]
    OutOfRange {
        /// The value.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
}

/// Errors of the self-test layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelftestError {
    /// The blob: size, address, preservation, `totalsize`.
    #[error("kho_test blob at {pa}, {field}: {fault}")]
    Blob {
        /// Where the blob is.
        pa: PhysAddr,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// Not a well-formed FDT.
    #[error("kho_test blob at {pa}: {source}")]
    Fdt {
        /// Where the blob is.
        pa: PhysAddr,
        /// What the parser found.
        source: dtoolkit::error::FdtParseError,
    },
    /// The root compatible is not `kho-test-v1`.
    #[error("kho_test compatible {found:?}, expected \"kho-test-v1\"")]
    Compatible {
        /// What was found (lossy).
        found: String,
    },
    /// The root `magic` is wrong.
    #[error("kho_test magic {found:#x}, expected 0x4b484f21")]
    Magic {
        /// What was found.
        found: u32,
    },
    /// A property (or the `data` node) missing or of the wrong length.
    #[error("kho_test node {node}: property {prop} missing or not {len} bytes")]
    Property {
        /// The node path.
        node: &'static str,
        /// The property (or `data` for the node).
        prop: &'static str,
        /// The length it must have.
        len: usize,
    },
    /// `nr_folios` disagrees with the list's pages.
    #[error("{nr_folios} folios need {need} list pages, the list has {pages}")]
    ListSize {
        /// `nr_folios`.
        nr_folios: u32,
        /// Pages that many u64 entries occupy.
        need: u64,
        /// The list's `total_pages`.
        pages: u64,
    },
    /// The folio list's vmalloc area.
    #[error("folio list: {0}")]
    List(VmallocError),
    /// A folio entry (`order`, `pa`).
    #[error("folio {entry} (entry {raw:#x}), field {field}: {fault}")]
    Folio {
        /// Position in the list.
        entry: u64,
        /// The raw `PA | order` entry.
        raw: u64,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The folios' checksum is not the stored one: the data changed.
    #[error("checksum {computed:#010x} over the folios, {stored:#010x} stored")]
    Checksum {
        /// The stored `csum`.
        stored: u32,
        /// The checksum of the folios as found.
        computed: u32,
    },
    /// The writer cannot represent the request.
    #[error("cannot write: {what}")]
    Unsupported {
        /// Why.
        what: &'static str,
    },
    /// The writer's vmalloc preservation failed.
    #[error(transparent)]
    Vmalloc(VmallocError),
    /// The platform failed.
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for SelftestError {
    fn errno(&self) -> Errno {
        match self {
            SelftestError::Platform(e) => e.errno(),
            SelftestError::Vmalloc(e) => e.errno(),
            SelftestError::Blob { .. }
            | SelftestError::Fdt { .. }
            | SelftestError::Compatible { .. }
            | SelftestError::Magic { .. }
            | SelftestError::Property { .. }
            | SelftestError::ListSize { .. }
            | SelftestError::List { .. }
            | SelftestError::Folio { .. }
            | SelftestError::Checksum { .. }
            | SelftestError::Unsupported { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers, logs and reports: they do
/// not change when a message is reworded, and are never Rust `Debug` text.
impl SelftestError {
    /// The error's stable name, `selftest_<variant>`; where the variant
    /// carries a [`Fault`], `selftest_<variant>_<fault>`
    /// (`"selftest_blob_out_of_range"`, `"selftest_folio_not_ram"`).
    ///
    /// A wrapped error (`Fdt`, `List`, `Vmalloc`, `Platform`) gives
    /// `selftest_<variant>` alone; its own `kind()` where it has one
    /// ([`VmallocError::kind`], [`AbiError::kind`]) names the lower fault.
    pub const fn kind(&self) -> &'static str {
        match self {
            SelftestError::Blob { fault, .. } => match fault {
                Fault::Misaligned => "selftest_blob_misaligned",
                Fault::NotRam(_) => "selftest_blob_not_ram",
                Fault::NotPreserved(_) => "selftest_blob_not_preserved",
                Fault::OutOfRange { .. } => "selftest_blob_out_of_range",
            },
            SelftestError::Fdt { .. } => "selftest_fdt",
            SelftestError::Compatible { .. } => "selftest_compatible",
            SelftestError::Magic { .. } => "selftest_magic",
            SelftestError::Property { .. } => "selftest_property",
            SelftestError::ListSize { .. } => "selftest_list_size",
            SelftestError::List(_) => "selftest_list",
            SelftestError::Folio { fault, .. } => match fault {
                Fault::Misaligned => "selftest_folio_misaligned",
                Fault::NotRam(_) => "selftest_folio_not_ram",
                Fault::NotPreserved(_) => "selftest_folio_not_preserved",
                Fault::OutOfRange { .. } => "selftest_folio_out_of_range",
            },
            SelftestError::Checksum { .. } => "selftest_checksum",
            SelftestError::Unsupported { .. } => "selftest_unsupported",
            SelftestError::Vmalloc(_) => "selftest_vmalloc",
            SelftestError::Platform(_) => "selftest_platform",
        }
    }
}

impl Fault {
    /// The fault's stable name, `selftest_<fault>` (`"selftest_misaligned"`, `"selftest_not_ram"`, ...);
    /// [`SelftestError::kind`] puts the `<fault>` part after the error's variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            Fault::Misaligned => "selftest_misaligned",
            Fault::NotRam(_) => "selftest_not_ram",
            Fault::NotPreserved(_) => "selftest_not_preserved",
            Fault::OutOfRange { .. } => "selftest_out_of_range",
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
            SelftestError::Blob { pa, field: "totalsize", fault: Fault::OutOfRange { value: 2, max: 1 } },
            SelftestError::Blob { pa, field: "blob address", fault: Fault::NotPreserved(abi) },
            SelftestError::Compatible { found: String::new() },
            SelftestError::Magic { found: 0 },
            SelftestError::Property { node: "/", prop: "magic", len: 4 },
            SelftestError::ListSize { nr_folios: 1, need: 1, pages: 0 },
            SelftestError::List(vm),
            SelftestError::Folio { entry: 0, raw: 0, field: "pa", fault: Fault::Misaligned },
            SelftestError::Folio { entry: 0, raw: 0, field: "pa", fault: Fault::NotRam(abi) },
            SelftestError::Checksum { stored: 0, computed: 1 },
            SelftestError::Unsupported { what: "order" },
            SelftestError::Vmalloc(vm),
            SelftestError::Platform(abi),
        ];
        let kinds: alloc::vec::Vec<&str> = errors.iter().map(SelftestError::kind).collect();
        assert_eq!(kho_abi::error::first_bad_kind(&kinds, "selftest_"), None);
        assert_eq!(kinds[0], "selftest_blob_out_of_range");
        assert_eq!(kinds[1], "selftest_blob_not_preserved");
        assert_eq!(kinds[3], "selftest_magic");
        assert_eq!(kinds[7], "selftest_folio_misaligned");
        assert_eq!(kinds[9], "selftest_checksum");
        let faults =
            [Fault::Misaligned, Fault::NotRam(abi), Fault::NotPreserved(abi), Fault::OutOfRange { value: 2, max: 1 }];
        let names = faults.map(|f| f.kind());
        assert_eq!(kho_abi::error::first_bad_kind(&names, "selftest_"), None);
        for f in faults {
            let e = SelftestError::Blob { pa, field: "totalsize", fault: f };
            assert_eq!(e.kind().strip_prefix("selftest_blob_"), f.kind().strip_prefix("selftest_"));
        }
    }
}
