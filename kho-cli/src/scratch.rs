//! Finding the scratch areas of a handover in memory, for an image that
//! carries no `kho_data` (a QEMU dump, `/proc/kcore`).
//!
//! The scratch areas are named by the scratch array, which a kernel keeps
//! in a page of its own (allocated page aligned at boot, or, in a kernel
//! booted by KHO, the predecessor's array, itself a page-aligned kexec
//! segment). Two places are searched, in order:
//!
//! 1. A `setup_data` entry of type `SETUP_KEXEC_KHO` whose `kho_data` names
//!    the chosen root FDT (a kexec-point image holds the one the kernel is
//!    about to hand over): its `scratch_addr` and `scratch_size`. If the
//!    array at `scratch_addr` is in place, it is the answer; if it is not
//!    yet there (a kexec segment is copied to its destination only in the
//!    final jump), the size tells how many entries to look for.
//! 2. Page starts holding a scratch array: entries `{addr, size}` both
//!    non-zero multiples of a pageblock (4 MiB on x86-64), in RAM, not
//!    overlapping,
//!    followed by an all-zero entry or the end of the page (and exactly
//!    as many as `kho_data` says, when step 1 found one).
//!
//! Every array found must be the same list; different lists make the
//! answer unknown rather than a guess. The handover is then imported with
//! the areas, so a block inside one is refused as the next kernel would.

use kho_abi::{KhoData, KhoScratch, PAGE_SIZE};
use serde::Serialize;

use crate::image::Image;

const PAGE: u64 = PAGE_SIZE as u64;
/// `SETUP_KEXEC_KHO`, the x86 `setup_data` type of `kho_data`.
const SETUP_KEXEC_KHO: u32 = 10;
/// The alignment of a scratch area's start and size: Linux allocates them
/// in whole pageblocks (`CMA_MIN_ALIGNMENT_BYTES`: 1024 pages, 4 MiB on
/// x86-64), and a next kernel refuses others.
const AREA_ALIGN: u64 = PAGE << 10;
/// Entries a scratch array may have (lowmem, global, one per NUMA node).
const MAX_ENTRIES: usize = (PAGE as usize) / size_of::<KhoScratch>();

/// Where the scratch areas of a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScratchSource {
    /// The image's `"KHO"` note (`kho_data`).
    Note,
    /// `--scratch` on the command line.
    Option,
    /// A `setup_data` `kho_data` naming the root, and its array in place.
    SetupData,
    /// A scratch array found in memory (all copies agreeing).
    Memory,
    /// The running kernel's debugfs (`kho/out/scratch_phys` and
    /// `scratch_len`), for `/proc/kcore`.
    Debugfs,
    /// Not found: the import could not check blocks against them.
    Unknown,
}

impl ScratchSource {
    /// How the source reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            ScratchSource::Note => "from the KHO note",
            ScratchSource::Option => "given with --scratch",
            ScratchSource::SetupData => "from a setup_data kho_data naming this root",
            ScratchSource::Memory => "from a scratch array found in memory",
            ScratchSource::Debugfs => "from the running kernel's debugfs (kho/out/scratch_phys, scratch_len)",
            ScratchSource::Unknown => "unknown: not found in memory (name them with --scratch PA:SIZE)",
        }
    }
}

/// What the search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The areas, in array order (empty if unknown).
    pub areas: Vec<KhoScratch>,
    /// Where they came from.
    pub source: ScratchSource,
    /// PAs where an array or a `kho_data` was read, for the report.
    pub seen_at: Vec<u64>,
}

/// Where the running kernel's debugfs lists its scratch areas.
pub const DEBUGFS_KHO_OUT: &str = "/sys/kernel/debug/kho/out";

/// The scratch areas the running kernel states in its debugfs directory
/// `dir` (`scratch_phys` and `scratch_len`: one hexadecimal number a line,
/// in array order), if both files are there and agree in length.
pub fn from_debugfs(dir: &std::path::Path) -> Option<Vec<KhoScratch>> {
    let read = |name: &str| -> Option<Vec<u64>> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        text.split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x").trim_start_matches("0X"), 16).ok())
            .collect()
    };
    let (phys, len) = (read("scratch_phys")?, read("scratch_len")?);
    (phys.len() == len.len() && !phys.is_empty())
        .then(|| phys.into_iter().zip(len).map(|(addr, size)| KhoScratch { addr, size }).collect())
}

/// Searches the image for the scratch areas of the handover whose root FDT
/// is at `fdt`.
pub fn find_scratch(image: &Image, fdt: u64) -> Found {
    let unknown = Found { areas: Vec::new(), source: ScratchSource::Unknown, seen_at: Vec::new() };
    let Ok(ranges) = image.data_ranges() else { return unknown };
    let mut page = vec![0u8; PAGE_SIZE];
    let mut data: Option<(u64, KhoData)> = None;
    'search: for r in &ranges {
        let mut pa = r.start.next_multiple_of(PAGE);
        while pa + PAGE <= r.end {
            if image.read_original(pa, &mut page).is_some() {
                // A `setup_data` header `{u64 next; u32 type; u32 len}`, then
                // the 32-byte `kho_data`.
                for at in (0..PAGE_SIZE - 48).step_by(8) {
                    let word = |o: usize| u64::from_ne_bytes(page[at + o..at + o + 8].try_into().unwrap_or([0; 8]));
                    if word(8) == u64::from(SETUP_KEXEC_KHO) | (32u64 << 32) && word(16) == fdt {
                        let d = KhoData {
                            fdt_addr: word(16),
                            fdt_size: word(24),
                            scratch_addr: word(32),
                            scratch_size: word(40),
                        };
                        data = Some((pa + at as u64, d));
                        break 'search;
                    }
                }
            }
            pa += PAGE;
        }
    }
    let want = data.map(|(_, d)| d.scratch_size / size_of::<KhoScratch>() as u64);
    if let Some((at, d)) = data
        && d.scratch_size > 0
        && d.scratch_size.is_multiple_of(size_of::<KhoScratch>() as u64)
        && d.scratch_size <= PAGE
    {
        let mut bytes = vec![0u8; d.scratch_size as usize];
        if image.read_original(d.scratch_addr, &mut bytes).is_some() {
            let list = entries(&bytes);
            if list.len() as u64 == want.unwrap_or(0) && plausible(image, &list) {
                return Found { areas: list, source: ScratchSource::SetupData, seen_at: vec![at, d.scratch_addr] };
            }
        }
    }
    let mut found: Vec<(u64, Vec<KhoScratch>)> = Vec::new();
    for r in &ranges {
        let mut pa = r.start.next_multiple_of(PAGE);
        while pa + PAGE <= r.end {
            if image.read_original(pa, &mut page).is_some() {
                let list = entries(&page);
                let ok = !list.is_empty() && want.is_none_or(|n| n == list.len() as u64) && plausible(image, &list);
                if ok {
                    found.push((pa, list));
                }
            }
            pa += PAGE;
        }
    }
    match found.first() {
        Some((_, first)) if found.iter().all(|(_, l)| l == first) => Found {
            areas: first.clone(),
            source: ScratchSource::Memory,
            seen_at: found.iter().map(|(pa, _)| *pa).collect(),
        },
        _ => Found { seen_at: found.iter().map(|(pa, _)| *pa).collect(), ..unknown },
    }
}

/// The entries at the start of `bytes` up to the first all-zero one.
fn entries(bytes: &[u8]) -> Vec<KhoScratch> {
    let mut out = Vec::new();
    for e in bytes.chunks_exact(size_of::<KhoScratch>()).take(MAX_ENTRIES) {
        let addr = u64::from_ne_bytes(e[..8].try_into().unwrap_or([0; 8]));
        let size = u64::from_ne_bytes(e[8..].try_into().unwrap_or([0; 8]));
        if addr == 0 && size == 0 {
            break;
        }
        out.push(KhoScratch { addr, size });
    }
    out
}

/// Whether `list` can be a scratch array of this image: every area a
/// non-zero range of RAM aligned to [`AREA_ALIGN`], none overlapping
/// another, and the array ending at an all-zero entry or the page's end
/// (checked by the caller through [`entries`]).
fn plausible(image: &Image, list: &[KhoScratch]) -> bool {
    let aligned = |v: u64| v != 0 && v.is_multiple_of(AREA_ALIGN);
    if !list.iter().all(|s| aligned(s.addr) && aligned(s.size) && image.in_image_ram(s.addr, s.size)) {
        return false;
    }
    let mut spans: Vec<(u64, u64)> = list.iter().map(|s| (s.addr, s.addr + s.size)).collect();
    spans.sort_unstable();
    spans.windows(2).all(|w| w[0].1 <= w[1].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugfs_lists_are_read_in_order_and_must_agree() {
        let dir = std::env::temp_dir().join(format!("kho-debugfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("scratch_phys"), "0x3d000000\n0x35000000\n0x33000000\n").unwrap();
        std::fs::write(dir.join("scratch_len"), "0x1000000\n0x8000000\n0x2000000\n").unwrap();
        let got = from_debugfs(&dir).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[1].addr, got[1].size), (0x3500_0000, 0x800_0000));
        std::fs::write(dir.join("scratch_len"), "0x1000000\n").unwrap();
        assert_eq!(from_debugfs(&dir), None, "lists of different lengths");
        std::fs::write(dir.join("scratch_len"), "0x1000000\nzz\n0x1\n").unwrap();
        assert_eq!(from_debugfs(&dir), None, "not a number");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_debugfs(&dir), None, "no directory");
    }
}
