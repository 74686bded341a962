//! Hashing helpers shared by the filter rules: sets and maps keyed by hashes that are already random
//! (so hashing them again would be wasted work), and rolling hashes of word n-grams.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are already uniformly distributed 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are expected; fold anything else in so the hasher stays correct.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of 64-bit hashes.
pub type HashSet64 = HashSet<u64, BuildHasherDefault<IdentityHasher>>;
/// A map keyed by 64-bit hashes.
pub type HashMap64<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// The splitmix64 finaliser: spreads every input bit over every output bit.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const BASE: u64 = 0x100_0000_01b3 | 1;

/// Appends the hash of every window of `n` consecutive word hashes (a polynomial rolling hash, mixed).
/// A text shorter than `n` words yields nothing.
pub fn ngram_hashes(words: &[u64], n: usize, out: &mut Vec<u64>) {
    if n == 0 || words.len() < n {
        return;
    }
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(BASE));
    let mut h = 0u64;
    for &w in &words[..n] {
        h = h.wrapping_mul(BASE).wrapping_add(w);
    }
    out.push(mix64(h));
    for i in n..words.len() {
        h = h
            .wrapping_sub(words[i - n].wrapping_mul(top))
            .wrapping_mul(BASE)
            .wrapping_add(words[i]);
        out.push(mix64(h));
    }
}

/// The hash of one short sequence of word hashes, equal to the matching [`ngram_hashes`] window.
pub fn sequence_hash(words: &[u64]) -> u64 {
    mix64(
        words
            .iter()
            .fold(0u64, |h, &w| h.wrapping_mul(BASE).wrapping_add(w)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_windows_equal_direct_hashes() {
        let words: Vec<u64> = (0..20).map(|i| mix64(i * 7 + 1)).collect();
        let mut rolled = Vec::new();
        ngram_hashes(&words, 5, &mut rolled);
        assert_eq!(rolled.len(), 16);
        for (i, h) in rolled.iter().enumerate() {
            assert_eq!(*h, sequence_hash(&words[i..i + 5]));
        }
        let mut none = Vec::new();
        ngram_hashes(&words[..4], 5, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn identity_sets_work() {
        let mut set = HashSet64::default();
        assert!(set.insert(mix64(1)));
        assert!(!set.insert(mix64(1)));
        assert!(set.contains(&mix64(1)) && !set.contains(&mix64(2)));
    }
}
