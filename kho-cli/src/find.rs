//! Finding the handover root in an image.
//!
//! In order: `--fdt PA` when given (an explicit choice wins over the
//! image); else the image's `"KHO"` note (type 1, `struct kho_data`); else
//! a scan of the image's page-aligned memory for a flattened device tree
//! (magic `0xd00dfeed`, big-endian, at offset 0) whose root `compatible`
//! starts with `kho-v`. The scan reads the first bytes of every page the
//! image holds data for (file holes are skipped), so it is the one step
//! whose time grows with the RAM in the image; it reports progress.
//!
//! Without the note there is no `kho_data`: one is made up with the FDT's
//! PA, the rest of its page as its size, and the scratch areas given with
//! `--scratch` (none by default), whose array is placed in the
//! inspector's private pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dtoolkit::fdt::Fdt;
use dtoolkit::{Node, Property};
use kho_abi::{AbiError, KhoData, KhoScratch, PAGE_SIZE, PhysAddr, write_phys};
use serde::Serialize;

use crate::image::{Image, ImageError, KhoNote};
use crate::progress::Progress;

const PAGE: u64 = PAGE_SIZE as u64;
const FDT_MAGIC: [u8; 4] = 0xd00d_feed_u32.to_be_bytes();

/// Where the root came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The image's `"KHO"` note.
    Note,
    /// `--fdt PA`.
    Option,
    /// The scan of memory.
    Scan,
}

impl Source {
    /// How the source reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Note => "from the image's KHO note",
            Source::Option => "given with --fdt",
            Source::Scan => "found by scanning memory",
        }
    }
}

/// The handover root: the `kho_data` to import and where it came from.
#[derive(Clone, Debug)]
pub struct Root {
    /// What the next kernel would be handed.
    pub data: KhoData,
    /// Where it came from.
    pub source: Source,
    /// For a scan: every PA that held a `kho-v*` FDT, ascending.
    pub candidates: Vec<u64>,
}

/// How to look for the root.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    /// `--fdt PA`.
    pub fdt: Option<u64>,
    /// `--scratch PA:SIZE`, in order.
    pub scratch: Vec<KhoScratch>,
}

/// Why no root was found.
#[derive(Debug)]
pub enum FindError {
    /// The `"KHO"` note exists but is unusable.
    BadNote(String),
    /// No note, no `--fdt`, and the scan found nothing.
    NotFound {
        /// Bytes of memory the scan read pages of.
        scanned: u64,
    },
    /// `--scratch` with a root from the note, which names its own.
    ScratchWithNote,
    /// Reading the image failed.
    Image(ImageError),
    /// Placing the scratch array failed.
    Abi(AbiError),
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FindError::BadNote(what) => write!(f, "bad kho_data note: {what}"),
            FindError::NotFound { scanned } => write!(
                f,
                "no handover root: no KHO note, no --fdt, and no FDT with a kho-v* compatible in {scanned} bytes \
                 of memory scanned"
            ),
            FindError::ScratchWithNote => {
                write!(f, "--scratch applies to a root given with --fdt or found by the scan, not to the KHO note's")
            }
            FindError::Image(e) => write!(f, "{e}"),
            FindError::Abi(e) => write!(f, "placing the scratch array: {e}"),
        }
    }
}

impl std::error::Error for FindError {}

/// Finds the root of the handover in `image`. For a scan, the root is the
/// lowest candidate; [`crate::choose::choose`] validates them all and picks
/// the live one.
pub fn find_root(image: &Image, opts: &FindOptions, progress: &Progress) -> Result<Root, FindError> {
    match (opts.fdt, image.note()) {
        (Some(pa), _) => root_at(image, pa, Source::Option, opts, &[]),
        (None, KhoNote::Present(data)) => {
            if !opts.scratch.is_empty() {
                return Err(FindError::ScratchWithNote);
            }
            Ok(Root { data: *data, source: Source::Note, candidates: Vec::new() })
        }
        (None, KhoNote::Malformed { what }) => Err(FindError::BadNote(what.clone())),
        (None, KhoNote::Absent) => {
            let (candidates, scanned) = scan(image, progress).map_err(FindError::Image)?;
            match candidates.first() {
                Some(&pa) => root_at(image, pa, Source::Scan, opts, &candidates),
                None => Err(FindError::NotFound { scanned }),
            }
        }
    }
}

/// The root at `fdt` (found by `source`): a `kho_data` made up with the
/// FDT's PA, the rest of its page as its size, and the scratch areas of
/// `opts`, whose array is placed in the image's private pages.
pub fn root_at(
    image: &Image,
    fdt: u64,
    source: Source,
    opts: &FindOptions,
    candidates: &[u64],
) -> Result<Root, FindError> {
    let mut data = KhoData { fdt_addr: fdt, fdt_size: PAGE - fdt % PAGE, scratch_addr: 0, scratch_size: 0 };
    if !opts.scratch.is_empty() {
        let bytes = (opts.scratch.len() * size_of::<KhoScratch>()) as u64;
        let array = image.arena_alloc_bytes(bytes).map_err(FindError::Abi)?;
        for (i, s) in opts.scratch.iter().enumerate() {
            let pa = PhysAddr::new(array.as_u64() + (i * size_of::<KhoScratch>()) as u64);
            write_phys(image, pa, s).map_err(FindError::Abi)?;
        }
        data.scratch_addr = array.as_u64();
        data.scratch_size = bytes;
    }
    Ok(Root { data, source, candidates: candidates.to_vec() })
}

/// The root compatible of an FDT at the start of `page`, if it is one.
fn kho_compatible(page: &[u8]) -> Option<Vec<u8>> {
    let total = u32::from_be_bytes(page.get(4..8)?.try_into().ok()?) as usize;
    let fdt = Fdt::new(page.get(..total)?).ok()?;
    let prop = fdt.root().property("compatible")?;
    let value = prop.value();
    value.starts_with(b"kho-v").then(|| value.to_vec())
}

/// Every page-aligned PA holding an FDT whose compatible starts with
/// `kho-v`, and the bytes of memory looked at.
fn scan(image: &Image, progress: &Progress) -> Result<(Vec<u64>, u64), ImageError> {
    let ranges = image.data_ranges()?;
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let done = Arc::new(AtomicU64::new(0));
    let _phase = progress.phase("scanning memory for a kho-v* FDT", "MiB", done.clone(), Some(total >> 20));
    let mut found = Vec::new();
    let mut page = vec![0u8; PAGE_SIZE];
    let mut seen = 0u64;
    for r in ranges {
        let mut pa = r.start.next_multiple_of(PAGE);
        while pa < r.end {
            let mut magic = [0u8; 4];
            if image.read_original(pa, &mut magic).is_some() && magic == FDT_MAGIC {
                let len = PAGE.min(r.end - pa) as usize;
                page[len..].fill(0);
                if image.read_original(pa, &mut page[..len]).is_some() && kho_compatible(&page).is_some() {
                    found.push(pa);
                }
            }
            pa += PAGE;
            seen += PAGE;
            if seen.is_multiple_of(1 << 20) {
                done.store(seen >> 20, Ordering::Relaxed);
            }
        }
    }
    done.store(seen >> 20, Ordering::Relaxed);
    Ok((found, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatible_prefix_is_required() {
        let dtb = kho_track::fdt::build("kho-v4", PhysAddr::new(0x1000), &[]).unwrap();
        let mut page = vec![0u8; PAGE_SIZE];
        page[..dtb.len()].copy_from_slice(&dtb);
        assert_eq!(kho_compatible(&page).as_deref(), Some(&b"kho-v4\0"[..]));
        let other = kho_track::fdt::build("linux,dummy", PhysAddr::new(0x1000), &[]).unwrap();
        page.fill(0);
        page[..other.len()].copy_from_slice(&other);
        assert_eq!(kho_compatible(&page), None);
        // A totalsize beyond the page is not an FDT here.
        page[4..8].copy_from_slice(&(PAGE_SIZE as u32 + 1).to_be_bytes());
        assert_eq!(kho_compatible(&page), None);
        assert_eq!(kho_compatible(&[0xd0, 0x0d]), None);
    }
}
