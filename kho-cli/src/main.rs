//! `kho`: inspect the Kexec HandOver state in a machine image.
//!
//! ```text
//! kho inspect IMAGE [--json] [--fdt PA] [--scratch PA:SIZE]... [--max-order N] [--progress]
//! kho map IMAGE --svg FILE [same root options]
//! kho extract IMAGE SESSION TOKEN OUT [same root options]
//! kho kexec --kernel BZIMAGE [--initrd FILE] [--command-line S] [--test-data SIZE]
//!           [--memfd SESSION:TOKEN:FILE[:POS]]... [--reserve-mem NAME:SIZE:ALIGN[:FILE]]...
//!           [--release S] [--dry-run DIR] [--exec] [--json]
//! ```
//!
//! Exit codes: 0 a well-formed handover; 1 a usage or I/O error, an
//! unreadable image, or a limit of the tool; 2 a corrupt handover (the
//! typed error is printed); 3 no handover root found.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kho_abi::{KhoScratch, Order};
use kho_cli::choose::CandidateInfo;
use kho_cli::fdtfile::{fdt_text, inspect_fdt, is_fdt};
use kho_cli::find::FindOptions;
use kho_cli::image::{Image, OpenOptions, RamRange};
use kho_cli::inspect::{Analysis, Failure, image_info};
use kho_cli::load::{Request, load_handover};
use kho_cli::progress::Progress;
use kho_cli::report::{ErrorReport, candidates_text, failure_text, human, text};
use kho_cli::svg::{MapInput, render};

const EXIT_CODES: &str = "\
Exit codes:
  0  the handover is well formed
  1  usage or I/O error, an image that is not an ELF64 core file, or a limit of the tool
  2  the handover is corrupt: the typed error says what and where (PA, level, index)
  3  no handover root found (no KHO note, no --fdt, nothing found by the scan)";

/// Inspect the Linux Kexec HandOver (KHO) state in a machine image.
///
/// An image is an ELF64 core file whose PT_LOAD segments carry physical
/// addresses (kho-sim's images, QEMU's dump-guest-memory). The handover
/// root is taken from --fdt if given, else from the image's "KHO" note
/// (type 1, struct kho_data), else found by scanning the image's memory
/// for a flattened device tree whose compatible starts with "kho-v" (the
/// one step that reads all of the image's memory; it shows progress).
/// Everything is validated exactly as a next kernel would (kho-track's
/// incoming side). The image is memory-mapped copy-on-write and never
/// written; apart from the scan, only the metadata kho walks is read.
#[derive(Debug, Parser)]
#[command(name = "kho", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the handover and report what it preserves.
    ///
    /// Reports the root compatible and version (kho-v1 to kho-v4), the
    /// subtrees (name, PA, size, whether the blob is preserved), the
    /// scratch areas, preserved memory by order, coalesced ranges and the
    /// memory map's own pages. Each subtree's payload is decoded with the
    /// next kernel's checks: LUO sessions and their memfds, memblock's
    /// reserve_mem regions, kexec-metadata and kho_test (whose checksum is
    /// verified); other subtrees and file handlers are listed as opaque. A
    /// known payload that does not decode ends with exit code 2.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        #[command(flatten)]
        root: RootArgs,
        /// Print JSON (schema_version 2, described by
        /// kho-cli/schema/inspect.schema.json) instead of text. Failures
        /// are JSON too, with "ok": false and an "error" object.
        #[arg(long)]
        json: bool,
    },
    /// Draw the physical address space as SVG.
    ///
    /// RAM, preserved ranges colored by order, the memory map's pages,
    /// the root FDT page, scratch areas and subtree blobs, one band per
    /// row of address space (about an eighth of the RAM each).
    #[command(after_help = EXIT_CODES)]
    Map {
        #[command(flatten)]
        root: RootArgs,
        /// Where to write the SVG (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        svg: PathBuf,
    },
    /// Write a preserved memfd's contents to a file.
    ///
    /// Finds the LUO session SESSION and its file TOKEN (a memfd-v2 file),
    /// validates the handover and the memfd as the next kernel would, and
    /// writes the file's bytes to OUT in file order: pages no folio holds
    /// (and folios not up to date, which read as zeros) are left as holes,
    /// and OUT is exactly the memfd's size.
    #[command(after_help = EXIT_CODES)]
    Extract {
        #[command(flatten)]
        root: RootArgs,
        /// The LUO session's name.
        session: String,
        /// The file's token (hex with 0x, or decimal).
        #[arg(value_parser = parse_u64)]
        token: u64,
        /// Where to write the contents.
        out: PathBuf,
    },
    /// Hand memory to a next Linux kernel: build a KHO handover and load
    /// the kernel with kexec_load.
    ///
    /// Builds a complete handover (root FDT kho-v4, radix tree, scratch
    /// array, kho_data) with the subtrees asked for: kho_test self-test
    /// data, a LUO subtree of memfds the next kernel's user space
    /// retrieves through /dev/liveupdate, memblock reserve_mem regions and
    /// kexec-metadata. Plans the next kernel's memory (a scratch area
    /// below 4 GiB holding the kernel window, initrd and boot pages plus
    /// room for early boot; the handover after it), checks the plan,
    /// saves the handover as an image and validates it with kho's own
    /// import and decoders. Only then does it call kexec_load (x86-64;
    /// needs root, CAP_SYS_BOOT and CONFIG_KEXEC, not KHO) and, with
    /// --exec, reboot into the kernel. Exit codes: 0 done, 1 usage, I/O or
    /// system error, 2 an unsafe or invalid plan (nothing was loaded).
    Kexec(Box<KexecArgs>),
}

#[derive(Debug, Args)]
struct KexecArgs {
    /// The next kernel (an x86-64 bzImage).
    #[arg(long, value_name = "BZIMAGE")]
    kernel: PathBuf,
    /// Its initrd.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Its command line (default: the running kernel's /proc/cmdline).
    #[arg(long, value_name = "STRING")]
    command_line: Option<String>,
    /// Words added to the command line.
    #[arg(long, value_name = "STRING")]
    append: Option<String>,
    /// Self-test data for the next kernel's test_kho: random folios of
    /// mixed orders, SIZE bytes in all (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    test_data: Option<u64>,
    /// Seed of the self-test data.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_u64)]
    test_seed: u64,
    /// A memfd for the next kernel: FILE's bytes, in LUO session SESSION
    /// with token TOKEN and file position POS (default 0). Repeatable.
    #[arg(long, value_name = "SESSION:TOKEN:FILE[:POS]")]
    memfd: Vec<String>,
    /// The LUO live-update number handed over.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_u64)]
    liveupdate_num: u64,
    /// A reserve_mem region: SIZE bytes aligned to ALIGN, named NAME,
    /// holding FILE's bytes (default zeros). The next kernel revives it
    /// when its command line has reserve_mem=SIZE:ALIGN:NAME. Repeatable.
    #[arg(long, value_name = "NAME:SIZE:ALIGN[:FILE]")]
    reserve_mem: Vec<String>,
    /// kexec-metadata: the release the next kernel reports as its
    /// predecessor (default: the running kernel's).
    #[arg(long, value_name = "STRING")]
    release: Option<String>,
    /// kexec-metadata: the kexec count.
    #[arg(long, value_name = "N", default_value_t = 1)]
    kexec_count: u32,
    /// Leave kexec-metadata out.
    #[arg(long)]
    no_metadata: bool,
    /// Total size of the scratch area (default: what the kernel window,
    /// initrd and boot pages need plus --scratch-free, 4 MiB rounded).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    scratch_size: Option<u64>,
    /// Where the scratch area starts (default: the lowest fit from the
    /// kernel's preferred address, below 4 GiB).
    #[arg(long, value_name = "PA", value_parser = parse_u64)]
    scratch_addr: Option<u64>,
    /// Scratch that must stay free for the next kernel's early boot. Its
    /// early allocations measured 93.6 MiB in a 1 GiB guest with a 16 MiB
    /// log buffer; the default is 96 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "96M")]
    scratch_free: u64,
    /// The next kernel's RAM instead of the running system's memory map
    /// (for --dry-run on another machine). Repeatable.
    #[arg(long, value_name = "PA:SIZE", value_parser = parse_ram)]
    ram: Vec<RamRange>,
    /// Build, plan and validate only: write handover.img (an image kho
    /// inspect reads) and plan.json into DIR; load nothing.
    #[arg(long, value_name = "DIR")]
    dry_run: Option<PathBuf>,
    /// After loading, reboot into the next kernel.
    #[arg(long, conflicts_with = "dry_run")]
    exec: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RootArgs {
    /// The machine image (ELF64 core file).
    image: PathBuf,
    /// Use the root FDT at this PA instead of the image's KHO note (hex
    /// with 0x, or decimal).
    #[arg(long, value_name = "PA", value_parser = parse_u64)]
    fdt: Option<u64>,
    /// A scratch area of the handover, for a root given with --fdt or found
    /// by the scan (the KHO note names its own). Repeatable. SIZE takes
    /// K, M or G suffixes (KiB, MiB, GiB).
    #[arg(long, value_name = "PA:SIZE", value_parser = parse_scratch)]
    scratch: Vec<KhoScratch>,
    /// A range of the image that is RAM. Repeatable. Without it every
    /// PT_LOAD is RAM, except, in an x86-64 image, the device window
    /// 0xe0000000..0x100000000 (QEMU's dumps also hold device memory
    /// there). SIZE takes K, M or G suffixes.
    #[arg(long, value_name = "PA:SIZE", value_parser = parse_ram)]
    ram: Vec<RamRange>,
    /// The largest block order the next kernel accepts; larger blocks are
    /// reported as corrupt (OrderTooLarge). The kernel's MAX_PAGE_ORDER is
    /// 10 on x86-64, but kernels with huge folios preserve larger ones
    /// (1 GiB folios are order 18), hence the default.
    #[arg(long, value_name = "N", default_value_t = 18, value_parser = parse_order)]
    max_order: u32,
    /// Show progress on stderr even when it is not a terminal (on a
    /// terminal it is shown anyway for phases that take a while).
    #[arg(long)]
    progress: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number: {e}"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n = parse_u64(num)?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_scratch(s: &str) -> Result<KhoScratch, String> {
    let (pa, size) = s.split_once(':').ok_or_else(|| format!("{s:?} is not PA:SIZE"))?;
    Ok(KhoScratch { addr: parse_u64(pa)?, size: parse_size(size)? })
}

fn parse_ram(s: &str) -> Result<RamRange, String> {
    let (pa, size) = s.split_once(':').ok_or_else(|| format!("{s:?} is not PA:SIZE"))?;
    let (start, size) = (parse_u64(pa)?, parse_size(size)?);
    let end = start.checked_add(size).filter(|_| size > 0).ok_or_else(|| format!("{s:?} is empty or overflows"))?;
    Ok(RamRange { start, end })
}

fn parse_order(s: &str) -> Result<u32, String> {
    let n = parse_u64(s)?;
    Order::new(n, "--max-order").map(|o| o.get()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    ExitCode::from(match cli.command {
        Command::Inspect { root, json } => inspect(&root, json),
        Command::Map { root, svg } => map(&root, &svg),
        Command::Extract { root, session, token, out } => extract(&root, &session, token, &out),
        Command::Kexec(args) => kexec(&args),
    })
}

/// Opens the image, finds the root and analyzes the handover; on failure
/// reports it (as JSON on stdout when `json`) and returns the exit code.
fn load(args: &RootArgs, want_runs: bool, json: bool) -> Result<(Image, Analysis), u8> {
    let progress = Progress::new(args.progress);
    // `parse_order` accepted only valid orders: the fallback is never taken.
    let max_order = Order::new(u64::from(args.max_order), "--max-order").unwrap_or(Order::ZERO);
    let req = Request {
        path: args.image.clone(),
        open: OpenOptions { max_order, ram: args.ram.clone() },
        find: FindOptions { fdt: args.fdt, scratch: args.scratch.clone() },
        want_runs,
    };
    load_handover(&req, &progress).map_err(|f| {
        let code = fail(&f.failure, f.image.as_ref(), &f.candidates, json);
        if f.candidates.len() > 1 {
            eprint!("{}", candidates_text(&f.candidates));
        } else if let Some(root) = &f.root {
            let fdt = root.data.fdt_addr;
            eprintln!("  root:    FDT at {fdt:#x}, {}, in {}", root.source.describe(), args.image.display());
        }
        code
    })
}

fn fail(f: &Failure, image: Option<&Image>, candidates: &[CandidateInfo], json: bool) -> u8 {
    eprint!("{}", failure_text(f));
    if json {
        let report = ErrorReport::new(f, image.map(image_info), candidates.to_vec());
        let _ = emit(serde_json::to_string_pretty(&report).map(|s| s + "\n"));
    }
    f.exit_code()
}

/// Writes a report to stdout. A reader that went away (`kho ... | head`)
/// is not an error; anything else is (exit code 1).
fn emit(report: serde_json::Result<String>) -> Result<(), u8> {
    use std::io::Write;
    let text = report.map_err(|e| {
        eprintln!("error: writing JSON: {e}");
        1
    })?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing the report: {e}");
            Err(1)
        }
        _ => Ok(()),
    }
}

fn inspect(args: &RootArgs, json: bool) -> u8 {
    if is_fdt(&args.image) {
        if args.fdt.is_some() || !args.scratch.is_empty() || !args.ram.is_empty() {
            let f = Failure::Usage("--fdt, --scratch and --ram apply to memory images, not to a raw FDT".into());
            return fail(&f, None, &[], json);
        }
        return match inspect_fdt(&args.image) {
            Ok(r) => {
                let out = if json { serde_json::to_string_pretty(&r).map(|s| s + "\n") } else { Ok(fdt_text(&r)) };
                emit(out).err().unwrap_or(0)
            }
            Err(f) => fail(&f, None, &[], json),
        };
    }
    let (_image, a) = match load(args, false, json) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let out = if json { serde_json::to_string_pretty(&a.report).map(|s| s + "\n") } else { Ok(text(&a.report)) };
    match emit(out) {
        Ok(()) => a.report.exit_code(),
        Err(code) => code,
    }
}

fn map(args: &RootArgs, svg: &std::path::Path) -> u8 {
    if is_fdt(&args.image) {
        let f =
            Failure::Usage(format!("{}: a raw FDT has no memory to map; give a machine image", args.image.display()));
        return fail(&f, None, &[], false);
    }
    let (_image, a) = match load(args, true, false) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let r = &a.report;
    let name = args.image.file_name().map_or_else(|| args.image.display().to_string(), |n| n.to_string_lossy().into());
    let subtitle = format!(
        "{} ({:?}) · {} blocks, {} preserved in {} ranges · {} {} pages · {} of RAM",
        r.root.version,
        r.root.compatible,
        r.preserved.blocks,
        human(r.preserved.bytes),
        r.ranges.count,
        r.tree.pages,
        r.tree.format,
        human(r.image.ram_bytes)
    );
    let input = MapInput {
        title: format!("kho map: {name}"),
        subtitle,
        ram: &r.image.ram,
        scratch: &r.scratch,
        runs: &a.runs,
        map_pages: &a.map_pages,
        map_pages_name: if r.root.legacy { "kho-v1 map page" } else { "radix tree page" },
        fdt_page: Some(r.root.fdt_pa & !(r.image.page_size - 1)),
        subtrees: r.subtrees.iter().filter_map(|s| Some((s.name.clone(), s.pa?, s.size))).collect(),
        owners: &a.owners,
    };
    if svg.as_os_str() == "-" {
        return match emit(Ok(render(&input))) {
            Ok(()) => r.exit_code(),
            Err(code) => code,
        };
    }
    if let Err(e) = std::fs::write(svg, render(&input)) {
        eprintln!("error: writing {}: {e}", svg.display());
        return 1;
    }
    let _ = emit(Ok(format!(
        "wrote {}: {} blocks in {} runs of one order, {} ranges\n",
        svg.display(),
        r.preserved.blocks,
        a.runs.len(),
        r.ranges.count
    )));
    r.exit_code()
}

fn extract(args: &RootArgs, session: &str, token: u64, out: &std::path::Path) -> u8 {
    use kho_cli::extract::{ExtractError, find, write};
    use kho_cli::payload::Payload;
    if is_fdt(&args.image) {
        let f = Failure::Usage(format!(
            "{}: a raw FDT holds no memory to extract; give a machine image",
            args.image.display()
        ));
        return fail(&f, None, &[], false);
    }
    let (image, a) = match load(args, false, false) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let luo = a.report.subtrees.iter().find(|s| s.name == kho_luo::LUO_SUBTREE).map(|s| match (&s.error, &s.payload) {
        (Some(e), _) => Err(e.clone()),
        (None, Some(Payload::Error(e))) => Err(format!("{} ({})", e.message, e.fault)),
        (None, Some(Payload::Luo(_))) => a.luo_files.as_ref().ok_or_else(|| "no files decoded".to_string()),
        _ => Err("the subtree has no blob-size (written before kho-v3)".to_string()),
    });
    let result = find(luo, session, token).and_then(|memfd| write(&image, memfd, out));
    match result {
        Ok(x) => {
            let _ = emit(Ok(format!(
                "wrote {}: {} bytes (session {session:?}, token {token:#x}), {} from {} folios, the rest holes\n",
                out.display(),
                x.size,
                x.written,
                x.folios
            )));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ExtractError::LuoInvalid(_) => 2,
                _ => 1,
            }
        }
    }
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn kexec_request(a: &KexecArgs) -> Result<kho_cli::produce::Request, String> {
    use kho_cli::produce::{MemfdSpec, Request, ReserveSpec};
    use kho_handoff::x86::boot_params::{E820Entry, E820Type};
    let kernel = read_file("kernel", &a.kernel)?;
    let initrd = a.initrd.as_ref().map(|p| read_file("initrd", p)).transpose()?;
    let mut cmdline = match &a.command_line {
        Some(c) => c.clone(),
        None => std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?.trim().to_string(),
    };
    if let Some(extra) = &a.append {
        cmdline = format!("{cmdline} {extra}").trim().to_string();
    }
    let mut memfds = Vec::new();
    for m in &a.memfd {
        let parts: Vec<&str> = m.splitn(4, ':').collect();
        let [session, token, file, ref rest @ ..] = parts[..] else {
            return Err(format!("--memfd {m:?}: want SESSION:TOKEN:FILE[:POS]"));
        };
        let pos = rest.first().map(|p| parse_u64(p)).transpose()?.unwrap_or(0);
        let bytes = read_file("memfd file", std::path::Path::new(file))?;
        memfds.push(MemfdSpec { session: session.to_string(), token: parse_u64(token)?, bytes, pos });
    }
    let mut reserve = Vec::new();
    for r in &a.reserve_mem {
        let parts: Vec<&str> = r.splitn(4, ':').collect();
        let [name, size, align, ref rest @ ..] = parts[..] else {
            return Err(format!("--reserve-mem {r:?}: want NAME:SIZE:ALIGN[:FILE]"));
        };
        let bytes = match rest.first() {
            Some(f) => read_file("reserve_mem contents", std::path::Path::new(f))?,
            None => Vec::new(),
        };
        reserve.push(ReserveSpec { name: name.to_string(), size: parse_size(size)?, align: parse_size(align)?, bytes });
    }
    let e820 = if a.ram.is_empty() {
        kho_cli::kexec::memory_map().map_err(|e| format!("reading the memory map: {e}"))?
    } else {
        a.ram.iter().map(|r| E820Entry { addr: r.start, size: r.end - r.start, kind: E820Type::Ram }).collect()
    };
    let release = if a.no_metadata {
        None
    } else {
        let rel = match &a.release {
            Some(r) => r.clone(),
            None => {
                std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
            }
        };
        Some((rel, a.kexec_count))
    };
    Ok(Request {
        kernel,
        initrd,
        cmdline,
        e820,
        rsdp: if a.ram.is_empty() { kho_cli::kexec::rsdp() } else { None },
        scratch_size: a.scratch_size,
        scratch_addr: a.scratch_addr,
        min_scratch_free: a.scratch_free,
        test_data: a.test_data.unwrap_or(0),
        test_seed: a.test_seed,
        memfds,
        liveupdate_num: a.liveupdate_num,
        reserve,
        release,
    })
}

fn kexec(a: &KexecArgs) -> u8 {
    let refuse = |kind: &str, msg: &str, code: u8| {
        if a.json {
            println!("{}", serde_json::json!({"ok": false, "error": {"kind": kind, "message": msg}}));
        } else {
            eprintln!("kho kexec: {msg}");
        }
        code
    };
    let req = match kexec_request(a) {
        Ok(r) => r,
        Err(e) => return refuse("usage", &e, 1),
    };
    let produced = match kho_cli::produce::build(&req) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                e.kind(),
                &e.to_string(),
                if matches!(e, kho_cli::produce::ProduceError::Io(_)) { 1 } else { 2 },
            );
        }
    };
    let (dir, keep) = match &a.dry_run {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("kho-kexec-{}", std::process::id())), false),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return refuse("io", &format!("{}: {e}", dir.display()), 1);
    }
    let img = dir.join("handover.img");
    let validated = kho_cli::produce::validate(&produced, &img);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = match validated {
        Ok(r) => r,
        Err(e) => return refuse(e.kind(), &e.to_string(), 2),
    };
    let plan = kho_cli::produce::plan_json(&produced);
    if keep && let Err(e) = std::fs::write(dir.join("plan.json"), format!("{plan:#}\n")) {
        return refuse("io", &format!("plan.json: {e}"), 1);
    }
    if !a.json {
        print!("{}", kho_cli::produce::plan_text(&produced));
        println!("validated: {}", report.lines().next().unwrap_or(""));
    }
    if !keep && let Err(e) = kho_cli::kexec::load(&produced) {
        return refuse("kexec_load", &e.to_string(), 1);
    }
    if a.json {
        // One JSON document: the plan once it is loaded (or validated, for
        // a dry run), or the error.
        println!("{}", serde_json::json!({"ok": true, "dry_run": keep, "loaded": !keep, "plan": plan}));
    } else if !keep {
        println!("loaded: {} segments, entry {:#x}", produced.segments.len(), produced.entry);
    }
    if keep {
        return 0;
    }
    if a.exec {
        let e = kho_cli::kexec::exec();
        return refuse("reboot", &e.to_string(), 1);
    }
    0
}
