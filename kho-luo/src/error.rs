//! Errors of the LUO layer: where (blob, session, file, FLB), which field,
//! and what was wrong.

use alloc::string::String;
use core::fmt;

use kho_abi::chain::ChainFault;
use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};
use kho_block::{BlockError, Fault as BlockFault};

use crate::abi::NameFault;

/// What was wrong with a field's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// A name or compatible with no NUL inside its array.
    #[error("not NUL-terminated")]
    Unterminated,
    /// An empty name or compatible.
    #[error("empty")]
    Empty,
    /// A value that must be unique repeats the one at position `first`.
    #[error("same as entry {first}")]
    Duplicate {
        /// Position of the earlier occurrence.
        first: usize,
    },
    /// A count that disagrees with the chain it counts.
    #[error("count {count} but the chain holds {chain}")]
    CountMismatch {
        /// The stored count.
        count: u64,
        /// Entries the chain holds.
        chain: usize,
    },
    /// A size below what the layout needs.
    #[error("{len} bytes, at least {need} needed")]
    TooShort {
        /// The size found.
        len: u64,
        /// The size needed.
        need: u64,
    },
    /// A value out of its range.
    #[error("{value:#x} out of range (at most {max:#x})")]
    OutOfRange {
        /// The value found.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// An address that must be page aligned is not.
    #[error("{0} is not page aligned")]
    Misaligned(PhysAddr),
    /// The memory is not RAM, or not entirely.
    #[error("{0}")]
    NotRam(AbiError),
    /// The platform refused to claim the memory: not preserved as such, or
    /// claimed already.
    #[error("not preserved: {0}")]
    NotPreserved(AbiError),
}

impl From<NameFault> for Fault {
    fn from(f: NameFault) -> Fault {
        match f {
            NameFault::Unterminated => Fault::Unterminated,
            NameFault::Empty => Fault::Empty,
        }
    }
}

/// A session, by position in the session chain and (lossy) name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAt {
    /// Position in the session chain.
    pub index: usize,
    /// The name, as far as it could be read (lossy UTF-8).
    pub name: String,
}

impl fmt::Display for SessionAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {} {:?}", self.index, self.name)
    }
}

/// Errors of the LUO layer. Each maps to a Linux errno through
/// [`ToErrno`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LuoError {
    /// The blob itself: its size, address, RAM or preservation.
    #[error("LUO blob at {pa}, {field}: {fault}")]
    Blob {
        /// Where the blob is.
        pa: PhysAddr,
        /// `"blob-size"`, `"blob address"`.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The blob's compatible is not `"luo-v5"` NUL-padded (the kernel
    /// panics on this: it has no fallback).
    #[error("LUO compatible {found:?}, expected \"luo-v5\"")]
    Compatible {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// The session chain (`luo_ser.sessions_pa` and the blocks after it).
    #[error("session chain: {0}")]
    Sessions(BlockError),
    /// A field of a session entry (`name`, `count`).
    #[error("{at}, field {field}: {fault}")]
    Session {
        /// The session.
        at: SessionAt,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// A session's file chain (`files` and the blocks after it).
    #[error("{at}, file chain: {source}")]
    Files {
        /// The session.
        at: SessionAt,
        /// What the block layer found.
        source: BlockError,
    },
    /// A field of a file entry (`compatible`, `token`).
    #[error("{at}, file {index} (token {token:#x}), field {field}: {fault}")]
    File {
        /// The session.
        at: SessionAt,
        /// Position of the file in the session's chain.
        index: usize,
        /// Its token.
        token: u64,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The FLB region (`flbs_pa`, `pgcnt`, `count`).
    #[error("FLB region at {pa}, field {field}: {fault}")]
    Flbs {
        /// The region's address.
        pa: PhysAddr,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// A field of an FLB entry (`name`).
    #[error("FLB {index} {name:?}, field {field}: {fault}")]
    Flb {
        /// Position of the entry.
        index: usize,
        /// Its name (lossy).
        name: String,
        /// The field.
        field: &'static str,
        /// What was wrong.
        fault: Fault,
    },
    /// The writer was given a bad name, compatible or FLB (empty, too
    /// long, holding a NUL).
    #[error("{what} {value:?}: empty, too long or holding a NUL")]
    BadName {
        /// Which name.
        what: &'static str,
        /// The name (lossy).
        value: String,
    },
    /// The writer was given a session name in use, or a token in use in the
    /// session.
    #[error("{what} {value:?} exists")]
    Exists {
        /// `"session"` or `"token"`.
        what: &'static str,
        /// The value (lossy).
        value: String,
    },
    /// The writer was given a session handle it did not hand out.
    #[error("no session {0}")]
    NoSession(usize),
    /// The FLB region is full.
    #[error("FLB region full ({max} entries)")]
    FlbFull {
        /// Entries the region holds.
        max: usize,
    },
    /// A block set of the writer failed (allocation, preservation).
    #[error(transparent)]
    Block(BlockError),
    /// The platform failed (allocation, preservation, memory access).
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for LuoError {
    fn errno(&self) -> Errno {
        match self {
            LuoError::Block(e) => e.errno(),
            LuoError::Platform(e) => e.errno(),
            LuoError::Exists { .. } => Errno::Exist,
            LuoError::FlbFull { .. } => Errno::NoSpc,
            LuoError::NoSession(_) => Errno::NoEnt,
            LuoError::Blob { .. }
            | LuoError::Compatible { .. }
            | LuoError::Sessions { .. }
            | LuoError::Session { .. }
            | LuoError::Files { .. }
            | LuoError::File { .. }
            | LuoError::Flbs { .. }
            | LuoError::Flb { .. }
            | LuoError::BadName { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers, logs and reports: they do
/// not change when a message is reworded, and are never Rust `Debug` text.
impl LuoError {
    /// The error's stable name, `luo_<variant>`; where the variant carries a
    /// [`Fault`], `luo_<variant>_<fault>` (`"luo_blob_too_short"`,
    /// `"luo_file_duplicate"`, ...).
    ///
    /// A wrapped [`BlockError`] (`Sessions`, `Files`, `Block`) that is a
    /// corrupt chain adds the chain's [`kho_block::Fault`] variant the same
    /// way (`"luo_sessions_cycle"`, `"luo_files_count_zero"`; a chain fault
    /// this version does not know gives `luo_<variant>_chain`); any other
    /// wrapped error gives `luo_<variant>` alone, and its own `kind()`
    /// ([`BlockError::kind`], [`AbiError::kind`]) names the lower fault.
    pub const fn kind(&self) -> &'static str {
        match self {
            LuoError::Blob { fault, .. } => match fault {
                Fault::Unterminated => "luo_blob_unterminated",
                Fault::Empty => "luo_blob_empty",
                Fault::Duplicate { .. } => "luo_blob_duplicate",
                Fault::CountMismatch { .. } => "luo_blob_count_mismatch",
                Fault::TooShort { .. } => "luo_blob_too_short",
                Fault::OutOfRange { .. } => "luo_blob_out_of_range",
                Fault::Misaligned(_) => "luo_blob_misaligned",
                Fault::NotRam(_) => "luo_blob_not_ram",
                Fault::NotPreserved(_) => "luo_blob_not_preserved",
            },
            LuoError::Compatible { .. } => "luo_compatible",
            LuoError::Sessions(e) => match chain_fault(e) {
                None => "luo_sessions",
                Some(f) => match f {
                    BlockFault::Link(ChainFault::Misaligned) => "luo_sessions_misaligned",
                    BlockFault::Link(ChainFault::NotRam(_)) => "luo_sessions_not_ram",
                    BlockFault::Link(ChainFault::NotClaimable(_)) => "luo_sessions_not_preserved",
                    BlockFault::Link(ChainFault::Cycle { .. }) => "luo_sessions_cycle",
                    BlockFault::Link(ChainFault::TooLong { .. }) => "luo_sessions_chain_too_long",
                    BlockFault::Ended => "luo_sessions_ended",
                    BlockFault::CountZero => "luo_sessions_count_zero",
                    BlockFault::CountTooLarge { .. } => "luo_sessions_count_too_large",
                    // `kho_block::Fault` is `#[non_exhaustive]`: a fault added there
                    // later is named by its chain alone.
                    _ => "luo_sessions_chain",
                },
            },
            LuoError::Session { fault, .. } => match fault {
                Fault::Unterminated => "luo_session_unterminated",
                Fault::Empty => "luo_session_empty",
                Fault::Duplicate { .. } => "luo_session_duplicate",
                Fault::CountMismatch { .. } => "luo_session_count_mismatch",
                Fault::TooShort { .. } => "luo_session_too_short",
                Fault::OutOfRange { .. } => "luo_session_out_of_range",
                Fault::Misaligned(_) => "luo_session_misaligned",
                Fault::NotRam(_) => "luo_session_not_ram",
                Fault::NotPreserved(_) => "luo_session_not_preserved",
            },
            LuoError::Files { source, .. } => match chain_fault(source) {
                None => "luo_files",
                Some(f) => match f {
                    BlockFault::Link(ChainFault::Misaligned) => "luo_files_misaligned",
                    BlockFault::Link(ChainFault::NotRam(_)) => "luo_files_not_ram",
                    BlockFault::Link(ChainFault::NotClaimable(_)) => "luo_files_not_preserved",
                    BlockFault::Link(ChainFault::Cycle { .. }) => "luo_files_cycle",
                    BlockFault::Link(ChainFault::TooLong { .. }) => "luo_files_chain_too_long",
                    BlockFault::Ended => "luo_files_ended",
                    BlockFault::CountZero => "luo_files_count_zero",
                    BlockFault::CountTooLarge { .. } => "luo_files_count_too_large",
                    // `kho_block::Fault` is `#[non_exhaustive]`: a fault added there
                    // later is named by its chain alone.
                    _ => "luo_files_chain",
                },
            },
            LuoError::File { fault, .. } => match fault {
                Fault::Unterminated => "luo_file_unterminated",
                Fault::Empty => "luo_file_empty",
                Fault::Duplicate { .. } => "luo_file_duplicate",
                Fault::CountMismatch { .. } => "luo_file_count_mismatch",
                Fault::TooShort { .. } => "luo_file_too_short",
                Fault::OutOfRange { .. } => "luo_file_out_of_range",
                Fault::Misaligned(_) => "luo_file_misaligned",
                Fault::NotRam(_) => "luo_file_not_ram",
                Fault::NotPreserved(_) => "luo_file_not_preserved",
            },
            LuoError::Flbs { fault, .. } => match fault {
                Fault::Unterminated => "luo_flbs_unterminated",
                Fault::Empty => "luo_flbs_empty",
                Fault::Duplicate { .. } => "luo_flbs_duplicate",
                Fault::CountMismatch { .. } => "luo_flbs_count_mismatch",
                Fault::TooShort { .. } => "luo_flbs_too_short",
                Fault::OutOfRange { .. } => "luo_flbs_out_of_range",
                Fault::Misaligned(_) => "luo_flbs_misaligned",
                Fault::NotRam(_) => "luo_flbs_not_ram",
                Fault::NotPreserved(_) => "luo_flbs_not_preserved",
            },
            LuoError::Flb { fault, .. } => match fault {
                Fault::Unterminated => "luo_flb_unterminated",
                Fault::Empty => "luo_flb_empty",
                Fault::Duplicate { .. } => "luo_flb_duplicate",
                Fault::CountMismatch { .. } => "luo_flb_count_mismatch",
                Fault::TooShort { .. } => "luo_flb_too_short",
                Fault::OutOfRange { .. } => "luo_flb_out_of_range",
                Fault::Misaligned(_) => "luo_flb_misaligned",
                Fault::NotRam(_) => "luo_flb_not_ram",
                Fault::NotPreserved(_) => "luo_flb_not_preserved",
            },
            LuoError::BadName { .. } => "luo_bad_name",
            LuoError::Exists { .. } => "luo_exists",
            LuoError::NoSession(_) => "luo_no_session",
            LuoError::FlbFull { .. } => "luo_flb_full",
            LuoError::Block(e) => match chain_fault(e) {
                None => "luo_block",
                Some(f) => match f {
                    BlockFault::Link(ChainFault::Misaligned) => "luo_block_misaligned",
                    BlockFault::Link(ChainFault::NotRam(_)) => "luo_block_not_ram",
                    BlockFault::Link(ChainFault::NotClaimable(_)) => "luo_block_not_preserved",
                    BlockFault::Link(ChainFault::Cycle { .. }) => "luo_block_cycle",
                    BlockFault::Link(ChainFault::TooLong { .. }) => "luo_block_chain_too_long",
                    BlockFault::Ended => "luo_block_ended",
                    BlockFault::CountZero => "luo_block_count_zero",
                    BlockFault::CountTooLarge { .. } => "luo_block_count_too_large",
                    // `kho_block::Fault` is `#[non_exhaustive]`: a fault added there
                    // later is named by its chain alone.
                    _ => "luo_block_chain",
                },
            },
            LuoError::Platform(_) => "luo_platform",
        }
    }
}

/// The fault of a corrupt chain, if `e` is one.
const fn chain_fault(e: &BlockError) -> Option<&BlockFault> {
    // `BlockError` is `#[non_exhaustive]`: a wildcard is required.
    match e {
        BlockError::Chain(c) => Some(&c.fault),
        _ => None,
    }
}

impl Fault {
    /// The fault's stable name, `luo_<fault>` (`"luo_too_short"`,
    /// `"luo_not_ram"`, ...); [`LuoError::kind`] puts the `<fault>` part
    /// after the error's variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            Fault::Unterminated => "luo_unterminated",
            Fault::Empty => "luo_empty",
            Fault::Duplicate { .. } => "luo_duplicate",
            Fault::CountMismatch { .. } => "luo_count_mismatch",
            Fault::TooShort { .. } => "luo_too_short",
            Fault::OutOfRange { .. } => "luo_out_of_range",
            Fault::Misaligned(_) => "luo_misaligned",
            Fault::NotRam(_) => "luo_not_ram",
            Fault::NotPreserved(_) => "luo_not_preserved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kho_block::{ChainError, Field};

    #[test]
    fn kinds_are_distinct_snake_case_and_join_the_fault() {
        let pa = PhysAddr::new(0x1000);
        let at = SessionAt { index: 0, name: String::from("s") };
        let chain = |fault| BlockError::Chain(ChainError { index: 0, pa, field: Field::Head, fault });
        let abi = AbiError::NotRam { pa, len: 1 };
        let errors = [
            LuoError::Blob { pa, field: "blob-size", fault: Fault::TooShort { len: 1, need: 2 } },
            LuoError::Blob { pa, field: "blob address", fault: Fault::NotRam(abi) },
            LuoError::Compatible { found: [0; 8] },
            LuoError::Sessions(chain(BlockFault::Link(ChainFault::Cycle { first: 0 }))),
            LuoError::Sessions(BlockError::EntrySize { size: 0, max: 1 }),
            LuoError::Session { at: at.clone(), field: "name", fault: Fault::Empty },
            LuoError::Files { at: at.clone(), source: chain(BlockFault::CountZero) },
            LuoError::File { at, index: 0, token: 1, field: "token", fault: Fault::Duplicate { first: 0 } },
            LuoError::Flbs { pa, field: "pgcnt", fault: Fault::Misaligned(pa) },
            LuoError::Flb { index: 0, name: String::new(), field: "name", fault: Fault::Unterminated },
            LuoError::BadName { what: "session", value: String::new() },
            LuoError::Exists { what: "token", value: String::new() },
            LuoError::NoSession(3),
            LuoError::FlbFull { max: 1 },
            LuoError::Block(BlockError::NoSpace { len: 0, capacity: 0, wanted: 1 }),
            LuoError::Platform(abi),
        ];
        let kinds: Vec<&str> = errors.iter().map(LuoError::kind).collect();
        assert_eq!(kho_abi::error::first_bad_kind(&kinds, "luo_"), None);
        assert_eq!(kinds[0], "luo_blob_too_short");
        assert_eq!(kinds[1], "luo_blob_not_ram");
        assert_eq!(kinds[2], "luo_compatible");
        assert_eq!(kinds[3], "luo_sessions_cycle");
        assert_eq!(kinds[4], "luo_sessions");
        assert_eq!(kinds[6], "luo_files_count_zero");
        assert_eq!(kinds[7], "luo_file_duplicate");
        assert_eq!(kinds[15], "luo_platform");
        // The joined name is the error's followed by the fault's.
        let fault = Fault::TooShort { len: 1, need: 2 }.kind();
        assert_eq!(fault, "luo_too_short");
        assert!(kinds[0].ends_with(&fault["luo_".len()..]));
    }
}
