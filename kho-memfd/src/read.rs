//! The incoming side: adopting or inspecting a preserved memfd, and
//! reading its bytes.

use alloc::vec::Vec;

use kho_abi::{Claim, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, read_phys, read_phys_bytes};
use kho_probe::{DeferFree, Probe};

use crate::abi::{ALL_FLAGS, ALL_SEALS, FOLIO_ALL_FLAGS, FOLIO_DIRTY, FOLIO_UPTODATE, FolioSer, MemfdSer};
use crate::error::{Fault, MemfdError};

const PAGE: u64 = PAGE_SIZE as u64;

/// One preserved folio of a memfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folio {
    /// Its physical address.
    pub pa: PhysAddr,
    /// Its order (found by which order the tracker lets it be claimed at).
    pub order: Order,
    /// Its first page's offset in the file, in pages.
    pub index: u64,
    /// Its flags ([`FOLIO_DIRTY`], [`FOLIO_UPTODATE`]).
    pub flags: u16,
}

impl Folio {
    /// Whether the folio holds data written by the user.
    pub fn dirty(&self) -> bool {
        self.flags & FOLIO_DIRTY != 0
    }

    /// Whether the folio was zeroed.
    pub fn uptodate(&self) -> bool {
        self.flags & FOLIO_UPTODATE != 0
    }

    /// Pages in the folio.
    pub fn pages(&self) -> u64 {
        self.order.pages()
    }
}

/// A decoded memfd: plain data, no handle on memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memfd {
    /// PA of the descriptor (the LUO file's `data`).
    pub desc: PhysAddr,
    /// File position.
    pub pos: u64,
    /// File size in bytes.
    pub size: u64,
    /// Seals (`F_SEAL_*`).
    pub seals: u32,
    /// The folios, ascending by index.
    pub folios: Vec<Folio>,
    /// The folio list's data blocks (its vmalloc area), in order.
    pub list_blocks: Vec<PhysAddr>,
    /// Their order.
    pub list_order: Order,
    /// The folio list's chunk pages (order 0).
    pub list_chunks: Vec<PhysAddr>,
}

impl Memfd {
    /// Pages held by the folios.
    pub fn pages(&self) -> u64 {
        self.folios.iter().map(Folio::pages).sum()
    }

    /// Folios flagged dirty.
    pub fn dirty(&self) -> usize {
        self.folios.iter().filter(|f| f.dirty()).count()
    }

    /// Folios flagged up to date.
    pub fn uptodate(&self) -> usize {
        self.folios.iter().filter(|f| f.uptodate()).count()
    }

    /// The file's data as runs of physical memory, in file order:
    /// `(file offset, PA, length)`, clipped to the file size. Offsets not
    /// covered are holes (they read as zeros).
    pub fn segments(&self) -> impl Iterator<Item = (u64, PhysAddr, u64)> + '_ {
        self.folios.iter().filter_map(move |f| {
            let start = f.index.checked_mul(PAGE)?;
            let len = f.pages().checked_mul(PAGE)?.min(self.size.checked_sub(start)?);
            (len > 0).then_some((start, f.pa, len))
        })
    }

    /// Reads the file's bytes from `offset` into `buf` (holes as zeros),
    /// stopping at the file size; returns the bytes read.
    pub fn read_at<P: PhysMem + ?Sized>(&self, p: &P, offset: u64, buf: &mut [u8]) -> Result<usize, MemfdError> {
        if offset > self.size {
            return Err(MemfdError::Beyond { offset, size: self.size });
        }
        let n = (buf.len() as u64).min(self.size - offset) as usize;
        let buf = &mut buf[..n];
        buf.fill(0);
        let end = offset + n as u64;
        // The first folio that may overlap: folios are ascending by index.
        let first = self.folios.partition_point(|f| (f.index + f.pages()).saturating_mul(PAGE) <= offset);
        for (start, pa, len) in self.segments_from(first) {
            if start >= end {
                break;
            }
            let a = start.max(offset);
            let b = (start + len).min(end);
            if a < b {
                let dst = &mut buf[(a - offset) as usize..(b - offset) as usize];
                read_phys_bytes(p, PhysAddr::new(pa.as_u64() + (a - start)), dst)?;
            }
        }
        Ok(n)
    }

    fn segments_from(&self, first: usize) -> impl Iterator<Item = (u64, PhysAddr, u64)> + '_ {
        let size = self.size;
        self.folios[first..].iter().filter_map(move |f| {
            let start = f.index.checked_mul(PAGE)?;
            let len = f.pages().checked_mul(PAGE)?.min(size.checked_sub(start)?);
            (len > 0).then_some((start, f.pa, len))
        })
    }
}

/// A memfd adopted by the next kernel: descriptor page, folio list and
/// folios claimed.
#[derive(Debug)]
pub struct RestoredMemfd {
    memfd: Memfd,
}

impl RestoredMemfd {
    /// The decoded memfd.
    pub fn memfd(&self) -> &Memfd {
        &self.memfd
    }

    /// What the kernel does once the file is rebuilt: frees the descriptor
    /// page and the folio list; the folios stay claimed, now the caller's.
    pub fn finish<P: PageAlloc + ?Sized>(self, p: &P) -> Memfd {
        p.free_pages(self.memfd.desc, Order::ZERO);
        for &b in &self.memfd.list_blocks {
            p.free_pages(b, self.memfd.list_order);
        }
        self.memfd
    }

    /// Frees everything: metadata and folios.
    pub fn free<P: PageAlloc + ?Sized>(self, p: &P) {
        let m = self.finish(p);
        for f in &m.folios {
            p.free_pages(f.pa, f.order);
        }
    }

    /// Gives everything back unclaimed (the folio list's chunk pages, which
    /// the restore already freed as the kernel does, excepted).
    pub fn unclaim<P: Claim + ?Sized>(self, p: &P) {
        for f in self.memfd.folios.iter().rev() {
            p.unclaim(f.pa, f.order);
        }
        for &b in self.memfd.list_blocks.iter().rev() {
            p.unclaim(b, self.memfd.list_order);
        }
        p.unclaim(self.memfd.desc, Order::ZERO);
    }
}

/// Adopts the memfd whose descriptor is at `desc` (the LUO file entry's
/// `data`).
///
/// Checked, each before what it guards is trusted:
///
/// - the descriptor: page aligned, RAM, preserved at order 0 (claimed);
///   `size` at most `u32::MAX` pages (the kernel preserves no larger
///   file); `seals` within [`ALL_SEALS`], `flags` 0;
/// - the folio list: a `vmalloc-v1` area restored through `kho-vmalloc`
///   (descriptor, bounded cycle-free chunk chain, every chunk and block
///   claimed), whose pages hold exactly `nr_folios` 16-byte entries
///   (`total_pages == ceil(nr_folios * 16 / PAGE_SIZE)`);
/// - each folio: flags within dirty and uptodate; its pfn page aligned RAM,
///   preserved at some order up to the platform's largest (claimed at that
///   order, so a folio listed twice fails); its index strictly above the
///   previous folio's last page and inside the file size.
///
/// # Errors
///
/// A [`MemfdError`] naming the descriptor field or the folio entry and
/// field. Nothing stays claimed.
pub fn restore<P>(p: &P, desc: PhysAddr) -> Result<RestoredMemfd, MemfdError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bad = |field, fault| MemfdError::Descriptor { pa: desc, field, fault };
    if !desc.is_page_aligned() {
        return Err(bad("data", Fault::Misaligned));
    }
    p.claim(desc, Order::ZERO).map_err(|_| bad("data", Fault::NotPreserved))?;
    let defer = DeferFree::new(p);
    match decode(&defer, desc) {
        Ok(memfd) => {
            defer.commit();
            Ok(RestoredMemfd { memfd })
        }
        Err(e) => {
            defer.undo();
            p.unclaim(desc, Order::ZERO);
            Err(e)
        }
    }
}

/// Decodes the memfd at `desc` with every check of [`restore`], then gives
/// every claim back: nothing is allocated, freed or left claimed. The entry
/// point for inspection tools.
pub fn inspect<P>(p: &P, desc: PhysAddr) -> Result<Memfd, MemfdError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let probe = Probe::new(p);
    let result = restore(&probe, desc).map(|r| r.memfd);
    probe.release();
    result
}

/// Everything after the descriptor's claim; on error, what this claimed
/// is unclaimed here, and the chunk pages the vmalloc restore freed are
/// the caller's to undo.
fn decode<P>(p: &DeferFree<'_, P>, desc: PhysAddr) -> Result<Memfd, MemfdError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let bad = |field, fault| MemfdError::Descriptor { pa: desc, field, fault };
    let ser: MemfdSer = read_phys(p, desc).map_err(|e| bad("data", Fault::NotRam(e)))?;
    let seals = ser.seals;
    if seals & !ALL_SEALS != 0 {
        return Err(bad("seals", Fault::UnknownBits { bits: u64::from(seals & !ALL_SEALS) }));
    }
    if ser.flags & !ALL_FLAGS != 0 {
        return Err(bad("flags", Fault::UnknownBits { bits: u64::from(ser.flags & !ALL_FLAGS) }));
    }
    // The kernel refuses to preserve a file of more than u32::MAX pages.
    let max_size = u64::from(u32::MAX) * PAGE;
    if ser.size > max_size {
        return Err(bad("size", Fault::OutOfRange { value: ser.size, max: max_size }));
    }
    let nr_folios = ser.nr_folios;
    let list = ser.folios();
    // The list's size must match nr_folios before anything is claimed.
    let need = nr_folios.checked_mul(16).map(|b| b.div_ceil(PAGE));
    let pages = u64::from(list.total_pages);
    if need != Some(pages) {
        return Err(bad("nr_folios", Fault::ListSize { nr_folios, need: need.unwrap_or(u64::MAX), pages }));
    }
    let mut list_blocks = Vec::new();
    let area = kho_vmalloc::restore(p, &list, |pa| list_blocks.push(pa))
        .map_err(|source| MemfdError::List { pa: desc, source })?;
    let list_chunks = p.pending().iter().map(|&(pa, _)| pa).collect();
    let list_order = area.order;
    let mut folios: Vec<Folio> = Vec::new();
    let result = decode_folios(p, &ser, &list_blocks, list_order, &mut folios);
    if let Err(e) = result {
        for f in folios.iter().rev() {
            p.unclaim(f.pa, f.order);
        }
        for &b in list_blocks.iter().rev() {
            p.unclaim(b, list_order);
        }
        return Err(e);
    }
    Ok(Memfd { desc, pos: ser.pos, size: ser.size, seals, folios, list_blocks, list_order, list_chunks })
}

fn decode_folios<P>(
    p: &P,
    ser: &MemfdSer,
    blocks: &[PhysAddr],
    order: Order,
    folios: &mut Vec<Folio>,
) -> Result<(), MemfdError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let nr = ser.nr_folios;
    let size_pages = ser.size.div_ceil(PAGE);
    let block_bytes = order.pages() * PAGE;
    // nr_folios entries fit the list's claimed pages, so this is bounded by
    // preserved memory.
    folios.reserve_exact(nr as usize);
    let mut next_free = 0u64; // first index the next folio may take
    for entry in 0..nr {
        let off = entry * 16;
        let block = blocks[(off / block_bytes) as usize];
        let e: FolioSer = read_phys(p, PhysAddr::new(block.as_u64() + off % block_bytes))?;
        let (pfn, flags, index) = (e.pfn(), e.flags(), e.index);
        let bad = |field, fault| MemfdError::Folio { entry, pfn, index, field, fault };
        if flags & !FOLIO_ALL_FLAGS != 0 {
            return Err(bad("flags", Fault::UnknownBits { bits: u64::from(flags & !FOLIO_ALL_FLAGS) }));
        }
        if index < next_free {
            return Err(bad("index", Fault::NotAscending { index, prev_last: next_free - 1 }));
        }
        if index >= size_pages {
            return Err(bad("index", Fault::OutOfRange { value: index, max: size_pages.saturating_sub(1) }));
        }
        // pfn < 2^52, so the PA fits in 64 bits.
        let pa = PhysAddr::new(pfn << kho_abi::PAGE_SHIFT);
        p.phys_to_virt(pa, PAGE).map_err(|e| bad("pfn", Fault::NotRam(e)))?;
        let order = kho_probe::claim_block(p, pa, PAGE).map_err(|_| bad("pfn", Fault::NotPreserved))?;
        folios.push(Folio { pa, order, index, flags });
        next_free = index.saturating_add(order.pages());
    }
    Ok(())
}
