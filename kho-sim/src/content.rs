//! Deterministic test content and a fast checksum over bytes.

/// A stream of pseudo-random bytes (splitmix64), the same for the same seed
/// on every run and platform.
#[derive(Clone, Debug)]
pub struct ByteStream {
    state: u64,
}

impl ByteStream {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> ByteStream {
        ByteStream { state: seed }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next `buf.len()` bytes. Filling in pieces gives
    /// the same bytes as filling at once only when each piece but the last
    /// is a multiple of 8 bytes long.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_word().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next_word().to_le_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
    }
}

/// An incremental 64-bit hash of a byte sequence: 8-byte little-endian
/// words mixed multiplicatively, then the length. Not cryptographic; equal
/// content gives equal sums whatever the piece sizes fed to
/// [`update`](Checksum::update), as long as each piece but the last is a
/// multiple of 8 bytes long.
#[derive(Clone, Debug)]
pub struct Checksum {
    h: u64,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum::new()
    }
}

impl Checksum {
    const K: u64 = 0x9fb2_1c65_1e98_df25;

    /// An empty checksum.
    pub fn new() -> Checksum {
        Checksum { h: 0xcbf2_9ce4_8422_2325, len: 0 }
    }

    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(Self::K).rotate_left(29);
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ 0x80);
        }
        self.len += bytes.len() as u64;
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut z = self.h ^ self.len.wrapping_mul(Self::K);
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_deterministic_and_seeded() {
        let (mut a, mut b) = ([0u8; 100], [0u8; 100]);
        ByteStream::new(7).fill(&mut a);
        let mut s = ByteStream::new(7);
        s.fill(&mut b[..64]);
        s.fill(&mut b[64..]);
        assert_eq!(a, b);
        ByteStream::new(8).fill(&mut b);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    fn checksum_sees_every_byte_and_the_length() {
        let sum = |b: &[u8]| {
            let mut c = Checksum::new();
            c.update(b);
            c.finish()
        };
        let mut data = [0u8; 4096];
        ByteStream::new(1).fill(&mut data);
        let base = sum(&data);
        for i in [0, 7, 8, 4095] {
            let mut d = data;
            d[i] ^= 1;
            assert_ne!(sum(&d), base, "byte {i}");
        }
        assert_ne!(sum(&[0; 8]), sum(&[0; 16]));
        assert_ne!(sum(&[0; 3]), sum(&[0; 4]));
        let mut c = Checksum::new();
        c.update(&data[..1024]);
        c.update(&data[1024..]);
        assert_eq!(c.finish(), base);
    }
}
