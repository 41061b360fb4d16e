//! Device-tree architectures: `/chosen` `linux,kho-fdt` and
//! `linux,kho-scratch`.
//!
//! arm64 (and any architecture booting from a device tree) passes the two
//! ranges of a [`KhoData`] as properties of the `/chosen` node of the boot
//! device tree, each an address and a size in **normal big-endian DT
//! cells**, as many as the root node's `#address-cells` and `#size-cells`
//! say (unlike the KHO root FDT, whose values are raw native-endian bytes):
//!
//! ```text
//! / {
//!     #address-cells = <2>;
//!     #size-cells = <2>;
//!     chosen {
//!         linux,kho-fdt = <0x1 0x23456000  0x0 0x1000>;      // root FDT PA, its size
//!         linux,kho-scratch = <0x1 0x23457000  0x0 0x30>;  // scratch array PA, its byte size
//!     };
//! };
//! ```
//!
//! The next kernel reads both (it ignores KHO unless both are present and
//! each is exactly `#address-cells + #size-cells` cells long). Absent cell
//! counts default to the device-tree specification's 2 and 1. Reading and
//! writing use dtoolkit: [`read()`] parses the tree, [`write()`] edits it in
//! place inside the caller's buffer, growing it into the buffer's spare
//! room, without allocating.

use dtoolkit::error::{BufferError, FdtMutError};
use dtoolkit::fdt::Fdt;
use dtoolkit::fdt_mut::FdtMut;
use dtoolkit::{Node, Property};
use kho_abi::KhoData;

use crate::HandoffError;

/// The `/chosen` property holding the root FDT's address and size.
pub const PROP_KHO_FDT: &str = "linux,kho-fdt";
/// The `/chosen` property holding the scratch array's address and size.
pub const PROP_KHO_SCRATCH: &str = "linux,kho-scratch";

/// The root node's cell counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cells {
    address: u32,
    size: u32,
}

impl Cells {
    fn bytes(self) -> usize {
        (self.address + self.size) as usize * 4
    }
}

fn root_cells(root: impl Node) -> Result<Cells, HandoffError> {
    let count = |name: &'static str, default: u32| -> Result<u32, HandoffError> {
        let Some(p) = root.property(name) else { return Ok(default) };
        let v = <[u8; 4]>::try_from(p.value())
            .map(u32::from_be_bytes)
            .map_err(|_| HandoffError::InvalidValue { what: name, value: p.value().len() as u64 })?;
        // A 64-bit PA and size need at most two cells; zero cells cannot
        // hold them at all.
        if !(1..=2).contains(&v) {
            return Err(HandoffError::InvalidValue { what: name, value: u64::from(v) });
        }
        Ok(v)
    };
    Ok(Cells { address: count("#address-cells", 2)?, size: count("#size-cells", 1)? })
}

fn decode(prop: &'static str, bytes: &[u8], cells: Cells) -> Result<(u64, u64), HandoffError> {
    if bytes.len() != cells.bytes() {
        return Err(HandoffError::BadLength {
            prop,
            len: bytes.len(),
            expected: cells.bytes(),
            address_cells: cells.address,
            size_cells: cells.size,
        });
    }
    let number = |b: &[u8]| {
        b.chunks_exact(4).fold(0u64, |acc, c| (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    };
    let split = cells.address as usize * 4;
    Ok((number(&bytes[..split]), number(&bytes[split..])))
}

fn encode(what: &'static str, addr: u64, size: u64, cells: Cells, out: &mut [u8; 16]) -> Result<usize, HandoffError> {
    let mut at = 0;
    for (value, n) in [(addr, cells.address), (size, cells.size)] {
        if n == 1 && value > u64::from(u32::MAX) {
            return Err(HandoffError::TooWide { what, value, cells: n });
        }
        let be = value.to_be_bytes();
        let len = n as usize * 4;
        out[at..at + len].copy_from_slice(&be[8 - len..]);
        at += len;
    }
    Ok(at)
}

/// The device tree at the start of `buf`: its header's `totalsize` bytes
/// when the buffer holds them (a buffer may be larger than the tree).
fn tree_bytes(buf: &[u8]) -> &[u8] {
    match buf.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize) {
        Some(total) if total <= buf.len() => &buf[..total],
        _ => buf,
    }
}

/// Reads the handover's location from the `/chosen` node of the device
/// tree at the start of `dtb` (which may be longer than the tree): `None`
/// if neither property is there (no handover), an error if only one is,
/// if either is malformed, or if the ranges fail [`KhoData::validate`].
pub fn read(dtb: &[u8]) -> Result<Option<KhoData>, HandoffError> {
    let fdt = Fdt::new(tree_bytes(dtb)).map_err(HandoffError::Fdt)?;
    let cells = root_cells(fdt.root())?;
    let Some(chosen) = fdt.find_node("/chosen") else { return Ok(None) };
    let (fdt_prop, scratch_prop) = (chosen.property(PROP_KHO_FDT), chosen.property(PROP_KHO_SCRATCH));
    let (fdt_prop, scratch_prop) = match (fdt_prop, scratch_prop) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(HandoffError::Incomplete { present: PROP_KHO_FDT, missing: PROP_KHO_SCRATCH }),
        (None, Some(_)) => return Err(HandoffError::Incomplete { present: PROP_KHO_SCRATCH, missing: PROP_KHO_FDT }),
        (Some(f), Some(s)) => (f, s),
    };
    let (fdt_addr, fdt_size) = decode(PROP_KHO_FDT, fdt_prop.value(), cells)?;
    let (scratch_addr, scratch_size) = decode(PROP_KHO_SCRATCH, scratch_prop.value(), cells)?;
    let data = KhoData { fdt_addr, fdt_size, scratch_addr, scratch_size };
    data.validate()?;
    Ok(Some(data))
}

fn room(e: FdtMutError) -> HandoffError {
    match e {
        FdtMutError::Resize(BufferError::OutOfSpace { requested, capacity }) => {
            HandoffError::NoRoom { requested, capacity }
        }
        FdtMutError::Resize(BufferError::FdtLimitExceeded { requested }) => {
            HandoffError::NoRoom { requested, capacity: u32::MAX as usize }
        }
        // dtoolkit's other resize failures need an allocating buffer,
        // which this crate never uses.
        _ => HandoffError::NoRoom { requested: 0, capacity: 0 },
    }
}

/// Writes (or overwrites) `linux,kho-fdt` and `linux,kho-scratch` in the
/// `/chosen` node of the device tree at the start of `buf`, in the root's
/// cell counts, after checking `data` as the next kernel will. The tree
/// grows in place into the rest of `buf`. Returns the tree's new
/// `totalsize`.
///
/// Fails with [`HandoffError::NoChosen`] if the tree has no `/chosen`
/// (boot loaders always create it), [`HandoffError::TooWide`] if an
/// address or size does not fit one cell, [`HandoffError::NoRoom`] if `buf`
/// is too small; the tree is then unchanged or still valid.
pub fn write(buf: &mut [u8], data: &KhoData) -> Result<usize, HandoffError> {
    data.validate()?;
    let mut fdt = FdtMut::from_slice(buf).map_err(HandoffError::Fdt)?;
    let cells = root_cells(fdt.as_read_only().root())?;
    let mut fdt_cells = [0u8; 16];
    let mut scratch_cells = [0u8; 16];
    let n = encode(PROP_KHO_FDT, data.fdt_addr, data.fdt_size, cells, &mut fdt_cells)?;
    encode(PROP_KHO_SCRATCH, data.scratch_addr, data.scratch_size, cells, &mut scratch_cells)?;
    let mut chosen = fdt.find_node_mut("/chosen").ok_or(HandoffError::NoChosen)?;
    for (name, value) in [(PROP_KHO_FDT, &fdt_cells[..n]), (PROP_KHO_SCRATCH, &scratch_cells[..n])] {
        match chosen.property_mut(name) {
            Some(mut p) => p.set_value(value).map_err(room)?,
            None => {
                chosen.add_property(name, value).map_err(room)?;
            }
        }
    }
    Ok(fdt.as_read_only().data().len())
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;

    use alloc::vec::Vec;

    use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};

    use super::*;

    const DATA: KhoData =
        KhoData { fdt_addr: 0x1_2345_6000, fdt_size: 4096, scratch_addr: 0x1_2345_7000, scratch_size: 48 };

    fn tree(address: Option<u32>, size: Option<u32>, chosen: bool) -> Vec<u8> {
        let mut t = DeviceTree::new();
        if let Some(a) = address {
            t.root.add_property(DeviceTreeProperty::new_unchecked("#address-cells", a));
        }
        if let Some(s) = size {
            t.root.add_property(DeviceTreeProperty::new_unchecked("#size-cells", s));
        }
        if chosen {
            let node = DeviceTreeNode::builder("chosen")
                .unwrap()
                .property(DeviceTreeProperty::new_unchecked("bootargs", "console=ttyAMA0"))
                .build();
            t.root.add_child(node);
        }
        t.to_dtb()
    }

    fn with_room(mut dtb: Vec<u8>) -> Vec<u8> {
        dtb.resize(dtb.len() + 256, 0);
        dtb
    }

    fn prop(dtb: &[u8], name: &str) -> Vec<u8> {
        Fdt::new(dtb).unwrap().find_node("/chosen").unwrap().property(name).unwrap().value().to_vec()
    }

    #[test]
    fn two_and_two_cells_are_big_endian_address_then_size() {
        let mut buf = with_room(tree(Some(2), Some(2), true));
        let len = write(&mut buf, &DATA).unwrap();
        let dtb = &buf[..len];
        assert_eq!(prop(dtb, PROP_KHO_FDT), [0, 0, 0, 1, 0x23, 0x45, 0x60, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(prop(dtb, PROP_KHO_SCRATCH), [0, 0, 0, 1, 0x23, 0x45, 0x70, 0, 0, 0, 0, 0, 0, 0, 0, 0x30]);
        assert_eq!(prop(dtb, "bootargs"), b"console=ttyAMA0\0");
        assert_eq!(read(dtb), Ok(Some(DATA)));
        assert_eq!(read(&buf), Ok(Some(DATA)), "a buffer longer than the tree");
    }

    #[test]
    fn absent_cell_counts_are_two_and_one() {
        let mut buf = with_room(tree(None, None, true));
        let len = write(&mut buf, &DATA).unwrap();
        assert_eq!(prop(&buf[..len], PROP_KHO_FDT), [0, 0, 0, 1, 0x23, 0x45, 0x60, 0, 0, 0, 0x10, 0]);
        assert_eq!(read(&buf[..len]), Ok(Some(DATA)));
    }

    #[test]
    fn rewriting_replaces_the_values() {
        let mut buf = with_room(tree(Some(2), Some(2), true));
        write(&mut buf, &DATA).unwrap();
        let moved = KhoData { fdt_addr: 0x8000_0000, ..DATA };
        let len = write(&mut buf, &moved).unwrap();
        assert_eq!(read(&buf[..len]), Ok(Some(moved)));
    }

    #[test]
    fn one_cell_addresses_must_fit() {
        let mut buf = with_room(tree(Some(1), Some(1), true));
        assert_eq!(
            write(&mut buf, &DATA),
            Err(HandoffError::TooWide { what: PROP_KHO_FDT, value: 0x1_2345_6000, cells: 1 })
        );
        let low = KhoData { fdt_addr: 0x4000_0000, scratch_addr: 0x4000_1000, ..DATA };
        let len = write(&mut buf, &low).unwrap();
        assert_eq!(prop(&buf[..len], PROP_KHO_FDT), [0x40, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(read(&buf[..len]), Ok(Some(low)));
    }

    #[test]
    fn missing_pieces_and_bad_lengths_are_named() {
        assert_eq!(read(&tree(Some(2), Some(2), true)), Ok(None));
        assert_eq!(read(&tree(Some(2), Some(2), false)), Ok(None));
        let mut no_chosen = with_room(tree(Some(2), Some(2), false));
        assert_eq!(write(&mut no_chosen, &DATA), Err(HandoffError::NoChosen));
        // Only one property.
        let mut buf = with_room(tree(Some(2), Some(2), true));
        let len = write(&mut buf, &DATA).unwrap();
        let mut one = buf.clone();
        assert!(
            FdtMut::from_slice(&mut one).unwrap().find_node_mut("/chosen").unwrap().remove_property(PROP_KHO_SCRATCH)
        );
        assert_eq!(
            read(&one[..len]),
            Err(HandoffError::Incomplete { present: PROP_KHO_FDT, missing: PROP_KHO_SCRATCH })
        );
        // Written with 2+2 cells, read as 2+1.
        let mut t = Fdt::new(&buf[..len]).map(|_| buf.clone()).unwrap();
        let mut f = FdtMut::from_slice(&mut t).unwrap();
        f.root_mut().property_mut("#size-cells").unwrap().set_value(1u32).unwrap();
        assert!(matches!(
            read(f.as_read_only().data()),
            Err(HandoffError::BadLength { prop: PROP_KHO_FDT, len: 16, expected: 12, .. })
        ));
        assert!(matches!(read(&buf[..10]), Err(HandoffError::Fdt(_))));
        let mut three = with_room(tree(Some(3), Some(2), true));
        assert_eq!(write(&mut three, &DATA), Err(HandoffError::InvalidValue { what: "#address-cells", value: 3 }));
    }

    #[test]
    fn a_full_buffer_is_no_room_and_invalid_data_is_refused() {
        let mut exact = tree(Some(2), Some(2), true);
        assert!(matches!(write(&mut exact, &DATA), Err(HandoffError::NoRoom { .. })));
        let mut buf = with_room(tree(Some(2), Some(2), true));
        let bad = KhoData { fdt_addr: 0, ..DATA };
        assert_eq!(write(&mut buf, &bad).map_err(|e| e.kind()), Err("zero_address"));
    }
}
