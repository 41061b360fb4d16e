//! The error type of the wire layer and the errno mapping shared by all kho
//! crates.

use crate::addr::PhysAddr;

/// Linux errno values that kho errors map to, so the C ABI can return
/// `0` or `-errno` exactly like the kernel API it mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    /// No such entry (`ENOENT`, 2).
    NoEnt = 2,
    /// Out of memory (`ENOMEM`, 12).
    NoMem = 12,
    /// Resource busy (`EBUSY`, 16).
    Busy = 16,
    /// Already exists (`EEXIST`, 17).
    Exist = 17,
    /// Invalid argument or corrupt input (`EINVAL`, 22).
    Inval = 22,
    /// No space left (`ENOSPC`, 28).
    NoSpc = 28,
    /// Value out of range (`ERANGE`, 34).
    Range = 34,
    /// Operation not supported (`EOPNOTSUPP`, 95).
    OpNotSupp = 95,
}

impl Errno {
    /// The positive errno number.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The kernel-style return value: `-errno`.
    pub const fn neg(self) -> i32 {
        -(self as i32)
    }

    /// The Linux name: `"EINVAL"`, `"ENOMEM"`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Errno::NoEnt => "ENOENT",
            Errno::NoMem => "ENOMEM",
            Errno::Busy => "EBUSY",
            Errno::Exist => "EEXIST",
            Errno::Inval => "EINVAL",
            Errno::NoSpc => "ENOSPC",
            Errno::Range => "ERANGE",
            Errno::OpNotSupp => "EOPNOTSUPP",
        }
    }
}

/// Implemented by every kho error type: the errno a C caller sees.
pub trait ToErrno {
    /// The errno this error maps to.
    fn errno(&self) -> Errno;
}

/// Errors of the wire layer: decoding, validation and the platform seam.
///
/// Every variant names the field (`what`) it is about and carries the
/// offending value, so a corrupt handover is reported as "what, and where".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbiError {
    /// A buffer was shorter than the layout read from it.
    #[error("{what}: buffer of {have} bytes, need {need}")]
    Short {
        /// The layout being read.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A magic number did not match.
    #[error("{what}: bad magic {found:#x}, expected {expected:#x}")]
    BadMagic {
        /// The field.
        what: &'static str,
        /// The value found.
        found: u64,
        /// The value required.
        expected: u64,
    },
    /// A version number this build cannot read.
    #[error("{what}: unsupported version {found}")]
    BadVersion {
        /// The field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
    /// A compatible string that this build cannot read.
    #[error("{what}: incompatible, expected {expected:?}")]
    BadCompatible {
        /// Where the compatible string was read.
        what: &'static str,
        /// What this build can read there.
        expected: &'static str,
    },
    /// A malformed composite compatible string or an invalid component.
    #[error("{what}: malformed compatible string at byte {offset}")]
    MalformedCompatible {
        /// Where the string came from.
        what: &'static str,
        /// Byte offset of the problem.
        offset: usize,
    },
    /// An address that must be non-zero was zero.
    #[error("{what}: address is zero")]
    ZeroAddress {
        /// The field.
        what: &'static str,
    },
    /// An address that is not aligned as required.
    #[error("{what}: address {pa} is not aligned to {align:#x}")]
    Misaligned {
        /// The field.
        what: &'static str,
        /// The offending address.
        pa: PhysAddr,
        /// The required alignment in bytes.
        align: u64,
    },
    /// An order above the permitted maximum.
    #[error("{what}: order {order} above the maximum {max}")]
    OrderTooLarge {
        /// The field.
        what: &'static str,
        /// The offending order.
        order: u64,
        /// The largest order permitted.
        max: u32,
    },
    /// A radix key wider than the key width.
    #[error("{what}: key {key:#x} is wider than {bits} bits")]
    KeyTooWide {
        /// Where the key came from.
        what: &'static str,
        /// The offending key.
        key: u64,
        /// The key width of this geometry.
        bits: u32,
    },
    /// A radix key of zero (it carries no order bit).
    #[error("{what}: key is zero")]
    ZeroKey {
        /// Where the key came from.
        what: &'static str,
    },
    /// A count larger than its capacity.
    #[error("{what}: count {count} above capacity {max}")]
    CountTooLarge {
        /// The field.
        what: &'static str,
        /// The offending count.
        count: u64,
        /// The capacity.
        max: u64,
    },
    /// A count, size or value outside what the layout allows.
    #[error("{what}: invalid value {value:#x}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// Flag bits this build does not understand.
    #[error("{what}: unsupported flags {flags:#x}")]
    UnsupportedFlags {
        /// The field.
        what: &'static str,
        /// The offending bits.
        flags: u64,
    },
    /// Arithmetic on an address or size overflowed.
    #[error("{what}: address arithmetic overflows")]
    Overflow {
        /// The computation.
        what: &'static str,
    },
    /// A physical range that is not entirely RAM.
    #[error("{pa}+{len:#x} is not RAM")]
    NotRam {
        /// Start of the range.
        pa: PhysAddr,
        /// Length in bytes.
        len: u64,
    },
    /// The platform could not allocate pages.
    #[error("out of memory allocating order-{order} pages")]
    NoMemory {
        /// The order requested.
        order: u32,
    },
    /// A block that was not preserved at this order, or already claimed.
    #[error("{pa} order {order} is not a preserved, unclaimed block")]
    NotPreserved {
        /// The block.
        pa: PhysAddr,
        /// The order asked for.
        order: u32,
    },
    /// A block that may not be preserved where it is (scratch, NUMA
    /// boundary, outside RAM).
    #[error("{pa} order {order} may not be preserved: {why}")]
    Forbidden {
        /// The block.
        pa: PhysAddr,
        /// Its order.
        order: u32,
        /// The rule it breaks.
        why: &'static str,
    },
    /// An error of a layer above the seam (the tracker behind
    /// [`Preserve`](crate::Preserve) or [`Claim`](crate::Claim)), carried
    /// through it with its stable kind and errno intact.
    #[error("{layer}: {kind}")]
    Layer {
        /// The layer (`"tracker"`).
        layer: &'static str,
        /// The layer's stable kind name.
        kind: &'static str,
        /// The layer's errno.
        errno: Errno,
    },
}

impl ToErrno for AbiError {
    fn errno(&self) -> Errno {
        match self {
            AbiError::OrderTooLarge { .. } | AbiError::KeyTooWide { .. } => Errno::Range,
            AbiError::NoMemory { .. } => Errno::NoMem,
            AbiError::UnsupportedFlags { .. } => Errno::OpNotSupp,
            AbiError::NotPreserved { .. } => Errno::NoEnt,
            AbiError::Forbidden { .. } => Errno::Busy,
            AbiError::Layer { errno, .. } => *errno,
            AbiError::Short { .. }
            | AbiError::BadMagic { .. }
            | AbiError::BadVersion { .. }
            | AbiError::BadCompatible { .. }
            | AbiError::MalformedCompatible { .. }
            | AbiError::ZeroAddress { .. }
            | AbiError::Misaligned { .. }
            | AbiError::ZeroKey { .. }
            | AbiError::CountTooLarge { .. }
            | AbiError::InvalidValue { .. }
            | AbiError::Overflow { .. }
            | AbiError::NotRam { .. } => Errno::Inval,
        }
    }
}

/// Whether `name` has the form every stable kind name takes: non-empty
/// lowercase ASCII letters, digits and single underscores, neither first
/// nor last (`"not_ram"`, `"luo_sessions_cycle"`).
pub fn is_kind_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && !name.ends_with('_')
        && !name.contains("__")
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The first of `kinds` that is not a kind name ([`is_kind_name`]), does
/// not start with `prefix`, or repeats an earlier one; `None` if all are
/// sound. An error type's tests check its variants' names with it.
pub fn first_bad_kind<'a>(kinds: &[&'a str], prefix: &str) -> Option<&'a str> {
    kinds
        .iter()
        .enumerate()
        .find(|&(i, k)| !is_kind_name(k) || !k.starts_with(prefix) || kinds[..i].contains(k))
        .map(|(_, k)| *k)
}

/// Stable names of the variants, for C callers and logs: they do not change
/// when a message is reworded, and are never Rust `Debug` text.
impl AbiError {
    /// The variant's stable name (`"not_ram"`, `"misaligned"`, ...).
    pub const fn kind(&self) -> &'static str {
        match self {
            AbiError::Short { .. } => "short",
            AbiError::BadMagic { .. } => "bad_magic",
            AbiError::BadVersion { .. } => "bad_version",
            AbiError::BadCompatible { .. } => "bad_compatible",
            AbiError::MalformedCompatible { .. } => "malformed_compatible",
            AbiError::ZeroAddress { .. } => "zero_address",
            AbiError::Misaligned { .. } => "misaligned",
            AbiError::OrderTooLarge { .. } => "order_too_large",
            AbiError::KeyTooWide { .. } => "key_too_wide",
            AbiError::ZeroKey { .. } => "zero_key",
            AbiError::CountTooLarge { .. } => "count_too_large",
            AbiError::InvalidValue { .. } => "invalid_value",
            AbiError::UnsupportedFlags { .. } => "unsupported_flags",
            AbiError::Overflow { .. } => "overflow",
            AbiError::NotRam { .. } => "not_ram",
            AbiError::NoMemory { .. } => "no_memory",
            AbiError::NotPreserved { .. } => "not_preserved",
            AbiError::Forbidden { .. } => "forbidden",
            AbiError::Layer { kind, .. } => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_are_linux_ones() {
        assert_eq!(Errno::NoEnt.code(), 2);
        assert_eq!(Errno::NoMem.code(), 12);
        assert_eq!(Errno::Busy.code(), 16);
        assert_eq!(Errno::Exist.code(), 17);
        assert_eq!(Errno::Inval.code(), 22);
        assert_eq!(Errno::NoSpc.code(), 28);
        assert_eq!(Errno::Range.code(), 34);
        assert_eq!(Errno::OpNotSupp.neg(), -95);
    }

    #[test]
    fn kinds_are_distinct_snake_case_names() {
        let pa = PhysAddr::new(0x1000);
        let all = [
            AbiError::Short { what: "x", need: 1, have: 0 },
            AbiError::BadMagic { what: "x", found: 1, expected: 2 },
            AbiError::BadVersion { what: "x", found: 1 },
            AbiError::BadCompatible { what: "x", expected: "y" },
            AbiError::MalformedCompatible { what: "x", offset: 0 },
            AbiError::ZeroAddress { what: "x" },
            AbiError::Misaligned { what: "x", pa, align: 8 },
            AbiError::OrderTooLarge { what: "x", order: 60, max: 52 },
            AbiError::KeyTooWide { what: "x", key: 1, bits: 53 },
            AbiError::ZeroKey { what: "x" },
            AbiError::CountTooLarge { what: "x", count: 2, max: 1 },
            AbiError::InvalidValue { what: "x", value: 1 },
            AbiError::UnsupportedFlags { what: "x", flags: 4 },
            AbiError::Overflow { what: "x" },
            AbiError::NotRam { pa, len: 1 },
            AbiError::NoMemory { order: 0 },
            AbiError::NotPreserved { pa, order: 0 },
            AbiError::Forbidden { pa, order: 0, why: "scratch" },
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.kind().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", a.kind());
            for b in &all[i + 1..] {
                assert_ne!(a.kind(), b.kind());
            }
        }
        assert_eq!(AbiError::NotRam { pa, len: 1 }.kind(), "not_ram");
    }

    #[test]
    fn kind_names_are_checked() {
        assert!(is_kind_name("not_ram") && is_kind_name("a1"));
        for bad in ["", "_x", "x_", "a__b", "NotRam", "not-ram"] {
            assert!(!is_kind_name(bad), "{bad}");
        }
        assert_eq!(first_bad_kind(&["luo_a", "luo_b"], "luo_"), None);
        assert_eq!(first_bad_kind(&["luo_a", "luo_a"], "luo_"), Some("luo_a"));
        assert_eq!(first_bad_kind(&["luo_a", "memfd_b"], "luo_"), Some("memfd_b"));
        assert_eq!(first_bad_kind(&["luo_A"], "luo_"), Some("luo_A"));
    }

    #[test]
    fn a_layer_error_keeps_its_kind_and_errno() {
        let e = AbiError::Layer { layer: "tracker", kind: "subtree_exists", errno: Errno::Exist };
        assert_eq!((e.kind(), e.errno()), ("subtree_exists", Errno::Exist));
    }

    #[test]
    fn mapping() {
        let e = AbiError::KeyTooWide { what: "key", key: 1 << 60, bits: 53 };
        assert_eq!(e.errno(), Errno::Range);
        assert_eq!(AbiError::NoMemory { order: 0 }.errno(), Errno::NoMem);
        assert_eq!(AbiError::ZeroAddress { what: "x" }.errno(), Errno::Inval);
        assert_eq!(AbiError::UnsupportedFlags { what: "x", flags: 4 }.errno(), Errno::OpNotSupp);
    }
}
