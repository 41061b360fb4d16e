//! The restore-from-arbitrary-memory harness: one function, [`run`], used
//! by the cargo-fuzz target `array_restore` and by the test that replays
//! its checked-in corpus, so both exercise exactly the same code.
//!
//! An input describes what a previous kernel left on a small simulated
//! machine:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..16 | the descriptor; a `first` of `1..=PAGES` stands for page `first - 1` |
//! | 16 | preserved mask: bit `k` preserves page `k` (order 0) |
//! | 17 | `max_pages` for restore (0 = no limit) |
//! | 18.. | segments: `u8 page` (mod [`PAGES`]), `u16 word` (mod words per page), `u8 n`, then `n` words written there (clipped at the page end) |
//!
//! Missing bytes are zero. After the segments are written, a `next` word
//! (word 0) of `1..=PAGES` is replaced by the address of that page, so the
//! fuzzer reaches real pages without guessing allocator addresses.
//!
//! [`run`] writes the pages, preserves the masked ones, kexecs (which
//! poisons the rest), restores, and checks what a restore promises,
//! panicking if something breaks: the outcome agrees with an independent
//! reference decoder (written from `DESIGN.md`'s description, on a copy of
//! memory); on error nothing stays claimed; on success the array claims
//! exactly its pages, reads back the reference's entries, accepts appended
//! entries (which the reference decoder then reads too), and frees
//! everything on destroy.

mod reference;
pub mod seeds;

use std::vec::Vec;

use kho_abi::{KhoData, Order, PageAlloc, PhysAddr, Preserve, WithTracker, read_phys, write_phys};
use kho_sim::{Machine, MachineConfig, ModelTracker};

use crate::Machines;
use zerocopy::FromBytes;

use kho_array::format::{ARRAY_PAGE_WORDS, ArrayDesc, Entry};
use kho_array::{ArrayError, KhoArray};

/// Pages an input describes.
pub const PAGES: usize = 4;

/// Bytes before the segments.
pub const PREFIX: usize = 18;

/// RAM of the simulated machine: small, so a run is cheap.
const RAM_BASE: u64 = 0x1_0000_0000;
const RAM_SIZE: u64 = 1 << 20;

/// A decoded input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// The descriptor (with `first` still a page link, see the module
    /// docs).
    pub desc: ArrayDesc,
    /// Preserved mask.
    pub preserved: u8,
    /// `max_pages` (0 = no limit).
    pub max_pages: u8,
    /// Segments: page, first word, words.
    pub segments: Vec<(u8, u16, Vec<u64>)>,
}

impl Input {
    /// Decodes `data`, zero-filling what is missing.
    pub fn parse(data: &[u8]) -> Input {
        let mut prefix = [0u8; PREFIX];
        let n = data.len().min(PREFIX);
        prefix[..n].copy_from_slice(&data[..n]);
        let desc = ArrayDesc::read_from_bytes(&prefix[..16]).unwrap_or_default();
        let mut segments = Vec::new();
        let mut rest = data.get(PREFIX..).unwrap_or_default();
        while rest.len() >= 4 {
            let (page, word, count) = (rest[0], u16::from_le_bytes([rest[1], rest[2]]), usize::from(rest[3]));
            rest = &rest[4..];
            let take = (count * 8).min(rest.len() / 8 * 8);
            let words = rest[..take].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
            segments.push((page, word, words.collect()));
            rest = &rest[take..];
        }
        Input { desc, preserved: prefix[16], max_pages: prefix[17], segments }
    }

    /// Encodes the input (the inverse of [`parse`](Input::parse) for
    /// segments of at most 255 words).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(zerocopy::IntoBytes::as_bytes(&self.desc));
        out.extend_from_slice(&[self.preserved, self.max_pages]);
        for (page, word, words) in &self.segments {
            for (k, chunk) in words.chunks(255).enumerate() {
                out.push(*page);
                out.extend_from_slice(&(*word + (k * 255) as u16).to_le_bytes());
                out.push(chunk.len() as u8);
                chunk.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
            }
        }
        out
    }

    /// The restore limit this input asks for.
    pub fn max_pages(&self) -> u64 {
        if self.max_pages == 0 { u64::MAX } else { self.max_pages.into() }
    }
}

/// What a run found: the restored entries (raw), or the restore error.
pub type Outcome = Result<Vec<(u64, u64)>, ArrayError>;

/// Maps a link of `1..=PAGES` to that page's PA.
fn resolve(link: u64, pas: &[PhysAddr; PAGES]) -> u64 {
    match usize::try_from(link) {
        Ok(k @ 1..=PAGES) => pas[k - 1].as_u64(),
        _ => link,
    }
}

/// Runs one input and checks every promise of restore (see the module
/// docs), panicking on a broken one.
pub fn run(data: &[u8]) -> Outcome {
    run_in(&mut Machines::new(), data)
}

/// [`run`] on a machine from `ms` (what the fuzz target calls, with one
/// pool for every input).
pub fn run_in(ms: &mut Machines, data: &[u8]) -> Outcome {
    let input = Input::parse(data);
    let m = ms.lease(MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE));
    let mut pas = [PhysAddr::NULL; PAGES];
    for pa in &mut pas {
        *pa = m.alloc_pages(Order::ZERO).expect("page");
    }
    for (page, word, words) in &input.segments {
        let (page, word) = (usize::from(*page) % PAGES, usize::from(*word) % ARRAY_PAGE_WORDS);
        for (i, w) in words.iter().take(ARRAY_PAGE_WORDS - word).enumerate() {
            let at = PhysAddr::new(pas[page].as_u64() + ((word + i) * 8) as u64);
            write_phys(&*m, at, w).expect("write");
        }
    }
    for pa in pas {
        let next: u64 = read_phys(&*m, pa).expect("read");
        write_phys(&*m, pa, &resolve(next, &pas)).expect("write");
    }
    let desc = ArrayDesc { first: resolve(input.desc.first, &pas), ..input.desc };
    let t = ModelTracker::new();
    let preserved: Vec<PhysAddr> = (0..PAGES).filter(|k| input.preserved >> k & 1 == 1).map(|k| pas[k]).collect();
    for &pa in &preserved {
        t.preserve(pa, Order::ZERO).expect("preserve");
    }
    let blocks = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    let t2 = ModelTracker::incoming(blocks);
    let p2 = WithTracker::new(&*m2, &t2);

    let image = reference::Image::snapshot(&m2, &preserved);
    let expected = image.decode(&desc, input.max_pages());
    let outcome = check(&p2, &m2, &t2, &desc, input.max_pages(), preserved.len() as u64);
    match (&outcome, &expected) {
        (Ok(got), Some(want)) => assert_eq!(got, want, "restore and the reference decoder read different entries"),
        (Err(_), None) => {}
        _ => panic!("restore gave {outcome:?}, the reference decoder {expected:?}"),
    }
    outcome
}

/// Restores, then checks claims, reading, appending and destroy.
fn check(
    p2: &WithTracker<'_, Machine, ModelTracker>,
    m2: &Machine,
    t2: &ModelTracker,
    desc: &ArrayDesc,
    max_pages: u64,
    preserved: u64,
) -> Outcome {
    let mut array = match KhoArray::restore(p2, desc, max_pages) {
        Ok(array) => array,
        Err(e) => {
            assert_eq!(t2.claimed(), [], "a failed restore ({e}) kept pages claimed");
            assert_eq!(m2.outstanding_pages(), 0, "a failed restore allocated");
            return Err(e);
        }
    };
    assert_eq!(t2.claimed().len() as u64, array.pages(), "claimed pages");
    let entries: Vec<(u64, u64)> =
        array.iter(p2).map(|e| e.map(|(pos, e)| (pos, e.raw()))).collect::<Result<_, _>>().expect("read back");
    assert_eq!(entries.len() as u64, array.len());
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "positions ascend");
    assert_eq!(entries.last().map(|e| e.0), array.last_position());
    let (pages, len) = (array.pages(), array.len());

    // The restored array takes appends where it ended: one adjacent entry,
    // one after a large gap.
    let mut appended = Vec::new();
    let mut w = array.writer(p2);
    for gap in [1u64, 1 << 51] {
        let Some(pos) = w.position().and_then(|p| p.checked_add(gap - 1)) else { break };
        let entry = Entry::value(pos >> 2).expect("value");
        w.push(pos, entry).expect("append to a restored array");
        appended.push((pos, entry.raw()));
    }
    let again: Vec<(u64, u64)> =
        array.iter(p2).map(|e| e.map(|(pos, e)| (pos, e.raw()))).collect::<Result<_, _>>().expect("read again");
    assert_eq!(again[..entries.len()], entries[..]);
    assert_eq!(again[entries.len()..], appended[..]);
    assert_eq!(array.len(), len + appended.len() as u64);
    // What the writer appended, repacking the restored last page's
    // descriptors, still follows the description.
    let appended_image = reference::Image::chain(m2, array.descriptor().first, PAGES + 2);
    assert_eq!(
        appended_image.decode(&array.descriptor(), u64::MAX),
        Some(again),
        "the reference reads the appended array"
    );
    array.destroy(p2).expect("destroy");
    assert_eq!(m2.outstanding_pages(), 0, "destroy frees appended pages");
    assert_eq!(m2.reserved_pages(), preserved - pages, "destroy frees the restored pages");
    Ok(entries)
}

#[cfg(test)]
mod tests;
