//! x86-64 `csum_partial`: the Internet checksum's one's-complement sum,
//! computed 64 bits at a time and returned folded to 32 bits, unfolded to
//! 16 (`__wsum`).
//!
//! Described behaviour, reimplemented here:
//!
//! - the 32-bit seed is widened to 64 bits and the data added to it as
//!   little-endian 64-bit words, in order, each addition's carry added back
//!   in (end-around carry);
//! - a tail of `len % 8` bytes is one more word: those bytes in its low
//!   end, zeros above (no byte swapping, whatever the length's parity);
//! - the 64-bit sum is folded to 32 bits the same way: high half plus low
//!   half, the carry added back.
//!
//! A one's-complement sum is independent of how it is grouped, so the
//! folded 16-bit value agrees with the classic 16-bit Internet checksum of
//! the same bytes (the tests check that against a 16-bit reference).

/// A running 64-bit one's-complement sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Csum64(u64);

impl Csum64 {
    /// Starts from a 32-bit seed (a previous [`csum_partial`] result).
    pub const fn new(seed: u32) -> Self {
        Csum64(seed as u64)
    }

    /// Adds one 64-bit word with end-around carry.
    pub const fn add(self, w: u64) -> Self {
        let (s, c) = self.0.overflowing_add(w);
        Csum64(s + c as u64)
    }

    /// Adds `data` as little-endian words; a tail shorter than 8 bytes is
    /// zero-extended. Only the last call for one buffer may have a tail.
    pub fn add_bytes(mut self, data: &[u8]) -> Self {
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self = self.add(u64::from_le_bytes(b));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 8];
            b[..tail.len()].copy_from_slice(tail);
            self = self.add(u64::from_le_bytes(b));
        }
        self
    }

    /// Folds to 32 bits with end-around carry: `csum_partial`'s result.
    pub const fn fold(self) -> u32 {
        let (s, c) = ((self.0 >> 32) as u32).overflowing_add(self.0 as u32);
        s.wrapping_add(c as u32)
    }
}

/// `csum_partial(data, len, seed)` as x86-64 computes it.
pub fn csum_partial(data: &[u8], seed: u32) -> u32 {
    Csum64::new(seed).add_bytes(data).fold()
}

/// Folds a 32-bit sum to the 16-bit one's-complement sum (`csum_fold`
/// without the final complement).
pub const fn fold16(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classic 16-bit one's-complement sum, little-endian halfwords,
    /// an odd last byte as a low byte.
    fn reference16(data: &[u8], seed: u32) -> u16 {
        let mut s = u64::from(seed);
        for h in data.chunks(2) {
            s += u64::from(h[0]) | (u64::from(*h.get(1).unwrap_or(&0)) << 8);
        }
        while s > 0xffff {
            s = (s >> 16) + (s & 0xffff);
        }
        s as u16
    }

    #[test]
    fn hand_computed_cases() {
        assert_eq!(csum_partial(&[], 0), 0);
        assert_eq!(csum_partial(&[], 0x1234_5678), 0x1234_5678);
        assert_eq!(csum_partial(&[1], 0), 1);
        assert_eq!(csum_partial(&[1, 2, 3], 0), 0x0003_0201);
        // One word 0x0807060504030201: hi 0x08070605 + lo 0x04030201.
        assert_eq!(csum_partial(&[1, 2, 3, 4, 5, 6, 7, 8], 0), 0x0c0a_0806);
        // The tail is zero-extended in the low bytes of a 9th..16th byte word.
        assert_eq!(csum_partial(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 0), 0x0c0a_0806 + 9);
        // End-around carry in the 64-bit sum: all-ones plus 1 is 1.
        assert_eq!(csum_partial(&[0xff; 8], 1), 1);
        // ... and in the fold: 0xffffffff + 0x00000001 (hi) -> 1.
        assert_eq!(csum_partial(&[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0], 0), 1);
        assert_eq!(csum_partial(&[0xff; 16], 0), 0xffff_ffff);
        // A seed carried across calls equals one call over 8-byte pieces.
        let data: Vec<u8> = (0..64u8).collect();
        assert_eq!(csum_partial(&data[32..], csum_partial(&data[..32], 7)), csum_partial(&data, 7));
    }

    #[test]
    fn agrees_with_the_16_bit_reference() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let seed = (x >> 20) as u32;
            let got = fold16(csum_partial(&data, seed));
            let want = reference16(&data, seed);
            // 0 and 0xffff are the two representations of zero.
            assert!(
                got == want || (got.is_multiple_of(0xffff) && want.is_multiple_of(0xffff)),
                "len {len}: {got:#x} {want:#x}"
            );
        }
        // Saturated data: every representation question at once.
        for len in [8usize, 9, 15, 16, 4096] {
            let data = vec![0xffu8; len];
            assert_eq!(fold16(csum_partial(&data, 0)) % 0xffff, reference16(&data, 0) % 0xffff);
        }
    }
}
