//! The `luo-v5` wire layouts. All packed, native-endian; names and
//! compatibles are NUL-terminated byte arrays.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Compatible string of the LUO blob, stored NUL-padded in
/// [`LuoSer::compatible`].
pub const LUO_V5: &str = "luo-v5";

/// Name of the KHO subtree holding the LUO blob.
pub const LUO_SUBTREE: &str = "LUO";

/// [`LUO_V5`] as it sits in the blob: NUL-padded to 8 bytes.
pub const LUO_V5_BYTES: [u8; 8] = *b"luo-v5\0\0";

/// Bytes of a session name, its NUL included.
pub const SESSION_NAME_LEN: usize = 64;

/// Bytes of a file handler's compatible, its NUL included.
pub const FILE_COMPATIBLE_LEN: usize = 48;

/// Bytes of an FLB name, its NUL included.
pub const FLB_NAME_LEN: usize = 48;

/// Pages of the FLB region a 7.2 kernel allocates at boot.
pub const FLB_PGCNT: u64 = 1;

/// The `LUO` subtree's blob (`struct luo_ser`), 32 bytes, packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `char compatible[8]`: [`LUO_V5_BYTES`] |
/// | 8 | `u64 liveupdate_num` |
/// | 16 | `u64 sessions_pa`: first block of the session block set, 0 = none |
/// | 24 | `u64 flbs_pa`: the FLB header, 0 = none |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct LuoSer {
    /// `"luo-v5"`, NUL-padded.
    pub compatible: [u8; 8],
    /// The live-update sequence number this handover carries.
    pub liveupdate_num: u64,
    /// PA of the first session block, 0 before serialization or with no
    /// sessions.
    pub sessions_pa: u64,
    /// PA of the FLB header, 0 if none.
    pub flbs_pa: u64,
}

/// A session entry (`struct luo_session_ser`), 80 bytes, packed; 51 fit a
/// 4 KiB block.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u8 name[64]`: NUL-terminated |
/// | 64 | `u64 files`: first block of the session's file block set, 0 = none |
/// | 72 | `u64 count`: files in that set |
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct SessionSer {
    /// The session's name.
    pub name: [u8; SESSION_NAME_LEN],
    /// PA of the first file block.
    pub files: u64,
    /// Number of files.
    pub count: u64,
}

/// A file entry (`struct luo_file_ser`), 64 bytes, packed; 63 fit a block.
///
/// | offset | field |
/// |---|---|
/// | 0 | `char compatible[48]`: the file handler, NUL-terminated |
/// | 48 | `u64 data`: handler-private (memfd: PA of its descriptor) |
/// | 56 | `u64 token`: the user's token, unique in the session |
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct FileSer {
    /// The file handler's compatible.
    pub compatible: [u8; FILE_COMPATIBLE_LEN],
    /// Handler-private data.
    pub data: u64,
    /// The user's token.
    pub token: u64,
}

/// The FLB region's header (`struct luo_flb_header_ser`), 16 bytes, packed,
/// followed by `count` [`FlbSer`] entries.
///
/// | offset | field |
/// |---|---|
/// | 0 | `u64 pgcnt`: pages of the whole region, header included |
/// | 8 | `u64 count`: FLB entries after the header |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct FlbHeader {
    /// Pages of the region.
    pub pgcnt: u64,
    /// Entries.
    pub count: u64,
}

/// An FLB entry (`struct luo_flb_ser`), 64 bytes, packed.
///
/// | offset | field |
/// |---|---|
/// | 0 | `char name[48]`: NUL-terminated |
/// | 48 | `u64 data`: the FLB owner's private data |
/// | 56 | `u64 count`: files bound to it |
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C, packed)]
pub struct FlbSer {
    /// The FLB's name.
    pub name: [u8; FLB_NAME_LEN],
    /// Owner-private data.
    pub data: u64,
    /// Files bound to the FLB.
    pub count: u64,
}

const _: () = assert!(size_of::<LuoSer>() == 32);
const _: () = assert!(core::mem::offset_of!(LuoSer, liveupdate_num) == 8);
const _: () = assert!(core::mem::offset_of!(LuoSer, sessions_pa) == 16);
const _: () = assert!(core::mem::offset_of!(LuoSer, flbs_pa) == 24);
const _: () = assert!(size_of::<SessionSer>() == 80);
const _: () = assert!(core::mem::offset_of!(SessionSer, files) == 64);
const _: () = assert!(core::mem::offset_of!(SessionSer, count) == 72);
const _: () = assert!(size_of::<FileSer>() == 64);
const _: () = assert!(core::mem::offset_of!(FileSer, data) == 48);
const _: () = assert!(core::mem::offset_of!(FileSer, token) == 56);
const _: () = assert!(size_of::<FlbHeader>() == 16);
const _: () = assert!(size_of::<FlbSer>() == 64);
const _: () = assert!(core::mem::offset_of!(FlbSer, data) == 48);
const _: () = assert!(core::mem::offset_of!(FlbSer, count) == 56);

/// What is wrong with a fixed-size NUL-terminated name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFault {
    /// No NUL inside the array.
    Unterminated,
    /// The name is empty (the array starts with NUL).
    Empty,
}

/// The bytes of a NUL-terminated name stored in `array`, without the NUL.
pub fn c_name(array: &[u8]) -> Result<&[u8], NameFault> {
    match array.iter().position(|&b| b == 0) {
        None => Err(NameFault::Unterminated),
        Some(0) => Err(NameFault::Empty),
        Some(n) => Ok(&array[..n]),
    }
}

/// Stores `name` NUL-padded in an array of `N` bytes; `None` if it is empty,
/// holds a NUL, or leaves no room for the terminating NUL.
pub fn to_c_name<const N: usize>(name: &[u8]) -> Option<[u8; N]> {
    if name.is_empty() || name.len() >= N || name.contains(&0) {
        return None;
    }
    let mut out = [0u8; N];
    out[..name.len()].copy_from_slice(name);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_byte_exact() {
        let l = LuoSer { compatible: LUO_V5_BYTES, liveupdate_num: 1, sessions_pa: 0x1234_5000, flbs_pa: 0x6000 };
        let b = l.as_bytes();
        assert_eq!(&b[..8], b"luo-v5\0\0");
        assert_eq!(&b[8..16], &1u64.to_ne_bytes());
        assert_eq!(&b[16..24], &0x1234_5000u64.to_ne_bytes());
        assert_eq!(&b[24..32], &0x6000u64.to_ne_bytes());
        let mut s = SessionSer { name: [0; 64], files: 0x7000, count: 3 };
        s.name[..3].copy_from_slice(b"vm0");
        assert_eq!(&s.as_bytes()[64..72], &0x7000u64.to_ne_bytes());
        assert_eq!(&s.as_bytes()[72..80], &3u64.to_ne_bytes());
        let f = FileSer { compatible: to_c_name(b"memfd-v2").unwrap(), data: 0x8000, token: 42 };
        assert_eq!(&f.as_bytes()[..9], b"memfd-v2\0");
        assert_eq!(&f.as_bytes()[56..], &42u64.to_ne_bytes());
    }

    #[test]
    fn names() {
        assert_eq!(c_name(b"ab\0c"), Ok(&b"ab"[..]));
        assert_eq!(c_name(b"\0ab"), Err(NameFault::Empty));
        assert_eq!(c_name(b"abc"), Err(NameFault::Unterminated));
        assert_eq!(to_c_name::<4>(b"abc"), Some(*b"abc\0"));
        assert_eq!(to_c_name::<4>(b"abcd"), None);
        assert_eq!(to_c_name::<4>(b""), None);
        assert_eq!(to_c_name::<4>(b"a\0"), None);
    }
}
