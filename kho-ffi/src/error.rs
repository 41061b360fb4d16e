//! Result codes: every export returns `0` or a negative Linux errno.
//!
//! The values are Linux's, written as literals so that cbindgen can put
//! them in the header; a test checks each against [`kho_abi::Errno`].

use core::ffi::{CStr, c_char, c_int};

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

/// A short description of an errno, for messages: `err` may be negative
/// (as the calls return it) or positive. Never NULL: an unknown value
/// gives `"unknown error"`.
///
/// @param err A result of a kho call, or its absolute value.
/// @return A static NUL-terminated string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn kho_strerror(err: c_int) -> *const c_char {
    strerror(err).as_ptr()
}

/// The text of [`kho_strerror`].
pub fn strerror(err: c_int) -> &'static CStr {
    match err.unsigned_abs() {
        0 => c"success",
        2 => c"no such entry (not preserved, already restored, no such subtree)",
        12 => c"out of memory (the platform's page allocator failed)",
        16 => c"busy (a block in a scratch area or across a NUMA boundary)",
        17 => c"already exists",
        22 => c"invalid argument or corrupt incoming state",
        28 => c"no space (buffer too small, capacity used up, root FDT full)",
        34 => c"out of range (order or key too large)",
        95 => c"not supported (unknown flags or format version)",
        131 => c"internal error caught at the panic boundary: destroy the handle",
        _ => c"unknown error",
    }
}

/// Major version of the library (the `kho-ffi` crate's).
pub const KHO_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const KHO_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const KHO_VERSION_PATCH: u32 = 0;

/// The version of the library linked in, as `"MAJOR.MINOR.PATCH"`: compare
/// it with the `KHO_VERSION_*` macros of the header compiled against.
///
/// @return A static NUL-terminated string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn kho_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The version string, NUL-terminated.
const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(v) => v,
    Err(_) => panic!("the package version has no NUL"),
};

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
    fn version_macros_are_the_package_version() {
        let v = format!("{KHO_VERSION_MAJOR}.{KHO_VERSION_MINOR}.{KHO_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        assert_eq!(VERSION.to_str().unwrap(), v);
        // SAFETY: a static NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(kho_version()) }, VERSION);
    }

    #[test]
    fn strerror_knows_every_errno_and_both_signs() {
        for code in [
            KHO_OK,
            KHO_ENOENT,
            KHO_ENOMEM,
            KHO_EBUSY,
            KHO_EEXIST,
            KHO_EINVAL,
            KHO_ENOSPC,
            KHO_ERANGE,
            KHO_EOPNOTSUPP,
            KHO_ENOTRECOVERABLE,
        ] {
            assert_ne!(strerror(code), c"unknown error", "{code}");
            assert_eq!(strerror(code), strerror(-code));
        }
        assert_eq!(strerror(5), c"unknown error");
        assert_eq!(strerror(c_int::MIN), c"unknown error");
        // SAFETY: a static NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(kho_strerror(-22)) }, strerror(22));
    }

    #[test]
    fn results_collapse_to_negative_errno() {
        let e = kho_abi::AbiError::NoMemory { order: 3 };
        assert_eq!(to_c::<kho_abi::AbiError>(Ok(())), 0);
        assert_eq!(to_c(Err(e)), -KHO_ENOMEM);
    }
}
