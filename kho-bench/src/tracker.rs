//! The tracker (kho-track on kho-sim): preserve beside an atomic bit-set
//! into a flat bitmap over the same PAs, walks beside a word scan of the
//! same leaf pages, and the kernel's measured 2 GiB case.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use kho_abi::{Order, PAGE_SHIFT, PAGE_SIZE, PhysAddr, RadixKey};
use kho_sim::Machine;
use kho_track::{Incoming, RadixTree, Tracker, TrackerOptions};

use crate::kernel::KernelTree;
use crate::limits::{self, Bitmap, Leaf, leaves, scan_blocks};
use crate::rows::fmt_duration;
use crate::rows::{Row, Target, group};
use crate::timing::{Reps, Stats, measure_all, parallel_cpu};
use crate::workloads::{Arena, Rng, Workload};

/// The kernel's own order-0 maximum (`MAX_PAGE_ORDER`).
pub const MAX_ORDER: u32 = 10;

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

    /// The blocks, `(PA, order)`, in preserve order.
    pub fn blocks(&self) -> &[(u64, u32)] {
        &self.blocks
    }

    /// Part `i` of the list split for `threads` threads (contiguous parts
    /// over disjoint PA ranges).
    pub fn thread_part(&self, threads: usize, i: usize) -> &[(u64, u32)] {
        self.part(threads, i)
    }

    /// Blocks to preserve.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there is nothing to preserve.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Preserves `case` on a fresh tracker with `threads` threads; returns the
/// time of the preserves alone and the CPU time all threads spent in them.
fn tracker_run(m: &Machine, case: &PreserveCase, threads: usize) -> (Duration, Duration) {
    let t = Tracker::new(m, &[], TrackerOptions::default()).expect("tracker");
    let d = parallel_cpu(threads, |i| {
        for &(pa, o) in case.part(threads, i) {
            t.preserve_folio(PhysAddr::new(pa), Order::new(u64::from(o), "order").expect("order")).expect("preserve");
        }
    });
    t.destroy();
    d
}

/// The kernel's algorithm on the same blocks with `threads` threads.
fn kernel_run(case: &PreserveCase, threads: usize) -> (Duration, Duration) {
    let k = KernelTree::new();
    let d = parallel_cpu(threads, |i| {
        for &(pa, o) in case.part(threads, i) {
            k.preserve(pa, o);
        }
    });
    black_box(k.pages());
    d
}

/// The limit: an atomic bit-set, one bit per block's first page, into a
/// flat bitmap allocated beforehand over the region.
fn bitmap_run(base: u64, pages: u64, case: &PreserveCase, threads: usize) -> (Duration, Duration) {
    let bitmap = Bitmap::new(base, pages);
    let d = parallel_cpu(threads, |i| {
        for &(pa, _) in case.part(threads, i) {
            bitmap.set(pa);
        }
    });
    black_box(&bitmap);
    d
}

/// Records the CPU time of a `(wall, cpu)` measurement in `cpu` and
/// returns its wall time.
fn timed(cpu: &mut Vec<Duration>, (wall, used): (Duration, Duration)) -> Duration {
    cpu.push(used);
    wall
}

/// kho, the limit and the kernel algorithm preserving `case` with one and
/// with two threads.
#[derive(Clone, Debug)]
pub struct PreserveFigures {
    /// The case's name.
    pub name: &'static str,
    /// Bytes the case spans.
    pub span: u64,
    /// Blocks preserved.
    pub blocks: u64,
    /// `[one thread, two threads]` of kho, the limit and the kernel.
    pub kho: [Stats; 2],
    /// The bitmap limit.
    pub limit: [Stats; 2],
    /// The kernel algorithm.
    pub kernel: [Stats; 2],
    /// Least CPU time summed over threads, `[one, two]`: kho, limit, kernel.
    pub cpu: [[Duration; 2]; 3],
}

impl PreserveFigures {
    /// Nanoseconds per block of `d`.
    pub fn ns(&self, d: Duration) -> f64 {
        d.as_nanos() as f64 / self.blocks as f64
    }
}

/// Measures `case` over `span` bytes from `base` on `m`.
pub fn preserve_figures(m: &Machine, base: u64, span: u64, case: &PreserveCase, reps: Reps) -> PreserveFigures {
    let pages = span / PAGE_SIZE as u64;
    let mut f = PreserveFigures {
        name: case.name,
        span,
        blocks: case.len() as u64,
        kho: Default::default(),
        limit: Default::default(),
        kernel: Default::default(),
        cpu: Default::default(),
    };
    // One and two threads alternate within each repetition, as the
    // contestants do, so that a change in the machine's speed between the
    // two halves of a run cannot show up as a speed-up or a slow-down.
    let mut cpu: [[Vec<Duration>; 2]; 3] = Default::default();
    let [[c00, c01], [c10, c11], [c20, c21]] = &mut cpu;
    let st = measure_all(
        reps,
        &mut [
            &mut || timed(c00, tracker_run(m, case, 1)),
            &mut || timed(c10, bitmap_run(base, pages, case, 1)),
            &mut || timed(c20, kernel_run(case, 1)),
            &mut || timed(c01, tracker_run(m, case, 2)),
            &mut || timed(c11, bitmap_run(base, pages, case, 2)),
            &mut || timed(c21, kernel_run(case, 2)),
        ],
    );
    for ti in 0..2 {
        (f.kho[ti], f.limit[ti], f.kernel[ti]) = (st[3 * ti], st[3 * ti + 1], st[3 * ti + 2]);
        for (k, c) in cpu.iter().enumerate() {
            // Warm-up runs are recorded too; the least is taken, as for
            // the times.
            f.cpu[k][ti] = c[ti].iter().copied().min().unwrap_or_default();
        }
    }
    f
}

/// Preserve rows for `kind` over `pages` pages: one and two threads, each
/// beside the bitmap limit and the kernel algorithm with as many threads,
/// and the two-thread speed-up.
pub fn preserve_rows(kind: PreserveKind, pages: u64, reps: Reps) -> (Vec<Row>, PreserveFigures) {
    let arena = Arena::new(pages * PAGE_SIZE as u64, MAX_ORDER);
    let case = PreserveCase::new(kind, arena.base, pages);
    let f = preserve_figures(&arena.machine, arena.base, pages * PAGE_SIZE as u64, &case, reps);
    let target = |threads| match (kind, threads) {
        (PreserveKind::Mixed, _) | (_, 2) => Target::None,
        _ => Target::AtMost(2.0),
    };
    let rows = figure_rows(&f, target, !matches!(kind, PreserveKind::Mixed));
    (rows, f)
}

/// The rows of `f`: one per thread count and the speed-up.
fn figure_rows(f: &PreserveFigures, target: impl Fn(usize) -> Target, speedup_target: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let size = crate::rows::fmt_bytes(f.span);
    for (ti, threads) in [1usize, 2].into_iter().enumerate() {
        rows.push(
            Row::ratio(
                "tracker",
                format!(
                    "preserve {}, {size}, {} blocks, {threads} thread{} ({:.1} ns/block, spread {:.0} %)",
                    f.name,
                    group(i128::from(f.blocks)),
                    plural(threads),
                    f.ns(f.kho[ti].min),
                    100.0 * f.kho[ti].spread()
                ),
                f.kho[ti].min,
                &format!("atomic bit-set into a flat bitmap, {threads} thread{}", plural(threads)),
                f.limit[ti].min,
            )
            .with_target(target(threads))
            .with_kernel(f.kho[ti].min, f.kernel[ti].min),
        );
    }
    let work = |k: usize| crate::rows::ratio(f.cpu[k][1], f.cpu[k][0]);
    rows.push(Row {
        area: "tracker",
        what: format!(
            "preserve {}, {size}: 2 threads (disjoint halves) speed-up over 1; CPU time of 2 threads / 1: kho {:.2}, limit {:.2}, kernel {:.2}",
            f.name,
            work(0),
            work(1),
            work(2)
        ),
        ours: format!("{} vs {}", fmt_duration(f.kho[1].min), fmt_duration(f.kho[0].min)),
        limit: format!("the bitmap limit's own speed-up: {:.2}x", crate::rows::ratio(f.limit[0].min, f.limit[1].min)),
        value: crate::rows::ratio(f.kho[0].min, f.kho[1].min),
        unit: "x",
        target: if speedup_target { Target::AtLeast(1.7) } else { Target::None },
        kernel: Some((
            format!("{:.2}x speed-up", crate::rows::ratio(f.kernel[0].min, f.kernel[1].min)),
            crate::rows::ratio(f.kho[1].min, f.kernel[1].min),
        )),
    });
    rows
}

/// `keys` order-0 pages at random places over `span` bytes from `base`:
/// half of them in each half of the span, each half shuffled.
pub fn random_over(base: u64, span: u64, keys: u64) -> PreserveCase {
    let pages = span / PAGE_SIZE as u64;
    let mut rng = Rng::new(0x51ab_u64 ^ span);
    let half = pages / 2;
    let blocks = (0..keys)
        .map(|i| {
            let lo = if i < keys / 2 { 0 } else { half };
            (base + (lo + rng.below(half)) * PAGE_SIZE as u64, 0)
        })
        .collect();
    PreserveCase { name: "order-0 random", blocks }
}

/// `--once WHO SPAN_GIB KEYS`: one untimed preserve of `KEYS` random keys
/// over `SPAN_GIB` GiB by `WHO` (kho, kernel or limit).
pub fn once(args: &[String]) -> Result<(), String> {
    let [who, span, keys] = args else { return Err("three arguments".into()) };
    let span: u64 = span.parse().map_err(|_| format!("bad span {span:?}"))?;
    let keys: u64 = keys.parse().map_err(|_| format!("bad key count {keys:?}"))?;
    let span = span.checked_mul(1 << 30).filter(|&s| s > 0 && s <= 1 << 46).ok_or("span out of range")?;
    let walker = who.strip_prefix("walk-").map(|w| (w, false)).or_else(|| who.strip_prefix("full-").map(|w| (w, true)));
    if let Some((walker, full)) = walker {
        // KEYS memfd-like order-0 keys, or every page of SPAN_GIB.
        let w = Workload::MemfdRuns;
        let arena = Arena::new(if full { span } else { w.span(keys) }, MAX_ORDER);
        let (t, keys) = if full {
            let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker");
            let pages = span / PAGE_SIZE as u64;
            for p in 0..pages {
                t.preserve_folio(PhysAddr::new(arena.base + p * PAGE_SIZE as u64), Order::ZERO).expect("preserve");
            }
            (t, pages)
        } else {
            (preserve_workload(&arena, w, keys), keys)
        };
        let leaves = leaves(&arena.machine, t.tree_root());
        let d = match walker {
            "kho" => walk_blocks(&t),
            "scan" => scan_with_callback(&leaves),
            "kho-ranges" => walk_ranges(&t).0,
            "scan-ranges" => scan_ranges(&leaves).0,
            "import" => {
                drop(leaves);
                let data = t.finish().map_err(|e| format!("finish: {e}"))?;
                let start = Instant::now();
                let inc = Incoming::import(&arena.machine, &data).map_err(|e| format!("import: {e}"))?;
                let d = start.elapsed();
                println!("{who}: {keys} keys: {:.2} ns/key", d.as_nanos() as f64 / keys as f64);
                drop(inc);
                return Ok(());
            }
            _ => return Err(format!("unknown {who:?}")),
        };
        println!("{who}: {keys} keys: {:.2} ns/key", d.as_nanos() as f64 / keys as f64);
        drop(leaves);
        t.destroy();
        return Ok(());
    }
    let arena = Arena::new(span, MAX_ORDER);
    let case = random_over(arena.base, span, keys);
    // Plain loops on this thread: no thread CPU clock (valgrind cannot
    // run rustix's vDSO lookup).
    let start = Instant::now();
    match who.as_str() {
        "kho" => {
            let t = Tracker::new(&arena.machine, &[], TrackerOptions::default()).expect("tracker");
            for &(pa, _) in &case.blocks {
                t.preserve_folio(PhysAddr::new(pa), Order::ZERO).expect("preserve");
            }
            black_box(&t);
        }
        "kernel" => {
            let k = KernelTree::new();
            for &(pa, o) in &case.blocks {
                k.preserve(pa, o);
            }
            black_box(&k);
        }
        "limit" => {
            let bitmap = Bitmap::new(arena.base, span >> PAGE_SHIFT);
            for &(pa, _) in &case.blocks {
                bitmap.set(pa);
            }
            black_box(&bitmap);
        }
        _ => return Err(format!("unknown {who:?}")),
    }
    let d = start.elapsed();
    println!(
        "{who}: {} keys over {}: {:.2} ns/key",
        keys,
        crate::rows::fmt_bytes(span),
        d.as_nanos() as f64 / keys as f64
    );
    Ok(())
}

/// Random order-0 preserves of `keys` keys over each span of `spans`: kho,
/// the limit and the kernel, one and two threads.
pub fn random_span_figures(spans: &[u64], keys: u64, reps: Reps) -> Vec<PreserveFigures> {
    spans
        .iter()
        .map(|&span| {
            let arena = Arena::new(span, MAX_ORDER);
            let case = random_over(arena.base, span, keys.min(span / PAGE_SIZE as u64));
            preserve_figures(&arena.machine, arena.base, span, &case, reps)
        })
        .collect()
}

/// The main-table rows of the random-span figures.
pub fn random_span_rows(figs: &[PreserveFigures]) -> Vec<Row> {
    figs.iter()
        .flat_map(|f| {
            let mut rows = figure_rows(f, |t| if t == 1 { Target::AtMost(2.0) } else { Target::None }, true);
            for r in &mut rows {
                r.what = r.what.replacen("order-0 random, ", "order-0 random over ", 1);
            }
            rows
        })
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The per-key work of the callback walks: fold the block into a sum.
#[inline(always)]
fn per_key(sum: &mut u64, pa: u64, order: u32) {
    *sum = sum.wrapping_add(pa ^ u64::from(order));
}

/// One walk per block through the tracker.
fn walk_blocks<M: kho_abi::PhysMem + kho_abi::PageAlloc>(t: &Tracker<M>) -> Duration {
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
fn walk_ranges<M: kho_abi::PhysMem + kho_abi::PageAlloc>(t: &Tracker<M>) -> (Duration, u64) {
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

/// The limit of the per-block walk: a word scan of the same leaf pages
/// calling the same callback as kho's walk, through the same kind of
/// reference (`&mut dyn FnMut`, as a C scan would call a function
/// pointer). Each leaf's order and first PA are decoded once; a block is
/// then a shift and an add from them.
fn scan_with_callback(leaves: &[Leaf<'_>]) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    scan_blocks(leaves, &mut |pa, o| {
        per_key(&mut sum, pa.as_u64(), o.get());
        ControlFlow::Continue(())
    });
    black_box(sum);
    start.elapsed()
}

/// The limit of the range walk: a scan of the same leaves that emits the
/// same ranges (runs of set bits, merged across words and leaves) to the
/// same kind of callback. Leaves of one order only (a range is not merged
/// across orders); returns the time and the number of ranges.
fn scan_ranges(leaves: &[Leaf<'_>]) -> (Duration, u64) {
    let start = Instant::now();
    let (mut n, mut acc) = (0u64, 0u64);
    limits::scan_ranges(leaves, &mut |pa, len| {
        n += 1;
        acc = acc.wrapping_add(pa ^ len);
    });
    black_box(acc);
    (start.elapsed(), n)
}

/// The raw sum: every word of the same leaves added up (emits nothing).
fn scan_raw(leaves: &[Leaf<'_>]) -> Duration {
    let start = Instant::now();
    black_box(limits::sum_words(leaves));
    start.elapsed()
}

/// The kernel algorithm's tree holding the blocks of `t`.
fn kernel_copy<M: kho_abi::PhysMem + kho_abi::PageAlloc>(t: &Tracker<M>) -> KernelTree {
    let k = KernelTree::new();
    let _ = t
        .for_each_block::<()>(&mut |pa, o| {
            k.preserve(pa.as_u64(), o.get());
            ControlFlow::Continue(())
        })
        .expect("walk");
    k
}

/// The kernel's walk, a callback per block.
fn kernel_walk_blocks(k: &KernelTree) -> Duration {
    let start = Instant::now();
    let mut sum = 0u64;
    k.walk(&mut |pa, o| per_key(&mut sum, pa, o));
    black_box(sum);
    start.elapsed()
}

/// The kernel's walk with a callback that merges adjacent blocks into
/// ranges (what a caller of the kernel's walk does to get ranges).
fn kernel_walk_ranges(k: &KernelTree) -> Duration {
    let start = Instant::now();
    let (mut n, mut acc) = (0u64, 0u64);
    let (mut a, mut e) = (0u64, 0u64);
    k.walk(&mut |pa, o| {
        let end = pa + (1u64 << (PAGE_SHIFT + o));
        if pa == e && e != 0 {
            e = end;
        } else {
            if e != 0 {
                n += 1;
                acc = acc.wrapping_add(a ^ (e - a));
            }
            (a, e) = (pa, end);
        }
    });
    if e != 0 {
        n += 1;
        acc = acc.wrapping_add(a ^ (e - a));
    }
    black_box((n, acc));
    start.elapsed()
}

/// Walk figures of one tree: per block and as ranges, beside their limits
/// and the kernel algorithm.
#[derive(Clone, Debug, Default)]
pub struct WalkFigures {
    /// Blocks in the tree.
    pub blocks: u64,
    /// Ranges the range walk returns.
    pub ranges: u64,
    /// Whether the range-emitting scan returns as many ranges as kho (it
    /// does not merge across orders).
    pub ranges_single_order: bool,
    /// Tree pages.
    pub tree_pages: u64,
    /// kho's walk per block.
    pub blocks_kho: Stats,
    /// The word scan with the same callback.
    pub blocks_limit: Stats,
    /// The kernel algorithm's walk.
    pub blocks_kernel: Stats,
    /// kho's range walk.
    pub ranges_kho: Stats,
    /// The range-emitting scan.
    pub ranges_limit: Stats,
    /// The raw word sum.
    pub ranges_raw: Stats,
    /// The kernel's walk with a merging callback.
    pub ranges_kernel: Stats,
    /// `Incoming::import` of the handover holding the tree.
    pub import: Stats,
}

impl WalkFigures {
    /// Nanoseconds per block of `d`.
    pub fn ns(&self, d: Duration) -> f64 {
        d.as_nanos() as f64 / self.blocks as f64
    }
}

/// Measures the walks of `t` beside the limits and the kernel tree `k`
/// holding the same blocks (no import).
pub fn walk_stats(m: &Machine, t: &Tracker<&Machine>, k: &KernelTree, reps: Reps) -> WalkFigures {
    let leaves = leaves(m, t.tree_root());
    let mut f = WalkFigures { tree_pages: t.tree_pages().expect("tree pages"), ..WalkFigures::default() };
    let _ = t.for_each_block::<()>(&mut |_, _| {
        f.blocks += 1;
        ControlFlow::Continue(())
    });
    f.ranges = walk_ranges(t).1;
    f.ranges_single_order = scan_ranges(&leaves).1 == f.ranges;
    let st = measure_all(
        reps,
        &mut [&mut || walk_blocks(t), &mut || scan_with_callback(&leaves), &mut || kernel_walk_blocks(k)],
    );
    (f.blocks_kho, f.blocks_limit, f.blocks_kernel) = (st[0], st[1], st[2]);
    let st = measure_all(
        reps,
        &mut [&mut || walk_ranges(t).0, &mut || scan_ranges(&leaves).0, &mut || scan_raw(&leaves), &mut || {
            kernel_walk_ranges(k)
        }],
    );
    (f.ranges_kho, f.ranges_limit, f.ranges_raw, f.ranges_kernel) = (st[0], st[1], st[2], st[3]);
    f
}

/// Measures the walks of `t` (whose blocks are all of one order), then
/// hands it over and measures `Incoming::import` of it.
fn walk_figures(m: &Machine, t: Tracker<&Machine>, reps: Reps) -> WalkFigures {
    let k = kernel_copy(&t);
    let mut f = walk_stats(m, &t, &k, reps);
    assert!(f.ranges_single_order, "the range scan emits kho's ranges");
    drop(k);
    let data = t.finish().expect("finish");
    f.import = crate::timing::measure_stats(reps, || {
        let start = Instant::now();
        let inc = Incoming::import(m, &data).expect("import");
        let d = start.elapsed();
        // Import claims the root FDT's page: preserve it again so that
        // every run imports the same tree.
        let root = inc.tree_root();
        drop(inc);
        let fdt = RadixKey::encode(PhysAddr::new(data.fdt_addr), Order::ZERO).expect("key");
        RadixTree::from_root(root).insert(m, fdt).expect("re-preserve the FDT page");
        d
    });
    f
}

/// The walk rows of `f`, named by `what`.
pub fn walk_figure_rows(what: &str, f: &WalkFigures) -> Vec<Row> {
    let ns = |s: &Stats| f.ns(s.min);
    vec![
        Row::ratio(
            "tracker",
            format!("walk per block (callback per key), {what} ({:.2} ns/block)", ns(&f.blocks_kho)),
            f.blocks_kho.min,
            &format!("word scan of the same leaves, same callback ({:.2} ns/block)", ns(&f.blocks_limit)),
            f.blocks_limit.min,
        )
        .with_target(Target::AtMost(1.5))
        .with_kernel(f.blocks_kho.min, f.blocks_kernel.min),
        Row::ratio(
            "tracker",
            format!("walk as coalesced ranges, {what} ({} ranges)", group(f.ranges.into())),
            f.ranges_kho.min,
            &format!(
                "a scan of the same leaves emitting the same ranges (raw word sum: {})",
                fmt_duration(f.ranges_raw.min)
            ),
            f.ranges_limit.min,
        )
        .with_target(Target::AtMost(1.5))
        .with_kernel(f.ranges_kho.min, f.ranges_kernel.min),
        Row::ratio(
            "tracker",
            format!(
                "Incoming::import (every check) of {what}, {:.2} ns/block, beside the range walk it guards",
                ns(&f.import)
            ),
            f.import.min,
            "walk as coalesced ranges",
            f.ranges_kho.min,
        )
        .with_target(Target::AtMost(2.0)),
    ]
}

/// Our figures for the kernel's measured case.
#[derive(Clone, Debug)]
pub struct KernelCase {
    /// Keys preserved.
    pub keys: u64,
    /// Tree pages.
    pub tree_pages: u64,
    /// Fastest per-block walk (callback per key).
    pub walk_blocks: Duration,
    /// Fastest range walk.
    pub walk_ranges: Duration,
    /// Ranges the range walk returns.
    pub ranges: u64,
    /// Every figure of the case.
    pub figures: WalkFigures,
}

/// A tracker of `arena` holding `blocks` blocks of workload `w`.
pub fn preserve_workload(arena: &Arena, w: Workload, blocks: u64) -> Tracker<&Machine> {
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
    let f = walk_figures(&arena.machine, t, reps);
    let case = KernelCase {
        keys: f.blocks,
        tree_pages: f.tree_pages,
        walk_blocks: f.blocks_kho.min,
        walk_ranges: f.ranges_kho.min,
        ranges: f.ranges,
        figures: f.clone(),
    };
    (walk_figure_rows("the kernel's 2 GiB memfd case, 526,386 order-0 keys", &f), case)
}

/// The memfd-like workload over `bytes` of preserved memory: walks and
/// import.
pub fn memfd_walk_figures(bytes: u64, reps: Reps) -> WalkFigures {
    let w = Workload::MemfdRuns;
    let keys = bytes / PAGE_SIZE as u64;
    let arena = Arena::new(w.span(keys), MAX_ORDER);
    let t = preserve_workload(&arena, w, keys);
    walk_figures(&arena.machine, t, reps)
}

/// A fully preserved GiB: the number of ranges it comes back as (target 1),
/// and its walks beside their limits and the kernel.
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
    let f = walk_figures(&arena.machine, t, reps);
    let mut rows = vec![Row {
        area: "tracker",
        what: "a fully preserved GiB (262,144 order-0 pages) comes back as one range".into(),
        ours: format!("{inside} range{}", plural(inside as usize)),
        limit: "one range".into(),
        value: inside as f64,
        unit: "",
        target: Target::AtMost(1.0),
        kernel: None,
    }];
    rows.extend(walk_figure_rows("a fully preserved GiB", &f));
    rows
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
        let bits: u32 = leaves
            .iter()
            .flat_map(|l| l.1.iter())
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed).count_ones())
            .sum();
        assert_eq!(u64::from(bits), 5001);
        let runs = w.runs(5000).count() as u64;
        // The FDT page lies outside the region: one range more.
        assert_eq!(walk_ranges(&t).1, runs + 1);
        t.destroy();
    }
}
