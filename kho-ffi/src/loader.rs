//! What a loader needs to hand a handover to a next x86-64 Linux kernel
//! (a bootloader, or `kexec_load` from user space), and the writers of the
//! payloads a 7.2 kernel restores.
//!
//! - [`kho_bzimage_parse`]: the kernel's boot header.
//! - [`kho_layout_new`], [`kho_layout_place_arena`]: where the kernel
//!   window, initrd and boot pages go in one scratch area, and where the
//!   handover fits after it.
//! - [`kho_boot_params_write`]: the zero page; [`kho_setup_data_write`]
//!   (handoff.rs) its `SETUP_KEXEC_KHO` entry; [`kho_trampoline_write`] the
//!   entry stub that starts the kernel's 64-bit entry.
//! - [`kho_plan_check`], [`kho_plan_check_preserved`]: the rules the next
//!   kernel depends on and does not check; [`kho_plan_coalesce`] batches
//!   page runs into at most 16 segments.
//! - On a [`kho_out`]: [`kho_memfd_write`], [`kho_selftest_write`],
//!   [`kho_memblock_write`], [`kho_kexec_metadata_write`] and the LUO
//!   writer ([`kho_luo_writer_new`] ...), each laying out what the kernel
//!   writes for the same state.
//!
//! [`kho_setup_data_write`]: crate::handoff::kho_setup_data_write

use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void};

use kho_abi::{KhoScratch, PhysAddr};
use kho_handoff::HandoffError;
use kho_handoff::plan::{self, Layout, LayoutRequest, Plan, PlanError, SegmentRange, Window};
use kho_handoff::x86::boot_params::{BOOT_PARAMS_SIZE, BootParams, E820Entry, E820Type};
use kho_handoff::x86::bzimage::BzImage;
use kho_handoff::x86::trampoline;

use crate::error::{KHO_ENOMEM, KHO_OK};
use crate::out::kho_out;
use crate::panic::{guard, guard_or};
use crate::ptr::{
    Castable, arg_bytes, arg_bytes_mut, arg_mut, arg_opt_mut, arg_ref, arg_slice, arg_slice_mut, arg_str, handle_mut,
    handle_ref, new_handle, take_handle,
};
use crate::record::{Describe, kho_error};
use crate::wire::kho_scratch;

/// Bytes of the entry stub [`kho_trampoline_write`] writes.
pub const KHO_TRAMPOLINE_LEN: usize = 128;
/// Bytes of the zero page.
pub const KHO_BOOT_PARAMS_SIZE: usize = 4096;
/// The most segments `kexec_load` takes.
pub const KHO_MAX_SEGMENTS: usize = 16;

const _: () = assert!(KHO_TRAMPOLINE_LEN == trampoline::TRAMPOLINE_LEN);
const _: () = assert!(KHO_BOOT_PARAMS_SIZE == BOOT_PARAMS_SIZE);
const _: () = assert!(KHO_MAX_SEGMENTS == plan::MAX_SEGMENTS);

impl Describe for PlanError {
    fn describe(&self, r: &mut kho_error) {
        r.set_kind(self.kind());
        match *self {
            PlanError::ScratchTooSmall { total, need } => r.set_field("scratch size").set_value(total).set_index(need),
            PlanError::ScratchMisaligned { addr, size } | PlanError::ScratchNotRam { addr, size } => {
                r.set_field("scratch").set_pa(PhysAddr::new(addr)).set_value(size)
            }
            PlanError::NoLowScratch => r.set_field("scratch"),
            PlanError::PreservedNotRam { pa, bytes }
            | PlanError::PreservedLow { pa, bytes }
            | PlanError::PreservedInScratch { pa, bytes, .. } => {
                r.set_field("preserved").set_pa(PhysAddr::new(pa)).set_value(bytes)
            }
            PlanError::PreservedOverlaps { pa, bytes, what, .. } => {
                r.set_field(what).set_pa(PhysAddr::new(pa)).set_value(bytes)
            }
            PlanError::TooManySegments { count, .. } => r.set_field("segments").set_value(count as u64),
            PlanError::SegmentMisaligned { index, mem, memsz } | PlanError::SegmentNotRam { index, mem, memsz } => {
                r.set_field("segment").set_index(index as u64).set_pa(PhysAddr::new(mem)).set_value(memsz)
            }
            PlanError::SegmentsOverlap { a, b } => r.set_field("segment").set_index(b as u64).set_value(a as u64),
            PlanError::TooLarge { total, .. } => r.set_field("segments").set_value(total),
            PlanError::NoRoom { what, bytes } => r.set_field(what).set_value(bytes),
            _ => r,
        };
    }
}

macro_rules! describe_by_kind {
    ($($t:ty),*) => {$(
        impl Describe for $t {
            fn describe(&self, r: &mut kho_error) {
                r.set_kind(self.kind());
            }
        }
    )*};
}
describe_by_kind!(::kho_selftest::SelftestError, ::kho_memblock::MemblockError, ::kho_kexec_meta::KexecMetaError);

/// Stores the record of `e` in `err` (if given) and returns `-errno`.
fn fail<E: Describe>(err: Option<&mut kho_error>, e: &E) -> c_int {
    let rec = kho_error::of(e);
    if let Some(err) = err {
        *err = rec;
    }
    rec.code
}

/// Clears `*err` (if given) and returns it.
///
/// # Safety
///
/// `err` is NULL or writable.
unsafe fn err_arg<'a>(err: *mut kho_error) -> Result<Option<&'a mut kho_error>, c_int> {
    // SAFETY: NULL or writable (caller's promise).
    Ok(unsafe { arg_opt_mut(err)? }.map(|e| {
        *e = kho_error::EMPTY;
        e
    }))
}

/// A bzImage's boot header, as [`kho_bzimage_parse`] read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_bzimage {
    /// Offset of the protected-mode kernel in the image: what a loader
    /// places at the load address.
    pub kernel_offset: u64,
    /// Its bytes.
    pub kernel_len: u64,
    /// End of the setup header in the image.
    pub header_end: u64,
    /// Where a non-relocatable kernel must load.
    pub pref_address: u64,
    /// Bytes the kernel needs from its load address.
    pub init_size: u64,
    /// Alignment of the load address.
    pub kernel_alignment: u64,
    /// Longest command line, NUL excluded.
    pub cmdline_size: u32,
    /// Boot protocol version (`0x020f` is 2.15).
    pub version: u16,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// Non-zero if the kernel may load at any aligned address.
    pub relocatable: u8,
    /// Zero.
    pub reserved: [u8; 7],
}

impl From<&BzImage> for kho_bzimage {
    fn from(b: &BzImage) -> Self {
        kho_bzimage {
            kernel_offset: b.kernel_offset as u64,
            kernel_len: b.kernel_len as u64,
            header_end: b.header_end as u64,
            pref_address: b.pref_address,
            init_size: b.init_size,
            kernel_alignment: b.kernel_alignment,
            cmdline_size: b.cmdline_size,
            version: b.version,
            xloadflags: b.xloadflags,
            relocatable: u8::from(b.relocatable),
            reserved: [0; 7],
        }
    }
}

/// Reads and checks the boot header of a bzImage: boot protocol 2.12 or
/// later, a 64-bit entry point, a power-of-two alignment.
///
/// @param image The bzImage's bytes.
/// @param len Bytes at `image`.
/// @param out Receives the header.
/// @param err NULL, or receives the typed error (kind `"bad_image"`, the
///        reason in its message).
/// @return 0, or -KHO_EINVAL (NULL arguments, not such a bzImage).
///
/// # Safety
///
/// `image` is readable for `len` bytes; `out` and `err` are NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_bzimage_parse(
    image: *const c_void,
    len: usize,
    out: *mut kho_bzimage,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (err, image, out) = unsafe { (err_arg(err)?, arg_bytes(image, len)?, arg_mut(out)?) };
        let bz = BzImage::parse(image).map_err(|e| fail(err, &e))?;
        *out = (&bz).into();
        Ok(KHO_OK)
    })
}

/// A physical range `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Where a loader puts the next kernel's boot data ([`kho_layout_new`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_layout {
    /// The scratch area: the next kernel's only memory before it reads the
    /// handover.
    pub scratch: kho_scratch,
    /// The kernel's load address (its protected-mode part goes here; the
    /// 64-bit entry is 0x200 further).
    pub load: u64,
    /// The kernel's window while it decompresses.
    pub kernel: kho_range,
    /// The initrd (empty without one).
    pub initrd: kho_range,
    /// The four boot pages: zero page, command line, `setup_data` entry,
    /// entry stub (its stack ends the page).
    pub boot: kho_range,
    /// Scratch bytes after the boot pages.
    pub scratch_free: u64,
    /// The least scratch this layout needs.
    pub need: u64,
}

fn range(w: &Window) -> kho_range {
    kho_range { start: w.start, end: w.end }
}

fn ram_of(ram: &[kho_range]) -> Vec<(u64, u64)> {
    ram.iter().map(|r| (r.start, r.end)).collect()
}

/// Places the next kernel's boot data in one scratch area below 4 GiB: the
/// kernel's window at the scratch's start, the initrd after it (1 MiB
/// aligned), the four boot pages, then at least `min_scratch_free` bytes
/// for the kernel's early allocations (93.6 MiB measured in a 1 GiB guest
/// with a 16 MiB log buffer). Checks the scratch rules.
///
/// @param ram The next kernel's RAM, sorted and merged, `nr_ram` ranges.
/// @param image The bzImage, `image_len` bytes.
/// @param initrd_len Bytes of the initrd (0: none).
/// @param scratch_size Total scratch, a multiple of 4 MiB; 0: what the
///        layout needs, rounded up.
/// @param scratch_addr Where scratch starts, 4 MiB aligned; UINT64_MAX:
///        the lowest fit from the kernel's preferred address.
/// @param min_scratch_free Scratch that must stay free.
/// @param out Receives the layout.
/// @param err NULL, or receives the typed error: kinds `"bad_image"`,
///        `"scratch_too_small"`, `"scratch_misaligned"`, `"scratch_not_ram"`,
///        `"no_low_scratch"`, `"no_room"`.
/// @return 0, or -KHO_EINVAL.
///
/// # Safety
///
/// `ram` points at `nr_ram` readable ranges, `image` at `image_len`
/// readable bytes; `out` and `err` are NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kho_layout_new(
    ram: *const kho_range,
    nr_ram: usize,
    image: *const c_void,
    image_len: usize,
    initrd_len: u64,
    scratch_size: u64,
    scratch_addr: u64,
    min_scratch_free: u64,
    out: *mut kho_layout,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (mut err, ram, image, out) =
            unsafe { (err_arg(err)?, arg_slice(ram, nr_ram)?, arg_bytes(image, image_len)?, arg_mut(out)?) };
        let bz = BzImage::parse(image).map_err(|e| fail(err.as_deref_mut(), &e))?;
        let ram = ram_of(ram);
        let req = LayoutRequest {
            ram: &ram,
            kernel: &bz,
            initrd_len,
            scratch_size: (scratch_size != 0).then_some(scratch_size),
            scratch_addr: (scratch_addr != u64::MAX).then_some(scratch_addr),
            min_scratch_free,
        };
        let l = Layout::new(&req).map_err(|e| fail(err, &e))?;
        *out = kho_layout {
            scratch: kho_scratch { addr: l.scratch.addr, size: l.scratch.size },
            load: l.load,
            kernel: range(&l.kernel),
            initrd: range(&l.initrd),
            boot: range(&l.boot),
            scratch_free: l.scratch_free,
            need: l.need,
        };
        Ok(KHO_OK)
    })
}

/// Finds where `len` bytes of handover fit after the layout's scratch
/// area, 4 MiB aligned: nothing placed there can lie in scratch, below
/// 1 MiB or in a boot window.
///
/// @param layout A layout from kho_layout_new().
/// @param ram The next kernel's RAM, `nr_ram` ranges.
/// @param len Bytes needed.
/// @param pa Receives the start.
/// @param err NULL, or receives the typed error (kind `"no_room"`).
/// @return 0, or -KHO_EINVAL.
///
/// # Safety
///
/// `layout` is readable, `ram` points at `nr_ram` readable ranges; `pa`
/// and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_layout_place_arena(
    layout: *const kho_layout,
    ram: *const kho_range,
    nr_ram: usize,
    len: u64,
    pa: *mut u64,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (err, l, ram, pa) = unsafe { (err_arg(err)?, arg_ref(layout)?, arg_slice(ram, nr_ram)?, arg_mut(pa)?) };
        let ram = ram_of(ram);
        let w = |r: &kho_range, what| Window { what, start: r.start, end: r.end };
        let layout = Layout {
            scratch: KhoScratch { addr: l.scratch.addr, size: l.scratch.size },
            load: l.load,
            kernel: w(&l.kernel, "kernel window"),
            initrd: w(&l.initrd, "initrd"),
            boot: w(&l.boot, "boot pages"),
            scratch_free: l.scratch_free,
            need: l.need,
        };
        *pa = layout.place_arena(&ram, len).map_err(|e| fail(err, &e))?;
        Ok(KHO_OK)
    })
}

/// One memory map entry of the zero page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_e820_entry {
    /// First byte.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// 1 RAM, 2 reserved, 3 ACPI, 4 ACPI NVS, 5 unusable, 12 persistent.
    pub type_: u32,
    /// Zero.
    pub reserved: u32,
}

fn e820_type(t: u32) -> Option<E820Type> {
    Some(match t {
        1 => E820Type::Ram,
        2 => E820Type::Reserved,
        3 => E820Type::Acpi,
        4 => E820Type::Nvs,
        5 => E820Type::Unusable,
        12 => E820Type::Pram,
        _ => return None,
    })
}

/// Writes the zero page for a kernel loaded at `load`: zeroes `page`,
/// copies the bzImage's setup header, and sets the loader type, the
/// command line's and initrd's addresses, the ACPI RSDP, the first
/// `setup_data` entry and the memory map.
///
/// @param image The bzImage, `image_len` bytes.
/// @param load The protected-mode kernel's PA (aligned as the image says).
/// @param cmdline_pa PA of the NUL-terminated command line.
/// @param initrd_pa PA of the initrd, 0 for none; `initrd_size` its bytes.
/// @param rsdp The RSDP's PA, 0 to let the kernel search for it.
/// @param setup_data PA of the first `setup_data` entry (e.g. the one
///        kho_setup_data_write() wrote), 0 for none.
/// @param e820 The memory map, `nr_e820` entries (at most 128).
/// @param page Receives the zero page: KHO_BOOT_PARAMS_SIZE writable bytes.
/// @param err NULL, or receives the typed error.
/// @return 0, or -KHO_EINVAL (NULL arguments, a bad image or load
///         address, an unknown entry type, more than 128 entries).
///
/// # Safety
///
/// `image` is readable for `image_len` bytes, `e820` for `nr_e820`
/// entries, `page` writable for KHO_BOOT_PARAMS_SIZE bytes; `err` is NULL
/// or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kho_boot_params_write(
    image: *const c_void,
    image_len: usize,
    load: u64,
    cmdline_pa: u64,
    initrd_pa: u64,
    initrd_size: u64,
    rsdp: u64,
    setup_data: u64,
    e820: *const kho_e820_entry,
    nr_e820: usize,
    page: *mut u8,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (mut err, image, e820, page) = unsafe {
            (
                err_arg(err)?,
                arg_bytes(image, image_len)?,
                arg_slice(e820, nr_e820)?,
                arg_bytes_mut(page.cast(), BOOT_PARAMS_SIZE)?,
            )
        };
        let page: &mut [u8; BOOT_PARAMS_SIZE] = page.try_into().map_err(|_| crate::error::EINVAL)?;
        let bz = BzImage::parse(image).map_err(|e| fail(err.as_deref_mut(), &e))?;
        let mut map = Vec::new();
        map.try_reserve(e820.len()).map_err(|_| -KHO_ENOMEM)?;
        for (i, e) in e820.iter().enumerate() {
            let kind = e820_type(e.type_).ok_or_else(|| {
                fail(err.as_deref_mut(), &HandoffError::InvalidValue { what: "e820 type", value: i as u64 })
            })?;
            map.push(E820Entry { addr: e.addr, size: e.size, kind });
        }
        let mut bp = BootParams::new(page, &bz, image, load).map_err(|e| fail(err.as_deref_mut(), &e))?;
        bp.set_cmdline(cmdline_pa).set_initrd(initrd_pa, initrd_size).set_rsdp(rsdp).set_setup_data(setup_data);
        bp.set_e820(&map).map_err(|e| fail(err, &e))?;
        Ok(KHO_OK)
    })
}

/// Writes kho's entry stub to run at `at`: it takes what `kexec_load` (or
/// any loader in 64-bit mode with an identity map) gives, loads its own
/// GDT with `__BOOT_CS` 0x10 and `__BOOT_DS` 0x18, sets a stack ending at
/// `stack_top`, and enters `entry` (the kernel's load address + 0x200)
/// with `rsi` = `boot_params`.
///
/// @param at The stub's PA, 16-byte aligned.
/// @param entry The kernel's 64-bit entry point.
/// @param boot_params PA of the zero page.
/// @param stack_top End of the stack, 16-byte aligned, outside the stub.
/// @param buf Receives KHO_TRAMPOLINE_LEN bytes; `len` bytes writable.
/// @param err NULL, or receives the typed error.
/// @return 0, or -KHO_EINVAL.
///
/// # Safety
///
/// `buf` is writable for `len` bytes; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_trampoline_write(
    at: u64,
    entry: u64,
    boot_params: u64,
    stack_top: u64,
    buf: *mut c_void,
    len: usize,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (err, buf) = unsafe { (err_arg(err)?, arg_bytes_mut(buf, len)?) };
        let Some(out) = buf.get_mut(..KHO_TRAMPOLINE_LEN) else {
            let e = HandoffError::Short { what: "trampoline buffer", need: KHO_TRAMPOLINE_LEN, have: len };
            return Err(fail(err, &e));
        };
        let stub = trampoline::build(at, entry, boot_params, stack_top).map_err(|e| fail(err, &e))?;
        out.copy_from_slice(&stub);
        Ok(KHO_OK)
    })
}

/// One segment: `memsz` bytes at `mem`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_segment_range {
    /// Destination PA.
    pub mem: u64,
    /// Destination bytes.
    pub memsz: u64,
}

/// Checks a plan: scratch areas RAM, 4 MiB aligned, one below 4 GiB, at
/// least `min_scratch` in all; segments at most 16, page aligned,
/// disjoint, in RAM, at most half of RAM.
///
/// @param ram The next kernel's RAM, `nr_ram` sorted, merged ranges.
/// @param scratch The scratch areas, `nr_scratch` entries.
/// @param min_scratch The least total scratch.
/// @param segs The segments, `nr_segs` entries.
/// @param err NULL, or receives the typed error (kinds as
///        kho_layout_new(), and `"too_many_segments"`,
///        `"segment_misaligned"`, `"segment_not_ram"`, `"segments_overlap"`,
///        `"too_large"`).
/// @return 0, or -KHO_EINVAL.
///
/// # Safety
///
/// Each array is readable for its count; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_plan_check(
    ram: *const kho_range,
    nr_ram: usize,
    scratch: *const kho_scratch,
    nr_scratch: usize,
    min_scratch: u64,
    segs: *const kho_segment_range,
    nr_segs: usize,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (err, ram, scratch, segs) = unsafe {
            (err_arg(err)?, arg_slice(ram, nr_ram)?, arg_slice(scratch, nr_scratch)?, arg_slice(segs, nr_segs)?)
        };
        let ram = ram_of(ram);
        let scratch: Vec<KhoScratch> = scratch.iter().map(|s| KhoScratch { addr: s.addr, size: s.size }).collect();
        let segs: Vec<SegmentRange> = segs.iter().map(|s| SegmentRange { mem: s.mem, memsz: s.memsz }).collect();
        let p = Plan { ram: &ram, scratch: &scratch, min_scratch, windows: &[], segments: &segs };
        p.check().map_err(|e| fail(err, &e))?;
        Ok(KHO_OK)
    })
}

/// Checks one preserved block of `bytes` at `pa`: RAM, not below 1 MiB,
/// not in a scratch area, not in a boot window.
///
/// @param ram The next kernel's RAM, `nr_ram` ranges.
/// @param scratch The scratch areas, `nr_scratch` entries.
/// @param windows The boot windows (kernel, initrd, boot pages,
///        `setup_data`), `nr_windows` ranges.
/// @param pa The block's PA; `bytes` its size.
/// @param err NULL, or receives the typed error (kinds
///        `"preserved_not_ram"`, `"preserved_low"`, `"preserved_in_scratch"`,
///        `"preserved_overlaps"`).
/// @return 0, or -KHO_EINVAL.
///
/// # Safety
///
/// Each array is readable for its count; `err` is NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kho_plan_check_preserved(
    ram: *const kho_range,
    nr_ram: usize,
    scratch: *const kho_scratch,
    nr_scratch: usize,
    windows: *const kho_range,
    nr_windows: usize,
    pa: u64,
    bytes: u64,
    err: *mut kho_error,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (err, ram, scratch, windows) = unsafe {
            (err_arg(err)?, arg_slice(ram, nr_ram)?, arg_slice(scratch, nr_scratch)?, arg_slice(windows, nr_windows)?)
        };
        let ram = ram_of(ram);
        let scratch: Vec<KhoScratch> = scratch.iter().map(|s| KhoScratch { addr: s.addr, size: s.size }).collect();
        let windows: Vec<Window> =
            windows.iter().map(|w| Window { what: "boot window", start: w.start, end: w.end }).collect();
        let p = Plan { ram: &ram, scratch: &scratch, min_scratch: 0, windows: &windows, segments: &[] };
        p.check_preserved(pa, bytes).map_err(|e| fail(err, &e))?;
        Ok(KHO_OK)
    })
}

/// Batches sorted, disjoint runs of pages into at most `max` runs by
/// closing the smallest gaps first (touching runs merge first), in place.
///
/// @param runs `nr` ranges, sorted and disjoint.
/// @param max The most runs wanted (at least 1).
/// @return The runs now in use at the start of `runs`; 0 for NULL `runs`.
///
/// # Safety
///
/// `runs` is NULL or readable and writable for `nr` ranges.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_plan_coalesce(runs: *mut kho_range, nr: usize, max: usize) -> usize {
    guard_or(0, || {
        // SAFETY: readable and writable for `nr` entries (caller's promise).
        let Ok(runs) = (unsafe { arg_slice_mut(runs, nr) }) else { return 0 };
        let mut pairs: Vec<(u64, u64)> = ram_of(runs);
        let n = plan::coalesce(&mut pairs, max);
        for (r, &(s, e)) in runs.iter_mut().zip(&pairs[..n]) {
            *r = kho_range { start: s, end: e };
        }
        n
    })
}

/// Preserves a file's bytes as a `memfd-v2` file, as the kernel does: an
/// order-0 folio per page (dirty and uptodate), the folio list as a
/// `vmalloc-v1` area and the 48-byte descriptor in a page of its own. Add
/// the descriptor's PA to a LUO session with kho_luo_writer_file() and
/// handler `"memfd-v2"`.
///
/// @param out A handle from kho_out_new().
/// @param bytes The file's contents, `len` bytes (may be NULL when 0).
/// @param pos The file position the next kernel restores.
/// @param seals F_SEAL_* bits.
/// @param desc Receives the descriptor's PA.
/// @return 0, -KHO_EINVAL, -KHO_EOPNOTSUPP (unknown seals), -KHO_ENOMEM,
///         -KHO_EBUSY; kho_out_last_error() has the typed error. On
///         failure nothing stays allocated or preserved.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `bytes` is readable for
/// `len` bytes; `desc` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_write(
    out: *mut kho_out,
    bytes: *const c_void,
    len: usize,
    pos: u64,
    seals: u32,
    desc: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (o, bytes, desc) =
            unsafe { (handle_ref(out)?, if len == 0 { &[][..] } else { arg_bytes(bytes, len)? }, arg_mut(desc)?) };
        let p = o.with_tracker(o.platform());
        let m = ::kho_memfd::preserve_bytes(&p, bytes, pos, seals).map_err(|e| o.last.fail(&e))?;
        *desc = m.desc.as_u64();
        Ok(KHO_OK)
    })
}

/// Writes the kernel's self-test state (`kho-test-v1`): random folios of
/// mixed orders, `max_mem` bytes at most, from `seed`; their list; the
/// checksum the next kernel's test_kho verifies; the FDT in a preserved
/// folio. Add it as subtree `"kho_test"` with kho_add_subtree().
///
/// @param out A handle from kho_out_new().
/// @param max_mem The most bytes of folios.
/// @param seed The random bytes' seed.
/// @param blob Receives the FDT's PA; `size` its size (the subtree's
///        blob-size).
/// @return 0, -KHO_EINVAL, -KHO_ENOMEM, -KHO_EBUSY; kho_out_last_error()
///         has the typed error. On failure nothing stays allocated or
///         preserved.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `blob` and `size` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_selftest_write(
    out: *mut kho_out,
    max_mem: u64,
    seed: u64,
    blob: *mut u64,
    size: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (o, blob, size) = unsafe { (handle_ref(out)?, arg_mut(blob)?, arg_mut(size)?) };
        let p = o.with_tracker(o.platform());
        let t = ::kho_selftest::write(&p, max_mem, seed).map_err(|e| o.last.fail(&e))?;
        *blob = t.pa.as_u64();
        *size = t.size;
        Ok(KHO_OK)
    })
}

/// One `reserve_mem` region for [`kho_memblock_write`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kho_reserve_mem {
    /// Its name, NUL-terminated (the next kernel's
    /// `reserve_mem=SIZE:ALIGN:NAME`).
    pub name: *const c_char,
    /// First byte (page aligned); the caller owns and fills the memory.
    pub start: u64,
    /// Bytes (a page multiple).
    pub size: u64,
}

/// Preserves each region through the tracker (split into maximal aligned
/// blocks, as the kernel splits a page range) and writes the
/// `memblock-v1` FDT naming them into a preserved page. Add it as subtree
/// `"memblock"`. A next kernel whose command line names a region of the
/// same name and size revives it.
///
/// @param out A handle from kho_out_new().
/// @param regions `nr` regions.
/// @param blob Receives the FDT's PA; `size` its size.
/// @return 0, -KHO_EINVAL (bad names, misaligned regions), -KHO_ENOMEM,
///         -KHO_EBUSY; kho_out_last_error() has the typed error. On
///         failure nothing stays preserved.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `regions` is readable for
/// `nr` entries whose names are NUL-terminated; `blob` and `size` are
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memblock_write(
    out: *mut kho_out,
    regions: *const kho_reserve_mem,
    nr: usize,
    blob: *mut u64,
    size: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (o, regions, blob, size) =
            unsafe { (handle_ref(out)?, arg_slice(regions, nr)?, arg_mut(blob)?, arg_mut(size)?) };
        let mut list = Vec::new();
        list.try_reserve(regions.len()).map_err(|_| -KHO_ENOMEM)?;
        for r in regions {
            // SAFETY: NUL-terminated (caller's promise).
            let name = unsafe { arg_str(r.name)? };
            list.push((name, PhysAddr::new(r.start), r.size));
        }
        let p = o.with_tracker(o.platform());
        let b = ::kho_memblock::write(&p, &list).map_err(|e| o.last.fail(&e))?;
        *blob = b.pa.as_u64();
        *size = b.size;
        Ok(KHO_OK)
    })
}

/// Writes `kexec-metadata` version 1 (the release the next kernel reports
/// as its predecessor, and the kexec count) into a preserved page. Add it
/// as subtree `"kexec-metadata"` with size 73.
///
/// @param out A handle from kho_out_new().
/// @param release NUL-terminated, at most 64 bytes.
/// @param kexec_count Kexecs in this chain.
/// @param blob Receives the page's PA.
/// @return 0, -KHO_EINVAL, -KHO_ENOMEM, -KHO_EBUSY.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `release` is
/// NUL-terminated; `blob` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_kexec_metadata_write(
    out: *mut kho_out,
    release: *const c_char,
    kexec_count: u32,
    blob: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (o, release, blob) = unsafe { (handle_ref(out)?, arg_str(release)?, arg_mut(blob)?) };
        let p = o.with_tracker(o.platform());
        let pa = ::kho_kexec_meta::write(&p, release, kexec_count).map_err(|e| o.last.fail(&e))?;
        *blob = pa.as_u64();
        Ok(KHO_OK)
    })
}

/// LUO state being written (`luo-v5`). Opaque; made by
/// [`kho_luo_writer_new`].
pub struct kho_luo_writer {
    _private: [u8; 0],
}

/// What a [`kho_luo_writer`] handle owns.
pub(crate) struct LuoWriter {
    w: ::kho_luo::LuoWriter,
    sessions: Vec<::kho_luo::SessionId>,
}

// SAFETY: a magic of its own ("KHO_LUOW").
unsafe impl Castable for kho_luo_writer {
    type RustType = LuoWriter;
    const MAGIC: u64 = 0x4b48_4f5f_4c55_4f57;
}

/// Starts LUO's state as a kernel has it from boot: the 32-byte blob
/// (`sessions_pa` 0) and a one-page FLB region, both preserved.
///
/// @param out A handle from kho_out_new().
/// @param liveupdate_num The live-update number handed over (1 for a
///        first update; the next kernel logs it).
/// @param writer Receives the handle.
/// @return 0, -KHO_EINVAL, -KHO_ENOMEM, -KHO_EBUSY.
///
/// # Safety
///
/// `out` is NULL or a handle from kho_out_new(); `writer` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_writer_new(
    out: *mut kho_out,
    liveupdate_num: u64,
    writer: *mut *mut kho_luo_writer,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (o, writer) = unsafe { (handle_ref(out)?, arg_mut(writer)?) };
        *writer = core::ptr::null_mut();
        let p = o.with_tracker(o.platform());
        let w = ::kho_luo::LuoWriter::new(&p, liveupdate_num).map_err(|e| o.last.fail(&e))?;
        *writer = new_handle::<kho_luo_writer>(LuoWriter { w, sessions: Vec::new() }).map_err(|_| -KHO_ENOMEM)?;
        Ok(KHO_OK)
    })
}

/// Adds a session named `name` (1 to 63 bytes); stores its index.
///
/// @return 0, -KHO_EINVAL (bad or duplicate name), -KHO_ENOMEM.
///
/// # Safety
///
/// `writer` and `out` are NULL or live handles (the writer made on that
/// `out`); `name` is NUL-terminated; `index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_writer_session(
    writer: *mut kho_luo_writer,
    out: *mut kho_out,
    name: *const c_char,
    index: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (w, o, name, index) = unsafe { (handle_mut(writer)?, handle_ref(out)?, arg_str(name)?, arg_mut(index)?) };
        w.sessions.try_reserve(1).map_err(|_| -KHO_ENOMEM)?;
        let p = o.with_tracker(o.platform());
        let id = w.w.create_session(&p, name.as_bytes()).map_err(|e| o.last.fail(&e))?;
        w.sessions.push(id);
        *index = (w.sessions.len() - 1) as u64;
        Ok(KHO_OK)
    })
}

/// Adds a file to session `index`: handler `compatible` (e.g.
/// `"memfd-v2"`), handler data `data` (for memfd the descriptor's PA),
/// and a `token` unique in the session.
///
/// @return 0, -KHO_EINVAL (no such session, bad compatible, duplicate
///         token), -KHO_ENOMEM.
///
/// # Safety
///
/// As kho_luo_writer_session(); `compatible` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_writer_file(
    writer: *mut kho_luo_writer,
    out: *mut kho_out,
    index: u64,
    compatible: *const c_char,
    data: u64,
    token: u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (w, o, compatible) = unsafe { (handle_mut(writer)?, handle_ref(out)?, arg_str(compatible)?) };
        let s = *usize::try_from(index).ok().and_then(|i| w.sessions.get(i)).ok_or(crate::error::EINVAL)?;
        let p = o.with_tracker(o.platform());
        w.w.preserve_file(&p, s, compatible, data, token).map_err(|e| o.last.fail(&e))?;
        Ok(KHO_OK)
    })
}

/// Writes the sessions and files as the kernel does at reboot, frees the
/// writer handle, and gives the blob to add as subtree `"LUO"` (size 32).
/// On failure the handle stays valid.
///
/// @return 0, -KHO_EINVAL, -KHO_ENOMEM, -KHO_EBUSY.
///
/// # Safety
///
/// As kho_luo_writer_session(); `blob` and `size` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_writer_finish(
    writer: *mut kho_luo_writer,
    out: *mut kho_out,
    blob: *mut u64,
    size: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, one argument each.
        let (w, o, blob, size) = unsafe { (handle_mut(writer)?, handle_ref(out)?, arg_mut(blob)?, arg_mut(size)?) };
        let p = o.with_tracker(o.platform());
        w.w.serialize(&p).map_err(|e| o.last.fail(&e))?;
        *blob = w.w.blob().as_u64();
        *size = ::kho_luo::LuoWriter::BLOB_SIZE;
        // SAFETY: a live handle that nothing else uses (caller's promise).
        drop(unsafe { take_handle(writer) });
        Ok(KHO_OK)
    })
}

/// Frees a writer without finishing it; what it wrote stays allocated and
/// preserved on the `kho_out` (kho_out_destroy() frees the tracker's own
/// pages). NULL is ignored.
///
/// # Safety
///
/// `writer` is NULL or a live handle that nothing else uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_writer_destroy(writer: *mut kho_luo_writer) {
    guard_or((), || {
        if !writer.is_null() {
            // SAFETY: a live handle that nothing else uses (caller's promise).
            drop(unsafe { take_handle(writer) });
        }
    })
}
