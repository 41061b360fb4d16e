//! Test inputs made here: a KHO root FDT written the way the kernel writes one.

/// A root FDT: `compatible = "kho-v4"`, `preserved-memory-map` = 0x3a6000,
/// one subtree `LUO` at 0x1c48000 of 32 bytes (values little-endian).
pub fn root_fdt_bytes() -> Vec<u8> {
    root_fdt_with("kho-v4", 0x3a6000, &[("LUO", 0x1c48000, 32)])
}

/// A root FDT with the given compatible, map PA and subtrees.
pub fn root_fdt_with(compatible: &str, map: u64, subtrees: &[(&str, u64, u64)]) -> Vec<u8> {
    let mut strings = Vec::new();
    let off = |name: &str, strings: &mut Vec<u8>| {
        let at = strings.len() as u32;
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
        at
    };
    let (c, m, d, s) = (
        off("compatible", &mut strings),
        off("preserved-memory-map", &mut strings),
        off("preserved-data", &mut strings),
        off("blob-size", &mut strings),
    );
    let mut st = Vec::new();
    let u32be = |v: u32, st: &mut Vec<u8>| st.extend_from_slice(&v.to_be_bytes());
    let pad = |st: &mut Vec<u8>| {
        while !st.len().is_multiple_of(4) {
            st.push(0);
        }
    };
    let prop = |st: &mut Vec<u8>, name: u32, value: &[u8]| {
        u32be(3, st);
        u32be(value.len() as u32, st);
        u32be(name, st);
        st.extend_from_slice(value);
        pad(st);
    };
    let node = |st: &mut Vec<u8>, name: &str| {
        u32be(1, st);
        st.extend_from_slice(name.as_bytes());
        st.push(0);
        pad(st);
    };
    node(&mut st, "");
    let mut compat = compatible.as_bytes().to_vec();
    compat.push(0);
    prop(&mut st, c, &compat);
    prop(&mut st, m, &map.to_le_bytes());
    for (name, pa, size) in subtrees {
        node(&mut st, name);
        prop(&mut st, d, &pa.to_le_bytes());
        prop(&mut st, s, &size.to_le_bytes());
        u32be(2, &mut st);
    }
    u32be(2, &mut st);
    u32be(9, &mut st);
    let header = 40u32;
    let rsv = 16u32;
    let off_struct = header + rsv;
    let off_strings = off_struct + st.len() as u32;
    let total = off_strings + strings.len() as u32;
    let mut out = Vec::new();
    for v in [0xd00d_feed, total, off_struct, off_strings, header, 17, 16, 0, strings.len() as u32, st.len() as u32] {
        out.extend_from_slice(&u32::to_be_bytes(v));
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&st);
    out.extend_from_slice(&strings);
    out
}
