//! Decontamination against evaluation sets: a document that shares any n-gram of normalised words
//! (default 30, as in the Yi-Lightning report, section 2) with an eval text is dropped. JSON Lines eval
//! files contribute every string value of every record, each on its own; any other file is one text.
//! Eval texts shorter than n words cannot be matched this way and are counted, so a user sees it.

use std::path::Path;

use serde_json::Value;

use crate::data::{
    DataError, HashMap64, Line, LineReader, is_jsonl_name, ngram_hashes, normalized_word_hashes,
};

/// The n-grams of a set of eval files.
pub struct Decontaminator {
    ngram: usize,
    /// n-gram hash -> index of the first eval file it came from.
    grams: HashMap64<u32>,
    files: Vec<String>,
    texts: u64,
    short_texts: u64,
}

impl Decontaminator {
    pub fn new(ngram: usize) -> Self {
        Self {
            ngram: ngram.max(1),
            grams: HashMap64::default(),
            files: Vec::new(),
            texts: 0,
            short_texts: 0,
        }
    }

    /// Adds an eval file, known in stats as `label`.
    pub fn add_file(&mut self, path: &Path, label: String) -> Result<(), DataError> {
        let index = self.files.len() as u32;
        self.files.push(label);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reader = LineReader::open(path, 1 << 30)?;
        if is_jsonl_name(&name) {
            while let Some(line) = reader.next_line()? {
                let (number, text) = match line {
                    Line::Text { number, text } => (number, text),
                    Line::Bad { number, reason } => {
                        return Err(DataError::Malformed {
                            path: path.to_path_buf(),
                            line: number,
                            reason,
                        });
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                let record: Value =
                    serde_json::from_str(&text).map_err(|e| DataError::Malformed {
                        path: path.to_path_buf(),
                        line: number,
                        reason: format!("not JSON ({e})"),
                    })?;
                self.add_value(&record, index);
            }
        } else {
            let mut words = Vec::new();
            while let Some(line) = reader.next_line()? {
                match line {
                    Line::Text { text, .. } => normalized_word_hashes(&text, &mut words),
                    Line::Bad { number, reason } => {
                        return Err(DataError::Malformed {
                            path: path.to_path_buf(),
                            line: number,
                            reason,
                        });
                    }
                }
            }
            self.add_words(&words, index);
        }
        Ok(())
    }

    fn add_value(&mut self, value: &Value, file: u32) {
        match value {
            Value::String(text) => self.add_text(text, file),
            Value::Array(items) => items.iter().for_each(|v| self.add_value(v, file)),
            Value::Object(map) => map.values().for_each(|v| self.add_value(v, file)),
            _ => {}
        }
    }

    /// Adds one eval text belonging to file number `file`.
    pub fn add_text(&mut self, text: &str, file: u32) {
        let mut words = Vec::new();
        normalized_word_hashes(text, &mut words);
        self.add_words(&words, file);
    }

    fn add_words(&mut self, words: &[u64], file: u32) {
        if words.is_empty() {
            return;
        }
        self.texts += 1;
        if words.len() < self.ngram {
            self.short_texts += 1;
            return;
        }
        let mut grams = Vec::with_capacity(words.len());
        ngram_hashes(words, self.ngram, &mut grams);
        for g in grams {
            self.grams.entry(g).or_insert(file);
        }
    }

    /// The label of an eval file the document (its normalised word hashes) shares an n-gram with.
    pub fn check(&self, words: &[u64]) -> Option<&str> {
        if words.len() < self.ngram || self.grams.is_empty() {
            return None;
        }
        let mut grams = Vec::with_capacity(words.len());
        ngram_hashes(words, self.ngram, &mut grams);
        grams
            .iter()
            .find_map(|g| self.grams.get(g))
            .map(|&i| self.files[i as usize].as_str())
    }

    pub fn ngram(&self) -> usize {
        self.ngram
    }

    /// Distinct n-grams known.
    pub fn ngrams(&self) -> usize {
        self.grams.len()
    }

    /// Eval texts read, and how many of them were too short to match.
    pub fn texts(&self) -> (u64, u64) {
        (self.texts, self.short_texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        normalized_word_hashes(text, &mut out);
        out
    }

    #[test]
    fn documents_quoting_an_eval_text_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval.jsonl");
        std::fs::write(
            &eval,
            "{\"question\": \"Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.\", \"n\": 1}\n\
             {\"turns\": [\"short one\"]}\n",
        )
        .unwrap();
        let mut d = Decontaminator::new(8);
        d.add_file(&eval, "eval.jsonl".into()).unwrap();
        assert_eq!(d.texts(), (2, 1));
        let quoted =
            "A blog post: natalia SOLD clips to 48 of her friends in april!! What a story.";
        assert_eq!(d.check(&words(quoted)), Some("eval.jsonl"));
        assert_eq!(
            d.check(&words(
                "Natalia sold clips to friends, a different story about April and May."
            )),
            None
        );
    }

    #[test]
    fn plain_text_evals_span_lines_and_bad_json_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("eval.txt");
        std::fs::write(&txt, "one two three\nfour five six").unwrap();
        let mut d = Decontaminator::new(4);
        d.add_file(&txt, "eval.txt".into()).unwrap();
        assert_eq!(d.check(&words("x three four five six y")), Some("eval.txt"));
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"a\": \"b\"}\n{oops\n").unwrap();
        let err = d
            .add_file(&bad, "bad.jsonl".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.jsonl:2"), "{err}");
    }
}
