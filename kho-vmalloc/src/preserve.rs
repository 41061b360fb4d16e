//! The outgoing side: preserving an area and undoing a preservation.

use core::ops::ControlFlow;

use kho_abi::chain::{ChainError, ChainFault, LinkField};
use kho_abi::{KhoVmalloc, Order, PageAlloc, PhysAddr, PhysMem, Preserve, VmallocFlags};

use crate::chunk::{self, BATCH, ENTRIES};
use crate::error::{ChunkAt, PageKind, VmallocError};

/// Preserves an area of `2^order`-page blocks for the next kernel and
/// returns its descriptor.
///
/// `blocks` are the physical addresses of the area's blocks in virtual
/// order (for a vmalloc area, the address of every `2^order`-th page). Each
/// is preserved at `order`; chunk pages listing them, 511 to a page, are
/// allocated from the platform and preserved at order 0. The returned
/// [`KhoVmalloc`] is what the user embeds in its own preserved data; an
/// area without blocks gives the all-zero descriptor and uses no chunk.
///
/// # Errors
///
/// Flag bits other than `ALLOC` and `HUGE_VMAP`
/// ([`UnsupportedFlags`](VmallocError::UnsupportedFlags)), an order above
/// the platform's maximum, a block that is zero or misaligned, an area
/// beyond `u32::MAX` pages, a chunk allocation failure, and any tracker
/// refusal ([`PreserveFailed`](VmallocError::PreserveFailed): the tracker
/// is what refuses blocks outside RAM, in scratch or across NUMA nodes).
/// On error nothing stays preserved and every chunk page allocated has
/// been freed.
pub fn preserve<P, I>(p: &P, blocks: I, order: Order, flags: VmallocFlags) -> Result<KhoVmalloc, VmallocError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
    I: IntoIterator<Item = PhysAddr>,
{
    if !VmallocFlags::all().contains(flags) {
        return Err(VmallocError::UnsupportedFlags { flags: flags.bits() });
    }
    let max = p.max_order();
    if order > max {
        return Err(VmallocError::OrderTooLarge { order: order.get(), max: max.get() });
    }
    let mut w = Writer::new(p, order);
    // Order-0 pages (a plain vmalloc area, a memfd's folios) get their own
    // copy of the loop, in which the order is a constant: its alignment
    // check and the tracker's key encoding fold away.
    let pushed =
        if order == Order::ZERO { push_all(&mut w, blocks, Order::ZERO) } else { push_all(&mut w, blocks, order) };
    if let Err(e) = pushed {
        w.abort();
        return Err(e);
    }
    if let Err(e) = w.flush() {
        w.abort();
        return Err(e);
    }
    // `push` keeps `blocks << order` within `u32`, so this never saturates.
    let total_pages = u32::try_from(w.blocks << order.get()).unwrap_or(u32::MAX);
    Ok(KhoVmalloc { first: w.first.as_u64(), total_pages, flags: flags.bits(), order: order.get() as u16 })
}

/// Pushes every block of `blocks` at `order` (the writer's).
#[inline(always)]
fn push_all<P, I>(w: &mut Writer<'_, P>, blocks: I, order: Order) -> Result<(), VmallocError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
    I: IntoIterator<Item = PhysAddr>,
{
    for pa in blocks {
        w.push(pa, order)?;
    }
    Ok(())
}

/// Undoes [`preserve`]: unpreserves every block and chunk page the
/// descriptor lists and frees the chunk pages.
///
/// The descriptor must be one [`preserve`] returned on this platform and
/// not undone yet (the chain is still checked against its bounds, so a
/// damaged descriptor cannot make this loop).
///
/// # Errors
///
/// An invalid descriptor changes nothing. Otherwise unpreserve carries on
/// past tracker refusals and reports the first; it stops early only at a
/// chunk link that leads outside RAM or past the longest possible chain.
pub fn unpreserve<P>(p: &P, desc: &KhoVmalloc) -> Result<(), VmallocError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let d = desc.validate(p.max_order()).map_err(VmallocError::Descriptor)?;
    let Some(first) = d.first else { return Ok(()) };
    let blocks = u64::from(d.total_pages) >> d.order.get();
    let limit = chunk::max_chunks(blocks);
    let (next, result) = teardown(p, first, limit, blocks, d.order);
    result?;
    if !next.is_null() {
        let fault = ChainFault::TooLong { max: limit };
        return Err(VmallocError::Chain(ChainError { index: limit, pa: next, field: LinkField::of(limit), fault }));
    }
    Ok(())
}

/// Unpreserves up to `blocks` blocks (stopping early at a zero entry) and
/// up to `chunks` chunk pages of the chain at `first`, freeing the chunk
/// pages. Returns the link after the last chunk handled (null at the end
/// of the chain) and the first error met.
fn teardown<P>(p: &P, first: PhysAddr, chunks: u64, blocks: u64, order: Order) -> (PhysAddr, Result<(), VmallocError>)
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let mut result = Ok(());
    let mut keep_first = |r: Result<(), VmallocError>| {
        if result.is_ok() {
            result = r;
        }
    };
    let mut left = blocks;
    let mut pa = first;
    for index in 0..chunks {
        if pa.is_null() {
            break;
        }
        let at = ChunkAt { index, pa };
        let scanned = chunk::scan(p, pa, |_, value| {
            if left == 0 || value == 0 {
                return ControlFlow::Break(());
            }
            left -= 1;
            let block = PhysAddr::new(value);
            keep_first(p.unpreserve(block, order).map_err(|source| VmallocError::UnpreserveFailed {
                kind: PageKind::Block,
                pa: block,
                source,
            }));
            ControlFlow::Continue(())
        });
        let next = scanned.and_then(|_| chunk::read_next(p, pa));
        keep_first(p.unpreserve(pa, Order::ZERO).map_err(|source| VmallocError::UnpreserveFailed {
            kind: PageKind::Chunk,
            pa,
            source,
        }));
        p.free_pages(pa, Order::ZERO);
        match next {
            Ok(next) => pa = next,
            Err(source) => {
                keep_first(Err(VmallocError::ChunkNotRam { at, source }));
                return (PhysAddr::NULL, result);
            }
        }
    }
    (pa, result)
}

/// Builds the chain of an area being preserved.
///
/// Invariant: every block preserved so far is listed either in a chunk
/// page of the chain (the first `filled` entries of the current chunk, all
/// entries of the earlier ones) or in `pending`; every chunk page of the
/// chain is allocated and preserved. [`Writer::abort`] relies on it.
struct Writer<'p, P: ?Sized> {
    p: &'p P,
    order: Order,
    /// First chunk page, null until a block arrives.
    first: PhysAddr,
    /// The chunk page being filled, null until a block arrives.
    chunk: PhysAddr,
    /// Chunk pages in the chain.
    chunks: u64,
    /// Entries of `chunk` written to memory.
    filled: usize,
    /// Entries of `chunk` after `filled` not written yet.
    pending: [u64; BATCH],
    pending_len: usize,
    /// Entries of `chunk` neither written nor pending (0 before the first
    /// chunk, so that the first block allocates it).
    room: usize,
    /// Blocks preserved.
    blocks: u64,
    /// Blocks whose pages still fit `kho_vmalloc.total_pages`, a `u32`.
    max_blocks: u64,
}

impl<'p, P: PhysMem + PageAlloc + Preserve + ?Sized> Writer<'p, P> {
    fn new(p: &'p P, order: Order) -> Self {
        Writer {
            p,
            order,
            first: PhysAddr::NULL,
            chunk: PhysAddr::NULL,
            chunks: 0,
            filled: 0,
            pending: [0; BATCH],
            pending_len: 0,
            room: 0,
            blocks: 0,
            max_blocks: u64::from(u32::MAX) >> order.get(),
        }
    }

    /// Checks, preserves and lists one block of `order`, which is the
    /// writer's own (passed in so that a caller can make it a constant).
    /// This is the hot path of a large area: every test is a compare,
    /// errors are built out of line.
    #[inline(always)]
    fn push(&mut self, pa: PhysAddr, order: Order) -> Result<(), VmallocError> {
        debug_assert!(order == self.order);
        // What the chunk format itself needs: zero is its terminator, and
        // the next kernel checks alignment. Whether the block may be
        // preserved at all (RAM, scratch, NUMA) is the tracker's to say,
        // as it does for every preserve; checking it here too would cost
        // a quarter of the tracker's own time per block.
        if pa.is_null() || !order.aligns(pa) || self.blocks >= self.max_blocks {
            return Err(self.refused(pa));
        }
        if self.room == 0 {
            self.new_chunk()?;
        }
        if let Err(source) = self.p.preserve(pa, order) {
            return Err(VmallocError::PreserveFailed { kind: PageKind::Block, index: self.blocks, pa, source });
        }
        // PANICS: none, `flush` below empties `pending` whenever it fills.
        self.pending[self.pending_len] = pa.as_u64();
        self.pending_len += 1;
        self.room -= 1;
        self.blocks += 1;
        if self.pending_len == BATCH || self.room == 0 {
            self.flush()?;
        }
        Ok(())
    }

    /// Why [`push`](Writer::push) refused `pa` without trying it.
    #[cold]
    fn refused(&self, pa: PhysAddr) -> VmallocError {
        let index = self.blocks;
        let bad = |source| VmallocError::BadBlock { index, pa, source };
        match pa.require_nonzero("vmalloc block").and_then(|pa| self.order.require_aligned(pa, "vmalloc block")) {
            Err(source) => bad(source),
            Ok(_) => VmallocError::TooManyPages { blocks: index + 1, order: self.order.get() },
        }
    }

    /// Writes the pending entries into the current chunk page.
    fn flush(&mut self) -> Result<(), VmallocError> {
        if self.pending_len == 0 {
            return Ok(());
        }
        chunk::write_entries(self.p, self.chunk, self.filled, &self.pending[..self.pending_len]).map_err(|source| {
            VmallocError::ChunkNotRam { at: ChunkAt { index: self.chunks - 1, pa: self.chunk }, source }
        })?;
        self.filled += self.pending_len;
        self.pending_len = 0;
        Ok(())
    }

    /// Allocates, preserves and links the next chunk page.
    fn new_chunk(&mut self) -> Result<(), VmallocError> {
        self.flush()?;
        let index = self.chunks;
        let pa = self.p.alloc_pages(Order::ZERO).map_err(|source| VmallocError::NoMemory { chunk: index, source })?;
        if let Err(source) = self.p.preserve(pa, Order::ZERO) {
            self.p.free_pages(pa, Order::ZERO);
            return Err(VmallocError::PreserveFailed { kind: PageKind::Chunk, index, pa, source });
        }
        if self.first.is_null() {
            self.first = pa;
        } else if let Err(source) = chunk::write_next(self.p, self.chunk, pa) {
            // Not linked: undo it here, the chain ends at the old chunk.
            let _ = self.p.unpreserve(pa, Order::ZERO);
            self.p.free_pages(pa, Order::ZERO);
            return Err(VmallocError::ChunkNotRam { at: ChunkAt { index: index - 1, pa: self.chunk }, source });
        }
        self.chunk = pa;
        self.chunks += 1;
        self.filled = 0;
        self.room = ENTRIES;
        Ok(())
    }

    /// Undoes everything: unpreserves every block and chunk page and frees
    /// the chunk pages. Tracker refusals are ignored: each page is handed
    /// back once, which is all that can be done.
    fn abort(&mut self) {
        let in_chain = self.blocks - self.pending_len as u64;
        // The last chunk's `next` is zero (pages come zeroed), so the walk
        // ends there whatever `chunks` says.
        let _ = teardown(self.p, self.first, self.chunks, in_chain, self.order);
        for &pa in &self.pending[..self.pending_len] {
            let _ = self.p.unpreserve(PhysAddr::new(pa), self.order);
        }
        *self = Writer::new(self.p, self.order);
    }
}
