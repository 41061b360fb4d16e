//! The root FDT: building it for the next kernel and reading the one a
//! previous kernel left.
//!
//! ```text
//! / {
//!     compatible = "kho-v4";
//!     preserved-memory-map = <8 raw native-endian bytes: root table PA>;
//!     <name> { preserved-data = <8 bytes: blob PA>; blob-size = <8 bytes>; };
//! };
//! ```
//!
//! Property values are raw native-endian bytes, never big-endian cells.

use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::fdt::Fdt;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use dtoolkit::{Node, Property};
use kho_abi::handover::{PROP_BLOB_SIZE, PROP_PRESERVED_DATA, PROP_PRESERVED_MEMORY_MAP};
use kho_abi::{Compatible, PAGE_SIZE, PhysAddr, RootVersion};

use crate::error::TrackError;

/// One subtree: a named blob the next kernel can retrieve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subtree {
    /// The node name.
    pub name: String,
    /// PA of the blob.
    pub pa: PhysAddr,
    /// Size of the blob in bytes (`None` for roots before `kho-v3`).
    pub size: Option<u64>,
}

/// Serializes a root FDT; fails with `FdtFull` if it exceeds a page.
pub fn build(compatible: &str, memory_map: PhysAddr, subtrees: &[Subtree]) -> Result<Vec<u8>, TrackError> {
    let mut tree = DeviceTree::new();
    let root = &mut tree.root;
    root.add_property(DeviceTreeProperty::new_unchecked("compatible", compatible));
    root.add_property(DeviceTreeProperty::new_unchecked(PROP_PRESERVED_MEMORY_MAP, memory_map.as_u64().to_ne_bytes()));
    for s in subtrees {
        let node = DeviceTreeNode::builder(s.name.as_str())
            .map_err(|_| TrackError::BadName { name: s.name.clone() })?
            .property(DeviceTreeProperty::new_unchecked(PROP_PRESERVED_DATA, s.pa.as_u64().to_ne_bytes()))
            .property(DeviceTreeProperty::new_unchecked(PROP_BLOB_SIZE, s.size.unwrap_or(0).to_ne_bytes()))
            .build();
        root.add_child(node);
    }
    let dtb = tree.to_dtb();
    if dtb.len() > PAGE_SIZE {
        return Err(TrackError::FdtFull { size: dtb.len() });
    }
    Ok(dtb)
}

/// Whether `name` can be a subtree node name.
pub fn check_name(name: &str) -> Result<(), TrackError> {
    // The empty name is the root's own: a child by that name would make the
    // FDT unreadable.
    if name.is_empty() {
        return Err(TrackError::BadName { name: String::new() });
    }
    DeviceTreeNode::new(name).map(|_| ()).map_err(|_| TrackError::BadName { name: name.to_string() })
}

/// A root FDT read from a previous kernel, checked.
#[derive(Clone, Debug)]
pub struct RootFdt {
    bytes: Vec<u8>,
    pa: PhysAddr,
    compatible: String,
    version: RootVersion,
    memory_map: PhysAddr,
}

/// Fails with `DuplicateProperty` if `node` has two properties of one name.
fn check_unique_properties(node: &dtoolkit::fdt::FdtNode<'_>, name: &str) -> Result<(), TrackError> {
    let mut seen = BTreeSet::new();
    for p in node.properties() {
        if !seen.insert(p.name().to_string()) {
            return Err(TrackError::DuplicateProperty { node: name.to_string(), prop: p.name().to_string() });
        }
    }
    Ok(())
}

/// FDT structure tokens.
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Walks the token stream of an FDT the parser accepted and checks that
/// every token, with its payload, ends within the structure block
/// `[off, off + size)`. On failure returns the token's offset and the
/// block's end.
fn check_struct_bounds(bytes: &[u8], off: u64, size: u64) -> Result<(), (u64, u64)> {
    let end = off.saturating_add(size);
    let word = |at: u64| -> Option<u32> {
        let at = usize::try_from(at).ok()?;
        let w = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let mut at = off;
    // Each step advances by at least 4 bytes and the FDT is at most a page.
    loop {
        let token = word(at).ok_or((at, end))?;
        let next = match token {
            FDT_BEGIN_NODE => {
                let name = usize::try_from(at + 4).ok().and_then(|s| bytes.get(s..)).ok_or((at, end))?;
                let len = name.iter().position(|&b| b == 0).ok_or((at, end))? as u64;
                (at + 4 + len + 1).next_multiple_of(4)
            }
            FDT_PROP => {
                let len = u64::from(word(at + 4).ok_or((at, end))?);
                (at + 12 + len).next_multiple_of(4)
            }
            FDT_END_NODE | FDT_NOP | FDT_END => at + 4,
            _ => return Err((at, end)),
        };
        if next > end {
            return Err((at, end));
        }
        if token == FDT_END {
            return Ok(());
        }
        at = next;
    }
}

fn raw_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.try_into().ok()?))
}

impl RootFdt {
    /// Checks a root FDT read from `pa`: header (its `totalsize` at most
    /// `bytes.len()`), every token inside the structure block
    /// (`size_dt_struct`, as libfdt bounds them), a readable compatible
    /// string (exact, NUL terminated), a non-zero, page aligned
    /// `preserved-memory-map`, no property twice in the root or a subtree
    /// node, and no two subtrees with one name.
    pub fn parse(pa: PhysAddr, mut bytes: Vec<u8>) -> Result<RootFdt, TrackError> {
        let be32 = |b: &[u8], off: usize| match b.get(off..off + 4) {
            Some(w) => u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])),
            None => 0,
        };
        let totalsize = be32(&bytes, 4);
        if totalsize > bytes.len() as u64 {
            return Err(TrackError::FdtSize { pa, totalsize, limit: bytes.len() as u64 });
        }
        bytes.truncate(totalsize as usize);
        let fdt = Fdt::new(&bytes).map_err(|source| TrackError::Fdt { pa, source })?;
        // The parser bounds tokens by `totalsize`; the kernel's (libfdt) by
        // the structure block. The parser has checked the token stream
        // itself, so walking it again only has to compare offsets.
        check_struct_bounds(&bytes, be32(&bytes, 8), be32(&bytes, 36))
            .map_err(|(offset, end)| TrackError::FdtStruct { pa, offset, end })?;
        let root = fdt.root();
        check_unique_properties(&root, "/")?;
        let bad = |prop, len| TrackError::BadProperty { node: "/", prop, len };
        let compat = root.property("compatible").ok_or(bad("compatible", 0))?;
        let compatible = match compat.value().split_last() {
            Some((0, s)) => core::str::from_utf8(s).map_err(|_| bad("compatible", 0))?,
            Some(_) => return Err(TrackError::Unterminated { node: "/", prop: "compatible" }),
            None => return Err(bad("compatible", 0)),
        };
        let version = Compatible::parse(compatible, "root compatible")?.readable_root("root compatible")?;
        let map = root.property(PROP_PRESERVED_MEMORY_MAP).ok_or(bad(PROP_PRESERVED_MEMORY_MAP, 8))?;
        let memory_map = PhysAddr::new(raw_u64(map.value()).ok_or(bad(PROP_PRESERVED_MEMORY_MAP, 8))?)
            .require_nonzero("preserved-memory-map")?
            .require_aligned("preserved-memory-map", PAGE_SIZE as u64)?;
        let mut names = BTreeSet::new();
        for child in root.children() {
            if !names.insert(child.name().to_string()) {
                return Err(TrackError::DuplicateSubtree { name: child.name().to_string() });
            }
            check_unique_properties(&child, child.name())?;
        }
        let compatible = compatible.to_string();
        Ok(RootFdt { bytes, pa, compatible, version, memory_map })
    }

    /// The root compatible string.
    pub fn compatible(&self) -> &str {
        &self.compatible
    }

    /// The root format version.
    pub fn version(&self) -> RootVersion {
        self.version
    }

    /// PA of the preserved-memory map.
    pub fn memory_map(&self) -> PhysAddr {
        self.memory_map
    }

    /// PA the FDT was read from.
    pub fn pa(&self) -> PhysAddr {
        self.pa
    }

    /// The FDT's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn fdt(&self) -> Fdt<'_> {
        // PANICS: none; `parse` validated these exact bytes.
        Fdt::new_unchecked(&self.bytes)
    }

    /// Looks a subtree up by name: `SubtreeNotFound` if there is no such
    /// node, `SubtreeInvalid` if a property is missing or not 8 bytes.
    pub fn subtree(&self, name: &str) -> Result<Subtree, TrackError> {
        let root = self.fdt().root();
        let node = root
            .children()
            .find(|c| c.name() == name)
            .ok_or_else(|| TrackError::SubtreeNotFound { name: name.to_string() })?;
        self.read_subtree(&node)
    }

    fn read_subtree(&self, node: &dtoolkit::fdt::FdtNode<'_>) -> Result<Subtree, TrackError> {
        let name = node.name().to_string();
        let prop = |p: &'static str| {
            node.property(p)
                .and_then(|v| raw_u64(v.value()))
                .ok_or_else(|| TrackError::SubtreeInvalid { name: name.clone(), prop: p })
        };
        let pa = PhysAddr::new(prop(self.version.data_property())?);
        let size = if self.version.has_blob_size() { Some(prop(PROP_BLOB_SIZE)?) } else { None };
        Ok(Subtree { name: name.clone(), pa, size })
    }

    /// Every subtree, each checked like [`RootFdt::subtree`].
    pub fn subtrees(&self) -> impl Iterator<Item = Result<Subtree, TrackError>> + '_ {
        self.fdt().root().children().map(move |c| self.read_subtree(&c))
    }
}
