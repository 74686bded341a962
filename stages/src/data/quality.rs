//! Document-level quality heuristics after Gopher (Rae et al. 2021, appendix A.1.1) and C4: word counts,
//! mean word length, symbol, digit and alphabetic ratios, bullet and ellipsis lines, and stop-word
//! presence. Each bound is optional; [`QualityRules::gopher`] sets the paper's values.

use serde::{Deserialize, Serialize};

use crate::data::Rejection;

/// The English stop words Gopher requires at least two of.
pub const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

const BULLETS: [char; 7] = ['•', '-', '*', '‣', '⁃', '◦', '▪'];

/// Quality bounds; `None` turns a rule off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QualityRules {
    pub min_words: Option<u64>,
    pub max_words: Option<u64>,
    /// Bounds on the mean length (in characters) of words that are not pure punctuation.
    pub mean_word_length: Option<(f64, f64)>,
    /// Most `#` and ellipses per word.
    pub symbol_ratio: Option<f64>,
    /// Largest share of digits among non-space characters.
    pub digit_ratio: Option<f64>,
    /// Largest share of lines that start with a bullet.
    pub bullet_lines: Option<f64>,
    /// Largest share of lines that end with an ellipsis.
    pub ellipsis_lines: Option<f64>,
    /// Smallest share of words with at least one letter.
    pub alpha_words: Option<f64>,
    /// Fewest distinct [`STOP_WORDS`] a document must contain.
    pub stop_words: Option<u64>,
}

impl QualityRules {
    /// The Gopher paper's thresholds (digit ratio is ours and stays off).
    pub fn gopher() -> Self {
        Self {
            min_words: Some(50),
            max_words: Some(100_000),
            mean_word_length: Some((3.0, 10.0)),
            symbol_ratio: Some(0.1),
            digit_ratio: None,
            bullet_lines: Some(0.9),
            ellipsis_lines: Some(0.3),
            alpha_words: Some(0.8),
            stop_words: Some(2),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The first rule the text breaks, if any.
    pub fn check(&self, text: &str) -> Result<(), Rejection> {
        if self.is_empty() {
            return Ok(());
        }
        let mut words = 0u64;
        let mut content_words = 0u64;
        let mut content_chars = 0u64;
        let mut alpha_words = 0u64;
        let mut symbols = 0u64;
        let mut stop_seen = [false; STOP_WORDS.len()];
        for word in text.split_whitespace() {
            words += 1;
            let mut has_alpha = false;
            let mut has_content = false;
            let mut chars = 0u64;
            for c in word.chars() {
                chars += 1;
                has_alpha |= c.is_alphabetic();
                has_content |= !c.is_ascii_punctuation() && !is_unicode_punctuation(c);
            }
            if has_content {
                content_words += 1;
                content_chars += chars;
            }
            alpha_words += u64::from(has_alpha);
            symbols += word.matches('#').count() as u64
                + word.matches("...").count() as u64
                + word.matches('…').count() as u64;
            if self.stop_words.is_some()
                && word.len() <= 4
                && let Some(i) = STOP_WORDS.iter().position(|s| s.eq_ignore_ascii_case(word))
            {
                stop_seen[i] = true;
            }
        }
        if let Some(min) = self.min_words
            && content_words < min
        {
            return Err(Rejection::new(
                "min-words",
                format!("{content_words} words < {min}"),
            ));
        }
        if let Some(max) = self.max_words
            && content_words > max
        {
            return Err(Rejection::new(
                "max-words",
                format!("{content_words} words > {max}"),
            ));
        }
        if let Some((lo, hi)) = self.mean_word_length {
            let mean = if content_words == 0 {
                0.0
            } else {
                content_chars as f64 / content_words as f64
            };
            if mean < lo || mean > hi {
                return Err(Rejection::new(
                    "mean-word-length",
                    format!("mean word length {mean:.2} outside {lo}..{hi}"),
                ));
            }
        }
        if let Some(max) = self.symbol_ratio {
            let ratio = ratio(symbols, words);
            if ratio > max {
                return Err(Rejection::new(
                    "symbol-ratio",
                    format!("{ratio:.3} symbols per word > {max}"),
                ));
            }
        }
        if let Some(max) = self.digit_ratio {
            let (digits, chars) = text
                .chars()
                .filter(|c| !c.is_whitespace())
                .fold((0u64, 0u64), |(d, n), c| {
                    (d + u64::from(c.is_numeric()), n + 1)
                });
            let ratio = ratio(digits, chars);
            if ratio > max {
                return Err(Rejection::new(
                    "digit-ratio",
                    format!("{ratio:.3} of characters are digits > {max}"),
                ));
            }
        }
        if self.bullet_lines.is_some() || self.ellipsis_lines.is_some() {
            let (mut lines, mut bullets, mut ellipses) = (0u64, 0u64, 0u64);
            for line in text.lines() {
                lines += 1;
                bullets += u64::from(line.trim_start().starts_with(BULLETS));
                let end = line.trim_end();
                ellipses += u64::from(end.ends_with("...") || end.ends_with('…'));
            }
            if let Some(max) = self.bullet_lines
                && ratio(bullets, lines) > max
            {
                return Err(Rejection::new(
                    "bullet-lines",
                    format!("{bullets} of {lines} lines start with a bullet"),
                ));
            }
            if let Some(max) = self.ellipsis_lines
                && ratio(ellipses, lines) > max
            {
                return Err(Rejection::new(
                    "ellipsis-lines",
                    format!("{ellipses} of {lines} lines end with an ellipsis"),
                ));
            }
        }
        if let Some(min) = self.alpha_words {
            let ratio = ratio(alpha_words, words);
            if ratio < min {
                return Err(Rejection::new(
                    "alpha-words",
                    format!("{ratio:.3} of words have a letter < {min}"),
                ));
            }
        }
        if let Some(min) = self.stop_words {
            let seen = stop_seen.iter().filter(|s| **s).count() as u64;
            if seen < min {
                return Err(Rejection::new(
                    "stop-words",
                    format!("{seen} distinct stop words < {min}"),
                ));
            }
        }
        Ok(())
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn is_unicode_punctuation(c: char) -> bool {
    !c.is_ascii()
        && !c.is_alphanumeric()
        && !c.is_whitespace()
        && matches!(c, '\u{2000}'..='\u{206F}' | '\u{3000}'..='\u{303F}' | '\u{FF00}'..='\u{FF0F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "The quick brown fox jumps over the lazy dog and then it runs to the river with the other \
        animals of the forest. That is what foxes have always done, and they will keep doing it for as long \
        as there are rivers to reach and dogs to jump over in the warm afternoon light of the summer.";

    fn rule_of(rules: &QualityRules, text: &str) -> Option<&'static str> {
        rules.check(text).err().map(|r| r.rule)
    }

    #[test]
    fn gopher_keeps_ordinary_prose() {
        assert_eq!(rule_of(&QualityRules::gopher(), GOOD), None);
    }

    #[test]
    fn each_rule_fires_on_its_own_problem() {
        let g = QualityRules::gopher();
        assert_eq!(rule_of(&g, "the cat and the dog"), Some("min-words"));
        let long_words = format!("{GOOD} {}", "incomprehensibilities ".repeat(200));
        assert_eq!(rule_of(&g, &long_words), Some("mean-word-length"));
        let hashes = format!("{GOOD} {}", "#tag ".repeat(30));
        assert_eq!(rule_of(&g, &hashes), Some("symbol-ratio"));
        let bullets = format!("{}\n{GOOD}", "- item one is here and\n".repeat(20));
        assert_eq!(rule_of(&g, &bullets), Some("bullet-lines"));
        let ellipses = format!("{GOOD}\n{}", "and so it went on...\n".repeat(5));
        assert_eq!(rule_of(&g, &ellipses), Some("ellipsis-lines"));
        let numbers = format!("{GOOD} {}", "12 ".repeat(40));
        assert_eq!(rule_of(&g, &numbers), Some("alpha-words"));
        let no_stop = "cats dogs birds fish ".repeat(20);
        assert_eq!(rule_of(&g, &no_stop), Some("stop-words"));
        let max = QualityRules {
            max_words: Some(10),
            ..QualityRules::default()
        };
        assert_eq!(rule_of(&max, GOOD), Some("max-words"));
        let digits = QualityRules {
            digit_ratio: Some(0.2),
            ..QualityRules::default()
        };
        assert_eq!(rule_of(&digits, "call 12345678 now"), Some("digit-ratio"));
        assert_eq!(rule_of(&digits, GOOD), None);
    }

    #[test]
    fn no_rules_keep_everything() {
        assert_eq!(rule_of(&QualityRules::default(), ""), None);
    }
}
