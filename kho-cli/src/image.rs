//! Machine images as physical memory: an ELF64 core file (kho-sim's, or
//! QEMU's `dump-guest-memory`) mapped copy-on-write and served to kho
//! through [`PhysMem`] and [`PageAlloc`].
//!
//! - RAM is the `PT_LOAD` segments, at their `p_paddr`; segments adjacent
//!   in PA are joined, so a block may span them. A segment that is one run
//!   of file bytes whose file offset keeps the PA's alignment modulo 8 is
//!   served straight from the private file mapping; any other (a QEMU dump
//!   whose data starts 4 bytes off, `p_memsz` above `p_filesz`, adjacent
//!   segments apart in the file) is served from a private anonymous copy
//!   filled page by page on first use: then the pages kho asks for are
//!   copied, which for the RAM checks of preserved blocks means the
//!   preserved memory itself. Nothing is read before kho asks for it, so the time an
//!   inspection takes follows the metadata it walks, not the RAM size.
//! - The mapping is `MAP_PRIVATE`: kho's incoming side clears the root
//!   FDT's bit in the tree (it claims that page), and that write lands in a
//!   private copy. The file is opened read-only and never written.
//! - A small private arena of pages, at PAs above every segment, serves
//!   [`PageAlloc`]: a `kho-v1` handover is converted into a radix tree
//!   allocated from it, and a scratch array given on the command line is
//!   placed in it. Only pages handed out are reachable; the rest of the
//!   arena is not RAM.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kho_abi::{AbiError, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem};
use memmap2::{MmapMut, MmapOptions};
use object::LittleEndian as LE;
use object::elf;

pub use crate::elf::{ImageError, KhoNote};
use crate::elf::{Load, file_data, format_err, parse_headers};

const PAGE: u64 = PAGE_SIZE as u64;
/// Virtual size of the private arena (backed only where touched).
const ARENA_SIZE: u64 = 1 << 30;
/// The arena starts at a PA aligned to this, above the highest segment.
const ARENA_ALIGN: u64 = 1 << 30;

/// One RAM range of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRange {
    /// First PA.
    pub start: u64,
    /// One past the last PA.
    pub end: u64,
}

/// How the file's bytes are reached.
enum FileSource {
    /// A private mapping of the whole file (`base` points into it).
    Mapped {
        /// Owns the mapping `base` points into.
        _map: MmapMut,
        base: NonNull<u8>,
    },
    /// Positioned reads, for files that cannot be mapped (a kernel's
    /// `/proc/kcore`, whose size is nominal): every segment is a shadow.
    Pread,
}

/// How the image's RAM was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RamSource {
    /// Every `PT_LOAD` is RAM (images that carry only RAM, as kho-sim's
    /// and a kernel's `/proc/kcore`).
    Segments,
    /// An x86-64 image without a statement of its RAM (QEMU's
    /// `dump-guest-memory` also dumps device memory, such as the VGA BAR
    /// at `0xfd00_0000` and the BIOS ROM at `0xfffc_0000`): every
    /// `PT_LOAD` except what lies in the 32-bit device window
    /// `0xe000_0000..0x1_0000_0000`, where PC firmware and QEMU never put
    /// RAM.
    SegmentsLessDeviceWindow,
    /// Named with `--ram`: RAM is where the segments and the named ranges
    /// meet.
    Given,
}

impl RamSource {
    /// How the source reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            RamSource::Segments => "every PT_LOAD is RAM",
            RamSource::SegmentsLessDeviceWindow => {
                "the image does not say which ranges are RAM: every PT_LOAD but the x86 device window \
                 0xe0000000..0x100000000 (name RAM with --ram PA:SIZE)"
            }
            RamSource::Given => "RAM as named with --ram",
        }
    }
}

/// The x86 32-bit device window: never RAM on a PC.
const X86_DEVICE_WINDOW: RamRange = RamRange { start: 0xe000_0000, end: 0x1_0000_0000 };

/// How to open an image.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// What [`PageAlloc::max_order`] reports (blocks above it are
    /// rejected by kho's import).
    pub max_order: Order,
    /// RAM named by the user (`--ram`); empty to decide from the image.
    pub ram: Vec<RamRange>,
}

/// Linux's procfs magic number, as `fstatfs` reports it.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
/// Bytes read for the headers of a file that is not mapped.
const PREAD_HEADERS: usize = 1 << 20;

/// How a segment's PAs reach memory.
enum Backing {
    /// Straight into the file mapping at its one piece's file offset.
    File,
    /// A private copy filled page by page from the file mapping.
    Shadow(Shadow),
}

/// A private anonymous copy of a segment, filled from the file.
///
/// # Invariants
///
/// `ptr` maps `_map`, which covers the segment from its start rounded down
/// to a page; a page of it is handed out only after its bit in `filled` is
/// set, and a page is written only while its bit is clear, so no pointer
/// handed out ever sees a write by the copy.
struct Shadow {
    _map: MmapMut,
    ptr: NonNull<u8>,
    /// One bit per page of `map`.
    filled: Mutex<Vec<u64>>,
}

/// Where some of a segment's bytes are in the file.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// PA of the first byte.
    start: u64,
    /// Its file offset.
    file_offset: u64,
    /// Bytes present in the file from there; past them, up to the next
    /// piece or the segment's end, memory reads as zero.
    file_len: u64,
}

/// A RAM range: one `PT_LOAD`, or several adjacent in PA merged so that a
/// block may span them.
struct Segment {
    start: u64,
    end: u64,
    /// One per `PT_LOAD`, ascending, the first at `start`.
    pieces: Vec<Piece>,
    backing: Backing,
}

impl Segment {
    /// The file bytes of `[a, b)` (inside the segment), piece by piece:
    /// `(pa, file_offset, len)`.
    fn file_parts(&self, a: u64, b: u64) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.pieces.iter().filter_map(move |p| {
            let (s, e) = (a.max(p.start), b.min(p.start + p.file_len));
            (s < e).then(|| (s, p.file_offset + (s - p.start), e - s))
        })
    }
}

/// Pages above the image's RAM for the inspector's own use.
///
/// # Invariants
///
/// `ptr` maps `_map`, `ARENA_SIZE` bytes; PA `base + off` is byte `off` of
/// it. Pages below `next` have been handed out (they are RAM for kho),
/// pages above are not reachable.
struct Arena {
    base: u64,
    _map: MmapMut,
    ptr: NonNull<u8>,
    next: Mutex<u64>,
}

/// An opened machine image: its RAM, its `"KHO"` note, and the platform
/// kho reads it through.
///
/// # Invariants
///
/// `base` maps `_file_map`, all bytes of the file, privately;
/// every `Backing::File` segment's file bytes lie inside it. Pointers
/// handed out stay valid while the value lives: the mappings are dropped
/// only with it.
pub struct Image {
    path: PathBuf,
    file: File,
    /// How file bytes are read.
    source: FileSource,
    segments: Vec<Segment>,
    /// What of the segments is RAM, ascending, adjacent ranges joined.
    ram: Vec<RamRange>,
    /// How `ram` was decided.
    ram_source: RamSource,
    loads: usize,
    note: KhoNote,
    arena: Arena,
    max_order: Order,
    reads: Arc<AtomicU64>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("ram", &self.ram())
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

impl Image {
    /// Opens and maps the image at `path`; `max_order` is what
    /// [`PageAlloc::max_order`] reports (blocks above it are rejected by
    /// kho's import).
    pub fn open(path: &Path, max_order: Order) -> Result<Image, ImageError> {
        Image::open_with(path, &OpenOptions { max_order, ram: Vec::new() })
    }

    /// Opens the image at `path` as `opts` say. A file on procfs (a
    /// running kernel's `/proc/kcore`) is read with positioned reads
    /// instead of being mapped, its segments without a PA are left out,
    /// and a segment lying inside another (the kernel text's alias of
    /// RAM) is dropped. I/O errors name the path.
    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<Image, ImageError> {
        let named =
            |e: std::io::Error| ImageError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        let file = File::open(path).map_err(named)?;
        let file_len = file.metadata().map_err(named)?.len();
        let on_procfs = rustix::fs::fstatfs(&file).is_ok_and(|s| s.f_type as u64 == PROC_SUPER_MAGIC);
        if file_len < size_of::<elf::FileHeader64<LE>>() as u64 {
            return Err(format_err(format!("{file_len} bytes, too short for an ELF header")));
        }
        let (source, headers) = if on_procfs {
            use std::os::unix::fs::FileExt;
            let mut head = vec![0u8; PREAD_HEADERS.min(usize::try_from(file_len).unwrap_or(PREAD_HEADERS))];
            let mut got = 0;
            while got < head.len() {
                match file.read_at(&mut head[got..], got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(named(e)),
                }
            }
            head.truncate(got);
            let headers = parse_headers(&head, file_len, true)?;
            (FileSource::Pread, headers)
        } else {
            let len = usize::try_from(file_len).map_err(|_| format_err("file too large to map"))?;
            // SAFETY: the mapping is private (copy-on-write) and read through
            // raw pointers only; the image must not be truncated while the
            // tool runs (a truncated mapping faults, as for any mapped file),
            // which is documented for users.
            let mut map = unsafe { MmapOptions::new().len(len).no_reserve_swap().map_copy(&file) }.map_err(named)?;
            let headers = parse_headers(&map, file_len, false)?;
            let base = NonNull::new(map.as_mut_ptr()).ok_or_else(|| format_err("empty mapping"))?;
            (FileSource::Mapped { _map: map, base }, headers)
        };
        let mut loads = headers.loads;
        if on_procfs {
            drop_contained(&mut loads);
        }
        let nloads = loads.len();
        let segments = build_segments(loads, matches!(source, FileSource::Mapped { .. }))?;
        let (ram, ram_source) = decide_ram(&segments, headers.machine, &opts.ram, on_procfs);
        let top = segments.last().map_or(0, |s| s.end);
        let arena = Arena::new(top)?;
        Ok(Image {
            path: path.to_path_buf(),
            file,
            source,
            segments,
            ram,
            ram_source,
            loads: nloads,
            note: headers.note,
            arena,
            max_order: opts.max_order,
            reads: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image's RAM, adjacent ranges joined, ascending.
    pub fn ram(&self) -> Vec<RamRange> {
        self.ram.clone()
    }

    /// How the RAM was decided.
    pub fn ram_source(&self) -> RamSource {
        self.ram_source
    }

    /// The parts of the segments that are not RAM, ascending.
    pub fn not_ram(&self) -> Vec<RamRange> {
        let mut out = Vec::new();
        for s in &self.segments {
            let mut pos = s.start;
            for r in self.ram.iter().filter(|r| r.end > s.start && r.start < s.end) {
                if r.start > pos {
                    out.push(RamRange { start: pos, end: r.start });
                }
                pos = pos.max(r.end);
            }
            if pos < s.end {
                out.push(RamRange { start: pos, end: s.end });
            }
        }
        out
    }

    /// Number of `PT_LOAD` segments in the file.
    pub fn load_segments(&self) -> usize {
        self.loads
    }

    /// Total bytes of RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.ram.iter().map(|r| r.end - r.start).sum()
    }

    /// What the `"KHO"` note holds.
    pub fn note(&self) -> &KhoNote {
        &self.note
    }

    /// A counter of the memory accesses kho made through this image (one
    /// per [`PhysMem::phys_to_virt`] call), for progress reports.
    pub fn reads(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.reads)
    }

    /// Whether `[pa, pa + len)` is entirely the image's RAM (the arena is
    /// not).
    pub fn in_image_ram(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else { return false };
        let i = self.ram.partition_point(|r| r.end <= pa);
        self.ram.get(i).is_some_and(|r| r.start <= pa && end <= r.end)
    }

    /// Copies the image's bytes for `pa..pa + buf.len()` into `buf` from the
    /// file mapping (no shadow filled, nothing counted), for the root search
    /// before kho is given the image: `None` unless the range lies in one
    /// segment. Bytes past a piece's file data read as zero.
    pub fn read_original(&self, pa: u64, buf: &mut [u8]) -> Option<()> {
        let end = pa.checked_add(buf.len() as u64)?;
        let seg = self.segment_of(pa).filter(|s| end <= s.end)?;
        buf.fill(0);
        for (at, off, len) in seg.file_parts(pa, end) {
            self.read_file(off, &mut buf[(at - pa) as usize..][..len as usize]);
        }
        Some(())
    }

    /// The ranges of the image's RAM whose file bytes the file system
    /// reports as data (`SEEK_DATA`), as PA ranges, ascending; file holes,
    /// zero-fill and memory that is not RAM are left out.
    pub fn data_ranges(&self) -> Result<Vec<RamRange>, ImageError> {
        let mut out = Vec::new();
        for p in self.segments.iter().flat_map(|s| &s.pieces) {
            for (a, b) in file_data(&self.file, p.file_offset, p.file_offset + p.file_len)? {
                let (start, end) = (p.start + (a - p.file_offset), p.start + (b - p.file_offset));
                for r in self.ram.iter().filter(|r| r.start < end && start < r.end) {
                    out.push(RamRange { start: start.max(r.start), end: end.min(r.end) });
                }
            }
        }
        Ok(out)
    }

    /// Whether the image is a running kernel's own memory (a file on
    /// procfs: `/proc/kcore`).
    pub fn is_live_kernel(&self) -> bool {
        matches!(self.source, FileSource::Pread)
    }

    /// Pages of RAM the file actually stores (holes and zero fill left
    /// out): the most pages a memory map read from this image can have
    /// that are not all zero, which bounds the import's work by the
    /// image's size rather than by what its headers declare.
    pub fn stored_pages(&self) -> u64 {
        let bytes: u64 = match self.data_ranges() {
            Ok(r) => r.iter().map(|r| r.end - r.start).sum(),
            Err(_) => self.ram_bytes(),
        };
        bytes.div_ceil(PAGE)
    }

    /// Hands out zeroed arena memory for `bytes` bytes, page aligned; used
    /// for a scratch array given on the command line.
    pub fn arena_alloc_bytes(&self, bytes: u64) -> Result<PhysAddr, AbiError> {
        let pages = bytes.div_ceil(PAGE).max(1);
        let order = Order::new(u64::from(64 - (pages - 1).leading_zeros()), "arena allocation")?;
        self.alloc_pages(order)
    }

    fn segment_of(&self, pa: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.start <= pa).checked_sub(1)?;
        self.segments.get(i).filter(|s| pa < s.end)
    }

    /// A pointer to file offset `offset` in the mapping; `None` for a
    /// file read with positioned reads.
    fn file_ptr(&self, offset: u64) -> Option<NonNull<u8>> {
        match &self.source {
            // SAFETY: callers pass offsets at most the file's length, the
            // length of the mapping at `base`, so the result is in bounds or
            // one past the end.
            FileSource::Mapped { base, .. } => Some(unsafe { base.add(offset as usize) }),
            FileSource::Pread => None,
        }
    }

    /// Copies the file's bytes at `offset` into `dst`, which lie inside the
    /// file (a piece's bytes, checked when the headers were read). Bytes a
    /// positioned read cannot get (a kernel refusing a page of
    /// `/proc/kcore`) read as zero.
    fn read_file(&self, offset: u64, dst: &mut [u8]) {
        match self.file_ptr(offset) {
            // SAFETY: `offset + dst.len()` is inside the file, hence inside
            // the mapping; `dst` is distinct memory of `dst.len()` bytes.
            Some(src) => unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), dst.len()) },
            None => {
                use std::os::unix::fs::FileExt;
                let mut got = 0;
                while got < dst.len() {
                    match self.file.read_at(&mut dst[got..], offset + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                dst[got..].fill(0);
            }
        }
    }

    fn segment_ptr(&self, seg: &Segment, pa: u64, end: u64) -> NonNull<u8> {
        match &seg.backing {
            // PANICS: none; `File` backing is only chosen for a mapped file.
            Backing::File => self.file_ptr(seg.pieces[0].file_offset + (pa - seg.start)).expect("mapped"),
            Backing::Shadow(sh) => {
                let first = seg.start & !(PAGE - 1);
                let mut filled = sh.filled.lock().unwrap_or_else(|e| e.into_inner());
                let (p0, p1) = ((pa - first) / PAGE, (end.max(pa + 1) - first).div_ceil(PAGE));
                for page in p0..p1 {
                    // PANICS: none; `page < p1 <= pages of the shadow`, and
                    // `filled` has a bit for each.
                    let (w, bit) = ((page / 64) as usize, 1u64 << (page % 64));
                    if filled[w] & bit == 0 {
                        self.fill_shadow_page(seg, sh, first + page * PAGE);
                        filled[w] |= bit;
                    }
                }
                // SAFETY: `pa - first < map.len()` since `pa < seg.end` and
                // the shadow covers `first..seg.end` (type invariant).
                unsafe { sh.ptr.add((pa - first) as usize) }
            }
        }
    }

    /// Copies the file bytes of the page at `page_pa` into the shadow.
    fn fill_shadow_page(&self, seg: &Segment, sh: &Shadow, page_pa: u64) {
        let first = seg.start & !(PAGE - 1);
        let (a, b) = (page_pa.max(seg.start), (page_pa + PAGE).min(seg.end));
        for (at, off, len) in seg.file_parts(a, b) {
            // SAFETY: the destination `at - first ..+ len` lies in the
            // shadow (`at + len <= seg.end`), in a page whose bit is clear,
            // so no pointer into it has been handed out (`Shadow`
            // invariant) and no other reference to it exists.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(sh.ptr.add((at - first) as usize).as_ptr(), len as usize) };
            self.read_file(off, dst);
        }
    }
}

// SAFETY: every pointer returned lies in a mapping owned by `self` (the
// file mapping, a segment's shadow, or the arena), inside bounds checked
// here: the whole `len` bytes lie in one segment or in the arena's handed
// out pages, each of which is contiguous in virtual memory. Alignment
// modulo 8 is kept: a `File` segment is only used when its file offset and
// PA agree modulo 8 and the mapping is page aligned; shadows and the arena
// are page aligned and start at a page-aligned PA. The mappings live as
// long as `self`. The implementation writes only shadow pages not yet
// handed out (`Shadow` invariant) and never touches arena pages after
// handing them out; the original-byte reads (`read_original`) happen only
// before kho is given the image (the root search).
unsafe impl PhysMem for Image {
    fn phys_to_virt(&self, pa: PhysAddr, len: u64) -> Result<NonNull<u8>, AbiError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let not_ram = AbiError::NotRam { pa, len };
        let p = pa.as_u64();
        let end = p.checked_add(len).ok_or(not_ram)?;
        if let Some(seg) = self.segment_of(p) {
            return if end <= seg.end && self.in_image_ram(p, len) {
                Ok(self.segment_ptr(seg, p, end))
            } else {
                Err(not_ram)
            };
        }
        self.arena.pointer(p, end).ok_or(not_ram)
    }
}

impl PageAlloc for Image {
    fn alloc_pages(&self, order: Order) -> Result<PhysAddr, AbiError> {
        self.arena.alloc(order)
    }

    /// Arena pages are never reused: the tool is short-lived and the arena
    /// is released with the image.
    fn free_pages(&self, _pa: PhysAddr, _order: Order) {}

    fn max_order(&self) -> Order {
        self.max_order
    }
}

impl Arena {
    fn new(top: u64) -> Result<Arena, ImageError> {
        let base = top
            .checked_next_multiple_of(ARENA_ALIGN)
            .filter(|b| b.checked_add(ARENA_SIZE).is_some_and(|e| e <= 1 << 52))
            .ok_or_else(|| format_err("RAM too high for the inspector's private pages above it"))?;
        let mut map = MmapOptions::new().len(ARENA_SIZE as usize).no_reserve_swap().map_anon()?;
        let ptr = NonNull::new(map.as_mut_ptr()).ok_or_else(|| format_err("empty arena mapping"))?;
        Ok(Arena { base, _map: map, ptr, next: Mutex::new(0) })
    }

    fn pointer(&self, pa: u64, end: u64) -> Option<NonNull<u8>> {
        let next = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        let off = pa.checked_sub(self.base)?;
        if end > self.base + next {
            return None;
        }
        // SAFETY: `off <= next <= ARENA_SIZE`, the mapping's length
        // (`Arena` invariant).
        Some(unsafe { self.ptr.add(off as usize) })
    }

    fn alloc(&self, order: Order) -> Result<PhysAddr, AbiError> {
        let no_mem = AbiError::NoMemory { order: order.get() };
        let bytes = order.checked_bytes().ok_or(no_mem)?;
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.checked_next_multiple_of(bytes).ok_or(no_mem)?;
        let end = start.checked_add(bytes).filter(|&e| e <= ARENA_SIZE).ok_or(no_mem)?;
        *next = end;
        Ok(PhysAddr::new(self.base + start))
    }
}

/// Sorts the loads, rejects overlaps, joins neighbours adjacent in PA
/// into one segment, and picks each segment's backing: the file mapping
/// when the segment is one run of file bytes as long as the segment whose
/// offset keeps the PA's alignment modulo 8, else a shadow.
fn build_segments(mut loads: Vec<Load>, mapped: bool) -> Result<Vec<Segment>, ImageError> {
    loads.sort_unstable_by_key(|l| l.paddr);
    let mut segs: Vec<Segment> = Vec::with_capacity(loads.len());
    for l in loads {
        let (start, end) = (l.paddr, l.paddr + l.memsz);
        let piece = Piece { start, file_offset: l.offset, file_len: l.filesz };
        match segs.last_mut() {
            Some(prev) if start < prev.end => {
                return Err(format_err(format!("PT_LOAD segments overlap at PA {start:#x}")));
            }
            Some(prev) if start == prev.end => {
                prev.end = end;
                prev.pieces.push(piece);
            }
            _ => segs.push(Segment { start, end, pieces: vec![piece], backing: Backing::File }),
        }
    }
    for s in &mut segs {
        // Pieces that continue each other in the file are one run.
        s.pieces.dedup_by(|next, prev| {
            let joined =
                prev.file_len == next.start - prev.start && prev.file_offset + prev.file_len == next.file_offset;
            if joined {
                prev.file_len += next.file_len;
            }
            joined
        });
        let p = s.pieces[0];
        let direct = mapped && s.pieces.len() == 1 && p.file_len == s.end - s.start && p.file_offset % 8 == s.start % 8;
        if !direct {
            let first = s.start & !(PAGE - 1);
            let span = usize::try_from(s.end - first).map_err(|_| format_err("segment too large"))?;
            let mut map = MmapOptions::new().len(span).no_reserve_swap().map_anon()?;
            let ptr = NonNull::new(map.as_mut_ptr()).ok_or_else(|| format_err("empty shadow mapping"))?;
            let words = (span as u64).div_ceil(PAGE).div_ceil(64) as usize;
            s.backing = Backing::Shadow(Shadow { _map: map, ptr, filled: Mutex::new(vec![0; words]) });
        }
    }
    Ok(segs)
}

/// Drops every load that lies inside another (a kernel's `/proc/kcore`
/// shows the kernel text a second time, inside RAM).
fn drop_contained(loads: &mut Vec<Load>) {
    // Sorted by start, longest first: a load lies inside an earlier one
    // exactly when it ends no later than the furthest end so far.
    loads.sort_unstable_by_key(|l| (l.paddr, std::cmp::Reverse(l.memsz)));
    let mut furthest = 0u64;
    let mut first = true;
    loads.retain(|l| {
        let end = l.paddr + l.memsz;
        let keep = first || end > furthest;
        first = false;
        furthest = furthest.max(end);
        keep
    });
}

/// The RAM of an image: the segments, less the x86 device window for an
/// x86-64 image that does not say what is RAM, or met with the ranges the
/// user named. Ascending, adjacent ranges joined.
fn decide_ram(segments: &[Segment], machine: u16, given: &[RamRange], all_ram: bool) -> (Vec<RamRange>, RamSource) {
    let segs = segments.iter().map(|s| RamRange { start: s.start, end: s.end });
    let (mut ram, source): (Vec<RamRange>, RamSource) = if !given.is_empty() {
        let mut out = Vec::new();
        for s in segs {
            for g in given {
                let (a, b) = (s.start.max(g.start), s.end.min(g.end));
                if a < b {
                    out.push(RamRange { start: a, end: b });
                }
            }
        }
        (out, RamSource::Given)
    } else if machine == elf::EM_X86_64 && !all_ram {
        let w = X86_DEVICE_WINDOW;
        let mut out = Vec::new();
        for s in segs {
            for (a, b) in [(s.start, s.end.min(w.start)), (s.start.max(w.end), s.end)] {
                if a < b {
                    out.push(RamRange { start: a, end: b });
                }
            }
        }
        (out, RamSource::SegmentsLessDeviceWindow)
    } else {
        (segs.collect(), RamSource::Segments)
    };
    ram.sort_unstable_by_key(|r| r.start);
    let mut joined: Vec<RamRange> = Vec::with_capacity(ram.len());
    for r in ram {
        match joined.last_mut() {
            Some(p) if r.start <= p.end => p.end = p.end.max(r.end),
            _ => joined.push(r),
        }
    }
    (joined, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_segments_mapped(loads: Vec<Load>) -> Result<Vec<Segment>, ImageError> {
        build_segments(loads, true)
    }

    #[test]
    fn kcore_aliases_are_dropped_and_ram_is_decided() {
        let mut loads =
            vec![seg(0x100_0000, 0x200_0000, 0x5000, 0x100_0000), seg(0x1000, 0x4000_0000, 0x9000, 0x3fff_f000)];
        drop_contained(&mut loads);
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].paddr, 0x1000);
        let segs = build_segments(loads, false).unwrap();
        assert!(matches!(segs[0].backing, Backing::Shadow(_)), "an unmapped file is read into shadows");

        let segs = build_segments_mapped(vec![
            seg(0, 0x4000_0000, 0x1000, 0x4000_0000),
            seg(0xfd00_0000, 0xfe00_0000, 0x4000_1000, 0x100_0000),
        ])
        .unwrap();
        let (ram, src) = decide_ram(&segs, elf::EM_X86_64, &[], false);
        assert_eq!(src, RamSource::SegmentsLessDeviceWindow);
        assert_eq!(ram, vec![RamRange { start: 0, end: 0x4000_0000 }]);
        let (ram, src) = decide_ram(&segs, elf::EM_AARCH64, &[], false);
        assert_eq!(src, RamSource::Segments);
        assert_eq!(ram.len(), 2);
        let given =
            [RamRange { start: 0x10_0000, end: 0x2000_0000 }, RamRange { start: 0x1000_0000, end: 0x3000_0000 }];
        let (ram, src) = decide_ram(&segs, elf::EM_X86_64, &given, false);
        assert_eq!(src, RamSource::Given);
        assert_eq!(ram, vec![RamRange { start: 0x10_0000, end: 0x3000_0000 }]);
    }

    fn seg(start: u64, end: u64, file_offset: u64, file_len: u64) -> Load {
        Load { paddr: start, memsz: end - start, offset: file_offset, filesz: file_len }
    }

    #[test]
    fn adjacent_segments_join_and_overlaps_fail() {
        let s = build_segments_mapped(vec![seg(0x2000, 0x3000, 0x2000, 0x1000), seg(0x1000, 0x2000, 0x1000, 0x1000)])
            .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].start, s[0].end, s[0].pieces.len()), (0x1000, 0x3000, 1));
        assert!(matches!(s[0].backing, Backing::File));
        // Adjacent in PA but not in the file: one segment, two pieces.
        let s = build_segments_mapped(vec![seg(0x1000, 0x2000, 0x1000, 0x1000), seg(0x2000, 0x3000, 0x9000, 0x1000)])
            .unwrap();
        assert_eq!((s.len(), s[0].pieces.len()), (1, 2));
        assert!(matches!(s[0].backing, Backing::Shadow(_)));
        let parts: Vec<_> = s[0].file_parts(0x1800, 0x2800).collect();
        assert_eq!(parts, [(0x1800, 0x1800, 0x800), (0x2000, 0x9000, 0x800)]);
        // A hole between segments keeps them apart.
        let s = build_segments_mapped(vec![seg(0x1000, 0x2000, 0x1000, 0x1000), seg(0x3000, 0x4000, 0x2000, 0x1000)])
            .unwrap();
        assert_eq!(s.len(), 2);
        assert!(
            build_segments_mapped(vec![seg(0x1000, 0x3000, 0, 0x2000), seg(0x2000, 0x4000, 0x2000, 0x2000)]).is_err()
        );
    }

    #[test]
    fn misaligned_or_zero_filled_segments_are_shadowed() {
        let s = build_segments_mapped(vec![
            seg(0x1000, 0x2000, 0x1004, 0x1000),
            seg(0x4000, 0x6000, 0x3000, 0x1000),
            seg(0x8000, 0x9000, 0x5008, 0x1000),
        ])
        .unwrap();
        assert!(matches!(s[0].backing, Backing::Shadow(_)));
        assert!(matches!(s[1].backing, Backing::Shadow(_)));
        assert!(matches!(s[2].backing, Backing::File));
    }
}
