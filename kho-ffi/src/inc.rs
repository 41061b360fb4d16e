//! `struct kho_in`: the incoming side of a handover.
//!
//! The next kernel (or firmware between two kernels) imports the handover a
//! previous kernel left with [`kho_in_import`], which validates everything
//! behind the `struct kho_data` as untrusted input. It then keeps what
//! [`kho_in_reserved`] lists away from its allocator, restores what it owns
//! ([`kho_restore_folio`], [`kho_restore_pages`], vmalloc areas, block
//! sets, arrays), looks blobs up ([`kho_retrieve_subtree`]), frees what
//! nobody claimed ([`kho_in_unclaimed`]) and ends with [`kho_in_finish`].
//!
//! Restoring is lock-free like preserving: the restore functions may run
//! on one handle from several threads at once.

use core::ffi::{c_char, c_int, c_void};
use core::ops::ControlFlow;

use kho_abi::{KhoData, Order, PhysAddr, WithTracker};
use kho_track::Incoming;

use crate::error::{KHO_ENOMEM, KHO_ENOSPC, KHO_OK};
use crate::out::{kho_block_fn, kho_range_fn, order_arg, walk_result};
use crate::panic::{guard, guard_or};
use crate::platform::{Platform, kho_platform, platform_arg};
use crate::ptr::{
    Castable, arg_mut, arg_opt_mut, arg_ref, arg_slice_mut, arg_str, handle_ref, new_handle, take_handle,
};
use crate::record::{LastError, kho_error};
use crate::wire::{kho_data, kho_scratch};

/// The incoming side of a handover, validated. Opaque; made by
/// [`kho_in_import`].
pub struct kho_in {
    _private: [u8; 0],
}

/// What [`kho_in_import`] found.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_in_stats {
    /// Preserved blocks.
    pub blocks: u64,
    /// Pages in them.
    pub pages: u64,
    /// Pages of the radix tree.
    pub tree_pages: u64,
}

/// What a [`kho_in`] handle owns.
pub(crate) struct In {
    /// The validated handover, which owns its copy of the platform.
    pub(crate) incoming: Incoming<Platform>,
    /// The last typed error of a call on this handle.
    pub(crate) last: LastError,
}

// SAFETY: a magic of its own ("KHO_IN_1").
unsafe impl Castable for kho_in {
    type RustType = In;
    const MAGIC: u64 = 0x4b48_4f5f_494e_5f31;
}

impl In {
    /// The platform joined with the incoming tracker, what the primitives
    /// restore through.
    pub(crate) fn with_tracker(&self) -> WithTracker<'_, Platform, Incoming<Platform>> {
        WithTracker::new(self.platform(), &self.incoming)
    }

    /// The platform the handle was made with.
    pub(crate) fn platform(&self) -> &Platform {
        self.incoming.platform()
    }
}

/// Calls `f` on each block of a list, stopping at a non-zero result.
fn each_block(blocks: &[(PhysAddr, Order)], mut f: impl FnMut(u64, u32) -> c_int) -> c_int {
    blocks.iter().map(|&(pa, order)| f(pa.as_u64(), order.get())).find(|&v| v != 0).unwrap_or(KHO_OK)
}

/// Imports the handover `*data` describes, left in RAM by the previous
/// kernel, and validates all of it as untrusted input: the root FDT, its
/// compatible, the scratch areas and the whole radix tree (every node and
/// every block: alignment, RAM, orders within `platform->max_order`,
/// nothing in scratch, no overlaps). Nothing is claimed but the root FDT's
/// page. Call kho_in_reserved() next, before allocating anything outside
/// the scratch areas.
///
/// @param platform The embedder's memory; copied, but its `ctx` must
///        outlive the handle.
/// @param data Where the handover is (from `setup_data`, `/chosen`, ...).
/// @param inc Receives the handle on success, NULL on failure.
/// @param err NULL, or receives the typed error when the import fails:
///        for a corrupt handover, what was wrong and where (`kind`,
///        `field`, `pa`, tree `node`, `level` and `index`); `code` is 0 on
///        success.
/// @return 0 on success;
///   -KHO_EINVAL: a NULL or misaligned argument, a bad platform, or any
///   malformed state (root FDT, compatible, properties, scratch array,
///   tree node or block);
///   -KHO_ERANGE: a block of an order above the platform's maximum, or a
///   key wider than the key width;
///   -KHO_ENOMEM: the heap is exhausted.
///
/// # Safety
///
/// `platform` is NULL or points at a valid `struct kho_platform`
/// whose callbacks keep its contract; `data` is NULL or readable; `inc`
/// and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_import(
    platform: *const kho_platform,
    data: *const kho_data,
    inc: *mut *mut kho_in,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: `err` is NULL or writable (caller's promise).
        let mut err = unsafe { arg_opt_mut(err)? };
        if let Some(e) = err.as_deref_mut() {
            *e = kho_error::EMPTY;
        }
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(inc)? };
        *slot = core::ptr::null_mut();
        // SAFETY: NULL or valid (caller's promise).
        let platform = unsafe { platform_arg(platform)? };
        // SAFETY: NULL or readable (caller's promise).
        let data: KhoData = (*unsafe { arg_ref(data)? }).into();
        let incoming = Incoming::import(platform, &data).map_err(|e| {
            let rec = kho_error::of(&e);
            if let Some(slot) = err {
                *slot = rec;
            }
            rec.code
        })?;
        match new_handle::<kho_in>(In { incoming, last: LastError::new() }) {
            Ok(handle) => {
                *slot = handle;
                Ok(KHO_OK)
            }
            Err(_) => Err(-KHO_ENOMEM),
        }
    })
}

/// Copies the last typed error of a call on `inc` into `*err`: a restore
/// that found a corrupt chain or an unpreserved block says which and
/// where. `err->code` is 0 if no call on the handle has failed on a typed
/// error yet; argument checks that fail before the handle's state is
/// touched record nothing.
///
/// @param inc A handle from kho_in_import().
/// @param err Receives the record.
/// @return 0, or -KHO_EINVAL (`err` NULL or misaligned, `inc` not a live
///         handle).
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `err` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_last_error(inc: *const kho_in, err: *mut kho_error) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_mut(err)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        *err = i.last.get();
        Ok(KHO_OK)
    })
}

/// Stores what the import found in `*stats`.
///
/// @param inc A handle from kho_in_import().
/// @param stats Receives the figures.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `stats` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_get_stats(inc: *const kho_in, stats: *mut kho_in_stats) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(stats)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let s = i.incoming.stats();
        *out = kho_in_stats { blocks: s.blocks, pages: s.pages, tree_pages: s.tree_pages };
        Ok(KHO_OK)
    })
}

/// Copies the root compatible string, NUL-terminated, into `buf` of `len`
/// bytes, and its length (without the NUL) into `*len_out` unless
/// `len_out` is NULL.
///
/// @param inc A handle from kho_in_import().
/// @param buf Receives the root compatible, NUL-terminated.
/// @param len Bytes at `buf`.
/// @param len_out NULL, or receives the string's length without its NUL.
/// @return 0, -KHO_ENOSPC (`buf` too small: `*len_out` tells the length),
///         -KHO_EINVAL.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `buf` is writable for
/// `len` bytes; `len_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_compatible(
    inc: *const kho_in,
    buf: *mut c_char,
    len: usize,
    len_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let len_out = unsafe { arg_opt_mut(len_out)? };
        // SAFETY: writable for `len` bytes (caller's promise).
        let buf = unsafe { arg_slice_mut(buf.cast::<u8>(), len)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let s = i.incoming.compatible().as_bytes();
        if let Some(l) = len_out {
            *l = s.len();
        }
        if buf.len() <= s.len() {
            return Err(-KHO_ENOSPC);
        }
        buf[..s.len()].copy_from_slice(s);
        buf[s.len()] = 0;
        Ok(KHO_OK)
    })
}

/// Copies up to `cap` of the scratch areas the previous kernel named into
/// `scratch`, and their number into `*nr_out`.
///
/// @param inc A handle from kho_in_import().
/// @param scratch Receives the scratch areas.
/// @param cap Entries `scratch` can hold.
/// @param nr_out Receives the number of scratch areas.
/// @return 0, -KHO_ENOSPC (more than `cap`: `*nr_out` tells how many),
///         -KHO_EINVAL.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `scratch` is writable
/// for `cap` entries; `nr_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_scratch(
    inc: *const kho_in,
    scratch: *mut kho_scratch,
    cap: usize,
    nr_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let nr_out = unsafe { arg_mut(nr_out)? };
        // SAFETY: writable for `cap` entries (caller's promise).
        let dst = unsafe { arg_slice_mut(scratch, cap)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let src = i.incoming.scratch();
        *nr_out = src.len();
        if src.len() > dst.len() {
            return Err(-KHO_ENOSPC);
        }
        for (d, s) in dst.iter_mut().zip(src) {
            *d = (*s).into();
        }
        Ok(KHO_OK)
    })
}

/// Calls `f(arg, pa, order)` for every block the kernel must keep away
/// from its allocator until kho_in_finish(): every preserved block not
/// restored yet, the radix tree's pages and the root FDT's page. Call it
/// right after the import, before restoring anything.
///
/// @param inc A handle from kho_in_import().
/// @param f Called as `f(arg, pa, order)` per block; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last block, the callback's value if it returned
///         non-zero, -KHO_EINVAL, -KHO_ENOMEM.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `f` is callable with
/// `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_reserved(inc: *const kho_in, f: kho_block_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(crate::error::EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let blocks = i.incoming.reserved_blocks().map_err(|e| i.last.fail(&e))?;
        // SAFETY: `f` is callable with `arg` (caller's promise).
        Ok(each_block(&blocks, |pa, order| unsafe { f(arg, pa, order) }))
    })
}

/// Calls `f(arg, pa, order)` for every preserved block nobody restored,
/// for the kernel to free once it is done restoring.
///
/// @param inc A handle from kho_in_import().
/// @param f Called as `f(arg, pa, order)` per block; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return as kho_in_reserved().
///
/// # Safety
///
/// As kho_in_reserved().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_unclaimed(inc: *const kho_in, f: kho_block_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(crate::error::EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let blocks = i.incoming.unclaimed().map_err(|e| i.last.fail(&e))?;
        // SAFETY: `f` is callable with `arg` (caller's promise).
        Ok(each_block(&blocks, |pa, order| unsafe { f(arg, pa, order) }))
    })
}

/// Calls `f(arg, pa, order)` for every preserved block not restored yet, in
/// the kernel's order (larger orders first, then ascending PA).
///
/// @param inc A handle from kho_in_import().
/// @param f Called as `f(arg, pa, order)` per block; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last block, the callback's value if it returned
///         non-zero, -KHO_EINVAL.
///
/// # Safety
///
/// As kho_in_reserved().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_walk_blocks(inc: *const kho_in, f: kho_block_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(crate::error::EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        let mut each = |pa: PhysAddr, order: Order| match unsafe { f(arg, pa.as_u64(), order.get()) } {
            0 => ControlFlow::Continue(()),
            v => ControlFlow::Break(v),
        };
        Ok(walk_result(i.incoming.for_each_block(&mut each)))
    })
}

/// Calls `f(arg, pa, len)` for every range of preserved memory not
/// restored yet, adjacent blocks merged, ascending: what a kernel feeds its
/// boot-time reservation.
///
/// @param inc A handle from kho_in_import().
/// @param f Called as `f(arg, pa, len)` per range; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return as kho_in_walk_blocks().
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `f` is callable with
/// `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_walk_ranges(inc: *const kho_in, f: kho_range_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(crate::error::EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        let mut each = |pa: PhysAddr, len: u64| match unsafe { f(arg, pa.as_u64(), len) } {
            0 => ControlFlow::Continue(()),
            v => ControlFlow::Break(v),
        };
        Ok(walk_result(i.incoming.for_each_range(&mut each)))
    })
}

/// Restores the folio of `2^order` pages at `pa` (the kernel's
/// kho_restore_folio()): it is the caller's from now on.
///
/// @param inc A handle from kho_in_import().
/// @param pa Physical address of the block (aligned to its size).
/// @param order The block is 2^order pages.
/// @return 0, -KHO_ENOENT (not preserved at exactly that order, or restored
///         already), -KHO_EINVAL (misaligned `pa`, bad handle), -KHO_ERANGE.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_restore_folio(inc: *mut kho_in, pa: u64, order: u32) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let order = order_arg(order)?;
        Ok(i.last.rc(i.incoming.restore_folio(PhysAddr::new(pa), order)))
    })
}

/// Restores `nr_pages` pages from `pa` (the kernel's kho_restore_pages()),
/// split into blocks as the previous kernel split them. All or nothing.
///
/// @param inc A handle from kho_in_import().
/// @param pa Physical address of the first page.
/// @param nr_pages Number of pages.
/// @return 0, -KHO_ENOENT, -KHO_EINVAL.
///
/// # Safety
///
/// As kho_restore_folio().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_restore_pages(inc: *mut kho_in, pa: u64, nr_pages: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        Ok(i.last.rc(i.incoming.restore_pages(PhysAddr::new(pa), nr_pages)))
    })
}

/// Looks the subtree `name` up (the kernel's kho_retrieve_subtree()):
/// stores its blob's physical address in `*pa` and its size in `*size`
/// (0 when the root predates `kho-v3`, which did not record sizes).
/// `size` may be NULL. The blob is not restored by this call.
///
/// @param inc A handle from kho_in_import().
/// @param name The subtree's node name, NUL-terminated UTF-8.
/// @param pa Receives the blob's physical address.
/// @param size NULL, or receives the blob's size (0 before `kho-v3`).
/// @return 0, -KHO_ENOENT (no such subtree), -KHO_EINVAL (NULL arguments, a
///         malformed subtree).
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `name` is NULL or
/// NUL-terminated; `pa` and `size` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_retrieve_subtree(
    inc: *const kho_in,
    name: *const c_char,
    pa: *mut u64,
    size: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let pa = unsafe { arg_mut(pa)? };
        // SAFETY: NULL or writable (caller's promise).
        let size = unsafe { arg_opt_mut(size)? };
        // SAFETY: NULL or NUL-terminated (caller's promise).
        let name = unsafe { arg_str(name)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let s = i.incoming.subtree(name).map_err(|e| i.last.fail(&e))?;
        *pa = s.pa.as_u64();
        if let Some(size) = size {
            *size = s.size.unwrap_or(0);
        }
        Ok(KHO_OK)
    })
}

/// Ends the incoming side: frees the radix tree's pages and the root FDT's
/// page (which kho_in_reserved() listed) through the platform's
/// `free_pages`, then the handle. Those pages were allocated by the
/// previous kernel, never by this platform's `alloc_pages`: `free_pages`
/// must accept them (it hands them to the page allocator as free memory).
/// Blocks nobody restored stay reserved and are not freed: list them with
/// kho_in_unclaimed() first and free them. NULL (or an invalid handle) is
/// ignored.
///
/// @param inc A handle from kho_in_import(), or NULL.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import() that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_finish(inc: *mut kho_in) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        if let Ok(In { incoming, .. }) = unsafe { take_handle(inc) } {
            incoming.finish();
        }
    })
}

/// Frees the handle alone: every page kho_in_reserved() listed stays
/// where it is, untouched, as for a bootloader that only looks. (The
/// import took the root FDT's page out of the tree, as the kernel does.)
/// NULL (or an invalid handle) is ignored.
///
/// @param inc A handle from kho_in_import(), or NULL.
///
/// # Safety
///
/// As kho_in_finish().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_in_destroy(inc: *mut kho_in) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        let _ = unsafe { take_handle(inc) };
    })
}
