//! Small FDT blobs laid out byte for byte as libfdt's sequential writer
//! lays them out, for the layers whose subtree is an FDT (`memblock-v1`,
//! `kho-test-v1`): a writer must produce the kernel's exact bytes, and a
//! generic device-tree serializer orders its string table differently.
//!
//! The layout (all header and token words big-endian, property values raw):
//!
//! - a 40-byte header: magic `0xd00dfeed`, `totalsize`, `off_dt_struct`
//!   (64), `off_dt_strings`, `off_mem_rsvmap` (48), version 17, last
//!   compatible version 16, boot CPU 0, `size_dt_strings`, `size_dt_struct`;
//! - 8 zero bytes: the reservation map starts at the header's size rounded
//!   up to a reservation entry (16 bytes);
//! - the memory reservation map: just its terminating 16 zero bytes;
//! - the structure block: `BEGIN_NODE` + NUL-terminated name padded to 4,
//!   `PROP` + length + name offset + value padded to 4, `END_NODE`, `END`;
//! - the strings block: each property name once, the newest first (the
//!   sequential writer grows the table downwards), a name found in the
//!   table already, even as the tail of a longer one, reused.

use alloc::vec::Vec;

const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER: usize = 40;
/// Where the reservation map starts: the header rounded up to 16.
const RSVMAP_AT: usize = 48;
const RSVMAP: usize = 16;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;

/// Builds an FDT the way libfdt's `fdt_create` / `fdt_begin_node` /
/// `fdt_property` / `fdt_end_node` / `fdt_finish` sequence does.
///
/// ```
/// use kho_probe::fdt::SwFdt;
///
/// let mut w = SwFdt::new();
/// w.begin_node("");
/// w.property("compatible", b"memblock-v1\0");
/// w.end_node();
/// let dtb = w.finish();
/// assert_eq!(&dtb[..4], &0xd00d_feedu32.to_be_bytes());
/// assert_eq!(dtb.len(), 64 + 4 + 4 + 12 + 12 + 4 + 4 + 11);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SwFdt {
    structure: Vec<u8>,
    /// Strings in insertion order, each with its offset from the *end* of
    /// the final table (the sequential writer's negative offsets).
    strings: Vec<u8>,
}

impl SwFdt {
    /// An empty tree.
    pub fn new() -> Self {
        SwFdt::default()
    }

    fn word(&mut self, w: u32) {
        self.structure.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// Opens a node (`""` for the root).
    pub fn begin_node(&mut self, name: &str) {
        self.word(BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
    }

    /// Closes the node opened last.
    pub fn end_node(&mut self) {
        self.word(END_NODE);
    }

    /// Adds a property with a raw value.
    pub fn property(&mut self, name: &str, value: &[u8]) {
        let nameoff = self.string(name);
        self.word(PROP);
        self.word(value.len() as u32);
        self.word(nameoff);
        self.structure.extend_from_slice(value);
        self.pad();
    }

    /// The offset of `name` in the final strings block, adding it if
    /// needed. The final block is the insertion-ordered strings reversed,
    /// so an offset is known only at the end: store it as a distance from
    /// the end (`len - at`) and fix it up in `finish`.
    fn string(&mut self, name: &str) -> u32 {
        let mut needle = Vec::with_capacity(name.len() + 1);
        needle.extend_from_slice(name.as_bytes());
        needle.push(0);
        // The final table: newest first.
        let table = self.table();
        if let Some(at) = table.windows(needle.len()).position(|w| w == needle.as_slice()) {
            return Self::tag(table.len() - at);
        }
        self.strings.extend_from_slice(&needle);
        Self::tag(needle.len() + table.len())
    }

    /// Distances from the end are tagged in the high bit until `finish`.
    fn tag(distance: usize) -> u32 {
        0x8000_0000 | distance as u32
    }

    /// The strings block as it will be: the insertion-ordered entries in
    /// reverse order.
    fn table(&self) -> Vec<u8> {
        let mut entries: Vec<&[u8]> = self.strings.split_inclusive(|&b| b == 0).collect();
        entries.reverse();
        entries.concat()
    }

    /// Ends the tree and returns its bytes (`totalsize` of them).
    pub fn finish(mut self) -> Vec<u8> {
        self.word(END);
        let table = self.table();
        // Fix the name offsets: a distance `d` from the end is offset
        // `len - d`.
        let mut at = 0;
        while at + 4 <= self.structure.len() {
            let token = u32::from_be_bytes([
                self.structure[at],
                self.structure[at + 1],
                self.structure[at + 2],
                self.structure[at + 3],
            ]);
            at += 4;
            match token {
                BEGIN_NODE => {
                    while self.structure[at] != 0 {
                        at += 1;
                    }
                    at = (at + 1).next_multiple_of(4);
                }
                PROP => {
                    let len = u32::from_be_bytes(self.structure[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
                    let tagged = u32::from_be_bytes(self.structure[at + 4..at + 8].try_into().unwrap_or([0; 4]));
                    let off = (table.len() - (tagged & 0x7fff_ffff) as usize) as u32;
                    self.structure[at + 4..at + 8].copy_from_slice(&off.to_be_bytes());
                    at = (at + 8 + len).next_multiple_of(4);
                }
                _ => {}
            }
        }
        let off_struct = RSVMAP_AT + RSVMAP;
        let off_strings = off_struct + self.structure.len();
        let total = off_strings + table.len();
        let mut out = Vec::with_capacity(total);
        for w in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            RSVMAP_AT as u32,
            17,
            16,
            0,
            table.len() as u32,
            self.structure.len() as u32,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&[0; RSVMAP_AT - HEADER + RSVMAP]);
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&table);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn strings_newest_first_with_tail_sharing() {
        let mut w = SwFdt::new();
        w.begin_node("");
        w.property("compatible", b"x\0");
        w.property("blob-size", &[1, 2, 3, 4, 5, 6, 7, 8]);
        w.begin_node("r");
        w.property("compatible", b"y\0");
        w.property("size", &[0; 8]); // the tail of "blob-size"
        w.property("start", &[0; 8]);
        w.end_node();
        w.end_node();
        let dtb = w.finish();
        let off_strings = be(&dtb, 12) as usize;
        let size_strings = be(&dtb, 32) as usize;
        assert_eq!(&dtb[off_strings..off_strings + size_strings], b"start\0blob-size\0compatible\0");
        assert_eq!(be(&dtb, 4) as usize, dtb.len());
        assert_eq!((be(&dtb, 8), be(&dtb, 16), be(&dtb, 20), be(&dtb, 24)), (64, 48, 17, 16));
        // First property: compatible at offset 16 of the table.
        assert_eq!(be(&dtb, 64 + 8 + 8), 16);
        // "size" shares "blob-size"'s tail: offset 6 + 5.
        let fdt = dtoolkit_free_scan(&dtb);
        assert_eq!(fdt, ["compatible", "blob-size", "compatible", "size", "start"]);
    }

    /// The property names, read back through the name offsets.
    fn dtoolkit_free_scan(dtb: &[u8]) -> Vec<&str> {
        let (os, ost) = (be(dtb, 8) as usize, be(dtb, 12) as usize);
        let mut names = Vec::new();
        let mut at = os;
        loop {
            let t = be(dtb, at);
            at += 4;
            match t {
                BEGIN_NODE => {
                    while dtb[at] != 0 {
                        at += 1;
                    }
                    at = (at + 1).next_multiple_of(4);
                }
                PROP => {
                    let len = be(dtb, at) as usize;
                    let off = ost + be(dtb, at + 4) as usize;
                    let end = off + dtb[off..].iter().position(|&b| b == 0).unwrap();
                    names.push(core::str::from_utf8(&dtb[off..end]).unwrap());
                    at = (at + 8 + len).next_multiple_of(4);
                }
                END => break,
                _ => {}
            }
        }
        names
    }
}

/// Why an FDT blob could not be read by [`read_blob`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobReadError {
    /// The blob's `size` bytes are not all RAM.
    NotRam(kho_abi::AbiError),
    /// The header's `totalsize` is larger than the blob's size.
    TotalSize {
        /// The header's `totalsize`.
        total: u64,
    },
}

/// Reads the FDT blob of `size` bytes at `blob` (the caller has checked
/// that `size` holds at least an FDT header and is bounded) and returns
/// its bytes cut to the header's `totalsize`.
pub fn read_blob<P: kho_abi::PhysMem + ?Sized>(
    p: &P,
    blob: kho_abi::PhysAddr,
    size: u64,
) -> Result<Vec<u8>, BlobReadError> {
    let mut bytes = alloc::vec![0u8; size as usize];
    kho_abi::read_phys_bytes(p, blob, &mut bytes).map_err(BlobReadError::NotRam)?;
    let total = bytes.get(4..8).map_or(0, |b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    if total > size {
        return Err(BlobReadError::TotalSize { total });
    }
    bytes.truncate(total as usize);
    Ok(bytes)
}
