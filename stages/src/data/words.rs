//! Normalised words for the rules that compare texts (near-dedup, decontamination): lowercase runs of
//! letters and digits, with punctuation and spacing ignored, and every CJK character a word of its own
//! because those scripts do not separate words by spaces.

use xxhash_rust::xxh3::xxh3_64;

/// True for characters of scripts written without spaces between words (Han, kana).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF        // hiragana, katakana
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // compatibility ideographs
        | 0x20000..=0x3FFFF) // extensions B and later
}

/// Appends the hash of every normalised word of `text` to `out`.
pub fn normalized_word_hashes(text: &str, out: &mut Vec<u64>) {
    let mut word = String::with_capacity(32);
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                word.push(c.to_ascii_lowercase());
            } else if !word.is_empty() {
                out.push(xxh3_64(word.as_bytes()));
                word.clear();
            }
        } else if is_cjk(c) {
            if !word.is_empty() {
                out.push(xxh3_64(word.as_bytes()));
                word.clear();
            }
            let mut buf = [0u8; 4];
            out.push(xxh3_64(c.encode_utf8(&mut buf).as_bytes()));
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(xxh3_64(word.as_bytes()));
            word.clear();
        }
    }
    if !word.is_empty() {
        out.push(xxh3_64(word.as_bytes()));
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
    fn case_punctuation_and_spacing_do_not_matter() {
        assert_eq!(
            words("Hello, World!  It's 42."),
            words("hello world it s 42")
        );
        assert_eq!(words("Ünïcode  Straße").len(), 2);
        assert_ne!(words("hello world"), words("hello word"));
    }

    #[test]
    fn cjk_characters_are_words_of_their_own() {
        assert_eq!(words("床前明月光").len(), 5);
        assert_eq!(
            words("Rust 语言"),
            vec![
                xxh3_64(b"rust"),
                xxh3_64("语".as_bytes()),
                xxh3_64("言".as_bytes())
            ]
        );
    }
}
