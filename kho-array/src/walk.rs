//! The decoder: one walk over a chain of pages that validates every word it
//! reads, shared by the reader ([`Iter`](crate::Iter)) and by restore, so
//! the rules are written once.

use kho_abi::chain::{ChainCursor, ChainSpec};
use kho_abi::{AbiError, PhysAddr, PhysMem, read_phys_bytes};
use zerocopy::IntoBytes;

use crate::error::{ArrayError, Field, Op, PageFault, RunFault};
use crate::format::{
    ARRAY_HEADER_WORDS, ARRAY_LAYOUT_WORD, ARRAY_NEXT_WORD, ARRAY_PAGE_WORDS, ARRAY_START_WORD, ArrayLayout, Entry,
    stream_field, stream_word,
};

/// An array chain: at most `max_pages` pages, `next` in word
/// [`ARRAY_NEXT_WORD`].
pub(crate) const fn spec(max_pages: u64) -> ChainSpec {
    ChainSpec::new(max_pages, ARRAY_NEXT_WORD * 8)
}

/// One past the highest position: where the walk's `base` stands after an
/// entry at `u64::MAX`.
const END_OF_POSITIONS: u128 = 1 << 64;

/// Words of the current page read from memory at once, per window.
const WINDOW: usize = 32;

/// Where the walk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first page.
    Start,
    /// Inside the current page.
    InPage,
    /// Past the last page (or failed): `next` returns `None`.
    Done,
}

/// A copy of some consecutive words of the current page, so that neither
/// the entries (read upwards) nor the descriptors (read downwards) cost a
/// platform call per word.
#[derive(Clone, Debug)]
struct Window {
    words: [u64; WINDOW],
    at: usize,
    len: usize,
}

impl Window {
    const EMPTY: Window = Window { words: [0; WINDOW], at: 0, len: 0 };

    /// Word `word` of the page at `pa`; on a miss, loads the words from
    /// `word` up (`down == false`) or down to `word` (`down == true`).
    fn get<P: PhysMem + ?Sized>(&mut self, p: &P, pa: PhysAddr, word: usize, down: bool) -> Result<u64, ArrayError> {
        if word.wrapping_sub(self.at) >= self.len {
            let (at, n) = match down {
                true => (word.saturating_sub(WINDOW - 1), word.min(WINDOW - 1) + 1),
                false => (word, WINDOW.min(ARRAY_PAGE_WORDS - word)),
            };
            // The whole page is RAM (checked on entry) and `at + n` stays
            // inside it, so reading ahead is as safe as the word asked for.
            let src = PhysAddr::new(pa.as_u64() + (at * 8) as u64);
            read_phys_bytes(p, src, self.words[..n].as_mut_bytes())
                .map_err(|e| ArrayError::platform(Op::Access, pa, e))?;
            (self.at, self.len) = (at, n);
        }
        // PANICS: `word - at < len <= WINDOW`, by the test above.
        Ok(self.words[word - self.at])
    }
}

/// A validating walk over the chain starting at `first`.
///
/// It visits pages in chain order and, inside each, runs in order; every
/// link, header, descriptor, position and entry is checked before it is
/// used. A new page is handed to an `enter` hook (restore claims it there)
/// after its link was checked and before any of its words is read.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    first: PhysAddr,
    /// The link checks (bound, alignment, RAM, cycle, claim) and the
    /// count of pages entered (and handed to `enter`) so far.
    chain: ChainCursor,
    state: State,
    /// The current page (the last page once `Done` after a success).
    pub(crate) pa: PhysAddr,
    /// The current page's layout.
    pub(crate) layout: ArrayLayout,
    /// Next entry word to read in the current page: once the walk is done,
    /// one past the last page's last entry.
    pub(crate) word: usize,
    /// Runs started in the current page.
    runs: usize,
    /// Entries in the current run.
    pub(crate) count: usize,
    /// Entries of the current run not yet read.
    left: usize,
    /// Position of the next entry of the current run.
    next_pos: u64,
    front: Window,
    back: Window,
    /// The lowest position the next run (or page) may take: one past the
    /// last entry, or the page's `start` before its first run.
    base: u128,
}

impl Walk {
    /// Pages entered (and handed to `enter`) so far.
    pub(crate) const fn entered(&self) -> u64 {
        self.chain.entered()
    }

    /// A walk over the chain at `first` that allows at most `max_pages`.
    pub(crate) const fn new(first: PhysAddr, max_pages: u64) -> Walk {
        Walk {
            first,
            chain: ChainCursor::new(first, spec(max_pages)),
            state: State::Start,
            pa: PhysAddr::NULL,
            layout: ArrayLayout { runs: 0, count_bits: 0, skip_bits: 0 },
            word: 0,
            runs: 0,
            count: 0,
            left: 0,
            next_pos: 0,
            front: Window::EMPTY,
            back: Window::EMPTY,
            base: 0,
        }
    }

    /// The next entry and its position, `None` past the last one. After an
    /// error the walk is done.
    pub(crate) fn next<P, F>(&mut self, p: &P, enter: &mut F) -> Result<Option<(u64, Entry)>, ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), AbiError>,
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
        F: FnMut(PhysAddr) -> Result<(), AbiError>,
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
                State::InPage if self.runs < usize::from(self.layout.runs) => self.start_run(p)?,
                State::InPage => {
                    self.check_zeros(p)?;
                    self.state = State::Done;
                    let next = self.front.get(p, self.pa, ARRAY_NEXT_WORD, false)?;
                    if next != 0 {
                        self.enter_page(p, PhysAddr::new(next), Field::Next, enter)?;
                    }
                }
            }
        }
    }

    /// Checks the link to a new page, hands it to `enter`, reads its header.
    fn enter_page<P, F>(&mut self, p: &P, pa: PhysAddr, field: Field, enter: &mut F) -> Result<(), ArrayError>
    where
        P: PhysMem + ?Sized,
        F: FnMut(PhysAddr) -> Result<(), AbiError>,
    {
        // The link checks are the chain walker's. (Positions must also
        // ascend, so a page seen again fails at its `start` regardless.)
        self.chain.enter(p, pa, enter).map_err(|e| ArrayError::Page {
            page: e.index,
            pa,
            field,
            fault: PageFault::Link(e.fault),
        })?;
        (self.pa, self.word, self.runs, self.count, self.left) = (pa, ARRAY_HEADER_WORDS, 0, 0, 0);
        (self.front.len, self.back.len) = (0, 0);
        let start = self.front.get(p, pa, ARRAY_START_WORD, false)?;
        if self.base == END_OF_POSITIONS {
            return Err(self.page_error(Field::Start, PageFault::AfterMax));
        }
        if u128::from(start) < self.base {
            return Err(self.page_error(Field::Start, PageFault::NotAscending { start, min: self.base as u64 }));
        }
        let raw = self.front.get(p, pa, ARRAY_LAYOUT_WORD, false)?;
        self.layout = ArrayLayout::decode(raw)
            .map_err(|fault| self.page_error(Field::Layout, PageFault::Layout { raw, fault }))?;
        self.base = start.into();
        self.state = State::InPage;
        Ok(())
    }

    /// The `n`-bit field at stream bit `bit` of the current page.
    fn field<P: PhysMem + ?Sized>(&mut self, p: &P, bit: usize, n: u32) -> Result<u64, ArrayError> {
        if n == 0 {
            return Ok(0);
        }
        let (word, shift) = stream_word(bit);
        let lo = self.back.get(p, self.pa, word, true)?;
        // The layout keeps the stream inside the page, below the header.
        let hi = if shift + n > 64 { self.back.get(p, self.pa, word - 1, true)? } else { 0 };
        Ok(stream_field(lo, hi, shift, n))
    }

    /// Decodes the next run's descriptor.
    fn start_run<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(), ArrayError> {
        let (run, l) = (self.runs, self.layout);
        let count = self.field(p, l.count_bit(run), l.count_bits.into())? as usize + 1;
        let skip = self.field(p, l.skip_bit(run), l.skip_bits.into())?;
        let at = stream_word(l.count_bit(run)).0;
        let end = self.word + count;
        if end > l.entries_end() {
            let fault = RunFault::Overruns { end, limit: l.entries_end() };
            return Err(self.run_error(run, at, Field::Count, fault));
        }
        let pos = self.base + u128::from(skip);
        let run_end = pos + count as u128;
        if run_end > END_OF_POSITIONS {
            return Err(self.run_error(run, at, Field::Skip, RunFault::Overflow));
        }
        self.runs += 1;
        (self.count, self.left) = (count, count);
        // `pos < run_end <= 2^64`: the cast is lossless.
        self.next_pos = pos as u64;
        self.base = run_end;
        Ok(())
    }

    /// Reads and checks the next entry of the current run.
    fn read_entry<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(u64, Entry), ArrayError> {
        // A run holds fewer entries than a page has words.
        let index = (self.count - self.left) as u16;
        let raw = self.front.get(p, self.pa, self.word, false)?;
        let entry = match Entry::from_raw(raw) {
            Ok(entry) => entry,
            Err(_) => {
                let fault = if raw == 0 { RunFault::ZeroEntry { index } } else { RunFault::BadEntry { index, raw } };
                let at = stream_word(self.layout.count_bit(self.runs - 1)).0;
                return Err(self.run_error(self.runs - 1, at, Field::Entry, fault));
            }
        };
        let pos = self.next_pos;
        self.word += 1;
        self.left -= 1;
        if self.left > 0 {
            // The run ends at or below 2^64, so a further entry fits.
            self.next_pos += 1;
        }
        Ok((pos, entry))
    }

    /// After the last run: every word between the entries and the
    /// descriptors, and every stream bit after the last descriptor, is 0.
    fn check_zeros<P: PhysMem + ?Sized>(&mut self, p: &P) -> Result<(), ArrayError> {
        let l = self.layout;
        for at in self.word..l.entries_end() {
            let raw = self.front.get(p, self.pa, at, false)?;
            if raw != 0 {
                return Err(self.run_error(self.runs, at, Field::Free, RunFault::NotZero { raw }));
            }
        }
        let used = l.count_bit(self.runs);
        if !used.is_multiple_of(64) {
            let (at, shift) = stream_word(used);
            let raw = self.back.get(p, self.pa, at, true)? >> shift;
            if raw != 0 {
                return Err(self.run_error(self.runs, at, Field::Padding, RunFault::NotZero { raw }));
            }
        }
        Ok(())
    }

    fn page_error(&self, field: Field, fault: PageFault) -> ArrayError {
        ArrayError::Page { page: self.entered() - 1, pa: self.pa, field, fault }
    }

    fn run_error(&self, run: usize, word: usize, field: Field, fault: RunFault) -> ArrayError {
        ArrayError::Run { page: self.entered() - 1, pa: self.pa, run: run as u64, word, field, fault }
    }
}
