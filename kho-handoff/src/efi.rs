//! The EFI configuration table: what is known.
//!
//! UEFI firmware hands an operating system a list of configuration tables,
//! each a `(GUID, pointer)` pair in the system table; Linux uses several
//! (ACPI, SMBIOS, its own `LINUX_EFI_*` tables for the initrd, the TPM
//! event log, the screen info, ...). A KHO table of this kind would let a
//! firmware-resident or EFI-stub loader pass the handover without a device
//! tree or x86 boot parameters.
//!
//! What is known, as of Linux 7.2:
//!
//! - Linux 7.2 defines **no** EFI configuration table for KHO. The next
//!   kernel looks for the handover in exactly two places: x86
//!   `setup_data` of type `SETUP_KEXEC_KHO` ([`setup_data`](crate::setup_data))
//!   and the `/chosen` properties of the device tree
//!   ([`chosen`](crate::chosen)).
//! - An arm64 kernel booted through its EFI stub still receives a device
//!   tree from the stub (on ACPI systems a minimal one holding only
//!   `/chosen`), and `kexec_file_load` on arm64 writes the KHO properties
//!   into the `/chosen` of the tree it builds for the next kernel. So an
//!   EFI boot on arm64 passes KHO through `/chosen`, not through a table.
//! - On x86 an EFI boot still fills `boot_params`, whose `setup_data`
//!   chain carries the KHO entry.
//!
//! What is unknown: whether a table form will be merged, its GUID, and the
//! layout of what it points at (the natural candidate is a `struct
//! kho_data`, 32 bytes, which the other two channels carry too). No
//! public patch or document we could find defines one, so this crate
//! reads and writes none; a loader that must use EFI tables today should
//! place the `/chosen` properties in the device tree it passes instead.
