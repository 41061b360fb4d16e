//! The Live Update Orchestrator's state (`luo-v5`): `struct kho_luo`.
//!
//! The `LUO` subtree of a Linux 7.2 handover holds the sessions user space
//! preserved and, in each, its files (a handler's compatible, the
//! handler's data, the user's token). The next kernel finds the blob with
//! kho_retrieve_subtree() (the subtree `KHO_LUO_SUBTREE`, `"LUO"`),
//! then either
//!
//! - restores it ([`kho_luo_restore`]): every page the state reaches (the
//!   blob, the session and file blocks, the FLB region) is checked and
//!   claimed, as the kernel's LUO does, until [`kho_luo_finish`] frees them
//!   or [`kho_luo_destroy`] gives them back; or
//! - only looks at it ([`kho_luo_inspect`]): the same checks, and every
//!   claim given back before the call returns.
//!
//! Either way the decoded state is read with [`kho_luo_get_info`],
//! [`kho_luo_get_session`], [`kho_luo_find_session`], [`kho_luo_get_file`] and
//! [`kho_luo_get_flb`]. A file whose handler is `"memfd-v2"` keeps in `data`
//! the address of its memfd descriptor, which `kho_memfd_restore()` reads.
//!
//! A corrupt state fails the call with `-KHO_EINVAL` and leaves nothing
//! claimed; kho_in_last_error() then gives its typed error. Its `kind` is
//! the LUO layer's stable name (`"luo_compatible"`,
//! `"luo_files_not_ram"`, `"luo_session_count_mismatch"`, ...) and its
//! `field` says where, as a path: `blob.compatible`, `blob.blob-size`,
//! `sessions.<chain field>`, `session[2].name`, `session[2].count`,
//! `session[2].files.<chain field>`, `session[2].file[5].token`,
//! `flbs.pgcnt`, `flb[1].name`. `index` is the session's position for a
//! session field, the file's for a file field, the block's in its chain
//! for a chain fault; `pa` is the blob, the block or the FLB region;
//! `value` the offending count, size or bits.

use core::ffi::{c_char, c_int};

use ::kho_luo::{Fault, Luo, LuoError, RestoredLuo};
use kho_abi::PhysAddr;

use crate::error::{EINVAL, KHO_ENOENT, KHO_OK};
use crate::inc::kho_in;
use crate::panic::{guard, guard_or};
use crate::ptr::{Castable, arg_mut, handle_ref, new_handle, take_handle};
use crate::record::{Describe, kho_error};

/// Bytes of [`kho_luo_session::name`], its NUL included (the wire size).
pub const KHO_LUO_SESSION_NAME_LEN: usize = 64;
/// Bytes of [`kho_luo_file::compatible`], its NUL included (the wire size).
pub const KHO_LUO_COMPATIBLE_LEN: usize = 48;
/// Bytes of [`kho_luo_flb::name`], its NUL included (the wire size).
pub const KHO_LUO_FLB_NAME_LEN: usize = 48;

const _: () = assert!(KHO_LUO_SESSION_NAME_LEN == ::kho_luo::abi::SESSION_NAME_LEN);
const _: () = assert!(KHO_LUO_COMPATIBLE_LEN == ::kho_luo::abi::FILE_COMPATIBLE_LEN);
const _: () = assert!(KHO_LUO_FLB_NAME_LEN == ::kho_luo::abi::FLB_NAME_LEN);

/// Decoded LUO state. Opaque; made by [`kho_luo_restore`] or
/// [`kho_luo_inspect`].
pub struct kho_luo {
    _private: [u8; 0],
}

/// The state as a whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kho_luo_info {
    /// Physical address of the blob.
    pub blob: u64,
    /// The live-update sequence number.
    pub liveupdate_num: u64,
    /// First block of the session chain; 0 without sessions (always 0 in a
    /// live kernel's memory: sessions are written at reboot).
    pub sessions_pa: u64,
    /// The FLB region; 0 if there is none.
    pub flbs_pa: u64,
    /// Sessions.
    pub nr_sessions: u64,
    /// Files, all sessions together.
    pub nr_files: u64,
    /// FLB entries.
    pub nr_flbs: u64,
    /// Pages of the FLB region (0 if there is none).
    pub flbs_pgcnt: u64,
    /// Pages of the session chain.
    pub session_blocks: u64,
    /// 1 if the handle holds the state's pages claimed (kho_luo_restore()),
    /// 0 if it only looked (kho_luo_inspect()).
    pub restored: u32,
    /// Always 0.
    pub reserved: u32,
}

/// One session.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kho_luo_session {
    /// Its name: the bytes the kernel stored, NUL-terminated (names are
    /// user bytes, not necessarily UTF-8, never holding a NUL).
    pub name: [c_char; KHO_LUO_SESSION_NAME_LEN],
    /// Bytes of `name` before its NUL.
    pub name_len: u64,
    /// First block of the session's file chain; 0 without files.
    pub files_pa: u64,
    /// Files in the session.
    pub nr_files: u64,
    /// Pages of the file chain.
    pub file_blocks: u64,
}

/// One preserved file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kho_luo_file {
    /// The file handler's compatible (`"memfd-v2"`, ...), NUL-terminated.
    /// Handlers kho does not know are listed as they are.
    pub compatible: [c_char; KHO_LUO_COMPATIBLE_LEN],
    /// The handler's data: for `"memfd-v2"` the physical address of the
    /// memfd descriptor (kho_memfd_restore()).
    pub data: u64,
    /// The user's token, unique in the session.
    pub token: u64,
}

/// One FLB entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kho_luo_flb {
    /// Its name, NUL-terminated.
    pub name: [c_char; KHO_LUO_FLB_NAME_LEN],
    /// The owner's data.
    pub data: u64,
    /// Files bound to it.
    pub count: u64,
}

const _: () = assert!(size_of::<kho_luo_info>() == 80);
const _: () = assert!(size_of::<kho_luo_session>() == 96);
const _: () = assert!(size_of::<kho_luo_file>() == 64);
const _: () = assert!(size_of::<kho_luo_flb>() == 64);

/// What a [`kho_luo`] handle owns.
pub(crate) struct LuoHandle {
    /// The decoded state.
    luo: Luo,
    /// The claims of a restore, `None` for an inspection.
    held: Option<RestoredLuo>,
}

// SAFETY: a magic of its own ("KHO_LUO1").
unsafe impl Castable for kho_luo {
    type RustType = LuoHandle;
    const MAGIC: u64 = 0x4b48_4f5f_4c55_4f31;
}

/// Copies `bytes` into a C string array, NUL-terminated; the bytes are
/// shorter than the array (the wire arrays hold their NUL).
fn c_array<const N: usize>(bytes: &[u8]) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (d, &b) in out.iter_mut().zip(bytes.iter().take(N - 1)) {
        *d = b as c_char;
    }
    out
}

/// Shared body of restore and inspect.
///
/// # Safety
///
/// As [`kho_luo_restore`].
unsafe fn open(inc: *mut kho_in, blob: u64, size: u64, luo: *mut *mut kho_luo, keep: bool) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let slot = unsafe { arg_mut(luo)? };
        *slot = core::ptr::null_mut();
        // SAFETY: a handle or NULL; shared use is allowed (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        let p = i.with_tracker();
        let blob = PhysAddr::new(blob);
        let handle = if keep {
            let r = ::kho_luo::restore(&p, blob, size).map_err(|e| i.last.fail(&e))?;
            LuoHandle { luo: r.luo().clone(), held: Some(r) }
        } else {
            LuoHandle { luo: ::kho_luo::inspect(&p, blob, size).map_err(|e| i.last.fail(&e))?, held: None }
        };
        match new_handle::<kho_luo>(handle) {
            Ok(h) => {
                *slot = h;
                Ok(KHO_OK)
            }
            Err(LuoHandle { held, .. }) => {
                if let Some(r) = held {
                    r.unclaim(&p);
                }
                Err(-crate::error::KHO_ENOMEM)
            }
        }
    })
}

/// Restores the LUO state whose blob is at `blob`, `size` bytes (the `LUO`
/// subtree's address and blob-size from kho_retrieve_subtree()), as the
/// next kernel's LUO does. Checked, each before what it guards is trusted:
/// the blob (size, alignment, RAM, preserved), its compatible (exactly
/// `"luo-v5"`: the kernel has no fallback), the session chain (a `block-v1`
/// chain: aligned, RAM, preserved, bounded, no cycle, counts in range),
/// each session (name NUL-terminated, not empty, unique; its file chain
/// like the session chain; `count` equal to the files that chain holds),
/// each file (compatible NUL-terminated and not empty, token unique in
/// the session) and the FLB region (aligned, RAM, `pgcnt` in range,
/// preserved, entries fitting, names NUL-terminated, not empty, unique).
/// Every page reached is claimed and stays claimed until
/// kho_luo_finish() or kho_luo_destroy().
///
/// @param inc A handle from kho_in_import().
/// @param blob Physical address of the blob.
/// @param size Its size in bytes (the subtree's blob-size).
/// @param luo Receives the handle on success, NULL on failure.
/// @return 0; -KHO_EINVAL (NULL arguments, or corrupt state: see
///         kho_in_last_error(), whose `kind` is a `luo_*` name);
///         -KHO_ENOMEM. On failure nothing stays claimed.
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `luo` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_restore(inc: *mut kho_in, blob: u64, size: u64, luo: *mut *mut kho_luo) -> c_int {
    // SAFETY: the caller's promises are open()'s.
    unsafe { open(inc, blob, size, luo, true) }
}

/// kho_luo_restore() for a reader that only looks (a bootloader, a
/// dump reader): every check of a restore, then every claim given back
/// before returning. The handle holds the decoded state only.
///
/// @param inc A handle from kho_in_import().
/// @param blob Physical address of the blob.
/// @param size Its size in bytes.
/// @param luo Receives the handle on success, NULL on failure.
/// @return as kho_luo_restore(); the claims are as before the call either
///         way.
///
/// # Safety
///
/// As kho_luo_restore().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_inspect(inc: *mut kho_in, blob: u64, size: u64, luo: *mut *mut kho_luo) -> c_int {
    // SAFETY: the caller's promises are open()'s.
    unsafe { open(inc, blob, size, luo, false) }
}

/// Stores what the state holds in `*info`.
///
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect().
/// @param info Receives the figures.
/// @return 0 or -KHO_EINVAL.
///
/// # Safety
///
/// `luo` is NULL or a live handle; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_get_info(luo: *const kho_luo, info: *mut kho_luo_info) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(info)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(luo)? };
        let l = &h.luo;
        *out = kho_luo_info {
            blob: l.blob.as_u64(),
            liveupdate_num: l.liveupdate_num,
            sessions_pa: l.sessions_pa.as_u64(),
            flbs_pa: l.flbs.as_ref().map_or(0, |f| f.pa.as_u64()),
            nr_sessions: l.sessions.len() as u64,
            nr_files: l.file_count() as u64,
            nr_flbs: l.flbs.as_ref().map_or(0, |f| f.entries.len() as u64),
            flbs_pgcnt: l.flbs.as_ref().map_or(0, |f| f.pgcnt),
            session_blocks: l.session_blocks.len() as u64,
            restored: u32::from(h.held.is_some()),
            reserved: 0,
        };
        Ok(KHO_OK)
    })
}

/// Stores session `index` (in chain order, from 0) in `*session`.
///
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect().
/// @param index The session's position.
/// @param session Receives the session.
/// @return 0, -KHO_ENOENT (`index` not below `nr_sessions`), -KHO_EINVAL.
///
/// # Safety
///
/// `luo` is NULL or a live handle; `session` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_get_session(luo: *const kho_luo, index: u64, session: *mut kho_luo_session) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(session)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(luo)? };
        let s = usize::try_from(index).ok().and_then(|i| h.luo.sessions.get(i)).ok_or(-KHO_ENOENT)?;
        *out = kho_luo_session {
            name: c_array(&s.raw_name),
            name_len: s.raw_name.len() as u64,
            files_pa: s.files_pa.as_u64(),
            nr_files: s.files.len() as u64,
            file_blocks: s.file_blocks.len() as u64,
        };
        Ok(KHO_OK)
    })
}

/// Finds the session called `name` and stores its position in `*index`.
///
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect().
/// @param name The session's name, NUL-terminated.
/// @param index Receives its position.
/// @return 0, -KHO_ENOENT (no such session), -KHO_EINVAL.
///
/// # Safety
///
/// `luo` is NULL or a live handle; `name` is NULL or NUL-terminated;
/// `index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_find_session(luo: *const kho_luo, name: *const c_char, index: *mut u64) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(index)? };
        if name.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: NUL-terminated (caller's promise); names need not be
        // UTF-8, so the bytes are compared, not a `str`.
        let name = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(luo)? };
        let i = h.luo.sessions.iter().position(|s| s.raw_name == name).ok_or(-KHO_ENOENT)?;
        *out = i as u64;
        Ok(KHO_OK)
    })
}

/// Stores file `index` of session `session` (both in chain order, from 0)
/// in `*file`.
///
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect().
/// @param session The session's position.
/// @param index The file's position in the session.
/// @param file Receives the file.
/// @return 0, -KHO_ENOENT (no such session or file), -KHO_EINVAL.
///
/// # Safety
///
/// `luo` is NULL or a live handle; `file` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_get_file(
    luo: *const kho_luo,
    session: u64,
    index: u64,
    file: *mut kho_luo_file,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(file)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(luo)? };
        let f = usize::try_from(session)
            .ok()
            .and_then(|s| h.luo.sessions.get(s))
            .and_then(|s| usize::try_from(index).ok().and_then(|i| s.files.get(i)))
            .ok_or(-KHO_ENOENT)?;
        *out = kho_luo_file { compatible: c_array(f.compatible.as_bytes()), data: f.data, token: f.token };
        Ok(KHO_OK)
    })
}

/// Stores FLB entry `index` in `*flb`.
///
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect().
/// @param index The entry's position.
/// @param flb Receives the entry.
/// @return 0, -KHO_ENOENT (no FLB region, or `index` not below
///         `nr_flbs`), -KHO_EINVAL.
///
/// # Safety
///
/// `luo` is NULL or a live handle; `flb` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_get_flb(luo: *const kho_luo, index: u64, flb: *mut kho_luo_flb) -> c_int {
    guard(|| {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { arg_mut(flb)? };
        // SAFETY: a handle or NULL (caller's promise).
        let h = unsafe { handle_ref(luo)? };
        let e = h
            .luo
            .flbs
            .as_ref()
            .and_then(|f| usize::try_from(index).ok().and_then(|i| f.entries.get(i)))
            .ok_or(-KHO_ENOENT)?;
        *out = kho_luo_flb { name: c_array(e.name.as_bytes()), data: e.data, count: e.count };
        Ok(KHO_OK)
    })
}

/// Ends a handle the way the kernel ends LUO's restore: every page
/// kho_luo_restore() claimed (blob, session and file blocks, FLB region)
/// is freed through the platform's `free_pages`, then the handle. For a
/// handle from kho_luo_inspect() only the handle is freed. The memfds the
/// files name are not touched: restore them first. NULL is ignored.
///
/// @param inc The handle the state was restored through.
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect(), or NULL.
/// @return 0, -KHO_EINVAL (`inc` not a live handle: `luo` is left as it
///         was).
///
/// # Safety
///
/// `inc` is NULL or a handle from kho_in_import(); `luo` is NULL or a live
/// handle that no other call uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_finish(inc: *mut kho_in, luo: *mut kho_luo) -> c_int {
    guard(|| {
        if luo.is_null() {
            return Ok(KHO_OK);
        }
        // SAFETY: a handle or NULL (caller's promise).
        let i = unsafe { handle_ref(inc)? };
        // SAFETY: a live handle that nothing else uses (caller's promise).
        let h = unsafe { take_handle(luo)? };
        if let Some(r) = h.held {
            let p = i.with_tracker();
            r.free(&p).map_err(|e| i.last.fail(&e))?;
        }
        Ok(KHO_OK)
    })
}

/// Frees the handle and gives every page kho_luo_restore() claimed back
/// unclaimed: they stay preserved, and kho_in_unclaimed() lists them. For
/// a handle from kho_luo_inspect() only the handle is freed. NULL (or an
/// invalid handle) is ignored.
///
/// @param inc The handle the state was restored through.
/// @param luo A handle from kho_luo_restore() or kho_luo_inspect(), or NULL.
///
/// # Safety
///
/// As kho_luo_finish().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kho_luo_destroy(inc: *mut kho_in, luo: *mut kho_luo) {
    guard_or((), || {
        if luo.is_null() {
            return;
        }
        // SAFETY: a handle or NULL (caller's promise).
        let Ok(i) = (unsafe { handle_ref(inc) }) else { return };
        // SAFETY: a live handle that nothing else uses (caller's promise).
        if let Ok(h) = unsafe { take_handle(luo) }
            && let Some(r) = h.held
        {
            r.unclaim(&i.with_tracker());
        }
    })
}

/// The `field` text of a session-level error.
struct SessionField<'a>(usize, &'a str);

impl core::fmt::Display for SessionField<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "session[{}].{}", self.0, self.1)
    }
}

/// The offending value a LUO fault carries, if any.
fn fault_value(fault: &Fault) -> Option<u64> {
    match fault {
        Fault::Duplicate { first } => Some(*first as u64),
        Fault::CountMismatch { count, .. } => Some(*count),
        Fault::TooShort { len, .. } => Some(*len),
        Fault::OutOfRange { value, .. } => Some(*value),
        Fault::Misaligned(pa) => Some(pa.as_u64()),
        _ => None,
    }
}

/// The chain place of a block-layer error, the chain named by `chain`.
fn chain_place(r: &mut kho_error, e: &kho_block::BlockError, chain: core::fmt::Arguments<'_>) {
    e.describe(r);
    if let kho_block::BlockError::Chain(c) = e {
        r.set_field(format_args!("{chain}.{}", c.field));
    } else {
        r.set_field(chain);
    }
}

impl Describe for LuoError {
    fn describe(&self, r: &mut kho_error) {
        match self {
            LuoError::Blob { pa, field, fault } => {
                r.set_pa(*pa).set_field(format_args!("blob.{field}"));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            LuoError::Compatible { found } => {
                r.set_field("blob.compatible").set_value(u64::from_ne_bytes(*found));
            }
            LuoError::Sessions(e) => chain_place(r, e, format_args!("sessions")),
            LuoError::Session { at, field, fault } => {
                r.set_index(at.index as u64).set_field(SessionField(at.index, field));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            LuoError::Files { at, source } => chain_place(r, source, format_args!("session[{}].files", at.index)),
            LuoError::File { at, index, token, field, fault } => {
                r.set_index(*index as u64).set_field(format_args!("session[{}].file[{index}].{field}", at.index));
                r.set_value(fault_value(fault).unwrap_or(*token));
            }
            LuoError::Flbs { pa, field, fault } => {
                r.set_pa(*pa).set_field(format_args!("flbs.{field}"));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            LuoError::Flb { index, field, fault, .. } => {
                r.set_index(*index as u64).set_field(format_args!("flb[{index}].{field}"));
                if let Some(v) = fault_value(fault) {
                    r.set_value(v);
                }
            }
            LuoError::Block(e) => e.describe(r),
            LuoError::Platform(e) => e.describe(r),
            LuoError::BadName { what, .. } | LuoError::Exists { what, .. } => {
                r.set_field(what);
            }
            LuoError::NoSession(i) => {
                r.set_index(*i as u64);
            }
            LuoError::FlbFull { max } => {
                r.set_value(*max as u64);
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
    use ::kho_luo::SessionAt;
    use alloc::string::String;
    use kho_abi::chain::ChainFault;
    use kho_block::{BlockError, ChainError, Fault as BlockFault, Field};

    use super::*;

    #[test]
    fn luo_errors_name_the_place_as_a_path() {
        let pa = PhysAddr::new(0x7000);
        let at = SessionAt { index: 3, name: String::from("vm3") };
        let chain = BlockError::Chain(ChainError {
            index: 2,
            pa,
            field: Field::Next,
            fault: BlockFault::Link(ChainFault::Cycle { first: 0 }),
        });
        let r = kho_error::of(&LuoError::Files { at: at.clone(), source: chain });
        assert_eq!((r.kind_str(), r.field_str()), ("luo_files_cycle", "session[3].files.next"));
        assert_eq!((r.pa, r.index, r.code), (0x7000, 2, -22));
        let r = kho_error::of(&LuoError::File {
            at,
            index: 5,
            token: 9,
            field: "token",
            fault: Fault::Duplicate { first: 1 },
        });
        assert_eq!((r.kind_str(), r.field_str()), ("luo_file_duplicate", "session[3].file[5].token"));
        assert_eq!((r.index, r.value), (5, 1));
        let r = kho_error::of(&LuoError::Compatible { found: *b"luo-v4\0\0" });
        assert_eq!((r.kind_str(), r.field_str()), ("luo_compatible", "blob.compatible"));
        let r = kho_error::of(&LuoError::Flbs { pa, field: "pgcnt", fault: Fault::OutOfRange { value: 0, max: 1 } });
        assert_eq!((r.kind_str(), r.field_str(), r.pa), ("luo_flbs_out_of_range", "flbs.pgcnt", 0x7000));
    }
}
