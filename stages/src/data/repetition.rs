//! Repetition heuristics after Gopher (Rae et al. 2021, table A1): documents made of repeated lines,
//! paragraphs or word n-grams are boilerplate or spam. Ratios are of the document's bytes, as datatrove
//! computes them of its characters.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::data::{HashMap64, HashSet64, Rejection, sequence_hash};

/// A bound on an n-gram statistic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NgramLimit {
    pub n: usize,
    pub max: f64,
}

/// Repetition bounds; `None` or an empty list turns a rule off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepetitionRules {
    /// Largest share of lines that repeat an earlier line.
    pub dup_lines: Option<f64>,
    /// Largest share of bytes in repeated lines.
    pub dup_line_chars: Option<f64>,
    pub dup_paragraphs: Option<f64>,
    pub dup_paragraph_chars: Option<f64>,
    /// Largest share of bytes covered by the most frequent n-gram, per n.
    pub top_ngrams: Vec<NgramLimit>,
    /// Largest share of bytes in n-grams that repeat an earlier one, per n.
    pub dup_ngrams: Vec<NgramLimit>,
}

impl RepetitionRules {
    /// Gopher's thresholds.
    pub fn gopher() -> Self {
        Self {
            dup_lines: Some(0.3),
            dup_line_chars: Some(0.2),
            dup_paragraphs: Some(0.3),
            dup_paragraph_chars: Some(0.2),
            top_ngrams: Self::gopher_top_ngrams(),
            dup_ngrams: Self::gopher_dup_ngrams(),
        }
    }

    pub fn gopher_top_ngrams() -> Vec<NgramLimit> {
        vec![
            NgramLimit { n: 2, max: 0.2 },
            NgramLimit { n: 3, max: 0.18 },
            NgramLimit { n: 4, max: 0.16 },
        ]
    }

    pub fn gopher_dup_ngrams() -> Vec<NgramLimit> {
        [
            (5, 0.15),
            (6, 0.14),
            (7, 0.13),
            (8, 0.12),
            (9, 0.11),
            (10, 0.10),
        ]
        .into_iter()
        .map(|(n, max)| NgramLimit { n, max })
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The first rule the text breaks, if any.
    pub fn check(&self, text: &str) -> Result<(), Rejection> {
        if self.is_empty() || text.is_empty() {
            return Ok(());
        }
        let total = text.len() as f64;
        if self.dup_paragraphs.is_some() || self.dup_paragraph_chars.is_some() {
            let paragraphs = text
                .trim()
                .split("\n\n")
                .map(|p| p.trim_matches('\n'))
                .filter(|p| !p.is_empty());
            let (count, dups, dup_bytes) = duplicates(paragraphs);
            if let Some(max) = self.dup_paragraphs
                && dups as f64 / count.max(1) as f64 > max
            {
                return Err(Rejection::new(
                    "repeated-paragraphs",
                    format!("{dups} of {count} paragraphs repeat"),
                ));
            }
            if let Some(max) = self.dup_paragraph_chars
                && dup_bytes as f64 / total > max
            {
                return Err(Rejection::new(
                    "repeated-paragraphs",
                    format!(
                        "{:.3} of bytes in repeated paragraphs",
                        dup_bytes as f64 / total
                    ),
                ));
            }
        }
        if self.dup_lines.is_some() || self.dup_line_chars.is_some() {
            let (count, dups, dup_bytes) = duplicates(text.split('\n').filter(|l| !l.is_empty()));
            if let Some(max) = self.dup_lines
                && dups as f64 / count.max(1) as f64 > max
            {
                return Err(Rejection::new(
                    "repeated-lines",
                    format!("{dups} of {count} lines repeat"),
                ));
            }
            if let Some(max) = self.dup_line_chars
                && dup_bytes as f64 / total > max
            {
                return Err(Rejection::new(
                    "repeated-lines",
                    format!("{:.3} of bytes in repeated lines", dup_bytes as f64 / total),
                ));
            }
        }
        if self.top_ngrams.is_empty() && self.dup_ngrams.is_empty() {
            return Ok(());
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let hashes: Vec<u64> = words.iter().map(|w| xxh3_64(w.as_bytes())).collect();
        let lens: Vec<usize> = words.iter().map(|w| w.len()).collect();
        for limit in &self.top_ngrams {
            if words.len() < limit.n {
                continue;
            }
            let mut counts: HashMap64<(u32, usize)> = HashMap64::default();
            counts.reserve(words.len());
            for i in 0..=words.len() - limit.n {
                let entry = counts
                    .entry(sequence_hash(&hashes[i..i + limit.n]))
                    .or_insert((0, i));
                entry.0 += 1;
            }
            // The most frequent n-gram; ties go to the longest, as any of them may be "the" top one.
            let top = counts
                .values()
                .map(|&(count, start)| {
                    let len: usize =
                        lens[start..start + limit.n].iter().sum::<usize>() + limit.n - 1;
                    (count, count as usize * len)
                })
                .max()
                .map_or(0, |(_, bytes)| bytes);
            let share = top as f64 / total;
            if share > limit.max {
                return Err(Rejection::new(
                    "repeated-ngrams",
                    format!(
                        "top {}-gram covers {share:.3} of bytes > {}",
                        limit.n, limit.max
                    ),
                ));
            }
        }
        for limit in &self.dup_ngrams {
            let share = duplicate_ngram_bytes(&hashes, &lens, limit.n) as f64 / total;
            if share > limit.max {
                return Err(Rejection::new(
                    "repeated-ngrams",
                    format!(
                        "repeated {}-grams cover {share:.3} of bytes > {}",
                        limit.n, limit.max
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// (elements, repeated elements, bytes in repeated elements).
fn duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (u64, u64, u64) {
    let mut seen = HashSet64::default();
    let (mut count, mut dups, mut bytes) = (0, 0, 0);
    for item in items {
        count += 1;
        if !seen.insert(xxh3_64(item.as_bytes())) {
            dups += 1;
            bytes += item.len() as u64;
        }
    }
    (count, dups, bytes)
}

/// Bytes of n-grams that repeat an earlier one, skipping past each repeat so overlaps count once.
fn duplicate_ngram_bytes(hashes: &[u64], lens: &[usize], n: usize) -> usize {
    let mut seen = HashSet64::default();
    let mut bytes = 0;
    let mut i = 0;
    while i + n <= hashes.len() {
        if seen.insert(sequence_hash(&hashes[i..i + n])) {
            i += 1;
        } else {
            bytes += lens[i..i + n].iter().sum::<usize>();
            i += n;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, \
        his chin nuzzled into his breast in an effort to escape the vile wind, slipped quickly through the glass \
        doors of Victory Mansions, though not quickly enough to prevent a swirl of gritty dust from entering.";

    fn rule_of(text: &str) -> Option<&'static str> {
        RepetitionRules::gopher().check(text).err().map(|r| r.rule)
    }

    #[test]
    fn prose_passes() {
        assert_eq!(rule_of(PROSE), None);
        assert_eq!(rule_of(""), None);
    }

    #[test]
    fn repeated_lines_and_paragraphs_fail() {
        let lines = format!("{PROSE}\nclick here\nclick here\nclick here\nbuy now");
        assert_eq!(rule_of(&lines), Some("repeated-lines"));
        let paragraphs = format!("{PROSE}\n\nsubscribe\n\nsubscribe\n\nsubscribe\n\nsubscribe");
        assert_eq!(rule_of(&paragraphs), Some("repeated-paragraphs"));
    }

    #[test]
    fn repeated_ngrams_fail() {
        let top = format!("{PROSE} {}", "buy cheap pills ".repeat(30));
        assert_eq!(rule_of(&top), Some("repeated-ngrams"));
        let dup = RepetitionRules {
            dup_ngrams: RepetitionRules::gopher_dup_ngrams(),
            ..RepetitionRules::default()
        };
        let text = format!("{PROSE} {PROSE}");
        assert_eq!(
            dup.check(&text).err().map(|r| r.rule),
            Some("repeated-ngrams")
        );
        assert!(dup.check(PROSE).is_ok());
    }

    #[test]
    fn duplicate_ngram_bytes_counts_each_repeat_once() {
        // a b c a b c: the second "a b c" repeats the first 3-gram.
        let hashes: Vec<u64> = [1, 2, 3, 1, 2, 3]
            .iter()
            .map(|&x| crate::data::mix64(x))
            .collect();
        assert_eq!(duplicate_ngram_bytes(&hashes, &[1; 6], 3), 3);
    }
}
