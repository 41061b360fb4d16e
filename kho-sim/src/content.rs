//! Deterministic test content and a fast checksum over bytes.
//!
//! Both are written to stay fast in unoptimized (debug) builds, where tests
//! run: bulk work goes through `memcpy` and through plain indexed loops over
//! `u64` words.

use kho_abi::PAGE_SIZE;
use zerocopy::FromBytes;

const PAGE_WORDS: usize = PAGE_SIZE / 8;
/// Words of random material pages are cut from.
const POOL_WORDS: usize = 16 * PAGE_WORDS;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stream of pseudo-random bytes determined by a seed alone (the same on
/// every run and platform), produced page by page: each page-sized piece of
/// the stream starts with a fresh 64-bit random word, followed by a window
/// of a pool of random words chosen by that word. Every page differs from
/// every other with overwhelming probability; generating it costs one
/// `memcpy` per page.
#[derive(Clone, Debug)]
pub struct ByteStream {
    state: u64,
    pool: Vec<u8>,
    page: Vec<u8>,
    /// Bytes of `page` already handed out.
    used: usize,
}

impl ByteStream {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> ByteStream {
        let mut state = seed;
        let pool = (0..POOL_WORDS + PAGE_WORDS).flat_map(|_| splitmix(&mut state).to_le_bytes()).collect();
        ByteStream { state, pool, page: vec![0; PAGE_SIZE], used: PAGE_SIZE }
    }

    fn next_page(&mut self) {
        let r = splitmix(&mut self.state);
        let start = (r % POOL_WORDS as u64) as usize * 8;
        self.page.copy_from_slice(&self.pool[start..start + PAGE_SIZE]);
        self.page[..8].copy_from_slice(&r.to_le_bytes());
        self.used = 0;
    }

    /// Fills `buf` with the next `buf.len()` bytes of the stream (filling in
    /// pieces gives the same bytes as filling at once).
    pub fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            if self.used == PAGE_SIZE {
                self.next_page();
            }
            let n = buf.len().min(PAGE_SIZE - self.used);
            buf[..n].copy_from_slice(&self.page[self.used..self.used + n]);
            self.used += n;
            buf = &mut buf[n..];
        }
    }
}

/// An incremental 64-bit hash of a byte sequence: 32-byte blocks of
/// little-endian words mixed into four lanes, the tail padded, then the
/// length. Not cryptographic. Equal content gives equal sums whatever the
/// piece sizes fed to [`update`](Checksum::update), as long as each piece
/// but the last is a multiple of 32 bytes long.
#[derive(Clone, Debug)]
pub struct Checksum {
    lanes: [u64; 4],
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
        Checksum {
            lanes: [0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4, 0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321],
            len: 0,
        }
    }

    fn block(&mut self, w: [u64; 4]) {
        let l = &mut self.lanes;
        l[0] = (l[0] ^ w[0]).wrapping_mul(Self::K);
        l[1] = (l[1] ^ w[1]).wrapping_mul(Self::K);
        l[2] = (l[2] ^ w[2]).wrapping_mul(Self::K);
        l[3] = (l[3] ^ w[3]).wrapping_mul(Self::K);
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let full = bytes.len() / 32 * 32;
        let (body, tail) = bytes.split_at(full);
        match <[u64]>::ref_from_bytes(body) {
            // Aligned words on a little-endian machine: the fast path.
            Ok(words) if cfg!(target_endian = "little") => {
                let mut l = self.lanes;
                let mut i = 0;
                while i < words.len() {
                    l[0] = (l[0] ^ words[i]).wrapping_mul(Self::K);
                    l[1] = (l[1] ^ words[i + 1]).wrapping_mul(Self::K);
                    l[2] = (l[2] ^ words[i + 2]).wrapping_mul(Self::K);
                    l[3] = (l[3] ^ words[i + 3]).wrapping_mul(Self::K);
                    i += 4;
                }
                self.lanes = l;
            }
            _ => {
                for b in body.chunks_exact(32) {
                    let mut w = [0u64; 4];
                    for (x, c) in w.iter_mut().zip(b.chunks_exact(8)) {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(c);
                        *x = u64::from_le_bytes(a);
                    }
                    self.block(w);
                }
            }
        }
        if !tail.is_empty() {
            let mut padded = [0u8; 32];
            padded[..tail.len()].copy_from_slice(tail);
            padded[tail.len()] = 0x80;
            let mut w = [0u64; 4];
            for (x, c) in w.iter_mut().zip(padded.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                *x = u64::from_le_bytes(a);
            }
            self.block(w);
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        let l = self.lanes;
        let mut z = l[0].rotate_left(1) ^ l[1].rotate_left(19) ^ l[2].rotate_left(37) ^ l[3].rotate_left(53);
        z ^= self.len.wrapping_mul(Self::K);
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_deterministic_and_seeded() {
        let (mut a, mut b) = (vec![0u8; 3 * PAGE_SIZE + 5], vec![0u8; 3 * PAGE_SIZE + 5]);
        ByteStream::new(7).fill(&mut a);
        let mut s = ByteStream::new(7);
        s.fill(&mut b[..13]);
        s.fill(&mut b[13..PAGE_SIZE + 1]);
        s.fill(&mut b[PAGE_SIZE + 1..]);
        assert_eq!(a, b);
        ByteStream::new(8).fill(&mut b);
        assert_ne!(a, b);
        // Pages differ from each other and are not mostly zero.
        assert_ne!(a[..PAGE_SIZE], a[PAGE_SIZE..2 * PAGE_SIZE]);
        assert!(a.iter().filter(|&&x| x == 0).count() < a.len() / 64);
    }

    fn sum(b: &[u8]) -> u64 {
        let mut c = Checksum::new();
        c.update(b);
        c.finish()
    }

    #[test]
    fn checksum_sees_every_byte_and_the_length() {
        let mut data = vec![0u8; 4096 + 8];
        ByteStream::new(1).fill(&mut data);
        let base = sum(&data[..4096]);
        for i in [0, 7, 8, 31, 32, 4095] {
            let mut d = data[..4096].to_vec();
            d[i] ^= 1;
            assert_ne!(sum(&d), base, "byte {i}");
        }
        assert_ne!(sum(&[0; 32]), sum(&[0; 64]));
        assert_ne!(sum(&[0; 3]), sum(&[0; 4]));
        let mut c = Checksum::new();
        c.update(&data[..1024]);
        c.update(&data[1024..4096]);
        assert_eq!(c.finish(), base);
        // Misaligned input takes the slow path and gives the same sum.
        let shifted = data[1..4097].to_vec();
        let mut c = Checksum::new();
        c.update(&data[1..4097]);
        assert_eq!(c.finish(), sum(&shifted));
        // Swapping two words is seen (lanes are not simply xored).
        let mut swapped = data[..4096].to_vec();
        swapped.swap(0, 8);
        swapped.swap(1, 9);
        assert_ne!(sum(&swapped), base);
    }
}
