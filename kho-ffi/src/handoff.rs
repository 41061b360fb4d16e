//! Handing the handover's location to the next kernel: x86 `setup_data`
//! and the device tree's `/chosen` properties (the `kho-handoff` crate).
//!
//! These calls take no handle: a bootloader or a kernel's early boot code
//! uses them before or after the rest of kho. Each fills an optional
//! `struct kho_error` when it fails.

use core::ffi::{c_int, c_void};

use kho_abi::KhoData;
use kho_handoff::{HandoffError, chosen, setup_data};

use crate::error::{KHO_ENOENT, KHO_OK};
use crate::panic::guard;
use crate::ptr::{arg_bytes, arg_bytes_mut, arg_mut, arg_opt_mut, arg_ref};
use crate::record::{Describe, kho_error};
use crate::wire::kho_data;

/// The header of an x86 `setup_data` entry, 16 bytes; KHO's entry has
/// `type` `KHO_SETUP_KEXEC_KHO` and a `struct kho_data` payload
/// (`len` 32).
///
/// | offset | field |
/// |---|---|
/// | 0 | `next`: PA of the next entry, 0 for the last |
/// | 8 | `type` |
/// | 12 | `len`: payload bytes after the header |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_setup_data {
    /// PA of the next entry, 0 for the last.
    pub next: u64,
    /// The payload's type.
    pub r#type: u32,
    /// Payload bytes after the header.
    pub len: u32,
}

const _: () = assert!(size_of::<kho_setup_data>() == size_of::<setup_data::SetupDataHeader>());

/// Bytes of a `setup_data` header.
pub const KHO_SETUP_DATA_HEADER_LEN: usize = 16;
/// Bytes of KHO's whole `setup_data` entry, header and `struct kho_data`.
pub const KHO_SETUP_KHO_LEN: usize = 48;

const _: () = assert!(KHO_SETUP_DATA_HEADER_LEN == setup_data::SETUP_DATA_HEADER_LEN);
const _: () = assert!(KHO_SETUP_KHO_LEN == setup_data::SETUP_KHO_LEN);

impl Describe for HandoffError {
    fn describe(&self, r: &mut kho_error) {
        if let HandoffError::Abi(e) = self {
            return e.describe(r);
        }
        r.set_kind(self.kind());
        match self {
            HandoffError::Short { what, have, .. } => r.set_field(what).set_value(*have as u64),
            HandoffError::WrongType { found, .. } => r.set_field("setup_data.type").set_value(u64::from(*found)),
            HandoffError::InvalidValue { what, value } => r.set_field(what).set_value(*value),
            HandoffError::Incomplete { missing, .. } => r.set_field(missing),
            HandoffError::BadLength { prop, len, .. } => r.set_field(prop).set_value(*len as u64),
            HandoffError::TooWide { what, value, .. } => r.set_field(what).set_value(*value),
            HandoffError::NoRoom { requested, .. } => r.set_value(*requested as u64),
            HandoffError::Fdt(_) | HandoffError::NoChosen => r,
            _ => r,
        };
    }
}

/// Stores the record of `e` in `err` (if given) and returns `-errno`.
fn fail(err: Option<&mut kho_error>, e: &HandoffError) -> c_int {
    let rec = kho_error::of(e);
    if let Some(err) = err {
        *err = rec;
    }
    rec.code
}

/// Writes KHO's x86 `setup_data` entry (a `struct kho_setup_data` header
/// of type `KHO_SETUP_KEXEC_KHO`, then `*data`; KHO_SETUP_KHO_LEN bytes) at
/// `buf`, after checking `*data` as the next kernel will. Link it into the
/// boot parameters' `setup_data` chain.
///
/// @param data The handover's location, as kho_out_finish() returned it.
/// @param next The header's `next`: PA of the following entry, or 0.
/// @param buf Where to write the entry (any alignment).
/// @param len Bytes at `buf`.
/// @param written NULL, or receives the bytes written (KHO_SETUP_KHO_LEN).
/// @param err NULL, or receives the typed error on failure (`code` 0 when
///        there is none).
/// @return 0; -KHO_EINVAL (NULL `data` or `buf`, `len` below
///         KHO_SETUP_KHO_LEN, an invalid `*data`).
///
/// # Safety
///
/// `data` is NULL or readable; `buf` is writable for `len` bytes;
/// `written` and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_setup_data_write(
    data: *const kho_data,
    next: u64,
    buf: *mut c_void,
    len: usize,
    written: *mut usize,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_opt_mut(err)? }.map(|e| {
            *e = kho_error::EMPTY;
            e
        });
        // SAFETY: NULL or writable (caller's promise).
        let written = unsafe { arg_opt_mut(written)? };
        // SAFETY: NULL or readable (caller's promise).
        let data: KhoData = (*unsafe { arg_ref(data)? }).into();
        // SAFETY: writable for `len` bytes (caller's promise).
        let buf = unsafe { arg_bytes_mut(buf, len)? };
        let n = setup_data::write(&data, next, buf).map_err(|e| fail(err, &e))?;
        if let Some(w) = written {
            *w = n;
        }
        Ok(KHO_OK)
    })
}

/// Reads KHO's x86 `setup_data` entry at `buf` (header and payload): the
/// type must be KHO_SETUP_KEXEC_KHO, the payload at least a `struct
/// kho_data`, and the `kho_data` valid.
///
/// @param buf The entry (any alignment).
/// @param len Bytes readable at `buf`.
/// @param data Receives the payload.
/// @param next NULL, or receives the header's `next`.
/// @param err NULL, or receives the typed error on failure (`code` 0 when
///        there is none).
/// @return 0; -KHO_EINVAL (NULL `buf` or `data`, a short buffer, another
///         type, a short `len`, an invalid `kho_data`).
///
/// # Safety
///
/// `buf` is readable for `len` bytes; `data`, `next` and `err`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_setup_data_read(
    buf: *const c_void,
    len: usize,
    data: *mut kho_data,
    next: *mut u64,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_opt_mut(err)? }.map(|e| {
            *e = kho_error::EMPTY;
            e
        });
        // SAFETY: NULL or writable (caller's promise).
        let next = unsafe { arg_opt_mut(next)? };
        // SAFETY: NULL or writable (caller's promise).
        let data = unsafe { arg_mut(data)? };
        // SAFETY: readable for `len` bytes (caller's promise).
        let bytes = unsafe { arg_bytes(buf, len)? };
        if bytes.is_empty() {
            return Err(crate::error::EINVAL);
        }
        let found = setup_data::read(bytes).map_err(|e| fail(err, &e))?;
        *data = found.data.into();
        if let Some(n) = next {
            *n = found.next;
        }
        Ok(KHO_OK)
    })
}

/// Reads the handover's location from the `/chosen` node of a device tree:
/// `linux,kho-fdt` and `linux,kho-scratch`, big-endian cells as the root's
/// `#address-cells` and `#size-cells` say (2 and 1 when absent).
///
/// @param dtb The device tree blob.
/// @param len Bytes readable at `dtb` (at least its `totalsize`).
/// @param data Receives the location.
/// @param err NULL, or receives the typed error on failure (`code` 0 when
///        there is none).
/// @return 0; -KHO_ENOENT (neither property: no handover);
///         -KHO_EINVAL (NULL arguments, a tree that does not parse, only
///         one of the properties, a property of the wrong length, an
///         invalid location).
///
/// # Safety
///
/// `dtb` is readable for `len` bytes; `data` and `err` are NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_chosen_read(
    dtb: *const c_void,
    len: usize,
    data: *mut kho_data,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_opt_mut(err)? }.map(|e| {
            *e = kho_error::EMPTY;
            e
        });
        // SAFETY: NULL or writable (caller's promise).
        let data = unsafe { arg_mut(data)? };
        // SAFETY: readable for `len` bytes (caller's promise).
        let bytes = unsafe { arg_bytes(dtb, len)? };
        match chosen::read(bytes).map_err(|e| fail(err, &e))? {
            Some(d) => {
                *data = d.into();
                Ok(KHO_OK)
            }
            None => Err(-KHO_ENOENT),
        }
    })
}

/// Writes (or overwrites) `linux,kho-fdt` and `linux,kho-scratch` in the
/// `/chosen` node of the device tree at `dtb`, in the root's cell counts,
/// after checking `*data` as the next kernel will. The tree grows in place
/// into the spare bytes of the buffer (`cap` beyond its `totalsize`).
///
/// @param dtb The device tree blob, in a buffer of `cap` bytes.
/// @param cap Bytes writable at `dtb`.
/// @param data The handover's location.
/// @param totalsize NULL, or receives the tree's new `totalsize`.
/// @param err NULL, or receives the typed error on failure (`code` 0 when
///        there is none).
/// @return 0; -KHO_ENOENT (no `/chosen` node); -KHO_ENOSPC (`cap` too
///         small: the tree is left valid); -KHO_ERANGE (an address or size
///         that does not fit one cell); -KHO_EINVAL (NULL arguments, a tree
///         that does not parse, cell counts other than 1 or 2, an invalid
///         location).
///
/// # Safety
///
/// `dtb` is readable and writable for `cap` bytes; `data` is NULL
/// or readable; `totalsize` and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_chosen_write(
    dtb: *mut c_void,
    cap: usize,
    data: *const kho_data,
    totalsize: *mut usize,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_opt_mut(err)? }.map(|e| {
            *e = kho_error::EMPTY;
            e
        });
        // SAFETY: NULL or writable (caller's promise).
        let totalsize = unsafe { arg_opt_mut(totalsize)? };
        // SAFETY: NULL or readable (caller's promise).
        let data: KhoData = (*unsafe { arg_ref(data)? }).into();
        // SAFETY: readable and writable for `cap` bytes (caller's promise).
        let buf = unsafe { arg_bytes_mut(dtb, cap)? };
        let n = chosen::write(buf, &data).map_err(|e| fail(err, &e))?;
        if let Some(t) = totalsize {
            *t = n;
        }
        Ok(KHO_OK)
    })
}
