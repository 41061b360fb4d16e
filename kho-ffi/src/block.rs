//! Block sets (`block-v1`): `struct kho_block_set` (built for the next
//! kernel) and `struct kho_block_restored` (adopted from the previous one).
//!
//! A block set holds entries of one fixed size in a chain of preserved
//! pages; the user stores its head PA in their own preserved data. The
//! outgoing kernel reserves capacity ahead of time ([`kho_block_grow`],
//! which allocates and preserves pages) and then appends without
//! allocating ([`kho_block_push`]); every block's count is current after
//! each call, so there is no finalize step. The next kernel adopts the
//! chain with [`kho_block_restore`], which checks every link and count.
//!
//! Each set remembers the platform of the handle it was made with, for
//! reading; functions that preserve take the `struct kho_out *` first and
//! functions that claim the `struct kho_in *`.

use core::ffi::{c_int, c_void};

use kho_abi::{PhysAddr, PhysMem};
use kho_block::{RawBlockSet, RawCursor, RestoredRawBlockSet};

use crate::error::{EINVAL, KHO_ENOENT, KHO_ENOMEM, KHO_OK, neg_errno, to_c};
use crate::inc::kho_in;
use crate::out::kho_out;
use crate::panic::{guard, guard_or};
use crate::platform::Platform;
use crate::ptr::{
    Castable, arg_bytes, arg_bytes_mut, arg_mut, arg_opt_mut, handle_mut, handle_ref, mapped, new_handle, take_handle,
};

/// A block set being built for the next kernel. Opaque; made by
/// [`kho_block_set_new`].
pub struct kho_block_set {
    _private: [u8; 0],
}

/// A block set adopted from the previous kernel. Opaque; made by
/// [`kho_block_restore`].
pub struct kho_block_restored {
    _private: [u8; 0],
}

/// The shape and state of a block set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_block_info {
    /// PA of the first block, 0 while the set is empty: what the next
    /// kernel's [`kho_block_restore`] takes.
    pub head: u64,
    /// Entries written (or restored).
    pub len: u64,
    /// Entries reserved by [`kho_block_grow`] (equal to `len` for a
    /// restored set).
    pub capacity: u64,
    /// Block pages held.
    pub blocks: u64,
    /// Bytes per entry.
    pub entry_size: u64,
    /// Entries per block: `(KHO_PAGE_SIZE - 16) / entry_size`.
    pub entries_per_block: u64,
}

/// Called once per entry, in order: `entry` maps its `entry_size` bytes
/// (valid during the call), `pa` is its physical address. Return 0 to go
/// on; any other value stops the walk and is what it returns.
pub type kho_entry_fn =
    Option<unsafe extern "C" fn(arg: *mut c_void, entry: *const c_void, entry_size: usize, pa: u64) -> c_int>;

/// What a [`kho_block_set`] handle owns.
pub(crate) struct BlockOut {
    set: RawBlockSet,
    mem: Platform,
}

/// What a [`kho_block_restored`] handle owns.
pub(crate) struct BlockIn {
    set: RestoredRawBlockSet,
    mem: Platform,
}

// SAFETY: a magic of its own ("KHO_BSO1").
unsafe impl Castable for kho_block_set {
    type RustType = BlockOut;
    const MAGIC: u64 = 0x4b48_4f5f_4253_4f31;
}

// SAFETY: a magic of its own ("KHO_BSI1").
unsafe impl Castable for kho_block_restored {
    type RustType = BlockIn;
    const MAGIC: u64 = 0x4b48_4f5f_4253_4931;
}

/// Calls `f` on every entry a cursor yields, mapped through `mem`.
fn for_each_entry<P: PhysMem + ?Sized>(
    mem: &Platform,
    cursor: RawCursor<'_, P>,
    mut f: impl FnMut(*const c_void, usize, u64) -> c_int,
) -> c_int {
    let size = cursor.entry_size();
    for pa in cursor {
        let pa = match pa {
            Ok(pa) => pa,
            Err(e) => return neg_errno(&e),
        };
        let ptr = match mem.phys_to_virt(pa, size as u64) {
            Ok(p) => p,
            Err(e) => return neg_errno(&e),
        };
        // SAFETY: `ptr` was just mapped for `size` bytes by the live
        // platform; the entry is not written while the callback reads it
        // (the set is borrowed shared for the whole walk).
        let v = f(unsafe { mapped(ptr) }, size, pa.as_u64());
        if v != 0 {
            return v;
        }
    }
    KHO_OK
}

/// Copies whole entries from the start of a cursor into `buf`; stores how
/// many in `*nr`.
fn read_entries<P: PhysMem + ?Sized>(mut cursor: RawCursor<'_, P>, buf: &mut [u8], nr: &mut usize) -> c_int {
    let whole = buf.len() - buf.len() % cursor.entry_size();
    match cursor.read_into(&mut buf[..whole]) {
        Ok(n) => {
            *nr = n;
            KHO_OK
        }
        Err(e) => neg_errno(&e),
    }
}

/// Creates an empty block set of entries of `entry_size` bytes (no pages
/// yet) on the platform of `out`, and stores it in `*set`.
///
/// @param out A handle from kho_out_new(): the set preserves through it.
/// @param entry_size Bytes per entry, 1 to KHO_PAGE_SIZE - 16.
/// @param set Receives the new set, NULL on failure.
/// @return 0, -KHO_EINVAL (NULL arguments, `entry_size` 0 or above
///         `KHO_PAGE_SIZE - 16`), -KHO_ENOMEM.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `set` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_set_new(
    out: *const kho_out,
    entry_size: usize,
    set: *mut *mut kho_block_set,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(set)? };
        *slot = core::ptr::null_mut();
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        let raw = RawBlockSet::new(entry_size).map_err(|e| o.last.fail(&e))?;
        *slot = new_handle::<kho_block_set>(BlockOut { set: raw, mem: *o.platform() }).map_err(|_| -KHO_ENOMEM)?;
        Ok(KHO_OK)
    })
}

/// Reserves capacity for `n` more entries, allocating and preserving the
/// pages needed. All or nothing.
///
/// @param out A handle from kho_out_new().
/// @param set A block set handle.
/// @param n Entries of capacity to add.
/// @return 0, -KHO_ENOSPC (the chain would exceed `KHO_BLOCK_CHAIN_MAX`
///         blocks), -KHO_ENOMEM, -KHO_EBUSY, -KHO_EINVAL.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `set` is NULL or a handle
/// from kho_block_set_new() that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_grow(out: *mut kho_out, set: *mut kho_block_set, n: usize) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let s = unsafe { handle_mut(set)? };
        Ok(o.last.rc(s.set.grow(&o.with_tracker(&s.mem), n)))
    })
}

/// Gives back capacity for `n` entries from the tail: entries beyond the
/// new capacity are dropped, pages no longer needed unpreserved and freed.
///
/// @param out A handle from kho_out_new().
/// @param set A block set handle.
/// @param n Entries of capacity to give back.
/// @return 0, -KHO_EINVAL (`n` above the capacity, bad handles), -KHO_ENOENT.
///
/// # Safety
///
/// As kho_block_grow().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_shrink(out: *mut kho_out, set: *mut kho_block_set, n: usize) -> c_int {
    guard(|| {
        // SAFETY: a handle or NULL (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let s = unsafe { handle_mut(set)? };
        Ok(o.last.rc(s.set.shrink(&o.with_tracker(&s.mem), n)))
    })
}

/// Appends the entries packed in `entries` (`len` bytes, a multiple of the
/// entry size; one entry is the usual case) within the reserved capacity.
/// All of them or none.
///
/// @param set A block set handle.
/// @param entries The entries, packed.
/// @param len Bytes at `entries`, a non-zero multiple of the entry size.
/// @return 0, -KHO_ENOSPC (not enough reserved capacity), -KHO_EINVAL (`len`
///         not a non-zero multiple of the entry size, NULL arguments).
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_set_new() that no other call
/// uses; `entries` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_push(set: *mut kho_block_set, entries: *const c_void, len: usize) -> c_int {
    guard(|| {
        // SAFETY: readable for `len` bytes (caller's promise).
        let bytes = unsafe { arg_bytes(entries, len)? };
        if bytes.is_empty() {
            return Err(EINVAL);
        }
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let s = unsafe { handle_mut(set)? };
        let BlockOut { set, mem } = s;
        Ok(to_c(set.writer(&*mem).extend(bytes)))
    })
}

/// Steps back over the last entry (un-writing it) and stores its physical
/// address in `*pa` unless `pa` is NULL: how a serialization that failed
/// part-way is unwound.
///
/// @param set A block set handle.
/// @param pa NULL, or receives the physical address of the entry stepped back over.
/// @return 0, -KHO_ENOENT (the set is empty), -KHO_EINVAL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_set_new() that no other call
/// uses; `pa` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_pop(set: *mut kho_block_set, pa: *mut u64) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let pa = unsafe { arg_opt_mut(pa)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let s = unsafe { handle_mut(set)? };
        let BlockOut { set, mem } = s;
        match set.writer(&*mem).prev().map_err(|e| neg_errno(&e))? {
            Some(at) => {
                if let Some(pa) = pa {
                    *pa = at.as_u64();
                }
                Ok(KHO_OK)
            }
            None => Err(-KHO_ENOENT),
        }
    })
}

/// Stores the set's state in `*info`.
///
/// @param set A block set handle.
/// @param info Receives the state.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_set_new(); `info` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_set_info(set: *const kho_block_set, info: *mut kho_block_info) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let info = unsafe { arg_mut(info)? };
        // SAFETY: a handle or NULL (caller's promise).
        let s = unsafe { handle_ref(set)? };
        *info = kho_block_info {
            head: s.set.head().as_u64(),
            len: s.set.len() as u64,
            capacity: s.set.capacity() as u64,
            blocks: s.set.blocks() as u64,
            entry_size: s.set.entry_size() as u64,
            entries_per_block: s.set.entries_per_block() as u64,
        };
        Ok(KHO_OK)
    })
}

/// Calls `f(arg, entry, entry_size, pa)` for every entry written, in
/// order.
///
/// @param set A block set handle.
/// @param f Called as `f(arg, entry, size, pa)` per entry, in order; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last entry, the callback's value if it returned
///         non-zero, -KHO_EINVAL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_set_new(); `f` is callable
/// with `arg` and does not change the set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_set_for_each(set: *const kho_block_set, f: kho_entry_fn, arg: *mut c_void) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let s = unsafe { handle_ref(set)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        Ok(for_each_entry(&s.mem, s.set.iter(&s.mem), |e, size, pa| unsafe { f(arg, e, size, pa) }))
    })
}

/// Gives the set up: unpreserves and frees every block page, then frees
/// the handle. A NULL `set` is ignored (returns 0).
///
/// @param out The handle the set preserves through.
/// @param set The set, or NULL.
/// @return 0, or -KHO_EINVAL / -KHO_ENOENT (the tracker refused to unpreserve
///         a block: the handle stays valid and can be destroyed again).
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `set` is NULL or a handle
/// from kho_block_set_new() that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_set_destroy(out: *mut kho_out, set: *mut kho_block_set) -> c_int {
    guard(|| {
        if set.is_null() {
            return Ok(KHO_OK);
        }
        // SAFETY: a handle (caller's promise).
        let o = unsafe { handle_ref(out)? };
        // SAFETY: a handle or NULL used exclusively (caller's promise).
        let s = unsafe { handle_mut(set)? };
        s.set.destroy(&o.with_tracker(&s.mem)).map_err(|e| o.last.fail(&e))?;
        // SAFETY: checked just above; no reference to it is used after this.
        let _ = unsafe { take_handle(set) };
        Ok(KHO_OK)
    })
}

/// Frees the handle alone: the block pages stay preserved, as they are
/// handed to the next kernel (read the head with kho_block_set_info()
/// first). NULL (or an invalid handle) is ignored.
///
/// @param set The set, or NULL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_set_new() that no other call
/// uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_set_free(set: *mut kho_block_set) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        let _ = unsafe { take_handle(set) };
    })
}

/// Adopts the block set whose first block is at `head` (0: empty set),
/// of entries of `entry_size` bytes (what the user's own format implies),
/// and stores it in `*set`. Every block is checked (alignment, RAM, at
/// most `KHO_BLOCK_CHAIN_MAX` blocks, no cycle, count in range) and
/// claimed.
///
/// @param inc A handle from kho_in_import().
/// @param head Physical address of the first block, from the caller's preserved data (0: empty set).
/// @param entry_size Bytes per entry, 1 to KHO_PAGE_SIZE - 16.
/// @param set Receives the restored set, NULL on failure.
/// @return 0, -KHO_EINVAL (NULL arguments, bad entry size, a malformed chain,
///         a block that was not preserved), -KHO_ENOMEM. On failure nothing stays
///         claimed.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `set` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_restore(
    inc: *mut kho_in,
    head: u64,
    entry_size: usize,
    set: *mut *mut kho_block_restored,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(set)? };
        *slot = core::ptr::null_mut();
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        let restored =
            RestoredRawBlockSet::restore(&p, PhysAddr::new(head), entry_size).map_err(|e| i.last.fail(&e))?;
        match new_handle::<kho_block_restored>(BlockIn { set: restored, mem: *i.platform() }) {
            Ok(h) => {
                *slot = h;
                Ok(KHO_OK)
            }
            Err(b) => {
                b.set.unclaim(&p);
                Err(-KHO_ENOMEM)
            }
        }
    })
}

/// Stores a restored set's state in `*info`.
///
/// @param set A restored set.
/// @param info Receives the state.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_restore(); `info` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_restored_info(set: *const kho_block_restored, info: *mut kho_block_info) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let info = unsafe { arg_mut(info)? };
        // SAFETY: a handle or NULL (caller's promise).
        let s = unsafe { handle_ref(set)? };
        let size = s.set.entry_size();
        *info = kho_block_info {
            head: s.set.head().as_u64(),
            len: s.set.len() as u64,
            capacity: s.set.len() as u64,
            blocks: s.set.blocks() as u64,
            entry_size: size as u64,
            entries_per_block: kho_abi::entries_per_block(size).unwrap_or(0) as u64,
        };
        Ok(KHO_OK)
    })
}

/// Calls `f(arg, entry, entry_size, pa)` for every entry of a restored
/// set, in order.
///
/// @param set A restored set.
/// @param f Called as `f(arg, entry, size, pa)` per entry, in order; a non-zero result stops the walk.
/// @param arg Passed to `f` unchanged.
/// @return 0 after the last entry, the callback's value if it returned
///         non-zero, -KHO_EINVAL (also if the chain was overwritten since the
///         restore).
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_restore(); `f` is callable
/// with `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_restored_for_each(
    set: *const kho_block_restored,
    f: kho_entry_fn,
    arg: *mut c_void,
) -> c_int {
    guard(|| {
        let f = f.ok_or(EINVAL)?;
        // SAFETY: a handle or NULL (caller's promise).
        let s = unsafe { handle_ref(set)? };
        // SAFETY: `f` is callable with `arg` (caller's promise).
        Ok(for_each_entry(&s.mem, s.set.iter(&s.mem), |e, size, pa| unsafe { f(arg, e, size, pa) }))
    })
}

/// Copies the first entries of a restored set into `buf` (`len` bytes):
/// as many whole entries as fit, their number stored in `*nr`. At
/// memcpy speed, a block at a time.
///
/// @param set A restored set.
/// @param buf Receives whole entries, from the first.
/// @param len Bytes at `buf`.
/// @param nr Receives the number of entries copied.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_restore(); `buf` is writable
/// for `len` bytes; `nr` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_restored_read(
    set: *const kho_block_restored,
    buf: *mut c_void,
    len: usize,
    nr: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let nr = unsafe { arg_mut(nr)? };
        // SAFETY: writable for `len` bytes (caller's promise).
        let buf = unsafe { arg_bytes_mut(buf, len)? };
        // SAFETY: a handle or NULL (caller's promise).
        let s = unsafe { handle_ref(set)? };
        Ok(read_entries(s.set.iter(&s.mem), buf, nr))
    })
}

/// Frees every block page of a restored set (they are the platform's
/// again), then the handle. NULL (or an invalid handle) is ignored.
///
/// @param set A restored set, or NULL.
///
/// # Safety
///
/// `set` is NULL or a handle from kho_block_restore() that no other call
/// uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_block_restored_free(set: *mut kho_block_restored) {
    guard_or((), || {
        // SAFETY: a handle or NULL that nothing else uses (caller's promise).
        if let Ok(BlockIn { set, mem }) = unsafe { take_handle(set) } {
            let _ = set.free(&mem);
        }
    })
}
