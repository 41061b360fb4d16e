//! The linear write iterator: set a position, set an entry, in ascending
//! position order.

use kho_abi::{Order, PageAlloc, PageWords, PhysAddr, PhysMem, Preserve};

use crate::array::KhoArray;
use crate::error::{ArrayError, Op};
use crate::format::{
    ARRAY_HEADER_WORDS, ARRAY_LAYOUT_WORD, ARRAY_NEXT_WORD, ARRAY_PAGE_WORDS, ARRAY_START_WORD, ArrayLayout, Entry,
    bits_for, stream_get, stream_put,
};

/// Appends entries to a [`KhoArray`] in ascending position order; from
/// [`KhoArray::writer`].
///
/// The writer has a current position: [`seek`](Writer::seek) moves it
/// forward, [`set`](Writer::set) stores an entry there and moves on by
/// one, so consecutive `set`s fill consecutive positions (one run) and a
/// `seek` leaves a hole. Positions only grow; positions left out are empty.
///
/// Pages are allocated (order 0) as the array grows — and preserved at
/// once if the array is preserved. Every call leaves the array complete and
/// well formed, whatever it returns: an entry is in the array once `set`
/// returned `Ok`, and a failed `set` (allocation or preservation refused)
/// changes nothing, allocates nothing, and can be retried.
///
/// ```
/// use kho_abi::WithTracker;
/// use kho_array::{Entry, KhoArray};
/// use kho_sim::{Machine, MachineConfig, ModelTracker};
///
/// let m = Machine::new(MachineConfig::default())?;
/// let t = ModelTracker::new();
/// let p = WithTracker::new(&m, &t);
/// let mut a = KhoArray::new();
/// let mut w = a.writer(&p);
/// w.set(Entry::value(10)?)?; // position 0
/// w.set(Entry::value(11)?)?; // position 1
/// w.seek(1 << 40)?;
/// w.set(Entry::pointer(0x1_0000_3000)?)?;
/// w.push(u64::MAX, Entry::value(7)?)?;
/// assert!(w.set(Entry::value(8)?).is_err()); // no position after u64::MAX
/// let got: Vec<_> = a.iter(&p).map(|e| e.map(|(pos, e)| (pos, e.raw()))).collect::<Result<_, _>>()?;
/// assert_eq!(got, [(0, 21), (1, 23), (1 << 40, 0x1_0000_3000), (u64::MAX, 15)]);
/// assert_eq!(a.pages(), 1);
/// a.destroy(&p)?;
/// assert_eq!(m.outstanding_pages(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Writer<'a, P: ?Sized> {
    array: &'a mut KhoArray,
    p: &'a P,
    /// Where the next entry goes; `None` once `u64::MAX` was passed.
    pos: Option<u64>,
}

impl<'a, P: PhysMem + PageAlloc + Preserve + ?Sized> Writer<'a, P> {
    pub(crate) fn new(array: &'a mut KhoArray, p: &'a P) -> Self {
        let pos = array.last.map_or(Some(0), |last| last.checked_add(1));
        Writer { array, p, pos }
    }

    /// Where the next entry goes; `None` after an entry (or hole) at
    /// `u64::MAX`.
    pub const fn position(&self) -> Option<u64> {
        self.pos
    }

    /// Moves to `pos`, which must be above the array's last position.
    pub fn seek(&mut self, pos: u64) -> Result<(), ArrayError> {
        if let Some(last) = self.array.last
            && pos <= last
        {
            return Err(ArrayError::NotAscending { pos, last });
        }
        self.pos = Some(pos);
        Ok(())
    }

    /// Stores `entry` at the current position and moves to the next one.
    pub fn set(&mut self, entry: Entry) -> Result<(), ArrayError> {
        let pos = self.pos.ok_or(ArrayError::PositionOverflow)?;
        self.array.append(self.p, pos, entry.raw())?;
        self.pos = pos.checked_add(1);
        Ok(())
    }

    /// [`seek`](Writer::seek) to `pos`, then [`set`](Writer::set) `entry`.
    pub fn push(&mut self, pos: u64, entry: Entry) -> Result<(), ArrayError> {
        self.seek(pos)?;
        self.set(entry)
    }

    /// Stores the raw words `raws` at consecutive positions from the
    /// current one, a 0 leaving its position empty; the fast path for dense
    /// data. Each word must be 0 or a valid [`Entry`]: on an error the
    /// words before the bad one are stored and the position is at it.
    pub fn extend_raw(&mut self, raws: &[u64]) -> Result<(), ArrayError> {
        let mut rest = raws;
        while let Some(&raw) = rest.first() {
            let pos = self.pos.ok_or(ArrayError::PositionOverflow)?;
            let room = self.array.run_room(pos).min(rest.len());
            let valid = rest[..room].iter().take_while(|&&w| w != 0 && Entry::from_raw(w).is_ok()).count();
            if valid > 0 {
                self.array.extend_run(self.p, pos, &rest[..valid])?;
                // `run_room` keeps the run at or below u64::MAX.
                self.pos = pos.checked_add(valid as u64);
                rest = &rest[valid..];
            } else if raw == 0 {
                self.pos = pos.checked_add(1);
                rest = &rest[1..];
            } else {
                self.set(Entry::from_raw(raw)?)?;
                rest = &rest[1..];
            }
        }
        Ok(())
    }
}

impl KhoArray {
    /// A writer appending after the last entry (at position 0 in an empty
    /// array).
    pub fn writer<'a, P>(&'a mut self, p: &'a P) -> Writer<'a, P>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        Writer::new(self, p)
    }

    /// The tail's layout once the last run grows to `count` entries.
    fn grown(&self, count: usize) -> ArrayLayout {
        let l = self.layout;
        // `count >= 1`; a run never holds more entries than a page has words.
        let count_bits = l.count_bits.max(bits_for(count as u64 - 1) as u8);
        ArrayLayout { count_bits, ..l }
    }

    /// Whether the tail has room for `entries` entries under `layout`.
    const fn fits(&self, layout: ArrayLayout, entries: usize) -> bool {
        ARRAY_HEADER_WORDS + entries + layout.descriptor_words() <= ARRAY_PAGE_WORDS
    }

    /// How many entries from `pos` on the tail's last run can take as it
    /// stands (0 unless `pos` follows the last entry).
    pub(crate) fn run_room(&self, pos: u64) -> usize {
        match self.last {
            Some(last) if !self.tail.is_null() && last.checked_add(1) == Some(pos) => {
                let free = |l: ArrayLayout| {
                    ARRAY_PAGE_WORDS.saturating_sub(ARRAY_HEADER_WORDS + self.tail_entries + l.descriptor_words())
                };
                let most = free(self.layout);
                if most == 0 {
                    return 0;
                }
                // The count field for `most` more entries is the widest any
                // smaller extension needs, so this many fit.
                let by_page = free(self.grown(self.run_count + most));
                // Positions pos..=u64::MAX remain; pos >= 1 here.
                let by_pos = usize::try_from(u64::MAX - pos + 1).unwrap_or(usize::MAX);
                by_page.min(by_pos)
            }
            _ => 0,
        }
    }

    /// Appends `raws` (valid entries, at most `run_room(pos)` of them) to
    /// the tail's last run.
    pub(crate) fn extend_run<P: PhysMem + ?Sized>(&mut self, p: &P, pos: u64, raws: &[u64]) -> Result<(), ArrayError> {
        let (old, count, at) = (self.layout, self.run_count + raws.len(), ARRAY_HEADER_WORDS + self.tail_entries);
        let new = self.grown(count);
        with_page(p, self.tail, |mut page| {
            repack(&mut page, old, new);
            page.copy_from(at, raws);
            stream_put(&mut page, new.count_bit(usize::from(new.runs) - 1), new.count_bits.into(), count as u64 - 1);
            page.set(ARRAY_LAYOUT_WORD, new.encode());
        })?;
        let n = raws.len() as u64;
        (self.layout, self.run_count) = (new, count);
        self.tail_entries += raws.len();
        self.len += n;
        self.last = Some(pos + (n - 1));
        Ok(())
    }

    /// Appends one valid entry at `pos`, above the last position.
    pub(crate) fn append<P>(&mut self, p: &P, pos: u64, raw: u64) -> Result<(), ArrayError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        if self.run_room(pos) > 0 {
            return self.extend_run(p, pos, &[raw]);
        }
        if let Some(last) = self.last
            && !self.tail.is_null()
        {
            let (old, skip) = (self.layout, pos - last - 1);
            let new = ArrayLayout { runs: old.runs + 1, skip_bits: old.skip_bits.max(bits_for(skip) as u8), ..old };
            if self.fits(new, self.tail_entries + 1) {
                let (at, run) = (ARRAY_HEADER_WORDS + self.tail_entries, usize::from(old.runs));
                with_page(p, self.tail, |mut page| {
                    repack(&mut page, old, new);
                    page.set(at, raw);
                    stream_put(&mut page, new.count_bit(run), new.count_bits.into(), 0);
                    stream_put(&mut page, new.skip_bit(run), new.skip_bits.into(), skip);
                    page.set(ARRAY_LAYOUT_WORD, new.encode());
                })?;
                (self.layout, self.run_count) = (new, 1);
                self.tail_entries += 1;
                self.len += 1;
                self.last = Some(pos);
                return Ok(());
            }
        }
        self.append_page(p, pos, raw)
    }

    /// Starts a page holding one run of the entry `raw` at `pos`, filled
    /// in full before it is linked.
    fn append_page<P>(&mut self, p: &P, pos: u64, raw: u64) -> Result<(), ArrayError>
    where
        P: PhysMem + PageAlloc + Preserve + ?Sized,
    {
        let pa = p.alloc_pages(Order::ZERO).map_err(|e| ArrayError::platform(Op::Alloc, PhysAddr::NULL, e))?;
        let give_back = |preserved: bool| {
            if preserved {
                // Preserved just now: undoing it cannot be refused.
                let _ = p.unpreserve(pa, Order::ZERO);
            }
            p.free_pages(pa, Order::ZERO);
        };
        if self.preserved
            && let Err(e) = p.preserve(pa, Order::ZERO)
        {
            give_back(false);
            return Err(ArrayError::platform(Op::Preserve, pa, e));
        }
        // One run of one entry at `start`: no descriptor bits at all.
        let layout = ArrayLayout { runs: 1, count_bits: 0, skip_bits: 0 };
        let linked = with_page(p, pa, |page| {
            // The page came zeroed: `next` stays 0 and so do the words after.
            page.set(ARRAY_START_WORD, pos);
            page.set(ARRAY_LAYOUT_WORD, layout.encode());
            page.set(ARRAY_HEADER_WORDS, raw);
        })
        .and_then(|()| match self.tail.is_null() {
            true => Ok(()),
            false => with_page(p, self.tail, |page| page.set(ARRAY_NEXT_WORD, pa.as_u64())),
        });
        if let Err(e) = linked {
            give_back(self.preserved);
            return Err(e);
        }
        if self.first.is_null() {
            self.first = pa;
        }
        self.tail = pa;
        self.pages += 1;
        (self.layout, self.tail_entries, self.run_count) = (layout, 1, 1);
        self.len += 1;
        self.last = Some(pos);
        Ok(())
    }
}

/// Rewrites the descriptor stream of `page` from `old` widths to the same
/// or wider `new` ones, in place: descriptors move to higher stream bits
/// only, so going from the last to the first reads each before any write
/// can reach it.
fn repack(page: &mut PageWords<'_>, old: ArrayLayout, new: ArrayLayout) {
    if (old.count_bits, old.skip_bits) == (new.count_bits, new.skip_bits) {
        return;
    }
    debug_assert!(new.count_bits >= old.count_bits && new.skip_bits >= old.skip_bits);
    for run in (0..usize::from(old.runs)).rev() {
        let count = stream_get(page, old.count_bit(run), old.count_bits.into());
        let skip = stream_get(page, old.skip_bit(run), old.skip_bits.into());
        stream_put(page, new.count_bit(run), new.count_bits.into(), count);
        stream_put(page, new.skip_bit(run), new.skip_bits.into(), skip);
    }
}

/// Runs `f` on the words of the page at `pa`, which belongs to the array
/// being written, in place (kho-abi's atomic page view: no `&mut` over RAM,
/// so nothing here relies on the page being the array's alone).
fn with_page<P, R>(p: &P, pa: PhysAddr, f: impl FnOnce(PageWords<'_>) -> R) -> Result<R, ArrayError>
where
    P: PhysMem + ?Sized,
{
    let page = PageWords::new(p, pa).map_err(|e| ArrayError::platform(Op::Access, pa, e))?;
    Ok(f(page))
}
