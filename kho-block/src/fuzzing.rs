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

use kho_abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, Preserve, WithTracker, write_phys};
use kho_sim::{Machine, MachineConfig, ModelTracker};

use crate::chain::{HEADER, Shape};
use crate::error::BlockError;
use crate::restore::RestoredRawBlockSet;

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
    let input = Input::parse(data);
    let cfg = MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE);
    let m = Machine::new(cfg).expect("simulated machine");
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
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
    let p2 = WithTracker::new(&m2, &t2);

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
    let per_block = Shape::new(input.entry_size()).map(|s| s.per_block).unwrap_or(0);
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
