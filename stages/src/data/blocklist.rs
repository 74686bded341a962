//! The unsafe-content blocklist, the heuristic half of the pretraining component of Yi-Lightning's RAISE
//! safety framework (report section 6): documents that contain listed phrases (whole words, any case)
//! at least a given number of times are dropped. The built-in list is deliberately short and names
//! clearly harmful topics; a real deployment passes its own list file (one phrase per line, `#` comments).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Phrases of the built-in list: explicit requests for, or instructions about, serious harm.
pub const BUILTIN_PHRASES: &[&str] = &[
    "child pornography",
    "child sexual abuse material",
    "how to make a pipe bomb",
    "how to build a bomb",
    "make a molotov cocktail",
    "synthesize methamphetamine",
    "cook methamphetamine",
    "make ricin",
    "nerve agent synthesis",
    "buy stolen credit cards",
    "credit card dumps for sale",
    "hire a hitman",
    "ransomware as a service",
    "ddos for hire",
    "kill yourself",
    "join the jihad",
    "white power",
    "ethnic cleansing now",
];

/// A compiled phrase list.
pub struct Blocklist {
    matcher: AhoCorasick,
    phrases: Vec<String>,
    min_hits: u64,
}

impl Blocklist {
    /// A list of phrases (matched as whole words, ignoring ASCII case) and the hits that drop a document.
    pub fn new(phrases: Vec<String>, min_hits: u64) -> Result<Self, String> {
        let phrases: Vec<String> = phrases
            .into_iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&phrases)
            .map_err(|e| format!("cannot compile the blocklist: {e}"))?;
        Ok(Self {
            matcher,
            phrases,
            min_hits: min_hits.max(1),
        })
    }

    /// The phrases of a list file: one a line, blank lines and `#` comments ignored.
    pub fn parse_list(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The number of hits and the first phrase hit, when the document reaches the limit.
    pub fn check(&self, text: &str) -> Option<(u64, &str)> {
        if self.phrases.is_empty() {
            return None;
        }
        let bytes = text.as_bytes();
        let mut hits = 0;
        let mut first = None;
        for m in self.matcher.find_iter(text) {
            let before = m.start().checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(m.end()).copied();
            let boundary =
                |b: Option<u8>| !b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            if boundary(before) && boundary(after) {
                hits += 1;
                first.get_or_insert(m.pattern().as_usize());
                if hits >= self.min_hits {
                    return first.map(|i| (hits, self.phrases[i].as_str()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_any_case() {
        let list = Blocklist::new(vec!["bad phrase".into(), "evil".into()], 1).unwrap();
        assert_eq!(
            list.check("This has a BAD Phrase in it"),
            Some((1, "bad phrase"))
        );
        assert_eq!(list.check("devilish but not evil-free?"), Some((1, "evil")));
        assert_eq!(list.check("devilish medieval text"), None);
    }

    #[test]
    fn hit_threshold() {
        let list = Blocklist::new(vec!["spam".into()], 3).unwrap();
        assert_eq!(list.check("spam spam"), None);
        assert_eq!(list.check("spam spam and spam"), Some((3, "spam")));
    }

    #[test]
    fn list_files_and_builtin() {
        assert_eq!(
            Blocklist::parse_list("# comment\n\n one \ntwo words\n"),
            ["one", "two words"]
        );
        let builtin =
            Blocklist::new(BUILTIN_PHRASES.iter().map(|s| (*s).to_owned()).collect(), 1).unwrap();
        assert!(
            builtin
                .check("Here is how to build a bomb at home")
                .is_some()
        );
        assert!(builtin.check("The bombastic builder made a home").is_none());
    }
}
