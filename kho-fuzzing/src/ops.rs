//! Random operation sequences over a whole handover, checked against simple
//! models: the body of the `handover_ops` fuzz target, shared with the
//! corpus replay (`kho-fuzzing/tests/ops.rs`), so both run exactly the same
//! checks.
//!
//! Kernel A (a 4 MiB kho-sim machine: every page of RAM is poisoned,
//! written and torn down once per run, so RAM size is what a run costs) runs up to `MAX_OPS` operations
//! decoded from the input: preserve and unpreserve folios and page ranges,
//! add and remove subtrees, grow / push into / shrink two block sets,
//! preserve and unpreserve vmalloc areas, append to an array. Each result is
//! checked against the model (a refused operation must change nothing the
//! model can see). Then `finish`, kexec, `Incoming::import`, and kernel B
//! restores everything the model says was handed over, compares contents
//! and subtrees with the model, and checks that exactly the block sets'
//! spare pages are left unclaimed and that nothing stays allocated or
//! reserved once it gives everything back. Any divergence panics.
//!
//! Input: a sequence of operations, each one selector byte then its
//! operands (missing bytes read as 0). The decoder is part of this file, not
//! `arbitrary`'s, so the replay test needs no extra dependency and reads the
//! corpus exactly as the fuzzer wrote it.

use std::collections::BTreeMap;

use kho_abi::{KhoData, Order, PAGE_SIZE, PageAlloc, PhysAddr, VmallocFlags, WithTracker};
use kho_array::{Entry, KhoArray};
use kho_block::{RawBlockSet, RestoredRawBlockSet};
use kho_sim::{Machine, MachineConfig};
use kho_track::{Incoming, Tracker, TrackerOptions};

const PAGE: u64 = PAGE_SIZE as u64;
const RAM_BASE: u64 = 0x2_0000_0000;
const RAM_SIZE: u64 = 4 << 20;
/// Operations per input: bounds the time per run.
pub const MAX_OPS: usize = 64;
const SUBTREE_NAMES: [&str; 4] = ["luo", "memfd", "kexec-metadata", "x"];

/// The input, read a byte at a time; 0 once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// One operation of kernel A. Every operand is a raw input byte (or
/// `u16`); each variant says how it is reduced to a valid argument.
#[derive(Clone, Debug)]
pub enum Op {
    /// Allocate a folio of `order % 8`, fill it, preserve it.
    PreserveFolio {
        /// Folio order, modulo 8.
        order: u8,
        /// Content seed.
        seed: u8,
    },
    /// Unpreserve (and free) the `i`-th preserved folio.
    UnpreserveFolio {
        /// Index among the preserved folios (modulo their count).
        i: u8,
    },
    /// Allocate a block of `order % 7` and preserve its first `1 + pages % 2^order` pages.
    PreserveRange {
        /// Block order, modulo 7.
        order: u8,
        /// Pages preserved, less one, modulo the block's pages.
        pages: u16,
        /// Content seed.
        seed: u8,
    },
    /// Unpreserve (and free) the `i`-th range.
    UnpreserveRange {
        /// Index among the preserved ranges (modulo their count).
        i: u8,
    },
    /// Add subtree `name % 4` pointing at the `folio`-th folio.
    AddSubtree {
        /// Subtree name selector, modulo 4.
        name: u8,
        /// Index of the folio holding the blob.
        folio: u8,
    },
    /// Remove the subtree at the `folio`-th folio's PA.
    RemoveSubtree {
        /// Index of the folio whose subtree goes.
        folio: u8,
    },
    /// Grow block set `set % 2` by `n` entries.
    Grow {
        /// Block set selector, modulo 2.
        set: u8,
        /// Entries of room to add.
        n: u8,
    },
    /// Push `n % 64` entries into block set `set % 2`.
    Push {
        /// Block set selector, modulo 2.
        set: u8,
        /// Entries to push, modulo 64.
        n: u8,
        /// Content seed.
        seed: u8,
    },
    /// Shrink block set `set % 2` by `n` entries.
    Shrink {
        /// Block set selector, modulo 2.
        set: u8,
        /// Entries to drop.
        n: u8,
    },
    /// Preserve a vmalloc area of `1 + blocks` blocks of `order % 4`.
    PreserveVmalloc {
        /// Block order, modulo 4.
        order: u8,
        /// Blocks, less one (the decoder keeps it below 1100).
        blocks: u16,
        /// Content seed.
        seed: u8,
    },
    /// Unpreserve (and free) the `i`-th vmalloc area.
    UnpreserveVmalloc {
        /// Index among the preserved areas (modulo their count).
        i: u8,
    },
    /// Append `n % 32` entries to the array, the first `gap` positions after the last.
    ArrayPush {
        /// Gap before the first new position: `gap << (shift % 52)`.
        gap: u16,
        /// Entries to append, modulo 32.
        n: u8,
        /// Left shift of `gap`, modulo 52.
        shift: u8,
    },
}

/// Decodes an input into operations (at most [`MAX_OPS`]).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut b = Bytes(data);
    let mut ops = Vec::new();
    while !b.0.is_empty() && ops.len() < MAX_OPS {
        let op = match b.u8() % 12 {
            0 => Op::PreserveFolio { order: b.u8(), seed: b.u8() },
            1 => Op::UnpreserveFolio { i: b.u8() },
            2 => Op::PreserveRange { order: b.u8(), pages: b.u16(), seed: b.u8() },
            3 => Op::UnpreserveRange { i: b.u8() },
            4 => Op::AddSubtree { name: b.u8(), folio: b.u8() },
            5 => Op::RemoveSubtree { folio: b.u8() },
            6 => Op::Grow { set: b.u8(), n: b.u8() },
            7 => Op::Push { set: b.u8(), n: b.u8(), seed: b.u8() },
            8 => Op::Shrink { set: b.u8(), n: b.u8() },
            9 => Op::PreserveVmalloc { order: b.u8(), blocks: b.u16() % 1100, seed: b.u8() },
            10 => Op::UnpreserveVmalloc { i: b.u8() },
            _ => Op::ArrayPush { gap: b.u16(), n: b.u8(), shift: b.u8() },
        };
        ops.push(op);
    }
    ops
}

fn order(n: u32) -> Order {
    Order::new(u64::from(n), "fuzz order").expect("small order")
}

/// Bytes of a stamp: the head of every page of a preserved block.
const STAMP: usize = 16;

/// Writes a pseudo-random stamp at the head of each of the `pages` pages
/// from `pa` and returns their digest. The next kernel poisons whole pages
/// that were not preserved, so a stamp per page catches any lost page at a
/// fraction of the cost of filling and hashing whole pages (which made
/// each run spend most of its time in the simulator's content code).
fn stamp(m: &Machine, pa: PhysAddr, pages: u64, seed: u64) -> u64 {
    let mut x = seed ^ pa.as_u64().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    for i in 0..pages {
        let mut tag = [0u8; STAMP];
        for half in tag.chunks_mut(8) {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        m.write(PhysAddr::new(pa.as_u64() + i * PAGE), &tag).expect("RAM");
    }
    digest(m, pa, pages)
}

/// The digest of the stamps of `pages` pages from `pa`.
fn digest(m: &Machine, pa: PhysAddr, pages: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..pages {
        let mut tag = [0u8; STAMP];
        m.read(PhysAddr::new(pa.as_u64() + i * PAGE), &mut tag).expect("RAM");
        for b in tag {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

fn bytes_of(o: Order) -> u64 {
    o.pages() * PAGE
}

fn index<T>(v: &[T], i: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(i) % v.len())
}

/// Entry sizes of the two block sets: the kernel's LUO files, and an odd size.
const ENTRY_SIZES: [usize; 2] = [64, 200];

fn entry(size: usize, seed: u8, i: usize) -> Vec<u8> {
    (0..size).map(|k| (k as u8).wrapping_mul(31) ^ seed ^ (i as u8)).collect()
}

/// Kernel A's state and the model of what it hands over.
struct KernelA<'m> {
    m: &'m Machine,
    /// Preserved folios: (PA, order, checksum).
    folios: Vec<(PhysAddr, Order, u64)>,
    /// Preserved ranges: (PA of the allocated block, its order, pages preserved, checksum).
    ranges: Vec<(PhysAddr, Order, u64, u64)>,
    /// Subtrees in the order they were added: (name, PA, size).
    subtrees: Vec<(String, PhysAddr, u64)>,
    sets: [RawBlockSet; 2],
    set_models: [Vec<Vec<u8>>; 2],
    /// Vmalloc areas: descriptor, blocks, checksum of each block.
    areas: Vec<(kho_abi::KhoVmalloc, Vec<(PhysAddr, u64)>)>,
    array: KhoArray,
    array_model: Vec<(u64, Entry)>,
}

/// Free pages kept back from the operations that allocate (most inputs
/// should reach the kexec; the rest still test running out of memory).
const HEADROOM: u64 = 64;

fn apply(a: &mut KernelA<'_>, t: &mut Tracker<&Machine>, op: &Op) {
    let m = a.m;
    let allocates = matches!(op, Op::PreserveFolio { .. } | Op::PreserveRange { .. } | Op::PreserveVmalloc { .. });
    if allocates && m.available_pages() < HEADROOM {
        return;
    }
    match *op {
        Op::PreserveFolio { order: o, seed } => {
            let o = order(u32::from(o % 8));
            let Ok(pa) = m.alloc_pages(o) else { return };
            let sum = stamp(m, pa, o.pages(), u64::from(seed));
            // The tracker's own tables come from the same (small) RAM.
            if let Err(e) = t.preserve_folio(pa, o) {
                assert!(matches!(e, kho_track::TrackError::Abi(kho_abi::AbiError::NoMemory { .. })), "{e}");
                assert!(!t.is_preserved(pa, o).expect("lookup"));
                m.free_pages(pa, o);
                return;
            }
            a.folios.push((pa, o, sum));
        }
        Op::UnpreserveFolio { i } => {
            let Some(i) = index(&a.folios, i) else { return };
            let (pa, o, _) = a.folios[i];
            if a.subtrees.iter().any(|s| s.1 == pa) {
                return;
            }
            t.unpreserve_folio(pa, o).expect("a preserved folio unpreserves");
            assert!(!t.is_preserved(pa, o).expect("lookup"));
            m.free_pages(pa, o);
            a.folios.swap_remove(i);
        }
        Op::PreserveRange { order: o, pages, seed } => {
            let o = order(u32::from(o % 7));
            let n = 1 + u64::from(pages) % o.pages();
            let Ok(pa) = m.alloc_pages(o) else { return };
            let sum = stamp(m, pa, n, u64::from(seed));
            if let Err(e) = t.preserve_pages(pa, n) {
                // All or nothing.
                assert!(matches!(e, kho_track::TrackError::Abi(kho_abi::AbiError::NoMemory { .. })), "{e}");
                assert!(split(pa, n).iter().all(|&(b, bo)| !t.is_preserved(b, bo).expect("lookup")));
                m.free_pages(pa, o);
                return;
            }
            a.ranges.push((pa, o, n, sum));
        }
        Op::UnpreserveRange { i } => {
            let Some(i) = index(&a.ranges, i) else { return };
            let (pa, o, n, _) = a.ranges.swap_remove(i);
            t.unpreserve_pages(pa, n).expect("a preserved range unpreserves");
            m.free_pages(pa, o);
        }
        Op::AddSubtree { name, folio } => {
            let Some(i) = index(&a.folios, folio) else { return };
            let name = SUBTREE_NAMES[usize::from(name) % SUBTREE_NAMES.len()];
            let (pa, o, _) = a.folios[i];
            let r = t.add_subtree(name, pa, bytes_of(o));
            match (a.subtrees.iter().any(|s| s.0 == name), r) {
                (false, Ok(())) => a.subtrees.push((name.to_string(), pa, bytes_of(o))),
                (true, Err(kho_track::TrackError::SubtreeExists { .. })) => {}
                (exists, r) => panic!("add_subtree({name}) with exists={exists}: {r:?}"),
            }
        }
        Op::RemoveSubtree { folio } => {
            let Some(i) = index(&a.folios, folio) else { return };
            let pa = a.folios[i].0;
            // The first subtree added with that blob goes, as in the kernel.
            let r = t.remove_subtree(pa);
            match a.subtrees.iter().position(|s| s.1 == pa) {
                Some(k) => {
                    r.expect("remove_subtree of a blob that has one");
                    a.subtrees.remove(k);
                }
                None => assert!(matches!(r, Err(kho_track::TrackError::SubtreeNotFound { .. })), "{r:?}"),
            }
        }
        Op::Grow { set, n } => {
            let s = usize::from(set % 2);
            let p = WithTracker::new(m, &*t);
            let (cap, len) = (a.sets[s].capacity(), a.sets[s].len());
            match a.sets[s].grow(&p, usize::from(n)) {
                Ok(()) => assert_eq!(a.sets[s].capacity(), cap + usize::from(n)),
                Err(_) => assert_eq!((a.sets[s].capacity(), a.sets[s].len()), (cap, len)),
            }
        }
        Op::Push { set, n, seed } => {
            let s = usize::from(set % 2);
            let p = WithTracker::new(m, &*t);
            let size = ENTRY_SIZES[s];
            let mut w = a.sets[s].writer(&p);
            for _ in 0..n % 64 {
                let e = entry(size, seed, a.set_models[s].len());
                let room = w.remaining() > 0;
                match w.push(&e) {
                    Ok(()) => {
                        assert!(room, "push beyond capacity accepted");
                        a.set_models[s].push(e);
                    }
                    Err(kho_block::BlockError::NoSpace { .. }) => {
                        assert!(!room, "push refused with room left");
                        break;
                    }
                    Err(e) => panic!("push: {e}"),
                }
            }
            assert_eq!(a.sets[s].len(), a.set_models[s].len());
        }
        Op::Shrink { set, n } => {
            let s = usize::from(set % 2);
            let p = WithTracker::new(m, &*t);
            let cap = a.sets[s].capacity();
            match a.sets[s].shrink(&p, usize::from(n)) {
                Ok(()) => {
                    let new_cap = cap - usize::from(n);
                    assert_eq!(a.sets[s].capacity(), new_cap);
                    a.set_models[s].truncate(new_cap);
                }
                Err(kho_block::BlockError::ShrinkTooFar { .. }) => assert!(usize::from(n) > cap),
                Err(e) => panic!("shrink: {e}"),
            }
            assert_eq!(a.sets[s].len(), a.set_models[s].len());
        }
        Op::PreserveVmalloc { order: o, blocks, seed } => {
            let o = order(u32::from(o % 4));
            let mut got = Vec::new();
            for k in 0..=u64::from(blocks) {
                let Ok(pa) = m.alloc_pages(o) else { break };
                got.push((pa, stamp(m, pa, o.pages(), u64::from(seed) ^ k)));
            }
            let p = WithTracker::new(m, &*t);
            match kho_vmalloc::preserve(&p, got.iter().map(|b| b.0), o, VmallocFlags::ALLOC) {
                Ok(desc) => {
                    assert_eq!(u64::from(desc.total_pages), got.len() as u64 * o.pages());
                    a.areas.push((desc, got));
                }
                Err(
                    kho_vmalloc::VmallocError::NoMemory { .. }
                    | kho_vmalloc::VmallocError::PreserveFailed { source: kho_abi::AbiError::NoMemory { .. }, .. },
                ) => {
                    for (pa, _) in got {
                        assert!(!t.is_preserved(pa, o).expect("lookup"), "a failed preserve left a block");
                        m.free_pages(pa, o);
                    }
                }
                Err(e) => panic!("vmalloc preserve: {e}"),
            }
        }
        Op::UnpreserveVmalloc { i } => {
            let Some(i) = index(&a.areas, i) else { return };
            let (desc, blocks) = a.areas.swap_remove(i);
            kho_vmalloc::unpreserve(&WithTracker::new(m, &*t), &desc).expect("unpreserve");
            let o = order(u32::from(desc.order));
            for (pa, _) in blocks {
                assert!(!t.is_preserved(pa, o).expect("lookup"));
                m.free_pages(pa, o);
            }
        }
        Op::ArrayPush { gap, n, shift } => {
            let p = WithTracker::new(m, &*t);
            let mut next = match a.array_model.last() {
                Some(&(pos, _)) => pos.checked_add(1 + (u64::from(gap) << (shift % 52))),
                None => Some(u64::from(gap) << (shift % 52)),
            };
            let mut w = a.array.writer(&p);
            for k in 0..n % 32 {
                let Some(pos) = next else { break };
                let e = Entry::value((pos ^ u64::from(k)) >> 1).expect("value below i64::MAX");
                match w.push(pos, e) {
                    Ok(()) => a.array_model.push((pos, e)),
                    Err(kho_array::ArrayError::Platform { .. }) => break,
                    Err(e) => panic!("array push at {pos:#x}: {e}"),
                }
                next = pos.checked_add(1);
            }
        }
    }
}

/// The input that decodes to `ops` (operands reduced as the decoder reduces them).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let (sel, args): (u8, Vec<u8>) = match *op {
            Op::PreserveFolio { order, seed } => (0, vec![order, seed]),
            Op::UnpreserveFolio { i } => (1, vec![i]),
            Op::PreserveRange { order, pages, seed } => (2, [&[order][..], &pages.to_le_bytes(), &[seed]].concat()),
            Op::UnpreserveRange { i } => (3, vec![i]),
            Op::AddSubtree { name, folio } => (4, vec![name, folio]),
            Op::RemoveSubtree { folio } => (5, vec![folio]),
            Op::Grow { set, n } => (6, vec![set, n]),
            Op::Push { set, n, seed } => (7, vec![set, n, seed]),
            Op::Shrink { set, n } => (8, vec![set, n]),
            Op::PreserveVmalloc { order, blocks, seed } => (9, [&[order][..], &blocks.to_le_bytes(), &[seed]].concat()),
            Op::UnpreserveVmalloc { i } => (10, vec![i]),
            Op::ArrayPush { gap, n, shift } => (11, [&gap.to_le_bytes()[..], &[n, shift]].concat()),
        };
        out.push(sel);
        out.extend(args);
    }
    out
}

/// Hand-written inputs covering every operation, to seed the corpus.
pub fn seeds() -> Vec<Vec<u8>> {
    use Op::*;
    [
        // Folios, a range, subtrees; remove and re-add; unpreserve some.
        vec![
            PreserveFolio { order: 3, seed: 1 },
            PreserveFolio { order: 0, seed: 2 },
            PreserveRange { order: 5, pages: 20, seed: 3 },
            PreserveRange { order: 2, pages: 2, seed: 4 },
            AddSubtree { name: 0, folio: 0 },
            AddSubtree { name: 0, folio: 1 },
            AddSubtree { name: 2, folio: 1 },
            RemoveSubtree { folio: 0 },
            UnpreserveFolio { i: 0 },
            UnpreserveRange { i: 1 },
        ],
        // Block sets: grow, push past capacity, shrink below len, push again.
        vec![
            Grow { set: 0, n: 100 },
            Push { set: 0, n: 63, seed: 9 },
            Push { set: 0, n: 63, seed: 3 },
            Shrink { set: 0, n: 80 },
            Grow { set: 1, n: 30 },
            Push { set: 1, n: 40, seed: 2 },
            Shrink { set: 1, n: 200 },
        ],
        // Vmalloc areas over two chunks and of order 2; unpreserve one.
        vec![
            PreserveVmalloc { order: 0, blocks: 530, seed: 7 },
            PreserveVmalloc { order: 2, blocks: 4, seed: 1 },
            UnpreserveVmalloc { i: 1 },
            PreserveVmalloc { order: 1, blocks: 3, seed: 8 },
        ],
        // Array: dense, a large jump, a gap at the top of the range.
        vec![
            ArrayPush { gap: 5, n: 31, shift: 0 },
            ArrayPush { gap: 1, n: 31, shift: 40 },
            ArrayPush { gap: 0xffff, n: 3, shift: 51 },
            ArrayPush { gap: 2, n: 1, shift: 0 },
        ],
    ]
    .iter()
    .map(|ops| encode(ops))
    .collect()
}

/// Runs one input; panics on any divergence from the model.
pub fn run(data: &[u8]) {
    let ops = decode(data);
    let cfg = MachineConfig::with_ram(PhysAddr::new(RAM_BASE), RAM_SIZE);
    let m = Machine::new(cfg).expect("a 4 MiB machine");
    let mut t = Tracker::new(&m, m.scratch(), TrackerOptions::default()).expect("tracker");
    let mut a = KernelA {
        m: &m,
        folios: Vec::new(),
        ranges: Vec::new(),
        subtrees: Vec::new(),
        sets: ENTRY_SIZES.map(|s| RawBlockSet::new(s).expect("entry size")),
        set_models: [Vec::new(), Vec::new()],
        areas: Vec::new(),
        array: KhoArray::new(),
        array_model: Vec::new(),
    };
    a.array.preserve(&WithTracker::new(&m, &t)).expect("an empty array preserves");
    for op in &ops {
        apply(&mut a, &mut t, op);
    }
    let data = match t.finish() {
        Ok(data) => data,
        // RAM ran out under the root FDT or the scratch array: nothing to
        // hand over, but the refusal must be the allocator's.
        Err(e) => {
            assert!(matches!(e, kho_track::TrackError::Abi(kho_abi::AbiError::NoMemory { .. })), "finish: {e}");
            return;
        }
    };
    let KernelA { folios, ranges, subtrees, sets, set_models, areas, array, array_model, .. } = a;
    let heads = sets.each_ref().map(|s| s.head());
    let spare: usize = sets.iter().map(|s| s.blocks() - s.len().div_ceil(s.entries_per_block())).sum();
    let array_desc = array.descriptor();
    let m = m.kexec(data);
    kernel_b(&m, &data, &folios, &ranges, &subtrees, heads, &set_models, &areas, &array_desc, &array_model, spare);
}

/// The blocks a range of `n` pages at `pa` is preserved as (orders are
/// below 7 here, so the platform's maximum never caps them).
fn split(pa: PhysAddr, n: u64) -> Vec<(PhysAddr, Order)> {
    let mut out = Vec::new();
    let (mut pfn, mut left) = (pa.as_u64() / PAGE, n);
    while left > 0 {
        let o = pfn.trailing_zeros().min(63 - left.leading_zeros());
        out.push((PhysAddr::new(pfn * PAGE), order(o)));
        pfn += 1 << o;
        left -= 1 << o;
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn kernel_b(
    m: &Machine,
    data: &KhoData,
    folios: &[(PhysAddr, Order, u64)],
    ranges: &[(PhysAddr, Order, u64, u64)],
    subtrees: &[(String, PhysAddr, u64)],
    heads: [PhysAddr; 2],
    set_models: &[Vec<Vec<u8>>; 2],
    areas: &[(kho_abi::KhoVmalloc, Vec<(PhysAddr, u64)>)],
    array_desc: &kho_array::ArrayDesc,
    array_model: &[(u64, Entry)],
    spare: usize,
) {
    let inc = Incoming::import(m, data).expect("kernel A's own handover imports");
    let reserved = inc.reserved_blocks().expect("reserved blocks");
    m.boot_done(&mut reserved.iter().copied()).expect("boot");
    let got: BTreeMap<String, (PhysAddr, u64)> = inc
        .subtrees()
        .map(|s| s.map(|s| (s.name, (s.pa, s.size.expect("kho-v4 has blob-size")))))
        .collect::<Result<_, _>>()
        .expect("subtrees");
    let want: BTreeMap<String, (PhysAddr, u64)> = subtrees.iter().map(|s| (s.0.clone(), (s.1, s.2))).collect();
    assert_eq!(got, want);
    let mut give_back: Vec<(PhysAddr, Order)> = Vec::new();
    for &(pa, o, sum) in folios {
        inc.restore_folio(pa, o).expect("a preserved folio restores");
        assert_eq!(digest(m, pa, o.pages()), sum, "folio {pa} changed");
        give_back.push((pa, o));
    }
    for &(pa, o, n, sum) in ranges {
        inc.restore_pages(pa, n).expect("a preserved range restores");
        assert_eq!(digest(m, pa, n), sum, "range {pa} changed");
        // The pages of the allocated block beyond the range were poisoned
        // and freed at boot; the range is given back as it was preserved.
        assert!(n <= o.pages());
        give_back.extend(split(pa, n));
    }
    let p = WithTracker::new(m, &inc);
    for (s, model) in set_models.iter().enumerate() {
        let set = RestoredRawBlockSet::restore(&p, heads[s], ENTRY_SIZES[s]).expect("block set restores");
        assert_eq!(set.len(), model.len());
        let mut buf = vec![0u8; model.len() * ENTRY_SIZES[s]];
        assert_eq!(set.iter(m).read_into(&mut buf).expect("read"), model.len());
        assert!(buf.chunks(ENTRY_SIZES[s]).eq(model.iter().map(|e| &e[..])), "block set {s} entries");
        set.free(m).expect("free");
    }
    for (desc, blocks) in areas {
        let o = order(u32::from(desc.order));
        let mut got = Vec::new();
        kho_vmalloc::restore(&p, desc, |pa| got.push(pa)).expect("vmalloc area restores");
        assert!(got.iter().eq(blocks.iter().map(|b| &b.0)), "vmalloc blocks");
        for &(pa, sum) in blocks {
            assert_eq!(digest(m, pa, o.pages()), sum, "vmalloc block {pa} changed");
            give_back.push((pa, o));
        }
    }
    let restored = KhoArray::restore(&p, array_desc, 1 << 16).expect("array restores");
    let entries: Vec<(u64, Entry)> = restored.iter(m).collect::<Result<_, _>>().expect("array reads");
    assert_eq!(entries, array_model);
    let mut first = PhysAddr::new(array_desc.first);
    while !first.is_null() {
        let next: u64 = kho_abi::read_phys(m, first).expect("RAM");
        give_back.push((first, Order::ZERO));
        first = PhysAddr::new(next);
    }
    // What nobody restored: exactly the block sets' spare pages.
    let unclaimed = inc.unclaimed().expect("walk");
    assert_eq!(unclaimed.len(), spare, "unclaimed {unclaimed:?}");
    assert!(unclaimed.iter().all(|&(_, o)| o == Order::ZERO));
    give_back.extend(unclaimed);
    inc.finish();
    for (pa, o) in give_back {
        m.free_pages(pa, o);
    }
    assert_eq!(m.reserved_pages(), 0, "pages left reserved");
    assert_eq!(m.outstanding_pages(), 0, "pages left allocated");
}
