//! `struct kho_platform`: the embedder's memory, as callbacks.
//!
//! kho reaches memory only through the platform (see `kho_abi::platform`).
//! A C embedder describes its own as a struct of function pointers and a
//! context pointer passed back to each of them. The struct is copied and
//! checked when a handle is created (`kho_out_new`, `kho_in_import`, ...),
//! so the caller's copy need not outlive the call, but `ctx` and whatever
//! it points at must outlive every handle made from it.

use core::ffi::{c_int, c_void};
use core::ptr::NonNull;

use kho_abi::{AbiError, Order, PageAlloc, PhysAddr, PhysMem};

use crate::error::EINVAL;

/// Maps `len` bytes of RAM at physical address `pa`: returns a pointer
/// through which kho may read and write them, or NULL if any of them is
/// not RAM.
pub type kho_phys_to_virt_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, len: u64) -> *mut c_void>;

/// Allocates `2^order` zeroed pages, naturally aligned, storing their
/// physical address in `*pa_out`; returns 0, or a negative errno (usually
/// `-ENOMEM`).
pub type kho_alloc_pages_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, order: u32, pa_out: *mut u64) -> c_int>;

/// Frees `2^order` pages at `pa`: gives them to the embedder's page
/// allocator as free memory. kho calls it for
///
/// - pages `alloc_pages` returned, with the same order (tree nodes, the
///   root FDT page, chunk, block and array pages it allocated);
/// - pages of the **previous kernel** that this allocator never handed
///   out: kho_in_finish() frees the old radix tree's node pages and the
///   root FDT page, and restores free the chunk pages of a vmalloc area
///   and the pages of restored block sets and arrays when they are done
///   with them (order 0 each).
///
/// So `free_pages` must accept any page range of RAM, not only its own
/// allocations. It is never called for a block the caller restored with
/// kho_restore_folio() or kho_restore_pages(): those are the caller's.
pub type kho_free_pages_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, order: u32)>;

/// Whether the block of `2^order` pages at `pa` spans two NUMA nodes
/// (kho never preserves such a block).
pub type kho_crosses_node_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, pa: u64, order: u32) -> bool>;

/// The embedder's platform: how kho maps physical memory and allocates
/// pages.
///
/// The callbacks must obey this contract, on which kho's memory safety
/// rests:
///
/// - `phys_to_virt(ctx, pa, len)` returns NULL unless all of
///   `[pa, pa + len)` is RAM; otherwise a pointer valid for reads and
///   writes of `len` bytes, contiguous, with the same offset from an 8-byte
///   boundary as `pa`, valid as long as any handle made from this platform
///   lives, and to memory the embedder does not access while kho uses it
///   (except through kho's own results);
/// - `alloc_pages` returns zeroed, naturally aligned pages of RAM that
///   nothing else uses until they are passed to `free_pages`, and never
///   physical address 0; on the outgoing side, pages outside the next
///   kernel's scratch areas (kho_out_new() fails with -KHO_EBUSY if the
///   root FDT page lands in one, and a preserve of a block in one fails
///   with -KHO_EBUSY);
/// - `free_pages` takes back pages it never allocated: the previous
///   kernel's tree and FDT pages at kho_in_finish(), and pages restores
///   are done with (see `kho_free_pages_fn`);
/// - no callback unwinds (no C++ exception, no `longjmp`) through kho;
/// - callbacks are thread-safe if kho is called from several threads.
///
/// `crosses_node` may be NULL (one NUMA node). `max_order` is the largest
/// order the platform allocates or preserves (the kernel's
/// `MAX_PAGE_ORDER`, or a larger folio order); at most 52 with 4 KiB pages.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kho_platform {
    /// Passed as the first argument of every callback.
    pub ctx: *mut c_void,
    /// Required.
    pub phys_to_virt: kho_phys_to_virt_fn,
    /// Required.
    pub alloc_pages: kho_alloc_pages_fn,
    /// Required.
    pub free_pages: kho_free_pages_fn,
    /// Optional: NULL for a machine of one NUMA node.
    pub crosses_node: kho_crosses_node_fn,
    /// The largest order the platform allocates or preserves.
    pub max_order: u32,
}

/// A checked copy of a [`kho_platform`]: every required callback present,
/// `max_order` a valid order. Implements the `kho_abi` platform traits by
/// calling the embedder.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    ctx: *mut c_void,
    phys_to_virt: unsafe extern "C" fn(*mut c_void, u64, u64) -> *mut c_void,
    alloc_pages: unsafe extern "C" fn(*mut c_void, u32, *mut u64) -> c_int,
    free_pages: unsafe extern "C" fn(*mut c_void, u64, u32),
    crosses_node: kho_crosses_node_fn,
    max_order: Order,
}

impl Platform {
    /// Checks a C platform: `-EINVAL` if a required callback is NULL or
    /// `max_order` is not an order.
    pub fn new(c: &kho_platform) -> Result<Platform, c_int> {
        let (Some(phys_to_virt), Some(alloc_pages), Some(free_pages)) = (c.phys_to_virt, c.alloc_pages, c.free_pages)
        else {
            return Err(EINVAL);
        };
        let max_order = Order::new(u64::from(c.max_order), "kho_platform.max_order").map_err(|_| EINVAL)?;
        Ok(Platform { ctx: c.ctx, phys_to_virt, alloc_pages, free_pages, crosses_node: c.crosses_node, max_order })
    }
}

// SAFETY: every pointer returned is one the embedder's `phys_to_virt`
// returned for exactly `(pa, len)`; the embedder's documented contract
// (`kho_platform`) promises what `PhysMem` requires of it: RAM only,
// valid for `len` bytes, contiguous, alignment-preserving, alive as long
// as the platform, and untouched by the embedder while kho uses it. The
// alignment promise is also checked here, since atomics rely on it.
unsafe impl PhysMem for Platform {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        // SAFETY: the callback may be called with any arguments (the
        // contract of `kho_platform`): it refuses what is not RAM.
        let ptr = unsafe { (self.phys_to_virt)(self.ctx, pa.as_u64(), len) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(AbiError::NotRam { pa, len })?;
        if (ptr.as_ptr() as usize) % 8 != (pa.as_u64() % 8) as usize {
            return Err(AbiError::Misaligned { what: "kho_platform.phys_to_virt result", pa, align: 8 });
        }
        Ok(ptr)
    }

    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        match self.crosses_node {
            // SAFETY: as for `phys_to_virt`: callable with any arguments.
            Some(f) => unsafe { f(self.ctx, pa.as_u64(), order.get()) },
            None => false,
        }
    }
}

impl PageAlloc for Platform {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        let mut pa = 0u64;
        // SAFETY: callable with any order; `pa` is a valid `u64` to write.
        let rc = unsafe { (self.alloc_pages)(self.ctx, order.get(), &mut pa) };
        if rc != 0 {
            return Err(AbiError::NoMemory { order: order.get() });
        }
        let pa = PhysAddr::new(pa);
        // A page at 0 cannot be a tree node (0 is an empty slot); a
        // misaligned one breaks the contract. Refuse both rather than
        // build on them.
        let pa = pa.require_nonzero("kho_platform.alloc_pages result")?;
        order.require_aligned(pa, "kho_platform.alloc_pages result")
    }

    fn free_pages(&self, pa: PhysAddr, order: Order) {
        // SAFETY: kho frees only pages it allocated or claimed, at their
        // order, which is what the callback accepts.
        unsafe { (self.free_pages)(self.ctx, pa.as_u64(), order.get()) }
    }

    fn max_order(&self) -> Order {
        self.max_order
    }
}

/// Checks the platform argument of a constructor.
///
/// # Safety
///
/// A non-NULL `c` points at a valid `kho_platform`.
pub(crate) unsafe fn platform_arg(c: *const kho_platform) -> Result<Platform, c_int> {
    // SAFETY: forwarded from the caller.
    let c = unsafe { crate::ptr::arg_ref(c)? };
    Platform::new(c)
}
