//! Preserved memfds (`memfd-v2`): `struct kho_memfd`.
//!
//! A LUO file whose handler is `"memfd-v2"` (`KHO_COMPAT_MEMFD_V2`) keeps
//! in its `data` the physical address of a 48-byte descriptor: the file's
//! size, position and seals, and its folio list (a `vmalloc-v1` area of
//! 16-byte entries: pfn, dirty and uptodate flags, page offset in the
//! file). This is guest RAM kept across a host kernel update.
//!
//! [`kho_memfd_restore`] checks the descriptor, the folio list and every
//! folio, and claims them (the folio list's chunk pages are freed, as the
//! kernel frees them); [`kho_memfd_inspect`] runs the same checks and gives
//! every claim back. [`kho_memfd_get_info`] and [`kho_memfd_get_folio`] give the
//! decoded file, [`kho_memfd_read`] its bytes in file order (holes read as
//! zeros). [`kho_memfd_finish`] frees the descriptor page and the folio
//! list and leaves the folios restored, the caller's, as the kernel does
//! once it rebuilt the file; [`kho_memfd_free`] frees the folios too;
//! [`kho_memfd_destroy`] gives everything back unclaimed.
//!
//! A corrupt memfd fails with `-KHO_EINVAL` (`-KHO_EOPNOTSUPP` for unknown
//! seals or flags) and leaves nothing claimed; kho_in_last_error() gives
//! its typed error: `kind` is the memfd layer's stable name
//! (`"memfd_descriptor_unknown_bits"`, `"memfd_folio_not_preserved"`,
//! `"memfd_list"`, ...), `field` a path (`desc.seals`, `desc.nr_folios`,
//! `folios.<field>` for the folio list's vmalloc area, `folio[7].pfn`),
//! `pa` the descriptor or the folio, `index` the folio's position in the
//! list, `value` the offending bits, size or count.

use core::ffi::{c_int, c_void};

use ::kho_memfd::{Fault, Memfd, MemfdError, RestoredMemfd};
use kho_abi::{PAGE_SHIFT, PhysAddr};

use crate::error::{KHO_ENOENT, KHO_ENOMEM, KHO_OK};
use crate::inc::kho_in;
use crate::panic::{guard, guard_or};
use crate::ptr::{Castable, arg_bytes_mut, arg_mut, arg_opt_mut, handle_ref, new_handle, take_handle};
use crate::record::{Describe, kho_error};

/// Folio flag: the folio holds data the user wrote.
pub const KHO_MEMFD_FOLIO_DIRTY: u16 = 1 << 0;
/// Folio flag: the folio was zeroed (shmem's "up to date").
pub const KHO_MEMFD_FOLIO_UPTODATE: u16 = 1 << 1;

const _: () = assert!(KHO_MEMFD_FOLIO_DIRTY == ::kho_memfd::abi::FOLIO_DIRTY);
const _: () = assert!(KHO_MEMFD_FOLIO_UPTODATE == ::kho_memfd::abi::FOLIO_UPTODATE);

/// A decoded memfd. Opaque; made by [`kho_memfd_restore`] or
/// [`kho_memfd_inspect`].
pub struct kho_memfd {
    _private: [u8; 0],
}

/// The file as a whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_memfd_info {
    /// Physical address of the descriptor (the LUO file's `data`).
    pub desc: u64,
    /// File size in bytes.
    pub size: u64,
    /// File position.
    pub pos: u64,
    /// Folios (entries of the folio list).
    pub nr_folios: u64,
    /// Pages the folios hold.
    pub pages: u64,
    /// Folios flagged dirty.
    pub dirty: u64,
    /// Folios flagged up to date.
    pub uptodate: u64,
    /// Blocks of the folio list's vmalloc area.
    pub list_blocks: u64,
    /// Chunk pages of the folio list's vmalloc area.
    pub list_chunks: u64,
    /// Seals (`F_SEAL_*`).
    pub seals: u32,
    /// The descriptor's flags: `memfd-v2` defines none, so always 0.
    pub flags: u32,
    /// Order of the folio list's blocks.
    pub list_order: u32,
    /// 1 if the handle holds the memfd's pages claimed
    /// (kho_memfd_restore()), 0 if it only looked (kho_memfd_inspect()).
    pub restored: u32,
}

/// One folio of the file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_memfd_folio {
    /// Its physical address.
    pub pa: u64,
    /// Its page frame number (`pa >> KHO_PAGE_SHIFT`), as the entry stores it.
    pub pfn: u64,
    /// Its first page's offset in the file, in pages.
    pub index: u64,
    /// Its order: the one order the previous kernel preserved it with.
    pub order: u32,
    /// `KHO_MEMFD_FOLIO_DIRTY` and `KHO_MEMFD_FOLIO_UPTODATE` bits.
    pub flags: u16,
    /// Always 0.
    pub reserved: u16,
}

const _: () = assert!(size_of::<kho_memfd_info>() == 88);
const _: () = assert!(size_of::<kho_memfd_folio>() == 32);

/// What a [`kho_memfd`] handle owns.
pub(crate) struct MemfdHandle {
    memfd: Memfd,
    /// The claims of a restore, `None` for an inspection.
    held: Option<RestoredMemfd>,
}

// SAFETY: a magic of its own ("KHO_MFD1").
unsafe impl Castable for kho_memfd {
    type RustType = MemfdHandle;
    const MAGIC: u64 = 0x4b48_4f5f_4d46_4431;
}

/// Shared body of restore and inspect.
///
/// # Safety
///
/// As [`kho_memfd_restore`].
unsafe fn open(inc: *mut kho_in, desc: u64, memfd: *mut *mut kho_memfd, keep: bool) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(memfd)? };
        *slot = core::ptr::null_mut();
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        let desc = PhysAddr::new(desc);
        let handle = if keep {
            let r = ::kho_memfd::restore(&p, desc).map_err(|e| i.last.fail(&e))?;
            MemfdHandle { memfd: r.memfd().clone(), held: Some(r) }
        } else {
            MemfdHandle { memfd: ::kho_memfd::inspect(&p, desc).map_err(|e| i.last.fail(&e))?, held: None }
        };
        match new_handle::<kho_memfd>(handle) {
            Ok(h) => {
                *slot = h;
                Ok(KHO_OK)
            }
            Err(MemfdHandle { held, .. }) => {
                if let Some(r) = held {
                    r.unclaim(&p);
                }
                Err(-KHO_ENOMEM)
            }
        }
    })
}

/// Restores the memfd whose descriptor is at `desc` (a `"memfd-v2"` LUO
/// file's `data`), as the next kernel's memfd handler does. Checked, each
/// before what it guards is trusted: the descriptor (page aligned, RAM,
/// preserved at order 0; `size` at most `UINT32_MAX` pages; seals within
/// the six `F_SEAL_*`; flags 0), the folio list (a `vmalloc-v1` area:
/// descriptor, bounded cycle-free chunk chain, every chunk and block
/// preserved; exactly as many pages as `nr_folios` entries need) and
/// each folio (flags within dirty and uptodate; pfn in RAM and preserved
/// at some order, so a folio listed twice fails; index ascending, past
/// the previous folio's last page, inside the file). The descriptor page,
/// the list's blocks and the folios are claimed; the list's chunk pages
/// are freed through the platform.
///
/// @param inc A handle from kho_in_import().
/// @param desc Physical address of the descriptor.
/// @param memfd Receives the handle on success, NULL on failure.
/// @return 0; -KHO_EOPNOTSUPP (unknown seals or flags); -KHO_EINVAL (NULL
///         arguments, any other corrupt field: see kho_in_last_error(),
///         whose `kind` is a `memfd_*` name); -KHO_ENOMEM. On failure
///         nothing stays claimed and nothing is freed.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `memfd` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_restore(inc: *mut kho_in, desc: u64, memfd: *mut *mut kho_memfd) -> c_int {
    // SAFETY: the caller's promises are open()'s.
    unsafe { open(inc, desc, memfd, true) }
}

/// kho_memfd_restore() for a reader that only looks: every check, then
/// every claim given back before returning; nothing is freed.
///
/// @param inc A handle from kho_in_import().
/// @param desc Physical address of the descriptor.
/// @param memfd Receives the handle on success, NULL on failure.
/// @return as kho_memfd_restore().
///
/// # Safety
///
/// As kho_memfd_restore().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_inspect(inc: *mut kho_in, desc: u64, memfd: *mut *mut kho_memfd) -> c_int {
    // SAFETY: the caller's promises are open()'s.
    unsafe { open(inc, desc, memfd, false) }
}

/// Stores what the file holds in `*info`.
///
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect().
/// @param info Receives the figures.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `memfd` is NULL or a live handle; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_get_info(memfd: *const kho_memfd, info: *mut kho_memfd_info) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(info)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(memfd)? };
        let m = &h.memfd;
        *out = kho_memfd_info {
            desc: m.desc.as_u64(),
            size: m.size,
            pos: m.pos,
            nr_folios: m.folios.len() as u64,
            pages: m.pages(),
            dirty: m.dirty() as u64,
            uptodate: m.uptodate() as u64,
            list_blocks: m.list_blocks.len() as u64,
            list_chunks: m.list_chunks.len() as u64,
            seals: m.seals,
            flags: 0,
            list_order: m.list_order.get(),
            restored: u32::from(h.held.is_some()),
        };
        Ok(KHO_OK)
    })
}

/// Stores folio `index` (in list order, ascending by file offset) in
/// `*folio`.
///
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect().
/// @param index The folio's position in the list.
/// @param folio Receives the folio.
/// @return 0, -KHO_ENOENT (`index` not below `nr_folios`), -KHO_EINVAL.
///
/// # Safety
///
/// `memfd` is NULL or a live handle; `folio` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_get_folio(
    memfd: *const kho_memfd,
    index: u64,
    folio: *mut kho_memfd_folio,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(folio)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(memfd)? };
        let f = usize::try_from(index).ok().and_then(|i| h.memfd.folios.get(i)).ok_or(-KHO_ENOENT)?;
        *out = kho_memfd_folio {
            pa: f.pa.as_u64(),
            pfn: f.pa.as_u64() >> PAGE_SHIFT,
            index: f.index,
            order: f.order.get(),
            flags: f.flags,
            reserved: 0,
        };
        Ok(KHO_OK)
    })
}

/// Reads the file's bytes from `offset` into `buf`, at most `len` of them
/// and never past the file size; pages without a folio read as zeros.
/// `*read` receives the bytes read (0 at the end of the file). Reads what
/// is in RAM now: call it before the folios are reused.
///
/// @param inc The handle the memfd was restored or inspected through.
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect().
/// @param offset Byte offset in the file.
/// @param buf Receives the bytes.
/// @param len Bytes at `buf`.
/// @param read NULL, or receives the bytes read.
/// @return 0, -KHO_EINVAL (NULL or bad arguments, `offset` beyond the
///         file size).
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `memfd` is NULL or a
/// live handle; `buf` is writable for `len` bytes; `read` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_read(
    inc: *const kho_in,
    memfd: *const kho_memfd,
    offset: u64,
    buf: *mut c_void,
    len: usize,
    read: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let read = unsafe { arg_opt_mut(read)? };
        // SAFETY: writable for `len` bytes (caller's promise).
        let buf = unsafe { arg_bytes_mut(buf, len)? };
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(memfd)? };
        let n = h.memfd.read_at(i.platform(), offset, buf).map_err(|e| i.last.fail(&e))?;
        if let Some(r) = read {
            *r = n as u64;
        }
        Ok(KHO_OK)
    })
}

/// Ends a handle the way the kernel does once it rebuilt the file: the
/// descriptor page and the folio list's blocks are freed through the
/// platform's `free_pages`, and the folios stay claimed, the caller's (as
/// if restored with kho_restore_folio() at their orders; free them with
/// the platform when done). For a handle from kho_memfd_inspect() only the
/// handle is freed. NULL is ignored.
///
/// @param inc The handle the memfd was restored through.
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect(), or NULL.
/// @return 0, -KHO_EINVAL (`inc` not a live handle: `memfd` is left as it
///         was).
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `memfd` is NULL or a
/// live handle that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_finish(inc: *mut kho_in, memfd: *mut kho_memfd) -> c_int {
    // SAFETY: the caller's promises are end()'s.
    unsafe { end(inc, memfd, false) }
}

/// kho_memfd_finish() that frees the folios too: the file's memory goes
/// back to the platform's allocator.
///
/// @param inc The handle the memfd was restored through.
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect(), or NULL.
/// @return as kho_memfd_finish().
///
/// # Safety
///
/// As kho_memfd_finish().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_free(inc: *mut kho_in, memfd: *mut kho_memfd) -> c_int {
    // SAFETY: the caller's promises are end()'s.
    unsafe { end(inc, memfd, true) }
}

/// Shared body of finish and free.
///
/// # Safety
///
/// As [`kho_memfd_finish`].
unsafe fn end(inc: *mut kho_in, memfd: *mut kho_memfd, folios: bool) -> c_int {
    guard(|| {
        if memfd.is_null() {
            return Ok(KHO_OK);
        }
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        // SAFETY: a live handle that nothing else uses (caller's promise).
        let h = unsafe { take_handle(memfd)? };
        if let Some(r) = h.held {
            let p = i.with_tracker();
            if folios {
                r.free(&p);
            } else {
                r.finish(&p);
            }
        }
        Ok(KHO_OK)
    })
}

/// Frees the handle and gives every page kho_memfd_restore() claimed
/// (descriptor, folio list blocks, folios) back unclaimed: they stay
/// preserved and kho_in_unclaimed() lists them. (The folio list's chunk
/// pages, which the restore freed as the kernel does, stay freed.) For a
/// handle from kho_memfd_inspect() only the handle is freed. NULL (or an
/// invalid handle) is ignored.
///
/// @param inc The handle the memfd was restored through.
/// @param memfd A handle from kho_memfd_restore() or kho_memfd_inspect(), or NULL.
///
/// # Safety
///
/// As kho_memfd_finish().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_memfd_destroy(inc: *mut kho_in, memfd: *mut kho_memfd) {
    guard_or((), || {
        if memfd.is_null() {
            return;
        }
        // SAFETY: a handle or NULL (caller's promise).
        let Ok(i) = (unsafe { handle_ref(inc) }) else { return };
        // SAFETY: a live handle that nothing else uses (caller's promise).
        if let Ok(h) = unsafe { take_handle(memfd) }
            && let Some(r) = h.held
        {
            r.unclaim(&i.with_tracker());
        }
    })
}

/// The offending value a memfd fault carries, if any.
fn fault_value(fault: &Fault) -> Option<u64> {
    match fault {
        Fault::UnknownBits { bits } => Some(*bits),
        Fault::OutOfRange { value, .. } => Some(*value),
        Fault::NotAscending { index, .. } => Some(*index),
        Fault::ListSize { nr_folios, .. } => Some(*nr_folios),
        _ => None,
    }
}

impl Describe for MemfdError {
    fn describe(&self, r: &mut kho_error) {
        match self {
            MemfdError::Descriptor { pa, field, fault } => {
                r.set_pa(*pa).set_field(format_args!("desc.{field}"));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            MemfdError::List { source, .. } => {
                source.describe(r);
                // The vmalloc layer's field, under the descriptor's.
                let lower = r.field;
                let len = lower.iter().position(|&c| c == 0).unwrap_or(lower.len());
                let bytes: [u8; crate::record::KHO_ERROR_FIELD_LEN] = lower.map(|c| c as u8);
                match core::str::from_utf8(&bytes[..len]) {
                    Ok("") | Err(_) => r.set_field("folios"),
                    Ok(f) => r.set_field(format_args!("folios.{f}")),
                };
            }
            MemfdError::Folio { entry, pfn, field, fault, .. } => {
                r.set_pa(PhysAddr::new(*pfn << PAGE_SHIFT))
                    .set_index(*entry)
                    .set_field(format_args!("folio[{entry}].{field}"));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            MemfdError::Beyond { offset, .. } => {
                r.set_value(*offset);
            }
            MemfdError::Vmalloc(e) => e.describe(r),
            MemfdError::Platform(e) => e.describe(r),
            MemfdError::Unsupported { what } => {
                r.set_field(what);
            }
            // A variant newer than this crate: its kind and message only.
            _ => {}
        }
        // The layer's own name, over any a wrapped error set.
        r.set_kind(self.kind());
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn memfd_errors_name_the_place_as_a_path() {
        use ::kho_memfd::Fault as MFault;
        let pa = PhysAddr::new(0x9000);
        let r =
            kho_error::of(&MemfdError::Descriptor { pa, field: "seals", fault: MFault::UnknownBits { bits: 0x40 } });
        assert_eq!((r.kind_str(), r.field_str()), ("memfd_descriptor_unknown_bits", "desc.seals"));
        assert_eq!((r.code, r.pa, r.value), (-95, 0x9000, 0x40));
        let r = kho_error::of(&MemfdError::Folio {
            entry: 7,
            pfn: 0x12,
            index: 7,
            field: "pfn",
            fault: MFault::NotPreserved,
        });
        assert_eq!((r.kind_str(), r.field_str()), ("memfd_folio_not_preserved", "folio[7].pfn"));
        assert_eq!((r.pa, r.index), (0x12 << kho_abi::PAGE_SHIFT, 7));
        use kho_abi::chain::{ChainError, ChainFault, LinkField};
        let link = ChainError { index: 1, pa, field: LinkField::Next, fault: ChainFault::Misaligned };
        let list = ::kho_vmalloc::VmallocError::Chain(link);
        let r = kho_error::of(&MemfdError::List { pa, source: list });
        assert_eq!((r.kind_str(), r.field_str()), ("memfd_list", "folios.next"));
    }
}
