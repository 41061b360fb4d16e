//! An independent decoder for the fuzz harness: the format description of
//! the crate docs implemented again, as plainly as possible, over a copy of
//! the preserved pages. It shares no code with the crate's walk, so the two
//! can only agree by both following the description.

use std::collections::{BTreeMap, BTreeSet};
use std::vec;
use std::vec::Vec;

use kho_abi::PhysAddr;
use kho_sim::Machine;

use crate::format::{ARRAY_MAGIC, ARRAY_VERSION, ArrayDesc, PAGE_WORDS};

/// The preserved pages of a machine, by PA.
pub(crate) struct Image {
    pages: BTreeMap<u64, Vec<u64>>,
}

impl Image {
    /// Copies the pages at `preserved` out of `m`.
    pub(crate) fn snapshot(m: &Machine, preserved: &[PhysAddr]) -> Image {
        let mut pages = BTreeMap::new();
        for &pa in preserved {
            let mut bytes = vec![0u8; PAGE_WORDS * 8];
            m.read(pa, &mut bytes).expect("read a preserved page");
            let words = bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
            pages.insert(pa.as_u64(), words);
        }
        Image { pages }
    }

    /// The raw entries of the array `desc` describes, or `None` if any
    /// rule is broken. Only preserved pages are reachable, each once.
    pub(crate) fn decode(&self, desc: &ArrayDesc, max_pages: u64) -> Option<Vec<(u64, u64)>> {
        if desc.magic != ARRAY_MAGIC || desc.version != ARRAY_VERSION || desc.reserved != 0 {
            return None;
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut link = desc.first;
        // One past the last position so far: nothing may start below it.
        let mut min: u128 = 0;
        while link != 0 {
            if seen.len() as u64 >= max_pages || !seen.insert(link) {
                return None;
            }
            let page = self.pages.get(&link)?;
            let start = u128::from(page[1]);
            if start < min {
                return None;
            }
            let mut base = start;
            let mut w = 2;
            let mut runs = 0;
            while w < PAGE_WORDS && page[w] != 0 {
                let header = page[w];
                let escape = header & 1;
                let count = ((header >> 1) & 0x1fff) as usize;
                let skip = header >> 14;
                if count == 0 || (escape == 1 && skip != 0) {
                    return None;
                }
                let first_entry = w + 1 + escape as usize;
                if first_entry + count > PAGE_WORDS {
                    return None;
                }
                let pos = if escape == 1 { u128::from(page[w + 1]) } else { base + u128::from(skip) };
                if pos < base || pos + count as u128 > 1 << 64 {
                    return None;
                }
                for (i, &e) in page[first_entry..first_entry + count].iter().enumerate() {
                    let well_tagged = e & 1 == 1 || (e != 0 && e % 8 == 0);
                    if !well_tagged {
                        return None;
                    }
                    out.push(((pos + i as u128) as u64, e));
                }
                base = pos + count as u128;
                w = first_entry + count;
                runs += 1;
            }
            if runs == 0 || page[w.min(PAGE_WORDS)..].iter().any(|&x| x != 0) {
                return None;
            }
            min = base;
            link = page[0];
        }
        Some(out)
    }
}
