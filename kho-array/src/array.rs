//! The array: its pages, preservation, destruction, reading and restore.

use core::marker::PhantomData;

use kho_abi::chain;
use kho_abi::{Claim, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, read_phys};

use crate::error::{ArrayError, Op};
use crate::format::{ARRAY_HEADER_WORDS, ArrayDesc, ArrayLayout, Entry, check_descriptor};
use crate::walk::{self, Walk};

/// A sparse array of [`Entry`]s at `u64` positions, kept in a chain of
/// `array-v1` pages.
///
/// An array is written once in ascending position order through a
/// [`Writer`](crate::Writer) (which may be taken again later to append), read in order
/// through [`Iter`], preserved and unpreserved as a whole, and handed to
/// the next kernel as an [`ArrayDesc`] the user stores in their own
/// preserved data; there, [`restore`](KhoArray::restore) validates and
/// adopts it. It owns its pages but holds no platform: every operation
/// takes one, and dropping an array without [`destroy`](KhoArray::destroy)
/// leaks its pages.
///
/// # Invariants
///
/// - `first` is null exactly when `pages` and `len` are 0
///   and `last` is `None`.
/// - The chain from `first` holds `pages` well-formed pages (as
///   [`restore`](KhoArray::restore) checks them), all order-0 blocks this
///   array allocated or claimed, preserved exactly when `preserved`.
/// - `tail` is the last page; its layout word is `layout`, it holds
///   `tail_entries` entries and its last run `run_count` of them. `last`
///   is the last position.
#[derive(Debug, PartialEq, Eq)]
pub struct KhoArray {
    pub(crate) first: PhysAddr,
    pub(crate) tail: PhysAddr,
    pub(crate) pages: u64,
    pub(crate) len: u64,
    pub(crate) layout: ArrayLayout,
    pub(crate) tail_entries: usize,
    pub(crate) run_count: usize,
    pub(crate) last: Option<u64>,
    pub(crate) preserved: bool,
}

impl Default for KhoArray {
    fn default() -> Self {
        KhoArray::new()
    }
}

impl KhoArray {
    /// An empty array: no pages.
    pub const fn new() -> Self {
        KhoArray {
            first: PhysAddr::NULL,
            tail: PhysAddr::NULL,
            pages: 0,
            len: 0,
            layout: ArrayLayout { runs: 0, count_bits: 0, skip_bits: 0 },
            tail_entries: 0,
            run_count: 0,
            last: None,
            preserved: false,
        }
    }

    /// Non-empty entries.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether the array has no entry.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages in the chain.
    pub const fn pages(&self) -> u64 {
        self.pages
    }

    /// Bytes of memory the array holds: its pages.
    pub const fn footprint(&self) -> u64 {
        self.pages * PAGE_SIZE as u64
    }

    /// PA of the first page ([`PhysAddr::NULL`] when empty).
    pub const fn first_page(&self) -> PhysAddr {
        self.first
    }

    /// The highest position holding an entry.
    pub const fn last_position(&self) -> Option<u64> {
        self.last
    }

    /// Whether every page is preserved.
    pub const fn is_preserved(&self) -> bool {
        self.preserved
    }

    /// The descriptor to store in the user's own preserved data. It stays
    /// valid as entries are appended (the first page never changes once
    /// there is one), so it can be taken before writing ends — but not
    /// before the first entry.
    pub const fn descriptor(&self) -> ArrayDesc {
        ArrayDesc::new(self.first)
    }

    /// The entries in ascending position order, holes skipped.
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, p: &'a P) -> Iter<'a, P> {
        Iter { p, walk: Walk::new(self.first, self.pages), _array: PhantomData }
    }

    /// Preserves every page for the next kernel; pages the writer adds
    /// later are preserved as they are allocated. On failure the pages
    /// preserved so far are unpreserved again.
    pub fn preserve<P>(&mut self, p: &P) -> Result<(), ArrayError>
    where
        P: PhysMem + Preserve + ?Sized,
    {
        if self.preserved {
            return Err(ArrayError::AlreadyPreserved);
        }
        let mut done = 0u64;
        let r = self.for_each_page(p, |pa| {
            p.preserve(pa, Order::ZERO).map_err(|e| ArrayError::platform(Op::Preserve, pa, e))?;
            done += 1;
            Ok(())
        });
        if let Err(e) = r {
            let mut undo = done;
            let _ = self.for_each_page(p, |pa| {
                if undo > 0 {
                    undo -= 1;
                    // It was preserved just now: undoing it cannot be refused.
                    let _ = p.unpreserve(pa, Order::ZERO);
                }
                Ok(())
            });
            return Err(e);
        }
        self.preserved = true;
        Ok(())
    }

    /// Unpreserves every page. Every page is tried; the first refusal is
    /// returned, and the array counts as unpreserved either way.
    pub fn unpreserve<P>(&mut self, p: &P) -> Result<(), ArrayError>
    where
        P: PhysMem + Preserve + ?Sized,
    {
        if !self.preserved {
            return Err(ArrayError::NotPreserved);
        }
        let mut refused = None;
        self.for_each_page(p, |pa| {
            if let Err(e) = p.unpreserve(pa, Order::ZERO) {
                refused.get_or_insert(ArrayError::platform(Op::Unpreserve, pa, e));
            }
            Ok(())
        })?;
        self.preserved = false;
        refused.map_or(Ok(()), Err)
    }

    /// Unpreserves (if preserved) and frees every page. A page the tracker
    /// refuses to unpreserve is not freed — the next kernel would still
    /// find it preserved — and the first refusal is returned.
    pub fn destroy<P>(self, p: &P) -> Result<(), ArrayError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let mut refused = None;
        self.for_each_page(p, |pa| {
            if self.preserved
                && let Err(e) = p.unpreserve(pa, Order::ZERO)
            {
                refused.get_or_insert(ArrayError::platform(Op::Unpreserve, pa, e));
                return Ok(());
            }
            p.free_pages(pa, Order::ZERO);
            Ok(())
        })?;
        refused.map_or(Ok(()), Err)
    }

    /// Adopts the array `desc` describes, left by the previous kernel.
    ///
    /// Everything is checked before it is used: the descriptor's magic,
    /// version and reserved field; each link (page aligned, RAM, at most
    /// `max_pages` pages, not back to a page seen before); each page is
    /// claimed through the platform before any word of it is read (so a
    /// chain into memory that was not preserved fails); then its `start`
    /// (not below the previous page's last position + 1), its `layout`
    /// (reserved bits clear, at least one run, widths within 16 and 64
    /// bits, descriptors that fit), its runs (entries inside the page below
    /// the descriptors, positions strictly ascending across runs and pages
    /// and never past `u64::MAX`), its entries (non-zero, tagged value or
    /// aligned pointer), the zero words between entries and descriptors,
    /// and the zero bits after the last descriptor.
    ///
    /// The links are checked by [`kho_abi::chain::ChainCursor`], in its
    /// order (bound, alignment, RAM, cycle, claim); a link fault is
    /// [`PageFault::Link`](crate::PageFault::Link). Cycles cannot pass: a conforming [`Claim`]
    /// refuses a page twice, Brent's algorithm on the links finds a cycle
    /// within a few laps, and a page seen again repeats positions, which
    /// breaks the ascending rule at its `start` whatever the platform does.
    ///
    /// On failure every page claimed so far is unclaimed, in reverse, and the error
    /// names the page (index and PA), the run, the field and the fault.
    /// The restored array can be read, appended to, preserved again for
    /// another kexec, and destroyed.
    pub fn restore<P>(p: &P, desc: &ArrayDesc, max_pages: u64) -> Result<KhoArray, ArrayError>
    where
        P: PhysMem + Claim + ?Sized,
    {
        let first = check_descriptor(desc)?;
        let mut walk = Walk::new(first, max_pages);
        let mut claim = |pa| p.claim(pa, Order::ZERO);
        let (mut len, mut last) = (0u64, None);
        loop {
            match walk.next(p, &mut claim) {
                Ok(Some((pos, _))) => (len, last) = (len + 1, Some(pos)),
                Ok(None) => break,
                Err(e) => {
                    chain::unclaim_prefix(p, first, walk::spec(max_pages), walk.entered());
                    return Err(e);
                }
            }
        }
        Ok(KhoArray {
            first,
            tail: walk.pa,
            pages: walk.entered(),
            len,
            layout: walk.layout,
            tail_entries: walk.word.saturating_sub(ARRAY_HEADER_WORDS),
            run_count: walk.count,
            last,
            preserved: false,
        })
    }

    /// Calls `f` on every page in chain order; each page's link is read
    /// before `f` sees it, so `f` may free it.
    fn for_each_page<P, F>(&self, p: &P, mut f: F) -> Result<(), ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), ArrayError>,
    {
        let mut pa = self.first;
        for _ in 0..self.pages {
            let next = read_phys::<u64, _>(p, pa).map_err(|e| ArrayError::platform(Op::Access, pa, e))?;
            f(pa)?;
            pa = PhysAddr::new(next);
        }
        Ok(())
    }
}

/// The entries of a [`KhoArray`] with their positions, ascending, holes
/// skipped; from [`KhoArray::iter`].
///
/// Each item is a `Result` because every word is read through the
/// platform and decoded by the same checks as a restore; after an error
/// the iterator ends.
#[derive(Debug)]
pub struct Iter<'a, P: ?Sized> {
    p: &'a P,
    walk: Walk,
    _array: PhantomData<&'a KhoArray>,
}

impl<P: PhysMem + ?Sized> Iterator for Iter<'_, P> {
    type Item = Result<(u64, Entry), ArrayError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.walk.next(self.p, &mut |_| Ok(())).transpose()
    }
}
