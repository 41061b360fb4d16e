//! Errors of the LUO layer: where (blob, session, file, FLB), which field,
//! and what was wrong.

use alloc::string::String;
use core::fmt;

use kho_abi::{AbiError, Errno, PhysAddr, ToErrno};
use kho_block::BlockError;

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
            _ => Errno::Inval,
        }
    }
}
