//! A raw root FDT as input (for example one copied from the kernel's
//! debugfs `kho/in/fdt`): the checks that need no memory behind it.
//!
//! The FDT is parsed as a next kernel would parse a root (header,
//! compatible, `preserved-memory-map`) and its subtree nodes are listed.
//! Nothing it names can be followed without the memory, so the radix tree,
//! the blocks and the blobs are not checked; the report says so.
//!
//! The kernel's debugfs `kho/out/fdt` is a view of the outgoing root cut to
//! the size the FDT had at boot, while subtrees added later make it grow:
//! such a copy ends before the header's `totalsize` and is reported as
//! truncated, with where to get a whole one.

use std::path::Path;

use kho_abi::PhysAddr;
use kho_track::fdt::RootFdt;
use serde::Serialize;

use crate::inspect::Failure;
use crate::report::{SCHEMA_VERSION, SubtreeInfo};

/// The FDT magic, big-endian at offset 0.
pub const FDT_MAGIC: [u8; 4] = 0xd00d_feed_u32.to_be_bytes();
/// The largest FDT file read (a root FDT is one page; subtree FDTs are
/// small too).
const MAX_FDT_FILE: u64 = 1 << 20;

/// Whether the file at `path` starts with the FDT magic.
pub fn is_fdt(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == FDT_MAGIC
}

/// The report on a raw root FDT.
#[derive(Clone, Debug, Serialize)]
pub struct FdtReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always true (a failure is an error report).
    pub ok: bool,
    /// Always `"fdt"`: the input was a raw FDT, not a memory image.
    pub input: &'static str,
    /// The path as given.
    pub path: String,
    /// The file's length, which is the FDT's `totalsize`.
    pub bytes: u64,
    /// The root compatible as written.
    pub compatible: String,
    /// The root version: `kho-v1` .. `kho-v4`.
    pub version: String,
    /// The `preserved-memory-map` property.
    pub memory_map_pa: u64,
    /// Subtrees in FDT order (`preserved` is always `null`: no memory).
    pub subtrees: Vec<SubtreeInfo>,
    /// What an FDT alone cannot show.
    pub unchecked: &'static str,
}

const UNCHECKED: &str = "the memory map, the preserved blocks and the subtree blobs (an FDT alone has no memory \
                         behind it: inspect a machine image for them)";

/// Reads and checks the root FDT in the file at `path`.
pub fn inspect_fdt(path: &Path) -> Result<FdtReport, Failure> {
    let io = |e: std::io::Error| Failure::Usage(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FDT_FILE {
        return Err(Failure::Usage(format!(
            "{}: {len} bytes starting with the FDT magic is too large for a root FDT (at most {MAX_FDT_FILE})",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let totalsize = bytes.get(4..8).map_or(0, |b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    if totalsize > bytes.len() as u64 {
        return Err(Failure::Truncated(format!(
            "{}: the FDT header says {totalsize} bytes but the file holds {}: the copy is truncated. The kernel's \
             debugfs kho/out/fdt is cut to the FDT's size at boot; read the next kernel's kho/in/fdt, or inspect a \
             memory image",
            path.display(),
            bytes.len()
        )));
    }
    let fdt = RootFdt::parse(PhysAddr::new(0), bytes).map_err(|e| Failure::corrupt(e.kind(), &e))?;
    let subtrees = fdt
        .subtrees()
        .map(|s| match s {
            Ok(s) => SubtreeInfo {
                name: s.name,
                pa: Some(s.pa.as_u64()),
                size: s.size,
                preserved: None,
                error: None,
                payload: None,
            },
            Err(e) => SubtreeInfo {
                name: String::new(),
                pa: None,
                size: None,
                preserved: None,
                error: Some(e.to_string()),
                payload: None,
            },
        })
        .collect();
    Ok(FdtReport {
        schema_version: SCHEMA_VERSION,
        ok: true,
        input: "fdt",
        path: path.display().to_string(),
        bytes: len,
        compatible: fdt.compatible().to_string(),
        version: fdt.version().compatible().to_string(),
        memory_map_pa: fdt.memory_map().as_u64(),
        subtrees,
        unchecked: UNCHECKED,
    })
}

/// The text form of an [`FdtReport`].
pub fn fdt_text(r: &FdtReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "input      {}: a raw root FDT, {} bytes", r.path, r.bytes);
    let _ = writeln!(
        s,
        "root       compatible {:?} (version {}); memory map at {:#x}",
        r.compatible, r.version, r.memory_map_pa
    );
    let _ = writeln!(s, "subtrees   {}", r.subtrees.len());
    for t in &r.subtrees {
        match (&t.error, t.pa) {
            (None, Some(pa)) => {
                let size = t.size.map_or("size n/a (before kho-v3)".to_string(), |z| format!("{z} bytes"));
                let _ = writeln!(s, "           {}  PA {pa:#x}  {size}", t.name);
            }
            _ => {
                let _ = writeln!(s, "           {}  INVALID: {}", t.name, t.error.as_deref().unwrap_or("invalid"));
            }
        }
    }
    let _ = writeln!(s, "unchecked  {}", r.unchecked);
    let _ = writeln!(s, "result     the root FDT is well formed");
    s
}
