//! The panic boundary.
//!
//! A Rust panic must never unwind into C. The hosted build (feature `std`)
//! runs the body of every export inside a guard, which catches a panic and
//! returns [`KHO_ENOTRECOVERABLE`]
//! negated instead. The freestanding build cannot unwind at all (its
//! target aborts on panic): its panic handler traps, the way a kernel's
//! `BUG()` does.
//!
//! kho does not panic on input by design (no `unwrap` on anything that came
//! from outside); the boundary is for bugs.

use core::ffi::c_int;

use crate::error::KHO_ENOTRECOVERABLE;

/// Runs `body`, turning a panic into `on_panic` (hosted build), or just runs
/// it (freestanding build, where a panic traps).
#[cfg(feature = "std")]
pub(crate) fn guard_or<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Runs `body`, turning a panic into `on_panic` (hosted build), or just runs
/// it (freestanding build, where a panic traps).
#[cfg(not(feature = "std"))]
pub(crate) fn guard_or<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    let _ = on_panic;
    body()
}

/// [`guard_or`] for the usual `0` / `-errno` result: a panic becomes
/// `-ENOTRECOVERABLE`.
pub(crate) fn guard(body: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    guard_or(-KHO_ENOTRECOVERABLE, || body().unwrap_or_else(|e| e))
}

/// Stops the machine: the freestanding build's answer to a panic.
#[cfg(not(feature = "std"))]
fn trap() -> ! {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `ud2` raises an invalid-opcode exception and never returns,
    // as `noreturn` states; it touches no memory.
    unsafe {
        core::arch::asm!("ud2", options(noreturn, nomem, nostack))
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `udf` raises an undefined-instruction exception and never
    // returns, as `noreturn` states; it touches no memory.
    unsafe {
        core::arch::asm!("udf #0", options(noreturn, nomem, nostack))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(all(not(feature = "std"), not(test)))]
#[panic_handler]
fn on_panic(_: &core::panic::PanicInfo<'_>) -> ! {
    trap()
}

/// The freestanding build's heap: forwarded to the embedder.
///
/// kho allocates its handles and its bookkeeping (the tracker's list of
/// scratch areas and subtrees, the FDT it builds, the set of tree pages an
/// import found) from the Rust heap; never the pages it hands over, which
/// come from the platform. Without `std` there is no heap but the one the
/// embedder provides through these two functions.
#[cfg(not(feature = "std"))]
mod host {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ffi::c_void;

    unsafe extern "C" {
        /// Provided by the embedder of the freestanding archive (the hosted
        /// one uses the C library's `malloc`): returns `size` bytes aligned
        /// to `align` (a power of two) that nothing else uses until
        /// `kho_host_free`, or NULL.
        fn kho_host_alloc(size: usize, align: usize) -> *mut c_void;
        /// Provided by the embedder of the freestanding archive: takes back
        /// what `kho_host_alloc(size, align)` returned.
        fn kho_host_free(ptr: *mut c_void, size: usize, align: usize);
    }

    /// The allocator that calls the embedder's functions.
    struct HostHeap;

    // SAFETY: the embedder's documented contract (README, "Linking kho
    // from C", and the header) is that `kho_host_alloc` returns NULL or
    // memory of `size` bytes aligned to `align` that nothing else uses until
    // it is passed to `kho_host_free` with the same size and alignment,
    // which is what `GlobalAlloc` requires.
    unsafe impl GlobalAlloc for HostHeap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the embedder's functions accept any size and any
            // power-of-two alignment (their contract, above).
            unsafe { kho_host_alloc(layout.size(), layout.align()).cast() }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `GlobalAlloc` callers pass a pointer `alloc` returned
            // for this layout, which is what `kho_host_free` takes.
            unsafe { kho_host_free(ptr.cast(), layout.size(), layout.align()) }
        }
    }

    #[global_allocator]
    static HEAP: HostHeap = HostHeap;
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_enotrecoverable() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = guard(|| panic!("a bug"));
        std::panic::set_hook(hook);
        assert_eq!(r, -KHO_ENOTRECOVERABLE);
        assert_eq!(guard(|| Ok(7)), 7);
        assert_eq!(guard(|| Err(-22)), -22);
        assert_eq!(guard_or(5u8, || 3u8), 3);
    }
}
