//! The body of the `vmalloc_restore` fuzz target, shared with `cargo test`,
//! which replays every file of `fuzz/corpus/vmalloc_restore/` through it.
//!
//! An input is a small machine handed over by a previous kernel:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0..16 | the `kho_vmalloc` descriptor to restore |
//! | 16 | number of data blocks preserved, divided by 4 (capped to fit 4 MiB) |
//! | 17 | their order, modulo `max_order + 1` |
//! | 18..24 | ignored |
//! | 24.. | up to [`MAX_CHUNK_PAGES`] pages of content, page `i` written at [`chunk_page`]`(i)` and preserved at order 0 (a short last page is zero-padded) |
//!
//! Data block `j` lies at [`data_block`]`(j, order)`. The machine is then
//! kexec'd and booted (so everything else is poison), and the descriptor
//! restored. [`restore_input`] checks that the library never panics, that
//! a failure is a typed error leaving nothing claimed and nothing
//! allocated, and that it agrees, block for block, with a straightforward
//! reference reading of the format written with `std` collections.

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use kho_abi::{KhoData, KhoScratch, KhoVmalloc, Order, PAGE_SIZE, PageAlloc, PhysAddr, Preserve, ToErrno, WithTracker};
use kho_sim::{Machine, MachineConfig, ModelTracker};

use crate::Machines;
use zerocopy::FromBytes;

use kho_vmalloc::{VMALLOC_CHUNK_ENTRIES as ENTRIES, max_chunks, restore};

/// Bytes before the chunk pages.
pub const HEADER: usize = 24;
/// Chunk pages an input can carry.
pub const MAX_CHUNK_PAGES: usize = 8;
/// RAM of the fuzzed machine.
pub const RAM_BASE: u64 = 0x1_0000_0000;
/// Its size: 6 MiB and 64 KiB, just enough for the data span, the scratch
/// area (the 1 MiB at 4 MiB) and the chunk pages at 6 MiB. Small, because
/// the boot poisons every page not preserved on every input, which is most
/// of the harness's time.
pub const RAM_SIZE: u64 = (6 << 20) + (64 << 10);
/// The scratch area: 1 MiB at 4 MiB, between the data span and the chunks.
const SCRATCH: KhoScratch = KhoScratch { addr: RAM_BASE + (4 << 20), size: 1 << 20 };
/// Data blocks live in the first 4 MiB.
const DATA_SPAN: u64 = 4 << 20;
/// Chunk pages live at 6 MiB.
const CHUNK_BASE: u64 = RAM_BASE + (6 << 20);

/// Where chunk page `i` of an input lies.
pub const fn chunk_page(i: usize) -> PhysAddr {
    PhysAddr::new(CHUNK_BASE + (i * PAGE_SIZE) as u64)
}

/// Where data block `j` of `order` lies.
pub const fn data_block(j: u64, order: Order) -> PhysAddr {
    PhysAddr::new(RAM_BASE + (j << order.byte_shift()))
}

/// Builds an input from its parts (the inverse of the layout above).
pub fn encode(desc: &KhoVmalloc, data_blocks_div4: u8, data_order: u8, pages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::from(zerocopy::IntoBytes::as_bytes(desc));
    out.extend_from_slice(&[data_blocks_div4, data_order, 0, 0, 0, 0, 0, 0]);
    for (i, page) in pages.iter().enumerate() {
        let mut page = page.to_vec();
        // Every page but the last is padded to a whole page.
        if i + 1 < pages.len() {
            page.resize(PAGE_SIZE, 0);
        }
        out.extend_from_slice(&page);
    }
    out
}

/// Runs one input and returns the number of blocks restored, or `None` if
/// the library rejected it. Panics only if the library misbehaves (or the
/// harness cannot build its machine).
pub fn restore_input(data: &[u8]) -> Option<u64> {
    restore_input_in(&mut Machines::new(), data)
}

/// [`restore_input`] on a machine from `ms` (what the fuzz target calls,
/// with one pool for every input).
pub fn restore_input_in(ms: &mut Machines, data: &[u8]) -> Option<u64> {
    let (desc, rest) = data.split_first_chunk::<16>()?;
    let desc = KhoVmalloc::read_from_bytes(desc).unwrap_or_default();
    let (n_data, data_order) = match rest {
        [n, o, ..] => (*n, *o),
        [n] => (*n, 0),
        [] => (0, 0),
    };
    let pages = rest.get(HEADER - 16..).unwrap_or(&[]);

    let cfg = MachineConfig { scratch: vec![SCRATCH], ..MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE) };
    let m = ms.lease(cfg);
    let max = m.max_order();
    let data_order = Order::new(u64::from(data_order) % (u64::from(max.get()) + 1), "data order").expect("order");
    let t = ModelTracker::new();
    for (i, content) in pages.chunks(PAGE_SIZE).take(MAX_CHUNK_PAGES).enumerate() {
        m.write(chunk_page(i), content).expect("chunk page in RAM");
        t.preserve(chunk_page(i), Order::ZERO).expect("chunk page preserved");
    }
    let n_data = (u64::from(n_data) * 4).min(DATA_SPAN >> data_order.byte_shift());
    for j in 0..n_data {
        t.preserve(data_block(j, data_order), data_order).expect("data block preserved");
    }

    let blocks = t.blocks();
    let next = m.kexec(KhoData::default());
    next.boot_done(&mut blocks.iter().copied()).expect("boot_done");
    let reserved = next.reserved_pages();
    let incoming = ModelTracker::incoming(blocks.clone());
    let expected = reference(&next, &blocks, &desc);

    let mut got = Vec::new();
    let result = restore(&WithTracker::new(&*next, &incoming), &desc, |pa| got.push(pa));
    assert_eq!(next.outstanding_pages(), 0, "restore allocates nothing");
    match result {
        Ok(area) => {
            let want = expected.unwrap_or_else(|| panic!("restore accepted what the reference rejects: {desc:?}"));
            assert_eq!(got, want, "blocks differ from the reference");
            assert_eq!(area.blocks, got.len() as u64);
            assert_eq!(u64::from(area.total_pages), area.blocks << area.order.get());
            // Every block and chunk claimed; the chunk pages freed.
            assert_eq!(incoming.claimed().len() as u64, area.blocks + area.chunks);
            assert_eq!(next.reserved_pages(), reserved - area.chunks);
            Some(area.blocks)
        }
        Err(e) => {
            assert!(expected.is_none(), "restore rejected what the reference accepts: {e}");
            assert!(got.is_empty(), "blocks handed out by a failed restore");
            assert!(incoming.claimed().is_empty(), "{e}: left {:?} claimed", incoming.claimed());
            assert_eq!(next.reserved_pages(), reserved, "{e}: freed pages");
            let _ = (e.errno(), std::format!("{e}"));
            None
        }
    }
}

/// An independent reading of the format: the blocks a restore must yield,
/// or `None` if it must fail.
fn reference(m: &Machine, preserved: &[(PhysAddr, Order)], desc: &KhoVmalloc) -> Option<Vec<PhysAddr>> {
    let preserved: BTreeMap<u64, Order> = preserved.iter().map(|&(pa, o)| (pa.as_u64(), o)).collect();
    let max = m.max_order();
    if desc.flags & !3 != 0 || u32::from(desc.order) > max.get() {
        return None;
    }
    let order = Order::new(u64::from(desc.order), "order").ok()?;
    let total = u64::from(desc.total_pages);
    if (desc.first == 0) != (total == 0) || !total.is_multiple_of(order.pages()) {
        return None;
    }
    let n = total >> order.get();
    let mut taken = BTreeSet::new();
    let mut take = |pa: u64, o: Order| preserved.get(&pa) == Some(&o) && taken.insert(pa);
    let mut blocks = Vec::new();
    let mut chunks = 0;
    let mut cur = desc.first;
    while cur != 0 {
        if chunks >= max_chunks(n) || !cur.is_multiple_of(PAGE_SIZE as u64) || !take(cur, Order::ZERO) {
            return None;
        }
        chunks += 1;
        let mut page = [0u8; PAGE_SIZE];
        m.read(PhysAddr::new(cur), &mut page).ok()?;
        let word = |i: usize| u64::from_ne_bytes(page[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        for e in 1..=ENTRIES {
            let pa = word(e);
            if pa == 0 {
                if (blocks.len() as u64) < n {
                    return None;
                }
                break;
            }
            if blocks.len() as u64 == n || !order.aligns(PhysAddr::new(pa)) || !take(pa, order) {
                return None;
            }
            blocks.push(PhysAddr::new(pa));
        }
        cur = word(0);
    }
    (blocks.len() as u64 == n).then_some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/vmalloc_restore")
    }

    #[test]
    fn replay_corpus() {
        let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
            .expect("fuzz/corpus/vmalloc_restore exists")
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= 10, "corpus has {} files", files.len());
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            let outcome = restore_input(&data);
            // Seeds say in their name whether they are valid.
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("seed-valid") {
                assert!(outcome.is_some(), "{name}");
            } else if name.starts_with("seed-bad") {
                assert!(outcome.is_none(), "{name}");
            }
        }
    }

    /// A chunk page listing `entries`, linking to `next`.
    fn page(next: u64, entries: &[u64]) -> Vec<u8> {
        let mut p = Vec::from(next.to_ne_bytes());
        for e in entries {
            p.extend_from_slice(&e.to_ne_bytes());
        }
        p
    }

    fn blocks(range: core::ops::Range<u64>, order: u64) -> Vec<u64> {
        let order = Order::new(order, "o").unwrap();
        range.map(|j| data_block(j, order).as_u64()).collect()
    }

    fn desc(first: u64, blocks: u32, order: u16) -> KhoVmalloc {
        KhoVmalloc { first, total_pages: blocks << order, flags: 1, order }
    }

    /// The seed inputs: valid areas of several shapes and one corruption
    /// of each kind the restore must reject.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let c = |i| chunk_page(i).as_u64();
        let b0 = blocks(0..3, 0);
        let full = blocks(0..511, 0);
        let mut v = vec![
            ("valid-3x0", encode(&desc(c(0), 3, 0), 1, 0, &[&page(0, &b0)])),
            ("valid-5x2", encode(&desc(c(0), 5, 2), 2, 2, &[&page(0, &blocks(0..5, 2))])),
            ("valid-1x10", encode(&desc(c(0), 1, 10), 1, 10, &[&page(0, &blocks(0..1, 10))])),
            (
                "valid-reversed",
                encode(&desc(c(0), 8, 0), 2, 0, &[&page(0, &blocks(0..8, 0).into_iter().rev().collect::<Vec<_>>())]),
            ),
            ("valid-511", encode(&desc(c(0), 511, 0), 128, 0, &[&page(0, &full)])),
            ("valid-511-kernel-tail", encode(&desc(c(0), 511, 0), 128, 0, &[&page(c(1), &full), &page(0, &[])])),
            ("valid-512", encode(&desc(c(1), 512, 0), 128, 0, &[&page(0, &blocks(511..512, 0)), &page(c(0), &full)])),
            ("valid-empty", encode(&KhoVmalloc::default(), 0, 0, &[])),
            ("bad-flags", encode(&KhoVmalloc { flags: 0x8001, ..desc(c(0), 3, 0) }, 1, 0, &[&page(0, &b0)])),
            ("bad-order", encode(&desc(c(0), 3, 11), 1, 0, &[&page(0, &b0)])),
            ("bad-first-misaligned", encode(&desc(c(0) + 8, 3, 0), 1, 0, &[&page(0, &b0)])),
            (
                "bad-total-not-blocks",
                encode(&KhoVmalloc { total_pages: 9, ..desc(c(0), 5, 1) }, 2, 1, &[&page(0, &blocks(0..5, 1))]),
            ),
            (
                "bad-block-misaligned",
                encode(&desc(c(0), 2, 2), 1, 2, &[&page(0, &[blocks(0..1, 2)[0], blocks(1..2, 2)[0] + 4096])]),
            ),
            ("bad-too-many", encode(&desc(c(0), 2, 0), 1, 0, &[&page(0, &b0)])),
            ("bad-zero-entry", encode(&desc(c(0), 4, 0), 1, 0, &[&page(0, &b0)])),
            ("bad-too-few", encode(&desc(c(0), 512, 0), 128, 0, &[&page(0, &full)])),
            ("bad-cycle", encode(&desc(c(0), 1020, 0), 255, 0, &[&page(c(0), &full)])),
            (
                "bad-cycle-2",
                encode(&desc(c(0), 1020, 0), 255, 0, &[&page(c(1), &full), &page(c(0), &blocks(511..1020, 0))]),
            ),
            ("bad-chain-too-long", encode(&desc(c(0), 3, 0), 1, 0, &[&page(c(1), &b0), &page(0, &[])])),
            ("bad-chunk-not-ram", encode(&desc(0x1000, 3, 0), 1, 0, &[&page(0, &b0)])),
            ("bad-next-not-ram", encode(&desc(c(0), 600, 0), 150, 0, &[&page(RAM_BASE + RAM_SIZE, &full)])),
            (
                "bad-next-misaligned",
                encode(&desc(c(0), 600, 0), 150, 0, &[&page(c(1) + 16, &full), &page(0, &blocks(511..600, 0))]),
            ),
            ("bad-block-not-ram", encode(&desc(c(0), 3, 0), 1, 0, &[&page(0, &[b0[0], 0x7fff_ffff_f000, b0[2]])])),
            ("bad-chunk-unpreserved", encode(&desc(c(5), 3, 0), 1, 0, &[&page(0, &b0)])),
            ("bad-block-unpreserved", encode(&desc(c(0), 3, 0), 0, 0, &[&page(0, &b0)])),
            ("bad-block-twice", encode(&desc(c(0), 3, 0), 1, 0, &[&page(0, &[b0[0], b0[1], b0[0]])])),
            (
                "bad-block-is-chunk",
                encode(
                    &desc(c(0), 600, 0),
                    150,
                    0,
                    &[&page(c(1), &[&[c(1)], &full[1..]].concat()), &page(0, &blocks(511..600, 0))],
                ),
            ),
            ("bad-block-order", encode(&desc(c(0), 2, 1), 1, 0, &[&page(0, &blocks(0..2, 1))])),
        ];
        v.sort_by_key(|(name, _)| *name);
        v
    }

    #[test]
    fn seeds_behave_as_named() {
        for (name, data) in seeds() {
            let outcome = restore_input(&data);
            assert_eq!(outcome.is_some(), name.starts_with("valid"), "{name}: {outcome:?}");
        }
    }

    /// Rewrites the checked-in seed files:
    /// `cargo test -p kho-vmalloc --lib -- --ignored write_seed_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus/vmalloc_restore"]
    fn write_seed_corpus() {
        let dir = corpus_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds() {
            std::fs::write(dir.join(std::format!("seed-{name}")), data).unwrap();
        }
    }

    #[test]
    fn short_and_empty_inputs() {
        assert_eq!(restore_input(&[]), None);
        assert_eq!(restore_input(&[0; 15]), None);
        // All zero: the empty area, which restores to nothing.
        assert_eq!(restore_input(&[0; 17]), Some(0));
        assert_eq!(restore_input(&[0xff; 40]), None);
    }
}
