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

use crate::error::{EINVAL, KHO_ENOMEM, KHO_OK, neg_errno, to_c};
use crate::panic::{guard, guard_or};
use crate::platform::{Platform, PlatformBox, kho_platform, platform_arg};
use crate::ptr::{Castable, arg_mut, arg_slice, arg_str, handle_mut, handle_ref, new_handle, take_handle};
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
    /// Borrows `platform`: declared first, so dropped first, and consumed
    /// before it by `finish` and `destroy`.
    pub(crate) tracker: Tracker<'static, Platform>,
    pub(crate) platform: PlatformBox,
}

// SAFETY: a magic of its own ("KHO_OUT1").
unsafe impl Castable for kho_out {
    type RustType = Out;
    const MAGIC: u64 = 0x4b48_4f5f_4f55_5431;
}

impl Out {
    /// The platform joined with the tracker, what the primitives take.
    pub(crate) fn with_tracker<'a>(
        &'a self,
        mem: &'a Platform,
    ) -> WithTracker<'a, Platform, Tracker<'static, Platform>> {
        WithTracker::new(mem, &self.tracker)
    }

    /// Gives every page the tracker holds back to the platform.
    fn destroy(self) {
        let Out { tracker, platform } = self;
        tracker.destroy();
        drop(platform);
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

/// Creates the outgoing side of a handover on `platform`, for a next
/// kernel that will boot with the `nr_scratch` scratch areas at `scratch`
/// (copied), writing the root compatible `compat` (a `kho_root_compat`).
/// Allocates the radix tree's root and the root FDT page. On success stores
/// the handle in `*out`; on failure stores NULL there (if `out` is not
/// NULL).
///
/// Returns 0, `-EINVAL` (NULL `platform` or `out`, a NULL required
/// callback, `max_order` out of range, `compat` not a `kho_root_compat`, a
/// scratch area that is not whole pages), `-ENOMEM`.
///
/// # Safety
///
/// - `platform` is NULL or points at a valid `struct kho_platform` whose
///   callbacks obey its contract; its `ctx` outlives the handle.
/// - `scratch` points at `nr_scratch` valid entries (or `nr_scratch` is 0).
/// - `out` is NULL or valid for writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_new(
    platform: *const kho_platform,
    scratch: *const kho_scratch,
    nr_scratch: usize,
    compat: u32,
    out: *mut *mut kho_out,
) -> c_int {
    guard(|| {
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
        let platform = PlatformBox::new(platform)?;
        // SAFETY: the tracker is stored in `Out` beside the box, declared
        // before it, and consumed before it (`Out::destroy`,
        // `kho_out_finish`); if `new` fails nothing keeps the reference.
        let mem = unsafe { platform.lend() };
        let tracker = Tracker::new(mem, &scratch, TrackerOptions { compat }).map_err(|e| neg_errno(&e))?;
        match new_handle::<kho_out>(Out { tracker, platform }) {
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

/// Preserves the folio of `2^order` pages at physical address `pa` for the
/// next kernel (the kernel's `kho_preserve_folio`). Preserving a block
/// twice has no further effect.
///
/// Returns 0, `-EINVAL` (bad handle, `pa` not aligned to the folio, not
/// RAM), `-ERANGE` (order above the platform's maximum), `-EBUSY` (the
/// folio overlaps a scratch area or crosses a NUMA node), `-ENOMEM`.
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`] (not used exclusively by
/// another call at the same time).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_preserve_folio(out: *mut kho_out, pa: u64, order: u32) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        Ok(to_c(o.tracker.preserve_folio(PhysAddr::new(pa), order)))
    })
}

/// Undoes [`kho_preserve_folio`] of the same folio (the kernel's
/// `kho_unpreserve_folio`).
///
/// Returns 0, `-ENOENT` (not preserved at that order), `-EINVAL`,
/// `-ERANGE`.
///
/// # Safety
///
/// As [`kho_preserve_folio`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_unpreserve_folio(out: *mut kho_out, pa: u64, order: u32) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        Ok(to_c(o.tracker.unpreserve_folio(PhysAddr::new(pa), order)))
    })
}

/// Preserves `nr_pages` pages from the page-aligned physical address `pa`
/// (the kernel's `kho_preserve_pages`), as maximal naturally aligned
/// blocks. All or nothing.
///
/// Returns 0, `-EINVAL` (zero pages, `pa` not page aligned, the range wraps
/// or is not RAM), `-EBUSY`, `-ENOMEM`.
///
/// # Safety
///
/// As [`kho_preserve_folio`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_preserve_pages(out: *mut kho_out, pa: u64, nr_pages: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        Ok(to_c(o.tracker.preserve_pages(PhysAddr::new(pa), nr_pages)))
    })
}

/// Undoes [`kho_preserve_pages`] of the same range (the kernel's
/// `kho_unpreserve_pages`).
///
/// Returns 0, `-ENOENT` (some block was not preserved; the others are
/// unpreserved all the same), `-EINVAL`.
///
/// # Safety
///
/// As [`kho_preserve_folio`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_unpreserve_pages(out: *mut kho_out, pa: u64, nr_pages: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        Ok(to_c(o.tracker.unpreserve_pages(PhysAddr::new(pa), nr_pages)))
    })
}

/// Stores in `*preserved` whether exactly the block of `2^order` pages at
/// `pa` is preserved.
///
/// Returns 0, `-EINVAL` (NULL `preserved`, bad handle, misaligned `pa`),
/// `-ERANGE`.
///
/// # Safety
///
/// As [`kho_preserve_folio`]; `preserved` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_is_preserved(out: *const kho_out, pa: u64, order: u32, preserved: *mut bool) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let result = unsafe { arg_mut(preserved)? };
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        *result = o.tracker.is_preserved(PhysAddr::new(pa), order).map_err(|e| neg_errno(&e))?;
        Ok(KHO_OK)
    })
}

/// Adds a subtree `name` to the root FDT, pointing at a blob of `size`
/// bytes at physical address `blob` (the kernel's `kho_add_subtree`). The
/// blob is not preserved by this call: preserve it too.
///
/// Returns 0, `-EEXIST` (the name is taken), `-ENOSPC` (the root FDT would
/// outgrow its page), `-EINVAL` (NULL, empty or invalid name, bad handle).
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`], used by no other call at
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
        Ok(to_c(o.tracker.add_subtree(name, PhysAddr::new(blob), size)))
    })
}

/// Removes the subtree whose blob is at physical address `blob` (the
/// kernel's `kho_remove_subtree`).
///
/// Returns 0, `-ENOENT`, `-EINVAL`.
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`], used by no other call at
/// the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_remove_subtree(out: *mut kho_out, blob: u64) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL, used exclusively (caller's promise).
        let o = unsafe { handle_mut(out)? };
        Ok(to_c(o.tracker.remove_subtree(PhysAddr::new(blob))))
    })
}

/// Calls `f(arg, pa, order)` for every preserved block, in the kernel's
/// order (larger orders first, then ascending PA).
///
/// Returns 0 after the last block, the callback's value if it returned
/// non-zero, or `-EINVAL` (NULL `f`, bad handle).
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`]; `f` is callable with
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
/// Returns as [`kho_out_walk_blocks`].
///
/// # Safety
///
/// As [`kho_out_walk_blocks`].
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
/// The handle is consumed whatever the result (except for `-EINVAL` on a
/// NULL `data` or a bad handle, which leave it alone). On `-ENOMEM` (no
/// page for the scratch array) the tracker's pages stay allocated.
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`] that no other call uses;
/// `data` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_finish(out: *mut kho_out, data: *mut kho_data) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let data = unsafe { arg_mut(data)? };
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        let Out { tracker, platform } = unsafe { take_handle(out)? };
        let finished = tracker.finish();
        drop(platform);
        *data = finished.map_err(|e| neg_errno(&e))?.into();
        Ok(KHO_OK)
    })
}

/// Gives up the outgoing side: frees the radix tree and the root FDT page,
/// then the handle. Preserved memory itself belongs to its owners and is
/// not touched. NULL (or an invalid handle) is ignored.
///
/// # Safety
///
/// `out` is NULL or a handle from [`kho_out_new`] that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_out_destroy(out: *mut kho_out) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        if let Ok(o) = unsafe { take_handle(out) } {
            o.destroy();
        }
    })
}
