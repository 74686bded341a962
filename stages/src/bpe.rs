//! The `bpe` kind: trains a byte-pair-encoding tokenizer with the Hugging Face `tokenizers` crate and
//! writes a `tokenizer.json` that the Python `tokenizers` package loads and encodes identically.
//!
//! ```kdl
//! stage tokenizer kind=bpe {
//!     input clean                 // document stages to train on
//!     vocab 4096                  // vocabulary size, special and byte tokens included (default 32000;
//!                                 //   Yi uses 100,352)
//!     split-digits #true          // every digit a token of its own, as in Yi (default #true)
//!     byte-fallback #true         // characters outside the vocabulary become <0xNN> byte tokens, so no
//!                                 //   text is ever unknown (default #true; #false uses <unk>)
//!     min-frequency 2             // fewest occurrences of a pair to merge (default 2)
//!     max-alphabet 1000           // most distinct characters kept as base tokens; rarer ones fall back
//!                                 //   to bytes (default a quarter of the vocabulary)
//!     special-tokens "<|tool|>"   // extra special tokens after the built-in ones
//!     max-bytes "1G"              // train on at most this much text (default: all of it)
//! }
//! ```
//! Built-in special tokens, in id order: `<|pad|>`, `<|startoftext|>`, `<|endoftext|>` (documents),
//! `<|im_start|>`, `<|im_end|>`, `<|system|>`, `<|user|>`, `<|assistant|>` (chat roles). Then, with
//! byte fallback, the 256 byte tokens, then the learned tokens.
//!
//! Pre-tokenization splits like Llama 3's pattern (letters with one leading non-letter, single digits,
//! punctuation runs, newlines, spaces) without a byte-level mapping, so tokens read as text; there is no
//! normalisation, so decode(encode(x)) == x. Artifact: `tokenizer.json` and `stats.json`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior, Tokenizer};
use yiflow_dsl::{NodeExt, RecipeError, Sink, StageDecl};
use yiflow_engine::{DecodeCx, ExecError, Launch, Stage, StageIo};

use crate::data::{DataError, Document, DocumentFiles};

/// The tokenizer file of a `bpe` artifact.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const PAD: &str = "<|pad|>";
pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
/// Special tokens every trained tokenizer has, in id order.
pub const SPECIAL_TOKENS: [&str; 8] = [
    PAD,
    BOS,
    EOS,
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
];
const UNK: &str = "<unk>";

/// Pre-tokenizer pattern: Llama 3's, with `\p{N}` for single digits instead of runs of up to three.
fn pattern(split_digits: bool) -> String {
    let digits = if split_digits {
        r"\p{N}"
    } else {
        r"\p{N}{1,3}"
    };
    format!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
}

/// `stage NAME kind=bpe { input ...; vocab N; split-digits #true; byte-fallback #true }`
pub struct Bpe;

/// Canonical parameters of a bpe stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BpeParams {
    pub vocab: usize,
    pub split_digits: bool,
    pub byte_fallback: bool,
    pub min_frequency: u64,
    pub max_alphabet: usize,
    pub special_tokens: Vec<String>,
    pub max_bytes: Option<u64>,
}

impl BpeParams {
    /// Defaults for a vocabulary size.
    pub fn new(vocab: usize) -> Self {
        Self {
            vocab,
            split_digits: true,
            byte_fallback: true,
            min_frequency: 2,
            max_alphabet: vocab / 4,
            special_tokens: SPECIAL_TOKENS.iter().map(|s| (*s).to_owned()).collect(),
            max_bytes: None,
        }
    }

    /// Tokens that are not learned: special tokens and, with byte fallback, the 256 byte tokens.
    pub fn reserved(&self) -> usize {
        self.special_tokens.len() + if self.byte_fallback { 256 } else { 1 }
    }
}

/// stats.json of a bpe stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BpeStats {
    pub vocab_size: usize,
    pub requested_vocab: usize,
    pub docs: u64,
    pub bytes: u64,
    pub special_tokens: Vec<(String, u32)>,
    /// Text bytes per token over the first documents, a measure of compression.
    pub bytes_per_token: f64,
}

impl Stage for Bpe {
    fn kind(&self) -> &'static str {
        "bpe"
    }

    fn summary(&self) -> &'static str {
        "trains a BPE tokenizer (digits split, byte fallback) and writes tokenizer.json"
    }

    fn version(&self) -> u32 {
        1
    }

    fn children(&self) -> &'static [&'static str] {
        &[
            "vocab",
            "split-digits",
            "byte-fallback",
            "min-frequency",
            "max-alphabet",
            "special-tokens",
            "max-bytes",
        ]
    }

    fn decode(&self, stage: &StageDecl, _cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        if stage.inputs.is_empty() {
            sink.push(RecipeError::MissingValue {
                what: format!("the input of bpe stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add `input STAGE` naming the documents to train on".to_owned(),
            });
        }
        let vocab_node = stage.body.iter().rev().find(|n| n.node_name() == "vocab");
        let vocab = vocab_node
            .and_then(|n| n.arg::<usize>(0, sink))
            .unwrap_or(32_000);
        let mut p = BpeParams::new(vocab);
        let mut max_alphabet = None;
        for node in &stage.body {
            match node.node_name() {
                "vocab" => node.check_entries(1, &[], sink),
                "split-digits" | "byte-fallback" => {
                    node.check_entries(1, &[], sink);
                    if let Some(v) = node.arg::<bool>(0, sink) {
                        if node.node_name() == "split-digits" {
                            p.split_digits = v;
                        } else {
                            p.byte_fallback = v;
                        }
                    }
                }
                "min-frequency" => {
                    node.check_entries(1, &[], sink);
                    if let Some(v) = node.arg::<u64>(0, sink) {
                        p.min_frequency = v;
                    }
                }
                "max-alphabet" => {
                    node.check_entries(1, &[], sink);
                    max_alphabet = node.arg::<usize>(0, sink);
                }
                "special-tokens" => {
                    node.check_entries(usize::MAX, &[], sink);
                    for token in node.args::<String>(sink) {
                        if token.value.is_empty() || p.special_tokens.contains(&token.value) {
                            sink.push(RecipeError::InvalidValue {
                                message: format!(
                                    "special token \"{}\" is empty or already defined",
                                    token.value
                                ),
                                span: token.span,
                                label: "duplicate".to_owned(),
                                help: format!(
                                    "the built-in special tokens are {}",
                                    SPECIAL_TOKENS.join(" ")
                                ),
                            });
                        } else {
                            p.special_tokens.push(token.value);
                        }
                    }
                }
                "max-bytes" => {
                    node.check_entries(1, &[], sink);
                    if let Some(text) = node.arg_spanned::<String>(0, sink) {
                        match yiflow_dsl::parse_count(&text.value) {
                            Some(n) => p.max_bytes = Some(n),
                            None => sink.push(RecipeError::InvalidValue {
                                message: format!("`{}` is not a size", text.value),
                                span: text.span,
                                label: "not a size".to_owned(),
                                help: "write a size such as \"500M\" or \"2G\"".to_owned(),
                            }),
                        }
                    }
                }
                _ => {}
            }
        }
        p.max_alphabet = max_alphabet.unwrap_or(p.vocab / 4);
        if let Some(node) = vocab_node
            && p.vocab < p.reserved() + 16
        {
            sink.push(RecipeError::InvalidValue {
                message: format!(
                    "a vocabulary of {} leaves no room to learn: {} tokens are reserved",
                    p.vocab,
                    p.reserved()
                ),
                span: node.name_span(),
                label: "too small".to_owned(),
                help: format!(
                    "use at least {} (special tokens and byte tokens take {})",
                    p.reserved() + 16,
                    p.reserved()
                ),
            });
        }
        serde_json::to_value(p).unwrap_or(Value::Null)
    }

    fn launch(&self, _params: &Value) -> Launch {
        Launch::Internal
    }

    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let params: BpeParams = serde_json::from_value(params.clone())?;
        let inputs: Vec<&Path> = io.inputs.values().map(PathBuf::as_path).collect();
        let stats = train(&params, &inputs, &io.out)?;
        tracing::info!(
            vocab = stats.vocab_size,
            docs = stats.docs,
            "tokenizer trained"
        );
        Ok(())
    }
}

/// Streams the texts of document files, stopping after `max_bytes`; the first error is kept aside
/// because the trainer's iterator cannot return one.
struct Texts<'a> {
    batches: crate::data::DocumentBatches<'a>,
    files: &'a [PathBuf],
    pending: std::vec::IntoIter<crate::data::RawLine>,
    error: &'a Mutex<Option<DataError>>,
    max_bytes: u64,
    bytes: u64,
    docs: u64,
}

impl Iterator for Texts<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if self.bytes >= self.max_bytes {
                return None;
            }
            if let Some(raw) = self.pending.next() {
                let parsed = raw.text.and_then(|line| Document::from_line(&line));
                match parsed {
                    Ok(doc) => {
                        self.bytes += doc.text.len() as u64;
                        self.docs += 1;
                        return Some(doc.text);
                    }
                    Err(reason) => {
                        let path = self.files[raw.file].clone();
                        *self
                            .error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(DataError::Malformed {
                                path,
                                line: raw.line,
                                reason,
                            });
                        return None;
                    }
                }
            }
            match self.batches.next()? {
                Ok(batch) => self.pending = batch.into_iter(),
                Err(e) => {
                    *self
                        .error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    return None;
                }
            }
        }
    }
}

fn tokenizer_error(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Trains a tokenizer on the documents of `inputs`, writing tokenizer.json and stats.json into `out`.
pub fn train(params: &BpeParams, inputs: &[&Path], out: &Path) -> Result<BpeStats, DataError> {
    let target = out.join(TOKENIZER_FILE);
    let files = DocumentFiles::find(inputs.iter().copied())?;
    let mut specials: Vec<String> = params.special_tokens.clone();
    if !params.byte_fallback {
        specials.push(UNK.to_owned());
    }
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    let learned_vocab = params
        .vocab
        .saturating_sub(if params.byte_fallback { 256 } else { 0 });
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(learned_vocab)
        .min_frequency(params.min_frequency)
        .limit_alphabet(params.max_alphabet.max(1))
        .special_tokens(added)
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let split = Split::new(
        SplitPattern::Regex(pattern(params.split_digits)),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| tokenizer_error(&target, e))?;
    let decoder: DecoderWrapper = if params.byte_fallback {
        DecoderSequence::new(vec![ByteFallback::new().into(), Fuse::new().into()]).into()
    } else {
        Fuse::new().into()
    };
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(split))
        .with_decoder(Some(decoder));

    let error = Mutex::new(None);
    let mut texts = Texts {
        batches: files.batches(16 << 20),
        files: &files.files,
        pending: Vec::new().into_iter(),
        error: &error,
        max_bytes: params.max_bytes.unwrap_or(u64::MAX),
        bytes: 0,
        docs: 0,
    };
    tokenizer
        .train(&mut trainer, texts.by_ref())
        .map_err(|e| tokenizer_error(&target, e))?;
    let (docs, bytes) = (texts.docs, texts.bytes);
    drop(texts);
    if let Some(e) = error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }

    let mut json: Value = serde_json::from_str(
        &tokenizer
            .to_string(false)
            .map_err(|e| tokenizer_error(&target, e))?,
    )
    .map_err(|e| tokenizer_error(&target, e))?;
    finish_model(&mut json, specials.len(), params.byte_fallback)?;
    let tokenizer: Tokenizer = json
        .to_string()
        .parse()
        .map_err(|e| tokenizer_error(&target, e))?;
    std::fs::create_dir_all(out).map_err(|e| DataError::write(out, e))?;
    tokenizer
        .save(&target, false)
        .map_err(|e| tokenizer_error(&target, e))?;

    let special_tokens = specials
        .iter()
        .map(|s| (s.clone(), tokenizer.token_to_id(s).unwrap_or(u32::MAX)))
        .collect();
    let stats = BpeStats {
        vocab_size: tokenizer.get_vocab_size(true),
        requested_vocab: params.vocab,
        docs,
        bytes,
        special_tokens,
        bytes_per_token: compression(&tokenizer, &files)?,
    };
    let path = out.join("stats.json");
    let text =
        serde_json::to_string_pretty(&stats).map_err(|e| DataError::Params(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| DataError::write(&path, e))?;
    Ok(stats)
}

/// Turns the trained model into the final one: the 256 `<0xNN>` byte tokens right after the special
/// tokens (learned ids shift up), byte fallback on, or `<unk>` as the unknown token without it.
fn finish_model(json: &mut Value, specials: usize, byte_fallback: bool) -> Result<(), DataError> {
    let model = json
        .get_mut("model")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| DataError::Params("trained tokenizer has no model".into()))?;
    if byte_fallback {
        let vocab = model
            .get_mut("vocab")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| DataError::Params("trained model has no vocab".into()))?;
        let mut entries: Vec<(String, u64)> = vocab
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        entries.sort_by_key(|e| e.1);
        vocab.clear();
        let mut next = 0u64;
        for (token, id) in entries {
            if id as usize == specials {
                for b in 0..=255u8 {
                    vocab.insert(format!("<0x{b:02X}>"), Value::from(next));
                    next += 1;
                }
            }
            if !vocab.contains_key(&token) {
                vocab.insert(token, Value::from(next));
                next += 1;
            }
        }
        if next as usize <= specials + 255 {
            for b in 0..=255u8 {
                let key = format!("<0x{b:02X}>");
                if !vocab.contains_key(&key) {
                    vocab.insert(key, Value::from(next));
                    next += 1;
                }
            }
        }
        model.insert("byte_fallback".into(), Value::Bool(true));
    } else {
        model.insert("unk_token".into(), Value::from(UNK));
    }
    Ok(())
}

/// Bytes per token over the first 2,000 documents.
fn compression(tokenizer: &Tokenizer, files: &DocumentFiles) -> Result<f64, DataError> {
    let mut texts = Vec::new();
    'outer: for batch in files.batches(4 << 20) {
        for raw in batch? {
            if let Ok(doc) = raw.text.and_then(|l| Document::from_line(&l)) {
                texts.push(doc.text);
            }
            if texts.len() >= 2000 {
                break 'outer;
            }
        }
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let encodings =
        tokenizer
            .encode_batch_fast(texts, false)
            .map_err(|e| DataError::Tokenizer {
                path: PathBuf::from(TOKENIZER_FILE),
                reason: e.to_string(),
            })?;
    let tokens: usize = encodings.iter().map(tokenizers::Encoding::len).sum();
    Ok(if tokens == 0 {
        0.0
    } else {
        bytes as f64 / tokens as f64
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::data::testing::{params, problems};
    use crate::data::{DocumentWriter, SyntheticKind};

    const SAMPLES: [&str; 6] = [
        "The quick brown fox jumps over the lazy dog in 2024, paying $12,345.67!",
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。Rust 程序设计语言",
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n\tprintln!(\"{x:?}\");\n}\n",
        "Emoji: 🦀🚀👩‍💻 and flags 🇯🇵, math ∑∫√ and ß ñ é",
        "  leading spaces, trailing spaces  \n\n\nand <|endoftext|> a special token",
        "",
    ];

    fn corpus(dir: &Path) -> PathBuf {
        let corpus = dir.join("corpus");
        let mut writer = DocumentWriter::create(&corpus, 1 << 20).unwrap();
        for i in 0..1500 {
            writer
                .write(&SyntheticKind::Stories.document(1, i))
                .unwrap();
            writer
                .write(&SyntheticKind::WordProblems.document(1, i))
                .unwrap();
        }
        for text in &SAMPLES[..3] {
            writer.write(&Document::new(*text, "sample")).unwrap();
        }
        writer.finish().unwrap();
        corpus
    }

    fn trained(dir: &Path) -> (Tokenizer, BpeStats) {
        let corpus = corpus(dir);
        let out = dir.join("out");
        let stats = train(&BpeParams::new(700), &[corpus.as_path()], &out).unwrap();
        (
            Tokenizer::from_file(out.join(TOKENIZER_FILE)).unwrap(),
            stats,
        )
    }

    #[test]
    fn decode_defaults_and_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let head = "stage corpus kind=source { synthetic stories docs=10 }\n";
        let p = params(
            dir.path(),
            &format!(
                "{head}stage t kind=bpe {{ input corpus; vocab 4096; split-digits #true; byte-fallback #true }}"
            ),
            "t",
        );
        let expected = serde_json::to_value(BpeParams::new(4096)).unwrap();
        assert_eq!(p, expected);
        let report = problems(
            dir.path(),
            &format!(
                "{head}stage t kind=bpe {{ input corpus; vocab 100; special-tokens \"<|pad|>\"; max-bytes \"lots\" }}"
            ),
        );
        assert!(
            report.contains("a vocabulary of 100 leaves no room"),
            "{report}"
        );
        assert!(
            report.contains("special token \"<|pad|>\" is empty or already defined"),
            "{report}"
        );
        assert!(report.contains("`lots` is not a size"), "{report}");
    }

    #[test]
    fn trains_a_lossless_tokenizer_with_split_digits_and_byte_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let (tokenizer, stats) = trained(dir.path());
        assert_eq!(stats.vocab_size, 700);
        assert_eq!(stats.docs, 3003);
        assert!(stats.bytes_per_token > 2.0, "{stats:?}");
        for (i, special) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tokenizer.token_to_id(special), Some(i as u32));
        }
        assert_eq!(tokenizer.token_to_id("<0x00>"), Some(8));
        assert_eq!(tokenizer.token_to_id("<0xFF>"), Some(263));
        for text in SAMPLES {
            let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(
                tokenizer.decode(&ids, false).unwrap(),
                text,
                "round trip of {text:?}"
            );
        }
        let digits = tokenizer.encode("1234567890", false).unwrap();
        assert_eq!(
            digits.get_tokens(),
            ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
        );
        // The crab never occurs in training: it comes out as its four UTF-8 bytes.
        assert_eq!(
            tokenizer.encode("🦀", false).unwrap().get_tokens(),
            ["<0xF0>", "<0x9F>", "<0xA6>", "<0x80>"]
        );
        let eos = tokenizer.encode("a<|endoftext|>", false).unwrap();
        assert_eq!(eos.get_ids().last(), Some(&2));
    }

    /// The Python interpreter with `tokenizers`: $`YIFLOW_PYTHON`, bench/.venv (bench/data/setup.sh), python3.
    fn python_with_tokenizers() -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let candidates = std::env::var_os("YIFLOW_PYTHON")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                root.join("bench/.venv/bin/python"),
                PathBuf::from("python3"),
            ]);
        candidates.into_iter().find(|p| {
            Command::new(p)
                .args(["-c", "import tokenizers"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    }

    #[test]
    fn python_tokenizers_loads_the_file_and_encodes_identically() {
        let Some(python) = python_with_tokenizers() else {
            assert!(
                std::env::var_os("YIFLOW_REQUIRE_TOKENIZERS").is_none(),
                "YIFLOW_REQUIRE_TOKENIZERS is set but no Python has `tokenizers` (YIFLOW_PYTHON, bench/.venv, python3)"
            );
            eprintln!(
                "skipped: no Python with the `tokenizers` package (run `bash bench/data/setup.sh --tokenizers-only`)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (tokenizer, _) = trained(dir.path());
        let mut texts: Vec<String> = SAMPLES.iter().map(|s| (*s).to_owned()).collect();
        texts.extend((0..50).map(|i| SyntheticKind::Arithmetic.document(9, i).text));
        let input = dir.path().join("texts.json");
        std::fs::write(&input, serde_json::to_string(&texts).unwrap()).unwrap();
        let script = "import json, sys\nfrom tokenizers import Tokenizer\n\
                      t = Tokenizer.from_file(sys.argv[1])\n\
                      texts = json.load(open(sys.argv[2]))\n\
                      ids = [t.encode(x).ids for x in texts]\n\
                      back = [t.decode(i, skip_special_tokens=False) for i in ids]\n\
                      print(json.dumps({'ids': ids, 'back': back}))";
        let out = Command::new(&python)
            .args(["-c", script])
            .arg(dir.path().join("out").join(TOKENIZER_FILE))
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (i, text) in texts.iter().enumerate() {
            let ours: Vec<u32> = tokenizer
                .encode(text.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            let theirs: Vec<u32> = serde_json::from_value(result["ids"][i].clone()).unwrap();
            assert_eq!(ours, theirs, "ids of {text:?}");
            assert_eq!(
                result["back"][i],
                text.as_str(),
                "python round trip of {text:?}"
            );
        }
    }
}
