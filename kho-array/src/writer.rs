//! The linear write iterator: set a position, set an entry, in ascending
//! position order.

use kho_abi::{Order, PageAlloc, PhysAddr, PhysMem, Preserve, write_phys, write_phys_bytes};
use zerocopy::IntoBytes;

use crate::array::KhoArray;
use crate::error::{ArrayError, Op};
use crate::format::{Entry, NEXT_WORD, PAGE_HEADER_WORDS, PAGE_WORDS, RUN_COUNT_MAX, RUN_SKIP_MAX, RunHeader, WORD};

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
/// assert_eq!(a.record_bytes(), 8 * (1 + 2) + 16 + 24);
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
    /// How many entries from `pos` on the tail's last run can take as it
    /// stands (0 unless `pos` follows the last entry).
    pub(crate) fn run_room(&self, pos: u64) -> usize {
        match self.last {
            Some(last) if !self.tail.is_null() && last.checked_add(1) == Some(pos) => {
                let by_page = PAGE_WORDS - self.tail_used;
                let by_count = usize::from(RUN_COUNT_MAX - self.run.count);
                // Positions pos..=u64::MAX remain; pos >= 1 here.
                let by_pos = usize::try_from(u64::MAX - pos + 1).unwrap_or(usize::MAX);
                by_page.min(by_count).min(by_pos)
            }
            _ => 0,
        }
    }

    /// Appends `raws` (valid entries, at most `run_room(pos)` of them) to
    /// the tail's last run.
    pub(crate) fn extend_run<P: PhysMem + ?Sized>(&mut self, p: &P, pos: u64, raws: &[u64]) -> Result<(), ArrayError> {
        let at = self.tail_used;
        let tail = self.tail;
        write_phys_bytes(p, word_pa(tail, at), raws.as_bytes())
            .map_err(|e| ArrayError::platform(Op::Access, tail, e))?;
        let mut run = self.run;
        // `raws.len() <= run_room`, which keeps the count within its field.
        run.count += raws.len() as u16;
        write_phys(p, word_pa(tail, self.run_word), &run.encode())
            .map_err(|e| ArrayError::platform(Op::Access, tail, e))?;
        let n = raws.len() as u64;
        self.run = run;
        self.tail_used += raws.len();
        self.record_words += n;
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
        if let Some(last) = self.last {
            let skip = pos - last - 1;
            let h = if skip <= RUN_SKIP_MAX { RunHeader::plain(1, skip) } else { RunHeader::escape(1) };
            let at = self.tail_used;
            if at + h.words() < PAGE_WORDS {
                let tail = self.tail;
                let mut record = [h.encode(), pos, raw];
                if !h.escape {
                    record[1] = raw;
                }
                let record = &record[..h.words() + 1];
                write_phys_bytes(p, word_pa(tail, at), record.as_bytes())
                    .map_err(|e| ArrayError::platform(Op::Access, tail, e))?;
                self.tail_used = at + record.len();
                (self.run_word, self.run) = (at, h);
                self.record_words += record.len() as u64;
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
        let h = RunHeader::plain(1, 0);
        // The page came zeroed: `next` stays 0 and so do the words after.
        let words = [pos, h.encode(), raw];
        let linked = write_phys_bytes(p, word_pa(pa, NEXT_WORD + 1), words.as_bytes())
            .map_err(|e| ArrayError::platform(Op::Access, pa, e))
            .and_then(|()| match self.tail.is_null() {
                true => Ok(()),
                false => write_phys(p, word_pa(self.tail, NEXT_WORD), &pa.as_u64())
                    .map_err(|e| ArrayError::platform(Op::Access, self.tail, e)),
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
        self.tail_used = PAGE_HEADER_WORDS + words.len() - 1;
        (self.run_word, self.run) = (PAGE_HEADER_WORDS, h);
        self.record_words += 2;
        self.len += 1;
        self.last = Some(pos);
        Ok(())
    }
}

/// PA of word `word` of the page at `page` (`word < PAGE_WORDS`, and the
/// page is the array's own, so no overflow).
fn word_pa(page: PhysAddr, word: usize) -> PhysAddr {
    PhysAddr::new(page.as_u64() + (word * WORD) as u64)
}
