//! The one walker over chains of preserved pages.
//!
//! Several formats link order-0 pages into a list: each page holds, at a
//! fixed offset, the PA of the next page (0 ends the list). Block sets,
//! kho-array pages, vmalloc chunk lists and `kho-v1` chunk lists all do.
//! The chain is incoming, untrusted state, so following it is where a
//! corrupt or hostile handover would make a reader loop, read outside RAM
//! or take memory it does not own. [`walk`] is the only loop that follows
//! such a chain; each format hands it a callback that parses one page's
//! payload and keeps only its own payload faults.
//!
//! # The checks, in order
//!
//! For the link to page `index` (the head for index 0, else the `next` of
//! the page before), before anything in the page is read:
//!
//! 1. *bound*: `index < max_pages`, else [`ChainFault::TooLong`];
//! 2. *alignment*: the PA is page aligned, else [`ChainFault::Misaligned`];
//! 3. *RAM*: the whole page is RAM ([`PhysMem::phys_to_virt`]), else
//!    [`ChainFault::NotRam`];
//! 4. *cycle*: the PA is not the walk's Brent checkpoint, else
//!    [`ChainFault::Cycle`];
//! 5. *claim*: the tracker lets the page be claimed at order 0
//!    ([`Claim::claim`]); if it refuses and the page is one of the pages
//!    this walk already claimed, [`ChainFault::Cycle`], otherwise
//!    [`ChainFault::NotClaimable`];
//! 6. *payload*: the caller's callback parses the page;
//! 7. the `next` word is read and becomes the next link.
//!
//! # Cycles, bounded
//!
//! A conforming [`Claim`] refuses a page claimed before, so a chain that
//! comes back to one of its pages fails at step 5 on the first repeat; the
//! walk then finds the earlier position by re-reading the links it already
//! followed (once, on the failure path). For a `Claim` that accepts a page
//! twice (a reader that does not claim at all, for example), Brent's
//! algorithm on the walk itself (one saved PA, moved at powers of two) finds
//! the cycle within a few laps of it. No memory grows with the chain, and
//! `max_pages` bounds the time in every case.
//!
//! # Undo
//!
//! On any failure, the walk's own or the callback's, every page it claimed
//! is unclaimed again, in reverse chain order, after the caller's `undo`
//! callback ran for each page whose payload it had accepted (so a payload
//! that claimed further memory gives it back first). The reverse order is
//! found without allocating: the claimed prefix is re-read from the head
//! with a fixed number of checkpoints ([`UNDO_SPAN`]) per level, so undoing
//! `n` pages costs `O(n log n)` reads at most (`O(n)` up to `UNDO_SPAN²`).
//! Every successful claim is undone by exactly one unclaim.

use core::fmt;

use zerocopy::{FromBytes, IntoBytes};

use crate::addr::{Order, PhysAddr};
use crate::error::AbiError;
use crate::geometry::PAGE_SIZE;
use crate::platform::{Claim, PhysMem, read_phys, read_phys_bytes};

/// The link that held a bad value: the chain's head or a page's `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkField {
    /// The head PA, which came from the caller's own (checked) data.
    Head,
    /// The `next` word of the page before the one named.
    Next,
}

impl LinkField {
    /// The field that links to page `index`.
    pub const fn of(index: u64) -> LinkField {
        if index == 0 { LinkField::Head } else { LinkField::Next }
    }
}

impl fmt::Display for LinkField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkField::Head => "head",
            LinkField::Next => "next",
        })
    }
}

/// What was wrong with a link of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainFault {
    /// The chain has more pages than the format allows.
    #[error("chain longer than {max} pages")]
    TooLong {
        /// The limit.
        max: u64,
    },
    /// The link is not page aligned.
    #[error("link is not page aligned")]
    Misaligned,
    /// The page is not entirely RAM.
    #[error("not RAM: {0}")]
    NotRam(AbiError),
    /// The link comes back to the page at chain position `first`.
    #[error("cycle back to page {first}")]
    Cycle {
        /// Position of the earlier visit.
        first: u64,
    },
    /// The tracker refused to claim the page: it was not preserved as an
    /// order-0 block, or was claimed already by someone else.
    #[error("not claimable: {0}")]
    NotClaimable(AbiError),
}

impl ChainFault {
    /// The fault's stable name, shared by every format that has chains.
    pub const fn kind(&self) -> &'static str {
        match self {
            ChainFault::TooLong { .. } => "chain_too_long",
            ChainFault::Misaligned => "chain_misaligned",
            ChainFault::NotRam(_) => "chain_not_ram",
            ChainFault::Cycle { .. } => "chain_cycle",
            ChainFault::NotClaimable(_) => "chain_not_claimable",
        }
    }

    /// Every fault kind, one per variant, for tests and documentation.
    pub const KINDS: [&'static str; 5] =
        ["chain_too_long", "chain_misaligned", "chain_not_ram", "chain_cycle", "chain_not_claimable"];
}

/// A bad link: the position of the page it leads to, its PA, the field
/// holding it, and the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("page {index} at {pa}, {field}: {fault}")]
pub struct ChainError {
    /// Position in the chain of the page the link leads to (0 = head).
    pub index: u64,
    /// The link's value: the page's PA.
    pub pa: PhysAddr,
    /// [`LinkField::Head`] for index 0, else [`LinkField::Next`].
    pub field: LinkField,
    /// What was wrong.
    pub fault: ChainFault,
}

impl ChainError {
    /// The fault's stable name ([`ChainFault::kind`]).
    pub const fn kind(&self) -> &'static str {
        self.fault.kind()
    }
}

/// Why a [`walk`] failed: a bad link, or the caller's payload callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError<E> {
    /// A link failed a check.
    Chain(ChainError),
    /// The payload callback failed.
    Payload(E),
}

/// The shape of a chain: how many pages it may have and where in a page
/// its `next` word sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    /// The most pages a chain may have.
    pub max_pages: u64,
    /// Byte offset of the native-endian `u64 next` in each page; 8-byte
    /// aligned and inside the page.
    pub next_offset: usize,
}

impl ChainSpec {
    /// A spec, checked at compile time where it is a constant.
    ///
    /// # Panics
    ///
    /// If `next_offset` is not 8-byte aligned or the word is not inside a
    /// page (a programming error in the format, never input).
    pub const fn new(max_pages: u64, next_offset: usize) -> ChainSpec {
        assert!(next_offset.is_multiple_of(8) && next_offset + 8 <= PAGE_SIZE, "next word outside the page");
        ChainSpec { max_pages, next_offset }
    }

    /// The `next` link stored in the page at `pa`, `None` if unreadable.
    fn next_of<P: PhysMem + ?Sized>(&self, p: &P, pa: PhysAddr) -> Option<PhysAddr> {
        let at = pa.checked_add(self.next_offset as u64)?;
        read_phys::<u64, P>(p, at).ok().map(PhysAddr::new)
    }
}

/// A page of a chain being walked: checked (aligned, RAM, claimed) and
/// readable anywhere inside.
#[derive(Debug)]
pub struct ChainPage<'a, P: ?Sized> {
    p: &'a P,
    index: u64,
    pa: PhysAddr,
}

impl<'a, P: PhysMem + ?Sized> ChainPage<'a, P> {
    /// Position in the chain (0 = head).
    pub const fn index(&self) -> u64 {
        self.index
    }

    /// The page's PA.
    pub const fn pa(&self) -> PhysAddr {
        self.pa
    }

    /// The platform, to reach memory the payload names.
    pub const fn platform(&self) -> &'a P {
        self.p
    }

    /// Copies `buf.len()` bytes at `offset` in the page into `buf`; fails
    /// with `Short` if they do not lie inside the page.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<(), AbiError> {
        let end = offset.checked_add(buf.len()).filter(|&end| end <= PAGE_SIZE);
        let Some(_) = end else {
            return Err(AbiError::Short {
                what: "chain page",
                need: offset.saturating_add(buf.len()),
                have: PAGE_SIZE,
            });
        };
        // `offset < PAGE_SIZE` and the page is aligned: no overflow.
        read_phys_bytes(self.p, PhysAddr::new(self.pa.as_u64() + offset as u64), buf)
    }

    /// Reads a `T` at `offset` in the page (no alignment needed).
    pub fn read<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, AbiError> {
        let mut value = T::new_zeroed();
        self.read_bytes(offset, value.as_mut_bytes())?;
        Ok(value)
    }
}

/// A chain whose pages are all claimed: what a successful [`walk`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimedChain {
    head: PhysAddr,
    pages: u64,
    spec: ChainSpec,
}

impl ClaimedChain {
    /// The empty chain at `head` 0 (also what a walk of head 0 returns).
    pub const fn empty(spec: ChainSpec) -> ClaimedChain {
        ClaimedChain { head: PhysAddr::NULL, pages: 0, spec }
    }

    /// The first page, 0 for an empty chain.
    pub const fn head(&self) -> PhysAddr {
        self.head
    }

    /// Pages in the chain.
    pub const fn pages(&self) -> u64 {
        self.pages
    }

    /// Calls `f` with the position and PA of every page in chain order,
    /// reading each page's `next` before `f` sees the page (so `f` may
    /// free it). Stops with the platform's error if a page has become
    /// unreadable, leaving the rest.
    pub fn for_each<P: PhysMem + ?Sized>(&self, p: &P, mut f: impl FnMut(u64, PhysAddr)) -> Result<(), AbiError> {
        let mut pa = self.head;
        for index in 0..self.pages {
            let at = pa.checked_add(self.spec.next_offset as u64).ok_or(AbiError::NotRam { pa, len: 8 })?;
            let next = PhysAddr::new(read_phys::<u64, P>(p, at)?);
            f(index, pa);
            pa = next;
        }
        Ok(())
    }

    /// Unclaims every page, in reverse chain order, as if the walk had
    /// never happened.
    pub fn unclaim<P: PhysMem + Claim + ?Sized>(self, p: &P) {
        unclaim_prefix(p, self.head, self.spec, self.pages);
    }
}

/// Walks, checks and claims the chain at `head` (0 = empty), calling
/// `visit` for each page after its link passed every check (see the
/// module docs for the order).
///
/// On failure nothing stays claimed: see [`walk_with_undo`], of which this
/// is the form for a payload that takes nothing that needs giving back.
pub fn walk<P, E, V>(p: &P, head: PhysAddr, spec: ChainSpec, visit: V) -> Result<ClaimedChain, WalkError<E>>
where
    P: PhysMem + Claim + ?Sized,
    V: FnMut(&ChainPage<'_, P>) -> Result<(), E>,
{
    walk_with_undo(p, head, spec, visit, |_: &ChainPage<'_, P>| {})
}

/// [`walk`], with `undo` called on failure for every page whose `visit`
/// succeeded, in reverse chain order, each just before the page is
/// unclaimed. A `visit` that fails must itself give back whatever it took
/// for its own page.
pub fn walk_with_undo<P, E, V, U>(
    p: &P,
    head: PhysAddr,
    spec: ChainSpec,
    mut visit: V,
    mut undo: U,
) -> Result<ClaimedChain, WalkError<E>>
where
    P: PhysMem + Claim + ?Sized,
    V: FnMut(&ChainPage<'_, P>) -> Result<(), E>,
    U: FnMut(&ChainPage<'_, P>),
{
    let mut claimed = 0u64;
    let mut visited = 0u64;
    let result = run(p, head, spec, &mut visit, &mut claimed, &mut visited);
    if result.is_err() {
        reverse_each(p, &spec, head, 0, claimed, &mut |index, pa| {
            if index < visited {
                undo(&ChainPage { p, index, pa });
            }
            p.unclaim(pa, Order::ZERO);
        });
    }
    result.map(|pages| ClaimedChain { head, pages, spec })
}

/// The walk itself; counts the pages claimed and the pages whose payload
/// was accepted so that the caller can undo exactly that.
fn run<P, E, V>(
    p: &P,
    head: PhysAddr,
    spec: ChainSpec,
    visit: &mut V,
    claimed: &mut u64,
    visited: &mut u64,
) -> Result<u64, WalkError<E>>
where
    P: PhysMem + Claim + ?Sized,
    V: FnMut(&ChainPage<'_, P>) -> Result<(), E>,
{
    let mut cursor = ChainCursor::new(head, spec);
    let mut pa = head;
    while !pa.is_null() {
        let index = cursor.entered();
        cursor.enter(p, pa, |pa| p.claim(pa, Order::ZERO)).map_err(WalkError::Chain)?;
        *claimed += 1;
        visit(&ChainPage { p, index, pa }).map_err(WalkError::Payload)?;
        *visited += 1;
        // The page is RAM and the word inside it (`ChainSpec::new`).
        let Some(next) = spec.next_of(p, pa) else {
            let fault = ChainFault::NotRam(AbiError::NotRam { pa, len: PAGE_SIZE as u64 });
            return Err(WalkError::Chain(ChainError { index, pa, field: LinkField::of(index), fault }));
        };
        pa = next;
    }
    Ok(cursor.entered())
}

/// The checks of one link, for a format whose decoder must drive the walk
/// itself (it learns the next link only after parsing a page, or reads a
/// chain it already owns without claiming it). [`walk`] is built on it, so
/// both check in the same order (module docs, steps 1 to 5).
#[derive(Clone, Debug)]
pub struct ChainCursor {
    spec: ChainSpec,
    head: PhysAddr,
    entered: u64,
    /// Brent's checkpoint: the page at position `saved_at`, the latest
    /// power of two (or 0) passed.
    saved: PhysAddr,
    saved_at: u64,
}

impl ChainCursor {
    /// A cursor before the first page of the chain at `head`.
    pub const fn new(head: PhysAddr, spec: ChainSpec) -> ChainCursor {
        ChainCursor { spec, head, entered: 0, saved: PhysAddr::NULL, saved_at: 0 }
    }

    /// Pages entered so far: the position the next link leads to.
    pub const fn entered(&self) -> u64 {
        self.entered
    }

    /// Checks the link to the next page, at `pa` (not 0): bound, alignment,
    /// RAM, cycle, then `claim` (the tracker's [`Claim::claim`] at order 0,
    /// or `Ok` for a chain the caller already owns). On success the page is
    /// entered; on failure nothing changed and nothing was claimed.
    pub fn enter<P, C>(&mut self, p: &P, pa: PhysAddr, claim: C) -> Result<(), ChainError>
    where
        P: PhysMem + ?Sized,
        C: FnOnce(PhysAddr) -> Result<(), AbiError>,
    {
        let index = self.entered;
        let fail = |fault| Err(ChainError { index, pa, field: LinkField::of(index), fault });
        if index >= self.spec.max_pages {
            return fail(ChainFault::TooLong { max: self.spec.max_pages });
        }
        if !pa.is_page_aligned() {
            return fail(ChainFault::Misaligned);
        }
        if let Err(e) = p.phys_to_virt(pa, PAGE_SIZE as u64) {
            return fail(ChainFault::NotRam(e));
        }
        if index > 0 && pa == self.saved {
            return fail(ChainFault::Cycle { first: self.saved_at });
        }
        if let Err(e) = claim(pa) {
            return fail(match position_of(p, &self.spec, self.head, pa, index) {
                Some(first) => ChainFault::Cycle { first },
                None => ChainFault::NotClaimable(e),
            });
        }
        if index == 0 || index.is_power_of_two() {
            (self.saved, self.saved_at) = (pa, index);
        }
        self.entered += 1;
        Ok(())
    }
}

/// Unclaims the first `n` pages of the chain at `head`, in reverse chain
/// order: the undo of `n` successful [`ChainCursor::enter`]s that claimed.
pub fn unclaim_prefix<P: PhysMem + Claim + ?Sized>(p: &P, head: PhysAddr, spec: ChainSpec, n: u64) {
    reverse_each(p, &spec, head, 0, n, &mut |_, pa| p.unclaim(pa, Order::ZERO));
}

/// Position of `pa` among the first `n` pages from `head`.
fn position_of<P: PhysMem + ?Sized>(p: &P, spec: &ChainSpec, head: PhysAddr, pa: PhysAddr, n: u64) -> Option<u64> {
    let mut at = head;
    for index in 0..n {
        if at == pa {
            return Some(index);
        }
        at = spec.next_of(p, at)?;
    }
    None
}

/// Checkpoints kept per level when visiting a chain backwards.
pub const UNDO_SPAN: usize = 32;

/// Calls `f(index, pa)` for the `n` pages from `start` (at position
/// `first`) in reverse order, with [`UNDO_SPAN`] PAs of stack per level of
/// recursion: a run of at most `UNDO_SPAN` pages is read into a buffer;
/// a longer one is cut into `UNDO_SPAN` segments whose starts are noted
/// in one forward pass, then each segment is done the same way, last
/// first. A page that became unreadable ends the pass early (the pages
/// after it are not reached).
fn reverse_each<P, F>(p: &P, spec: &ChainSpec, start: PhysAddr, first: u64, n: u64, f: &mut F)
where
    P: PhysMem + ?Sized,
    F: FnMut(u64, PhysAddr),
{
    let span = UNDO_SPAN as u64;
    let stride = n.div_ceil(span).max(1);
    let mut marks = [PhysAddr::NULL; UNDO_SPAN];
    let mut noted = 0usize;
    let mut pa = start;
    for k in 0..n {
        if k % stride == 0 {
            // `k / stride < span`, since `k < n <= stride * span`.
            marks[noted] = pa;
            noted += 1;
        }
        if k + 1 < n {
            match spec.next_of(p, pa) {
                Some(next) => pa = next,
                None => break,
            }
        }
    }
    for s in (0..noted).rev() {
        let from = s as u64 * stride;
        let len = stride.min(n - from);
        if stride == 1 {
            f(first + from, marks[s]);
        } else {
            reverse_each(p, spec, marks[s], first + from, len, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, UnsafeCell};
    use core::ptr::NonNull;
    use std::vec::Vec;

    const PAGES: usize = 64;
    const BASE: u64 = 0x10_0000;
    const SPEC: ChainSpec = ChainSpec::new(16, 8);

    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    /// `PAGES` pages of RAM at `BASE`, a per-page claim state, and a log
    /// of claims and unclaims.
    struct Lab {
        ram: Vec<UnsafeCell<Page>>,
        preserved: Cell<u64>,
        claimed: Cell<u64>,
        /// Lets a page be claimed twice (a non-conforming `Claim`).
        lax: bool,
        log: core::cell::RefCell<Vec<(bool, u64)>>,
    }

    impl Lab {
        fn new() -> Lab {
            let ram = (0..PAGES).map(|_| UnsafeCell::new(Page([0; PAGE_SIZE]))).collect();
            Lab { ram, preserved: Cell::new(u64::MAX), claimed: Cell::new(0), lax: false, log: Default::default() }
        }

        fn pa(i: usize) -> PhysAddr {
            PhysAddr::new(BASE + (i * PAGE_SIZE) as u64)
        }

        fn page_of(pa: PhysAddr) -> usize {
            ((pa.as_u64() - BASE) / PAGE_SIZE as u64) as usize
        }

        /// Links the pages `order` in that order and returns the head.
        fn link(&self, order: &[usize], last_next: u64) -> PhysAddr {
            for (k, &i) in order.iter().enumerate() {
                let next = order.get(k + 1).map_or(last_next, |&j| Lab::pa(j).as_u64());
                crate::platform::write_phys(self, Lab::pa(i).checked_add(8).unwrap(), &next).unwrap();
            }
            Lab::pa(order[0])
        }

        fn claimed_none(&self) -> bool {
            self.claimed.get() == 0
        }
    }

    // SAFETY: pointers are into the boxed pages of `self.ram`, which live
    // as long as `self`; each range must lie inside one page (the walker
    // never asks for more), page-aligned storage keeps the 8-byte offset.
    unsafe impl PhysMem for Lab {
        fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
            let err = AbiError::NotRam { pa, len };
            let off = pa.checked_offset_from(PhysAddr::new(BASE)).ok_or(err)?;
            let (page, inner) = ((off / PAGE_SIZE as u64) as usize, (off % PAGE_SIZE as u64) as usize);
            if page >= PAGES || inner as u64 + len > PAGE_SIZE as u64 {
                return Err(err);
            }
            // SAFETY: `inner < PAGE_SIZE`, inside the page.
            let ptr = unsafe { self.ram[page].get().cast::<u8>().add(inner) };
            NonNull::new(ptr).ok_or(err)
        }
    }

    impl Claim for Lab {
        fn claim(&self, pa: PhysAddr, order: Order) -> Result<(), AbiError> {
            let bit = 1u64 << Lab::page_of(pa);
            let taken = self.claimed.get() & bit != 0;
            if self.preserved.get() & bit == 0 || (taken && !self.lax) {
                return Err(AbiError::NotPreserved { pa, order: order.get() });
            }
            self.claimed.set(self.claimed.get() | bit);
            self.log.borrow_mut().push((true, pa.as_u64()));
            Ok(())
        }

        fn unclaim(&self, pa: PhysAddr, _: Order) {
            self.claimed.set(self.claimed.get() & !(1u64 << Lab::page_of(pa)));
            self.log.borrow_mut().push((false, pa.as_u64()));
        }
    }

    fn ok(_: &ChainPage<'_, Lab>) -> Result<(), ()> {
        Ok(())
    }

    fn fault(r: Result<ClaimedChain, WalkError<()>>) -> (u64, LinkField, ChainFault) {
        match r {
            Err(WalkError::Chain(e)) => (e.index, e.field, e.fault),
            other => panic!("expected a chain fault, got {other:?}"),
        }
    }

    /// Claims in the log, then unclaims of exactly the same pages in the
    /// reverse order.
    fn assert_undone_in_reverse(lab: &Lab, claims: usize) {
        let log = lab.log.borrow();
        assert_eq!(log.len(), 2 * claims, "{log:?}");
        for k in 0..claims {
            assert!(log[k].0 && !log[2 * claims - 1 - k].0);
            assert_eq!(log[k].1, log[2 * claims - 1 - k].1, "{log:?}");
        }
        drop(log);
        assert!(lab.claimed_none());
        lab.log.borrow_mut().clear();
    }

    #[test]
    fn a_good_chain_is_claimed_and_visited_in_order() {
        let lab = Lab::new();
        let head = lab.link(&[3, 1, 7], 0);
        let mut seen = Vec::new();
        let chain = walk(&lab, head, SPEC, |pg: &ChainPage<'_, Lab>| {
            seen.push((pg.index(), Lab::page_of(pg.pa()), pg.read::<u64>(8).unwrap()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(seen, [(0, 3, Lab::pa(1).as_u64()), (1, 1, Lab::pa(7).as_u64()), (2, 7, 0)]);
        assert_eq!((chain.head(), chain.pages()), (head, 3));
        assert_eq!(lab.claimed.get(), (1 << 3) | (1 << 1) | (1 << 7));
        let mut order = Vec::new();
        chain.for_each(&lab, |i, pa| order.push((i, Lab::page_of(pa)))).unwrap();
        assert_eq!(order, [(0, 3), (1, 1), (2, 7)]);
        chain.unclaim(&lab);
        assert_undone_in_reverse(&lab, 3);
    }

    #[test]
    fn an_empty_chain_claims_nothing() {
        let lab = Lab::new();
        let chain = walk(&lab, PhysAddr::NULL, SPEC, ok).unwrap();
        assert_eq!(chain, ClaimedChain::empty(SPEC));
        assert!(lab.log.borrow().is_empty());
    }

    #[test]
    fn too_long() {
        let lab = Lab::new();
        let order: Vec<usize> = (0..17).collect();
        let head = lab.link(&order, 0);
        assert_eq!(fault(walk(&lab, head, SPEC, ok)), (16, LinkField::Next, ChainFault::TooLong { max: 16 }));
        assert_undone_in_reverse(&lab, 16);
        // Exactly the limit is fine.
        let head = lab.link(&order[..16], 0);
        assert_eq!(walk(&lab, head, SPEC, ok).unwrap().pages(), 16);
    }

    #[test]
    fn misaligned_head_and_next() {
        let lab = Lab::new();
        let bad = PhysAddr::new(Lab::pa(2).as_u64() + 8);
        assert_eq!(fault(walk(&lab, bad, SPEC, ok)), (0, LinkField::Head, ChainFault::Misaligned));
        assert_undone_in_reverse(&lab, 0);
        let head = lab.link(&[2, 4], bad.as_u64());
        assert_eq!(fault(walk(&lab, head, SPEC, ok)), (2, LinkField::Next, ChainFault::Misaligned));
        assert_undone_in_reverse(&lab, 2);
    }

    #[test]
    fn not_ram() {
        let lab = Lab::new();
        let outside = Lab::pa(PAGES).as_u64();
        let head = lab.link(&[5], outside);
        let (index, field, f) = fault(walk(&lab, head, SPEC, ok));
        assert_eq!((index, field), (1, LinkField::Next));
        assert!(matches!(f, ChainFault::NotRam(AbiError::NotRam { .. })), "{f:?}");
        assert_undone_in_reverse(&lab, 1);
        let (_, field, f) = fault(walk(&lab, PhysAddr::new(PAGE_SIZE as u64), SPEC, ok));
        assert_eq!((field, f.kind()), (LinkField::Head, "chain_not_ram"));
    }

    #[test]
    fn not_claimable() {
        let lab = Lab::new();
        lab.preserved.set(!(1 << 9));
        let head = lab.link(&[8, 10, 9], 0);
        let (index, _, f) = fault(walk(&lab, head, SPEC, ok));
        assert_eq!(index, 2);
        assert!(matches!(f, ChainFault::NotClaimable(AbiError::NotPreserved { .. })), "{f:?}");
        assert_undone_in_reverse(&lab, 2);
    }

    #[test]
    fn a_cycle_is_caught_by_the_claim_and_placed() {
        let lab = Lab::new();
        // 0 -> 1 -> 2 -> 3 -> 1
        let head = lab.link(&[0, 1, 2, 3], Lab::pa(1).as_u64());
        assert_eq!(fault(walk(&lab, head, SPEC, ok)), (4, LinkField::Next, ChainFault::Cycle { first: 1 }));
        assert_undone_in_reverse(&lab, 4);
        // A page linking to itself.
        let head = lab.link(&[6], Lab::pa(6).as_u64());
        assert_eq!(fault(walk(&lab, head, SPEC, ok)), (1, LinkField::Next, ChainFault::Cycle { first: 0 }));
        assert_undone_in_reverse(&lab, 1);
    }

    #[test]
    fn a_cycle_is_caught_without_the_claim() {
        let mut lab = Lab::new();
        lab.lax = true;
        // 0 -> 1 -> 2 -> 3 -> 4 -> 2, under a limit far above its length.
        let spec = ChainSpec::new(1000, 8);
        let head = lab.link(&[0, 1, 2, 3, 4], Lab::pa(2).as_u64());
        let r: Result<_, WalkError<()>> = walk(&lab, head, spec, ok);
        let (index, _, f) = fault(r);
        assert!(matches!(f, ChainFault::Cycle { .. }), "{f:?}");
        assert!(index < 16, "found late: {index}");
        // Every claim, repeats included, was undone once, in reverse.
        assert_undone_in_reverse(&lab, index as usize);
    }

    #[test]
    fn a_payload_failure_undoes_in_reverse_with_the_callbacks() {
        let lab = Lab::new();
        let head = lab.link(&[1, 2, 3, 4], 0);
        let mut undone = Vec::new();
        let r = walk_with_undo(
            &lab,
            head,
            SPEC,
            |pg: &ChainPage<'_, Lab>| if pg.index() == 2 { Err("bad payload") } else { Ok(()) },
            |pg: &ChainPage<'_, Lab>| undone.push(pg.index()),
        );
        assert_eq!(r, Err(WalkError::Payload("bad payload")));
        // Page 2 failed its own payload: only 1 and 0 are undone.
        assert_eq!(undone, [1, 0]);
        assert_undone_in_reverse(&lab, 3);
    }

    #[test]
    fn long_undo_is_reverse_and_complete() {
        // More pages than one and two levels of checkpoints hold.
        for n in [1, 31, 32, 33, 63] {
            let lab = Lab::new();
            let order: Vec<usize> = (0..n).collect();
            let head = lab.link(&order, 1);
            let spec = ChainSpec::new(1000, 8);
            let (index, _, f) = fault(walk(&lab, head, spec, ok));
            assert_eq!((index, f), (n as u64, ChainFault::Misaligned));
            assert_undone_in_reverse(&lab, n);
        }
        let mut seen = Vec::new();
        let lab = Lab::new();
        let order: Vec<usize> = (0..40).collect();
        let head = lab.link(&order, 0);
        reverse_each(&lab, &ChainSpec::new(1000, 8), head, 0, 40, &mut |i, pa| seen.push((i, Lab::page_of(pa))));
        let want: Vec<(u64, usize)> = (0..40).rev().map(|i| (i as u64, i)).collect();
        assert_eq!(seen, want);
        // With `UNDO_SPAN = 2` levels needed: 2000 pages (a chain reusing
        // the lab's pages under a lax claim would do too; positions suffice).
        let mut count = 0u64;
        let ring = lab.link(&order, Lab::pa(0).as_u64());
        reverse_each(&lab, &ChainSpec::new(5000, 8), ring, 0, 2000, &mut |i, pa| {
            assert_eq!(Lab::page_of(pa) as u64, i % 40);
            assert_eq!(i, 1999 - count);
            count += 1;
        });
        assert_eq!(count, 2000);
    }

    #[test]
    fn page_reads_stay_inside_the_page() {
        let lab = Lab::new();
        let head = lab.link(&[0], 0);
        walk(&lab, head, SPEC, |pg: &ChainPage<'_, Lab>| {
            assert!(pg.read::<u64>(PAGE_SIZE - 8).is_ok());
            assert!(matches!(pg.read::<u64>(PAGE_SIZE - 4), Err(AbiError::Short { .. })));
            assert!(pg.read::<u8>(usize::MAX).is_err());
            Ok::<(), ()>(())
        })
        .unwrap()
        .unclaim(&lab);
        assert!(lab.claimed_none());
    }

    #[test]
    fn a_cursor_checks_in_the_walks_order_and_a_failure_changes_nothing() {
        let lab = Lab::new();
        let head = lab.link(&[0, 1], Lab::pa(0).as_u64());
        let mut cursor = ChainCursor::new(head, ChainSpec::new(2, 8));
        let no_claim = |_: PhysAddr| Ok(());
        // Alignment before RAM: a misaligned PA outside RAM is misaligned.
        let odd = PhysAddr::new(Lab::pa(PAGES).as_u64() + 8);
        assert_eq!(cursor.enter(&lab, odd, no_claim).unwrap_err().fault, ChainFault::Misaligned);
        assert_eq!(cursor.entered(), 0);
        cursor.enter(&lab, head, no_claim).unwrap();
        // A refused claim of a page not in the walk is not a cycle.
        let refuse = |pa: PhysAddr| Err(AbiError::NotPreserved { pa, order: 0 });
        let e = cursor.enter(&lab, Lab::pa(1), refuse).unwrap_err();
        assert_eq!((e.index, e.field), (1, LinkField::Next));
        assert!(matches!(e.fault, ChainFault::NotClaimable(_)), "{e:?}");
        assert_eq!(cursor.entered(), 1);
        // Without a claim, Brent's checkpoint catches the page coming back.
        let e = cursor.enter(&lab, head, no_claim).unwrap_err();
        assert_eq!(e.fault, ChainFault::Cycle { first: 0 });
        cursor.enter(&lab, Lab::pa(1), no_claim).unwrap();
        // Bound before everything else.
        let e = cursor.enter(&lab, odd, no_claim).unwrap_err();
        assert_eq!((e.index, e.fault), (2, ChainFault::TooLong { max: 2 }));
        assert!(lab.claimed_none());
    }

    #[test]
    fn kinds_are_stable_names() {
        assert_eq!(crate::error::first_bad_kind(&ChainFault::KINDS, "chain_"), None);
        let faults = [
            ChainFault::TooLong { max: 1 },
            ChainFault::Misaligned,
            ChainFault::NotRam(AbiError::NotRam { pa: PhysAddr::NULL, len: 1 }),
            ChainFault::Cycle { first: 0 },
            ChainFault::NotClaimable(AbiError::NotPreserved { pa: PhysAddr::NULL, order: 0 }),
        ];
        assert_eq!(faults.map(|f| f.kind()), ChainFault::KINDS);
    }
}
