//! What a loader needs to start an x86-64 Linux kernel with a handover.
//!
//! A loader running on bare metal or in user space (through `kexec_load`)
//! does three things besides placing the handover's pages:
//!
//! - reads the kernel's boot header out of the bzImage ([`bzimage`]);
//! - fills the zero page, `boot_params`, that the kernel reads first: the
//!   header, the memory map, the command line, the initrd and the
//!   `setup_data` chain holding [`SETUP_KEXEC_KHO`](crate::setup_data::SETUP_KEXEC_KHO)
//!   ([`boot_params`]);
//! - enters the kernel's 64-bit entry point with what the 64-bit boot
//!   protocol requires ([`trampoline`]).
//!
//! Everything is plain bytes at physical addresses chosen by the caller;
//! [`crate::plan`] checks that the choice is safe for the next kernel.

pub mod boot_params;
pub mod bzimage;
pub mod trampoline;

/// Reads a little-endian `u16` at `off`, or `None` past the end.
pub(crate) fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// Reads a little-endian `u32` at `off`, or `None` past the end.
pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Reads a little-endian `u64` at `off`, or `None` past the end.
pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
