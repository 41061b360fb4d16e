//! The decoder: one walk over a chain of pages that validates every word it
//! reads, shared by the reader ([`Iter`](crate::Iter)) and by restore, so
//! the rules are written once.

use kho_abi::{PAGE_SIZE, PhysAddr, PhysMem, read_phys_bytes};
use zerocopy::IntoBytes;

use crate::error::{ArrayError, Field, Op, PageFault, RunFault};
use crate::format::{Entry, NEXT_WORD, PAGE_HEADER_WORDS, PAGE_WORDS, RunHeader, START_WORD, WORD};

/// One past the highest position: where the walk's `base` stands after an
/// entry at `u64::MAX`.
const END_OF_POSITIONS: u128 = 1 << 64;

/// Words of the current page read from memory at once.
const WINDOW: usize = 32;

/// Where the walk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first page.
    Start,
    /// Inside page `pa`.
    InPage,
    /// Past the last page (or failed): `next` returns `None`.
    Done,
}

/// A validating walk over the chain starting at `first`.
///
/// It visits pages in chain order and, inside each, records in order;
/// every link, header, position and entry is checked before it is used.
/// A new page is handed to an `enter` hook (restore claims it there)
/// after its link was checked and before any of its words is read.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    first: PhysAddr,
    max_pages: u64,
    state: State,
    /// The current page (the last page once `Done` after a success).
    pub(crate) pa: PhysAddr,
    /// Pages entered (and handed to `enter`) so far.
    pub(crate) entered: u64,
    /// Next word to read in the current page; once the walk is done, the
    /// number of words used in the last page.
    pub(crate) word: usize,
    /// Records started in the current page.
    runs: u64,
    /// Word of the current record's header.
    pub(crate) header_word: usize,
    /// The current record's header.
    pub(crate) header: RunHeader,
    /// Words of records (headers, escape positions, entries) read so far.
    pub(crate) record_words: u64,
    /// Entries of the current record not yet read.
    left: u16,
    /// Position of the next entry of the current record.
    next_pos: u64,
    /// A copy of words `window_at..window_at + window_len` of the current
    /// page, so that a sparse page is not read one word per call.
    window: [u64; WINDOW],
    window_at: usize,
    window_len: usize,
    /// The lowest position the next record (or page) may take: one past
    /// the last entry, or the page's `start` before its first record.
    pub(crate) base: u128,
    /// Brent's cycle finder: the page saved, steps since, and the power of
    /// two at which it moves on.
    saved: PhysAddr,
    steps: u64,
    power: u64,
}

impl Walk {
    /// A walk over the chain at `first` that allows at most `max_pages`.
    pub(crate) const fn new(first: PhysAddr, max_pages: u64) -> Walk {
        Walk {
            first,
            max_pages,
            state: State::Start,
            pa: PhysAddr::NULL,
            entered: 0,
            word: 0,
            runs: 0,
            header_word: 0,
            header: RunHeader::plain(0, 0),
            record_words: 0,
            left: 0,
            next_pos: 0,
            window: [0; WINDOW],
            window_at: 0,
            window_len: 0,
            base: 0,
            saved: PhysAddr::NULL,
            steps: 0,
            power: 1,
        }
    }

    /// The next entry and its position, `None` past the last one. After an
    /// error the walk is done.
    pub(crate) fn next<P, F>(&mut self, p: &P, enter: &mut F) -> Result<Option<(u64, Entry)>, ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), PageFault>,
    {
        let r = self.step(p, enter);
        if r.is_err() {
            self.state = State::Done;
        }
        r
    }

    fn step<P, F>(&mut self, p: &P, enter: &mut F) -> Result<Option<(u64, Entry)>, ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), PageFault>,
    {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start => {
                    self.state = State::Done;
                    if !self.first.is_null() {
                        self.enter_page(p, self.first, Field::First, enter)?;
                    }
                }
                State::InPage if self.left > 0 => return self.read_entry(p).map(Some),
                State::InPage => {
                    if self.word < PAGE_WORDS {
                        let header = self.read(p, self.word)?;
                        match RunHeader::decode(header) {
                            Err((field, fault)) => return Err(self.run_error(self.runs, self.word, field, fault)),
                            Ok(Some(h)) => {
                                self.start_run(p, h)?;
                                continue;
                            }
                            Ok(None) if self.runs == 0 => return Err(self.page_error(Field::Count, PageFault::Empty)),
                            Ok(None) => self.check_trailing(p)?,
                        }
                    }
                    self.state = State::Done;
                    let next = self.read(p, NEXT_WORD)?;
                    if next != 0 {
                        self.enter_page(p, PhysAddr::new(next), Field::Next, enter)?;
                    }
                }
            }
        }
    }

    /// Checks the link to a new page, hands it to `enter`, reads its start.
    fn enter_page<P, F>(&mut self, p: &P, pa: PhysAddr, field: Field, enter: &mut F) -> Result<(), ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), PageFault>,
    {
        let page = self.entered;
        let fail = |fault| Err(ArrayError::Page { page, pa, field, fault });
        if !pa.is_page_aligned() {
            return fail(PageFault::Misaligned);
        }
        if page >= self.max_pages {
            return fail(PageFault::TooManyPages { max: self.max_pages });
        }
        // Brent: a cycle of length l entered after m pages brings the walk
        // back to the saved page within m + 2l steps. (Positions must also
        // ascend, so a revisited page fails at its `start` regardless.)
        if pa == self.saved {
            return fail(PageFault::Cycle);
        }
        self.steps += 1;
        if self.steps == self.power {
            (self.saved, self.steps, self.power) = (pa, 0, self.power.saturating_mul(2));
        }
        if let Err(e) = p.phys_to_virt(pa, PAGE_SIZE as u64) {
            return fail(PageFault::NotRam(e));
        }
        if let Err(fault) = enter(pa) {
            return fail(fault);
        }
        self.entered += 1;
        (self.pa, self.word, self.runs, self.left) = (pa, PAGE_HEADER_WORDS, 0, 0);
        self.window_len = 0;
        let start = self.read(p, START_WORD)?;
        if self.base == END_OF_POSITIONS {
            return Err(self.page_error(Field::Start, PageFault::AfterMax));
        }
        if u128::from(start) < self.base {
            return Err(self.page_error(Field::Start, PageFault::NotAscending { start, min: self.base as u64 }));
        }
        self.base = start.into();
        self.state = State::InPage;
        Ok(())
    }

    /// Decodes the record whose header `h` is at `self.word`.
    fn start_run<P: PhysMem + ?Sized>(&mut self, p: &P, h: RunHeader) -> Result<(), ArrayError> {
        let (run, at) = (self.runs, self.word);
        let end = at + h.words() + usize::from(h.count);
        if end > PAGE_WORDS {
            return Err(self.run_error(run, at, Field::Count, RunFault::Overruns { end }));
        }
        let pos = if h.escape {
            let pos = self.read(p, at + 1)?;
            if self.base == END_OF_POSITIONS {
                return Err(self.run_error(run, at, Field::Position, RunFault::Overflow));
            }
            if u128::from(pos) < self.base {
                let fault = RunFault::NotAscending { pos, min: self.base as u64 };
                return Err(self.run_error(run, at, Field::Position, fault));
            }
            u128::from(pos)
        } else {
            self.base + u128::from(h.skip)
        };
        let run_end = pos + u128::from(h.count);
        if run_end > END_OF_POSITIONS {
            let field = if h.escape { Field::Position } else { Field::Skip };
            return Err(self.run_error(run, at, field, RunFault::Overflow));
        }
        self.runs += 1;
        (self.header_word, self.header, self.left) = (at, h, h.count);
        self.record_words += h.words() as u64;
        self.word = at + h.words();
        // `pos < run_end <= 2^64`: the cast is lossless.
        self.next_pos = pos as u64;
        self.base = run_end;
        Ok(())
    }

    /// Reads and checks the next entry of the current record.
    fn read_entry<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(u64, Entry), ArrayError> {
        let index = self.header.count - self.left;
        let raw = self.read(p, self.word)?;
        let entry = match Entry::from_raw(raw) {
            Ok(entry) => entry,
            Err(_) => {
                let fault = if raw == 0 { RunFault::ZeroEntry { index } } else { RunFault::BadEntry { index, raw } };
                return Err(self.run_error(self.runs - 1, self.header_word, Field::Entry, fault));
            }
        };
        let pos = self.next_pos;
        self.record_words += 1;
        self.word += 1;
        self.left -= 1;
        if self.left > 0 {
            // The run ends at or below 2^64, so a further entry fits.
            self.next_pos += 1;
        }
        Ok((pos, entry))
    }

    /// Every word after the terminator at `self.word` must be zero.
    fn check_trailing<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(), ArrayError> {
        for at in self.word + 1..PAGE_WORDS {
            let raw = self.read(p, at)?;
            if raw != 0 {
                return Err(self.run_error(self.runs, at, Field::Trailing, RunFault::Trailing { raw }));
            }
        }
        Ok(())
    }

    fn word_pa(&self, word: usize) -> PhysAddr {
        // The page is RAM and `word < PAGE_WORDS`: no overflow.
        PhysAddr::new(self.pa.as_u64() + (word * WORD) as u64)
    }

    /// Word `word` of the current page, through the window.
    fn read<P: PhysMem + ?Sized>(&mut self, p: &P, word: usize) -> Result<u64, ArrayError> {
        if word.wrapping_sub(self.window_at) >= self.window_len {
            // The whole page is RAM (checked on entry): reading ahead to
            // its end is as safe as reading the word asked for.
            let n = WINDOW.min(PAGE_WORDS - word);
            read_phys_bytes(p, self.word_pa(word), self.window[..n].as_mut_bytes())
                .map_err(|e| ArrayError::platform(Op::Access, self.pa, e))?;
            (self.window_at, self.window_len) = (word, n);
        }
        // PANICS: `word - window_at < window_len <= WINDOW`, by the test above.
        Ok(self.window[word - self.window_at])
    }

    fn page_error(&self, field: Field, fault: PageFault) -> ArrayError {
        ArrayError::Page { page: self.entered - 1, pa: self.pa, field, fault }
    }

    fn run_error(&self, run: u64, word: usize, field: Field, fault: RunFault) -> ArrayError {
        ArrayError::Run { page: self.entered - 1, pa: self.pa, run, word, field, fault }
    }
}
