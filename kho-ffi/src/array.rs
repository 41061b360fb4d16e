//! Sparse arrays (`array-v1`): `struct kho_array`.
//!
//! `u64` entries at `u64` positions, written once in ascending position
//! order, preserved as a whole, and handed over as a `struct
//! kho_array_desc` the user stores in their own preserved data. An entry is
//! a tagged value (`(v << 1) | 1`, `v` up to `INT64_MAX`) or an 8-byte
//! aligned pointer or PA, stored as is; 0 is an empty position.
//!
//! The array remembers the platform of the handle it was made with, for
//! reading and freeing; functions that preserve take the `struct kho_out
//! *` first.

use core::ffi::{c_int, c_void};

use ::kho_array::{ArrayDesc, Entry, KhoArray};
use kho_abi::{AbiError, Order, PhysAddr, Preserve};

use crate::error::{EINVAL, KHO_ENOMEM, KHO_OK, neg_errno, to_c};
use crate::inc::kho_in;
use crate::out::kho_out;
use crate::panic::{guard, guard_or};
use crate::platform::Platform;
use crate::ptr::{Castable, arg_mut, arg_ref, arg_slice, handle_mut, handle_ref, new_handle, take_handle};
use crate::wire::kho_array_desc;

/// A sparse array. Opaque; made by [`kho_array_new`] or
/// [`kho_array_restore`].
pub struct kho_array {
    _private: [u8; 0],
}

/// The state of an array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_array_info {
    /// Non-empty entries.
    pub len: u64,
    /// Pages in the chain.
    pub pages: u64,
    /// The highest position holding an entry (0 when `len` is 0).
    pub last_position: u64,
    /// Whether every page is preserved.
    pub preserved: bool,
}

/// Called once per entry, ascending by position, holes skipped: `raw` is
/// the stored word. Return 0 to go on; any other value stops the walk and
/// is what it returns.
pub type kho_array_fn = Option<unsafe extern "C" fn(arg: *mut c_void, pos: u64, raw: u64) -> c_int>;

/// What a [`kho_array`] handle owns.
pub(crate) struct Array {
    array: KhoArray,
    mem: Platform,
}

// SAFETY: a magic of its own ("KHO_ARR1").
unsafe impl Castable for kho_array {
    type RustType = Array;
    const MAGIC: u64 = 0x4b48_4f5f_4152_5231;
}

/// The tracker side of a platform for an array that is not preserved: it
/// never preserves or unpreserves anything.
struct NotPreserving;

impl Preserve for NotPreserving {
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        Err(AbiError::Forbidden { pa, order: order.get(), why: "no kho_out given" })
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        Err(AbiError::NotPreserved { pa, order: order.get() })
    }
}

/// Creates an empty array (no pages) on the platform of `out`, and stores
/// it in `*array`.
///
/// @param out A handle from kho_out_new(): the array preserves through it.
/// @param array Receives the new array, NULL on failure.
/// @return 0, -KHO_EINVAL, -KHO_ENOMEM.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `array` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_new(out: *const kho_out, array: *mut *mut kho_array) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(array)? };
        *slot = core::ptr::null_mut();
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        *slot =
            new_handle::<kho_array>(Array { array: KhoArray::new(), mem: *o.platform() }).map_err(|_| -KHO_ENOMEM)?;
        Ok(KHO_OK)
    })
}

/// Stores the raw entry `raw` (a tagged value `(v << 1) | 1`, or a
/// non-zero 8-byte aligned pointer) at position `pos`, which must be above
/// every position stored so far. Pages are allocated as needed (and
/// preserved if the array is).
///
/// @param out A handle from kho_out_new().
/// @param array An array handle.
/// @param pos The position, above every position stored so far.
/// @param raw The raw entry: `(v << 1) | 1` for a value, or a non-zero 8-byte aligned pointer.
/// @return 0, -KHO_EINVAL (`raw` 0 or malformed, `pos` not ascending),
///         -KHO_ENOMEM (no page, or no radix tree node for a preserved
///         array's new page), -KHO_EBUSY (a preserved array's new page
///         lies in a scratch area or across a NUMA boundary).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `array` is NULL or a
/// handle that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_push(out: *mut kho_out, array: *mut kho_array, pos: u64, raw: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let a = unsafe { handle_mut(array)? };
        let entry = Entry::from_raw(raw).map_err(|e| o.last.fail(&e))?;
        let p = o.with_tracker(&a.mem);
        Ok(o.last.rc(a.array.writer(&p).push(pos, entry)))
    })
}

/// Stores the value `value` (at most `INT64_MAX`) at position `pos`, as
/// kho_array_push() with `raw = (value << 1) | 1`.
///
/// @param out A handle from kho_out_new().
/// @param array An array handle.
/// @param pos The position, above every position stored so far.
/// @param value The value, at most INT64_MAX.
/// @return 0, -KHO_ERANGE (value above `INT64_MAX`), or as
///         kho_array_push().
///
/// # Safety
///
/// As kho_array_push().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_push_value(out: *mut kho_out, array: *mut kho_array, pos: u64, value: u64) -> c_int {
    guard(|| {
        let raw = Entry::value(value).map_err(|e| neg_errno(&e))?.raw();
        // SAFETY: forwarded from the caller.
        Ok(unsafe { kho_array_push(out, array, pos, raw) })
    })
}

/// Stores the `n` raw words at `raws` at consecutive positions after the
/// last one stored (from 0 in an empty array); a 0 word leaves its
/// position empty. The fast path for dense data. On an error the words
/// before the bad one are stored.
///
/// @param out A handle from kho_out_new().
/// @param array An array handle.
/// @param raws The raw entries, for ascending positions from the last one + 1.
/// @param n Number of entries at `raws`.
/// @return 0, -KHO_EINVAL (a malformed word, NULL `raws` with `n` > 0),
///         -KHO_ERANGE (positions past `UINT64_MAX`), -KHO_ENOMEM,
///         -KHO_EBUSY (as kho_array_push()).
///
/// # Safety
///
/// As kho_array_push(); `raws` is readable for `n` words.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_extend(
    out: *mut kho_out,
    array: *mut kho_array,
    raws: *const u64,
    n: usize,
) -> c_int {
    guard(|| {
        // SAFETY: readable for `n` words (caller's promise).
        let raws = unsafe { arg_slice(raws, n)? };
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let a = unsafe { handle_mut(array)? };
        let p = o.with_tracker(&a.mem);
        Ok(o.last.rc(a.array.writer(&p).extend_raw(raws)))
    })
}

/// Preserves every page of the array for the next kernel; pages added
/// later are preserved as they are allocated.
///
/// @param out A handle from kho_out_new().
/// @param array An array handle.
/// @return 0, -KHO_EEXIST (already preserved), -KHO_EINVAL, -KHO_EBUSY (a
///         page lies in a scratch area or across a NUMA boundary),
///         -KHO_ENOMEM (no radix tree node).
///
/// # Safety
///
/// As kho_array_push().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_preserve(out: *mut kho_out, array: *mut kho_array) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let a = unsafe { handle_mut(array)? };
        let p = o.with_tracker(&a.mem);
        Ok(o.last.rc(a.array.preserve(&p)))
    })
}

/// Unpreserves every page of the array.
///
/// @param out A handle from kho_out_new().
/// @param array An array handle.
/// @return 0, -KHO_ENOENT (not preserved), -KHO_EINVAL.
///
/// # Safety
///
/// As kho_array_push().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_unpreserve(out: *mut kho_out, array: *mut kho_array) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let a = unsafe { handle_mut(array)? };
        let p = o.with_tracker(&a.mem);
        Ok(o.last.rc(a.array.unpreserve(&p)))
    })
}

/// Stores the array's descriptor in `*desc`: what the next kernel's
/// kho_array_restore() takes. It stays valid as entries are appended.
///
/// @param array An array handle.
/// @param desc Receives the descriptor to embed in the caller's preserved data.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `array` is NULL or a handle; `desc` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_descriptor(array: *const kho_array, desc: *mut kho_array_desc) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let desc = unsafe { arg_mut(desc)? };
        // SAFETY: a handle or NULL (caller's promise).
        let a = unsafe { handle_ref(array)? };
        *desc = a.array.descriptor().into();
        Ok(KHO_OK)
    })
}

/// Stores the array's state in `*info`.
///
/// @param array An array handle.
/// @param info Receives the figures.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `array` is NULL or a handle; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_get_info(array: *const kho_array, info: *mut kho_array_info) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let info = unsafe { arg_mut(info)? };
        // SAFETY: a handle or NULL (caller's promise).
        let a = unsafe { handle_ref(array)? };
        *info = kho_array_info {
            len: a.array.len(),
            pages: a.array.pages(),
            last_position: a.array.last_position().unwrap_or(0),
            preserved: a.array.is_preserved(),
        };
        Ok(KHO_OK)
    })
}

/// Calls `f(arg, pos, raw)` for every entry, ascending by position.
///
/// @param array An array handle.
/// @param f Called as `f(arg, pos, raw)` per entry, ascending; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last entry, the callback's value if it returned
///         non-zero, -KHO_EINVAL.
///
/// # Safety
///
/// `array` is NULL or a handle; `f` is callable with `arg` and does not
/// change the array.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_for_each(array: *const kho_array, f: kho_array_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let a = unsafe { handle_ref(array)? };
        for item in a.array.iter(&a.mem) {
            let (pos, entry) = item.map_err(|e| neg_errno(&e))?;
            // SAFETY: `f` is callable with `arg` (caller's promise).
            let v = unsafe { f(arg, pos, entry.raw()) };
            if v != 0 {
                return Ok(v);
            }
        }
        Ok(KHO_OK)
    })
}

/// Adopts the array `*desc` describes, left by the previous kernel,
/// claiming at most `max_pages` pages, and stores it in `*array`. Every
/// page and record is checked before use. The restored array can be read,
/// appended to, preserved again and destroyed.
///
/// @param inc A handle from kho_in_import().
/// @param desc The descriptor the previous kernel stored.
/// @param max_pages The most pages the array may span (a bound on the work done).
/// @param array Receives the restored array, NULL on failure.
/// @return 0, -KHO_EINVAL (NULL arguments, a malformed array, more than
///         `max_pages` pages), -KHO_EOPNOTSUPP (another version), -KHO_ENOENT (a page
///         that was not preserved), -KHO_ENOMEM. On failure nothing stays claimed.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `desc` is NULL or
/// readable; `array` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_restore(
    inc: *mut kho_in,
    desc: *const kho_array_desc,
    max_pages: u64,
    array: *mut *mut kho_array,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(array)? };
        *slot = core::ptr::null_mut();
        // SAFETY: NULL or readable (caller's promise).
        let desc: ArrayDesc = (*unsafe { arg_ref(desc)? }).into();
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        let restored = KhoArray::restore(&p, &desc, max_pages).map_err(|e| i.last.fail(&e))?;
        match new_handle::<kho_array>(Array { array: restored, mem: *i.platform() }) {
            Ok(h) => {
                *slot = h;
                Ok(KHO_OK)
            }
            Err(a) => {
                // Not preserved: its pages go back to the platform.
                let _ = a.array.destroy(&kho_abi::WithTracker::new(&a.mem, &NotPreserving));
                Err(-KHO_ENOMEM)
            }
        }
    })
}

/// Gives the array up: unpreserves its pages if it is preserved (then
/// `out` is required), frees them, then frees the handle. A NULL `array`
/// is ignored (returns 0).
///
/// @param out The handle a preserved array preserves through; may be NULL for an array never preserved.
/// @param array The array, or NULL.
/// @return 0, -KHO_EINVAL (a preserved array without a valid `out`: the
///         handle stays valid), or the first refusal to unpreserve (the pages
///         refused are not freed; the handle is freed).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `array` is NULL or a
/// handle that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_destroy(out: *mut kho_out, array: *mut kho_array) -> c_int {
    guard(|| {
        if array.is_null() {
            return Ok(KHO_OK);
        }
        // SAFETY: a handle (caller's promise); the reference ends before
        // the handle is taken below.
        let preserved = unsafe { handle_ref(array)? }.array.is_preserved();
        let o = if preserved {
            // SAFETY: a handle or NULL (caller's promise).
            Some(unsafe { handle_ref(out)? })
        } else {
            None
        };
        // SAFETY: a handle that nothing else uses (caller's promise).
        let Array { array, mem } = unsafe { take_handle(array)? };
        Ok(match o {
            Some(o) => o.last.rc(array.destroy(&o.with_tracker(&mem))),
            None => to_c(array.destroy(&kho_abi::WithTracker::new(&mem, &NotPreserving))),
        })
    })
}

/// Frees the handle alone: the pages stay as they are (preserved ones are
/// handed to the next kernel; store the descriptor first). NULL (or an
/// invalid handle) is ignored.
///
/// @param array The array, or NULL.
///
/// # Safety
///
/// `array` is NULL or a handle that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_array_free(array: *mut kho_array) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        let _ = unsafe { take_handle(array) };
    })
}
