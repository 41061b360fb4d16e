//! The error of reading or writing a handoff channel.

use kho_abi::{AbiError, Errno, ToErrno};

/// What was wrong with a handoff channel: its bytes, its properties, or
/// the room to write it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandoffError {
    /// A buffer shorter than the layout read from or written to it.
    #[error("{what}: buffer of {have} bytes, need {need}")]
    Short {
        /// The layout.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A `setup_data` entry of another type.
    #[error("setup_data.type: {found}, expected SETUP_KEXEC_KHO ({expected})")]
    WrongType {
        /// The type found.
        found: u32,
        /// `SETUP_KEXEC_KHO`.
        expected: u32,
    },
    /// A field whose value the layout does not allow.
    #[error("{what}: invalid value {value:#x}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// The device tree does not parse.
    #[error("device tree: {0}")]
    Fdt(dtoolkit::error::FdtParseError),
    /// The device tree has no `/chosen` node to read from or write to.
    #[error("device tree has no /chosen node")]
    NoChosen,
    /// One of the two `/chosen` properties is present without the other.
    #[error("/chosen: {missing} is missing while {present} is present")]
    Incomplete {
        /// The property present.
        present: &'static str,
        /// The property missing.
        missing: &'static str,
    },
    /// A `/chosen` property whose length is not `#address-cells` plus
    /// `#size-cells` cells.
    #[error("/chosen {prop}: {len} bytes, expected {expected} ({address_cells} address and {size_cells} size cells)")]
    BadLength {
        /// The property.
        prop: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The length the root's cell counts give.
        expected: usize,
        /// The root's `#address-cells`.
        address_cells: u32,
        /// The root's `#size-cells`.
        size_cells: u32,
    },
    /// A value that does not fit the cells the root declares.
    #[error("{what}: {value:#x} does not fit in {cells} cell(s)")]
    TooWide {
        /// The property.
        what: &'static str,
        /// The value.
        value: u64,
        /// The cells available.
        cells: u32,
    },
    /// The buffer holding the device tree has no room for the properties.
    #[error("device tree buffer of {capacity} bytes, need {requested}")]
    NoRoom {
        /// Bytes the tree would need.
        requested: usize,
        /// Bytes the buffer holds.
        capacity: usize,
    },
    /// A kernel image the loader cannot start.
    #[error("kernel image: {what}")]
    Image {
        /// What is wrong with it.
        what: &'static str,
    },
    /// The handover's own fields do not check out (see
    /// [`KhoData::validate`](kho_abi::KhoData::validate)).
    #[error(transparent)]
    Abi(#[from] AbiError),
}

impl ToErrno for HandoffError {
    fn errno(&self) -> Errno {
        match self {
            HandoffError::NoChosen => Errno::NoEnt,
            HandoffError::NoRoom { .. } => Errno::NoSpc,
            HandoffError::TooWide { .. } => Errno::Range,
            HandoffError::Abi(e) => e.errno(),
            HandoffError::Short { .. }
            | HandoffError::WrongType { .. }
            | HandoffError::InvalidValue { .. }
            | HandoffError::Fdt(_)
            | HandoffError::Image { .. }
            | HandoffError::Incomplete { .. }
            | HandoffError::BadLength { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers and logs.
impl HandoffError {
    /// The variant's stable name; for a wire-layer error,
    /// [`AbiError::kind`].
    pub const fn kind(&self) -> &'static str {
        match self {
            HandoffError::Short { .. } => "short",
            HandoffError::WrongType { .. } => "wrong_type",
            HandoffError::InvalidValue { .. } => "invalid_value",
            HandoffError::Fdt(_) => "fdt_parse",
            HandoffError::NoChosen => "no_chosen",
            HandoffError::Incomplete { .. } => "incomplete",
            HandoffError::BadLength { .. } => "bad_length",
            HandoffError::TooWide { .. } => "too_wide",
            HandoffError::NoRoom { .. } => "no_room",
            HandoffError::Image { .. } => "bad_image",
            HandoffError::Abi(e) => e.kind(),
        }
    }
}
