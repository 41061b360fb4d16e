//! `kho`: inspect the Kexec HandOver state in a machine image.
//!
//! ```text
//! kho inspect IMAGE [--json] [--fdt PA] [--scratch PA:SIZE]... [--max-order N] [--progress]
//! kho map IMAGE --svg FILE [same root options]
//! kho extract IMAGE SESSION TOKEN OUT [same root options]
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
