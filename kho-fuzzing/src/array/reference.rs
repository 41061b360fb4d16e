//! An independent decoder for the fuzz harness: the `array-v1` description
//! of `DESIGN.md` implemented again, as plainly as possible, over a copy of
//! the preserved pages. It shares only constants with the crate: no walk,
//! no layout decoding and no stream arithmetic, so the two can only agree
//! by both following the description. Positions are `u128`, so no sum
//! wraps, and a page's descriptor stream is unpacked into a string of bits
//! before any field is read.

use std::collections::{BTreeMap, BTreeSet};
use std::vec;
use std::vec::Vec;

use kho_abi::PhysAddr;
use kho_sim::Machine;

use kho_array::format::{ARRAY_MAGIC, ARRAY_PAGE_WORDS, ARRAY_VERSION, ArrayDesc};

/// Words of a page (`W` in the description).
const W: usize = ARRAY_PAGE_WORDS;

/// One past the highest position.
const END: u128 = 1 << 64;

/// The preserved pages of a machine, by PA.
pub(crate) struct Image {
    pages: BTreeMap<u64, Vec<u64>>,
}

/// The descriptor stream of a page: bit `k` is bit `k mod 64` of word
/// `W - 1 - k / 64`.
fn stream_bits(page: &[u64]) -> Vec<bool> {
    (0..W * 64).map(|k| (page[W - 1 - k / 64] >> (k % 64)) & 1 == 1).collect()
}

/// The `n`-bit field at stream bit `at`, least significant bit first.
fn stream_value(bits: &[bool], at: usize, n: usize) -> u128 {
    (0..n).map(|j| u128::from(bits[at + j]) << j).sum()
}

/// Whether `raw` is a storable entry: a tagged value or a non-zero pointer
/// whose low three bits are clear.
fn well_tagged(raw: u64) -> bool {
    !raw.is_multiple_of(2) || (raw != 0 && raw.is_multiple_of(8))
}

impl Image {
    /// Copies the pages at `preserved` out of `m`.
    pub(crate) fn snapshot(m: &Machine, preserved: &[PhysAddr]) -> Image {
        let mut pages = BTreeMap::new();
        for &pa in preserved {
            let mut bytes = vec![0u8; W * 8];
            m.read(pa, &mut bytes).expect("read a preserved page");
            let words = bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect();
            pages.insert(pa.as_u64(), words);
        }
        Image { pages }
    }

    /// Copies the chain of pages starting at `first` out of `m`, following
    /// the links of a well-formed array (at most `limit` pages).
    pub(crate) fn chain(m: &Machine, first: u64, limit: usize) -> Image {
        let mut pa = first;
        let mut pages = Vec::new();
        while pa != 0 && pages.len() < limit {
            pages.push(PhysAddr::new(pa));
            let mut next = [0u8; 8];
            m.read(PhysAddr::new(pa), &mut next).expect("read a link");
            pa = u64::from_ne_bytes(next);
        }
        Image::snapshot(m, &pages)
    }

    /// The `(position, raw entry)` pairs of the array `desc` describes, or
    /// `None` if any rule is broken. Only preserved pages are reachable,
    /// each at most once, and at most `max_pages` of them.
    pub(crate) fn decode(&self, desc: &ArrayDesc, max_pages: u64) -> Option<Vec<(u64, u64)>> {
        if desc.magic != ARRAY_MAGIC || desc.version != ARRAY_VERSION || desc.reserved != 0 {
            return None;
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut link = desc.first;
        // The lowest position the next page may start at.
        let mut base: u128 = 0;
        while link != 0 {
            if seen.len() as u64 >= max_pages || !seen.insert(link) {
                return None;
            }
            // Unaligned links, links outside RAM and unpreserved pages are
            // all pages the image does not hold.
            let page = self.pages.get(&link)?;
            base = Self::decode_page(page, base, &mut out)?;
            link = page[0];
        }
        Some(out)
    }

    /// Decodes one page whose `start` must be at or above `base` (and
    /// below 2^64), appending its entries to `out`; returns the base after
    /// its last run.
    fn decode_page(page: &[u64], base: u128, out: &mut Vec<(u64, u64)>) -> Option<u128> {
        let start = u128::from(page[1]);
        if base >= END || start < base {
            return None;
        }
        let layout = page[2];
        let runs = (layout & 0xffff) as usize;
        let count_bits = ((layout >> 16) & 0xff) as usize;
        let skip_bits = ((layout >> 24) & 0xff) as usize;
        if layout >> 32 != 0 || runs == 0 || count_bits > 16 || skip_bits > 64 {
            return None;
        }
        let width = count_bits + skip_bits;
        let stream_words = (runs * width).div_ceil(64);
        if 3 + runs + stream_words > W {
            return None;
        }
        let entries_end = W - stream_words;
        let bits = stream_bits(page);

        let mut base = start;
        let mut word = 3;
        for run in 0..runs {
            let count = stream_value(&bits, run * width, count_bits) as usize + 1;
            let skip = stream_value(&bits, run * width + count_bits, skip_bits);
            if word + count > entries_end {
                return None;
            }
            let first = base + skip;
            if first + count as u128 > END {
                return None;
            }
            for (i, &raw) in page[word..word + count].iter().enumerate() {
                if !well_tagged(raw) {
                    return None;
                }
                out.push((u64::try_from(first + i as u128).ok()?, raw));
            }
            base = first + count as u128;
            word += count;
        }
        // The free words, and the stream's bits after the last descriptor.
        if page[word..entries_end].iter().any(|&w| w != 0) {
            return None;
        }
        if bits[runs * width..stream_words * 64].iter().any(|&b| b) {
            return None;
        }
        Some(base)
    }
}
