//! Compatible strings: the root versions and the per-format components, and
//! the composite form `base;sub;sub` (components unique and in strict
//! alphabetical order) that versions a root by the formats it contains.

use crate::error::AbiError;

pub use crate::block::BLOCK_V1;
pub use crate::radix::RADIX_V1;
pub use crate::vmalloc::VMALLOC_V1;

/// Root compatible of current mainline kernels (radix tree, `blob-size`,
/// block ABI).
pub const KHO_V4: &str = "kho-v4";
/// Root compatible with the radix tree and `blob-size`.
pub const KHO_V3: &str = "kho-v3";
/// Root compatible with the radix tree, subtree property `preserved-data`.
pub const KHO_V2: &str = "kho-v2";
/// Legacy root compatible: chunked bitmaps, subtree property `fdt`.
pub const KHO_V1: &str = "kho-v1";
/// Compatible string of this project's sparse array format.
pub const ARRAY_V1: &str = "array-v1";

/// Components this build can read inside a composite compatible.
pub const KNOWN_COMPONENTS: [&str; 4] = [ARRAY_V1, BLOCK_V1, RADIX_V1, VMALLOC_V1];

/// Separator of a composite compatible.
pub const SEPARATOR: char = ';';

/// A root format version this build can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RootVersion {
    /// `kho-v1`: legacy chunked bitmaps.
    V1,
    /// `kho-v2`: radix tree.
    V2,
    /// `kho-v3`: radix tree, `blob-size`.
    V3,
    /// `kho-v4`: radix tree, `blob-size`, block ABI.
    V4,
}

impl RootVersion {
    /// The base compatible string of this version.
    pub const fn compatible(self) -> &'static str {
        match self {
            RootVersion::V1 => KHO_V1,
            RootVersion::V2 => KHO_V2,
            RootVersion::V3 => KHO_V3,
            RootVersion::V4 => KHO_V4,
        }
    }

    /// Name of the subtree property holding the blob PA.
    pub const fn data_property(self) -> &'static str {
        match self {
            RootVersion::V1 => crate::handover::PROP_V1_FDT,
            _ => crate::handover::PROP_PRESERVED_DATA,
        }
    }

    /// Whether subtrees carry `blob-size`.
    pub const fn has_blob_size(self) -> bool {
        matches!(self, RootVersion::V3 | RootVersion::V4)
    }

    /// Whether the memory map is the radix tree (else legacy chunks).
    pub const fn has_radix_tree(self) -> bool {
        !matches!(self, RootVersion::V1)
    }

    fn from_base(base: &str) -> Option<RootVersion> {
        [RootVersion::V4, RootVersion::V3, RootVersion::V2, RootVersion::V1]
            .into_iter()
            .find(|v| v.compatible() == base)
    }
}

/// A parsed compatible string: its base and its components, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compatible<'a> {
    base: &'a str,
    subs: &'a str,
}

impl<'a> Compatible<'a> {
    /// Parses `base[;sub...]`: non-empty parts of printable ASCII other than
    /// the separator, subs unique and in strict alphabetical order.
    pub fn parse(s: &'a str, what: &'static str) -> Result<Compatible<'a>, AbiError> {
        let (base, subs) = match s.find(SEPARATOR) {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        if base.is_empty() {
            return Err(AbiError::MalformedCompatible { what, offset: 0 });
        }
        let mut offset = 0;
        for (i, b) in s.bytes().enumerate() {
            if !(b.is_ascii_graphic() || b == b' ') {
                return Err(AbiError::MalformedCompatible { what, offset: i });
            }
        }
        let c = Compatible { base, subs };
        let mut prev: Option<&str> = None;
        offset += base.len() + 1;
        if !subs.is_empty() || s.len() > base.len() {
            for sub in subs.split(SEPARATOR) {
                if sub.is_empty() || prev.is_some_and(|p| p >= sub) {
                    return Err(AbiError::MalformedCompatible { what, offset });
                }
                prev = Some(sub);
                offset += sub.len() + 1;
            }
        }
        Ok(c)
    }

    /// The base (the part before the first separator).
    pub fn base(&self) -> &'a str {
        self.base
    }

    /// The components after the base, in order.
    pub fn components(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let subs = self.subs;
        subs.split(SEPARATOR).filter(|s| !s.is_empty())
    }

    /// Whether the string lists `component`.
    pub fn has(&self, component: &str) -> bool {
        self.components().any(|c| c == component)
    }

    /// Tells whether this build can read a root with this compatible: the
    /// base must be a known root version and every component one of
    /// [`KNOWN_COMPONENTS`].
    pub fn readable_root(&self, what: &'static str) -> Result<RootVersion, AbiError> {
        let version = RootVersion::from_base(self.base).ok_or(AbiError::BadCompatible { what, expected: KHO_V4 })?;
        if let Some(unknown) = self.components().find(|c| !KNOWN_COMPONENTS.contains(c)) {
            let offset = unknown.as_ptr() as usize - self.base.as_ptr() as usize;
            return Err(AbiError::MalformedCompatible { what, offset });
        }
        Ok(version)
    }
}

/// Writes the composite compatible `base;sub;sub` into `out`, sorting the
/// components; duplicates, empty parts and parts containing the separator
/// are rejected. At most 16 components.
pub fn compose<'o>(base: &str, subs: &[&str], out: &'o mut [u8]) -> Result<&'o str, AbiError> {
    const MAX_SUBS: usize = 16;
    let what = "composite compatible";
    if subs.len() > MAX_SUBS {
        return Err(AbiError::CountTooLarge { what, count: subs.len() as u64, max: MAX_SUBS as u64 });
    }
    let mut sorted = [""; MAX_SUBS];
    let sorted = &mut sorted[..subs.len()];
    sorted.copy_from_slice(subs);
    sorted.sort_unstable();
    let mut len = 0;
    let mut push = |part: &str, out: &mut [u8]| -> Result<(), AbiError> {
        if part.is_empty() || part.contains(SEPARATOR) {
            return Err(AbiError::MalformedCompatible { what, offset: len });
        }
        let sep = usize::from(len != 0);
        let need = len + sep + part.len();
        if need > out.len() {
            return Err(AbiError::Short { what, need, have: out.len() });
        }
        if sep == 1 {
            out[len] = SEPARATOR as u8;
        }
        out[len + sep..need].copy_from_slice(part.as_bytes());
        len = need;
        Ok(())
    };
    push(base, out)?;
    for (i, sub) in sorted.iter().enumerate() {
        if i > 0 && sorted[i - 1] == *sub {
            return Err(AbiError::MalformedCompatible { what, offset: len });
        }
        push(sub, out)?;
    }
    // PANICS: none; only whole `&str` parts and an ASCII separator were
    // copied, so the bytes are UTF-8.
    core::str::from_utf8(&out[..len]).map_err(|e| AbiError::MalformedCompatible { what, offset: e.valid_up_to() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_sorts_and_checks() {
        let mut buf = [0u8; 64];
        let s = compose(KHO_V4, &[VMALLOC_V1, RADIX_V1], &mut buf).unwrap();
        assert_eq!(s, "kho-v4;radix-v1;vmalloc-v1");
        let mut buf = [0u8; 64];
        assert!(compose(KHO_V4, &[RADIX_V1, RADIX_V1], &mut buf).is_err());
        assert!(compose(KHO_V4, &["a;b"], &mut buf).is_err());
        assert!(compose(KHO_V4, &[""], &mut buf).is_err());
        let mut small = [0u8; 8];
        assert!(matches!(compose(KHO_V4, &[RADIX_V1], &mut small), Err(AbiError::Short { .. })));
        let mut buf = [0u8; 8];
        assert_eq!(compose(KHO_V4, &[], &mut buf).unwrap(), "kho-v4");
    }

    #[test]
    fn parse_and_readability() {
        let c = Compatible::parse("kho-v4;radix-v1;vmalloc-v1", "root").unwrap();
        assert_eq!(c.base(), "kho-v4");
        assert!(c.has(RADIX_V1));
        assert!(!c.has(BLOCK_V1));
        assert_eq!(c.readable_root("root"), Ok(RootVersion::V4));
        for (s, v) in [("kho-v1", RootVersion::V1), ("kho-v2", RootVersion::V2), ("kho-v3", RootVersion::V3)] {
            assert_eq!(Compatible::parse(s, "root").unwrap().readable_root("root"), Ok(v));
        }
        assert_eq!(
            Compatible::parse("kho-v5", "root").unwrap().readable_root("root"),
            Err(AbiError::BadCompatible { what: "root", expected: KHO_V4 })
        );
        assert_eq!(
            Compatible::parse("kho-v4;radix-v2", "root").unwrap().readable_root("root"),
            Err(AbiError::MalformedCompatible { what: "root", offset: 7 })
        );
        // Out of order, duplicate, empty parts, control bytes.
        for bad in
            ["kho-v4;vmalloc-v1;radix-v1", "kho-v4;radix-v1;radix-v1", "kho-v4;", ";radix-v1", "kho-v4;;a", "", "kho\n"]
        {
            assert!(Compatible::parse(bad, "root").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(RootVersion::V1.data_property(), "fdt");
        assert_eq!(RootVersion::V2.data_property(), "preserved-data");
        assert!(!RootVersion::V2.has_blob_size());
        assert!(RootVersion::V3.has_blob_size());
        assert!(!RootVersion::V1.has_radix_tree());
    }
}
