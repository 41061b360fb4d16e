//! The outgoing side: a memfd preserved as a 7.2 kernel preserves it.

use alloc::vec::Vec;

use kho_abi::{
    Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, VmallocFlags, write_phys, write_phys_bytes, zero_phys,
};

use crate::abi::{ALL_SEALS, FOLIO_ALL_FLAGS, FOLIO_DIRTY, FOLIO_UPTODATE, FolioSer, MemfdSer};
use crate::error::MemfdError;

const PAGE: u64 = PAGE_SIZE as u64;

/// One folio to preserve.
#[derive(Clone, Copy, Debug)]
pub struct FolioSpec<'a> {
    /// Its page offset in the file.
    pub index: u64,
    /// Its order.
    pub order: Order,
    /// Its bytes (at most the folio's size; the rest is zero).
    pub data: &'a [u8],
    /// [`FOLIO_DIRTY`], [`FOLIO_UPTODATE`].
    pub flags: u16,
}

/// A preserved memfd: what the LUO file entry needs and what was
/// allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreservedMemfd {
    /// PA of the descriptor: the LUO file entry's `data`.
    pub desc: PhysAddr,
    /// The descriptor as written.
    pub ser: MemfdSer,
    /// The folios, in list order: `(PA, order)`.
    pub folios: Vec<(PhysAddr, Order)>,
    /// The folio list's pages (order 0).
    pub list_pages: Vec<PhysAddr>,
}

/// Preserves a file of `bytes` as the kernel does: every page of the file
/// gets an order-0 folio (holes are filled: the kernel pins every index
/// before preserving), flagged dirty and uptodate, listed in index order.
pub fn preserve_bytes<P>(p: &P, bytes: &[u8], pos: u64, seals: u32) -> Result<PreservedMemfd, MemfdError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let specs: Vec<FolioSpec<'_>> = bytes
        .chunks(PAGE_SIZE)
        .enumerate()
        .map(|(i, data)| FolioSpec { index: i as u64, order: Order::ZERO, data, flags: FOLIO_DIRTY | FOLIO_UPTODATE })
        .collect();
    preserve(p, bytes.len() as u64, pos, seals, &specs)
}

/// Preserves a memfd of `size` bytes at position `pos` with `seals` and the
/// given folios (ascending, non-overlapping indexes inside the size):
/// allocates and fills each folio and preserves it at its order, writes
/// the folio list into order-0 pages preserved as a `vmalloc-v1` area
/// (flag `ALLOC`, as a `vcalloc` area), and the descriptor into an order-0
/// page of its own.
///
/// On error nothing stays allocated or preserved.
pub fn preserve<P>(
    p: &P,
    size: u64,
    pos: u64,
    seals: u32,
    specs: &[FolioSpec<'_>],
) -> Result<PreservedMemfd, MemfdError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    if seals & !ALL_SEALS != 0 {
        return Err(MemfdError::Unsupported { what: "seals outside memfd-v2's set" });
    }
    let mut next = 0u64;
    for s in specs {
        if s.index < next || s.index >= size.div_ceil(PAGE) {
            return Err(MemfdError::Unsupported { what: "folio indexes must ascend inside the size" });
        }
        if s.data.len() as u64 > s.order.pages() * PAGE || s.flags & !FOLIO_ALL_FLAGS != 0 {
            return Err(MemfdError::Unsupported { what: "folio data larger than its folio, or unknown flags" });
        }
        next = s.index + s.order.pages();
    }
    let mut done = Undo::default();
    let result = build(p, size, pos, seals, specs, &mut done);
    if result.is_err() {
        done.undo(p);
    }
    result
}

#[derive(Default)]
struct Undo {
    /// Allocated pages and whether each was preserved.
    pages: Vec<(PhysAddr, Order, bool)>,
    list: Option<kho_abi::KhoVmalloc>,
}

impl Undo {
    fn undo<P: PhysMem + PageAlloc + Preserve + ?Sized>(self, p: &P) {
        if let Some(list) = self.list {
            let _ = kho_vmalloc::unpreserve(p, &list);
        }
        for (pa, order, preserved) in self.pages.into_iter().rev() {
            if preserved {
                let _ = p.unpreserve(pa, order);
            }
            p.free_pages(pa, order);
        }
    }
}

fn alloc<P>(p: &P, order: Order, preserve: bool, done: &mut Undo) -> Result<PhysAddr, MemfdError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let pa = p.alloc_pages(order)?;
    done.pages.push((pa, order, false));
    zero_phys(p, pa, order.pages() * PAGE)?;
    if preserve {
        p.preserve(pa, order)?;
        if let Some(last) = done.pages.last_mut() {
            last.2 = true;
        }
    }
    Ok(pa)
}

fn build<P>(
    p: &P,
    size: u64,
    pos: u64,
    seals: u32,
    specs: &[FolioSpec<'_>],
    done: &mut Undo,
) -> Result<PreservedMemfd, MemfdError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let mut folios = Vec::with_capacity(specs.len());
    let mut entries = Vec::with_capacity(specs.len());
    for s in specs {
        let pa = alloc(p, s.order, true, done)?;
        write_phys_bytes(p, pa, s.data)?;
        folios.push((pa, s.order));
        entries.push(FolioSer::new(pa.pfn().as_u64(), s.flags, s.index));
    }
    // The list: 16-byte entries packed into order-0 pages.
    let list_len = entries.len() as u64 * 16;
    let mut list_pages = Vec::new();
    for i in 0..list_len.div_ceil(PAGE) {
        let pa = alloc(p, Order::ZERO, false, done)?;
        let from = (i * PAGE / 16) as usize;
        let to = (((i + 1) * PAGE / 16) as usize).min(entries.len());
        for (k, e) in entries[from..to].iter().enumerate() {
            write_phys(p, PhysAddr::new(pa.as_u64() + k as u64 * 16), e)?;
        }
        list_pages.push(pa);
    }
    let list = if list_pages.is_empty() {
        kho_abi::KhoVmalloc::default()
    } else {
        kho_vmalloc::preserve(p, list_pages.iter().copied(), Order::ZERO, VmallocFlags::ALLOC)
            .map_err(MemfdError::Vmalloc)?
    };
    done.list = Some(list);
    let desc = alloc(p, Order::ZERO, true, done)?;
    let mut ser = MemfdSer { pos, size, seals, flags: 0, nr_folios: entries.len() as u64, ..Default::default() };
    ser.set_folios(&list);
    write_phys(p, desc, &ser)?;
    Ok(PreservedMemfd { desc, ser, folios, list_pages })
}
