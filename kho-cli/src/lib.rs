//! `kho`, the command-line inspector of Linux Kexec HandOver state in
//! machine images (ELF64 core files: kho-sim's, or QEMU's
//! `dump-guest-memory`).
//!
//! - [`elf`]: the ELF64 core file's headers and `"KHO"` note.
//! - [`image`]: the image as physical memory for kho (memory-mapped,
//!   copy-on-write, read only as far as kho walks).
//! - [`fdtfile`]: a raw root FDT as input (FDT-level checks only).
//! - [`find`]: where the handover root is (the `"KHO"` note, `--fdt`, or a
//!   scan).
//! - [`choose`]: validating every root a scan found and picking the live
//!   one (a KHO-booted kernel keeps its predecessor's root in memory).
//! - [`load`]: from a path to a validated handover (open, find, choose,
//!   scratch), for the command line and the fuzz target alike.
//! - [`inspect`]: validation through kho-track's incoming side and what
//!   a report needs; [`report`]: the text and JSON reports.
//! - [`payload`]: decoding the subtrees' payloads (LUO and its memfds,
//!   memblock, kexec-metadata, kho_test).
//! - [`scratch`]: finding the scratch areas in memory when the image has
//!   no `kho_data`.
//! - [`extract`]: a preserved memfd's contents written to a file.
//! - [`produce`]: building a handover and its `kexec_load` plan for a
//!   next kernel (`kho kexec`); [`kexec`]: the running Linux system's side
//!   (memory map, RSDP, `kexec_load`, reboot).
//! - [`svg`]: the address-space map.
//! - [`progress`]: progress on stderr for the slow phases.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules.

pub mod choose;
pub mod elf;
pub mod extract;
pub mod fdtfile;
pub mod find;
pub mod image;
pub mod inspect;
pub mod kexec;
pub mod load;
pub mod payload;
pub mod produce;
pub mod progress;
pub mod report;
pub mod scratch;
pub mod svg;
