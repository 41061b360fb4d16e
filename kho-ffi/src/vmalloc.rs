//! vmalloc areas (`vmalloc-v1`): `struct kho_vmalloc`.
//!
//! The outgoing kernel preserves an area given as the physical addresses
//! of its blocks ([`kho_preserve_vmalloc`]) and stores the resulting
//! descriptor in its own preserved data; the next kernel restores it
//! ([`kho_restore_vmalloc`], or [`kho_restore_vmalloc_each`] with a
//! callback) after checking every chunk and block.

use core::ffi::{c_int, c_void};

use ::kho_vmalloc::RestoredArea;
use kho_abi::{KhoVmalloc, PageAlloc, PhysAddr, VmallocFlags};

use crate::error::{EINVAL, KHO_ENOSPC, KHO_EOPNOTSUPP, KHO_OK};
use crate::inc::kho_in;
use crate::out::{kho_out, order_arg};
use crate::panic::guard;
use crate::ptr::{arg_mut, arg_opt_mut, arg_ref, arg_slice, arg_slice_mut, handle_ref};
use crate::wire::kho_vmalloc;

/// What a restore found (not a wire struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_vmalloc_area {
    /// Blocks handed to the caller.
    pub blocks: u64,
    /// Chunk pages the chain had (all freed).
    pub chunks: u64,
    /// Pages in the area (`blocks << order`).
    pub total_pages: u32,
    /// The area's flags.
    pub flags: u16,
    /// Order of every block.
    pub order: u16,
}

impl From<RestoredArea> for kho_vmalloc_area {
    fn from(a: RestoredArea) -> Self {
        kho_vmalloc_area {
            blocks: a.blocks,
            chunks: a.chunks,
            total_pages: a.total_pages,
            flags: a.flags.bits(),
            // An order fits in 16 bits (at most `KHO_ORDER_MAX`).
            order: a.order.get() as u16,
        }
    }
}

/// Called once per restored block, in the area's order.
pub type kho_pa_fn = Option<unsafe extern "C" fn(arg: *mut c_void, pa: u64)>;

/// Preserves a vmalloc area of `nr_blocks` blocks of `2^order` pages each,
/// whose physical addresses are `blocks[0..nr_blocks]` in virtual order
/// (the kernel's kho_preserve_vmalloc()), and stores its descriptor in
/// `*desc`. Every block is preserved at `order`; chunk pages listing them
/// are allocated from the platform and preserved. An empty area
/// (`nr_blocks` 0, `blocks` may be NULL) gives the all-zero descriptor.
///
/// @param out A handle from kho_out_new().
/// @param blocks Physical addresses of the area's blocks, in order.
/// @param nr_blocks Number of entries at `blocks`.
/// @param order Every block is 2^order pages.
/// @param flags KHO_VMALLOC_ALLOC and KHO_VMALLOC_HUGE_VMAP bits.
/// @param desc Receives the descriptor to embed in the caller's preserved data.
/// @return 0, -KHO_EOPNOTSUPP (flags other than `KHO_VMALLOC_ALLOC` and
///         `KHO_VMALLOC_HUGE_VMAP`), -KHO_ERANGE (order above the platform's
///         maximum, more than `UINT32_MAX` pages), -KHO_EINVAL (NULL arguments, a
///         zero or misaligned block), -KHO_EBUSY, -KHO_ENOMEM. On failure nothing
///         stays preserved.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `blocks` points at
/// `nr_blocks` readable addresses; `desc` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_preserve_vmalloc(
    out: *mut kho_out,
    blocks: *const u64,
    nr_blocks: usize,
    order: u32,
    flags: u16,
    desc: *mut kho_vmalloc,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let desc = unsafe { arg_mut(desc)? };
        // SAFETY: `nr_blocks` readable entries (caller's promise).
        let blocks = unsafe { arg_slice(blocks, nr_blocks)? };
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let order = order_arg(order)?;
        let flags = VmallocFlags::from_bits(flags).ok_or(-KHO_EOPNOTSUPP)?;
        let p = o.with_tracker(o.platform());
        let d = ::kho_vmalloc::preserve(&p, blocks.iter().map(|&b| PhysAddr::new(b)), order, flags)
            .map_err(|e| o.last.fail(&e))?;
        *desc = d.into();
        Ok(KHO_OK)
    })
}

/// Undoes kho_preserve_vmalloc(): unpreserves every block and chunk page
/// `*desc` lists and frees the chunk pages (the kernel's
/// kho_unpreserve_vmalloc()).
///
/// @param out A handle from kho_out_new().
/// @param desc The descriptor kho_preserve_vmalloc() wrote.
/// @return 0, -KHO_EINVAL, -KHO_EOPNOTSUPP, -KHO_ERANGE (a descriptor this
///         platform could not have made), -KHO_ENOENT (something was not preserved;
///         the rest is unpreserved all the same).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `desc` is NULL or
/// readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_unpreserve_vmalloc(out: *mut kho_out, desc: *const kho_vmalloc) -> c_int {
    guard(|| {
        // SAFETY: NULL or readable (caller's promise).
        let desc: KhoVmalloc = (*unsafe { arg_ref(desc)? }).into();
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let p = o.with_tracker(o.platform());
        ::kho_vmalloc::unpreserve(&p, &desc).map_err(|e| o.last.fail(&e))?;
        Ok(KHO_OK)
    })
}

/// Checks `*desc` alone and stores in `*nr_blocks` the number of blocks
/// the area has, to size the array kho_restore_vmalloc() fills.
///
/// @param inc A handle from kho_in_import().
/// @param desc The descriptor the previous kernel stored.
/// @param nr_blocks Receives the number of blocks the area has.
/// @return 0, -KHO_EINVAL, -KHO_EOPNOTSUPP, -KHO_ERANGE.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `desc` is NULL or
/// readable; `nr_blocks` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_vmalloc_nr_blocks(
    inc: *const kho_in,
    desc: *const kho_vmalloc,
    nr_blocks: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let nr = unsafe { arg_mut(nr_blocks)? };
        // SAFETY: NULL or readable (caller's promise).
        let desc: KhoVmalloc = (*unsafe { arg_ref(desc)? }).into();
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        *nr = ::kho_vmalloc::block_count(&desc, i.platform().max_order()).map_err(|e| i.last.fail(&e))?;
        Ok(KHO_OK)
    })
}

/// Restores the area `*desc` describes (the kernel's
/// kho_restore_vmalloc(), without the mapping): checks and claims every
/// chunk page and block, writes the blocks' physical addresses in order to
/// `blocks[0..]`, frees the chunk pages, and stores what it found in
/// `*area` unless `area` is NULL. The blocks are the caller's from then on,
/// as if it had allocated them at the area's order.
///
/// @param inc A handle from kho_in_import().
/// @param desc The descriptor the previous kernel stored.
/// @param blocks Receives the blocks' physical addresses, in order.
/// @param cap Entries `blocks` can hold.
/// @param area NULL, or receives what the area holds.
/// @return 0, -KHO_ENOSPC (`cap` below the block count; nothing claimed),
///         -KHO_EINVAL (NULL arguments, any malformed chunk or entry), -KHO_ENOENT (a
///         chunk or block that was not preserved), -KHO_EOPNOTSUPP, -KHO_ERANGE. On
///         failure nothing is claimed.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `desc` is NULL or
/// readable; `blocks` is writable for `cap` addresses; `area` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_restore_vmalloc(
    inc: *mut kho_in,
    desc: *const kho_vmalloc,
    blocks: *mut u64,
    cap: usize,
    area: *mut kho_vmalloc_area,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let area = unsafe { arg_opt_mut(area)? };
        // SAFETY: writable for `cap` entries (caller's promise).
        let blocks = unsafe { arg_slice_mut(blocks, cap)? };
        // SAFETY: NULL or readable (caller's promise).
        let desc: KhoVmalloc = (*unsafe { arg_ref(desc)? }).into();
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        let need = ::kho_vmalloc::block_count(&desc, p.max_order()).map_err(|e| i.last.fail(&e))?;
        if need > blocks.len() as u64 {
            return Err(-KHO_ENOSPC);
        }
        let mut slots = blocks.iter_mut();
        let restored = ::kho_vmalloc::restore(&p, &desc, |pa| {
            if let Some(slot) = slots.next() {
                *slot = pa.as_u64();
            }
        })
        .map_err(|e| i.last.fail(&e))?;
        if let Some(area) = area {
            *area = restored.into();
        }
        Ok(KHO_OK)
    })
}

/// kho_restore_vmalloc() handing each block to `f(arg, pa)` instead of an
/// array. `f` runs only once the whole area is checked and claimed, so it
/// never sees a block of an area that fails.
///
/// @param inc A handle from kho_in_import().
/// @param desc The descriptor the previous kernel stored.
/// @param f Called as `f(arg, pa)` per block, in order, once the whole area is checked.
/// @param arg Passed to `f` unchanged.
/// @param area NULL, or receives what the area holds.
/// @return as kho_restore_vmalloc() (without -KHO_ENOSPC; NULL `f` is
///         -KHO_EINVAL).
///
/// # Safety
///
/// As kho_restore_vmalloc(); `f` is callable with `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_restore_vmalloc_each(
    inc: *mut kho_in,
    desc: *const kho_vmalloc,
    f: kho_pa_fn,
    arg: *mut c_void,
    area: *mut kho_vmalloc_area,
) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: NULL or writable (caller's promise).
        let area = unsafe { arg_opt_mut(area)? };
        // SAFETY: NULL or readable (caller's promise).
        let desc: KhoVmalloc = (*unsafe { arg_ref(desc)? }).into();
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        // SAFETY: `f` is callable with `arg` (caller's promise).
        let restored =
            ::kho_vmalloc::restore(&p, &desc, |pa| unsafe { f(arg, pa.as_u64()) }).map_err(|e| i.last.fail(&e))?;
        if let Some(area) = area {
            *area = restored.into();
        }
        Ok(KHO_OK)
    })
}
