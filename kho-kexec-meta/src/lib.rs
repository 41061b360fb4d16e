//! `kexec-metadata` (version 1): the release of the kernel that handed
//! over and the number of kexecs in the chain, as Linux 7.2 leaves it in
//! the `kexec-metadata` subtree.
//!
//! # Layout
//!
//! 73 bytes, packed, native-endian, in an order-0 preserved page:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `u32 version`: 1 |
//! | 4 | `char previous_release[65]`: the uname release, NUL-terminated |
//! | 69 | `u32 kexec_count`: kexecs in this chain |
//!
//! A reader needs at least the 4 bytes of `version` and ignores versions
//! it does not know: [`KexecMetadata::Unknown`] reports them, it is not an
//! error. The next kernel logs `KHO: exec from: <release> (count <n>)`.
//!
//! ```
//! use kho_abi::{KhoData, WithTracker};
//! use kho_kexec_meta::{KexecMetadata, SIZE, inspect, write};
//! use kho_sim::{Machine, MachineConfig, ModelTracker};
//!
//! let m = Machine::new(MachineConfig::default())?;
//! let t = ModelTracker::new();
//! let blob = write(&WithTracker::new(&m, &t), "7.2.13", 1)?;
//! let blocks = t.blocks();
//! let m2 = m.kexec(KhoData::default());
//! m2.boot_done(&mut blocks.iter().copied())?;
//! let t2 = ModelTracker::incoming(blocks);
//! let meta = inspect(&WithTracker::new(&m2, &t2), blob, SIZE)?;
//! assert_eq!(meta, KexecMetadata::V1 { previous_release: "7.2.13".into(), kexec_count: 1 });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;

use kho_abi::{
    AbiError, Claim, Errno, Order, PAGE_SIZE, PageAlloc, PhysAddr, PhysMem, Preserve, ToErrno, read_phys, write_phys,
    zero_phys,
};
use kho_probe::Probe;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Name of the KHO subtree.
pub const SUBTREE: &str = "kexec-metadata";

/// The version this crate reads and writes.
pub const VERSION: u32 = 1;

/// Bytes of `previous_release`, NUL included (`__NEW_UTS_LEN + 1`).
pub const RELEASE_LEN: usize = 65;

/// Bytes of a version-1 blob.
pub const SIZE: u64 = size_of::<KexecMetadataSer>() as u64;

/// The version-1 blob (`struct kho_kexec_metadata`), 73 bytes, packed: see
/// the crate documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct KexecMetadataSer {
    /// Layout version, 1.
    pub version: u32,
    /// The handing-over kernel's release, NUL-terminated.
    pub previous_release: [u8; RELEASE_LEN],
    /// Kexecs in the chain.
    pub kexec_count: u32,
}

const _: () = assert!(size_of::<KexecMetadataSer>() == 73);
const _: () = assert!(core::mem::offset_of!(KexecMetadataSer, previous_release) == 4);
const _: () = assert!(core::mem::offset_of!(KexecMetadataSer, kexec_count) == 69);

/// The decoded metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KexecMetadata {
    /// Version 1.
    V1 {
        /// The release of the kernel that handed over (lossy UTF-8).
        previous_release: String,
        /// Kexecs in the chain.
        kexec_count: u32,
    },
    /// A version this crate does not know: ignored, as the kernel does.
    Unknown {
        /// The version found.
        version: u32,
    },
}

/// Errors of this layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KexecMetaError {
    /// A blob shorter than its version needs.
    #[error("kexec-metadata blob at {pa}: {len} bytes, version {version:?} needs {need}")]
    TooShort {
        /// Where the blob is.
        pa: PhysAddr,
        /// Its size.
        len: u64,
        /// The version, if it could be read.
        version: Option<u32>,
        /// Bytes needed.
        need: u64,
    },
    /// The blob's page: misaligned, not RAM, not preserved.
    #[error("kexec-metadata blob at {pa}: {source}")]
    Blob {
        /// Where the blob is.
        pa: PhysAddr,
        /// What was wrong.
        source: AbiError,
    },
    /// `previous_release` has no NUL within its 65 bytes.
    #[error("kexec-metadata blob at {pa}, field previous_release: not NUL-terminated")]
    Unterminated {
        /// Where the blob is.
        pa: PhysAddr,
    },
    /// The writer was given a release of 65 bytes or more, or holding a
    /// NUL.
    #[error("release {0:?} does not fit 64 bytes without NUL")]
    BadRelease(String),
    /// The platform failed.
    #[error(transparent)]
    Platform(#[from] AbiError),
}

impl ToErrno for KexecMetaError {
    fn errno(&self) -> Errno {
        match self {
            KexecMetaError::Platform(e) => e.errno(),
            KexecMetaError::TooShort { .. }
            | KexecMetaError::Blob { .. }
            | KexecMetaError::Unterminated { .. }
            | KexecMetaError::BadRelease { .. } => Errno::Inval,
        }
    }
}

/// Stable names of the variants, for C callers, logs and reports: they do
/// not change when a message is reworded, and are never Rust `Debug` text.
impl KexecMetaError {
    /// The error's stable name, `kexec_meta_<variant>`
    /// (`"kexec_meta_too_short"`, `"kexec_meta_unterminated"`, ...).
    ///
    /// A wrapped [`AbiError`] (`Blob`, `Platform`) gives
    /// `kexec_meta_<variant>` alone; its own [`AbiError::kind`] names the
    /// lower fault.
    pub const fn kind(&self) -> &'static str {
        match self {
            KexecMetaError::TooShort { .. } => "kexec_meta_too_short",
            KexecMetaError::Blob { .. } => "kexec_meta_blob",
            KexecMetaError::Unterminated { .. } => "kexec_meta_unterminated",
            KexecMetaError::BadRelease(_) => "kexec_meta_bad_release",
            KexecMetaError::Platform(_) => "kexec_meta_platform",
        }
    }
}

/// Metadata adopted by the next kernel: its page is claimed.
#[derive(Debug)]
pub struct RestoredKexecMeta {
    pa: PhysAddr,
    order: Order,
    meta: KexecMetadata,
}

impl RestoredKexecMeta {
    /// The decoded metadata.
    pub fn meta(&self) -> &KexecMetadata {
        &self.meta
    }

    /// Frees the page and returns the metadata.
    pub fn free<P: PageAlloc + ?Sized>(self, p: &P) -> KexecMetadata {
        p.free_pages(self.pa, self.order);
        self.meta
    }

    /// Gives the page back unclaimed.
    pub fn unclaim<P: Claim + ?Sized>(self, p: &P) {
        p.unclaim(self.pa, self.order);
    }
}

/// Adopts the metadata blob at `blob` of `size` bytes: at least 4 bytes,
/// page aligned, RAM, the start of a preserved block (claimed at its
/// order); a version-1 blob has
/// at least 73 bytes and a NUL-terminated release. Other versions decode to
/// [`KexecMetadata::Unknown`]. Nothing stays claimed on error.
pub fn restore<P>(p: &P, blob: PhysAddr, size: u64) -> Result<RestoredKexecMeta, KexecMetaError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    if size < 4 {
        return Err(KexecMetaError::TooShort { pa: blob, len: size, version: None, need: 4 });
    }
    let err = |source| KexecMetaError::Blob { pa: blob, source };
    blob.require_aligned("kexec-metadata blob", PAGE_SIZE as u64).map_err(err)?;
    // The block preserved at the blob's address, whatever its order, must
    // hold the blob (7.2 keeps it in an order-0 page).
    let order = kho_probe::claim_block(p, blob, size.max(SIZE).min(PAGE_SIZE as u64)).map_err(err)?;
    match decode(p, blob, size) {
        Ok(meta) => Ok(RestoredKexecMeta { pa: blob, order, meta }),
        Err(e) => {
            p.unclaim(blob, order);
            Err(e)
        }
    }
}

/// [`restore`]'s checks and decoding, with the claim given back.
pub fn inspect<P>(p: &P, blob: PhysAddr, size: u64) -> Result<KexecMetadata, KexecMetaError>
where
    P: PhysMem + PageAlloc + Claim + ?Sized,
{
    let probe = Probe::new(p);
    let result = restore(&probe, blob, size).map(|r| r.meta);
    probe.release();
    result
}

fn decode<P: PhysMem + ?Sized>(p: &P, blob: PhysAddr, size: u64) -> Result<KexecMetadata, KexecMetaError> {
    let err = |source| KexecMetaError::Blob { pa: blob, source };
    let version: u32 = read_phys(p, blob).map_err(err)?;
    if version != VERSION {
        return Ok(KexecMetadata::Unknown { version });
    }
    if size < SIZE {
        return Err(KexecMetaError::TooShort { pa: blob, len: size, version: Some(version), need: SIZE });
    }
    let ser: KexecMetadataSer = read_phys(p, blob).map_err(err)?;
    let end = ser.previous_release.iter().position(|&b| b == 0).ok_or(KexecMetaError::Unterminated { pa: blob })?;
    let previous_release = String::from_utf8_lossy(&ser.previous_release[..end]).into_owned();
    Ok(KexecMetadata::V1 { previous_release, kexec_count: ser.kexec_count })
}

/// Writes a version-1 blob as the kernel does: an order-0 page, allocated,
/// zeroed and preserved, holding the 73 bytes. Returns its PA; add it as
/// the [`SUBTREE`] subtree with size [`SIZE`].
pub fn write<P>(p: &P, release: &str, kexec_count: u32) -> Result<PhysAddr, KexecMetaError>
where
    P: PhysMem + PageAlloc + Preserve + ?Sized,
{
    let bytes = release.as_bytes();
    if bytes.len() >= RELEASE_LEN || bytes.contains(&0) {
        return Err(KexecMetaError::BadRelease(release.into()));
    }
    let mut ser = KexecMetadataSer { version: VERSION, previous_release: [0; RELEASE_LEN], kexec_count };
    ser.previous_release[..bytes.len()].copy_from_slice(bytes);
    let pa = p.alloc_pages(Order::ZERO)?;
    let done = zero_phys(p, pa, PAGE_SIZE as u64)
        .and_then(|()| write_phys(p, pa, &ser))
        .and_then(|()| p.preserve(pa, Order::ZERO));
    if let Err(e) = done {
        p.free_pages(pa, Order::ZERO);
        return Err(e.into());
    }
    Ok(pa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut s = KexecMetadataSer { version: 1, previous_release: [0; 65], kexec_count: 0x0102_0304 };
        s.previous_release[..6].copy_from_slice(b"7.2.13");
        let b = s.as_bytes();
        assert_eq!(b.len(), 73);
        assert_eq!(&b[..4], &1u32.to_ne_bytes());
        assert_eq!(&b[4..11], b"7.2.13\0");
        assert_eq!(&b[69..73], &0x0102_0304u32.to_ne_bytes());
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_snake_case() {
        let pa = PhysAddr::new(0x1000);
        let abi = AbiError::NotRam { pa, len: 1 };
        let errors = [
            KexecMetaError::TooShort { pa, len: 1, version: None, need: 8 },
            KexecMetaError::Blob { pa, source: abi },
            KexecMetaError::Unterminated { pa },
            KexecMetaError::BadRelease(String::new()),
            KexecMetaError::Platform(abi),
        ];
        let kinds: Vec<&str> = errors.iter().map(KexecMetaError::kind).collect();
        for (i, k) in kinds.iter().enumerate() {
            assert!(k.starts_with("kexec_meta_") && !k.ends_with('_') && !k.contains("__"), "{k}");
            assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{k}");
            assert!(!kinds[..i].contains(k), "{k} repeats");
        }
        assert_eq!(
            kinds,
            [
                "kexec_meta_too_short",
                "kexec_meta_blob",
                "kexec_meta_unterminated",
                "kexec_meta_bad_release",
                "kexec_meta_platform"
            ]
        );
    }
}
