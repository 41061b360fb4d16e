//! `kho-bench`: runs every kho benchmark beside its limit, in one process,
//! and writes a report (`report.md` and SVG plots) of the ratios measured in
//! that run on this machine.
//!
//! ```sh
//! cargo run --release -p kho-bench -- --out target/kho-report
//! cargo run --release -p kho-bench -- --quick --out target/kho-report-quick
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kho_bench::timing::{Progress, Reps};
use kho_bench::tracker::{self, PreserveKind};
use kho_bench::workloads::Workload;
use kho_bench::{growth, primitives, report, rows, sysinfo};

/// Sizes and repetitions of a run.
struct Plan {
    quick: bool,
    tracker_pages: u64,
    tracker_reps: Reps,
    walk_reps: Reps,
    block_bytes: usize,
    block_reps: Reps,
    vmalloc_pages: usize,
    vmalloc_reps: Reps,
    array_entries: u64,
    array_reps: Reps,
    growth_sizes: Vec<u64>,
    metadata_size: u64,
    random_spans: Vec<u64>,
    random_keys: u64,
    random_reps: Reps,
    import_size: u64,
    import_reps: Reps,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        const GIB: u64 = 1 << 30;
        let page = kho_abi::PAGE_SIZE as u64;
        let r = |warmup, runs| Reps { warmup, runs };
        if quick {
            Plan {
                quick,
                tracker_pages: (256 << 20) / page,
                tracker_reps: r(1, 5),
                walk_reps: r(1, 7),
                block_bytes: 1 << 20,
                block_reps: r(1, 7),
                vmalloc_pages: ((256 << 20) / page) as usize,
                vmalloc_reps: r(1, 3),
                array_entries: 100_000,
                array_reps: r(1, 3),
                growth_sizes: vec![GIB, 4 * GIB, 16 * GIB],
                metadata_size: 16 * GIB,
                random_spans: vec![GIB, 4 * GIB, 16 * GIB, 64 * GIB],
                random_keys: 1 << 17,
                random_reps: r(1, 3),
                import_size: 4 * GIB,
                import_reps: r(1, 3),
            }
        } else {
            Plan {
                quick,
                tracker_pages: GIB / page,
                tracker_reps: r(3, 31),
                walk_reps: r(3, 31),
                block_bytes: 16 << 20,
                block_reps: r(2, 21),
                vmalloc_pages: (GIB / page) as usize,
                vmalloc_reps: r(2, 11),
                array_entries: 1_000_000,
                array_reps: r(1, 7),
                growth_sizes: [1, 4, 16, 64, 256, 1024].iter().map(|g| g * GIB).collect(),
                metadata_size: 16 * GIB,
                random_spans: vec![GIB, 4 * GIB, 16 * GIB, 64 * GIB],
                random_keys: 1 << 20,
                random_reps: r(3, 21),
                import_size: 64 * GIB,
                import_reps: r(1, 3),
            }
        }
    }
}

/// Runs every kho benchmark beside its limit and writes DIR/report.md and
/// DIR/*.svg.
#[derive(Parser, Debug)]
#[command(name = "kho-bench", version)]
struct Args {
    /// Small sizes and few repetitions, growth to 16 GiB only (a smoke test
    /// of the report, under a minute).
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, value_name = "DIR", default_value = "target/kho-report")]
    out: PathBuf,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Preserves KEYS random order-0 keys over SPAN_GIB GiB once, with WHO
    /// one of kho, kernel, limit; or (WHO walk-kho, walk-scan,
    /// walk-kho-ranges, walk-scan-ranges) preserves KEYS memfd-like order-0
    /// keys and walks them once, or (walk-import) hands them over and
    /// imports them once; with `full-` for `walk-` (full-kho-ranges,
    /// full-import, ...) every page of SPAN_GIB is preserved instead and
    /// KEYS is ignored; and exits. For counting instructions per key
    /// under `valgrind --tool=callgrind` (run it with two KEYS and divide
    /// the difference of the totals by the difference of the keys).
    #[arg(long, num_args = 3, value_names = ["WHO", "SPAN_GIB", "KEYS"], conflicts_with_all = ["quick", "out", "quiet"])]
    once: Option<Vec<String>>,
}

/// The command that reproduces this run.
fn command(args: &[String]) -> String {
    let mut c = String::from("cargo run --release -p kho-bench --");
    for a in args {
        c.push(' ');
        if a.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_./=+:,".contains(ch)) {
            c.push_str(a);
        } else {
            c.push_str(&format!("'{}'", a.replace('\'', r"'\''")));
        }
    }
    c
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = Args::parse();
    if let Some(once) = &args.once {
        return match tracker::once(once) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kho-bench --once: {e}");
                ExitCode::from(2)
            }
        };
    }
    match run(&args, &argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kho-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, argv: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let plan = Plan::new(args.quick);
    let date = sysinfo::now_utc();
    let load_before = sysinfo::load_average();
    let start = Instant::now();
    let patterns = primitives::patterns(plan.array_entries);
    let steps = 10 + patterns.len() + Workload::ALL.len();
    let mut progress = Progress::new(steps, args.quiet);
    let mut rows = Vec::new();

    for (name, kind) in [
        ("tracker: preserve order-0 sequential, 1 and 2 threads", PreserveKind::Sequential),
        ("tracker: preserve order-0 random, 1 and 2 threads", PreserveKind::Random),
        ("tracker: preserve mixed orders, 1 and 2 threads", PreserveKind::Mixed),
    ] {
        rows.extend(progress.step(name, || tracker::preserve_rows(kind, plan.tracker_pages, plan.tracker_reps)).0);
    }
    let random = progress.step("tracker: random preserve over 1 GiB to 64 GiB spans", || {
        tracker::random_span_figures(&plan.random_spans, plan.random_keys, plan.random_reps)
    });
    rows.extend(tracker::random_span_rows(&random));
    let (walk, kernel) =
        progress.step("tracker: walks, the kernel's 2 GiB case", || tracker::walk_rows(plan.walk_reps));
    rows.extend(walk);
    let import = progress
        .step(&format!("tracker: walks and import, memfd-like {}", rows::fmt_bytes(plan.import_size)), || {
            tracker::memfd_walk_figures(plan.import_size, plan.import_reps)
        });
    rows.extend(tracker::walk_figure_rows(
        &format!("memfd-like order-0 runs, {}", rows::fmt_bytes(plan.import_size)),
        &import,
    ));
    rows.extend(progress.step("tracker: a fully preserved GiB as ranges", || tracker::full_gib_rows(plan.walk_reps)));
    rows.extend(progress.step("block sets: extend and read beside memcpy", || {
        primitives::block_rows(plan.block_bytes, plan.block_reps)
    }));
    rows.extend(progress.step("vmalloc: area beside one-by-one preserves", || {
        primitives::vmalloc_rows(plan.vmalloc_pages, plan.vmalloc_reps)
    }));
    let mut arrays = Vec::new();
    for pat in &patterns {
        let fig = progress.step(&format!("arrays: {}", pat.name), || primitives::array_figures(pat, plan.array_reps));
        rows.extend(fig.rows());
        arrays.push(fig);
    }
    // Arrays' space rows first, then their write rows.
    let mut growth = Vec::new();
    for w in Workload::ALL {
        let sizes = growth::sizes_for(w, &plan.growth_sizes);
        let quiet = args.quiet;
        growth.extend(progress.step(&format!("growth: {}", w.name()), || {
            sizes
                .iter()
                .map(|&s| {
                    let p = growth::point(w, s);
                    if !quiet {
                        eprint!("{} ", rows::fmt_bytes(s).replace(' ', ""));
                    }
                    p
                })
                .collect::<Vec<_>>()
        }));
    }
    let wall = start.elapsed();
    let mut machine = sysinfo::MachineInfo::probe();
    machine.load = (load_before, sysinfo::load_average());
    let results = report::Results {
        machine,
        commit: sysinfo::commit(&workspace_dir()),
        date,
        command: command(argv),
        quick: plan.quick,
        wall,
        rows,
        kernel,
        random,
        import,
        arrays,
        growth,
        metadata_size: plan.metadata_size,
    };
    progress.step("writing the report", || write_report(&args.out, &results))?;
    if !args.quiet {
        eprintln!("report: {}", args.out.join("report.md").display());
    }
    Ok(())
}

/// The workspace the binary was built from (for the commit), or the
/// current directory if that is gone.
fn workspace_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.is_dir() { built } else { PathBuf::from(".") }
}

fn write_report(out: &Path, r: &report::Results) -> std::io::Result<()> {
    let svgs = report::plots(r);
    for (name, svg) in &svgs {
        std::fs::write(out.join(name), svg)?;
    }
    std::fs::write(out.join("report.md"), report::markdown(r, &svgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let parse = |v: &[&str]| Args::try_parse_from(std::iter::once("kho-bench").chain(v.iter().copied()));
        let a = parse(&["--quick", "--out", "x/y"]).expect("args");
        assert!(a.quick && !a.quiet && a.once.is_none());
        assert_eq!(a.out, PathBuf::from("x/y"));
        let a = parse(&["--out=z"]).expect("args");
        assert_eq!(a.out, PathBuf::from("z"));
        assert_eq!(parse(&[]).expect("args").out, PathBuf::from("target/kho-report"));
        let a = parse(&["--once", "kho", "4", "1000"]).expect("args");
        assert_eq!(a.once.as_deref(), Some(&["kho".to_string(), "4".into(), "1000".into()][..]));
        assert!(parse(&["--once", "kho", "4"]).is_err());
        assert!(parse(&["--once", "kho", "4", "10", "--quick"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn reproduce_command() {
        assert_eq!(
            command(&s(&["--quick", "--out", "target/kho report"])),
            "cargo run --release -p kho-bench -- --quick --out 'target/kho report'"
        );
        assert_eq!(command(&[]), "cargo run --release -p kho-bench --");
    }

    #[test]
    fn plans() {
        let q = Plan::new(true);
        assert_eq!(q.growth_sizes.last(), Some(&(16 << 30)));
        assert!(q.growth_sizes.contains(&q.metadata_size));
        let f = Plan::new(false);
        assert_eq!(f.growth_sizes.last(), Some(&(1 << 40)));
        assert!(f.growth_sizes.contains(&f.metadata_size));
    }
}
