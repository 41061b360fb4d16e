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
            _ => Errno::Inval,
        }
    }
}
