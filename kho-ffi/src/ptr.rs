//! Every raw-pointer cast of the crate.
//!
//! A pointer from C becomes a Rust reference only through these helpers,
//! each of which checks what can be checked: NULL, alignment, sizes that a
//! slice cannot have, UTF-8, and for handles a magic number.
//!
//! # Handles
//!
//! An opaque C type (`struct kho_out`, ...) is a zero-sized marker that
//! implements [`Castable`]; the object behind the pointer is a
//! [`Tagged`] Rust value in its own heap allocation, which holds the
//! marker's magic number while it lives. The magic is checked on every
//! entry and overwritten when the handle is freed, so a handle used after
//! its `_destroy` is refused with `-EINVAL` as long as the allocator has not
//! reused its memory. The magic sits after the value, not at its start,
//! because allocators keep their own links in the first words of a freed
//! block.
//!
//! Detecting a stale handle reads freed memory, which is not something a
//! program may rely on; it catches common mistakes, it does not make them
//! correct.

use alloc::boxed::Box;
use core::alloc::Layout;
use core::ffi::{CStr, c_char, c_int};
use core::ptr::NonNull;

use crate::error::EINVAL;

/// Written over a freed handle's magic.
const FREED: u64 = 0xdead_dead_dead_dead;

/// An opaque C type standing for a Rust object.
///
/// # Safety
///
/// `MAGIC` must be unique among the implementations, and not [`FREED`].
pub(crate) unsafe trait Castable {
    /// The Rust object the C pointer stands for.
    type RustType;
    /// The number a live handle of this type holds.
    const MAGIC: u64;
}

/// The heap object behind a handle.
#[repr(C)]
pub(crate) struct Tagged<T> {
    value: T,
    magic: u64,
}

/// Moves `value` into a new heap allocation, or gives it back (without
/// aborting, as `Box::new` would) when the allocator is out of memory.
fn try_box<T>(value: T) -> Result<Box<T>, T> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout has a non-zero size.
    let raw = unsafe { alloc::alloc::alloc(layout) }.cast::<T>();
    let Some(raw) = NonNull::new(raw) else { return Err(value) };
    // SAFETY: `raw` is a fresh allocation of `T`'s layout, so writing a `T`
    // there is in bounds and aligned, and `Box::from_raw` may own it: it was
    // allocated by the global allocator with `Layout::new::<T>()`.
    unsafe {
        raw.as_ptr().write(value);
        Ok(Box::from_raw(raw.as_ptr()))
    }
}

/// Puts `value` in a new handle of type `C`; when out of memory, gives
/// `value` back so the caller can release what it holds.
pub(crate) fn new_handle<C: Castable>(value: C::RustType) -> Result<*mut C, C::RustType> {
    match try_box(Tagged { value, magic: C::MAGIC }) {
        Ok(tagged) => Ok(Box::into_raw(tagged).cast::<C>()),
        Err(Tagged { value, .. }) => Err(value),
    }
}

/// The [`Tagged`] behind `ptr` if `ptr` is a live handle of type `C`.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`new_handle::<C>`] (it may have been
/// freed since, see the module's notes).
unsafe fn checked<C: Castable>(ptr: *const C) -> Result<*mut Tagged<C::RustType>, c_int> {
    let tagged = ptr.cast::<Tagged<C::RustType>>().cast_mut();
    if tagged.is_null() || !tagged.is_aligned() {
        return Err(EINVAL);
    }
    // SAFETY: by the caller's promise the pointer came from `new_handle`,
    // so it points at a `Tagged` (or at its freed memory, read without
    // forming a reference, as the best-effort check of a stale handle).
    let magic = unsafe { core::ptr::addr_of!((*tagged).magic).read_volatile() };
    if magic != C::MAGIC {
        return Err(EINVAL);
    }
    Ok(tagged)
}

/// The object behind a handle, shared.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`new_handle::<C>`], and no `&mut` to
/// its object exists while the returned reference lives.
pub(crate) unsafe fn handle_ref<'a, C: Castable>(ptr: *const C) -> Result<&'a C::RustType, c_int> {
    // SAFETY: forwarded from the caller.
    let tagged = unsafe { checked(ptr)? };
    // SAFETY: the magic matched, so this is a live `Tagged` (the caller
    // promised no freed handle is reused as another object), and the caller
    // excludes a concurrent `&mut`.
    Ok(unsafe { &(*tagged).value })
}

/// The object behind a handle, exclusive.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`new_handle::<C>`], and no other
/// reference to its object exists while the returned one lives.
pub(crate) unsafe fn handle_mut<'a, C: Castable>(ptr: *mut C) -> Result<&'a mut C::RustType, c_int> {
    // SAFETY: forwarded from the caller.
    let tagged = unsafe { checked(ptr)? };
    // SAFETY: as in `handle_ref`; the caller guarantees exclusivity.
    Ok(unsafe { &mut (*tagged).value })
}

/// Takes the object out of a handle and frees the handle, whose magic is
/// overwritten first.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`new_handle::<C>`], and no reference
/// to its object exists.
pub(crate) unsafe fn take_handle<C: Castable>(ptr: *mut C) -> Result<C::RustType, c_int> {
    // SAFETY: forwarded from the caller.
    let tagged = unsafe { checked(ptr)? };
    // SAFETY: a live `Tagged` (checked above) that nothing else references;
    // it was made by `Box::into_raw` in `new_handle`, so `Box::from_raw`
    // takes it back exactly once (the magic is gone after this).
    let boxed = unsafe {
        core::ptr::addr_of_mut!((*tagged).magic).write_volatile(FREED);
        Box::from_raw(tagged)
    };
    let Tagged { value, .. } = *boxed;
    Ok(value)
}

/// A shared reference from a pointer argument: NULL or misaligned gives
/// `-EINVAL`.
///
/// # Safety
///
/// A non-NULL `ptr` points at a valid `T` that is not written while the
/// reference lives.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T) -> Result<&'a T, c_int> {
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(EINVAL);
    }
    // SAFETY: non-NULL and aligned (checked), valid by the caller's promise.
    Ok(unsafe { &*ptr })
}

/// An exclusive reference from an output argument: NULL or misaligned
/// gives `-EINVAL`.
///
/// # Safety
///
/// A non-NULL `ptr` is valid for writes of a `T` (its old contents need not
/// be a valid `T` only if `T` has no invalid bit patterns, which holds for
/// every type this is used with: integers, pointers, plain structs of them)
/// and nothing else accesses it while the reference lives.
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T, c_int> {
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(EINVAL);
    }
    // SAFETY: non-NULL and aligned (checked), valid and exclusive by the
    // caller's promise.
    Ok(unsafe { &mut *ptr })
}

/// An optional output argument: NULL gives `None`, misaligned `-EINVAL`.
///
/// # Safety
///
/// As [`arg_mut`] for a non-NULL `ptr`.
pub(crate) unsafe fn arg_opt_mut<'a, T>(ptr: *mut T) -> Result<Option<&'a mut T>, c_int> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    unsafe { arg_mut(ptr) }.map(Some)
}

/// Whether `len` elements of `T` fit in one Rust slice.
fn slice_fits<T>(len: usize) -> bool {
    len.checked_mul(size_of::<T>()).is_some_and(|bytes| bytes <= isize::MAX as usize)
}

/// A slice argument: `len == 0` gives an empty slice whatever `ptr` is;
/// otherwise NULL, misalignment or a byte size above `isize::MAX` give
/// `-EINVAL`.
///
/// # Safety
///
/// For `len > 0`, a non-NULL `ptr` points at `len` valid `T`s that are not
/// written while the slice lives.
pub(crate) unsafe fn arg_slice<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || !ptr.is_aligned() || !slice_fits::<T>(len) {
        return Err(EINVAL);
    }
    // SAFETY: non-NULL, aligned, a size a slice may have (checked), valid
    // and unaliased by the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice argument, with the checks of [`arg_slice`].
///
/// # Safety
///
/// For `len > 0`, a non-NULL `ptr` is valid for reads and writes of `len`
/// `T`s (any bit pattern valid) that nothing else accesses while the slice
/// lives.
pub(crate) unsafe fn arg_slice_mut<'a, T>(ptr: *mut T, len: usize) -> Result<&'a mut [T], c_int> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() || !ptr.is_aligned() || !slice_fits::<T>(len) {
        return Err(EINVAL);
    }
    // SAFETY: as in `arg_slice`, with exclusivity from the caller.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// A byte buffer argument (`const void *`, length in bytes).
///
/// # Safety
///
/// As [`arg_slice`] for bytes.
pub(crate) unsafe fn arg_bytes<'a>(ptr: *const core::ffi::c_void, len: usize) -> Result<&'a [u8], c_int> {
    // SAFETY: forwarded from the caller.
    unsafe { arg_slice(ptr.cast::<u8>(), len) }
}

/// A mutable byte buffer argument (`void *`, length in bytes).
///
/// # Safety
///
/// As [`arg_slice_mut`] for bytes.
pub(crate) unsafe fn arg_bytes_mut<'a>(ptr: *mut core::ffi::c_void, len: usize) -> Result<&'a mut [u8], c_int> {
    // SAFETY: forwarded from the caller.
    unsafe { arg_slice_mut(ptr.cast::<u8>(), len) }
}

/// A NUL-terminated UTF-8 string argument: NULL or invalid UTF-8 gives
/// `-EINVAL`.
///
/// # Safety
///
/// A non-NULL `ptr` points at a NUL-terminated string that is not written
/// while the returned `&str` lives.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char) -> Result<&'a str, c_int> {
    if ptr.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: non-NULL (checked), NUL-terminated and unchanging by the
    // caller's promise.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| EINVAL)
}

/// A shared view of `len` bytes of RAM the platform mapped, for a C
/// callback to read during the call.
///
/// # Safety
///
/// `ptr` came from `PhysMem::phys_to_virt(_, len)` on a platform that is
/// still alive, and nothing writes those bytes while the pointer is used.
pub(crate) unsafe fn mapped(ptr: NonNull<u8>) -> *const core::ffi::c_void {
    ptr.as_ptr().cast_const().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Marker;
    // SAFETY: a magic of its own.
    unsafe impl Castable for Marker {
        type RustType = [u64; 4];
        const MAGIC: u64 = 0x7465_7374;
    }

    #[test]
    fn handles_round_trip_and_are_checked() {
        let h = new_handle::<Marker>([1, 2, 3, 4]).ok().unwrap();
        // SAFETY: a live handle, no other reference.
        assert_eq!(unsafe { handle_ref(h) }.unwrap()[2], 3);
        // SAFETY: as above.
        unsafe { handle_mut(h) }.unwrap()[0] = 9;
        // SAFETY: as above.
        assert_eq!(unsafe { take_handle(h) }.unwrap(), [9, 2, 3, 4]);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { handle_ref::<Marker>(core::ptr::null()) }.err(), Some(EINVAL));
        let misaligned = core::ptr::without_provenance::<Marker>(4);
        // SAFETY: the pointer is refused before it is read.
        assert_eq!(unsafe { handle_ref(misaligned) }.err(), Some(EINVAL));
        let not_a_handle = [0u64; 5];
        // SAFETY: readable memory of a `Tagged<[u64; 4]>`'s size.
        assert_eq!(unsafe { handle_ref(not_a_handle.as_ptr().cast::<Marker>()) }.err(), Some(EINVAL));
    }

    #[test]
    fn slices_and_strings_are_checked() {
        let v = [1u64, 2, 3];
        // SAFETY: a valid array.
        assert_eq!(unsafe { arg_slice(v.as_ptr(), 3) }.unwrap(), &v);
        // SAFETY: len 0 never reads.
        assert!(unsafe { arg_slice::<u64>(core::ptr::null(), 0) }.unwrap().is_empty());
        // SAFETY: refused before reading.
        assert_eq!(unsafe { arg_slice::<u64>(core::ptr::null(), 1) }.err(), Some(EINVAL));
        // SAFETY: refused before reading.
        assert_eq!(unsafe { arg_slice(v.as_ptr(), usize::MAX / 4) }.err(), Some(EINVAL));
        // SAFETY: refused before reading.
        assert_eq!(unsafe { arg_slice(v.as_ptr().cast::<u8>().wrapping_add(1).cast::<u64>(), 1) }.err(), Some(EINVAL));
        // SAFETY: NUL-terminated.
        assert_eq!(unsafe { arg_str(c"abc".as_ptr()) }.unwrap(), "abc");
        // SAFETY: NUL-terminated.
        assert_eq!(unsafe { arg_str(c"\xff".as_ptr()) }.err(), Some(EINVAL));
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { arg_str(core::ptr::null()) }.err(), Some(EINVAL));
    }
}
