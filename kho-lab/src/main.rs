//! `kho-lab`: the real-kernel lab. Boots a KHO-enabled Linux in QEMU with a
//! guest agent that drives LUO, dumps guest RAM live and at each
//! `machine_kexec`, records what the kernels themselves say (`truth.json`)
//! and checks `kho inspect`'s reports of the dumps against it.
//! See kho-lab/README.md.

mod check;
mod cpio;
mod decode;
mod elf;
mod gdb;
mod initramfs;
mod parse;
mod producer;
mod qemu;
mod run;
mod scenario;
#[cfg(test)]
mod testdata;
mod truth;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::check::{Point, Verdict};
use crate::parse::SymbolMap;
use crate::scenario::{Memfd, ReserveMem, Scenario};

#[derive(Parser)]
#[command(name = "kho-lab", about = "Real Linux KHO handovers in QEMU, checked against kho inspect")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and write its dumps and truth.json.
    Run {
        #[command(flatten)]
        lab: LabArgs,
        /// Scenario name (the run's directory under --out).
        #[arg(long, default_value = "custom")]
        name: String,
        /// Kernels in the chain: 2 = A→B, 3 = A→B→C.
        #[arg(long, default_value_t = 2)]
        phases: u32,
        /// test_kho.max_mem (bytes, or with K/M/G).
        #[arg(long, value_parser = scenario::parse_size)]
        test_kho: Option<u64>,
        /// A reserve_mem region SIZE:ALIGN:NAME (repeatable).
        #[arg(long = "reserve", value_parser = ReserveMem::parse)]
        reserve: Vec<ReserveMem>,
        /// A memfd SESSION:TOKEN:SIZE:POS (repeatable).
        #[arg(long = "memfd", value_parser = Memfd::parse)]
        memfd: Vec<Memfd>,
        /// Run the preset A→B→C chain scenario instead.
        #[arg(long)]
        chain: bool,
        /// Run the preset producer scenario instead (kernel A hands over
        /// with `kho kexec`).
        #[arg(long, conflicts_with = "chain")]
        producer: bool,
        /// Also check the dumps afterwards.
        #[arg(long)]
        check: bool,
    },
    /// Check every dump under DIR (a run directory or a directory of runs).
    Check {
        /// The directory holding truth.json (or runs that do).
        #[arg(long)]
        out: PathBuf,
        /// The host's kho binary (default: build target/release/kho).
        #[arg(long)]
        kho: Option<PathBuf>,
    },
    /// Run the default scenario set and check every dump.
    Ci {
        #[command(flatten)]
        lab: LabArgs,
        /// Keep the dumps (1 GiB each) instead of deleting them after the check.
        #[arg(long)]
        keep: bool,
        /// The host's kho binary (default: build target/release/kho).
        #[arg(long)]
        kho: Option<PathBuf>,
    },
}

#[derive(Args)]
struct LabArgs {
    /// bzImage of a KHO-enabled kernel (default: ../shared/linux-lab/bzImage beside the workspace).
    #[arg(long, env = "KHO_KERNEL")]
    kernel: Option<PathBuf>,
    /// Its System.map (default: beside the kernel).
    #[arg(long)]
    system_map: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "target/lab")]
    out: PathBuf,
    /// Seconds a phase may go without progress.
    #[arg(long, default_value_t = 420)]
    timeout: u64,
    /// QEMU accelerator: tcg, or kvm where it works.
    #[arg(long, default_value = "tcg", value_parser = ["tcg", "kvm"])]
    accel: String,
}

fn workspace() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"))
}

/// Checks the kernel, builds the guest programs and the initramfs.
fn prepare(a: &LabArgs) -> Result<run::Lab, String> {
    let kernel = a.kernel.clone().unwrap_or_else(|| workspace().join("../shared/linux-lab/bzImage"));
    if !kernel.is_file() {
        return Err(format!("kernel {} not found (give --kernel or KHO_KERNEL)", kernel.display()));
    }
    let map_path = a.system_map.clone().unwrap_or_else(|| kernel.with_file_name("System.map"));
    let map_text = std::fs::read_to_string(&map_path).map_err(|e| format!("System.map {}: {e}", map_path.display()))?;
    let symbols = SymbolMap::parse(&map_text);
    let machine_kexec = symbols
        .address("machine_kexec")
        .ok_or_else(|| format!("{}: no machine_kexec (not a kexec kernel?)", map_path.display()))?;
    if symbols.address(truth::KHO_RESERVE_FN).is_none() {
        return Err(format!(
            "{}: no {} (kernel without CONFIG_KEXEC_HANDOVER)",
            map_path.display(),
            truth::KHO_RESERVE_FN
        ));
    }
    let which = Command::new(qemu::QEMU).arg("--version").output();
    if which.is_err() {
        return Err(format!("{} not found: install qemu-system-x86", qemu::QEMU));
    }
    let busybox = initramfs::find_busybox()?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let bins = initramfs::build_guest(&workspace(), &target_dir().join("lab-guest"))?;
    let initrd = a.out.join("initramfs.cpio");
    initramfs::write(&initrd, &busybox, &bins, &kernel)?;
    Ok(run::Lab {
        kernel,
        symbols,
        machine_kexec,
        initrd,
        phase_timeout: Duration::from_secs(a.timeout),
        kvm: a.accel == "kvm",
    })
}

/// The host's `kho`, built in release mode if not given.
fn host_kho(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "-p", "kho-cli", "--bin", "kho"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err(format!("building kho failed ({st})"));
    }
    Ok(target_dir().join("release/kho"))
}

/// Runs `kho inspect DUMP --json` (no other options) and parses its report.
fn inspect(kho: &Path, dump: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(kho)
        .args(["inspect"])
        .arg(dump)
        .arg("--json")
        .output()
        .map_err(|e| format!("{}: {e}", kho.display()))?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "kho inspect {} exited {} without a JSON report ({e}): {}",
            dump.display(),
            out.status,
            parse::truncate(String::from_utf8_lossy(&out.stderr).trim(), 300)
        )
    })
}

/// Checks every dump of one run directory; prints one line each.
fn check_run(dir: &Path, kho: &Path) -> Result<bool, String> {
    let truth = run::load_truth(&dir.join(run::TRUTH_FILE))?;
    let mut verdicts: Vec<Verdict> = Vec::new();
    // A producer run's handover is kho's own, not kernel A's: it is
    // checked by what kernel B did with it.
    let kernel_phases = if truth.scenario.producer { 0 } else { truth.phases.len() };
    if truth.scenario.producer {
        verdicts.extend(producer::check(&truth, dir));
    }
    for p in 0..kernel_phases {
        let dumps = truth.phases[p].dumps.clone();
        for (point, file) in [(Point::Live, dumps.live), (Point::Kexec, dumps.kexec)] {
            let Some(file) = file else { continue };
            let path = dir.join(&file);
            let v = match inspect(kho, &path) {
                Ok(report) => match elf::Image::open(&path) {
                    Ok(img) => {
                        let mut read = |pa: u64, len: usize| img.read_pa(pa, len).ok().flatten();
                        check::check_dump(&truth, p, point, &report, Some(&mut read))
                    }
                    Err(e) => Verdict { ok: false, line: format!("{}: cannot read the dump: {e}", file) },
                },
                Err(e) => Verdict { ok: false, line: format!("{file}: {e}") },
            };
            verdicts.push(v);
        }
        if let Some(v) = check::check_kcore(&truth, p) {
            verdicts.push(v);
        }
        if p > 0 {
            verdicts.push(check::check_restore(&truth, p));
        }
    }
    if truth.phases.len() < truth.scenario.phases as usize {
        verdicts.push(Verdict {
            ok: false,
            line: format!(
                "{}: only {} of {} kernels ran",
                truth.scenario.name,
                truth.phases.len(),
                truth.scenario.phases
            ),
        });
    }
    let mut ok = true;
    for v in &verdicts {
        println!("{}: {}", truth.scenario.name, v.line);
        ok &= v.ok;
    }
    Ok(ok)
}

fn run_dirs(out: &Path) -> Result<Vec<PathBuf>, String> {
    if out.join(run::TRUTH_FILE).is_file() {
        return Ok(vec![out.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(run::TRUTH_FILE).is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(format!("no {} in {} or its subdirectories", run::TRUTH_FILE, out.display()));
    }
    Ok(dirs)
}

fn remove_dumps(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "elf") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kho-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<bool, String> {
    match Cli::parse().cmd {
        Cmd::Run { lab, name, phases, test_kho, reserve, memfd, chain, producer, check } => {
            let sc = if chain {
                Scenario::chain()
            } else if producer {
                Scenario::producer()
            } else {
                Scenario {
                    name,
                    phases,
                    test_kho_max_mem: test_kho,
                    reserve_mem: reserve,
                    memfds: memfd,
                    producer: false,
                }
            };
            sc.validate()?;
            let kho = if check { Some(host_kho(None)?) } else { None };
            let env = prepare(&lab)?;
            let dir = lab.out.join(&sc.name);
            let t0 = Instant::now();
            run::run(&env, &sc, &dir)?;
            println!(
                "{}: ran in {:.0} s; truth: {}",
                sc.name,
                t0.elapsed().as_secs_f64(),
                dir.join(run::TRUTH_FILE).display()
            );
            match kho {
                Some(kho) => check_run(&dir, &kho),
                None => Ok(true),
            }
        }
        Cmd::Check { out, kho } => {
            let kho = host_kho(kho)?;
            let mut ok = true;
            for dir in run_dirs(&out)? {
                ok &= check_run(&dir, &kho)?;
            }
            Ok(ok)
        }
        Cmd::Ci { lab, keep, kho } => {
            let t0 = Instant::now();
            let kho = host_kho(kho)?;
            let env = prepare(&lab)?;
            let mut ok = true;
            for sc in Scenario::ci_set() {
                let dir = lab.out.join(&sc.name);
                let _ = std::fs::remove_dir_all(&dir);
                let t = Instant::now();
                match run::run(&env, &sc, &dir) {
                    Ok(_) => {
                        eprintln!("kho-lab: {} ran in {:.0} s", sc.name, t.elapsed().as_secs_f64());
                        match check_run(&dir, &kho) {
                            Ok(good) => ok &= good,
                            Err(e) => {
                                println!("{}: {e}", sc.name);
                                ok = false;
                            }
                        }
                    }
                    Err(e) => {
                        println!("{e}");
                        ok = false;
                    }
                }
                if !keep {
                    remove_dumps(&dir);
                }
            }
            println!("kho-lab ci: {} in {:.0} s", if ok { "all agree" } else { "FAILED" }, t0.elapsed().as_secs_f64());
            Ok(ok)
        }
    }
}
