//! The `tokenize` kind: encodes documents with a trained tokenizer into binary token shards (see
//! [`crate::data::TokenShards`]), with a held-out validation split and document boundaries, for the
//! trainer to read through memory mapping.
//!
//! ```kdl
//! stage tokens kind=tokenize {
//!     input clean tokenizer       // document stages and exactly one `bpe` stage
//!     validation 0.01             // share of documents held out, spread evenly over the input (default 0.01)
//!     eos #true                   // end every document with <|endoftext|> (default #true)
//!     bos #false                  // start every document with <|startoftext|> (default #false)
//!     shard-tokens "100M"         // tokens per shard file (default 100M)
//! }
//! ```
//! Token ids are stored as u16 when the vocabulary fits, else u32. Artifact: `tokens/index.json`,
//! `tokens/{train,val}-NNNNN.{bin,docs}` and `stats.json`.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;
use yiflow_dsl::{KdlValue, NodeExt, RecipeError, Sink, StageDecl};
use yiflow_engine::{DecodeCx, ExecError, Launch, Stage, StageIo};

use crate::bpe::{BOS, EOS, TOKENIZER_FILE};
use crate::data::{
    DataError, Document, DocumentFiles, ShardIndex, ShardWriter, TOKENS_DIR, TokenDtype,
};

const BATCH_BYTES: usize = 16 << 20;

/// `stage NAME kind=tokenize { input DOCS TOKENIZER; validation 0.01 }`
pub struct Tokenize;

/// Canonical parameters of a tokenize stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenizeParams {
    pub validation: f64,
    pub eos: bool,
    pub bos: bool,
    pub shard_tokens: u64,
}

impl Default for TokenizeParams {
    fn default() -> Self {
        Self {
            validation: 0.01,
            eos: true,
            bos: false,
            shard_tokens: 100_000_000,
        }
    }
}

/// One split in stats.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    pub docs: u64,
    pub tokens: u64,
    pub bytes: u64,
}

/// stats.json of a tokenize stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizeStats {
    pub vocab_size: usize,
    pub dtype: Option<TokenDtype>,
    pub train: SplitStats,
    pub val: SplitStats,
    /// Text bytes per token (without boundary tokens).
    pub bytes_per_token: f64,
}

impl Stage for Tokenize {
    fn kind(&self) -> &'static str {
        "tokenize"
    }

    fn summary(&self) -> &'static str {
        "encodes documents into memory-mappable token shards with a validation split"
    }

    fn version(&self) -> u32 {
        1
    }

    fn children(&self) -> &'static [&'static str] {
        &["validation", "eos", "bos", "shard-tokens"]
    }

    fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        let kinds: Vec<Option<&str>> = stage
            .inputs
            .iter()
            .map(|i| cx.recipe.stage(&i.value).map(|s| s.kind.value.as_str()))
            .collect();
        // A `command` stage (or an unknown name, reported by the engine) may be either.
        let open = |k: Option<&str>| k.is_none_or(|k| k == "command");
        if !kinds.iter().any(|&k| open(k) || k == Some("bpe")) {
            sink.push(RecipeError::MissingValue {
                what: format!("the tokenizer of tokenize stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add the `bpe` stage to its `input`, e.g. `input clean tokenizer`".to_owned(),
            });
        }
        if !kinds.iter().any(|&k| open(k) || k != Some("bpe")) {
            sink.push(RecipeError::MissingValue {
                what: format!("the documents of tokenize stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add a `source` or `filter` stage to its `input`".to_owned(),
            });
        }
        let mut p = TokenizeParams::default();
        for node in &stage.body {
            node.check_entries(1, &[], sink);
            match node.node_name() {
                "validation" => {
                    if let Some(v) = node.arg_spanned::<f64>(0, sink) {
                        if (0.0..1.0).contains(&v.value) {
                            p.validation = v.value;
                        } else {
                            sink.push(RecipeError::InvalidValue {
                                message: format!("`validation` must be at least 0 and below 1, not {}", v.value),
                                span: v.span,
                                label: "out of range".to_owned(),
                                help: "write the share of documents to hold out, e.g. `validation 0.01`".to_owned(),
                            });
                        }
                    }
                }
                "eos" => p.eos = node.arg::<bool>(0, sink).unwrap_or(p.eos),
                "bos" => p.bos = node.arg::<bool>(0, sink).unwrap_or(p.bos),
                "shard-tokens" => {
                    if let Some(v) = node.arg_spanned::<KdlValue>(0, sink) {
                        let n = match &v.value {
                            KdlValue::Integer(i) => u64::try_from(*i).ok(),
                            KdlValue::String(s) => yiflow_dsl::parse_count(s),
                            _ => None,
                        };
                        match n {
                            Some(n) if n > 0 => p.shard_tokens = n,
                            _ => sink.push(RecipeError::InvalidValue {
                                message: "`shard-tokens` must be a positive count".to_owned(),
                                span: v.span,
                                label: "not a count".to_owned(),
                                help: "write e.g. `shard-tokens \"100M\"`".to_owned(),
                            }),
                        }
                    }
                }
                _ => {}
            }
        }
        serde_json::to_value(p).unwrap_or(Value::Null)
    }

    fn launch(&self, _params: &Value) -> Launch {
        Launch::Internal
    }

    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let params: TokenizeParams = serde_json::from_value(params.clone())?;
        let (tokenizers, docs): (Vec<&PathBuf>, Vec<&PathBuf>) = io
            .inputs
            .values()
            .partition(|dir| dir.join(TOKENIZER_FILE).is_file());
        let tokenizer = match tokenizers.as_slice() {
            [one] => one.join(TOKENIZER_FILE),
            [] => {
                return Err(format!(
                    "none of the inputs of stage `{}` holds a {TOKENIZER_FILE}",
                    io.stage
                )
                .into());
            }
            _ => {
                return Err(format!(
                    "stage `{}` has more than one tokenizer among its inputs",
                    io.stage
                )
                .into());
            }
        };
        let docs: Vec<&Path> = docs.into_iter().map(PathBuf::as_path).collect();
        let stats = tokenize(&params, &tokenizer, &docs, &io.out)?;
        tracing::info!(
            train_tokens = stats.train.tokens,
            val_tokens = stats.val.tokens,
            "tokenized"
        );
        Ok(())
    }
}

/// True when document `i` belongs to the validation split: `floor(n * share)` of the first `n`
/// documents do, spread evenly.
fn is_validation(i: u64, share: f64) -> bool {
    share > 0.0 && ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// Encodes the documents of `inputs` with `tokenizer_file` into shards under `<out>/tokens/`.
pub fn tokenize(
    params: &TokenizeParams,
    tokenizer_file: &Path,
    inputs: &[&Path],
    out: &Path,
) -> Result<TokenizeStats, DataError> {
    let err = |e: &dyn std::fmt::Display| DataError::Tokenizer {
        path: tokenizer_file.to_path_buf(),
        reason: e.to_string(),
    };
    let tokenizer = Tokenizer::from_file(tokenizer_file).map_err(|e| err(&e))?;
    let special = |token: &str, wanted: bool| -> Result<Option<u32>, DataError> {
        if !wanted {
            return Ok(None);
        }
        tokenizer
            .token_to_id(token)
            .map(Some)
            .ok_or_else(|| err(&format!("it has no {token} token")))
    };
    let (bos, eos) = (special(BOS, params.bos)?, special(EOS, params.eos)?);
    let vocab_size = tokenizer.get_vocab_size(true);
    let dtype = TokenDtype::for_vocab(vocab_size);
    let dir = out.join(TOKENS_DIR);
    let mut train = ShardWriter::new(&dir, "train", dtype, params.shard_tokens)?;
    let mut val = ShardWriter::new(&dir, "val", dtype, params.shard_tokens)?;
    let mut stats = TokenizeStats {
        vocab_size,
        dtype: Some(dtype),
        ..TokenizeStats::default()
    };
    let files = DocumentFiles::find(inputs.iter().copied())?;
    let mut index = 0u64;
    let mut content_tokens = 0u64;
    for batch in files.batches(BATCH_BYTES) {
        let batch = batch?;
        let docs: Vec<Result<Document, DataError>> = batch
            .into_par_iter()
            .map(|raw| {
                raw.text
                    .and_then(|l| Document::from_line(&l))
                    .map_err(|reason| DataError::Malformed {
                        path: files.files[raw.file].clone(),
                        line: raw.line,
                        reason,
                    })
            })
            .collect();
        let texts: Vec<String> = docs
            .into_iter()
            .map(|d| d.map(|d| d.text))
            .filter(|t| t.as_ref().is_err() || t.as_ref().is_ok_and(|t| !t.is_empty()))
            .collect::<Result<_, _>>()?;
        let encodings = tokenizer
            .encode_batch_fast(texts.iter().map(String::as_str).collect::<Vec<_>>(), false)
            .map_err(|e| err(&e))?;
        let mut tokens = Vec::new();
        for (text, encoding) in texts.iter().zip(&encodings) {
            tokens.clear();
            tokens.extend(bos);
            tokens.extend_from_slice(encoding.get_ids());
            tokens.extend(eos);
            content_tokens += encoding.len() as u64;
            let (writer, split) = if is_validation(index, params.validation) {
                (&mut val, &mut stats.val)
            } else {
                (&mut train, &mut stats.train)
            };
            writer.write_document(&tokens)?;
            split.docs += 1;
            split.tokens += tokens.len() as u64;
            split.bytes += text.len() as u64;
            index += 1;
        }
    }
    let index_file = ShardIndex {
        format: 1,
        dtype,
        vocab_size,
        eos,
        bos,
        splits: [
            ("train".to_owned(), train.finish()?),
            ("val".to_owned(), val.finish()?),
        ]
        .into_iter()
        .collect(),
    };
    index_file.write(&dir)?;
    let bytes = stats.train.bytes + stats.val.bytes;
    stats.bytes_per_token = if content_tokens == 0 {
        0.0
    } else {
        bytes as f64 / content_tokens as f64
    };
    let path = out.join("stats.json");
    let text =
        serde_json::to_string_pretty(&stats).map_err(|e| DataError::Params(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| DataError::write(&path, e))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::{BpeParams, train};
    use crate::data::testing::{io, params, problems};
    use crate::data::{DocumentWriter, SyntheticKind, TokenShards};

    #[test]
    fn validation_share_is_spread_evenly() {
        let held: Vec<u64> = (0..100).filter(|&i| is_validation(i, 0.05)).collect();
        assert_eq!(held, [19, 39, 59, 79, 99]);
        assert!(!(0..1000).any(|i| is_validation(i, 0.0)));
    }

    #[test]
    fn decode_needs_a_tokenizer_and_documents() {
        let dir = tempfile::tempdir().unwrap();
        let head = "stage corpus kind=source { synthetic stories docs=10 }\nstage tok kind=bpe { input corpus; vocab 512 }\n";
        let p = params(
            dir.path(),
            &format!(
                "{head}stage t kind=tokenize {{ input corpus tok; validation 0.1; shard-tokens \"1M\" }}"
            ),
            "t",
        );
        assert_eq!(
            p,
            serde_json::json!({"validation": 0.1, "eos": true, "bos": false, "shard-tokens": 1_000_000})
        );
        let report = problems(
            dir.path(),
            &format!("{head}stage t kind=tokenize {{ input corpus; validation 1.5 }}"),
        );
        assert!(
            report.contains("tokenizer of tokenize stage `t` is missing"),
            "{report}"
        );
        assert!(
            report.contains("`validation` must be at least 0 and below 1"),
            "{report}"
        );
        let report = problems(
            dir.path(),
            &format!("{head}stage t kind=tokenize {{ input tok }}"),
        );
        assert!(
            report.contains("documents of tokenize stage `t` is missing"),
            "{report}"
        );
    }

    #[test]
    fn documents_become_shards_the_reader_gives_back() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        let mut writer = DocumentWriter::create(&corpus, 1 << 20).unwrap();
        let docs: Vec<Document> = (0..400)
            .map(|i| SyntheticKind::Stories.document(2, i))
            .collect();
        for d in &docs {
            writer.write(d).unwrap();
        }
        writer.finish().unwrap();
        let tok_dir = dir.path().join("tok");
        train(&BpeParams::new(600), &[corpus.as_path()], &tok_dir).unwrap();
        let out = dir.path().join("out");
        let p = TokenizeParams {
            validation: 0.05,
            shard_tokens: 5_000,
            ..TokenizeParams::default()
        };
        Tokenize
            .execute(
                &serde_json::to_value(&p).unwrap(),
                &io(
                    dir.path(),
                    &out,
                    &[("corpus", corpus), ("tok", tok_dir.clone())],
                ),
            )
            .unwrap();

        let shards = TokenShards::open(&out).unwrap();
        assert_eq!(shards.index().dtype, TokenDtype::U16);
        assert_eq!(shards.eos(), Some(2));
        let (train_split, val_split) =
            (shards.split("train").unwrap(), shards.split("val").unwrap());
        assert_eq!((train_split.docs(), val_split.docs()), (380, 20));
        assert!(shards.index().splits["train"].shards.len() > 1);
        let tokenizer = Tokenizer::from_file(tok_dir.join(TOKENIZER_FILE)).unwrap();
        let train_docs: Vec<&Document> = docs
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_validation(*i as u64, 0.05))
            .map(|(_, d)| d)
            .collect();
        for (i, doc) in train_docs.iter().enumerate().step_by(37) {
            let ids = train_split.document(i as u64).unwrap();
            assert_eq!(ids.last(), Some(&2), "ends with <|endoftext|>");
            assert_eq!(
                tokenizer.decode(&ids[..ids.len() - 1], false).unwrap(),
                doc.text
            );
        }
        let packed = train_split.packed(64);
        let seq = packed.get(3).unwrap();
        assert_eq!(seq.tokens.len(), 65);
        for &s in &seq.doc_starts {
            assert!(
                s == 0 || seq.tokens[s as usize - 1] == 2,
                "a document starts right after an end token"
            );
        }
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap())
                .unwrap();
        assert_eq!(s["train"]["tokens"], train_split.tokens());
        assert_eq!(s["val"]["docs"], 20);
    }
}
