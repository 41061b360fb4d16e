//! Choosing the handover among several roots found by the scan.
//!
//! A kernel that was itself booted by KHO keeps its predecessor's root FDT
//! in memory (it still uses it), but that root's radix tree pages were
//! freed during boot and reused. A scan therefore finds two (or, along a
//! chain, more) `kho-v*` roots, and the lowest PA is not necessarily the
//! live one. Each candidate is validated on its own, in a fresh private
//! copy of the image (an import claims pages in the tree it walks, and a
//! stale tree may share pages with the live one), and ranked by what a
//! next kernel needs of a live handover, in this order:
//!
//! 1. it imports cleanly (the whole tree and every block);
//! 2. its root FDT page is preserved (the next kernel keeps using it);
//! 3. every subtree blob is preserved;
//! 4. it preserves something.
//!
//! The best rank wins. Candidates that tie are told apart by the kexec
//! count of their `kexec-metadata` subtree (a later kernel in a chain
//! counts higher); when that does not decide either, the choice is
//! reported as ambiguous. Every candidate is listed with its verdict and,
//! for those that lost, why.

use crate::find::{FindOptions, Root, Source, root_at};
use crate::image::{Image, OpenOptions};
use crate::inspect::{Analysis, Failure, analyze};
use crate::progress::Progress;

pub use crate::report::{CandidateInfo, Verdict};

/// The outcome of validating every candidate.
#[derive(Debug)]
pub struct Choice {
    /// The chosen root's image and analysis, or the failure to report when
    /// no candidate imports (that of the lowest candidate).
    pub result: Result<(Image, Analysis), Failure>,
    /// Every candidate, ascending by PA.
    pub candidates: Vec<CandidateInfo>,
    /// Whether two or more candidates were equally good.
    pub ambiguous: bool,
}

/// A candidate's image and analysis, or why it does not import.
type Attempt = Result<(Image, Analysis), Failure>;

/// How a candidate ranks: higher is better, compared in field order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    imports: bool,
    fdt_page_preserved: bool,
    blobs_preserved: bool,
    preserves_something: bool,
}

/// Why a candidate of rank `r` is worse than one of rank `best` (the first
/// criterion it fails that the best one meets).
fn why_lost(r: Rank, best: Rank, failure: Option<&Failure>) -> String {
    if !r.imports {
        let why = match failure {
            Some(Failure::Corrupt { message, .. }) => message.clone(),
            Some(f) => f.message(),
            None => String::new(),
        };
        return format!("does not import: {why}");
    }
    if best.fdt_page_preserved && !r.fdt_page_preserved {
        return "its root FDT page is not preserved (a next kernel keeps using it)".into();
    }
    if best.blobs_preserved && !r.blobs_preserved {
        return "a subtree blob is not preserved".into();
    }
    if best.preserves_something && !r.preserves_something {
        return "its tree preserves nothing".into();
    }
    "an older handover: a lower kexec count than the chosen root's".into()
}

fn rank(a: &Analysis) -> Rank {
    let r = &a.report;
    Rank {
        imports: true,
        fdt_page_preserved: r.root.fdt_page_preserved,
        blobs_preserved: r.subtrees.iter().all(|s| s.error.is_none() && s.preserved == Some(true)),
        preserves_something: r.preserved.blocks > 0,
    }
}

/// Validates the handover at each of `candidates` (PAs found by the scan
/// of the image at `path`) and picks the live one.
pub fn choose(
    path: &std::path::Path,
    open: &OpenOptions,
    opts: &FindOptions,
    candidates: &[u64],
    want_runs: bool,
    progress: &Progress,
) -> Choice {
    let mut tried: Vec<(u64, Attempt)> = Vec::new();
    for &pa in candidates {
        let attempt = Image::open_with(path, open).map_err(Failure::Image).and_then(|image| {
            let root: Root = root_at(&image, pa, Source::Scan, opts, candidates).map_err(Failure::from)?;
            let a = analyze(&image, &root, want_runs, progress)?;
            Ok((image, a))
        });
        tried.push((pa, attempt));
    }
    let ranks: Vec<Rank> =
        tried.iter().map(|(_, t)| t.as_ref().map_or(Rank::default_failed(), |(_, a)| rank(a))).collect();
    let counts: Vec<Option<u32>> =
        tried.iter().map(|(_, t)| t.as_ref().ok().and_then(|(image, a)| kexec_count(image, a))).collect();
    // PANICS: none; `candidates` is never empty (the scan found them).
    let best_rank = ranks.iter().copied().max().unwrap_or(Rank::default_failed());
    let tied: Vec<usize> = (0..tried.len()).filter(|&i| ranks[i] == best_rank).collect();
    let best_count = tied.iter().filter_map(|&i| counts[i]).max();
    let finalists: Vec<usize> =
        if best_count.is_some() { tied.iter().copied().filter(|&i| counts[i] == best_count).collect() } else { tied };
    let chosen = finalists.first().copied().unwrap_or(0);
    let ambiguous = best_rank.imports && finalists.len() > 1;

    let mut infos = Vec::with_capacity(tried.len());
    for (i, (pa, t)) in tried.iter().enumerate() {
        let failure = t.as_ref().err();
        let (verdict, reason) = if i == chosen && best_rank.imports {
            (Verdict::Chosen, None)
        } else if !ranks[i].imports {
            (Verdict::Corrupt, Some(why_lost(ranks[i], best_rank, failure)))
        } else if ambiguous && finalists.contains(&i) {
            (Verdict::Stale, Some("as good as the chosen root (ambiguous: the lowest PA was taken)".into()))
        } else {
            (Verdict::Stale, Some(why_lost(ranks[i], best_rank, failure)))
        };
        infos.push(CandidateInfo {
            fdt_pa: *pa,
            verdict,
            reason,
            blocks: t.as_ref().ok().map(|(_, a)| a.report.preserved.blocks),
            kexec_count: counts[i],
        });
    }
    let result =
        tried.into_iter().nth(chosen).map_or_else(|| Err(Failure::NotFound("no candidate root".into())), |(_, t)| t);
    Choice { result, candidates: infos, ambiguous }
}

impl Rank {
    fn default_failed() -> Rank {
        Rank { imports: false, fdt_page_preserved: false, blobs_preserved: false, preserves_something: false }
    }
}

/// The `kexec_count` of the handover's `kexec-metadata` subtree (version
/// 1: `u32 version`, `char previous_release[65]`, `u32 kexec_count`,
/// packed), if it has a readable one.
fn kexec_count(image: &Image, a: &Analysis) -> Option<u32> {
    let s = a.report.subtrees.iter().find(|s| s.name == "kexec-metadata" && s.error.is_none())?;
    let mut blob = [0u8; 73];
    if s.size.is_some_and(|z| z < blob.len() as u64) {
        return None;
    }
    image.read_original(s.pa?, &mut blob)?;
    (u32::from_ne_bytes(blob[..4].try_into().ok()?) == 1)
        .then(|| u32::from_ne_bytes(blob[69..73].try_into().unwrap_or_default()))
}
