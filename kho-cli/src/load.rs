//! From a path to a validated handover: open the image, find the root,
//! and, for a scan, validate every candidate, choose the live one and look
//! for its scratch areas in memory. The command line and the fuzz target
//! both go through [`load_handover`].

use std::path::{Path, PathBuf};

use crate::choose::{CandidateInfo, choose};
use crate::find::{FindOptions, Root, Source, find_root, root_at};
use crate::image::{Image, OpenOptions};
use crate::inspect::{Analysis, Failure, analyze};
use crate::progress::Progress;
use crate::scratch::{DEBUGFS_KHO_OUT, Found, ScratchSource, find_scratch, from_debugfs};

/// What to load.
#[derive(Clone, Debug)]
pub struct Request {
    /// The machine image.
    pub path: PathBuf,
    /// How to open it.
    pub open: OpenOptions,
    /// How to find the root.
    pub find: FindOptions,
    /// Whether the analysis collects per-order runs (for the map).
    pub want_runs: bool,
}

/// Why loading failed, with what is known for the report.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub failure: Failure,
    /// The image, when it could be opened.
    pub image: Option<Image>,
    /// For a scan: every candidate with its verdict.
    pub candidates: Vec<CandidateInfo>,
    /// The root that failed, when there was one root.
    pub root: Option<Root>,
}

/// Opens the image, finds the handover and validates it.
pub fn load_handover(req: &Request, progress: &Progress) -> Result<(Image, Analysis), Box<Failed>> {
    let failed = |failure, image, candidates, root| Box::new(Failed { failure, image, candidates, root });
    let image = Image::open_with(&req.path, &req.open).map_err(|e| failed(Failure::Image(e), None, vec![], None))?;
    let root = match find_root(&image, &req.find, progress) {
        Ok(r) => r,
        Err(e) => return Err(failed(e.into(), Some(image), vec![], None)),
    };
    if root.source != Source::Scan {
        return match analyze(&image, &root, req.want_runs, progress) {
            Ok(a) => Ok((image, a)),
            Err(f) => Err(failed(f, Some(image), vec![], Some(root))),
        };
    }
    let choice = choose(&req.path, &req.open, &req.find, &root.candidates, req.want_runs, progress);
    let (image, a) = match choice.result {
        Ok(x) => x,
        Err(f) => return Err(failed(f, Some(image), choice.candidates, None)),
    };
    let (image, mut a) = if req.find.scratch.is_empty() {
        match with_scratch(req, &image, &a, progress) {
            Ok(Some(x)) => x,
            Ok(None) => (image, a),
            Err(f) => return Err(failed(f, Some(image), choice.candidates, None)),
        }
    } else {
        (image, a)
    };
    a.report.root.candidates = choice.candidates;
    a.report.root.ambiguous = choice.ambiguous;
    Ok((image, a))
}

/// The handover `a` of a scan (in `image`), imported again with the
/// scratch areas found in memory (so a block inside one is refused as the
/// next kernel would). Areas from a `setup_data` `kho_data` naming the
/// root are the handover's own: a failure with them is the handover's.
/// Areas from an array found in memory are a finding: if the handover does
/// not import with them, they are not reported and the areas stay unknown
/// (`None`: keep `a`).
fn with_scratch(
    req: &Request,
    image: &Image,
    a: &Analysis,
    progress: &Progress,
) -> Result<Option<(Image, Analysis)>, Failure> {
    let fdt = a.report.root.fdt_pa;
    // A running kernel states its scratch areas in its debugfs; for its
    // own memory (`/proc/kcore`) that is the authority.
    let stated = image.is_live_kernel().then(|| from_debugfs(Path::new(DEBUGFS_KHO_OUT))).flatten();
    let found = match stated {
        Some(areas) => Found { areas, source: ScratchSource::Debugfs, seen_at: Vec::new() },
        None => find_scratch(image, fdt),
    };
    if found.areas.is_empty() {
        return Ok(None);
    }
    let find = FindOptions { scratch: found.areas.clone(), ..req.find.clone() };
    let again = Image::open_with(&req.path, &req.open).map_err(Failure::Image).and_then(|img| {
        let root = root_at(&img, fdt, Source::Scan, &find, &[]).map_err(Failure::from)?;
        let b = analyze(&img, &root, req.want_runs, progress)?;
        Ok((img, b))
    });
    match again {
        Ok((img, mut b)) => {
            b.report.scratch_source = found.source;
            Ok(Some((img, b)))
        }
        Err(f) if matches!(found.source, ScratchSource::SetupData | ScratchSource::Debugfs) => Err(f),
        Err(_) => Ok(None),
    }
}
