//! The restore-from-arbitrary-memory harness: one function, [`run`], used
//! by the cargo-fuzz target `block_restore` and by the test that replays
//! its checked-in corpus, so both exercise exactly the same code.
//!
//! An input describes the memory a previous kernel left on a small
//! simulated machine:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..2 | `u16` entry size selector: entry size = `1 + v % 4080` |
//! | 2..10 | `u64` head link |
//! | 10 | preserved mask: bit `k` preserves page `k` (order 0) |
//! | 11.. | a 16-byte block header (`next`, `count`) for each of [`PAGES`] pages |
//!
//! Missing bytes are zero. A link (the head, or a header's `next`) of
//! `1..=PAGES` stands for the address of page `link - 1`, so the fuzzer
//! reaches real pages without guessing allocator addresses; any other value
//! is used as it is. Page bodies hold a pattern.
//!
//! [`run`] writes the pages, preserves the masked ones, kexecs (which
//! poisons the pages not preserved), restores from the head, and checks
//! the invariants a restore promises, panicking if one breaks: on error
//! nothing stays claimed and nothing was freed; on success the set claims
//! exactly its blocks, reads back its entries, and frees them all.

use std::vec::Vec;

use kho_abi::{
    BlockHeader, KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, Preserve, WithTracker, entries_per_block, write_phys,
};
use kho_block::{BlockError, RestoredRawBlockSet};
use kho_sim::{MachineConfig, ModelTracker};

use crate::Machines;

/// Bytes of the header at the start of every block.
const HEADER: usize = size_of::<BlockHeader>();

/// Pages the input describes.
pub const PAGES: usize = 8;

/// Bytes before the page headers.
const PREFIX: usize = 11;

/// Bytes of a complete input.
pub const INPUT_LEN: usize = PREFIX + PAGES * HEADER;

/// RAM of the simulated machine: small, so a run is cheap.
const RAM_BASE: u64 = 0x1_0000_0000;
const RAM_SIZE: u64 = 1 << 20;

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Entry size selector (the entry size is `1 + v % 4080`).
    pub entry_size_sel: u16,
    /// Head link.
    pub head: u64,
    /// Preserved mask.
    pub preserved: u8,
    /// `(next link, count)` of each page.
    pub headers: [(u64, u64); PAGES],
}

impl Input {
    /// Decodes `data`, zero-filling what is missing.
    pub fn parse(data: &[u8]) -> Input {
        let mut buf = [0u8; INPUT_LEN];
        let n = data.len().min(INPUT_LEN);
        buf[..n].copy_from_slice(&data[..n]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut headers = [(0, 0); PAGES];
        for (k, h) in headers.iter_mut().enumerate() {
            let at = PREFIX + k * HEADER;
            *h = (u64_at(at), u64_at(at + 8));
        }
        Input { entry_size_sel: u16::from_le_bytes([buf[0], buf[1]]), head: u64_at(2), preserved: buf[10], headers }
    }

    /// Encodes the input (the inverse of [`parse`](Input::parse)).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INPUT_LEN);
        out.extend_from_slice(&self.entry_size_sel.to_le_bytes());
        out.extend_from_slice(&self.head.to_le_bytes());
        out.push(self.preserved);
        for &(next, count) in &self.headers {
            out.extend_from_slice(&next.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    /// The entry size the input selects.
    pub fn entry_size(&self) -> usize {
        1 + usize::from(self.entry_size_sel) % (PAGE_SIZE - HEADER)
    }
}

/// What a successful restore found: entries and blocks.
pub type Restored = (usize, usize);

/// Runs one input: see the module documentation. Returns the restore's
/// result; panics if an invariant of restore breaks (or if the simulated
/// machine cannot be set up, which is not the input's doing).
pub fn run(data: &[u8]) -> Result<Restored, BlockError> {
    run_in(&mut Machines::new(), data)
}

/// [`run`] on a machine from `ms` (what the fuzz target calls, with one
/// pool for every input).
pub fn run_in(ms: &mut Machines, data: &[u8]) -> Result<Restored, BlockError> {
    let input = Input::parse(data);
    let cfg = MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE);
    let m = ms.lease(cfg);
    let t = ModelTracker::new();
    let p = WithTracker::new(&*m, &t);
    let mut pages = [PhysAddr::NULL; PAGES];
    for page in &mut pages {
        *page = p.alloc_pages(Order::ZERO).expect("page for the input");
    }
    let link = |v: u64| match usize::try_from(v) {
        Ok(k @ 1..=PAGES) => pages[k - 1],
        _ => PhysAddr::new(v),
    };
    for (k, (&pa, &(next, count))) in pages.iter().zip(&input.headers).enumerate() {
        let mut body = [0u8; PAGE_SIZE];
        body.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8) ^ (k as u8).wrapping_mul(0x35));
        body[..8].copy_from_slice(&link(next).as_u64().to_ne_bytes());
        body[8..16].copy_from_slice(&count.to_ne_bytes());
        write_phys(&p, pa, &body).expect("page in RAM");
        if input.preserved & (1 << k) != 0 {
            p.preserve(pa, Order::ZERO).expect("fresh page preserves");
        }
    }
    let preserved = t.blocks();
    let m2 = m.kexec(KhoData::default());
    m2.boot_done(&mut preserved.iter().copied()).expect("boot_done");
    let reserved = m2.reserved_pages();
    let t2 = ModelTracker::incoming(preserved.clone());
    let p2 = WithTracker::new(&*m2, &t2);

    let result = RestoredRawBlockSet::restore(&p2, link(input.head), input.entry_size());
    let set = match result {
        Err(e) => {
            assert_eq!(t2.claimed(), Vec::new(), "a failed restore left blocks claimed: {e}");
            assert_eq!(m2.reserved_pages(), reserved, "a failed restore freed pages");
            assert_eq!(m2.outstanding_pages(), 0);
            return Err(e);
        }
        Ok(set) => set,
    };
    let claimed = t2.claimed();
    assert_eq!(claimed.len(), set.blocks(), "claimed blocks differ from the chain");
    assert!(set.blocks() <= preserved.len());
    let per_block = entries_per_block(input.entry_size()).unwrap_or(0);
    assert!(set.len() >= set.blocks() && set.len() <= set.blocks() * per_block);
    let mut seen = 0;
    for entry in set.iter(&p2) {
        let pa = entry.expect("entries of a restored set read back");
        assert!(claimed.iter().any(|&(b, _)| pa.align_down(PAGE_SIZE as u64) == b), "entry outside the chain");
        seen += 1;
    }
    assert_eq!(seen, set.len());
    let found = (set.len(), set.blocks());
    set.free(&p2).expect("free a restored set");
    assert_eq!(m2.reserved_pages(), reserved - found.1 as u64, "free released other than the chain");
    assert_eq!(m2.outstanding_pages(), 0);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::string::String;
    use std::{format, fs, vec};

    use super::*;
    use kho_abi::chain::ChainFault;
    use kho_block::{ChainError, Fault, Field};

    /// What a seed must do: restore `(entries, blocks)`, or fail at a block
    /// with a field and a kind of fault.
    type Expect = Result<Restored, (usize, Field, &'static str)>;

    fn kind(f: &Fault) -> &'static str {
        match f {
            Fault::Link(ChainFault::Misaligned) => "misaligned",
            Fault::Link(ChainFault::NotRam(_)) => "not-ram",
            Fault::Link(ChainFault::NotClaimable(_)) => "not-preserved",
            Fault::Link(ChainFault::Cycle { .. }) => "cycle",
            Fault::Link(ChainFault::TooLong { .. }) => "too-long",
            Fault::CountZero => "count-zero",
            Fault::CountTooLarge { .. } => "count-too-large",
            Fault::Ended => "ended",
            // A fault added later: its stable name.
            other => other.kind(),
        }
    }

    fn input(entry_size: usize, head: u64, preserved: u8, links: &[(usize, u64, u64)]) -> Input {
        let mut headers = [(0, 0); PAGES];
        for &(k, next, count) in links {
            headers[k] = (next, count);
        }
        Input { entry_size_sel: (entry_size - 1) as u16, head, preserved, headers }
    }

    /// The seed corpus: valid chains of the LUO shapes and the extremes of
    /// entry size, and a corrupt variant for every reject path.
    fn seeds() -> Vec<(&'static str, Input, Expect)> {
        let chain3 = [(0, 3, 51), (2, 5, 51), (4, 0, 18)];
        let all8: Vec<_> = (0..PAGES).map(|k| (k, if k + 1 < PAGES { k as u64 + 2 } else { 0 }, 1)).collect();
        let e = |i, f, k| Err((i, f, k));
        vec![
            ("empty", input(64, 0, 0, &[]), Ok((0, 0))),
            ("file-1-block", input(64, 1, 0b1, &[(0, 0, 5)]), Ok((5, 1))),
            ("session-3-blocks", input(80, 1, 0b10101, &chain3), Ok((120, 3))),
            ("file-full-block", input(64, 1, 0b1, &[(0, 0, 63)]), Ok((63, 1))),
            ("page-entries-8-blocks", input(4080, 1, 0xff, &all8), Ok((8, 8))),
            ("byte-entries", input(1, 1, 0b11, &[(0, 2, 4080), (1, 0, 1)]), Ok((4081, 2))),
            ("u64-entries-reversed", input(8, 8, 0xc0, &[(7, 7, 510), (6, 0, 3)]), Ok((513, 2))),
            ("self-cycle", input(64, 1, 0b1, &[(0, 1, 1)]), e(1, Field::Next, "cycle")),
            ("cycle-to-middle", input(64, 1, 0b111, &[(0, 2, 1), (1, 3, 1), (2, 2, 1)]), e(3, Field::Next, "cycle")),
            ("count-zero", input(64, 1, 0b11, &[(0, 2, 63), (1, 0, 0)]), e(1, Field::Count, "count-zero")),
            ("count-too-large", input(80, 1, 0b11, &[(0, 2, 51), (1, 0, 52)]), e(1, Field::Count, "count-too-large")),
            ("count-huge", input(64, 1, 0b1, &[(0, 0, u64::MAX)]), e(0, Field::Count, "count-too-large")),
            ("unpreserved-block", input(80, 1, 0b10001, &chain3), e(1, Field::Next, "not-preserved")),
            ("unpreserved-head", input(64, 1, 0b0, &[(0, 0, 1)]), e(0, Field::Head, "not-preserved")),
            ("head-misaligned", input(64, RAM_BASE + 0x800, 0xff, &[]), e(0, Field::Head, "misaligned")),
            ("head-below-ram", input(64, 0x1000, 0xff, &[]), e(0, Field::Head, "not-ram")),
            ("head-top-page", input(64, !0xfff, 0xff, &[]), e(0, Field::Head, "not-ram")),
            ("next-above-ram", input(64, 1, 0b1, &[(0, RAM_BASE + RAM_SIZE, 1)]), e(1, Field::Next, "not-ram")),
            ("next-misaligned", input(64, 1, 0b1, &[(0, RAM_BASE + 8, 1)]), e(1, Field::Next, "misaligned")),
            ("head-odd-value", input(64, 9, 0xff, &[]), e(0, Field::Head, "misaligned")),
        ]
    }

    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/block_restore")
    }

    fn summary(r: &Result<Restored, BlockError>) -> Result<Restored, String> {
        r.as_ref().map(|&x| x).map_err(|e| match e {
            BlockError::Chain(ChainError { index, field, fault, .. }) => format!("{index} {field} {}", kind(fault)),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn seeds_do_what_they_say() {
        for (name, input, expect) in seeds() {
            let bytes = input.encode();
            assert_eq!(Input::parse(&bytes), input, "{name}: encoding round trip");
            let want = expect.map_err(|(i, f, k)| format!("{i} {f} {k}"));
            assert_eq!(summary(&run(&bytes)), want, "seed {name}");
        }
    }

    #[test]
    fn short_and_long_inputs_are_fine() {
        assert_eq!(run(&[]).unwrap(), (0, 0));
        assert_eq!(Input::parse(&[0xff; 3]).head, 0xff);
        let long = vec![0u8; INPUT_LEN + 100];
        assert_eq!(run(&long).unwrap(), (0, 0));
    }

    /// Writes the seeds into the corpus directory when
    /// `KHO_BLOCK_WRITE_CORPUS` is set; otherwise checks they are there.
    #[test]
    fn seed_files_are_checked_in() {
        let dir = corpus_dir();
        let write = std::env::var_os("KHO_BLOCK_WRITE_CORPUS").is_some();
        if write {
            fs::create_dir_all(&dir).unwrap();
        }
        for (name, input, _) in seeds() {
            let path = dir.join(format!("seed-{name}"));
            if write {
                fs::write(&path, input.encode()).unwrap();
            }
            assert_eq!(fs::read(&path).ok(), Some(input.encode()), "{} is stale or missing", path.display());
        }
    }

    /// Replays every file of the checked-in corpus, seeds and what the
    /// fuzzer found alike: `run` panics if a restore breaks a promise.
    #[test]
    fn corpus_replays() {
        let mut files: Vec<_> = fs::read_dir(corpus_dir()).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(files.len() >= seeds().len());
        let mut ok = 0;
        for path in &files {
            let data = fs::read(path).unwrap();
            assert!(data.len() <= 64 << 10, "{} is too large for the corpus", path.display());
            ok += usize::from(run(&data).is_ok());
        }
        assert!(ok > 0 && ok < files.len(), "the corpus has both valid and corrupt chains");
    }
}
