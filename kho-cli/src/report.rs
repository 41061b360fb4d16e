//! Reports: the text a person reads and the JSON a tool reads.
//!
//! The JSON is versioned by `schema_version` and described by
//! `schema/inspect.schema.json` (JSON Schema 2020-12) in this package: a
//! [`Report`] when a handover was found and validated, an [`ErrorReport`]
//! otherwise. All PAs and sizes are JSON integers in bytes (PAs fit in 52
//! bits, so they are exact in any JSON reader).

use std::fmt::Write;

use kho_abi::{AbiError, Errno};
use kho_ffi::record::{
    Describe, KHO_ERROR_HAS_INDEX, KHO_ERROR_HAS_LEVEL, KHO_ERROR_HAS_NODE, KHO_ERROR_HAS_ORDER, KHO_ERROR_HAS_PA,
    KHO_ERROR_HAS_VALUE, kho_error,
};
use kho_track::TrackError;
use serde::Serialize;

use crate::find::{FindError, Source};
use crate::image::{ImageError, RamSource};
use crate::payload::Payload;
use crate::scratch::ScratchSource;

/// What became of one root found by the scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The handover reported.
    Chosen,
    /// A root that imports but lost to the chosen one (a predecessor's
    /// root kept in memory, typically).
    Stale,
    /// A root whose handover does not import.
    Corrupt,
}

/// One root found by the scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CandidateInfo {
    /// PA of the root FDT.
    pub fdt_pa: u64,
    /// What became of it.
    pub verdict: Verdict,
    /// Why it lost (`null` for the chosen one).
    pub reason: Option<String>,
    /// Preserved blocks, when it imports.
    pub blocks: Option<u64>,
    /// The kexec count of its `kexec-metadata` subtree, when it has one.
    pub kexec_count: Option<u32>,
}

/// The version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// Why an inspection did not end in a report of a well-formed handover.
/// Each kind has its exit code (see [`Failure::exit_code`]).
#[derive(Debug)]
pub enum Failure {
    /// A bad command line (exit 1).
    Usage(String),
    /// The image could not be read (exit 1).
    Image(ImageError),
    /// No handover root was found (exit 3).
    NotFound(String),
    /// The handover is corrupt (exit 2): what, and where (PA, node, level,
    /// index) in `at`.
    Corrupt {
        /// The stable name of the fault (`TrackError::kind`).
        kind: &'static str,
        /// One line: what is wrong and where.
        message: String,
        /// Where: the typed error's location members.
        at: Box<Location>,
        /// The errno a kernel would see, if the error is kho-track's.
        errno: Option<Errno>,
    },
    /// The inspector ran out of its private pages (exit 1).
    Limit(String),
    /// The input ends before what its own header declares (exit 1): a
    /// truncated copy, not a corrupt handover.
    Truncated(String),
}

impl Failure {
    /// The process exit code: 1 usage, I/O or a limit of the tool, 2 a
    /// corrupt handover, 3 no handover found.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Image(_) | Failure::Limit(_) | Failure::Truncated(_) => 1,
            Failure::Corrupt { .. } => 2,
            Failure::NotFound(_) => 3,
        }
    }

    /// The `error.kind` of the JSON report.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Image(_) => "image",
            Failure::NotFound(_) => "not_found",
            Failure::Corrupt { .. } => "corrupt",
            Failure::Limit(_) => "limit",
            Failure::Truncated(_) => "truncated",
        }
    }

    /// The one-line message.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(m) | Failure::NotFound(m) | Failure::Limit(m) | Failure::Truncated(m) => m.clone(),
            Failure::Image(e) => e.to_string(),
            Failure::Corrupt { message, .. } => format!("the handover is corrupt: {message}"),
        }
    }

    /// A corrupt-handover failure from a typed error: its stable name,
    /// message, location and errno, as the C ABI's error record has them.
    pub fn corrupt<E: Describe>(kind: &'static str, e: &E) -> Failure {
        let rec = kho_error::of(e);
        Failure::Corrupt { kind, message: e.to_string(), at: Box::new(Location::of(&rec)), errno: Some(e.errno()) }
    }
}

/// Where a corrupt handover is wrong: the location members of the typed
/// error (those of the C ABI's `kho_error` record that it sets; the others
/// are null).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The physical address the error is about (a block, a page, a link).
    pub pa: Option<u64>,
    /// The page holding the bad value (a tree node, a chunk, an array page).
    pub node: Option<u64>,
    /// The slot of `node`, or a position in a chain.
    pub index: Option<u64>,
    /// The tree level (0 = leaf).
    pub level: Option<u32>,
    /// The block's order.
    pub order: Option<u32>,
    /// The offending value (a count, a magic, flags, a key, a length).
    pub value: Option<u64>,
    /// The field, property or name the error is about.
    pub field: Option<String>,
}

impl Location {
    /// The members `rec` sets.
    pub fn of(rec: &kho_error) -> Location {
        let has = |bit: u32| rec.has & bit != 0;
        Location {
            pa: has(KHO_ERROR_HAS_PA).then_some(rec.pa),
            node: has(KHO_ERROR_HAS_NODE).then_some(rec.node),
            index: has(KHO_ERROR_HAS_INDEX).then_some(rec.index),
            level: has(KHO_ERROR_HAS_LEVEL).then_some(rec.level),
            order: has(KHO_ERROR_HAS_ORDER).then_some(rec.order),
            value: has(KHO_ERROR_HAS_VALUE).then_some(rec.value),
            field: (!rec.field_str().is_empty()).then(|| rec.field_str().to_string()),
        }
    }

    /// The members as `key=value` words, for people (`pa=0x1000 index=3`).
    pub fn text(&self) -> String {
        let mut words = Vec::new();
        let hex = |k: &str, v: Option<u64>| v.map(|v| format!("{k}={v:#x}"));
        words.extend(hex("pa", self.pa));
        words.extend(hex("node", self.node));
        words.extend(self.index.map(|v| format!("index={v}")));
        words.extend(self.level.map(|v| format!("level={v}")));
        words.extend(self.order.map(|v| format!("order={v}")));
        words.extend(hex("value", self.value));
        words.extend(self.field.as_ref().map(|f| format!("field={f:?}")));
        words.join(" ")
    }
}

impl From<TrackError> for Failure {
    fn from(e: TrackError) -> Self {
        match e {
            TrackError::Abi(AbiError::NoMemory { order }) => Failure::Limit(format!(
                "the inspector's private pages (1 GiB, for converting a kho-v1 map) ran out at an order-{order} \
                 allocation"
            )),
            e => Failure::corrupt(e.kind(), &e),
        }
    }
}

impl From<FindError> for Failure {
    fn from(e: FindError) -> Self {
        match e {
            FindError::BadNote(_) => {
                Failure::Corrupt { kind: "bad_note", message: e.to_string(), at: Box::default(), errno: None }
            }
            FindError::NotFound { .. } => Failure::NotFound(e.to_string()),
            FindError::ScratchWithNote => Failure::Usage(e.to_string()),
            FindError::Image(e) => Failure::Image(e),
            FindError::Abi(e) => Failure::Limit(e.to_string()),
        }
    }
}

/// What a fault means, for the reader of an error report, by its stable
/// kind name (`TrackError::kind`).
pub fn explain(kind: &str) -> Option<&'static str> {
    let hints: [(&str, &str); 22] = [
        ("shared", "a table or leaf is reached through two slots; the tables must form a tree"),
        ("key_too_wide", "a slot whose keys would be wider than the radix key width (53 bits for 4 KiB pages)"),
        ("zero_key", "a leaf bit for key 0, which has no order bit"),
        ("in_preserved_block", "a tree page lies inside a preserved block, so restoring it would expose the map"),
        ("order_too_large", "a block order above --max-order (the next kernel's largest order)"),
        ("in_scratch", "inside a scratch area, which the next kernel allocates from before walking the tree"),
        ("misaligned", "an address that is not aligned as the format requires"),
        ("not_ram", "an address outside the image's RAM"),
        ("bad_compatible", "the root compatible is not one of kho-v1..kho-v4"),
        ("malformed_compatible", "the root compatible string is malformed or names an unknown component"),
        ("bad_property", "the root FDT lacks a property or its length is wrong"),
        ("zero_address", "an address that must be non-zero is zero"),
        ("fdt_parse", "the root FDT does not parse"),
        ("fdt_struct_bounds", "an FDT token lies outside the structure block its header declares"),
        ("unterminated_string", "a string property without its terminating NUL"),
        ("duplicate_property", "a property given twice in one node; kernels write each once"),
        ("duplicate_subtree", "two subtrees with one name; a next kernel could retrieve only one of them"),
        ("overlaps", "two preserved blocks share pages (two owners for one page)"),
        ("repeated", "a kho-v1 entry names the same span as an earlier one"),
        (
            "blob_not_preserved",
            "a subtree blob lies (partly) outside preserved memory: the next kernel cannot restore it",
        ),
        ("map_too_large", "the memory map claims more than the image can hold"),
        ("outside_image", "the handover names memory that is not in the image"),
    ];
    hints.iter().find(|(k, _)| kind == *k || kind.ends_with(&format!("_{k}"))).map(|(_, v)| *v)
}

/// A PA range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First PA.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// The path as given.
    pub path: String,
    /// The page size this build reads handovers with.
    pub page_size: u64,
    /// `PT_LOAD` segments in the file.
    pub load_segments: usize,
    /// RAM ranges (adjacent segments merged when contiguous in the file).
    pub ram: Vec<Span>,
    /// Total RAM.
    pub ram_bytes: u64,
    /// How the RAM was decided.
    pub ram_source: RamSource,
    /// Memory the image holds that is not taken as RAM (device memory).
    pub not_ram: Vec<Span>,
}

/// The handover root.
#[derive(Clone, Debug, Serialize)]
pub struct RootInfo {
    /// Where it was found: `note`, `option` (`--fdt`) or `scan`.
    pub source: Source,
    /// PA of the root FDT.
    pub fdt_pa: u64,
    /// `kho_data.fdt_size`.
    pub fdt_size: u64,
    /// The root compatible as written.
    pub compatible: String,
    /// The root version: `kho-v1` .. `kho-v4`.
    pub version: String,
    /// Whether the memory map is the legacy `kho-v1` chunk list.
    pub legacy: bool,
    /// PA of the memory map (`preserved-memory-map`).
    pub memory_map_pa: u64,
    /// Whether the root FDT's own page is a preserved block.
    pub fdt_page_preserved: bool,
    /// For a scan: every page holding an FDT with a `kho-v*` compatible,
    /// ascending, each with its verdict.
    pub candidates: Vec<CandidateInfo>,
    /// Whether the scan found two or more candidates equally good.
    pub ambiguous: bool,
}

/// One subtree.
#[derive(Clone, Debug, Serialize)]
pub struct SubtreeInfo {
    /// The node name.
    pub name: String,
    /// PA of the blob (`null` if the node is invalid).
    pub pa: Option<u64>,
    /// Its size (`null` before `kho-v3`, or if invalid).
    pub size: Option<u64>,
    /// Whether the blob's first page lies in preserved memory.
    pub preserved: Option<bool>,
    /// Why the node is invalid, if it is.
    pub error: Option<String>,
    /// The decoded payload (`null` if the node is invalid).
    pub payload: Option<Payload>,
}

/// Preserved blocks of one order.
#[derive(Clone, Debug, Serialize)]
pub struct OrderInfo {
    /// The order.
    pub order: u32,
    /// Blocks.
    pub blocks: u64,
    /// Pages in them.
    pub pages: u64,
    /// Bytes in them.
    pub bytes: u64,
}

/// Preserved memory.
#[derive(Clone, Debug, Serialize)]
pub struct Preserved {
    /// Blocks.
    pub blocks: u64,
    /// Pages.
    pub pages: u64,
    /// Bytes.
    pub bytes: u64,
    /// Per order present, ascending.
    pub by_order: Vec<OrderInfo>,
}

/// Coalesced ranges of preserved memory.
#[derive(Clone, Debug, Serialize)]
pub struct Ranges {
    /// Number of maximal ranges.
    pub count: u64,
    /// Bytes in them.
    pub total_bytes: u64,
    /// The largest (lowest PA among equals), `null` if none.
    pub largest: Option<Span>,
}

/// The memory map's own pages.
#[derive(Clone, Debug, Serialize)]
pub struct TreeInfo {
    /// `radix-v1` or `kho-v1 chunks`.
    pub format: String,
    /// Pages (radix nodes, or chunks plus bitmaps).
    pub pages: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The report of a handover that was found and validated.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// False when a subtree node is invalid or a known layer's payload does
    /// not decode (exit code 2).
    pub ok: bool,
    /// The image.
    pub image: ImageInfo,
    /// The root.
    pub root: RootInfo,
    /// Subtrees in FDT order.
    pub subtrees: Vec<SubtreeInfo>,
    /// Scratch areas.
    pub scratch: Vec<Span>,
    /// Where the scratch areas came from.
    pub scratch_source: ScratchSource,
    /// Preserved memory.
    pub preserved: Preserved,
    /// Coalesced ranges.
    pub ranges: Ranges,
    /// The memory map's pages.
    pub tree: TreeInfo,
}

impl Report {
    /// The exit code this report ends with.
    pub fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { 2 }
    }
}

/// The `error` member of an [`ErrorReport`].
#[derive(Clone, Debug, Serialize)]
pub struct ErrorInfo {
    /// `usage`, `image`, `not_found`, `corrupt`, `limit` or `truncated`.
    pub kind: &'static str,
    /// For `corrupt`: the fault's stable name (`TrackError::kind`, such as
    /// `tree_node_shared`), which tools match on.
    pub fault: Option<&'static str>,
    /// One line.
    pub message: String,
    /// For `corrupt`: where, as `key=value` words for people (the same as
    /// `at`; its wording may change: match on `fault` and `at`).
    pub detail: Option<String>,
    /// For `corrupt`: where, the typed error's location members.
    pub at: Option<Location>,
    /// For `corrupt`: the errno a kernel would return.
    pub errno: Option<&'static str>,
}

/// The JSON written when there is no report of a validated handover.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always false.
    pub ok: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// What went wrong.
    pub error: ErrorInfo,
    /// The image, when it could be read.
    pub image: Option<ImageInfo>,
    /// For a scan: every root found, with its verdict.
    pub candidates: Vec<CandidateInfo>,
}

impl ErrorReport {
    /// The report of `failure`.
    pub fn new(failure: &Failure, image: Option<ImageInfo>, candidates: Vec<CandidateInfo>) -> ErrorReport {
        let (at, errno) = match failure {
            Failure::Corrupt { at, errno, .. } => (Some(Location::clone(at)), errno.map(Errno::name)),
            _ => (None, None),
        };
        let fault = match failure {
            Failure::Corrupt { kind, .. } => Some(*kind),
            _ => None,
        };
        ErrorReport {
            schema_version: SCHEMA_VERSION,
            ok: false,
            exit_code: failure.exit_code(),
            error: ErrorInfo {
                kind: failure.kind(),
                fault,
                message: failure.message(),
                detail: at.as_ref().map(Location::text),
                at,
                errno,
            },
            image,
            candidates,
        }
    }
}

/// Sizes as people read them: `64 B`, `4 KiB`, `221.8 MiB`, `1 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let digits = format!("{v:.2}");
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{digits} {}", UNITS[u])
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The text report.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let i = &r.image;
    let _ = writeln!(
        s,
        "image      {}: ELF64 core, {} PT_LOAD, {} of RAM in {} range{}",
        i.path,
        i.load_segments,
        human(i.ram_bytes),
        i.ram.len(),
        if i.ram.len() == 1 { "" } else { "s" }
    );
    for m in &i.ram {
        let _ = writeln!(s, "           {:#x}..{:#x}  {}", m.pa, m.pa + m.size, human(m.size));
    }
    if i.ram_source != RamSource::Segments {
        let _ = writeln!(s, "           RAM: {}", i.ram_source.describe());
    }
    for m in &i.not_ram {
        let _ = writeln!(s, "           {:#x}..{:#x}  {}  not RAM", m.pa, m.pa + m.size, human(m.size));
    }
    let root = &r.root;
    let _ = writeln!(s, "root       FDT at {:#x} (+{:#x}), {}", root.fdt_pa, root.fdt_size, root.source.describe());
    let legacy = if root.legacy { ", legacy chunk-list memory map" } else { "" };
    let _ = writeln!(
        s,
        "           compatible {:?} (version {}{legacy}); memory map at {:#x}",
        root.compatible, root.version, root.memory_map_pa
    );
    let _ = writeln!(s, "           root FDT page preserved: {}", yes(root.fdt_page_preserved));
    if root.candidates.len() > 1 {
        s.push_str(&candidates_text(&root.candidates));
        if root.ambiguous {
            let _ = writeln!(s, "           AMBIGUOUS: more than one root is equally good; the lowest PA was taken");
        }
    }
    let _ = writeln!(s, "subtrees   {}", r.subtrees.len());
    let width = r.subtrees.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &r.subtrees {
        if let (None, Some(pa)) = (&t.error, t.pa) {
            let size = t.size.map_or("size n/a (before kho-v3)".to_string(), |z| format!("{z} bytes"));
            let preserved = yes(t.preserved == Some(true));
            let _ = writeln!(s, "           {:width$}  PA {pa:#x}  {size}  blob preserved: {preserved}", t.name);
            if let Some(p) = &t.payload {
                payload_text(&mut s, p);
            }
        } else {
            let why = t.error.as_deref().unwrap_or("invalid");
            let _ = writeln!(s, "           {:width$}  INVALID: {why}", t.name);
        }
    }
    let plural = if r.scratch.len() == 1 { "" } else { "s" };
    let _ = writeln!(s, "scratch    {} area{plural}, {}", r.scratch.len(), r.scratch_source.describe());
    for a in &r.scratch {
        let _ = writeln!(s, "           {:#x}..{:#x}  {}", a.pa, a.pa.saturating_add(a.size), human(a.size));
    }
    let p = &r.preserved;
    let _ = writeln!(s, "preserved  {} blocks, {} pages, {}", p.blocks, p.pages, human(p.bytes));
    if !p.by_order.is_empty() {
        let _ = writeln!(s, "           {:>5}  {:>10}  {:>12}  {:>16}", "order", "blocks", "pages", "bytes");
        for o in &p.by_order {
            let _ = writeln!(
                s,
                "           {:>5}  {:>10}  {:>12}  {:>16}  ({})",
                o.order,
                o.blocks,
                o.pages,
                o.bytes,
                human(o.bytes)
            );
        }
    }
    let g = &r.ranges;
    match &g.largest {
        Some(l) => {
            let _ = writeln!(
                s,
                "ranges     {} coalesced, {} in all; largest {} at {:#x}",
                g.count,
                human(g.total_bytes),
                human(l.size),
                l.pa
            );
        }
        None => {
            let _ = writeln!(s, "ranges     none");
        }
    }
    let _ = writeln!(s, "tree       {}: {} pages ({})", r.tree.format, r.tree.pages, human(r.tree.bytes));
    let verdict = if r.ok { "well formed" } else { "NOT well formed: invalid subtree nodes or payloads (see above)" };
    let _ = writeln!(s, "result     {verdict}");
    s
}

/// The lines of a subtree's decoded payload.
fn payload_text(s: &mut String, p: &Payload) {
    const IN: &str = "             ";
    match p {
        Payload::Luo(l) => {
            let _ = writeln!(
                s,
                "{IN}luo-v5: liveupdate_num {}, {} session(s), {} FLB(s)",
                l.liveupdate_num,
                l.sessions.len(),
                l.flbs.len()
            );
            for se in &l.sessions {
                let _ = writeln!(s, "{IN}  session {:?}: {} file(s)", se.name, se.file_count);
                for f in &se.files {
                    match &f.memfd {
                        Some(m) => {
                            let _ = writeln!(
                                s,
                                "{IN}    token {:#x}  {}  size {} pos {} seals {:#x}  {} folio(s), {} page(s), {} dirty, {} uptodate",
                                f.token, f.compatible, m.size, m.pos, m.seals, m.folios, m.pages, m.dirty, m.uptodate
                            );
                        }
                        None => {
                            let _ = writeln!(
                                s,
                                "{IN}    token {:#x}  {:?}  opaque (data at {:#x})",
                                f.token, f.compatible, f.data
                            );
                        }
                    }
                }
            }
            for f in &l.flbs {
                let _ = writeln!(s, "{IN}  FLB {:?}: data {:#x}, count {}", f.name, f.data, f.count);
            }
        }
        Payload::Memblock { regions } => {
            let _ = writeln!(s, "{IN}memblock-v1: {} reserve_mem region(s)", regions.len());
            for r in regions {
                let _ = writeln!(
                    s,
                    "{IN}  {:?}  {:#x}..{:#x}  {}",
                    r.name,
                    r.start,
                    r.start.saturating_add(r.size),
                    human(r.size)
                );
            }
        }
        Payload::KexecMetadata { version, previous_release, kexec_count } => match (previous_release, kexec_count) {
            (Some(rel), Some(n)) => {
                let _ = writeln!(s, "{IN}kexec-metadata v{version}: previous release {rel:?}, kexec count {n}");
            }
            _ => {
                let _ = writeln!(s, "{IN}kexec-metadata v{version}: unknown version, ignored");
            }
        },
        Payload::KhoTest { folios, pages, stored_csum, computed_csum, checksum_holds } => {
            let verdict = if *checksum_holds { "holds" } else { "DOES NOT HOLD" };
            let _ = writeln!(
                s,
                "{IN}kho-test-v1: {folios} folio(s), {pages} page(s); checksum {verdict} (stored {stored_csum:#x}, computed {computed_csum:#x})"
            );
        }
        Payload::Opaque => {
            let _ = writeln!(s, "{IN}opaque (no decoder for this subtree)");
        }
        Payload::Error(e) => {
            let _ = writeln!(s, "{IN}PAYLOAD INVALID ({}): {}", e.fault, e.message);
        }
    }
}

/// The scan's candidates, one line each.
pub fn candidates_text(list: &[CandidateInfo]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "           scan found {} root FDTs:", list.len());
    for c in list {
        let verdict = match c.verdict {
            Verdict::Chosen => "chosen",
            Verdict::Stale => "stale",
            Verdict::Corrupt => "corrupt",
        };
        let blocks = c.blocks.map_or(String::new(), |b| format!(", {b} blocks"));
        let count = c.kexec_count.map_or(String::new(), |n| format!(", kexec count {n}"));
        let why = c.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
        let _ = writeln!(s, "             {:#x}  {verdict}{blocks}{count}{why}", c.fdt_pa);
    }
    s
}

/// The text of a failure, for stderr.
pub fn failure_text(f: &Failure) -> String {
    let mut s = format!("error: {}\n", f.message());
    if let Failure::Corrupt { kind, at, errno, .. } = f {
        let _ = writeln!(s, "  fault:   {kind}");
        let _ = writeln!(s, "  at:      {}", at.text());
        if let Some(e) = errno {
            let _ = writeln!(s, "  errno:   {}", e.name());
        }
        if let Some(m) = explain(kind) {
            let _ = writeln!(s, "  meaning: {m}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use kho_abi::{Order, PhysAddr};
    use kho_track::{BlockFault, TreeFault};

    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(64), "64 B");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(3 << 19), "1.5 MiB");
        assert_eq!(human((2 << 20) + (16 << 10)), "2.02 MiB");
        assert_eq!(human(5 << 50), "5 PiB");
    }

    /// Keeps the fault enums in the explanation table honest: every name
    /// [`explain`] matches on is a real variant.
    #[test]
    fn every_fault_has_an_explanation() {
        for f in [
            TreeFault::Misaligned,
            TreeFault::NotRam,
            TreeFault::Shared,
            TreeFault::KeyTooWide,
            TreeFault::InScratch,
            TreeFault::InPreservedBlock,
            TreeFault::ZeroKey,
        ] {
            let e = TrackError::Tree { node: PhysAddr::new(0x1000), level: 1, index: 2, fault: f };
            assert!(explain(e.kind()).is_some(), "{f:?}");
        }
        for f in [BlockFault::NotRam, BlockFault::OrderTooLarge, BlockFault::InScratch] {
            let e = TrackError::Block { pa: PhysAddr::new(0x1000), order: Order::ZERO, fault: f };
            assert!(explain(e.kind()).is_some(), "{f:?}");
        }
        let f = Failure::from(TrackError::Abi(AbiError::NoMemory { order: 0 }));
        assert_eq!((f.exit_code(), f.kind()), (1, "limit"));
        let f = Failure::from(TrackError::Tree {
            node: PhysAddr::new(0x1000),
            level: 1,
            index: 2,
            fault: TreeFault::KeyTooWide,
        });
        assert_eq!((f.exit_code(), f.kind()), (2, "corrupt"));
        assert!(f.message().contains("KeyTooWide"));
        assert_eq!(Errno::Range.name(), "ERANGE");
    }
}
