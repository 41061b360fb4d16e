//! The platform seam: how kho reaches memory.
//!
//! kho never touches memory except through these traits, implemented by
//! whoever embeds it — a kernel's linear map, firmware's identity map, or
//! `kho-sim`. There is no global state: every operation takes its platform
//! explicitly.
//!
//! - [`PhysMem`] turns a PA into a pointer and refuses PAs outside RAM; this
//!   is where every address read from incoming state is bounds-checked.
//! - [`PageAlloc`] hands out and takes back zeroed pages by order; all
//!   metadata pages come from it, never from a global allocator.
//! - [`Preserve`] and [`Claim`] are the tracker's side of the seam: marking
//!   blocks for the next kernel and, in the next kernel, taking ownership
//!   of them. `kho-track` implements both; primitives such as block sets
//!   and vmalloc areas only depend on the traits, so each can be tested
//!   alone and used by a kernel with a tracker of its own.
//!
//! Every trait is implemented for `&T` and `&mut T`, and with the `alloc`
//! feature for `Box<T>` and `Arc<T>`, so a value that owns its platform
//! (`kho_track::Tracker<P>`) can hold a borrow or a shared one alike.
//!
//! Only [`PhysMem`] is an `unsafe trait`: it is the one promise `unsafe`
//! code relies on. RAM is touched by copies ([`read_phys`], [`write_phys`])
//! or through [`PageWords`], a page seen in place as atomic words; no
//! exclusive reference to RAM is ever formed, so the uniqueness that
//! [`PageAlloc`] and [`Claim`] promise is a matter of correctness, not of
//! memory safety, and those traits are safe.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;
use crate::geometry::PAGE_SIZE;

/// Translation of physical addresses to pointers.
///
/// # Safety
///
/// An implementation promises, for every `Ok(ptr)` returned by
/// [`phys_to_virt`](PhysMem::phys_to_virt) for `(pa, len)`:
///
/// - `ptr` is valid for reads and writes of `len` bytes, and those bytes are
///   the RAM at `pa..pa + len`, contiguous in virtual memory;
/// - `ptr` has the same offset from an 8-byte boundary as `pa` (so aligned
///   PAs give aligned pointers, which atomics rely on);
/// - the pointer stays valid for as long as the platform value lives;
/// - the implementation itself does not read or write those bytes while kho
///   holds them, except where its own documentation says so (for example a
///   simulator poisoning free pages at a defined point).
///
/// It refuses (`Err(NotRam)`) any range not entirely inside RAM.
pub unsafe trait PhysMem {
    /// A pointer to `len` bytes of RAM at `pa`, or `NotRam`.
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError>;

    /// Whether `len` bytes at `pa` are RAM: exactly when
    /// [`phys_to_virt`](PhysMem::phys_to_virt) of the same range would
    /// succeed. The tracker asks this of every block it preserves and of
    /// every run of blocks it imports, without touching them. The default
    /// translates and drops the pointer; a platform whose translation does
    /// more than look the range up (a simulator logging the pages it hands
    /// out) can answer from its RAM ranges instead. No pointer is derived
    /// from the answer, so a wrong one is a wrong check (a block outside
    /// RAM accepted or RAM refused), never unsoundness; on `false` the
    /// tracker still reports `phys_to_virt`'s own error.
    #[inline]
    fn is_ram(&self, pa: PhysAddr, len: u64) -> bool {
        self.phys_to_virt(pa, len).is_ok()
    }

    /// Whether a block of `order` at `pa` spans more than one NUMA node;
    /// the tracker never preserves such a block. The default knows of one
    /// node only.
    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        let _ = (pa, order);
        false
    }
}

/// Allocation of zeroed pages.
///
/// An implementation hands a page to one user at a time: from
/// [`alloc_pages`](PageAlloc::alloc_pages) until
/// [`free_pages`](PageAlloc::free_pages), nothing else uses it. kho builds
/// on that for correctness (a page handed out twice is corrupted data), but
/// no `unsafe` code relies on it, which is why the trait is safe: kho never
/// forms an exclusive reference to RAM, only copies ([`read_phys`],
/// [`write_phys`]) and shared atomic views ([`PageWords`]), whose soundness
/// rests on [`PhysMem`] alone.
pub trait PageAlloc {
    /// Allocates `2^order` zeroed, naturally aligned pages.
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError>;

    /// Returns pages obtained from [`alloc_pages`](PageAlloc::alloc_pages)
    /// with the same order, or adopted through [`Claim`]. The caller no
    /// longer uses them.
    fn free_pages(&self, pa: PhysAddr, order: Order);

    /// The largest order this platform allocates or preserves (the kernel's
    /// `MAX_PAGE_ORDER`, or a larger folio order where huge folios exist).
    fn max_order(&self) -> Order;
}

/// The outgoing side of the tracker: blocks marked for the next kernel.
pub trait Preserve {
    /// Marks a block of `2^order` pages at `pa` as preserved.
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError>;

    /// Undoes [`preserve`](Preserve::preserve) of the same block.
    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError>;
}

/// The incoming side of the tracker: taking ownership of preserved blocks.
///
/// A successful [`claim`](Claim::claim) is exclusive until
/// [`unclaim`](Claim::unclaim): that is what makes a block restore once.
/// As for [`PageAlloc`], kho's correctness builds on it and its memory
/// safety does not, so the trait is safe.
pub trait Claim {
    /// Takes ownership of the block at `pa`: fails with `NotPreserved`
    /// unless exactly that block was preserved with that order and has not
    /// been claimed before.
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError>;

    /// Gives a claimed block back, as if it had never been claimed (used to
    /// undo a restore that failed part-way).
    fn unclaim(&self, pa: PhysAddr, order: Order);
}

/// Forwards [`PhysMem`] from a pointer type to its target, so a value that
/// owns its platform (`kho_track::Tracker<P>`, `Incoming<P>`) can hold a
/// borrow (`&Machine`), an exclusive borrow, or a shared or boxed platform
/// alike.
macro_rules! forward_platform {
    ($($(#[$attr:meta])* [$($gen:tt)*] $ty:ty;)*) => {$(
        $(#[$attr])*
        // SAFETY: every pointer comes from `T::phys_to_virt` for the same
        // `(pa, len)` and carries `T`'s guarantees unchanged. The pointer
        // type lives no longer than the `T` it reaches (a borrow ends
        // before its referent; a `Box` or the last `Arc` owns it), so "as
        // long as the platform value lives" still holds.
        unsafe impl<$($gen)*> PhysMem for $ty {
            #[inline(always)]
            fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
                (**self).phys_to_virt(pa, len)
            }

            #[inline(always)]
            fn is_ram(&self, pa: PhysAddr, len: u64) -> bool {
                (**self).is_ram(pa, len)
            }

            #[inline(always)]
            fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
                (**self).crosses_node(pa, order)
            }
        }
    )*};
}

/// Forwards the safe platform traits from a pointer type to its target.
macro_rules! forward_safe {
    ($($(#[$attr:meta])* [$($gen:tt)*] $ty:ty;)*) => {$(
        $(#[$attr])*
        impl<$($gen)*> PageAlloc for $ty where T: PageAlloc {
            fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
                (**self).alloc_pages(order)
            }

            fn free_pages(&self, pa: PhysAddr, order: Order) {
                (**self).free_pages(pa, order)
            }

            fn max_order(&self) -> Order {
                (**self).max_order()
            }
        }

        $(#[$attr])*
        impl<$($gen)*> Preserve for $ty where T: Preserve {
            #[inline(always)]
            fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
                (**self).preserve(pa, order)
            }

            fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
                (**self).unpreserve(pa, order)
            }
        }

        $(#[$attr])*
        impl<$($gen)*> Claim for $ty where T: Claim {
            fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
                (**self).claim(pa, order)
            }

            fn unclaim(&self, pa: PhysAddr, order: Order) {
                (**self).unclaim(pa, order)
            }
        }
    )*};
}

forward_platform! {
    [T: PhysMem + ?Sized] &T;
    [T: PhysMem + ?Sized] &mut T;
    #[cfg(feature = "alloc")]
    [T: PhysMem + ?Sized] alloc::boxed::Box<T>;
    #[cfg(feature = "alloc")]
    [T: PhysMem + ?Sized] alloc::sync::Arc<T>;
}

forward_safe! {
    [T: ?Sized] &T;
    [T: ?Sized] &mut T;
    #[cfg(feature = "alloc")]
    [T: ?Sized] alloc::boxed::Box<T>;
    #[cfg(feature = "alloc")]
    [T: ?Sized] alloc::sync::Arc<T>;
}

/// A platform's memory joined with a tracker: the one value a primitive
/// (block set, vmalloc area, array) takes, implementing [`PhysMem`] and
/// [`PageAlloc`] through `mem` and [`Preserve`] / [`Claim`] through
/// `tracker`.
#[derive(Debug)]
pub struct WithTracker<'a, M: ?Sized, T: ?Sized> {
    /// Memory and page allocation.
    pub mem: &'a M,
    /// Preservation (outgoing) or claiming (incoming).
    pub tracker: &'a T,
}

impl<M: ?Sized, T: ?Sized> Clone for WithTracker<'_, M, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: ?Sized, T: ?Sized> Copy for WithTracker<'_, M, T> {}

impl<'a, M: ?Sized, T: ?Sized> WithTracker<'a, M, T> {
    /// Joins `mem` and `tracker`.
    pub const fn new(mem: &'a M, tracker: &'a T) -> Self {
        WithTracker { mem, tracker }
    }
}

// SAFETY: every pointer comes from `M::phys_to_virt`, whose guarantees are
// passed through unchanged.
unsafe impl<M: PhysMem + ?Sized, T: ?Sized> PhysMem for WithTracker<'_, M, T> {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        self.mem.phys_to_virt(pa, len)
    }

    fn is_ram(&self, pa: PhysAddr, len: u64) -> bool {
        self.mem.is_ram(pa, len)
    }

    fn crosses_node(&self, pa: PhysAddr, order: Order) -> bool {
        self.mem.crosses_node(pa, order)
    }
}

impl<M: PageAlloc + ?Sized, T: ?Sized> PageAlloc for WithTracker<'_, M, T> {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        self.mem.alloc_pages(order)
    }

    fn free_pages(&self, pa: PhysAddr, order: Order) {
        self.mem.free_pages(pa, order)
    }

    fn max_order(&self) -> Order {
        self.mem.max_order()
    }
}

impl<M: ?Sized, T: Preserve + ?Sized> Preserve for WithTracker<'_, M, T> {
    #[inline(always)]
    fn preserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.tracker.preserve(pa, order)
    }

    fn unpreserve(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.tracker.unpreserve(pa, order)
    }
}

impl<M: ?Sized, T: Claim + ?Sized> Claim for WithTracker<'_, M, T> {
    fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
        self.tracker.claim(pa, order)
    }

    fn unclaim(&self, pa: PhysAddr, order: Order) {
        self.tracker.unclaim(pa, order)
    }
}

/// Copies `buf.len()` bytes of RAM at `pa` into `buf`.
pub fn read_phys_bytes<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, buf: &mut [u8]) -> Result<(), AbiError> {
    let src = mem.phys_to_virt(pa, buf.len() as u64)?;
    // SAFETY: `PhysMem` guarantees `src` is valid for reads of `buf.len()`
    // bytes; `buf` is a distinct Rust allocation, so they do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), buf.as_mut_ptr(), buf.len()) };
    Ok(())
}

/// Copies `buf` into RAM at `pa`.
pub fn write_phys_bytes<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, buf: &[u8]) -> Result<(), AbiError> {
    let dst = mem.phys_to_virt(pa, buf.len() as u64)?;
    // SAFETY: `PhysMem` guarantees `dst` is valid for writes of `buf.len()`
    // bytes; `buf` is a distinct Rust allocation, so they do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst.as_ptr(), buf.len()) };
    Ok(())
}

/// Reads a `T` from RAM at `pa` (no alignment needed).
pub fn read_phys<T: FromBytes + IntoBytes, M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr) -> Result<T, AbiError> {
    let mut value = T::new_zeroed();
    read_phys_bytes(mem, pa, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes `value` to RAM at `pa` (no alignment needed).
pub fn write_phys<T: IntoBytes + Immutable, M: PhysMem + ?Sized>(
    mem: &M,
    pa: PhysAddr,
    value: &T,
) -> Result<(), AbiError> {
    write_phys_bytes(mem, pa, value.as_bytes())
}

/// Fills `len` bytes of RAM at `pa` with zeros.
pub fn zero_phys<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, len: u64) -> Result<(), AbiError> {
    let dst = mem.phys_to_virt(pa, len)?;
    let len = usize::try_from(len).map_err(|_| AbiError::Overflow { what: "zero_phys length" })?;
    // SAFETY: `PhysMem` guarantees `dst` is valid for writes of `len` bytes.
    unsafe { core::ptr::write_bytes(dst.as_ptr(), 0, len) };
    Ok(())
}

/// Words in a page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// One page of RAM seen in place as 64-bit words, read and written
/// atomically (`Relaxed`), without copying the page.
///
/// This is kho's one view of a page other than a copy: the radix tree's
/// nodes ([`as_atomics`](PageWords::as_atomics)) and the array writer's
/// pages go through it. Because every word is an atomic reached through a
/// shared reference, it needs nothing but [`PhysMem`]'s promise: no
/// exclusive (`&mut`) reference to RAM is ever formed, so nothing relies
/// on a page allocator or a tracker handing a page to one user only. A
/// page given to two users by mistake is corrupted data, not undefined
/// behaviour.
#[derive(Clone, Copy, Debug)]
pub struct PageWords<'a> {
    words: &'a [AtomicU64; PAGE_WORDS],
}

impl<'a> PageWords<'a> {
    /// The page at `pa`: `Misaligned` unless `pa` is page aligned,
    /// `NotRam` unless the whole page is RAM.
    #[inline(always)]
    pub fn new<M: PhysMem + ?Sized>(mem: &'a M, pa: PhysAddr) -> Result<Self, AbiError> {
        let pa = pa.require_aligned("page", PAGE_SIZE as u64)?;
        let ptr = mem.phys_to_virt(pa, PAGE_SIZE as u64)?;
        // SAFETY: `PhysMem` promises that `ptr` is valid for reads and
        // writes of the page's `PAGE_SIZE` bytes for as long as `mem`
        // lives, which outlives the borrow `'a` bounding the result; that
        // the platform leaves those bytes alone while kho holds them; and
        // that `ptr` is aligned as `pa` is modulo 8, so (`pa` being page
        // aligned) for `AtomicU64`, which has the size and alignment of
        // `u64`. `[AtomicU64; PAGE_WORDS]` is `PAGE_SIZE` bytes; every bit
        // pattern is a valid `AtomicU64`. A shared reference to atomics
        // allows other shared references to the same words (kho's own
        // views of the page are atomic too), so no uniqueness is needed.
        let words = unsafe { &*ptr.as_ptr().cast::<[AtomicU64; PAGE_WORDS]>() };
        Ok(PageWords { words })
    }

    /// Word `i`.
    ///
    /// # Panics
    ///
    /// If `i >= PAGE_WORDS`.
    pub fn get(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    /// Sets word `i` to `v`.
    ///
    /// # Panics
    ///
    /// If `i >= PAGE_WORDS`.
    pub fn set(&self, i: usize, v: u64) {
        self.words[i].store(v, Ordering::Relaxed)
    }

    /// Stores `src` at words `at..at + src.len()`.
    ///
    /// # Panics
    ///
    /// If the range goes past the page.
    pub fn copy_from(&self, at: usize, src: &[u64]) {
        for (w, &v) in self.words[at..at + src.len()].iter().zip(src) {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// The page's words as atomics, for callers that pick their own
    /// orderings (the radix tree).
    pub fn as_atomics(&self) -> &'a [AtomicU64; PAGE_WORDS] {
        self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::UnsafeCell;

    /// 4 pages of RAM at PA 0x10000 (aligned for every page size), 4 KiB-aligned storage.
    #[repr(C, align(4096))]
    struct TinyRam(UnsafeCell<[u8; 4 * PAGE_SIZE]>);

    const BASE: u64 = 0x10000;

    // SAFETY: pointers are into `self.0`, valid while `self` lives, offsets
    // preserve 8-byte alignment because the storage is page aligned and
    // BASE is too, and ranges outside the 4 pages are refused.
    unsafe impl PhysMem for TinyRam {
        fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
            let off = pa.checked_offset_from(PhysAddr::new(BASE)).ok_or(AbiError::NotRam { pa, len })?;
            let end = off.checked_add(len).ok_or(AbiError::NotRam { pa, len })?;
            if end > 4 * PAGE_SIZE as u64 {
                return Err(AbiError::NotRam { pa, len });
            }
            // SAFETY: `off < 4 * PAGE_SIZE`, inside the array.
            let p = unsafe { self.0.get().cast::<u8>().add(off as usize) };
            NonNull::new(p).ok_or(AbiError::NotRam { pa, len })
        }
    }

    #[test]
    fn typed_access_round_trips_and_bounds_are_checked() {
        let ram = TinyRam(UnsafeCell::new([0; 4 * PAGE_SIZE]));
        let pa = PhysAddr::new(BASE + 12);
        write_phys(&ram, pa, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(read_phys::<u64, _>(&ram, pa).unwrap(), 0x1122_3344_5566_7788);
        let top = PhysAddr::new(BASE + 4 * PAGE_SIZE as u64 - 4);
        assert_eq!(read_phys::<u64, _>(&ram, top), Err(AbiError::NotRam { pa: top, len: 8 }));
        assert!(read_phys::<u32, _>(&ram, top).is_ok());
        assert!(read_phys::<u8, _>(&ram, PhysAddr::new(BASE - 1)).is_err());
        assert!(read_phys::<u8, _>(&ram, PhysAddr::new(u64::MAX)).is_err());
        zero_phys(&ram, pa, 8).unwrap();
        assert_eq!(read_phys::<u64, _>(&ram, pa).unwrap(), 0);
        assert!(!ram.crosses_node(pa, Order::ZERO));
    }

    #[test]
    fn a_page_view_reads_and_writes_ram_in_place_and_checks_its_page() {
        let ram = TinyRam(UnsafeCell::new([0; 4 * PAGE_SIZE]));
        let page = PhysAddr::new(BASE + PAGE_SIZE as u64);
        let words = PageWords::new(&ram, page).unwrap();
        words.set(1, 0xfeed);
        words.copy_from(PAGE_WORDS - 2, &[7, 8]);
        assert_eq!(read_phys::<u64, _>(&ram, PhysAddr::new(page.as_u64() + 8)).unwrap(), 0xfeed);
        assert_eq!(read_phys::<u64, _>(&ram, PhysAddr::new(page.as_u64() + PAGE_SIZE as u64 - 8)).unwrap(), 8);
        write_phys(&ram, page, &0x55u64).unwrap();
        assert_eq!((words.get(0), words.get(1), words.get(PAGE_WORDS - 2)), (0x55, 0xfeed, 7));
        assert_eq!(words.as_atomics()[1].load(Ordering::Relaxed), 0xfeed);
        let odd = PhysAddr::new(BASE + 8);
        assert!(matches!(PageWords::new(&ram, odd), Err(AbiError::Misaligned { .. })));
        let past = PhysAddr::new(BASE + 4 * PAGE_SIZE as u64);
        assert_eq!(PageWords::new(&ram, past).unwrap_err(), AbiError::NotRam { pa: past, len: PAGE_SIZE as u64 });
    }
}
