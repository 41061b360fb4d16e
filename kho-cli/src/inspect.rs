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
use kho_abi::{Claim, Errno, Order, PAGE_SIZE, PageAlloc, PhysAddr, WithTracker, read_phys};
use kho_track::{ImportLimits, Incoming, TrackError};

use crate::find::{Root, Source};
use crate::image::Image;
use crate::payload::{self, LuoFiles, Owner, Payload};
use crate::progress::Progress;
use crate::report::{
    ImageInfo, Location, OrderInfo, Preserved, Ranges, Report, RootInfo, SCHEMA_VERSION, Span, SubtreeInfo, TreeInfo,
};
use crate::scratch::ScratchSource;

// The failure an inspection ends in, and its wording, belong to the
// report; kept reachable here for the modules that run inspections.
pub use crate::report::{Failure, explain};

const PAGE: u64 = PAGE_SIZE as u64;

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
        at: Box::new(Location { pa: Some(pa), value: Some(len), field: Some(what.to_string()), ..Location::default() }),
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
