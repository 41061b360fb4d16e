//! How the next kernel finds a KHO handover.
//!
//! The previous kernel (or a bootloader standing in for it) passes two
//! physical ranges to the next one: the root FDT and the array of scratch
//! areas, together a [`KhoData`]. How they travel depends on the boot
//! protocol:
//!
//! | channel | architectures | module |
//! |---|---|---|
//! | x86 `setup_data` of type `SETUP_KEXEC_KHO` (10) carrying `struct kho_data` | x86 | [`setup_data`] |
//! | `/chosen` properties `linux,kho-fdt` and `linux,kho-scratch` of the boot device tree | arm64 and other device-tree architectures | [`chosen`] |
//! | an EFI configuration table | none in Linux 7.2 | [`efi`] (what is known) |
//!
//! Everything here is `no_std` without `alloc`: a bootloader or an early
//! kernel can call it before it has a heap. Incoming bytes are checked
//! before use and every error names the field at fault.
//!
//! ```
//! use kho_abi::KhoData;
//! use kho_handoff::setup_data;
//!
//! let data = KhoData { fdt_addr: 0x1_0000_0000, fdt_size: 4096, scratch_addr: 0x1_0000_1000, scratch_size: 32 };
//! let mut buf = [0u8; setup_data::SETUP_KHO_LEN];
//! let n = setup_data::write(&data, 0, &mut buf)?;
//! let found = setup_data::read(&buf[..n])?;
//! assert_eq!((found.next, found.data), (0, data));
//! # Ok::<(), kho_handoff::HandoffError>(())
//! ```
#![no_std]
#![deny(unsafe_code)]

pub mod chosen;
pub mod efi;
mod error;
pub mod plan;
pub mod setup_data;
pub mod x86;

pub use error::HandoffError;
pub use kho_abi::KhoData;
pub use plan::PlanError;
