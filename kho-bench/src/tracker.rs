//! The tracker (kho-track on kho-sim): preserve beside an atomic bit-set
//! into a flat bitmap over the same PAs, walks beside a word scan of the
//! same leaf pages, and the kernel's measured 2 GiB case.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kho_abi::{Order, PAGE_SHIFT, PAGE_SIZE, PhysAddr, RadixKey};
use kho_sim::Machine;
use kho_track::mem::WORDS;
use kho_track::walk::{Guard, TreeView};
use kho_track::{Tracker, TrackerOptions};

use crate::rows::{Row, Target, group};
use crate::timing::{Reps, measure, measure_pair, parallel};
use crate::workloads::{Arena, Rng, Workload};

/// The kernel's own order-0 maximum (`MAX_PAGE_ORDER`).
const MAX_ORDER: u32 = 10;

/// Keys of the kernel's measured case (two 1 GiB memfds).
pub const KERNEL_KEYS: u64 = 526_386;
/// The kernel's walk time for that case, per-key work included.
pub const KERNEL_WALK: Duration = Duration::from_micros(21_800);
/// The kernel's tree pages for that case.
pub const KERNEL_TREE_PAGES: u64 = 69;

/// A list of blocks to preserve: `(PA, order)`.
type Blocks = Vec<(u64, u32)>;

/// The blocks of one preserve measurement and how to split them between
/// threads: each thread takes one contiguous part of the list, and the
/// parts cover disjoint PA ranges.
pub struct PreserveCase {
    /// Name in the report.
    pub name: &'static str,
    blocks: Blocks,
}

/// Which preserve measurement.
#[derive(Clone, Copy, Debug)]
pub enum PreserveKind {
    /// Order-0 pages in ascending PA.
    Sequential,
    /// Order-0 pages in random order within each half of the region.
    Random,
    /// Blocks of orders 0..=9 in turn, as alignment allows.
    Mixed,
}

impl PreserveCase {
    /// The blocks of `kind` over `pages` pages at `base`.
    pub fn new(kind: PreserveKind, base: u64, pages: u64) -> PreserveCase {
        let page = PAGE_SIZE as u64;
        let (name, blocks) = match kind {
            PreserveKind::Sequential => ("order-0 sequential", (0..pages).map(|p| (base + p * page, 0)).collect()),
            PreserveKind::Random => {
                let mut rng = Rng::new(0x9e37_79b9);
                let mut v: Blocks = (0..pages).map(|p| (base + p * page, 0)).collect();
                let (a, b) = v.split_at_mut((pages / 2) as usize);
                rng.shuffle(a);
                rng.shuffle(b);
                ("order-0 random", v)
            }
            PreserveKind::Mixed => {
                let mut v = Vec::new();
                let (mut p, mut o) = (0u64, 0u32);
                while p + (1 << o) <= pages {
                    v.push((base + p * page, o));
                    p += 1 << o;
                    o = (o + 1) % 10;
                    while !p.is_multiple_of(1 << o) {
                        o = 0;
                    }
                }
                ("mixed orders 0-9", v)
            }
        };
        PreserveCase { name, blocks }
    }

    fn parts(&self, threads: usize) -> std::slice::Chunks<'_, (u64, u32)> {
        self.blocks.chunks(self.blocks.len().div_ceil(threads).max(1))
    }

    /// Part `i` of `threads`.
    fn part(&self, threads: usize, i: usize) -> &[(u64, u32)] {
        self.parts(threads).nth(i).unwrap_or(&[])
    }

    /// Blocks to preserve.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}

/// Preserves `case` on a fresh tracker with `threads` threads; returns the
/// time of the preserves alone and the tracker's tree pages.
fn tracker_run(m: &Machine, case: &PreserveCase, threads: usize) -> (Duration, u64) {
    let t = Tracker::new(m, &[], TrackerOptions::default()).expect("tracker");
    let d = parallel(threads, |i| {
        for &(pa, o) in case.part(threads, i) {
            t.preserve_folio(PhysAddr::new(pa), Order::new(u64::from(o), "order").expect("order")).expect("preserve");
        }
    });
    let pages = t.tree_pages().expect("tree pages");
    t.destroy();
    (d, pages)
}

/// The limit: an atomic bit-set, one bit per block's first page, into a
/// flat bitmap allocated beforehand over the region.
fn bitmap_run(base: u64, pages: u64, case: &PreserveCase, threads: usize) -> Duration {
    let bitmap: Vec<AtomicU64> = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
    let d = parallel(threads, |i| {
        for &(pa, _) in case.part(threads, i) {
            let bit = (pa - base) >> PAGE_SHIFT;
            bitmap[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    });
    black_box(&bitmap);
    d
}

/// Preserve rows for `kind` over `pages` pages: one and two threads, each
/// beside the bitmap limit with as many threads, and the two-thread
/// speed-up.
pub fn preserve_rows(kind: PreserveKind, pages: u64, reps: Reps) -> Vec<Row> {
    let arena = Arena::new(pages * PAGE_SIZE as u64, MAX_ORDER);
    let case = PreserveCase::new(kind, arena.base, pages);
    let m = &arena.machine;
    let mut rows = Vec::new();
    let (mut one, mut one_limit) = (Duration::ZERO, Duration::ZERO);
    let size = crate::rows::fmt_bytes(pages * PAGE_SIZE as u64);
    for threads in [1usize, 2] {
        let (ours, limit) =
            measure_pair(reps, || tracker_run(m, &case, threads).0, || bitmap_run(arena.base, pages, &case, threads));
        let target = match (kind, threads) {
            (PreserveKind::Mixed, _) | (_, 2) => Target::None,
            _ => Target::AtMost(2.0),
        };
        rows.push(
            Row::ratio(
                "tracker",
                format!(
                    "preserve {}, {size}, {} blocks, {threads} thread{}",
                    case.name,
                    group(case.len() as i128),
                    plural(threads)
                ),
                ours,
                &format!("atomic bit-set into a flat bitmap, {threads} thread{}", plural(threads)),
                limit,
            )
            .with_target(target),
        );
        if threads == 1 {
            (one, one_limit) = (ours, limit);
        } else {
            rows.push(Row {
                area: "tracker",
                what: format!("preserve {}: 2 threads (disjoint halves) speed-up over 1", case.name),
                ours: format!("{} vs {}", crate::rows::fmt_duration(ours), crate::rows::fmt_duration(one)),
                limit: format!("the bitmap limit's own speed-up: {:.2}x", crate::rows::ratio(one_limit, limit)),
                value: crate::rows::ratio(one, ours),
                unit: "x",
                target: if matches!(kind, PreserveKind::Mixed) { Target::None } else { Target::AtLeast(1.7) },
            });
        }
    }
    rows
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

type Leaf<'m> = (u64, &'m [kho_track::sync::AtomicU64; WORDS]);

/// The leaf pages of the tree at `root`, with the key of each one's bit 0.
fn leaves(m: &Machine, root: PhysAddr) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    let _ = TreeView::new(m, root)
        .for_each_leaf::<()>(&mut Guard::trusted(), &mut |base, words| {
            out.push((base, words));
            Ok(ControlFlow::Continue(()))
        })
        .expect("leaf walk");
    out
}

/// The per-key work of the callback walks: fold the block into a sum.
#[inline(always)]
fn per_key(sum: &mut u64, pa: u64, order: u32) {
    *sum = sum.wrapping_add(pa ^ u64::from(order));
}

/// One walk per block through the tracker.
fn walk_blocks<M: kho_abi::PhysMem + kho_abi::PageAlloc>(t: &Tracker<'_, M>) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    let _ = t
        .for_each_block::<()>(&mut |pa, o| {
            per_key(&mut sum, pa.as_u64(), o.get());
            ControlFlow::Continue(())
        })
        .expect("walk");
    black_box(sum);
    start.elapsed()
}

/// One walk as ranges through the tracker; returns the time and the number
/// of ranges.
fn walk_ranges<M: kho_abi::PhysMem + kho_abi::PageAlloc>(t: &Tracker<'_, M>) -> (Duration, u64) {
    let start = Instant::now();
    let (mut n, mut acc) = (0u64, 0u64);
    let _ = t
        .for_each_range::<()>(&mut |pa, len| {
            n += 1;
            acc = acc.wrapping_add(pa.as_u64() ^ len);
            ControlFlow::Continue(())
        })
        .expect("walk");
    black_box(acc);
    (start.elapsed(), n)
}

/// The limit of the per-block walk: a word scan of the same leaf pages with
/// the same callback.
fn scan_with_callback(leaves: &[Leaf<'_>]) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    for &(base, words) in leaves {
        for (w, word) in words.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let key = RadixKey::from_raw(base | (w as u64 * 64 + u64::from(bits.trailing_zeros()))).expect("key");
                bits &= bits - 1;
                per_key(&mut sum, key.pa().as_u64(), key.order().get());
            }
        }
    }
    black_box(sum);
    start.elapsed()
}

/// The limit of the range walk: a raw word scan of the same leaf pages.
fn scan_raw(leaves: &[Leaf<'_>]) -> Duration {
    let start = Instant::now();
    let mut acc = 0u64;
    for &(_, words) in leaves {
        for word in words.iter() {
            acc = acc.wrapping_add(word.load(Ordering::Relaxed));
        }
    }
    black_box(acc);
    start.elapsed()
}

/// Our figures for the kernel's measured case.
#[derive(Clone, Debug)]
pub struct KernelCase {
    /// Keys preserved.
    pub keys: u64,
    /// Tree pages.
    pub tree_pages: u64,
    /// Median per-block walk (callback per key).
    pub walk_blocks: Duration,
    /// Median range walk.
    pub walk_ranges: Duration,
    /// Ranges the range walk returns.
    pub ranges: u64,
}

/// Preserves the memfd-runs workload cut to `keys` order-0 pages on a
/// tracker of `arena`.
fn preserve_workload<'m>(arena: &'m Arena, w: Workload, blocks: u64) -> Tracker<'m, Machine> {
    let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker");
    let order = Order::new(u64::from(w.order()), "order").expect("order");
    for (start, n) in w.runs(blocks) {
        for i in start..start + n {
            t.preserve_folio(arena.pa(i, w.order()), order).expect("preserve");
        }
    }
    t
}

/// Walk rows on the kernel's measured case (2 GiB of memfd pages, 526,386
/// order-0 keys), and our figures for it.
pub fn walk_rows(reps: Reps) -> (Vec<Row>, KernelCase) {
    let w = Workload::MemfdRuns;
    let arena = Arena::new(w.span(KERNEL_KEYS), MAX_ORDER);
    let t = preserve_workload(&arena, w, KERNEL_KEYS);
    let leaves = leaves(&arena.machine, t.tree_root());
    let (blocks, scan) = measure_pair(reps, || walk_blocks(&t), || scan_with_callback(&leaves));
    let (ranges, raw) = measure_pair(reps, || walk_ranges(&t).0, || scan_raw(&leaves));
    // The tracker's own root FDT page is preserved too: one key more.
    let case = KernelCase {
        keys: KERNEL_KEYS + 1,
        tree_pages: t.tree_pages().expect("tree pages"),
        walk_blocks: blocks,
        walk_ranges: ranges,
        ranges: walk_ranges(&t).1,
    };
    t.destroy();
    let rows = vec![
        Row::ratio(
            "tracker",
            "walk per block (callback per key), 526,386 order-0 keys",
            blocks,
            "word scan of the same leaves, same callback",
            scan,
        )
        .with_target(Target::AtMost(2.0)),
        Row::ratio(
            "tracker",
            format!("walk as coalesced ranges, 526,386 order-0 keys ({} ranges)", group(case.ranges.into())),
            ranges,
            "raw word scan of the same leaves",
            raw,
        )
        .with_target(Target::AtMost(1.5)),
    ];
    (rows, case)
}

/// A fully preserved GiB: the number of ranges it comes back as (target 1),
/// and its range walk beside the raw scan.
pub fn full_gib_rows(reps: Reps) -> Vec<Row> {
    let pages = (1u64 << 30) / PAGE_SIZE as u64;
    let arena = Arena::new(1 << 30, MAX_ORDER);
    let case = PreserveCase::new(PreserveKind::Sequential, arena.base, pages);
    let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker");
    for &(pa, _) in &case.blocks {
        t.preserve_folio(PhysAddr::new(pa), Order::ZERO).expect("preserve");
    }
    // The tracker's FDT page is preserved as well; count only ranges inside
    // the GiB.
    let mut inside = 0u64;
    let end = arena.base + (1 << 30);
    let _ = t
        .for_each_range::<()>(&mut |pa, len| {
            if pa.as_u64() >= arena.base && pa.as_u64() + len <= end {
                inside += 1;
            }
            ControlFlow::Continue(())
        })
        .expect("walk");
    let leaves = leaves(&arena.machine, t.tree_root());
    let (ranges, raw) = measure_pair(reps, || walk_ranges(&t).0, || scan_raw(&leaves));
    let blocks = measure(reps, || walk_blocks(&t));
    t.destroy();
    vec![
        Row {
            area: "tracker",
            what: "a fully preserved GiB (262,144 order-0 pages) comes back as one range".into(),
            ours: format!("{inside} range{}", plural(inside as usize)),
            limit: "one range".into(),
            value: inside as f64,
            unit: "",
            target: Target::AtMost(1.0),
        },
        Row::ratio("tracker", "walk as ranges, a fully preserved GiB", ranges, "raw word scan of the same leaves", raw)
            .with_target(Target::AtMost(1.5)),
        Row::ratio("tracker", "walk per block, a fully preserved GiB", blocks, "walk as ranges (the same GiB)", ranges),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserve_cases_cover_the_region_in_disjoint_halves() {
        let base = 1u64 << 32;
        let page = PAGE_SIZE as u64;
        for kind in [PreserveKind::Sequential, PreserveKind::Random] {
            let c = PreserveCase::new(kind, base, 1024);
            let mut pas: Vec<u64> = c.blocks.iter().map(|b| b.0).collect();
            let parts: Vec<_> = c.parts(2).collect();
            assert_eq!(parts.len(), 2);
            assert!(parts[0].iter().all(|b| b.0 < base + 512 * page));
            assert!(parts[1].iter().all(|b| b.0 >= base + 512 * page));
            pas.sort_unstable();
            assert_eq!(pas, (0..1024).map(|p| base + p * page).collect::<Vec<_>>());
        }
        let c = PreserveCase::new(PreserveKind::Mixed, base, 4096);
        assert!(c.blocks.iter().all(|&(pa, o)| (pa - base).is_multiple_of(page << o)));
        assert!(c.blocks.windows(2).all(|w| w[0].0 + (page << w[0].1) == w[1].0));
        assert!(c.blocks.iter().any(|b| b.1 == 9));
    }

    #[test]
    fn walks_agree_with_what_was_preserved() {
        // A small memfd-like set: the per-block walk sees every key (and
        // the FDT page), the scan sees the same keys.
        let w = Workload::MemfdRuns;
        let arena = Arena::new(w.span(5000), MAX_ORDER);
        let t = preserve_workload(&arena, w, 5000);
        let mut n = 0u64;
        let _ = t.for_each_block::<()>(&mut |_, _| {
            n += 1;
            ControlFlow::Continue(())
        });
        assert_eq!(n, 5001);
        let leaves = leaves(&arena.machine, t.tree_root());
        let bits: u32 = leaves.iter().flat_map(|l| l.1.iter()).map(|w| w.load(Ordering::Relaxed).count_ones()).sum();
        assert_eq!(u64::from(bits), 5001);
        let runs = w.runs(5000).count() as u64;
        // The FDT page lies outside the region: one range more.
        assert_eq!(walk_ranges(&t).1, runs + 1);
        t.destroy();
    }
}
