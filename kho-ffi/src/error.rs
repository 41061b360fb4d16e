//! Result codes: every export returns `0` or a negative Linux errno.
//!
//! The values are Linux's, written as literals so that cbindgen can put
//! them in the header; a test checks each against [`kho_abi::Errno`].

use core::ffi::c_int;

use kho_abi::ToErrno;

/// Success.
pub const KHO_OK: c_int = 0;
/// No such entry: a block that was not preserved (or already restored), a
/// subtree that does not exist.
pub const KHO_ENOENT: c_int = 2;
/// Out of memory: the platform's page allocator failed.
pub const KHO_ENOMEM: c_int = 12;
/// Busy: a block kho may not preserve where it is (scratch area, NUMA
/// boundary).
pub const KHO_EBUSY: c_int = 16;
/// Already exists: a subtree name in use.
pub const KHO_EEXIST: c_int = 17;
/// Invalid argument or corrupt incoming state: NULL pointers, misaligned
/// addresses, sizes that do not fit, stale handles, malformed chains.
pub const KHO_EINVAL: c_int = 22;
/// No space: a caller's buffer is too small, a block set's reserved
/// capacity is used up, the root FDT is full.
pub const KHO_ENOSPC: c_int = 28;
/// Out of range: an order above the platform's maximum.
pub const KHO_ERANGE: c_int = 34;
/// Not supported: unknown flag bits or format versions.
pub const KHO_EOPNOTSUPP: c_int = 95;
/// A bug inside kho was caught at the panic boundary of the hosted build.
/// The handle involved is in an unknown state: only destroy it.
pub const KHO_ENOTRECOVERABLE: c_int = 131;

/// `-EINVAL`, the answer to every argument that fails its checks.
pub(crate) const EINVAL: c_int = -KHO_EINVAL;

/// The kernel-style return value of a kho error: `-errno`.
pub(crate) fn neg_errno<E: ToErrno>(e: &E) -> c_int {
    e.errno().neg()
}

/// Collapses a result to the C convention: `0` or `-errno`.
pub(crate) fn to_c<E: ToErrno>(r: Result<(), E>) -> c_int {
    match r {
        Ok(()) => KHO_OK,
        Err(e) => neg_errno(&e),
    }
}

#[cfg(test)]
mod tests {
    use kho_abi::Errno;

    use super::*;

    #[test]
    fn literals_are_the_linux_values() {
        assert_eq!(KHO_ENOENT, Errno::NoEnt.code());
        assert_eq!(KHO_ENOMEM, Errno::NoMem.code());
        assert_eq!(KHO_EBUSY, Errno::Busy.code());
        assert_eq!(KHO_EEXIST, Errno::Exist.code());
        assert_eq!(KHO_EINVAL, Errno::Inval.code());
        assert_eq!(KHO_ENOSPC, Errno::NoSpc.code());
        assert_eq!(KHO_ERANGE, Errno::Range.code());
        assert_eq!(KHO_EOPNOTSUPP, Errno::OpNotSupp.code());
        assert_eq!(EINVAL, Errno::Inval.neg());
    }

    #[test]
    fn results_collapse_to_negative_errno() {
        let e = kho_abi::AbiError::NoMemory { order: 3 };
        assert_eq!(to_c::<kho_abi::AbiError>(Ok(())), 0);
        assert_eq!(to_c(Err(e)), -KHO_ENOMEM);
    }
}
