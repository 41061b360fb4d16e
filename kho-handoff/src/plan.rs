//! Checking a producer's memory plan before anything is loaded.
//!
//! A loader that hands a KHO handover to a next kernel places four kinds
//! of memory: the scratch areas (where the next kernel allocates while it
//! boots), the preserved blocks (the handover's data, its FDTs and radix
//! tree), its own boot data (kernel window, initrd, zero page, command
//! line, `setup_data`, entry stub) and the segments that carry all of it to
//! their physical addresses. The next kernel checks almost none of it: a
//! wrong address crashes it before its console starts. [`Plan::check`] applies
//! the rules a Linux 7.2 kernel depends on:
//!
//! - scratch areas are RAM, 4 MiB aligned (start and size), at least one
//!   starts below 4 GiB, and together they are at least the required size;
//! - preserved blocks are RAM, not in scratch, not below 1 MiB, and do not
//!   overlap any boot window;
//! - at most [`MAX_SEGMENTS`] segments, page aligned, disjoint, inside RAM,
//!   together at most half of RAM (the kexec loader's own limits).
//!
//! [`coalesce`] batches runs of pages into few segments, and [`Layout`]
//! places a kernel, its initrd and boot pages in a scratch area and finds
//! room for the handover after it.

use kho_abi::{Errno, KhoScratch, PAGE_SIZE, ToErrno};

use crate::x86::bzimage::BzImage;

/// The most segments `kexec_load` takes.
pub const MAX_SEGMENTS: usize = 16;
/// Alignment of a scratch area's start and size.
pub const SCRATCH_ALIGN: u64 = 4 << 20;
/// Below this address nothing may be preserved (the next kernel treats
/// the first MiB as scratch while it boots).
pub const LOW_LIMIT: u64 = 1 << 20;
/// The next kernel's early allocations in a 1 GiB guest with a 16 MiB log
/// buffer measured 93.6 MiB; the default leaves a margin.
pub const DEFAULT_SCRATCH_RESERVE: u64 = 96 << 20;

const PAGE: u64 = PAGE_SIZE as u64;
const FOUR_GIB: u64 = 1 << 32;

/// A named physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// What it holds (`"kernel"`, `"initrd"`, `"setup_data"`, ...).
    pub what: &'static str,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// One segment: `memsz` bytes at `mem`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentRange {
    /// Destination PA.
    pub mem: u64,
    /// Destination bytes.
    pub memsz: u64,
}

/// Why a plan is unsafe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The scratch areas together are smaller than the next kernel needs.
    #[error("scratch areas total {total:#x} bytes, the next kernel needs at least {need:#x}")]
    ScratchTooSmall {
        /// Bytes of all scratch areas.
        total: u64,
        /// Bytes required.
        need: u64,
    },
    /// A scratch area whose start or size is not 4 MiB aligned.
    #[error("scratch area {addr:#x}+{size:#x} is not 4 MiB aligned")]
    ScratchMisaligned {
        /// Its start.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// No scratch area starts below 4 GiB.
    #[error("no scratch area starts below 4 GiB")]
    NoLowScratch,
    /// A scratch area that is not wholly RAM.
    #[error("scratch area {addr:#x}+{size:#x} is not RAM")]
    ScratchNotRam {
        /// Its start.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// A preserved block that is not wholly RAM.
    #[error("preserved block {pa:#x}+{bytes:#x} is not RAM")]
    PreservedNotRam {
        /// Its PA.
        pa: u64,
        /// Its bytes.
        bytes: u64,
    },
    /// A preserved block below 1 MiB.
    #[error("preserved block {pa:#x}+{bytes:#x} lies below 1 MiB")]
    PreservedLow {
        /// Its PA.
        pa: u64,
        /// Its bytes.
        bytes: u64,
    },
    /// A preserved block inside a scratch area.
    #[error("preserved block {pa:#x}+{bytes:#x} overlaps scratch area {scratch:#x}")]
    PreservedInScratch {
        /// Its PA.
        pa: u64,
        /// Its bytes.
        bytes: u64,
        /// The scratch area's start.
        scratch: u64,
    },
    /// A preserved block overlapping a boot window.
    #[error("preserved block {pa:#x}+{bytes:#x} overlaps the {what} at {start:#x}..{end:#x}")]
    PreservedOverlaps {
        /// Its PA.
        pa: u64,
        /// Its bytes.
        bytes: u64,
        /// The window's name.
        what: &'static str,
        /// The window's start.
        start: u64,
        /// The window's end.
        end: u64,
    },
    /// More segments than `kexec_load` takes.
    #[error("{count} segments, at most {max}")]
    TooManySegments {
        /// Segments planned.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A segment that is empty or not page aligned.
    #[error("segment {index} ({mem:#x}+{memsz:#x}) is empty or not page aligned")]
    SegmentMisaligned {
        /// Its index.
        index: usize,
        /// Its destination.
        mem: u64,
        /// Its size.
        memsz: u64,
    },
    /// A segment that is not wholly RAM.
    #[error("segment {index} ({mem:#x}+{memsz:#x}) is not RAM")]
    SegmentNotRam {
        /// Its index.
        index: usize,
        /// Its destination.
        mem: u64,
        /// Its size.
        memsz: u64,
    },
    /// Two segments overlapping.
    #[error("segments {a} and {b} overlap")]
    SegmentsOverlap {
        /// One segment's index.
        a: usize,
        /// The other's.
        b: usize,
    },
    /// RAM has no room for a part of the plan.
    #[error("no RAM for {what} ({bytes:#x} bytes)")]
    NoRoom {
        /// The part.
        what: &'static str,
        /// Its bytes.
        bytes: u64,
    },
    /// Segments covering more than half of RAM.
    #[error("segments total {total:#x} bytes, more than half of RAM ({limit:#x})")]
    TooLarge {
        /// Bytes of all segments.
        total: u64,
        /// Half of RAM.
        limit: u64,
    },
}

impl PlanError {
    /// The variant's stable name.
    pub const fn kind(&self) -> &'static str {
        match self {
            PlanError::ScratchTooSmall { .. } => "scratch_too_small",
            PlanError::ScratchMisaligned { .. } => "scratch_misaligned",
            PlanError::NoLowScratch => "no_low_scratch",
            PlanError::ScratchNotRam { .. } => "scratch_not_ram",
            PlanError::PreservedNotRam { .. } => "preserved_not_ram",
            PlanError::PreservedLow { .. } => "preserved_low",
            PlanError::PreservedInScratch { .. } => "preserved_in_scratch",
            PlanError::PreservedOverlaps { .. } => "preserved_overlaps",
            PlanError::TooManySegments { .. } => "too_many_segments",
            PlanError::SegmentMisaligned { .. } => "segment_misaligned",
            PlanError::SegmentNotRam { .. } => "segment_not_ram",
            PlanError::SegmentsOverlap { .. } => "segments_overlap",
            PlanError::TooLarge { .. } => "too_large",
            PlanError::NoRoom { .. } => "no_room",
        }
    }
}

/// Every unsafe plan is an invalid argument to the loader.
impl ToErrno for PlanError {
    fn errno(&self) -> Errno {
        Errno::Inval
    }
}

/// Whether `[start, start + len)` lies inside one of the RAM ranges
/// (`(start, end)` pairs; adjacent ranges count as one only if the caller
/// merged them).
pub fn in_ram(ram: &[(u64, u64)], start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else { return false };
    ram.iter().any(|&(s, e)| s <= start && end <= e)
}

fn overlaps(a: u64, alen: u64, b: u64, bend: u64) -> bool {
    a < bend && b < a.saturating_add(alen)
}

/// What a plan is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    /// The next kernel's usable RAM, as sorted, merged `(start, end)` ranges.
    pub ram: &'a [(u64, u64)],
    /// The scratch areas.
    pub scratch: &'a [KhoScratch],
    /// The least total scratch the next kernel needs.
    pub min_scratch: u64,
    /// Ranges the loader's own boot data occupies.
    pub windows: &'a [Window],
    /// The segments.
    pub segments: &'a [SegmentRange],
}

impl Plan<'_> {
    /// Checks the scratch areas and the segments.
    pub fn check(&self) -> Result<(), PlanError> {
        let mut total = 0u64;
        let mut low = false;
        for s in self.scratch {
            if s.addr % SCRATCH_ALIGN != 0 || s.size % SCRATCH_ALIGN != 0 || s.size == 0 {
                return Err(PlanError::ScratchMisaligned { addr: s.addr, size: s.size });
            }
            if !in_ram(self.ram, s.addr, s.size) {
                return Err(PlanError::ScratchNotRam { addr: s.addr, size: s.size });
            }
            low |= s.addr < FOUR_GIB;
            total = total.saturating_add(s.size);
        }
        if total < self.min_scratch {
            return Err(PlanError::ScratchTooSmall { total, need: self.min_scratch });
        }
        if !low {
            return Err(PlanError::NoLowScratch);
        }
        self.check_segments()
    }

    fn check_segments(&self) -> Result<(), PlanError> {
        let segs = self.segments;
        if segs.len() > MAX_SEGMENTS {
            return Err(PlanError::TooManySegments { count: segs.len(), max: MAX_SEGMENTS });
        }
        let mut total = 0u64;
        for (i, s) in segs.iter().enumerate() {
            if s.memsz == 0 || s.mem % PAGE != 0 || s.memsz % PAGE != 0 {
                return Err(PlanError::SegmentMisaligned { index: i, mem: s.mem, memsz: s.memsz });
            }
            if !in_ram(self.ram, s.mem, s.memsz) {
                return Err(PlanError::SegmentNotRam { index: i, mem: s.mem, memsz: s.memsz });
            }
            if let Some(j) = segs[..i].iter().position(|o| overlaps(s.mem, s.memsz, o.mem, o.mem + o.memsz)) {
                return Err(PlanError::SegmentsOverlap { a: j, b: i });
            }
            total = total.saturating_add(s.memsz);
        }
        let ram: u64 = self.ram.iter().map(|&(s, e)| e - s).sum();
        if total > ram / 2 {
            return Err(PlanError::TooLarge { total, limit: ram / 2 });
        }
        Ok(())
    }

    /// Checks one preserved block of `bytes` at `pa`.
    pub fn check_preserved(&self, pa: u64, bytes: u64) -> Result<(), PlanError> {
        if !in_ram(self.ram, pa, bytes) {
            return Err(PlanError::PreservedNotRam { pa, bytes });
        }
        if pa < LOW_LIMIT {
            return Err(PlanError::PreservedLow { pa, bytes });
        }
        if let Some(s) = self.scratch.iter().find(|s| overlaps(pa, bytes, s.addr, s.addr.saturating_add(s.size))) {
            return Err(PlanError::PreservedInScratch { pa, bytes, scratch: s.addr });
        }
        if let Some(w) = self.windows.iter().find(|w| w.start < w.end && overlaps(pa, bytes, w.start, w.end)) {
            return Err(PlanError::PreservedOverlaps { pa, bytes, what: w.what, start: w.start, end: w.end });
        }
        Ok(())
    }
}

const fn up(x: u64, a: u64) -> u64 {
    x.div_ceil(a).saturating_mul(a)
}

/// The lowest `align`-aligned start at or above `from` where `len` bytes of
/// RAM fit, ending at or below `limit`.
pub fn fit(ram: &[(u64, u64)], from: u64, len: u64, align: u64, limit: u64) -> Option<u64> {
    ram.iter().find_map(|&(s, e)| {
        let start = up(s.max(from), align);
        let end = start.checked_add(len)?;
        (end <= e && end <= limit).then_some(start)
    })
}

/// Pages of boot data a loader places after the initrd: the zero page, the
/// command line, the `setup_data` entry and the entry stub with its stack.
pub const BOOT_PAGES: u64 = 4;

/// What a [`Layout`] is made from.
#[derive(Clone, Copy, Debug)]
pub struct LayoutRequest<'a> {
    /// The next kernel's usable RAM, sorted and merged.
    pub ram: &'a [(u64, u64)],
    /// The kernel's header.
    pub kernel: &'a BzImage,
    /// Bytes of the initrd (0: none).
    pub initrd_len: u64,
    /// Total bytes of scratch; `None`: what the windows need plus
    /// `min_scratch_free`, 4 MiB rounded.
    pub scratch_size: Option<u64>,
    /// Where scratch starts; `None`: the lowest fit at or above the
    /// kernel's preferred address, below 4 GiB.
    pub scratch_addr: Option<u64>,
    /// Scratch left free for the next kernel's early allocations.
    pub min_scratch_free: u64,
}

/// Where a loader puts the next kernel's boot data: one scratch area
/// holding, from its start, the kernel's window, the initrd (1 MiB
/// aligned) and the [`BOOT_PAGES`], then free room. This is how a KHO
/// kernel's own `kexec_file_load` places its segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The scratch area.
    pub scratch: KhoScratch,
    /// The kernel's load address (its protected-mode part).
    pub load: u64,
    /// The kernel's window: load address to the end of `init_size`.
    pub kernel: Window,
    /// The initrd's range (empty when there is none).
    pub initrd: Window,
    /// The boot pages.
    pub boot: Window,
    /// Bytes of scratch after the boot pages.
    pub scratch_free: u64,
    /// The least scratch this layout needs.
    pub need: u64,
}

impl Layout {
    /// Places the boot data and checks the scratch rules ([`Plan::check`]
    /// without segments).
    pub fn new(r: &LayoutRequest<'_>) -> Result<Layout, PlanError> {
        let bz = r.kernel;
        let window = up(bz.init_size, bz.kernel_alignment);
        let initrd_room = up(r.initrd_len, 1 << 20);
        let placed = window + initrd_room + BOOT_PAGES * PAGE;
        let need = placed.saturating_add(r.min_scratch_free);
        let size = r.scratch_size.unwrap_or(up(need, SCRATCH_ALIGN));
        let from = bz.pref_address.max(LOW_LIMIT);
        let addr = match r.scratch_addr {
            Some(a) => a,
            None => fit(r.ram, from, size, SCRATCH_ALIGN, FOUR_GIB)
                .ok_or(PlanError::NoRoom { what: "a scratch area below 4 GiB", bytes: size })?,
        };
        let load = up(addr, bz.kernel_alignment);
        let (kstart, kend) = bz.window(load);
        let initrd_pa = up(kend, 1 << 20);
        let boot_pa = initrd_pa + initrd_room;
        let boot_end = boot_pa + BOOT_PAGES * PAGE;
        let end = addr.saturating_add(size);
        let layout = Layout {
            scratch: KhoScratch { addr, size },
            load,
            kernel: Window { what: "kernel window", start: kstart, end: kend },
            initrd: Window { what: "initrd", start: initrd_pa, end: initrd_pa + r.initrd_len },
            boot: Window {
                what: "boot pages (zero page, command line, setup_data, entry stub)",
                start: boot_pa,
                end: boot_end,
            },
            scratch_free: end.saturating_sub(boot_end),
            need,
        };
        if boot_end > end || layout.scratch_free < r.min_scratch_free {
            return Err(PlanError::ScratchTooSmall { total: size, need });
        }
        let windows = layout.windows();
        Plan { ram: r.ram, scratch: &[layout.scratch], min_scratch: need, windows: &windows, segments: &[] }.check()?;
        Ok(layout)
    }

    /// The boot windows (an empty initrd window matches nothing).
    pub fn windows(&self) -> [Window; 3] {
        [self.kernel, self.initrd, self.boot]
    }

    /// PA of the zero page (first boot page).
    pub fn zero_page(&self) -> u64 {
        self.boot.start
    }

    /// PA of the command line (second boot page).
    pub fn cmdline(&self) -> u64 {
        self.boot.start + PAGE
    }

    /// PA of the `setup_data` entry (third boot page).
    pub fn setup_data(&self) -> u64 {
        self.boot.start + 2 * PAGE
    }

    /// PA of the entry stub (fourth boot page; its stack ends the page).
    pub fn stub(&self) -> u64 {
        self.boot.start + 3 * PAGE
    }

    /// Where `len` bytes of handover fit after the scratch area, 4 MiB
    /// aligned (so nothing preserved can lie in scratch, below 1 MiB or in
    /// a boot window).
    pub fn place_arena(&self, ram: &[(u64, u64)], len: u64) -> Result<u64, PlanError> {
        let from = self.scratch.addr.saturating_add(self.scratch.size).max(LOW_LIMIT);
        fit(ram, from, len, SCRATCH_ALIGN, u64::MAX)
            .ok_or(PlanError::NoRoom { what: "the handover after scratch", bytes: len })
    }
}

/// Batches sorted, disjoint page-aligned runs `(start, end)` into at most
/// `max` runs by closing the smallest gaps first (the gap's pages are
/// carried as zeros). Runs that touch are merged first. Returns how many
/// runs of `runs` are in use.
pub fn coalesce(runs: &mut [(u64, u64)], max: usize) -> usize {
    let mut n = 0;
    for i in 0..runs.len() {
        let r = runs[i];
        if n > 0 && runs[n - 1].1 >= r.0 {
            runs[n - 1].1 = runs[n - 1].1.max(r.1);
        } else {
            runs[n] = r;
            n += 1;
        }
    }
    while n > max.max(1) {
        // The smallest gap between neighbours: n is at most the input's
        // length, so this is quadratic only in the runs kept.
        let mut best = 0;
        for i in 1..n - 1 {
            if runs[i + 1].0 - runs[i].1 < runs[best + 1].0 - runs[best].1 {
                best = i;
            }
        }
        runs[best].1 = runs[best + 1].1;
        runs.copy_within(best + 2..n, best + 1);
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;
    const RAM: [(u64, u64); 2] = [(0x1000, 0x9f000), (M, 1024 * M)];

    fn plan<'a>(scratch: &'a [KhoScratch], windows: &'a [Window], segs: &'a [SegmentRange]) -> Plan<'a> {
        Plan { ram: &RAM, scratch, min_scratch: 96 * M, windows, segments: segs }
    }

    #[test]
    fn a_sound_plan_passes_and_every_rule_refuses() {
        let scratch = [KhoScratch { addr: 16 * M, size: 128 * M }];
        let windows = [Window { what: "kernel", start: 16 * M, end: 29 * M }];
        let segs = [SegmentRange { mem: 16 * M, memsz: 13 * M }, SegmentRange { mem: 144 * M, memsz: 8 * M }];
        let p = plan(&scratch, &windows, &segs);
        assert_eq!(p.check(), Ok(()));
        assert_eq!(p.check_preserved(144 * M, 4096), Ok(()));
        assert_eq!(p.check_preserved(0x8000, 4096).map_err(|e| e.kind()), Err("preserved_low"));
        assert_eq!(p.check_preserved(20 * M, 4096).map_err(|e| e.kind()), Err("preserved_in_scratch"));
        assert_eq!(p.check_preserved(2000 * M, 4096).map_err(|e| e.kind()), Err("preserved_not_ram"));
        let w = [Window { what: "initrd", start: 200 * M, end: 210 * M }];
        assert_eq!(
            plan(&scratch, &w, &segs).check_preserved(209 * M, 2 * M),
            Err(PlanError::PreservedOverlaps {
                pa: 209 * M,
                bytes: 2 * M,
                what: "initrd",
                start: 200 * M,
                end: 210 * M
            })
        );

        let kind = |s: &[KhoScratch], segs: &[SegmentRange]| plan(s, &windows, segs).check().map_err(|e| e.kind());
        assert_eq!(kind(&[KhoScratch { addr: 16 * M, size: 64 * M }], &segs), Err("scratch_too_small"));
        assert_eq!(kind(&[KhoScratch { addr: 18 * M, size: 128 * M }], &segs), Err("scratch_misaligned"));
        assert_eq!(kind(&[KhoScratch { addr: 1000 * M, size: 128 * M }], &segs), Err("scratch_not_ram"));
        let ram5 = [(M, 8192 * M)];
        let high = [KhoScratch { addr: 4096 * M, size: 128 * M }];
        assert_eq!(
            Plan { ram: &ram5, scratch: &high, min_scratch: 0, windows: &[], segments: &[] }.check(),
            Err(PlanError::NoLowScratch)
        );
        let many = [SegmentRange { mem: 200 * M, memsz: 4096 }; 17];
        assert_eq!(kind(&scratch, &many), Err("too_many_segments"));
        assert_eq!(kind(&scratch, &[SegmentRange { mem: 200 * M + 8, memsz: 4096 }]), Err("segment_misaligned"));
        assert_eq!(kind(&scratch, &[SegmentRange { mem: 1020 * M, memsz: 8 * M }]), Err("segment_not_ram"));
        let two = [SegmentRange { mem: 200 * M, memsz: 2 * M }, SegmentRange { mem: 201 * M, memsz: M }];
        assert_eq!(kind(&scratch, &two), Err("segments_overlap"));
        assert_eq!(kind(&scratch, &[SegmentRange { mem: 100 * M, memsz: 600 * M }]), Err("too_large"));
    }

    #[test]
    fn the_layout_puts_boot_data_at_the_start_of_scratch() {
        let img = crate::x86::bzimage::tests::image(2048);
        let bz = BzImage::parse(&img).unwrap();
        let req = LayoutRequest {
            ram: &RAM,
            kernel: &bz,
            initrd_len: 9 * M + 5,
            scratch_size: None,
            scratch_addr: None,
            min_scratch_free: 96 * M,
        };
        let l = Layout::new(&req).unwrap();
        assert_eq!(l.scratch.addr, 16 * M, "from the preferred address");
        assert_eq!(l.scratch.size % SCRATCH_ALIGN, 0);
        assert_eq!(l.load, 16 * M);
        assert_eq!((l.kernel.start, l.kernel.end), (16 * M, 16 * M + 0xc7_a000));
        assert_eq!(l.initrd.start, 29 * M, "1 MiB after the window");
        assert_eq!(l.boot.start, 39 * M);
        assert_eq!(
            (l.zero_page(), l.cmdline(), l.setup_data(), l.stub()),
            (39 * M, 39 * M + 4096, 39 * M + 8192, 39 * M + 12288)
        );
        assert!(l.scratch_free >= 96 * M);
        let arena = l.place_arena(&RAM, 64 * M).unwrap();
        assert!(arena >= l.scratch.addr + l.scratch.size && arena.is_multiple_of(SCRATCH_ALIGN));
        assert_eq!(l.place_arena(&RAM, 2000 * M).map_err(|e| e.kind()), Err("no_room"));
        let small = LayoutRequest { scratch_size: Some(32 * M), ..req };
        assert_eq!(Layout::new(&small).map_err(|e| e.kind()), Err("scratch_too_small"));
        let high = LayoutRequest { scratch_addr: Some(1000 * M), ..req };
        assert_eq!(Layout::new(&high).map_err(|e| e.kind()), Err("scratch_not_ram"));
        let huge = LayoutRequest { min_scratch_free: 2000 * M, ..req };
        assert_eq!(Layout::new(&huge).map_err(|e| e.kind()), Err("no_room"));
    }

    #[test]
    fn coalesce_closes_the_smallest_gaps() {
        let mut runs = [(0, 4), (4, 8), (10, 12), (100, 104), (105, 106), (200, 204)];
        assert_eq!(coalesce(&mut runs, 16), 5, "touching runs merge");
        assert_eq!(&runs[..5], &[(0, 8), (10, 12), (100, 104), (105, 106), (200, 204)]);
        let mut runs = [(0, 4), (4, 8), (10, 12), (100, 104), (105, 106), (200, 204)];
        assert_eq!(coalesce(&mut runs, 3), 3);
        assert_eq!(&runs[..3], &[(0, 12), (100, 106), (200, 204)]);
        let mut one = [(0, 4), (50, 60)];
        assert_eq!(coalesce(&mut one, 1), 1);
        assert_eq!(one[0], (0, 60));
        assert_eq!(coalesce(&mut [], 4), 0);
    }
}
