//! Inspecting a handover: validate it with kho-track's incoming side, then
//! gather what a report or a map shows.
//!
//! [`Incoming::import`] does every check a next kernel does (FDT,
//! compatible, the whole tree, every block). The inspector adds what only
//! an outside view needs: that everything the handover names lies in the
//! image's RAM and not in the inspector's private pages, the legacy map's
//! own pages, and whether each subtree's blob is preserved.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kho_abi::legacy::V1Chunk;
use kho_abi::{AbiError, Claim, Errno, Order, PAGE_SIZE, PageAlloc, PhysAddr, ToErrno, WithTracker, read_phys};
use kho_track::{ImportLimits, Incoming, TrackError};

use crate::find::{FindError, Root, Source};
use crate::image::{Image, ImageError};
use crate::payload::{self, LuoFiles, Owner, Payload};
use crate::progress::Progress;
use crate::report::{
    ImageInfo, OrderInfo, Preserved, Ranges, Report, RootInfo, SCHEMA_VERSION, Span, SubtreeInfo, TreeInfo,
};
use crate::scratch::ScratchSource;

const PAGE: u64 = PAGE_SIZE as u64;

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
    /// The handover is corrupt (exit 2): what, and the typed error's
    /// fields (PA, level, index) in `detail`.
    Corrupt {
        /// The stable name of the fault (`TrackError::kind`).
        kind: &'static str,
        /// One line: what is wrong and where.
        message: String,
        /// The typed error as kho-track reports it (`Debug` form).
        detail: String,
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

    /// A corrupt-handover failure from a typed error whose stable name is
    /// `kind`.
    pub fn corrupt<E: std::fmt::Display + std::fmt::Debug>(kind: &'static str, e: &E, errno: Option<Errno>) -> Failure {
        Failure::Corrupt { kind, message: e.to_string(), detail: format!("{e:?}"), errno }
    }
}

impl From<TrackError> for Failure {
    fn from(e: TrackError) -> Self {
        match e {
            TrackError::Abi(AbiError::NoMemory { order }) => Failure::Limit(format!(
                "the inspector's private pages (1 GiB, for converting a kho-v1 map) ran out at an order-{order} \
                 allocation"
            )),
            e => {
                let errno = e.errno();
                Failure::corrupt(e.kind(), &e, Some(errno))
            }
        }
    }
}

impl From<FindError> for Failure {
    fn from(e: FindError) -> Self {
        match e {
            FindError::BadNote(_) => Failure::corrupt("bad_note", &e, None),
            FindError::NotFound { .. } => Failure::NotFound(e.to_string()),
            FindError::ScratchWithNote => Failure::Usage(e.to_string()),
            FindError::Image(e) => Failure::Image(e),
            FindError::Abi(e) => Failure::Limit(e.to_string()),
        }
    }
}

/// The Linux name of an errno.
pub fn errno_name(e: Errno) -> &'static str {
    match e {
        Errno::NoEnt => "ENOENT",
        Errno::NoMem => "ENOMEM",
        Errno::Busy => "EBUSY",
        Errno::Exist => "EEXIST",
        Errno::Inval => "EINVAL",
        Errno::NoSpc => "ENOSPC",
        Errno::Range => "ERANGE",
        Errno::OpNotSupp => "EOPNOTSUPP",
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

/// A run of adjacent preserved blocks of one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The blocks' order.
    pub order: u32,
    /// First PA.
    pub start: u64,
    /// One past the last PA.
    pub end: u64,
    /// Blocks in the run.
    pub blocks: u64,
}

/// Everything gathered about a well-formed handover.
#[derive(Debug)]
pub struct Analysis {
    /// The report (text or JSON).
    pub report: Report,
    /// Coalesced preserved ranges, `(start, end)`, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// Runs per order (only when asked for), by order then PA.
    pub runs: Vec<Run>,
    /// PAs of the memory map's pages (radix tree nodes, or `kho-v1`
    /// chunks and bitmaps).
    pub map_pages: Vec<u64>,
    /// The LUO subtree's sessions and files as decoded (`None` without a
    /// LUO subtree, or when it does not decode).
    pub luo_files: Option<LuoFiles>,
    /// Memory the decoded payloads own (memfd folios, reserve_mem
    /// regions, the self-test's folios), for the map.
    pub owners: Vec<Owner>,
}

/// A summary of the image for reports.
pub fn image_info(image: &Image) -> ImageInfo {
    ImageInfo {
        path: image.path().display().to_string(),
        page_size: PAGE,
        load_segments: image.load_segments(),
        ram: image.ram().iter().map(|r| Span { pa: r.start, size: r.end - r.start }).collect(),
        ram_bytes: image.ram_bytes(),
        ram_source: image.ram_source(),
        not_ram: image.not_ram().iter().map(|r| Span { pa: r.start, size: r.end - r.start }).collect(),
    }
}

/// Validates the handover at `root` and gathers its report; `want_runs`
/// also collects per-order runs (for the map).
pub fn analyze(image: &Image, root: &Root, want_runs: bool, progress: &Progress) -> Result<Analysis, Failure> {
    let inc = {
        let _phase = progress.phase("validating the handover", "memory reads", image.reads(), None);
        // A map has at most as many non-zero pages as the image stores; an
        // all-zero page is an empty node, so a few more are allowed (a
        // root and one empty node per level at the least).
        let limits = ImportLimits { max_map_pages: image.stored_pages() + 64 };
        Incoming::import_with(image, &root.data, &limits)?
    };
    // Preserved means inside any preserved block, not only an exact one.
    let fdt_page_preserved = inc.root_fdt_preserved()?;
    let stats = inc.stats().clone();
    let legacy = !inc.version().has_radix_tree();

    // The import claimed the root FDT's page if it was preserved; give it
    // back (in the private copy) so the walks show the image as it is.
    let walked = Arc::new(AtomicU64::new(0));
    {
        let _phase = progress.phase("walking blocks", "blocks", walked.clone(), Some(stats.blocks));
        let _ = inc.for_each_block::<()>(&mut |_, _| {
            walked.fetch_add(1, Ordering::Relaxed);
            ControlFlow::Continue(())
        })?;
    }
    let fdt_page = root.data.fdt_addr & !(PAGE - 1);
    if walked.load(Ordering::Relaxed) + 1 == stats.blocks {
        inc.unclaim(PhysAddr::new(fdt_page), Order::ZERO);
    }

    let mut runs: Vec<Run> = Vec::new();
    if want_runs {
        let _ = inc.for_each_block::<()>(&mut |pa, order| {
            let (o, pa) = (order.get(), pa.as_u64());
            let end = pa + order.checked_bytes().unwrap_or(0);
            match runs.last_mut() {
                Some(r) if r.order == o && r.end == pa => {
                    r.end = end;
                    r.blocks += 1;
                }
                _ => runs.push(Run { order: o, start: pa, end, blocks: 1 }),
            }
            ControlFlow::Continue(())
        })?;
    }
    let mut ranges = Vec::new();
    {
        let count = Arc::new(AtomicU64::new(0));
        let _phase = progress.phase("walking ranges", "ranges", count.clone(), None);
        let _ = inc.for_each_range::<()>(&mut |pa, len| {
            ranges.push((pa.as_u64(), pa.as_u64() + len));
            count.fetch_add(1, Ordering::Relaxed);
            ControlFlow::Continue(())
        })?;
    }
    if let Some(&(a, b)) = ranges.iter().find(|&&(a, b)| !image.in_image_ram(a, b - a)) {
        return Err(outside("preserved memory", a, b - a));
    }

    let map_pages = if legacy { v1_map_pages(image, inc.fdt().memory_map())? } else { inc.tree_nodes().to_vec() };
    let map_pages: Vec<u64> = map_pages.iter().map(|p| p.as_u64()).collect();
    if let Some(&p) = map_pages.iter().find(|&&p| !image.in_image_ram(p, PAGE)) {
        return Err(outside(if legacy { "kho-v1 map page" } else { "radix tree node" }, p, PAGE));
    }

    // Every blob over its whole size: in RAM, no overflow, every page in
    // preserved memory; a blob that would not restore fails the run with
    // the subtree named (`TrackError::SubtreeBlob`).
    for s in inc.subtrees().flatten() {
        inc.check_blob(&s)?;
    }
    let subtrees = inc
        .subtrees()
        .map(|s| match s {
            Ok(s) => SubtreeInfo {
                name: s.name,
                pa: Some(s.pa.as_u64()),
                size: s.size,
                preserved: inc.is_preserved(s.pa, s.size.unwrap_or(PAGE).max(1)).ok(),
                error: None,
                payload: None,
            },
            Err(e) => SubtreeInfo {
                name: match &e {
                    TrackError::SubtreeInvalid { name, .. } => name.clone(),
                    _ => String::new(),
                },
                pa: None,
                size: None,
                preserved: None,
                error: Some(e.to_string()),
                payload: None,
            },
        })
        .collect::<Vec<_>>();
    let mut subtrees = subtrees;
    let mut luo_files = None;
    let mut owners = Vec::new();
    {
        let p = WithTracker::new(image, &inc);
        for s in subtrees.iter_mut().filter(|s| s.error.is_none()) {
            let Some(pa) = s.pa else { continue };
            // Before kho-v3 a subtree has no blob-size: the layers decoded
            // here are those of the kernels that write one.
            let Some(size) = s.size else {
                s.payload = Some(Payload::Opaque);
                continue;
            };
            let (payload, files, mut own) = payload::decode(&p, &s.name, PhysAddr::new(pa), size);
            owners.append(&mut own);
            if files.is_some() {
                luo_files = files;
            }
            s.payload = Some(payload);
        }
    }

    let by_order = (0..64u32)
        .filter(|&o| stats.blocks_by_order[o as usize] != 0)
        .map(|o| {
            let blocks = stats.blocks_by_order[o as usize];
            OrderInfo { order: o, blocks, pages: blocks << o, bytes: (blocks << o) * PAGE }
        })
        .collect();
    let largest = ranges.iter().max_by_key(|&&(a, b)| (b - a, std::cmp::Reverse(a)));
    let report = Report {
        schema_version: SCHEMA_VERSION,
        ok: subtrees.iter().all(|s| s.error.is_none() && !matches!(s.payload, Some(Payload::Error(_)))),
        image: image_info(image),
        root: RootInfo {
            source: root.source,
            fdt_pa: root.data.fdt_addr,
            fdt_size: root.data.fdt_size,
            compatible: inc.compatible().to_string(),
            version: inc.version().compatible().to_string(),
            legacy,
            memory_map_pa: inc.fdt().memory_map().as_u64(),
            fdt_page_preserved,
            candidates: Vec::new(),
            ambiguous: false,
        },
        subtrees,
        scratch: inc.scratch().iter().map(|s| Span { pa: s.addr, size: s.size }).collect(),
        scratch_source: match root.source {
            Source::Note => ScratchSource::Note,
            _ if root.data.scratch_size > 0 => ScratchSource::Option,
            _ => ScratchSource::Unknown,
        },
        preserved: Preserved { blocks: stats.blocks, pages: stats.pages, bytes: stats.pages * PAGE, by_order },
        ranges: Ranges {
            count: ranges.len() as u64,
            total_bytes: ranges.iter().map(|&(a, b)| b - a).sum(),
            largest: largest.map(|&(a, b)| Span { pa: a, size: b - a }),
        },
        tree: TreeInfo {
            format: if legacy { "kho-v1 chunks" } else { "radix-v1" }.to_string(),
            pages: map_pages.len() as u64,
            bytes: map_pages.len() as u64 * PAGE,
        },
    };
    Ok(Analysis { report, ranges, runs, map_pages, luo_files, owners })
}

fn outside(what: &'static str, pa: u64, len: u64) -> Failure {
    Failure::Corrupt {
        kind: "outside_image",
        message: format!("{what} at PA {pa:#x}+{len:#x} is not RAM of the image"),
        detail: format!("OutsideImage {{ what: {what:?}, pa: {pa:#x}, len: {len:#x} }}"),
        errno: Some(Errno::Inval),
    }
}

/// The pages of a `kho-v1` map (chunks and the bitmaps they name), which
/// the import has already validated (each reached once, in RAM).
fn v1_map_pages(image: &Image, first: PhysAddr) -> Result<Vec<PhysAddr>, TrackError> {
    let mut pages = Vec::new();
    let mut pa = first;
    let mut chunks = 0u64;
    while !pa.is_null() && chunks < kho_track::legacy::V1_MAX_CHUNKS {
        pages.push(pa);
        chunks += 1;
        let chunk: V1Chunk = read_phys(image, pa)?;
        let (order, refs) = chunk.validate(image.max_order())?;
        for r in refs {
            pages.push(r.validate(order)?.1);
        }
        pa = PhysAddr::new(chunk.hdr.next);
    }
    Ok(pages)
}

/// Keeps the fault enums in the explanation table honest: every name
/// [`explain`] matches on is a real variant.
#[cfg(test)]
mod tests {
    use super::*;
    use kho_track::{BlockFault, TreeFault};

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
        assert_eq!(errno_name(Errno::Range), "ERANGE");
    }
}
