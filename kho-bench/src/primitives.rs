//! Block sets, vmalloc areas and arrays, each beside its limit.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kho_abi::{Order, PAGE_SIZE, PageAlloc, PhysAddr, VmallocFlags, WithTracker};
use kho_array::{Entry, KhoArray};
use kho_block::BlockSet;
use kho_sim::{DEFAULT_RAM_BASE, Machine, MachineConfig, ModelTracker};
use kho_track::{Tracker, TrackerOptions};

use crate::formulas::rfc_array_bytes;
use crate::rows::{Row, Target, fmt_num};
use crate::timing::{Reps, measure_pair};
use crate::workloads::Rng;

/// One 64-byte entry (the size of LUO's file entries).
pub type Entry64 = [u8; 64];

/// The block set workload: `bytes` of 64-byte entries, each filled with a
/// byte that varies along the set.
pub fn entries64(bytes: usize) -> Vec<Entry64> {
    (0..bytes / 64).map(|i| [(i % 251) as u8; 64]).collect()
}

/// A machine with room for a block set of `bytes` (and a copy of it).
pub fn block_machine(bytes: usize) -> Machine {
    Machine::new(MachineConfig::with_ram(DEFAULT_RAM_BASE, (bytes as u64 * 3).max(256 << 20))).expect("machine")
}

/// A machine with room for a vmalloc area of `pages` order-0 pages, its
/// chunk pages and a tracker's tree, with no scratch area.
pub fn vmalloc_machine(pages: usize) -> Machine {
    let bytes = pages as u64 * PAGE_SIZE as u64;
    let mut cfg = MachineConfig::with_ram(DEFAULT_RAM_BASE, bytes + bytes / 8 + (128 << 20));
    cfg.scratch = vec![];
    Machine::new(cfg).expect("machine")
}

/// The vmalloc workload: `pages` order-0 pages allocated on `m`, shuffled
/// so they are not physically in order.
pub fn vmalloc_area(m: &Machine, pages: usize) -> Vec<PhysAddr> {
    let mut blocks: Vec<PhysAddr> = (0..pages).map(|_| m.alloc_pages(Order::ZERO).expect("RAM for the area")).collect();
    Rng::new(0x5eed).shuffle(&mut blocks);
    blocks
}

/// Block set rows: extend and read of `bytes` of 64-byte entries beside
/// memcpy of the same payload.
pub fn block_rows(bytes: usize, reps: Reps) -> Vec<Row> {
    let m = block_machine(bytes);
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let src = entries64(bytes);
    let mut dst = vec![[0u8; 64]; src.len()];
    let mut set = BlockSet::<Entry64>::new();
    set.grow(&p, src.len()).expect("grow");
    let memcpy = |dst: &mut Vec<Entry64>| {
        let start = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
        start.elapsed()
    };
    let mut dst2 = dst.clone();
    let (extend, copy_in) = measure_pair(
        reps,
        || {
            set.clear(&p).expect("clear");
            let start = Instant::now();
            set.writer(&p).extend(black_box(&src)).expect("extend");
            start.elapsed()
        },
        || memcpy(&mut dst2),
    );
    let (read, copy_out) = measure_pair(
        reps,
        || {
            let start = Instant::now();
            let n = set.iter(&p).read_into(&mut dst).expect("read");
            black_box((&dst, n));
            start.elapsed()
        },
        || memcpy(&mut dst2),
    );
    assert_eq!(dst, src, "block set read back what was written");
    set.destroy(&p).expect("destroy");
    let size = crate::rows::fmt_bytes(bytes as u64);
    vec![
        Row::ratio("block sets", format!("extend, {size} of 64-byte entries"), extend, "memcpy", copy_in)
            .with_target(Target::AtMost(2.0)),
        Row::ratio("block sets", format!("read_into, {size} of 64-byte entries"), read, "memcpy", copy_out)
            .with_target(Target::AtMost(2.0)),
    ]
}

/// vmalloc rows: preserving an area of `pages` shuffled order-0 pages
/// through kho-track beside preserving the same pages one by one through
/// kho-track (a fresh tracker per run for both).
pub fn vmalloc_rows(pages: usize, reps: Reps) -> Vec<Row> {
    let bytes = pages as u64 * PAGE_SIZE as u64;
    let m = vmalloc_machine(pages);
    let blocks = vmalloc_area(&m, pages);
    let (area, one_by_one) = measure_pair(
        reps,
        || {
            let t = Tracker::new(&m, &[], TrackerOptions::default()).expect("tracker");
            let p = WithTracker::new(&m, &t);
            let start = Instant::now();
            let d =
                kho_vmalloc::preserve(&p, blocks.iter().copied(), Order::ZERO, VmallocFlags::ALLOC).expect("preserve");
            let took = start.elapsed();
            kho_vmalloc::unpreserve(&p, black_box(&d)).expect("unpreserve");
            t.destroy();
            took
        },
        || {
            let t = Tracker::new(&m, &[], TrackerOptions::default()).expect("tracker");
            let start = Instant::now();
            for &pa in &blocks {
                t.preserve_folio(pa, Order::ZERO).expect("preserve");
            }
            let took = start.elapsed();
            t.destroy();
            took
        },
    );
    let size = crate::rows::fmt_bytes(bytes);
    vec![
        Row::ratio(
            "vmalloc",
            format!("preserve a {size} area of shuffled order-0 pages ({} blocks)", crate::rows::group(pages as i128)),
            area,
            "the same pages preserved one by one through kho-track",
            one_by_one,
        )
        .with_target(Target::AtMost(1.3)),
    ]
}

/// One array position pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// Name in the report.
    pub name: &'static str,
    /// Ascending positions.
    pub positions: Vec<u64>,
    /// Target in bytes of pages per entry.
    pub target: Target,
}

/// The array patterns, with `n` entries (fewer for the patterns whose
/// positions run out).
pub fn patterns(n: u64) -> Vec<Pattern> {
    let mut rng = Rng::new(42);
    let mut uniform: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    uniform.sort_unstable();
    uniform.dedup();
    let top = n.min(16_000);
    vec![
        Pattern { name: "dense", positions: (0..n).collect(), target: Target::AtMost(8.0 * 1.01) },
        Pattern {
            name: "clustered: 64 consecutive in every 2^20",
            positions: (0..n).map(|i| ((i / 64) << 20) | (i % 64)).collect(),
            target: Target::AtMost(16.0),
        },
        Pattern { name: "uniformly sparse over u64", positions: uniform, target: Target::AtMost(24.0) },
        Pattern {
            name: "isolated entries, gap 2",
            positions: (0..n).map(|i| i * 2).collect(),
            target: Target::AtMost(16.0),
        },
        Pattern {
            name: "isolated entries, gap 2^50 (the widest gap with the ≤ 16 target)",
            positions: (0..top).map(|i| i << 50).collect(),
            target: Target::AtMost(16.0),
        },
        Pattern {
            name: "isolated entries, gap 2^50 + 1",
            positions: (0..top).map(|i| i * ((1 << 50) + 1)).collect(),
            target: Target::AtMost(24.0),
        },
    ]
}

/// Space and write figures of one pattern.
#[derive(Clone, Debug)]
pub struct ArrayFigures {
    /// Pattern name.
    pub name: &'static str,
    /// Entries.
    pub entries: u64,
    /// Bytes of the array's pages.
    pub bytes: u64,
    /// Bytes of the RFC layout by formula.
    pub rfc_bytes: u64,
    /// Median time to push every entry.
    pub push: Duration,
    /// Median time to push the same `(position, raw)` pairs to a `Vec`.
    pub vec_push: Duration,
    /// Median time to write dense data with `extend_raw` (dense only).
    pub extend_raw: Option<Duration>,
    /// The space target.
    pub target: Target,
}

/// Measures one pattern.
pub fn array_figures(pat: &Pattern, reps: Reps) -> ArrayFigures {
    let m = Machine::new(MachineConfig::with_ram(DEFAULT_RAM_BASE, 512 << 20)).expect("machine");
    let t = ModelTracker::new();
    let p = WithTracker::new(&m, &t);
    let entries: Vec<(u64, Entry)> =
        pat.positions.iter().map(|&pos| (pos, Entry::value(pos >> 2).expect("value"))).collect();
    let (push, vec_push) = measure_pair(
        reps,
        || {
            let mut a = KhoArray::new();
            let start = Instant::now();
            let mut w = a.writer(&p);
            for &(pos, e) in &entries {
                w.push(pos, e).expect("push");
            }
            let d = start.elapsed();
            a.destroy(&p).expect("destroy");
            d
        },
        || {
            let start = Instant::now();
            let mut v = Vec::new();
            for &(pos, e) in &entries {
                v.push((pos, e.raw()));
            }
            black_box(&v);
            start.elapsed()
        },
    );
    let extend_raw = (pat.name == "dense").then(|| {
        let raws: Vec<u64> = entries.iter().map(|e| e.1.raw()).collect();
        crate::timing::measure(reps, || {
            let mut a = KhoArray::new();
            let start = Instant::now();
            let mut w = a.writer(&p);
            for chunk in raws.chunks(512) {
                w.extend_raw(chunk).expect("extend_raw");
            }
            let d = start.elapsed();
            a.destroy(&p).expect("destroy");
            d
        })
    });
    let mut a = KhoArray::new();
    let mut w = a.writer(&p);
    for &(pos, e) in &entries {
        w.push(pos, e).expect("push");
    }
    // What was written reads back.
    let mut it = a.iter(&p);
    for &(pos, e) in &entries {
        let (q, f) = it.next().expect("an entry").expect("readable");
        assert_eq!((q, f.raw()), (pos, e.raw()));
    }
    assert!(it.next().is_none());
    let bytes = a.footprint();
    a.destroy(&p).expect("destroy");
    assert_eq!(m.outstanding_pages(), 0);
    ArrayFigures {
        name: pat.name,
        entries: entries.len() as u64,
        bytes,
        rfc_bytes: rfc_array_bytes(pat.positions.iter().copied()),
        push,
        vec_push,
        extend_raw,
        target: pat.target,
    }
}

impl ArrayFigures {
    /// Bytes per entry of the array.
    pub fn per_entry(&self) -> f64 {
        self.bytes as f64 / self.entries as f64
    }

    /// Bytes per entry of the RFC layout.
    pub fn rfc_per_entry(&self) -> f64 {
        self.rfc_bytes as f64 / self.entries as f64
    }

    /// The main-table rows: space beside the RFC, and (dense only) writes
    /// beside a `Vec`.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![Row {
            area: "arrays",
            what: format!("space, {} ({} entries)", self.name, crate::rows::group(i128::from(self.entries))),
            ours: format!("{} B/entry", fmt_num(self.per_entry())),
            limit: format!("RFC layout: {} B/entry", fmt_num(self.rfc_per_entry())),
            value: self.per_entry(),
            unit: " B/entry",
            target: self.target,
            kernel: None,
        }];
        if let Some(bulk) = self.extend_raw {
            rows.push(Row::ratio(
                "arrays",
                format!("write, {}: extend_raw", self.name),
                bulk,
                "pushing (position, entry) to a Vec",
                self.vec_push,
            ));
        }
        rows.push(Row::ratio(
            "arrays",
            format!("write, {}: push", self.name),
            self.push,
            "pushing (position, entry) to a Vec",
            self.vec_push,
        ));
        rows
    }

    /// Nanoseconds per entry of `d`.
    pub fn ns_per_entry(&self, d: Duration) -> String {
        format!("{:.1}", d.as_nanos() as f64 / self.entries as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_ascend_strictly() {
        for p in patterns(2000) {
            assert!(p.positions.windows(2).all(|w| w[0] < w[1]), "{}", p.name);
            assert!(!p.positions.is_empty());
        }
    }

    #[test]
    fn array_figures_small() {
        let reps = Reps { warmup: 0, runs: 1 };
        let pats = patterns(3000);
        let dense = array_figures(&pats[0], reps);
        assert_eq!(dense.entries, 3000);
        // 3000 dense entries: at least 3000 * 8 bytes, whole pages.
        assert!(dense.bytes >= 24_000 && dense.bytes.is_multiple_of(PAGE_SIZE as u64));
        assert_eq!(dense.rfc_bytes, 3000u64.div_ceil(510) * 4096);
        assert!(dense.extend_raw.is_some());
        assert_eq!(pats.len(), 6);
        let isolated = array_figures(&pats[3], reps);
        // The RFC pays a page per 255 entries here (every other slot of
        // 510); the array far less than a page per entry.
        assert_eq!(isolated.rfc_bytes, 3000u64.div_ceil(255) * 4096);
        assert!(isolated.per_entry() < 64.0);
        assert_eq!(isolated.rows().len(), 2);
        assert_eq!(dense.rows().len(), 3);
    }

    #[test]
    fn block_and_vmalloc_rows_run() {
        let reps = Reps { warmup: 0, runs: 1 };
        let rows = block_rows(64 << 10, reps);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.value.is_finite() && r.value > 0.0));
        let rows = vmalloc_rows(2048, reps);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].value > 0.0);
    }
}
