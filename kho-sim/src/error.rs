//! The error type of the simulator.

use kho_abi::{AbiError, Errno, ToErrno};

/// Errors of the simulated machine: configuration, state, I/O and images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// An operating-system call failed (memfd, mmap, file I/O).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An address or block broke an ABI rule (outside RAM, misaligned, ...).
    #[error(transparent)]
    Abi(#[from] AbiError),
    /// A machine image is corrupt or unsupported: `what` is wrong at file
    /// offset `offset`.
    #[error("machine image: {what} (at file offset {offset:#x})")]
    Image {
        /// What is wrong.
        what: &'static str,
        /// File offset of the offending field or data.
        offset: u64,
    },
    /// A [`MachineConfig`](crate::MachineConfig) that cannot describe a
    /// machine.
    #[error("machine configuration: {what}")]
    Config {
        /// The rule broken.
        what: &'static str,
    },
    /// An operation called in a phase of the machine's life where it makes
    /// no sense (for example `boot_done` on a machine that never kexec'd).
    #[error("machine state: {what}")]
    State {
        /// The rule broken.
        what: &'static str,
    },
}

impl From<rustix::io::Errno> for SimError {
    fn from(e: rustix::io::Errno) -> Self {
        SimError::Io(e.into())
    }
}

impl ToErrno for SimError {
    fn errno(&self) -> Errno {
        match self {
            SimError::Abi(e) => e.errno(),
            SimError::State { .. } => Errno::Busy,
            SimError::Io(_) | SimError::Image { .. } | SimError::Config { .. } => Errno::Inval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_errnos() {
        let e = SimError::Image { what: "bad ELF magic", offset: 0 };
        assert_eq!(e.to_string(), "machine image: bad ELF magic (at file offset 0x0)");
        assert_eq!(e.errno(), Errno::Inval);
        let e = SimError::from(AbiError::NoMemory { order: 3 });
        assert_eq!(e.errno(), Errno::NoMem);
        assert!(matches!(SimError::from(rustix::io::Errno::NOMEM), SimError::Io(_)));
        assert_eq!(SimError::State { what: "x" }.errno(), Errno::Busy);
    }
}
