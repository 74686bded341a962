//! `MinHash` near-duplicate detection (Broder 1997) with LSH banding: documents whose word-shingle sets
//! have a Jaccard similarity above a threshold share, with high probability, at least one band of their
//! signatures. Bands and rows are chosen for the threshold the way datasketch does (minimising the
//! equally weighted false-positive and false-negative areas).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::data::{HashSet64, mix64, ngram_hashes, sequence_hash};

/// `MinHash` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinHashParams {
    /// Jaccard similarity above which two documents count as near-duplicates.
    pub threshold: f64,
    /// Words per shingle.
    pub ngram: usize,
    /// Hash functions per signature.
    pub permutations: usize,
    pub bands: usize,
    pub rows: usize,
}

impl MinHashParams {
    /// Settings for a threshold, with bands and rows chosen for it.
    pub fn new(threshold: f64, ngram: usize, permutations: usize) -> Self {
        let (bands, rows) = optimal_bands(threshold, permutations);
        Self {
            threshold,
            ngram,
            permutations,
            bands,
            rows,
        }
    }
}

/// Probability that two documents of Jaccard similarity `s` share a band.
fn collision_probability(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    const STEPS: usize = 200;
    let h = (b - a) / STEPS as f64;
    (0..STEPS).map(|i| f(a + (i as f64 + 0.5) * h)).sum::<f64>() * h
}

/// (bands, rows) with bands * rows <= permutations minimising false positives plus false negatives.
pub fn optimal_bands(threshold: f64, permutations: usize) -> (usize, usize) {
    let mut best = (f64::INFINITY, 1, 1);
    for bands in 1..=permutations {
        for rows in 1..=permutations / bands {
            let fp = integrate(|s| collision_probability(s, bands, rows), 0.0, threshold);
            let fn_ = integrate(
                |s| 1.0 - collision_probability(s, bands, rows),
                threshold,
                1.0,
            );
            let error = 0.5 * fp + 0.5 * fn_;
            if error < best.0 {
                best = (error, bands, rows);
            }
        }
    }
    (best.1, best.2)
}

/// Computes signatures and remembers the bands of every document seen.
pub struct MinHashDedup {
    params: MinHashParams,
    /// Multiply-shift hash functions (Dietzfelbinger et al.): `(a * x + b) >> 32`, `a` odd.
    a: Vec<u64>,
    b: Vec<u64>,
    bands: Vec<HashSet64>,
}

impl MinHashDedup {
    pub fn new(params: MinHashParams, seed: u64) -> Self {
        let mut state = mix64(seed ^ 0x5eed_0f4d);
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(state)
        };
        let a = (0..params.permutations).map(|_| next() | 1).collect();
        let b = (0..params.permutations).map(|_| next()).collect();
        Self {
            params,
            a,
            b,
            bands: vec![HashSet64::default(); params.bands],
        }
    }

    pub fn params(&self) -> &MinHashParams {
        &self.params
    }

    /// The signature of a document given its normalised word hashes. A document shorter than one
    /// shingle is one shingle of all its words.
    pub fn signature(&self, words: &[u64]) -> Vec<u32> {
        let mut shingles = Vec::with_capacity(words.len());
        if words.len() < self.params.ngram {
            if !words.is_empty() {
                shingles.push(sequence_hash(words));
            }
        } else {
            ngram_hashes(words, self.params.ngram, &mut shingles);
        }
        shingles.sort_unstable();
        shingles.dedup();
        let mut sig = vec![u32::MAX; self.params.permutations];
        for &x in &shingles {
            for ((min, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *min = (*min).min(v);
            }
        }
        sig
    }

    /// Records the document's bands; true when no earlier document shared any of them (keep it).
    /// The bands of a duplicate are recorded too, so chains of near-duplicates collapse to the first.
    pub fn insert(&mut self, signature: &[u32]) -> bool {
        let rows = self.params.rows;
        let mut new = true;
        for (band, table) in self.bands.iter_mut().enumerate() {
            let slice = &signature[band * rows..(band + 1) * rows];
            let mut bytes = Vec::with_capacity(rows * 4 + 8);
            bytes.extend_from_slice(&(band as u64).to_le_bytes());
            for v in slice {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            if !table.insert(xxh3_64(&bytes)) {
                new = false;
            }
        }
        new
    }
}

/// Exact Jaccard estimate from two signatures, for tests and diagnostics.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::normalized_word_hashes;

    fn words(text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        normalized_word_hashes(text, &mut out);
        out
    }

    #[test]
    fn bands_follow_the_threshold() {
        let (b, r) = optimal_bands(0.8, 128);
        assert!(b * r <= 128);
        // The S-curve's midpoint (1/b)^(1/r) sits near the threshold.
        let mid = (1.0 / b as f64).powf(1.0 / r as f64);
        assert!((mid - 0.8).abs() < 0.1, "b={b} r={r} mid={mid}");
        let (b5, r5) = optimal_bands(0.5, 128);
        assert!((1.0 / b5 as f64).powf(1.0 / r5 as f64) < mid);
    }

    #[test]
    fn near_duplicates_are_caught_and_different_texts_are_not() {
        let base = (0..300)
            .map(|i| format!("word{}", (i * 7919) % 1000))
            .collect::<Vec<_>>()
            .join(" ");
        let mut near = base.clone();
        near.push_str(" one small change at the end");
        let other = (0..300)
            .map(|i| format!("token{}", (i * 104_729) % 997))
            .collect::<Vec<_>>()
            .join(" ");
        let mut dedup = MinHashDedup::new(MinHashParams::new(0.8, 5, 128), 1);
        let (s1, s2, s3) = (
            dedup.signature(&words(&base)),
            dedup.signature(&words(&near)),
            dedup.signature(&words(&other)),
        );
        assert!(estimated_jaccard(&s1, &s2) > 0.9);
        assert!(estimated_jaccard(&s1, &s3) < 0.1);
        assert!(dedup.insert(&s1));
        assert!(!dedup.insert(&s2), "near-duplicate kept");
        assert!(dedup.insert(&s3), "different text removed");
    }

    #[test]
    fn short_and_empty_documents_have_signatures() {
        let dedup = MinHashDedup::new(MinHashParams::new(0.8, 5, 16), 1);
        assert_eq!(dedup.signature(&words("two words")).len(), 16);
        assert!(dedup.signature(&[]).iter().all(|&v| v == u32::MAX));
    }
}
