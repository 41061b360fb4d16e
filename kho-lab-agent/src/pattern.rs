//! The deterministic content of every memfd: a function of the session
//! name, the token, the byte offset and the phase that wrote it.

/// The seed of one memfd's pattern.
pub fn seed(session: &str, token: u64, phase: u32) -> u64 {
    // FNV-1a over the session name, then the token and phase mixed in.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ token.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(phase) << 56)
}

/// The seed of a `reserve_mem` region's contents (producer scenario).
pub fn region_seed(name: &str) -> u64 {
    seed(&format!("reserve:{name}"), 0, 0)
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finalizer.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern bytes at file offsets `offset..offset + buf.len()`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let at = offset + i as u64;
        let word = mix(seed ^ (at / 8));
        // PANICS: `at % 8` is below 8, the length of the array.
        *b = word.to_le_bytes()[(at % 8) as usize];
    }
}

/// The first offset in `buf` (file offset `offset`) that differs from the pattern.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut expect = vec![0u8; buf.len()];
    fill(seed, offset, &mut expect);
    buf.iter().zip(&expect).position(|(a, b)| a != b).map(|i| offset + i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_depends_on_every_input() {
        let base = seed("lab0-s0", 1, 0);
        assert_ne!(base, seed("lab0-s1", 1, 0));
        assert_ne!(base, seed("lab0-s0", 2, 0));
        assert_ne!(base, seed("lab0-s0", 1, 1));
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill(base, 0, &mut a);
        fill(base, 64, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn fill_is_position_independent() {
        let s = seed("x", 3, 1);
        let mut whole = [0u8; 100];
        fill(s, 0, &mut whole);
        let mut tail = [0u8; 37];
        fill(s, 63, &mut tail);
        assert_eq!(&whole[63..], &tail[..]);
        assert_eq!(first_mismatch(s, 63, &tail), None);
        tail[5] ^= 1;
        assert_eq!(first_mismatch(s, 63, &tail), Some(68));
    }
}
