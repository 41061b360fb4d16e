//! The report: `report.md` and the SVG plots.

use std::fmt::Write;
use std::time::Duration;

use crate::formulas::RANGE_ENTRY_BYTES;
use crate::growth::{Point, SPARSE_MAX};
use crate::primitives::ArrayFigures;
use crate::rows::{Row, fmt_bytes, fmt_duration, fmt_num, fmt_percent, group};
use crate::svg::{Axis, Plot, Series, Unit};
use crate::sysinfo::MachineInfo;
use crate::timing::Stats;
use crate::tracker::{KERNEL_KEYS, KERNEL_TREE_PAGES, KERNEL_WALK, KernelCase, PreserveFigures, WalkFigures};
use crate::workloads::Workload;

/// Everything a run measured, and where.
pub struct Results {
    /// The machine.
    pub machine: MachineInfo,
    /// The commit.
    pub commit: String,
    /// When the run started.
    pub date: String,
    /// The exact command.
    pub command: String,
    /// Quick mode.
    pub quick: bool,
    /// Wall time of the measurements.
    pub wall: Duration,
    /// The main table.
    pub rows: Vec<Row>,
    /// The kernel's measured case.
    pub kernel: KernelCase,
    /// Random preserves over growing spans.
    pub random: Vec<PreserveFigures>,
    /// Walks and import of the larger memfd-like case.
    pub import: WalkFigures,
    /// Array details.
    pub arrays: Vec<ArrayFigures>,
    /// Growth points.
    pub growth: Vec<Point>,
    /// Preserved size of the metadata table.
    pub metadata_size: u64,
}

const GIB: f64 = (1u64 << 30) as f64;

/// A series of ns per block against preserved GiB, with the spread.
fn ns_series(name: &str, pts: &[(f64, f64, Option<Stats>)]) -> Series {
    let mut s = Series::new(name, Vec::new());
    for &(x, blocks, st) in pts {
        if let Some(st) = st {
            let ns = |d: Duration| d.as_nanos() as f64 / blocks;
            s.points.push((x, ns(st.min)));
            s.spread.push((x, ns(st.min), ns(st.max)));
        }
    }
    s
}

/// The SVG files of a report: `(file name, content)`.
pub fn plots(r: &Results) -> Vec<(String, String)> {
    let x = Axis { label: "preserved memory (log scale)".into(), unit: Unit::GiB, log: true };
    let ns_axis = Axis { label: "ns per block (log scale)".into(), unit: Unit::Nanoseconds, log: true };
    let mut out = Vec::new();
    for w in Workload::ALL {
        let pts: Vec<&Point> = r.growth.iter().filter(|p| p.workload == w).collect();
        let series = |name: &str, f: &dyn Fn(&Point) -> Option<Stats>| {
            let v: Vec<(f64, f64, Option<Stats>)> =
                pts.iter().map(|p| (p.preserved as f64 / GIB, p.blocks as f64, f(p))).collect();
            ns_series(name, &v)
        };
        out.push((
            format!("preserve-{}.svg", w.slug()),
            Plot {
                title: format!("Preserve every block, one thread: {}", w.name()),
                x: x.clone(),
                y: ns_axis.clone(),
                series: vec![
                    series("kho", &|p| Some(p.stats[0])),
                    series("kernel algorithm", &|p| Some(p.kernel[0])),
                    series("limit: atomic bit-set, flat bitmap", &|p| p.limit[0]),
                ],
            },
        ));
        out.push((
            format!("walk-{}.svg", w.slug()),
            Plot {
                title: format!("Walks: {}", w.name()),
                x: x.clone(),
                y: ns_axis.clone(),
                series: vec![
                    series("kho, per block", &|p| Some(p.stats[1])),
                    series("kernel algorithm, per block", &|p| Some(p.kernel[1])),
                    series("limit: word scan, same callback", &|p| p.limit[1]),
                    series("kho, as ranges", &|p| Some(p.stats[2])),
                    series("kernel walk + merging callback", &|p| Some(p.kernel[2])),
                    series("limit: range-emitting scan", &|p| p.limit[2]),
                ],
            },
        ));
    }
    // The overview plots (the names CI checks): the memfd-like workload,
    // whose 2 GiB point is the kernel's measured case.
    let headline = Workload::MemfdRuns;
    for (file, title, keep) in [
        ("preserve.svg", "Preserve every block, one thread", 0..3),
        ("walk-blocks.svg", "Walk, one callback per block", 0..3),
        ("walk-ranges.svg", "Walk as coalesced ranges", 3..6),
    ] {
        let slug = if file == "preserve.svg" { "preserve" } else { "walk" };
        let Some(plot) = out.iter().find(|(n, _)| *n == format!("{slug}-{}.svg", headline.slug())).map(|p| p.1.clone())
        else {
            continue;
        };
        let series = plot.series.get(keep).map(<[Series]>::to_vec).unwrap_or_default();
        out.push((
            file.to_string(),
            Plot {
                title: format!("{title}: {} (kho, the kernel's algorithm, the limit)", headline.name()),
                series,
                ..plot
            },
        ));
    }
    let rx = Axis { label: "span of the random keys (log scale)".into(), unit: Unit::GiB, log: true };
    let rs = |name: &str, f: &dyn Fn(&PreserveFigures) -> Stats| {
        let v: Vec<(f64, f64, Option<Stats>)> =
            r.random.iter().map(|p| (p.span as f64 / GIB, p.blocks as f64, Some(f(p)))).collect();
        ns_series(name, &v)
    };
    out.push((
        "preserve-random.svg".to_string(),
        Plot {
            title: "Random order-0 preserves over a growing span".into(),
            x: rx,
            y: ns_axis.clone(),
            series: vec![
                rs("kho, 1 thread", &|p| p.kho[0]),
                rs("kernel algorithm, 1 thread", &|p| p.kernel[0]),
                rs("limit, 1 thread", &|p| p.limit[0]),
                rs("kho, 2 threads (wall time)", &|p| p.kho[1]),
                rs("kernel algorithm, 2 threads", &|p| p.kernel[1]),
                rs("limit, 2 threads", &|p| p.limit[1]),
            ],
        },
    ));
    for w in Workload::ALL {
        let pts: Vec<&Point> = r.growth.iter().filter(|p| p.workload == w).collect();
        let series = |name: &str, f: &dyn Fn(&Point) -> u64| {
            Series::new(name, pts.iter().map(|p| (p.preserved as f64 / GIB, f(p) as f64)).collect())
        };
        out.push((
            format!("metadata-{}.svg", w.slug()),
            Plot {
                title: format!("Metadata, {}", w.name()),
                x: x.clone(),
                y: Axis { label: "metadata (log scale)".into(), unit: Unit::Bytes, log: true },
                series: vec![
                    series("radix-v1 (measured)", &|p| p.radix_bytes),
                    series("kho-v1 bitmaps (formula)", &|p| p.costs.v1_bytes()),
                    series("range list (formula)", &|p| p.costs.range_list_bytes()),
                ],
            },
        ));
    }
    out.into_iter().map(|(name, plot)| (name, plot.to_svg())).collect()
}

fn gib(bytes: u64) -> String {
    fmt_bytes(bytes)
}

fn main_table(o: &mut String, rows: &[Row]) {
    let _ = writeln!(
        o,
        "| area | measurement | kho | limit | kho / limit (or value) | target | met | kernel algorithm | kho / kernel |"
    );
    let _ = writeln!(o, "|---|---|---:|---|---:|---:|:---:|---:|---:|");
    for r in rows {
        let (k, kr) = r.kernel_cells();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.area,
            r.what,
            r.ours,
            r.limit,
            r.value_cell(),
            r.target_cell(),
            r.met_cell(),
            k,
            kr
        );
    }
}

/// `report.md`.
pub fn markdown(r: &Results, svgs: &[(String, String)]) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "# kho benchmark report\n");
    let _ = writeln!(
        o,
        "Every figure below was measured in one run of `kho-bench` on the machine named here, and every \
         ratio divides two figures of this run: kho's time by its limit's (a plain operation on the same \
         memory with no structure around it, as the design's \"Performance targets\" define it). A ratio \
         below 1 means faster than the limit.\n"
    );
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| CPU | {} |", m.cpu);
    let _ = writeln!(o, "| cores | {} |", m.cores);
    let _ = writeln!(o, "| RAM | {} |", m.ram.map_or("unknown".into(), fmt_bytes));
    let _ = writeln!(o, "| kernel | Linux {} |", m.kernel);
    let load = |l: Option<f64>| l.map_or("unknown".into(), |l| format!("{l:.2}"));
    let _ = writeln!(o, "| load average (1 min), start / end | {} / {} |", load(m.load.0), load(m.load.1));
    let _ = writeln!(o, "| commit | `{}` |", r.commit);
    let _ = writeln!(o, "| date | {} |", r.date);
    let _ = writeln!(
        o,
        "| mode | {} |",
        if r.quick {
            "quick (small sizes, few repetitions, growth to 16 GiB): a smoke test, not for comparison"
        } else {
            "full"
        }
    );
    let _ = writeln!(o, "| wall time | {:.0} s |", r.wall.as_secs_f64());
    let _ = writeln!(o, "| reproduce | `{}` |\n", r.command);
    if m.load.0.is_some_and(|l| l >= 0.5) {
        let _ = writeln!(
            o,
            "**Other processes were using the CPU when this run started** (load average {}): the \
             figures, the two-thread ones above all, are less reliable than on an idle machine.\n",
            load(m.load.0)
        );
    }

    let _ = writeln!(o, "## Summary\n");
    main_table(&mut o, &r.rows);
    let missed: Vec<&Row> = r.rows.iter().filter(|row| row.target.met(row.value) == Some(false)).collect();
    if missed.is_empty() {
        let _ = writeln!(o, "\nEvery target with a figure in this run is met.\n");
    } else {
        let _ = writeln!(o, "\nTargets missed in this run:\n");
        for row in missed {
            let _ = writeln!(o, "- {}: {} (target {})", row.what, row.value_cell(), row.target_cell());
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "Targets are the design's; \"—\" marks a figure with no target, shown for orientation. Times are \
         the fastest of repeated runs after a warm-up for the tracker rows (on a shared machine other \
         processes only ever add time), medians for the others; each measurement and its limit run \
         alternately. The \
         two-thread rows only mean something on a machine with two idle cores.\n"
    );

    kernel_section(&mut o, &r.kernel);
    random_section(&mut o, &r.random);
    let big = format!("memfd-like, {}", fmt_bytes(r.import.blocks.saturating_sub(1) * kho_abi::PAGE_SIZE as u64));
    import_section(&mut o, &[("the kernel's 2 GiB memfd case", &r.kernel.figures), (&big, &r.import)]);
    metadata_section(&mut o, r);
    growth_section(&mut o, r, svgs);
    array_section(&mut o, &r.arrays);

    let _ = writeln!(o, "## How it is measured\n");
    let _ = writeln!(
        o,
        "- In process, with `std::time::Instant` around the measured work only (set-up, allocation of \
         the limit's bitmap and tear-down stay outside); warm-up runs first, then the median of several \
         runs.\n\
         - The tracker runs on kho-sim: RAM is a sparse memfd, so machines of several TiB cost only the \
         pages actually written (the tracker's own tree pages); preserved blocks are never touched. Tree \
         pages come from the simulator's page allocator, as a kernel's would from its buddy allocator.\n\
         - Every tracker also preserves its root FDT page, so each tree holds one key more than the \
         workload; the formulas cost exactly the blocks the tree holds, so the formats compare over the \
         same set.\n\
         - Block sets and arrays preserve through kho-sim's `ModelTracker`; vmalloc areas through \
         kho-track, against kho-track."
    );
    o
}

fn kernel_section(o: &mut String, k: &KernelCase) {
    let _ = writeln!(o, "## The kernel's measured case: 2 GiB of order-0 pages\n");
    let per_key = |d: Duration, n: u64| d.as_nanos() as f64 / n as f64;
    let _ = writeln!(
        o,
        "The kernel's figure is from a QEMU guest (64 GiB, two 1 GiB memfds) walking its tree at boot with \
         its own per-key work (reserving each block and marking its first page); ours is this machine \
         walking the same number of order-0 keys, laid out as the memfd-runs workload, with a callback \
         that folds each block into a sum. Different machines and different per-key work: orientation, \
         not a ratio.\n"
    );
    let _ = writeln!(o, "| | kernel (reported) | kho (this run) |\n|---|---:|---:|");
    let _ =
        writeln!(o, "| keys | {} | {} (+1: the root FDT page) |", group(KERNEL_KEYS.into()), group(KERNEL_KEYS.into()));
    let _ = writeln!(
        o,
        "| tree pages | {} ({}) | {} ({}) |",
        KERNEL_TREE_PAGES,
        fmt_bytes(KERNEL_TREE_PAGES * 4096),
        k.tree_pages,
        fmt_bytes(k.tree_pages * kho_abi::PAGE_SIZE as u64)
    );
    let _ = writeln!(
        o,
        "| walk, one callback per key | {} ({:.1} ns/key) | {} ({:.1} ns/key) |",
        fmt_duration(KERNEL_WALK),
        per_key(KERNEL_WALK, KERNEL_KEYS),
        fmt_duration(k.walk_blocks),
        per_key(k.walk_blocks, k.keys)
    );
    let _ = writeln!(
        o,
        "| walk per key, the kernel's algorithm on this machine | {} ({:.2} ns/key) | kho / it: {:.2}x |",
        fmt_duration(k.figures.blocks_kernel.min),
        per_key(k.figures.blocks_kernel.min, k.keys),
        crate::rows::ratio(k.walk_blocks, k.figures.blocks_kernel.min)
    );
    let _ = writeln!(
        o,
        "| walk as coalesced ranges | — (hands over {} blocks one by one) | {} ({:.1} ns/key), {} ranges |\n",
        group(KERNEL_KEYS.into()),
        fmt_duration(k.walk_ranges),
        per_key(k.walk_ranges, k.keys),
        group(k.ranges.into())
    );
}

fn metadata_section(o: &mut String, r: &Results) {
    let size = r.metadata_size;
    let _ = writeln!(o, "## Metadata cost at {} of preserved memory\n", gib(size));
    let _ = writeln!(
        o,
        "| workload | blocks | radix-v1, measured | % | kho-v1 bitmaps, formula | % | range list, formula | % | \
         list entries |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in r.growth.iter().filter(|p| p.preserved == size) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.workload.name(),
            group(p.blocks.into()),
            fmt_bytes(p.radix_bytes),
            fmt_percent(p.radix_bytes, p.preserved),
            fmt_bytes(p.costs.v1_bytes()),
            fmt_percent(p.costs.v1_bytes(), p.preserved),
            fmt_bytes(p.costs.range_list_bytes()),
            fmt_percent(p.costs.range_list_bytes(), p.preserved),
            group(p.costs.ranges().into()),
        );
    }
    let _ = writeln!(o, "\nWorkloads:\n");
    for w in Workload::ALL {
        let _ = writeln!(o, "- **{}**: {}.", w.name(), w.description());
    }
    let _ = writeln!(
        o,
        "\nFormats:\n\n\
         - **radix-v1** (kho, the kernel's `kho-v2`..`kho-v4` tree): the tree pages the tracker allocated, \
         counted by walking the tree.\n\
         - **kho-v1 bitmaps** (kernels v6.16 to v7.0, ABI.md section 6), by formula: one bitmap page of \
         {} bits per order and per aligned window of that many blocks holding at least one block, plus \
         chunk pages of {} bitmap references each, one order per chunk: (bitmaps + chunks) x {} bytes.\n\
         - **range list** (a sorted list of `(start, size, info)` u64 triples, as proposed for a maple-tree \
         tracker), by formula: one {}-byte entry per maximal run of physically contiguous blocks of the \
         same order (the order lives in `info`); bytes of the entries, not rounded up to pages, no index \
         or node overhead.\n",
        kho_abi::GEOMETRY.bitmap_len,
        kho_abi::GEOMETRY.v1_chunk_entries,
        kho_abi::PAGE_SIZE,
        RANGE_ENTRY_BYTES
    );
}

fn growth_section(o: &mut String, r: &Results, svgs: &[(String, String)]) {
    let max = r.growth.iter().map(|p| p.preserved).max().unwrap_or(0);
    let _ = writeln!(o, "## Growth: 1 GiB to {} of preserved memory\n", gib(max));
    let _ = writeln!(
        o,
        "Each point is a fresh simulated machine with the workload preserved on it by one thread. The \
         sparse workload needs 512 times its preserved memory as RAM and stops at {} preserved ({} of \
         simulated RAM). Walk times are the walk alone (a trivial callback).\n",
        gib(SPARSE_MAX),
        gib(SPARSE_MAX * 512)
    );
    for (name, _) in svgs {
        let _ = writeln!(o, "![{name}]({name})\n");
    }
    let _ = writeln!(
        o,
        "Every point: one warm-up run, then at least 3 timed runs of kho, the kernel algorithm and the \
         limits in turn; figures are the fastest run in ns per block, with the spread (max - min) / min of \
         kho's runs. Bars in the plots span min to max. The preserve limit is left out where its flat \
         bitmap would exceed {}.\n",
        fmt_bytes(crate::growth::LIMIT_BITMAP_MAX)
    );
    let _ = writeln!(
        o,
        "| workload | preserved | blocks | radix-v1 | kho-v1 | range list | runs | preserve kho / kernel / limit | \
         spread | walk per block kho / kernel / limit | walk ranges kho / kernel / limit | ranges |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &r.growth {
        let ns = |s: Option<Stats>| s.map_or("—".to_string(), |s| format!("{:.2}", p.ns(s.min)));
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} | {} / {} / {} | {:.0} % | {} / {} / {} | {} / {} / {} | {} |",
            p.workload.name(),
            gib(p.preserved),
            group(p.blocks.into()),
            fmt_bytes(p.radix_bytes),
            fmt_percent(p.radix_bytes, p.preserved),
            fmt_bytes(p.costs.v1_bytes()),
            fmt_percent(p.costs.v1_bytes(), p.preserved),
            fmt_bytes(p.costs.range_list_bytes()),
            fmt_percent(p.costs.range_list_bytes(), p.preserved),
            p.runs,
            ns(Some(p.stats[0])),
            ns(Some(p.kernel[0])),
            ns(p.limit[0]),
            100.0 * p.stats[0].spread(),
            ns(Some(p.stats[1])),
            ns(Some(p.kernel[1])),
            ns(p.limit[1]),
            ns(Some(p.stats[2])),
            ns(Some(p.kernel[2])),
            ns(p.limit[2]),
            group(p.ranges.into()),
        );
    }
    let _ = writeln!(o);
}

fn random_section(o: &mut String, figs: &[PreserveFigures]) {
    let _ = writeln!(o, "## Random order-0 preserves over growing spans\n");
    let _ = writeln!(
        o,
        "Keys drawn uniformly at random over the span, half of them in each half (the two threads take \
         one half each). ns per key, fastest of the runs; CPU is the CPU time of all threads summed over one \
         thread's (1.00: the same work, however the wall time went).\n"
    );
    let _ = writeln!(
        o,
        "| span | keys | kho 1 thread | kernel 1 thread | limit 1 thread | kho / limit | kho / kernel | kho 2 threads | \
         speed-up kho / kernel / limit | CPU 2 / 1 kho / kernel / limit |"
    );
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in figs {
        let cpu = |k: usize| crate::rows::ratio(f.cpu[k][1], f.cpu[k][0]);
        let up = |s: &[Stats; 2]| crate::rows::ratio(s[0].min, s[1].min);
        let _ = writeln!(
            o,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2}x | {:.2} | {:.2}x / {:.2}x / {:.2}x | {:.2} / {:.2} / {:.2} |",
            fmt_bytes(f.span),
            group(f.blocks.into()),
            f.ns(f.kho[0].min),
            f.ns(f.kernel[0].min),
            f.ns(f.limit[0].min),
            crate::rows::ratio(f.kho[0].min, f.limit[0].min),
            crate::rows::ratio(f.kho[0].min, f.kernel[0].min),
            f.ns(f.kho[1].min),
            up(&f.kho),
            up(&f.kernel),
            up(&f.limit),
            cpu(0),
            cpu(2),
            cpu(1),
        );
    }
    let _ = writeln!(o, "\n![preserve-random.svg](preserve-random.svg)\n");
}

fn import_section(o: &mut String, cases: &[(&str, &WalkFigures)]) {
    let _ = writeln!(o, "## Import: the next kernel's cost\n");
    let _ = writeln!(
        o,
        "`Incoming::import` runs every check of an untrusted tree (each node once, alignment, RAM, \
         scratch, key width, each run of blocks, blocks disjoint, no tree page inside a preserved block) \
         and then the next kernel walks the ranges. ns per block, fastest of the runs. Target: import at most 2x the \
         range walk it guards.\n"
    );
    let _ = writeln!(
        o,
        "| case | blocks | tree pages | import | range walk | import + range walk | walk per block | import / range walk |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, f) in cases {
        let ns = |d: Duration| f.ns(d);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            name,
            group(f.blocks.into()),
            f.tree_pages,
            ns(f.import.min),
            ns(f.ranges_kho.min),
            ns(f.import.min + f.ranges_kho.min),
            ns(f.blocks_kho.min),
            crate::rows::ratio(f.import.min, f.ranges_kho.min),
        );
    }
    let _ = writeln!(o);
}

fn array_section(o: &mut String, arrays: &[ArrayFigures]) {
    let _ = writeln!(o, "## Arrays (array-v1) beside the kernel RFC's layout\n");
    let _ = writeln!(
        o,
        "Space: whole pages of the array per entry, beside the RFC's layout by formula (a 4 KiB page \
         `{{next, startpos, entries[510]}}` covers 510 consecutive slots from its first entry; cost = pages \
         x 4096). Writes: nanoseconds per entry, beside pushing the same `(position, entry)` pairs to a \
         `Vec`.\n"
    );
    let _ = writeln!(
        o,
        "| pattern | entries | array-v1 B/entry | RFC B/entry | RFC / array-v1 | push ns/entry | extend_raw ns/entry \
         | Vec ns/entry |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for a in arrays {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            a.name,
            group(a.entries.into()),
            fmt_num(a.per_entry()),
            fmt_num(a.rfc_per_entry()),
            fmt_num(a.rfc_per_entry() / a.per_entry()),
            a.ns_per_entry(a.push),
            a.extend_raw.map_or("—".into(), |d| a.ns_per_entry(d)),
            a.ns_per_entry(a.vec_push),
        );
    }
    let _ = writeln!(o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formulas::MapCosts;
    use crate::rows::Target;

    fn results() -> Results {
        let ms = Duration::from_millis;
        let mut growth = Vec::new();
        for w in Workload::ALL {
            for gib in [1u64, 4, 16] {
                let mut costs = MapCosts::default();
                for i in 0..gib * 4 {
                    costs.add(i << 30, 0);
                }
                let st = |d: Duration| Stats { median: d, min: d / 2, max: d * 2 };
                growth.push(Point {
                    workload: w,
                    preserved: gib << 30,
                    blocks: costs.blocks(),
                    ranges: costs.ranges(),
                    radix_bytes: gib * 8192,
                    costs,
                    stats: [st(ms(gib)), st(ms(gib) / 2), st(ms(gib) / 4)],
                    kernel: [st(ms(gib) * 2), st(ms(gib)), st(ms(gib))],
                    limit: [None, Some(st(ms(gib) / 4)), Some(st(ms(gib) / 8))],
                    runs: 3,
                });
            }
        }
        Results {
            machine: MachineInfo {
                cpu: "Test CPU".into(),
                cores: 2,
                ram: Some(8 << 30),
                kernel: "6.1.0".into(),
                load: (Some(1.5), Some(0.1)),
            },
            commit: "0123abcd-dirty".into(),
            date: "2026-01-01 00:00:00 UTC".into(),
            command: "cargo run --release -p kho-bench -- --quick".into(),
            quick: true,
            wall: Duration::from_secs(12),
            rows: vec![
                Row::ratio("tracker", "preserve", ms(3), "bitmap", ms(1)).with_target(Target::AtMost(2.0)),
                Row::ratio("block sets", "extend", ms(1), "memcpy", ms(1)).with_target(Target::AtMost(2.0)),
            ],
            kernel: KernelCase {
                keys: KERNEL_KEYS + 1,
                tree_pages: 25,
                walk_blocks: ms(2),
                walk_ranges: Duration::from_micros(70),
                ranges: 2095,
                figures: WalkFigures { blocks: KERNEL_KEYS + 1, ..WalkFigures::default() },
            },
            random: {
                let f = PreserveFigures {
                    name: "order-0 random",
                    span: 64 << 30,
                    blocks: 1000,
                    kho: [
                        Stats { median: ms(2), min: ms(2), max: ms(2) },
                        Stats { median: ms(1), min: ms(1), max: ms(1) },
                    ],
                    limit: [Stats { median: ms(1), min: ms(1), max: ms(1) }; 2],
                    kernel: [Stats { median: ms(3), min: ms(3), max: ms(3) }; 2],
                    cpu: [[ms(2); 2]; 3],
                };
                vec![PreserveFigures { span: 1 << 30, ..f.clone() }, f]
            },
            import: WalkFigures { blocks: 1001, ..WalkFigures::default() },
            arrays: vec![],
            growth,
            metadata_size: 16 << 30,
        }
    }

    #[test]
    fn report_states_machine_commit_and_command() {
        let r = results();
        let svgs = plots(&r);
        let md = markdown(&r, &svgs);
        for needle in [
            "| CPU | Test CPU |",
            "| cores | 2 |",
            "| RAM | 8 GiB |",
            "| kernel | Linux 6.1.0 |",
            "| commit | `0123abcd-dirty` |",
            "| date | 2026-01-01 00:00:00 UTC |",
            "`cargo run --release -p kho-bench -- --quick`",
            "Other processes were using the CPU",
            "## The kernel's measured case",
            "| keys | 526,386 |",
            "## Metadata cost at 16 GiB",
            "## Growth: 1 GiB to 16 GiB",
        ] {
            assert!(md.contains(needle), "missing {needle:?}");
        }
        // The main table: a header, a separator and one line per row; the
        // missed target is listed and marked.
        let table: Vec<&str> =
            md.lines().skip_while(|l| !l.starts_with("| area |")).take_while(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 4);
        assert!(table[2].contains("3x") && table[2].contains("**no**"));
        assert!(table[3].ends_with("| yes | — | — |"));
        for needle in
            ["## Random order-0 preserves", "| 64 GiB | 1,000 | 2000.00 |", "## Import", "preserve-random.svg"]
        {
            assert!(md.contains(needle), "missing {needle:?}");
        }
        assert!(md.contains("Targets missed in this run"));
        // The metadata table has one line per workload at 16 GiB.
        let meta =
            md.lines().skip_while(|l| !l.starts_with("| workload | blocks |")).take_while(|l| l.starts_with('|'));
        assert_eq!(meta.count(), 2 + Workload::ALL.len());
        // Every plot is linked and parses, with its axis labels.
        assert_eq!(svgs.len(), 4 + 3 * Workload::ALL.len());
        for name in ["preserve.svg", "walk-blocks.svg", "walk-ranges.svg", "preserve-random.svg"] {
            assert!(svgs.iter().any(|(n, _)| n == name), "{name}");
        }
        for (name, svg) in &svgs {
            assert!(md.contains(&format!("]({name})")), "{name} not linked");
            let doc = roxmltree::Document::parse(svg).expect("SVG parses");
            let labels: Vec<&str> = doc
                .descendants()
                .filter(|n| matches!(n.attribute("class"), Some("xlabel" | "ylabel")))
                .filter_map(|n| n.text())
                .collect();
            assert_eq!(labels.len(), 2, "{name}");
            assert!(labels[0].contains("preserved memory") || labels[0].contains("span"), "{name}: {labels:?}");
            assert!(labels[1].contains("metadata") || labels[1].contains("ns per block"), "{name}: {labels:?}");
            // No axis label names a unit its ticks do not use.
            assert!(!labels.iter().any(|l| l.contains("seconds") || l.contains("bytes")), "{name}: {labels:?}");
            assert!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count() >= 2, "{name}");
            if (name.starts_with("preserve") || name.starts_with("walk")) && name != "preserve-random.svg" {
                // Kho, the kernel and (where measured) the limit, with spread bars.
                assert!(doc.descendants().any(|n| n.attribute("class") == Some("spread")), "{name}");
            }
        }
    }
}
