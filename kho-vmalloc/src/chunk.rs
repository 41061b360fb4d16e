//! Access to chunk pages through the platform, a batch of entries at a time.
//!
//! A chunk page is never copied whole onto the stack (4 KiB is a lot for a
//! kernel stack): entries move in batches of [`BATCH`] through
//! `kho_abi::read_phys_bytes` / `write_phys_bytes`, which is also what keeps
//! this crate free of `unsafe`.

use core::mem::offset_of;
use core::ops::ControlFlow;

use kho_abi::vmalloc::VMALLOC_CHUNK_ENTRIES;
use kho_abi::{AbiError, PAGE_SIZE, PhysAddr, PhysMem, VmallocChunk, read_phys, read_phys_bytes, write_phys};
use zerocopy::IntoBytes;

/// Block entries per chunk page (511 with 4 KiB pages).
pub(crate) const ENTRIES: usize = VMALLOC_CHUNK_ENTRIES;

/// Entries moved per platform access.
pub(crate) const BATCH: usize = 64;

/// Byte offset of `phys[0]` in a chunk page.
const PHYS_OFFSET: usize = offset_of!(VmallocChunk, phys);

const _: () = assert!(offset_of!(VmallocChunk, next) == 0);
const _: () = assert!(PHYS_OFFSET + ENTRIES * 8 == PAGE_SIZE);

/// Address of `phys[entry]` in the chunk page at `chunk`.
///
/// `chunk` is page aligned and the offset is below the page size, so the
/// two are combined with a bitwise or, which cannot overflow.
pub(crate) fn entry_pa(chunk: PhysAddr, entry: usize) -> PhysAddr {
    debug_assert!(chunk.is_page_aligned() && entry < ENTRIES);
    PhysAddr::new(chunk.as_u64() | (PHYS_OFFSET + entry * 8) as u64)
}

/// The `next` link of the chunk page at `chunk`.
pub(crate) fn read_next<P: PhysMem + ?Sized>(p: &P, chunk: PhysAddr) -> Result<PhysAddr, AbiError> {
    read_phys::<u64, P>(p, chunk).map(PhysAddr::new)
}

/// Sets the `next` link of the chunk page at `chunk`.
pub(crate) fn write_next<P: PhysMem + ?Sized>(p: &P, chunk: PhysAddr, next: PhysAddr) -> Result<(), AbiError> {
    write_phys(p, chunk, &next.as_u64())
}

/// Writes `entries` to `phys[first..]` of the chunk page at `chunk`.
pub(crate) fn write_entries<P: PhysMem + ?Sized>(
    p: &P,
    chunk: PhysAddr,
    first: usize,
    entries: &[u64],
) -> Result<(), AbiError> {
    debug_assert!(first + entries.len() <= ENTRIES);
    kho_abi::write_phys_bytes(p, entry_pa(chunk, first), entries.as_bytes())
}

/// Calls `f(index, value)` for `phys[0..]` of the chunk page at `chunk`, in
/// order, until `f` breaks (its value is returned) or the page ends
/// (`None`).
pub(crate) fn scan<P, B>(
    p: &P,
    chunk: PhysAddr,
    mut f: impl FnMut(usize, u64) -> ControlFlow<B>,
) -> Result<Option<B>, AbiError>
where
    P: PhysMem + ?Sized,
{
    let mut batch = [0u64; BATCH];
    let mut start = 0;
    while start < ENTRIES {
        let len = BATCH.min(ENTRIES - start);
        // PANICS: none, `len <= BATCH`.
        let batch = &mut batch[..len];
        read_phys_bytes(p, entry_pa(chunk, start), batch.as_mut_bytes())?;
        for (i, &value) in batch.iter().enumerate() {
            if let ControlFlow::Break(b) = f(start + i, value) {
                return Ok(Some(b));
            }
        }
        start += len;
    }
    Ok(None)
}

/// The longest chain `blocks` blocks can need: one chunk per
/// [`VMALLOC_CHUNK_ENTRIES`](crate::VMALLOC_CHUNK_ENTRIES) blocks, plus the
/// empty chunk Linux appends when the last one is exactly full (its writer
/// allocates the next chunk as soon as one fills up). Zero blocks need no
/// chunk.
pub const fn max_chunks(blocks: u64) -> u64 {
    if blocks == 0 { 0 } else { blocks / ENTRIES as u64 + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_bound_allows_the_kernels_trailing_empty_chunk() {
        assert_eq!(max_chunks(0), 0);
        assert_eq!(max_chunks(1), 1);
        assert_eq!(max_chunks(510), 1);
        // Linux writes 511 blocks as a full chunk and an empty one.
        assert_eq!(max_chunks(511), 2);
        assert_eq!(max_chunks(512), 2);
        assert_eq!(max_chunks(1022), 3);
        assert_eq!(max_chunks(1023), 3);
        assert_eq!(max_chunks(u64::from(u32::MAX)), u64::from(u32::MAX) / 511 + 1);
    }

    #[test]
    fn entry_addresses() {
        let c = PhysAddr::new(0x1_0000_5000);
        assert_eq!(entry_pa(c, 0), PhysAddr::new(0x1_0000_5008));
        assert_eq!(entry_pa(c, ENTRIES - 1), PhysAddr::new(0x1_0000_5000 + PAGE_SIZE as u64 - 8));
    }
}
