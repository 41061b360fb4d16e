//! The root FDT refuses what the kernel's writer never produces: tokens
//! past the structure block, repeated properties, two subtrees of one
//! name, an unterminated compatible.

#![cfg(not(loom))]

use kho_abi::{Errno, PhysAddr, ToErrno};
use kho_track::TrackError;
use kho_track::fdt::{RootFdt, Subtree, build};

const AT: PhysAddr = PhysAddr::new(0x4000_0000);
const MAP: PhysAddr = PhysAddr::new(0x10_0000);

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

fn put_be32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// The offset of the first occurrence of `needle` at or after `from`.
fn find(b: &[u8], needle: &[u8], from: usize) -> usize {
    from + b[from..].windows(needle.len()).position(|w| w == needle).unwrap()
}

fn sub(name: &str, pa: u64) -> Subtree {
    Subtree { name: name.into(), pa: PhysAddr::new(pa), size: Some(64) }
}

#[test]
fn a_well_formed_root_parses() {
    let dtb = build("kho-v4", MAP, &[sub("aaa", 0x2000), sub("aab", 0x3000)]).unwrap();
    let fdt = RootFdt::parse(AT, dtb).unwrap();
    assert_eq!(fdt.subtrees().count(), 2);
}

#[test]
fn tokens_past_the_structure_block_are_refused() {
    let mut dtb = build("kho-v4", MAP, &[sub("aaa", 0x2000)]).unwrap();
    let (off, size) = (be32(&dtb, 8), be32(&dtb, 36));
    // The FDT_END token is the last 4 bytes of the block: shrink the block
    // by 4 and it lies outside, although still inside totalsize.
    put_be32(&mut dtb, 36, size - 4);
    let e = RootFdt::parse(AT, dtb.clone()).unwrap_err();
    assert_eq!(e, TrackError::FdtStruct { pa: AT, offset: u64::from(off + size - 4), end: u64::from(off + size - 4) });
    assert_eq!(e.errno(), Errno::Inval);
    // A block ending inside the subtree's property.
    put_be32(&mut dtb, 36, 40);
    assert!(
        matches!(RootFdt::parse(AT, dtb).unwrap_err(), TrackError::FdtStruct { end, .. } if end == u64::from(off) + 40)
    );
}

#[test]
fn a_repeated_memory_map_is_refused() {
    // Three root properties, the third named "preserved-memory-maq" in the
    // strings block; renamed to "preserved-memory-map" it repeats.
    use dtoolkit::model::{DeviceTree, DeviceTreeProperty};
    let mut tree = DeviceTree::new();
    tree.root.add_property(DeviceTreeProperty::new_unchecked("compatible", "kho-v4"));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-map", MAP.as_u64().to_ne_bytes()));
    tree.root.add_property(DeviceTreeProperty::new_unchecked("preserved-memory-maq", 0x20_0000u64.to_ne_bytes()));
    let mut dtb = tree.to_dtb();
    RootFdt::parse(AT, dtb.clone()).unwrap();
    let strings = be32(&dtb, 12) as usize;
    let q = find(&dtb, b"preserved-memory-maq", strings) + 19;
    dtb[q] = b'p';
    let e = RootFdt::parse(AT, dtb).unwrap_err();
    assert_eq!(e, TrackError::DuplicateProperty { node: "/".into(), prop: "preserved-memory-map".into() });
}

#[test]
fn a_repeated_subtree_property_is_refused() {
    let mut dtb = build("kho-v4", MAP, &[sub("aaa", 0x2000)]).unwrap();
    // Point blob-size's name at preserved-data's.
    let strings = be32(&dtb, 12) as usize;
    let data = (find(&dtb, b"preserved-data\0", strings) - strings) as u32;
    let size = (find(&dtb, b"blob-size\0", strings) - strings) as u32;
    let structs = be32(&dtb, 8) as usize;
    let mut at = structs;
    loop {
        // FDT_PROP, len, nameoff
        if be32(&dtb, at) == 3 && be32(&dtb, at + 8) == size {
            put_be32(&mut dtb, at + 8, data);
            break;
        }
        at += 4;
    }
    let e = RootFdt::parse(AT, dtb).unwrap_err();
    assert_eq!(e, TrackError::DuplicateProperty { node: "aaa".into(), prop: "preserved-data".into() });
}

#[test]
fn two_subtrees_of_one_name_are_refused() {
    let mut dtb = build("kho-v4", MAP, &[sub("aaa", 0x2000), sub("aab", 0x3000)]).unwrap();
    let structs = be32(&dtb, 8) as usize;
    let b = find(&dtb, b"aab\0", structs) + 2;
    dtb[b] = b'a';
    let e = RootFdt::parse(AT, dtb).unwrap_err();
    assert_eq!(e, TrackError::DuplicateSubtree { name: "aaa".into() });
    assert_eq!(e.errno(), Errno::Exist);
}

#[test]
fn an_unterminated_compatible_has_its_own_error() {
    let mut dtb = build("kho-v4", MAP, &[]).unwrap();
    let structs = be32(&dtb, 8) as usize;
    let nul = find(&dtb, b"kho-v4\0", structs) + 6;
    dtb[nul] = b'A';
    let e = RootFdt::parse(AT, dtb).unwrap_err();
    assert_eq!(e, TrackError::Unterminated { node: "/", prop: "compatible" });
    assert!(e.to_string().contains("not NUL terminated"), "{e}");
}
