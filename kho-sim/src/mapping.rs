//! Mapping blocks of RAM at consecutive virtual addresses, the way vmalloc
//! maps scattered pages into one virtual area.

use std::ptr::NonNull;

use kho_abi::{AbiError, Order, PhysAddr};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::SimError;
use crate::machine::Machine;

/// Blocks of RAM mapped one after the other into a fresh virtual range;
/// unmapped on drop. The mapping shares the machine's RAM (writes through
/// either are seen by both) and keeps the RAM's memfd alive by itself.
///
/// It dereferences to the mapped bytes. Like any mapping of a shared file,
/// they can change under the slice if the same RAM is written meanwhile;
/// read through it only while nothing writes those pages.
///
/// # Invariants
///
/// `len` is 0 (and `ptr` dangling, nothing mapped), or `ptr` is the start of
/// a live mapping of `len` bytes, readable and writable, owned by this value
/// and unmapped only by `Drop`.
#[derive(Debug)]
pub struct SimMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory with no thread affinity.
unsafe impl Send for SimMapping {}
// SAFETY: `&SimMapping` only gives shared reads of the bytes.
unsafe impl Sync for SimMapping {}

impl SimMapping {
    /// Start of the mapping.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Start of the mapping, for writes (which reach the machine's RAM).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for SimMapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: by the type invariant `ptr` is valid for reads of `len`
        // bytes while `self` lives (or `len == 0` with a dangling, aligned
        // pointer, which `from_raw_parts` accepts).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SimMapping {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: by the type invariant this value owns the mapping of
            // `len` bytes at `ptr`; no reference into it outlives `self`.
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

impl Machine {
    /// Maps `blocks` (each `2^order` pages of RAM at an order-aligned PA) at
    /// consecutive virtual addresses, in the order given.
    ///
    /// ```
    /// use kho_abi::{Order, PageAlloc, PhysAddr};
    /// use kho_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig::default())?;
    /// let a = m.alloc_pages(Order::ZERO)?;
    /// let b = m.alloc_pages(Order::ZERO)?;
    /// m.write(a, b"first")?;
    /// m.write(b, b"second")?;
    /// let map = m.map_blocks(&[(b, Order::ZERO), (a, Order::ZERO)])?;
    /// assert_eq!(&map[..6], b"second");
    /// assert_eq!(&map[4096..4101], b"first");
    /// # Ok::<(), kho_sim::SimError>(())
    /// ```
    pub fn map_blocks(&self, blocks: &[(PhysAddr, Order)]) -> Result<SimMapping, SimError> {
        self.map_each(blocks.len(), blocks.iter().copied())
    }

    /// Maps `blocks`, all of `order`, at consecutive virtual addresses in
    /// the order given: a list of restored blocks seen as one slice, the
    /// way the kernel's `vmap` shows a vmalloc area (the blocks a
    /// `kho_vmalloc::restore` reports, for instance).
    ///
    /// ```
    /// use kho_abi::{Order, PageAlloc};
    /// use kho_sim::{Machine, MachineConfig};
    ///
    /// let m = Machine::new(MachineConfig::default())?;
    /// let o = Order::new(1, "order")?;
    /// let a = m.alloc_pages(o)?;
    /// let b = m.alloc_pages(o)?;
    /// m.write(a, b"first")?;
    /// m.write(b, b"second")?;
    /// let map = m.map_same_order(&[b, a], o)?;
    /// assert_eq!(map.len(), 4 * 4096);
    /// assert_eq!(&map[..6], b"second");
    /// assert_eq!(&map[2 * 4096..2 * 4096 + 5], b"first");
    /// # Ok::<(), kho_sim::SimError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map_blocks`](Machine::map_blocks): a block misaligned for
    /// `order` or outside RAM, a size overflow, or a failed `mmap`.
    pub fn map_same_order(&self, blocks: &[PhysAddr], order: Order) -> Result<SimMapping, SimError> {
        self.map_each(blocks.len(), blocks.iter().map(|&pa| (pa, order)))
    }

    /// [`map_blocks`](Machine::map_blocks) over `n` blocks from `blocks`.
    fn map_each(&self, n: usize, blocks: impl Iterator<Item = (PhysAddr, Order)>) -> Result<SimMapping, SimError> {
        let mut total: u64 = 0;
        let mut places = Vec::with_capacity(n);
        for (pa, order) in blocks {
            order.require_aligned(pa, "map_blocks block")?;
            let bytes = order.checked_bytes().ok_or(AbiError::Overflow { what: "map_blocks block size" })?;
            let off = self.ram().offset(pa.as_u64(), bytes)?;
            places.push((total, off, bytes));
            total = total.checked_add(bytes).ok_or(AbiError::Overflow { what: "map_blocks total size" })?;
        }
        let len = usize::try_from(total).map_err(|_| AbiError::Overflow { what: "map_blocks total size" })?;
        if len == 0 {
            // INVARIANT: nothing mapped, `len == 0`.
            return Ok(SimMapping { ptr: NonNull::dangling(), len: 0 });
        }
        // SAFETY: a fresh inaccessible reservation at an address the kernel
        // picks aliases no Rust memory.
        let reserved = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let ptr =
            NonNull::new(reserved.cast::<u8>()).ok_or(SimError::Io(std::io::ErrorKind::AddrNotAvailable.into()))?;
        // INVARIANT: `ptr` is a live mapping of `len` bytes owned by `map`;
        // it becomes readable and writable below, or `map` is dropped
        // (unmapping it) on error.
        let map = SimMapping { ptr, len };
        for (virt_off, file_off, bytes) in places {
            // SAFETY: `virt_off + bytes <= len`, so the target lies inside
            // the reservation this function owns; MAP_FIXED replaces only
            // those reserved pages, which nothing references yet.
            unsafe {
                let at = map.ptr.as_ptr().add(virt_off as usize);
                rustix::mm::mmap(
                    at.cast(),
                    bytes as usize,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | MapFlags::FIXED,
                    self.ram().fd_for(file_off, bytes),
                    file_off,
                )?;
            }
        }
        Ok(map)
    }
}
