//! `struct kho_out`: the outgoing side of a handover.
//!
//! The kernel about to kexec creates one with [`kho_out_new`], preserves
//! folios and page ranges ([`kho_preserve_folio`], [`kho_preserve_pages`]),
//! names blobs for the next kernel ([`kho_add_subtree`]) and ends with
//! [`kho_out_finish`], which yields the `struct kho_data` to pass on (or
//! gives everything up with [`kho_out_destroy`]).
//!
//! Preserving and unpreserving are lock-free: those functions may run on
//! one handle from several threads at once (with a thread-safe platform).
//! Every other function that takes a `struct kho_out *` needs it
//! exclusively.

use core::ffi::{c_char, c_int, c_void};
use core::ops::ControlFlow;

use kho_abi::compat::{ARRAY_V1, BLOCK_V1, VMALLOC_V1};
use kho_abi::{Order, PhysAddr, WithTracker};
use kho_track::{RootCompat, TrackError, Tracker, TrackerOptions};

use crate::error::{EINVAL, KHO_ENOMEM, KHO_OK, neg_errno};
use crate::panic::{guard, guard_or};
use crate::platform::{Platform, kho_platform, platform_arg};
use crate::ptr::{Castable, arg_mut, arg_slice, arg_str, handle_mut, handle_ref, new_handle, take_handle};
use crate::record::{LastError, kho_error};
use crate::wire::{kho_data, kho_scratch, scratch_as_abi};

/// The outgoing side of a handover: a tracker of preserved memory and the
/// root FDT with its subtrees. Opaque; made by [`kho_out_new`].
pub struct kho_out {
    _private: [u8; 0],
}

/// The root compatible string a [`kho_out`] writes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kho_root_compat {
    /// `"kho-v4"`, what mainline kernels write and read.
    KHO_ROOT_PLAIN = 0,
    /// `"kho-v4;array-v1;block-v1;radix-v1;vmalloc-v1"`: the base and the
    /// formats it contains (the composite form proposed upstream).
    KHO_ROOT_COMPOSITE = 1,
}

/// The components a composite root lists besides `radix-v1`.
const COMPONENTS: &[&str] = &[ARRAY_V1, BLOCK_V1, VMALLOC_V1];

/// What a [`kho_out`] handle owns.
pub(crate) struct Out {
    /// The tracker, which owns its copy of the platform.
    pub(crate) tracker: Tracker<Platform>,
    /// The last typed error of a call on this handle.
    pub(crate) last: LastError,
}

// SAFETY: a magic of its own ("KHO_OUT1").
unsafe impl Castable for kho_out {
    type RustType = Out;
    const MAGIC: u64 = 0x4b48_4f5f_4f55_5431;
}

impl Out {
    /// The platform the handle was made with.
    pub(crate) fn platform(&self) -> &Platform {
        self.tracker.platform()
    }

    /// The platform joined with the tracker, what the primitives take.
    pub(crate) fn with_tracker<'a>(&'a self, mem: &'a Platform) -> WithTracker<'a, Platform, Tracker<Platform>> {
        WithTracker::new(mem, &self.tracker)
    }

    /// Gives every page the tracker holds back to the platform.
    fn destroy(self) {
        self.tracker.destroy();
    }
}

/// An order argument: above [`Order::MAX`] gives `-ERANGE`.
pub(crate) fn order_arg(order: u32) -> Result<Order, c_int> {
    Order::new(u64::from(order), "order").map_err(|e| neg_errno(&e))
}

/// Calls a walk and folds its outcome into the C convention: `0` after a
/// full walk, the callback's non-zero value if it stopped the walk,
/// `-errno` if the walk failed.
pub(crate) fn walk_result(r: Result<ControlFlow<c_int>, TrackError>) -> c_int {
    match r {
        Ok(ControlFlow::Continue(())) => KHO_OK,
        Ok(ControlFlow::Break(v)) => v,
        Err(e) => neg_errno(&e),
    }
}

/// Called once per preserved block: `2^order` pages at `pa`. Return 0 to go
/// on; any other value stops the walk and is what the walk returns.
pub type kho_block_fn = Option<unsafe extern "C" fn(arg: *mut c_void, pa: u64, order: u32) -> c_int>;

/// Called once per range of preserved memory: `len` bytes at `pa`. Return 0
/// to go on; any other value stops the walk and is what the walk returns.
pub type kho_range_fn = Option<unsafe extern "C" fn(arg: *mut c_void, pa: u64, len: u64) -> c_int>;

/// Creates the outgoing side of a handover: allocates the radix tree's root
/// and the root FDT page through `platform`, for a next kernel that boots
/// with the given scratch areas.
///
/// @param platform The embedder's memory; copied, but its `ctx` must
///        outlive the handle.
/// @param scratch The `nr_scratch` scratch areas of the next kernel
///        (copied); may be NULL when `nr_scratch` is 0.
/// @param nr_scratch Number of entries at `scratch`.
/// @param compat The root compatible to write, a `kho_root_compat` value.
/// @param out Receives the handle on success, NULL on failure.
/// @param err NULL, or receives the typed error when the call fails (its
///        `code` is 0 on success).
/// @return 0 on success;
///   -KHO_EINVAL: `platform` or `out` NULL, a required callback NULL,
///   `max_order` above KHO_ORDER_MAX, `compat` not a `kho_root_compat`,
///   a scratch area not page aligned or not whole pages, or a page from
///   `alloc_pages` at PA 0 or misaligned for its order;
///   -KHO_EBUSY: `alloc_pages` handed out a page inside one of the scratch
///   areas (kho keeps the handover's own pages out of them, as the next
///   kernel allocates from them before it reads the handover);
///   -KHO_ENOMEM: `alloc_pages` failed, or the heap is exhausted.
///
/// # Safety
///
/// `platform` is NULL or points at a valid `struct kho_platform`
/// whose callbacks keep its contract; `scratch` points at `nr_scratch`
/// readable entries; `out` and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_new(
    platform: *const kho_platform,
    scratch: *const kho_scratch,
    nr_scratch: usize,
    compat: u32,
    out: *mut *mut kho_out,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: `err` is NULL or writable (caller's promise).
        let mut err = unsafe { crate::ptr::arg_opt_mut(err)? };
        if let Some(e) = err.as_deref_mut() {
            *e = kho_error::EMPTY;
        }
        // SAFETY: `out` is NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(out)? };
        *slot = core::ptr::null_mut();
        // SAFETY: `platform` is NULL or valid (caller's promise).
        let platform = unsafe { platform_arg(platform)? };
        // SAFETY: `scratch` holds `nr_scratch` entries (caller's promise).
        let scratch = scratch_as_abi(unsafe { arg_slice(scratch, nr_scratch)? });
        let compat = match compat {
            x if x == kho_root_compat::KHO_ROOT_PLAIN as u32 => RootCompat::Plain,
            x if x == kho_root_compat::KHO_ROOT_COMPOSITE as u32 => RootCompat::Composite(COMPONENTS),
            _ => return Err(EINVAL),
        };
        let tracker = Tracker::new(platform, &scratch, TrackerOptions { compat }).map_err(|e| {
            let rec = kho_error::of(&e);
            if let Some(slot) = err {
                *slot = rec;
            }
            rec.code
        })?;
        match new_handle::<kho_out>(Out { tracker, last: LastError::new() }) {
            Ok(handle) => {
                *slot = handle;
                Ok(KHO_OK)
            }
            Err(unowned) => {
                unowned.destroy();
                Err(-KHO_ENOMEM)
            }
        }
    })
}

/// Copies the last typed error of a call on `out` into `*err`: its kind,
/// where it was found, and its message. `err->code` is 0 if no call on the
/// handle has failed on a typed error yet; argument checks that fail
/// before the handle's state is touched (NULL pointers, orders out of
/// range, a bad handle) record nothing.
///
/// @param out A handle from kho_out_new().
/// @param err Receives the record.
/// @return 0, or -KHO_EINVAL (`err` NULL or misaligned, `out` not a live
///         handle).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_last_error(out: *const kho_out, err: *mut kho_error) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let err = unsafe { arg_mut(err)? };
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        *err = o.last.get();
        Ok(KHO_OK)
    })
}

/// Preserves the folio of `2^order` pages at physical address `pa` for the
/// next kernel (the kernel's kho_preserve_folio()). Preserving a block
/// twice has no further effect.
///
/// @param out A handle from kho_out_new().
/// @param pa Physical address of the block (aligned to its size).
/// @param order The block is 2^order pages.
/// @return 0, -KHO_EINVAL (bad handle, `pa` not aligned to the folio, not
///         RAM), -KHO_ERANGE (order above the platform's maximum), -KHO_EBUSY (the
///         folio overlaps a scratch area or crosses a NUMA node), -KHO_ENOMEM.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new() (not used exclusively by
/// another call at the same time).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_preserve_folio(out: *mut kho_out, pa: u64, order: u32) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        Ok(o.last.rc(o.tracker.preserve_folio(PhysAddr::new(pa), order)))
    })
}

/// Undoes kho_preserve_folio() of the same folio (the kernel's
/// kho_unpreserve_folio()).
///
/// @param out A handle from kho_out_new().
/// @param pa Physical address of the block (aligned to its size).
/// @param order The block is 2^order pages.
/// @return 0, -KHO_ENOENT (not preserved at that order), -KHO_EINVAL,
///         -KHO_ERANGE.
///
/// # Safety
///
/// As kho_preserve_folio().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_unpreserve_folio(out: *mut kho_out, pa: u64, order: u32) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        Ok(o.last.rc(o.tracker.unpreserve_folio(PhysAddr::new(pa), order)))
    })
}

/// Preserves `nr_pages` pages from the page-aligned physical address `pa`
/// (the kernel's kho_preserve_pages()), as maximal naturally aligned
/// blocks. All or nothing.
///
/// @param out A handle from kho_out_new().
/// @param pa Physical address of the first page, page aligned.
/// @param nr_pages Number of pages.
/// @return 0, -KHO_EINVAL (zero pages, `pa` not page aligned, the range wraps
///         or is not RAM), -KHO_EBUSY, -KHO_ENOMEM.
///
/// # Safety
///
/// As kho_preserve_folio().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_preserve_pages(out: *mut kho_out, pa: u64, nr_pages: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        Ok(o.last.rc(o.tracker.preserve_pages(PhysAddr::new(pa), nr_pages)))
    })
}

/// Undoes kho_preserve_pages() of the same range (the kernel's
/// kho_unpreserve_pages()).
///
/// @param out A handle from kho_out_new().
/// @param pa Physical address of the first page.
/// @param nr_pages Number of pages.
/// @return 0, -KHO_ENOENT (some block was not preserved; the others are
///         unpreserved all the same), -KHO_EINVAL.
///
/// # Safety
///
/// As kho_preserve_folio().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_unpreserve_pages(out: *mut kho_out, pa: u64, nr_pages: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        Ok(o.last.rc(o.tracker.unpreserve_pages(PhysAddr::new(pa), nr_pages)))
    })
}

/// Stores in `*preserved` whether exactly the block of `2^order` pages at
/// `pa` is preserved.
///
/// @param out A handle from kho_out_new().
/// @param pa Physical address of the block (aligned to its size).
/// @param order The block is 2^order pages.
/// @param preserved Receives whether the block is preserved.
/// @return 0, -KHO_EINVAL (NULL `preserved`, bad handle, misaligned `pa`),
///         -KHO_ERANGE.
///
/// # Safety
///
/// As kho_preserve_folio(); `preserved` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_is_preserved(out: *const kho_out, pa: u64, order: u32, preserved: *mut bool) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let result = unsafe { arg_mut(preserved)? };
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        *result = o.tracker.is_preserved(PhysAddr::new(pa), order).map_err(|e| o.last.fail(&e))?;
        Ok(KHO_OK)
    })
}

/// Adds a subtree `name` to the root FDT, pointing at a blob of `size`
/// bytes at physical address `blob` (the kernel's kho_add_subtree()). The
/// blob is not preserved by this call: preserve it too.
///
/// @param out A handle from kho_out_new().
/// @param name The subtree's node name, NUL-terminated UTF-8.
/// @param blob Physical address of the blob.
/// @param size Size of the blob in bytes.
/// @return 0, -KHO_EEXIST (the name is taken), -KHO_ENOSPC (the root FDT would
///         outgrow its page), -KHO_EINVAL (NULL, empty or invalid name, bad handle).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(), used by no other call at
/// the same time; `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_add_subtree(out: *mut kho_out, name: *const c_char, blob: u64, size: u64) -> c_int {
    guard(|| {
        // SAFETY: NULL or NUL-terminated (caller's promise).
        let name = unsafe { arg_str(name)? };
        // An empty node name would make the root FDT unreadable to the
        // next kernel (kho-track's name check lets it through).
        if name.is_empty() {
            return Err(EINVAL);
        }
        // SAFETY: a handle or NULL, used exclusively (caller's promise).
        let o = unsafe { handle_mut(out)? };
        Ok(o.last.rc(o.tracker.add_subtree(name, PhysAddr::new(blob), size)))
    })
}

/// Removes the subtree whose blob is at physical address `blob` (the
/// kernel's kho_remove_subtree()).
///
/// @param out A handle from kho_out_new().
/// @param blob Physical address of the blob.
/// @return 0, -KHO_ENOENT, -KHO_EINVAL.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(), used by no other call at
/// the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_remove_subtree(out: *mut kho_out, blob: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL, used exclusively (caller's promise).
        let o = unsafe { handle_mut(out)? };
        Ok(o.last.rc(o.tracker.remove_subtree(PhysAddr::new(blob))))
    })
}

/// Calls `f(arg, pa, order)` for every preserved block, in the kernel's
/// order (larger orders first, then ascending PA).
///
/// @param out A handle from kho_out_new().
/// @param f Called as `f(arg, pa, order)` per block; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last block, the callback's value if it returned
///         non-zero, or -KHO_EINVAL (NULL `f`, bad handle).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `f` is callable with
/// `arg` and does not use `out` exclusively.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_walk_blocks(out: *const kho_out, f: kho_block_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        let mut each = |pa: PhysAddr, order: Order| match unsafe { f(arg, pa.as_u64(), order.get()) } {
            0 => ControlFlow::Continue(()),
            v => ControlFlow::Break(v),
        };
        Ok(walk_result(o.tracker.for_each_block(&mut each)))
    })
}

/// Calls `f(arg, pa, len)` for every range of preserved memory, adjacent
/// blocks merged, in ascending PA.
///
/// @param out A handle from kho_out_new().
/// @param f Called as `f(arg, pa, len)` per range; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return as kho_out_walk_blocks().
///
/// # Safety
///
/// As kho_out_walk_blocks().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_walk_ranges(out: *const kho_out, f: kho_range_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        let mut each = |pa: PhysAddr, len: u64| match unsafe { f(arg, pa.as_u64(), len) } {
            0 => ControlFlow::Continue(()),
            v => ControlFlow::Break(v),
        };
        Ok(walk_result(o.tracker.for_each_range(&mut each)))
    })
}

/// Ends the outgoing side: writes the scratch array into pages of its own
/// and stores in `*data` the `struct kho_data` for the next kernel. Every
/// page the handle held now belongs to the handover.
///
/// The handle is consumed whatever the result (except for -KHO_EINVAL on a
/// NULL `data` or a bad handle, which leave it alone). On -KHO_ENOMEM (no
/// page for the scratch array) the tracker's pages stay allocated.
///
/// @param out A handle from kho_out_new(); consumed.
/// @param data Receives the `struct kho_data` for the next kernel.
/// @return 0; -KHO_EINVAL (NULL or misaligned `data`, `out` not a live
///         handle: the handle is left alone; or the scratch array's page
///         is not RAM); -KHO_ENOMEM (no page for the scratch array).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new() that no other call uses;
/// `data` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_finish(out: *mut kho_out, data: *mut kho_data) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let data = unsafe { arg_mut(data)? };
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        let Out { tracker, .. } = unsafe { take_handle(out)? };
        let finished = tracker.finish();
        *data = finished.map_err(|e| neg_errno(&e))?.into();
        Ok(KHO_OK)
    })
}

/// Gives up the outgoing side: frees the radix tree and the root FDT page,
/// then the handle. Preserved memory itself belongs to its owners and is
/// not touched. NULL (or an invalid handle) is ignored.
///
/// @param out A handle from kho_out_new(), or NULL.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new() that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_destroy(out: *mut kho_out) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        if let Ok(o) = unsafe { take_handle(out) } {
            o.destroy();
        }
    })
}
