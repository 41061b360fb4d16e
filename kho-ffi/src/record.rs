//! `struct kho_error`: the last typed error of a handle, for C.
//!
//! A Rust caller gets a typed error naming what was wrong and where (the
//! field, the tree node, its level and slot, the chain position). A C call
//! returns only `-errno`; the handle it ran on keeps the typed error that
//! produced it, which `kho_out_last_error` and `kho_in_last_error` copy out
//! as a [`kho_error`]: a stable kind name, the place, and the message a
//! Rust caller would print. `kho_out_new` and `kho_in_import`, which have
//! no handle yet when they fail, fill a caller's record directly.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use kho_abi::{AbiError, PhysAddr, ToErrno};
use kho_track::TrackError;

/// Bytes of [`kho_error::kind`], its NUL included.
pub const KHO_ERROR_KIND_LEN: usize = 32;
/// Bytes of [`kho_error::field`], its NUL included.
pub const KHO_ERROR_FIELD_LEN: usize = 64;
/// Bytes of [`kho_error::message`], its NUL included.
pub const KHO_ERROR_MESSAGE_LEN: usize = 192;

/// [`kho_error::has`] bit: `pa` holds a value.
pub const KHO_ERROR_HAS_PA: u32 = 1 << 0;
/// [`kho_error::has`] bit: `node` holds a value.
pub const KHO_ERROR_HAS_NODE: u32 = 1 << 1;
/// [`kho_error::has`] bit: `level` holds a value.
pub const KHO_ERROR_HAS_LEVEL: u32 = 1 << 2;
/// [`kho_error::has`] bit: `index` holds a value.
pub const KHO_ERROR_HAS_INDEX: u32 = 1 << 3;
/// [`kho_error::has`] bit: `order` holds a value.
pub const KHO_ERROR_HAS_ORDER: u32 = 1 << 4;
/// [`kho_error::has`] bit: `value` holds a value.
pub const KHO_ERROR_HAS_VALUE: u32 = 1 << 5;

/// A typed error as C sees it: what went wrong (`kind`, `field`), where
/// (`pa`, `node`, `level`, `index`, `order`), the offending `value`, and
/// the full `message`. Numeric members hold a value only where the bit of
/// `has` says so; strings are NUL-terminated (truncated if longer) and
/// empty when they do not apply.
///
/// `kind` is a stable name, one per error variant (`"tree_node_shared"`,
/// `"bad_compatible"`, `"not_ram"`, ...): compare it, do not parse
/// `message`, whose wording may change.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kho_error {
    /// The negative errno the failing call returned; 0 if no error was
    /// recorded.
    pub code: i32,
    /// Which of the numeric members hold a value (`KHO_ERROR_HAS_*` bits).
    pub has: u32,
    /// The physical address the error is about: a block, a page, a link.
    pub pa: u64,
    /// The page holding the bad value: a radix tree node, a chunk page, an
    /// array page.
    pub node: u64,
    /// The slot of `node`, or the position of a block, chunk or page in its
    /// chain.
    pub index: u64,
    /// The offending value (a count, a magic, flags, a key, a length).
    pub value: u64,
    /// The level of the tree node (0 = leaf).
    pub level: u32,
    /// The order of the block.
    pub order: u32,
    /// Stable name of the error kind.
    pub kind: [c_char; KHO_ERROR_KIND_LEN],
    /// The field, property or name the error is about.
    pub field: [c_char; KHO_ERROR_FIELD_LEN],
    /// The error as text, as a Rust caller would print it.
    pub message: [c_char; KHO_ERROR_MESSAGE_LEN],
}

const _: () = assert!(size_of::<kho_error>() == 336);

impl kho_error {
    /// `kind` as text (empty when no error was recorded).
    pub fn kind_str(&self) -> &str {
        c_text(&self.kind)
    }

    /// `field` as text (empty when the error names none).
    pub fn field_str(&self) -> &str {
        c_text(&self.field)
    }

    /// `message` as text (cut at a character boundary if it was
    /// truncated).
    pub fn message_str(&self) -> &str {
        c_text(&self.message)
    }

    /// The record of "no error".
    pub const EMPTY: kho_error = kho_error {
        code: 0,
        has: 0,
        pa: 0,
        node: 0,
        index: 0,
        value: 0,
        level: 0,
        order: 0,
        kind: [0; KHO_ERROR_KIND_LEN],
        field: [0; KHO_ERROR_FIELD_LEN],
        message: [0; KHO_ERROR_MESSAGE_LEN],
    };

    /// The record of a typed error.
    pub fn of<E: Describe>(e: &E) -> kho_error {
        let mut r = kho_error::EMPTY;
        r.code = e.errno().neg();
        e.describe(&mut r);
        let _ = write!(Text(&mut r.message), "{e}");
        r
    }

    pub(crate) fn set_pa(&mut self, pa: PhysAddr) -> &mut Self {
        self.pa = pa.as_u64();
        self.has |= KHO_ERROR_HAS_PA;
        self
    }

    pub(crate) fn set_node(&mut self, node: PhysAddr) -> &mut Self {
        self.node = node.as_u64();
        self.has |= KHO_ERROR_HAS_NODE;
        self
    }

    pub(crate) fn set_level(&mut self, level: u32) -> &mut Self {
        self.level = level;
        self.has |= KHO_ERROR_HAS_LEVEL;
        self
    }

    pub(crate) fn set_index(&mut self, index: u64) -> &mut Self {
        self.index = index;
        self.has |= KHO_ERROR_HAS_INDEX;
        self
    }

    pub(crate) fn set_order(&mut self, order: u32) -> &mut Self {
        self.order = order;
        self.has |= KHO_ERROR_HAS_ORDER;
        self
    }

    pub(crate) fn set_value(&mut self, value: u64) -> &mut Self {
        self.value = value;
        self.has |= KHO_ERROR_HAS_VALUE;
        self
    }

    pub(crate) fn set_field(&mut self, field: impl fmt::Display) -> &mut Self {
        self.field = [0; KHO_ERROR_FIELD_LEN];
        let _ = write!(Text(&mut self.field), "{field}");
        self
    }

    pub(crate) fn set_kind(&mut self, kind: &str) -> &mut Self {
        self.kind = [0; KHO_ERROR_KIND_LEN];
        let _ = Text(&mut self.kind).write_str(kind);
        self
    }
}

/// Writes text into a fixed C string buffer, keeping a NUL at the end and
/// dropping what does not fit (at a character boundary).
struct Text<'a>(&'a mut [c_char]);

impl Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let used = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        let room = self.0.len().saturating_sub(used + 1);
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        for (d, &b) in self.0[used..].iter_mut().zip(&s.as_bytes()[..take]) {
            *d = b as c_char;
        }
        Ok(())
    }
}

/// The text of a NUL-terminated member: up to the first NUL (or the whole
/// array), and within that the longest valid UTF-8 prefix.
fn c_text(s: &[c_char]) -> &str {
    let n = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    // SAFETY: `c_char` is `i8` or `u8`, of the same size and alignment as
    // `u8`, and every bit pattern is a valid `u8`; the first `n` elements
    // are in bounds and borrowed for the lifetime of `s`.
    let bytes = unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), n) };
    match core::str::from_utf8(bytes) {
        Ok(t) => t,
        // The prefix up to `valid_up_to` is valid UTF-8 by definition.
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// A kho error that can fill a [`kho_error`]: its kind and its place.
///
/// The kind comes from the error type's own `kind()`, which names every
/// variant; the error enums are `#[non_exhaustive]`, so a variant newer
/// than this crate's matches below still gets its kind and message, only
/// not its place.
pub trait Describe: ToErrno + fmt::Display {
    /// Fills `kind`, `field` and the numeric members of `r`.
    fn describe(&self, r: &mut kho_error);
}

impl Describe for AbiError {
    fn describe(&self, r: &mut kho_error) {
        r.set_kind(self.kind());
        match *self {
            AbiError::Short { what, have, .. } => r.set_field(what).set_value(have as u64),
            AbiError::BadMagic { what, found, .. } => r.set_field(what).set_value(found),
            AbiError::BadVersion { what, found } => r.set_field(what).set_value(found),
            AbiError::BadCompatible { what, .. } => r.set_field(what),
            AbiError::MalformedCompatible { what, offset } => r.set_field(what).set_index(offset as u64),
            AbiError::ZeroAddress { what } => r.set_field(what),
            AbiError::Misaligned { what, pa, align } => r.set_field(what).set_pa(pa).set_value(align),
            AbiError::OrderTooLarge { what, order, .. } => r.set_field(what).set_value(order),
            AbiError::KeyTooWide { what, key, .. } => r.set_field(what).set_value(key),
            AbiError::ZeroKey { what } => r.set_field(what),
            AbiError::CountTooLarge { what, count, .. } => r.set_field(what).set_value(count),
            AbiError::InvalidValue { what, value } => r.set_field(what).set_value(value),
            AbiError::UnsupportedFlags { what, flags } => r.set_field(what).set_value(flags),
            AbiError::Overflow { what } => r.set_field(what),
            AbiError::NotRam { pa, len } => r.set_pa(pa).set_value(len),
            AbiError::NoMemory { order } => r.set_order(order),
            AbiError::NotPreserved { pa, order } => r.set_pa(pa).set_order(order),
            AbiError::Forbidden { pa, order, why } => r.set_pa(pa).set_order(order).set_field(why),
            // A variant newer than this crate: its kind and message only.
            _ => r,
        };
    }
}

impl Describe for TrackError {
    fn describe(&self, r: &mut kho_error) {
        if let TrackError::Abi(e) = self {
            return e.describe(r);
        }
        r.set_kind(self.kind());
        match self {
            TrackError::Abi(_) => r,
            TrackError::EmptyRange { pa } => r.set_pa(*pa),
            TrackError::Fdt { pa, .. } => r.set_pa(*pa).set_field("root FDT"),
            TrackError::FdtSize { pa, totalsize, .. } => r.set_pa(*pa).set_field("totalsize").set_value(*totalsize),
            TrackError::FdtFull { size } => r.set_value(*size as u64),
            TrackError::BadProperty { node, prop, len } => {
                r.set_field(format_args!("{node}:{prop}")).set_value(*len as u64)
            }
            TrackError::SubtreeNotFound { name }
            | TrackError::SubtreeExists { name }
            | TrackError::BadName { name } => r.set_field(name),
            TrackError::SubtreeInvalid { name, prop } => r.set_field(format_args!("{name}:{prop}")),
            TrackError::Tree { node, level, index, .. } => r.set_node(*node).set_level(*level).set_index(*index as u64),
            TrackError::Block { pa, order, .. } => r.set_pa(*pa).set_order(order.get()),
            TrackError::V1Chain(e) => link_value(r.set_pa(e.pa).set_index(e.index).set_field(e.field), &e.fault),
            _ => r,
        };
    }
}

impl Describe for kho_block::BlockError {
    fn describe(&self, r: &mut kho_error) {
        use kho_block::{BlockError, Fault};
        if let BlockError::Platform(e) = self {
            return e.describe(r);
        }
        r.set_kind(self.kind());
        match self {
            BlockError::EntrySize { size, .. } => r.set_field("entry_size").set_value(*size as u64),
            BlockError::EntryLength { len, .. } => r.set_field("length").set_value(*len as u64),
            BlockError::NoSpace { wanted, .. } => r.set_value(*wanted as u64),
            BlockError::ChainFull { blocks, .. } => r.set_value(*blocks as u64),
            BlockError::ShrinkTooFar { by, .. } => r.set_value(*by as u64),
            BlockError::Platform(_) => r,
            BlockError::Chain(c) => {
                r.set_pa(c.pa).set_index(c.index as u64).set_field(c.field);
                match c.fault {
                    Fault::CountTooLarge { count, .. } => r.set_value(count),
                    Fault::Link(f) => link_value(r, &f),
                    Fault::Ended | Fault::CountZero => r,
                    _ => r,
                }
            }
            _ => r,
        };
    }
}

/// The number a chain fault carries, if any: the limit of a chain too
/// long, the earlier position of a cycle.
fn link_value<'r>(r: &'r mut kho_error, f: &kho_abi::chain::ChainFault) -> &'r mut kho_error {
    use kho_abi::chain::ChainFault as C;
    match f {
        C::TooLong { max } => r.set_value(*max),
        C::Cycle { first } => r.set_value(*first),
        C::Misaligned | C::NotRam(_) | C::NotClaimable(_) => r,
        _ => r,
    }
}

impl Describe for ::kho_vmalloc::VmallocError {
    fn describe(&self, r: &mut kho_error) {
        use ::kho_vmalloc::{EntryAt, VmallocError as V};
        fn entry<'r>(r: &'r mut kho_error, at: &EntryAt) -> &'r mut kho_error {
            r.set_node(at.chunk.pa).set_index(at.entry as u64)
        }
        if let V::Descriptor(e) = self {
            e.describe(r);
            return;
        }
        r.set_kind(self.kind());
        match self {
            V::UnsupportedFlags { flags } => r.set_field("flags").set_value(u64::from(*flags)),
            V::OrderTooLarge { order, .. } => r.set_field("order").set_order(*order),
            V::BadBlock { index, pa, .. } => r.set_pa(*pa).set_index(*index),
            V::TooManyPages { blocks, order } => r.set_value(*blocks).set_order(*order),
            V::NoMemory { chunk, .. } => r.set_index(*chunk),
            V::PreserveFailed { kind, index, pa, .. } => r.set_field(kind).set_index(*index).set_pa(*pa),
            V::UnpreserveFailed { kind, pa, .. } => r.set_field(kind).set_pa(*pa),
            V::Descriptor(_) => r,
            V::Chain(e) => link_value(r.set_pa(e.pa).set_index(e.index).set_field(e.field), &e.fault),
            V::ChunkNotRam { at, .. } => r.set_pa(at.pa).set_index(at.index),
            V::ZeroEntry { at, restored, .. } => entry(r, at).set_field("phys").set_value(*restored),
            V::TooManyBlocks { at, expected } => entry(r, at).set_field("phys").set_value(*expected),
            V::TooFewBlocks { restored, .. } => r.set_value(*restored),
            V::BlockMisaligned { at, pa, order } => entry(r, at).set_pa(*pa).set_order(*order),
            V::BlockNotRam { at, .. } | V::BlockNotPreserved { at, .. } => entry(r, at),
            V::OutputTooSmall { need, .. } => r.set_value(*need),
            _ => r,
        };
    }
}

impl Describe for kho_array::ArrayError {
    fn describe(&self, r: &mut kho_error) {
        use kho_array::{ArrayError as A, PageFault, RunFault};
        if let A::Platform { op, pa, source } = self {
            source.describe(r);
            r.set_pa(*pa).set_field(op);
            return;
        }
        r.set_kind(self.kind());
        match self {
            A::Descriptor { field, value } => r.set_field(field).set_value(*value),
            A::Page { page, pa, field, fault } => {
                r.set_pa(*pa).set_index(*page).set_field(field);
                match fault {
                    PageFault::Link(f) => link_value(r, f),
                    PageFault::Layout { raw, .. } => r.set_value(*raw),
                    PageFault::NotAscending { start, .. } => r.set_value(*start),
                    PageFault::AfterMax => r,
                    _ => r,
                }
            }
            A::Run { pa, run, field, fault, .. } => {
                r.set_node(*pa).set_index(*run).set_field(field);
                match fault {
                    RunFault::BadEntry { raw, .. } | RunFault::NotZero { raw } => r.set_value(*raw),
                    RunFault::Overruns { end, .. } => r.set_value(*end as u64),
                    RunFault::ZeroEntry { index } => r.set_value(u64::from(*index)),
                    RunFault::Overflow => r,
                    _ => r,
                }
            }
            A::NotAscending { pos, .. } => r.set_value(*pos),
            A::InvalidEntry { raw } => r.set_value(*raw),
            A::ValueTooLarge { value } => r.set_value(*value),
            A::Platform { .. } | A::PositionOverflow | A::AlreadyPreserved | A::NotPreserved => r,
            _ => r,
        };
    }
}

/// The last typed error of a handle.
///
/// Calls on one handle may run on several threads at once (preserving,
/// restoring): a failing call records its error only if no other call is
/// recording one at that moment, so the record is always one whole error
/// of one of the calls that failed. Reading waits for a write in progress,
/// which copies one record and cannot block.
///
/// # Invariants
///
/// `rec` is accessed only by the holder of `busy`, taken with an
/// acquiring compare-exchange from `false` and released with a releasing
/// store of `false`.
pub(crate) struct LastError {
    busy: AtomicBool,
    rec: UnsafeCell<kho_error>,
}

// SAFETY: the record is read and written only under the `busy` flag (the
// invariant), so no two threads access it at once; it holds plain data.
unsafe impl Sync for LastError {}
// SAFETY: plain data and an atomic: nothing tied to a thread.
unsafe impl Send for LastError {}

impl LastError {
    /// No error recorded yet.
    pub(crate) const fn new() -> LastError {
        LastError { busy: AtomicBool::new(false), rec: UnsafeCell::new(kho_error::EMPTY) }
    }

    /// Records `e` and returns the C result it maps to, `-errno`.
    pub(crate) fn fail<E: Describe>(&self, e: &E) -> c_int {
        let rec = kho_error::of(e);
        if self.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            // SAFETY: `busy` is held (the invariant).
            unsafe { *self.rec.get() = rec };
            self.busy.store(false, Ordering::Release);
        }
        rec.code
    }

    /// `0`, or `-errno` with `e` recorded.
    pub(crate) fn rc<E: Describe>(&self, r: Result<(), E>) -> c_int {
        match r {
            Ok(()) => 0,
            Err(e) => self.fail(&e),
        }
    }

    /// The last error recorded.
    pub(crate) fn get(&self) -> kho_error {
        while self.busy.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        // SAFETY: `busy` is held (the invariant).
        let rec = unsafe { *self.rec.get() };
        self.busy.store(false, Ordering::Release);
        rec
    }
}

#[cfg(test)]
mod tests {
    use kho_abi::Order;
    use kho_track::TreeFault;

    use super::*;

    #[test]
    fn a_tree_fault_names_node_level_and_slot() {
        let e = TrackError::Tree { node: PhysAddr::new(0x5000), level: 3, index: 17, fault: TreeFault::Shared };
        let r = kho_error::of(&e);
        assert_eq!(r.code, -22);
        assert_eq!(r.kind_str(), "tree_node_shared");
        assert_eq!((r.node, r.level, r.index), (0x5000, 3, 17));
        assert_eq!(r.has, KHO_ERROR_HAS_NODE | KHO_ERROR_HAS_LEVEL | KHO_ERROR_HAS_INDEX);
        assert_eq!(r.message_str(), e.to_string());
    }

    #[test]
    fn wire_errors_keep_field_and_address() {
        let e =
            TrackError::Abi(AbiError::Misaligned { what: "kho_data.fdt_addr", pa: PhysAddr::new(0x1234), align: 4096 });
        let r = kho_error::of(&e);
        assert_eq!(r.kind_str(), "misaligned");
        assert_eq!(r.field_str(), "kho_data.fdt_addr");
        assert_eq!((r.pa, r.value), (0x1234, 4096));
        let b = TrackError::Block {
            pa: PhysAddr::new(0x8000),
            order: Order::new(2, "o").unwrap(),
            fault: kho_track::BlockFault::InScratch,
        };
        let r = kho_error::of(&b);
        assert_eq!(r.kind_str(), "block_in_scratch");
        assert_eq!((r.pa, r.order, r.has), (0x8000, 2, KHO_ERROR_HAS_PA | KHO_ERROR_HAS_ORDER));
    }

    #[test]
    fn long_text_is_truncated_with_its_nul() {
        let name = "n".repeat(300);
        let r = kho_error::of(&TrackError::SubtreeExists { name });
        assert_eq!(r.field_str().len(), KHO_ERROR_FIELD_LEN - 1);
        assert_eq!(r.message_str().len(), KHO_ERROR_MESSAGE_LEN - 1);
        assert_eq!(r.code, -17);
    }

    #[test]
    fn the_cell_keeps_the_last_error() {
        let cell = LastError::new();
        assert_eq!(cell.get(), kho_error::EMPTY);
        assert_eq!(cell.rc::<AbiError>(Ok(())), 0);
        assert_eq!(cell.get().code, 0);
        assert_eq!(cell.fail(&AbiError::NoMemory { order: 3 }), -12);
        let r = cell.get();
        assert_eq!((r.code, r.order), (-12, 3));
        assert_eq!(r.kind_str(), "no_memory");
    }
}
