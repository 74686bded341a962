//! The `filter` kind: the report's data pipeline at small scale (Yi-Lightning, section 2), each rule
//! optional, spread over all cores.
//!
//! ```kdl
//! stage clean kind=filter {
//!     input corpus                          // one or more document stages (or folders of *.jsonl)
//!     quality gopher                        // every Gopher quality and repetition rule at the paper's values
//!     min-words 20                          // fewest words (Gopher 50); each rule below takes #false to
//!     max-words 100000                      //   turn off what `quality gopher` turned on
//!     mean-word-length 3 10                 // bounds on the mean word length
//!     symbol-ratio 0.1                      // most `#` and ellipses per word
//!     digit-ratio 0.3                       // most digits among non-space characters (not in Gopher)
//!     bullet-lines 0.9                      // largest share of lines starting with a bullet
//!     ellipsis-lines 0.3                    // largest share of lines ending with an ellipsis
//!     alpha-words 0.8                       // smallest share of words with a letter
//!     stop-words 2                          // fewest distinct English stop words
//!     repeated-lines 0.3 chars=0.2          // largest share of repeated lines (and of their bytes)
//!     repeated-paragraphs 0.3 chars=0.2
//!     repeated-ngrams #true top2=0.2 dup5=0.15  // Gopher's top-n-gram (2-4) and repeated-n-gram (5-10)
//!                                           //   byte shares; properties override single values
//!     blocklist builtin "lists/extra.txt" min-hits=1   // unsafe-content phrases (built-in and/or files)
//!     decontaminate "evals/*.jsonl" ngram=30           // drop documents sharing an n-gram with eval sets
//!     redact email phone ip card            // PII replaced by <EMAIL> <PHONE> <IP> <CARD>; no value: all
//!     dedup exact minhash threshold=0.8 ngram=5 permutations=128   // either or both
//!     samples 5                             // removed documents kept per rule in stats.json
//! }
//! ```
//! Files named by `blocklist` and `decontaminate` are relative to the recipe's folder and must also be
//! covered by the stage's `files` (e.g. `files "evals"`), so that editing them reruns the stage.
//!
//! Rules run in this order, and a removed document counts against the first rule it breaks: quality,
//! repetition, blocklist, decontaminate, redact, exact dedup, `MinHash` dedup. Dedup keeps the first of
//! each group in input order, so the result does not depend on the number of threads. Artifact:
//! `documents/` with the kept (redacted) documents and `stats.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use yiflow_dsl::{KdlNode, KdlValue, NodeExt, RecipeError, Sink, Spanned, StageDecl};
use yiflow_engine::{DecodeCx, ExecError, Launch, Stage, StageIo};

use crate::data::{
    BUILTIN_PHRASES, Blocklist, DataError, Decontaminator, Document, DocumentFiles, DocumentWriter,
    MinHashDedup, MinHashParams, NgramLimit, PiiCounts, PiiKind, PiiRedactor, QualityRules,
    Rejection, RepetitionRules, check_declared_files, expand_glob, normalized_word_hashes,
};

const SHARD_BYTES: u64 = 128 << 20;
const BATCH_BYTES: usize = 32 << 20;
/// Characters of a removed document kept as its sample.
const SAMPLE_CHARS: usize = 400;
const MINHASH_SEED: u64 = 0x5eed;

/// `stage NAME kind=filter { input ...; quality gopher; dedup minhash threshold=0.8; redact ... }`
pub struct Filter;

/// The blocklist rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlocklistParams {
    pub builtin: bool,
    pub files: Vec<String>,
    pub min_hits: u64,
}

/// The decontamination rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DecontaminateParams {
    pub files: Vec<String>,
    pub ngram: usize,
}

/// Canonical parameters of a filter stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FilterParams {
    pub quality: QualityRules,
    pub repetition: RepetitionRules,
    pub blocklist: Option<BlocklistParams>,
    pub decontaminate: Option<DecontaminateParams>,
    pub redact: Vec<PiiKind>,
    pub dedup_exact: bool,
    pub minhash: Option<MinHashParams>,
    pub samples: usize,
}

impl Default for FilterParams {
    fn default() -> Self {
        Self {
            quality: QualityRules::default(),
            repetition: RepetitionRules::default(),
            blocklist: None,
            decontaminate: None,
            redact: Vec::new(),
            dedup_exact: false,
            minhash: None,
            samples: 5,
        }
    }
}

/// A removed document, as shown in stats.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedSample {
    pub source: String,
    pub reason: String,
    pub text: String,
}

/// Removals by one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleStats {
    pub docs: u64,
    pub bytes: u64,
    pub samples: Vec<RemovedSample>,
}

/// stats.json of a filter stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterStats {
    pub docs_in: u64,
    pub bytes_in: u64,
    pub docs_kept: u64,
    /// Bytes of the kept documents after redaction.
    pub bytes_kept: u64,
    pub removed: BTreeMap<String, RuleStats>,
    pub redacted: PiiCounts,
    /// Documents changed by redaction.
    pub redacted_docs: u64,
    /// What the decontamination rule read: eval texts, those too short to match, distinct n-grams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decontamination: Option<DecontaminationStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minhash: Option<MinHashParams>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecontaminationStats {
    pub eval_files: Vec<String>,
    pub eval_texts: u64,
    pub too_short: u64,
    pub ngrams: u64,
}

/// What `arg 0` of a setting says: a value, `#false` (off), or nothing usable (reported).
enum Setting<T> {
    On(T),
    Off,
    Invalid,
}

fn number_setting(node: &KdlNode, sink: &mut Sink, min: f64, max: f64) -> Setting<f64> {
    let Some(value) = node.arg_spanned::<KdlValue>(0, sink) else {
        return Setting::Invalid;
    };
    let number = match value.value {
        KdlValue::Bool(false) => return Setting::Off,
        KdlValue::Integer(i) => i as f64,
        KdlValue::Float(f) => f,
        ref other => {
            sink.push(RecipeError::WrongType {
                what: format!("the value of `{}`", node.node_name()),
                expected: "a number or #false".to_owned(),
                found: yiflow_dsl::KdlValue::to_string(other),
                span: value.span,
                help: format!(
                    "write e.g. `{} 0.3`, or `#false` to turn the rule off",
                    node.node_name()
                ),
            });
            return Setting::Invalid;
        }
    };
    if !(min..=max).contains(&number) {
        sink.push(RecipeError::InvalidValue {
            message: format!(
                "`{}` must be between {min} and {max}, not {number}",
                node.node_name()
            ),
            span: value.span,
            label: "out of range".to_owned(),
            help: format!("write a value between {min} and {max}"),
        });
        return Setting::Invalid;
    }
    Setting::On(number)
}

fn apply<T>(target: &mut Option<T>, setting: Setting<T>) {
    match setting {
        Setting::On(v) => *target = Some(v),
        Setting::Off => *target = None,
        Setting::Invalid => {}
    }
}

fn fraction_prop(node: &KdlNode, name: &str, sink: &mut Sink) -> Option<f64> {
    let value = node.prop_spanned::<f64>(name, sink)?;
    if (0.0..=1.0).contains(&value.value) {
        Some(value.value)
    } else {
        sink.push(RecipeError::InvalidValue {
            message: format!("`{name}` of `{}` must be between 0 and 1", node.node_name()),
            span: value.span,
            label: "out of range".to_owned(),
            help: "write a fraction such as 0.2".to_owned(),
        });
        None
    }
}

fn keywords(node: &KdlNode, allowed: &[&str], sink: &mut Sink) -> Vec<Spanned<String>> {
    let mut out = Vec::new();
    for word in node.args::<String>(sink) {
        if allowed.contains(&word.value.as_str()) {
            out.push(word);
        } else {
            sink.push(RecipeError::InvalidValue {
                message: format!("`{}` is not a value of `{}`", word.value, node.node_name()),
                span: word.span,
                label: "unknown".to_owned(),
                help: yiflow_dsl::did_you_mean(&word.value, allowed.iter().copied(), ""),
            });
        }
    }
    out
}

fn decode_params(stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> FilterParams {
    let dir = &cx.recipe.dir;
    let mut p = FilterParams::default();
    // Presets first, so that single settings override them wherever they are written.
    for node in stage.body.iter().filter(|n| n.node_name() == "quality") {
        node.check_entries(1, &[], sink);
        if !keywords(node, &["gopher"], sink).is_empty() {
            p.quality = QualityRules::gopher();
            p.repetition = RepetitionRules::gopher();
        } else if node.positional().is_empty() {
            sink.push(RecipeError::MissingValue {
                what: "the preset of `quality`".to_owned(),
                span: node.name_span(),
                help: "write `quality gopher`".to_owned(),
            });
        }
    }
    for node in &stage.body {
        let q = &mut p.quality;
        match node.node_name() {
            "min-words" | "max-words" | "stop-words" => {
                node.check_entries(1, &[], sink);
                let target = match node.node_name() {
                    "min-words" => &mut q.min_words,
                    "max-words" => &mut q.max_words,
                    _ => &mut q.stop_words,
                };
                match number_setting(node, sink, 0.0, 1e12) {
                    Setting::On(v) if v.fract() != 0.0 => sink.push(RecipeError::InvalidValue {
                        message: format!("`{}` must be a whole number", node.node_name()),
                        span: node.name_span(),
                        label: "not whole".to_owned(),
                        help: "write a count such as 20".to_owned(),
                    }),
                    Setting::On(v) => *target = Some(v as u64),
                    Setting::Off => *target = None,
                    Setting::Invalid => {}
                }
            }
            "mean-word-length" => {
                node.check_entries(2, &[], sink);
                match number_setting(node, sink, 0.0, 1e6) {
                    Setting::On(lo) => {
                        if let Some(hi) = node.arg::<f64>(1, sink) {
                            if hi < lo {
                                sink.push(RecipeError::InvalidValue {
                                    message: "the upper bound of `mean-word-length` is below the lower one".to_owned(),
                                    span: node.name_span(),
                                    label: "empty range".to_owned(),
                                    help: "write `mean-word-length MIN MAX`, e.g. `mean-word-length 3 10`".to_owned(),
                                });
                            } else {
                                q.mean_word_length = Some((lo, hi));
                            }
                        }
                    }
                    Setting::Off => q.mean_word_length = None,
                    Setting::Invalid => {}
                }
            }
            "symbol-ratio" => {
                node.check_entries(1, &[], sink);
                apply(&mut q.symbol_ratio, number_setting(node, sink, 0.0, 1e6));
            }
            "digit-ratio" | "bullet-lines" | "ellipsis-lines" | "alpha-words" => {
                node.check_entries(1, &[], sink);
                let target = match node.node_name() {
                    "digit-ratio" => &mut q.digit_ratio,
                    "bullet-lines" => &mut q.bullet_lines,
                    "ellipsis-lines" => &mut q.ellipsis_lines,
                    _ => &mut q.alpha_words,
                };
                apply(target, number_setting(node, sink, 0.0, 1.0));
            }
            "repeated-lines" | "repeated-paragraphs" => {
                node.check_entries(1, &["chars"], sink);
                let r = &mut p.repetition;
                let (share, chars) = if node.node_name() == "repeated-lines" {
                    (&mut r.dup_lines, &mut r.dup_line_chars)
                } else {
                    (&mut r.dup_paragraphs, &mut r.dup_paragraph_chars)
                };
                match number_setting(node, sink, 0.0, 1.0) {
                    Setting::On(v) => {
                        *share = Some(v);
                        if let Some(c) = fraction_prop(node, "chars", sink) {
                            *chars = Some(c);
                        }
                    }
                    Setting::Off => {
                        *share = None;
                        *chars = None;
                    }
                    Setting::Invalid => {}
                }
            }
            "repeated-ngrams" => {
                let props = [
                    "top2", "top3", "top4", "dup5", "dup6", "dup7", "dup8", "dup9", "dup10",
                ];
                node.check_entries(1, &props, sink);
                let r = &mut p.repetition;
                match node.arg::<bool>(0, sink) {
                    Some(false) => {
                        r.top_ngrams.clear();
                        r.dup_ngrams.clear();
                        continue;
                    }
                    Some(true) => {
                        if r.top_ngrams.is_empty() && r.dup_ngrams.is_empty() {
                            r.top_ngrams = RepetitionRules::gopher_top_ngrams();
                            r.dup_ngrams = RepetitionRules::gopher_dup_ngrams();
                        }
                    }
                    None => continue,
                }
                for name in props {
                    if let Some(max) = fraction_prop(node, name, sink) {
                        let (list, n) = match name.strip_prefix("top") {
                            Some(n) => (&mut r.top_ngrams, n),
                            None => (&mut r.dup_ngrams, &name[3..]),
                        };
                        let n: usize = n.parse().unwrap_or(0);
                        if let Some(limit) = list.iter_mut().find(|l| l.n == n) {
                            limit.max = max;
                        } else {
                            list.push(NgramLimit { n, max });
                        }
                    }
                }
            }
            "blocklist" => {
                node.check_entries(usize::MAX, &["min-hits"], sink);
                let mut rule = BlocklistParams {
                    builtin: false,
                    files: Vec::new(),
                    min_hits: 1,
                };
                for arg in node.args::<String>(sink) {
                    if arg.value == "builtin" {
                        rule.builtin = true;
                    } else {
                        check_declared_files(dir, stage, &arg, "blocklist file", sink);
                        rule.files.push(arg.value);
                    }
                }
                if let Some(hits) = node.prop::<u64>("min-hits", sink) {
                    rule.min_hits = hits.max(1);
                }
                if !rule.builtin && rule.files.is_empty() {
                    sink.push(RecipeError::MissingValue {
                        what: "the list of `blocklist`".to_owned(),
                        span: node.name_span(),
                        help: "write `blocklist builtin` and/or list files: `blocklist \"lists/unsafe.txt\"`".to_owned(),
                    });
                }
                p.blocklist = Some(rule);
            }
            "decontaminate" => {
                node.check_entries(usize::MAX, &["ngram"], sink);
                let mut files = Vec::new();
                for arg in node.args::<String>(sink) {
                    check_declared_files(dir, stage, &arg, "eval file", sink);
                    files.push(arg.value);
                }
                if files.is_empty() {
                    sink.push(RecipeError::MissingValue {
                        what: "the eval files of `decontaminate`".to_owned(),
                        span: node.name_span(),
                        help: "write `decontaminate \"evals/*.jsonl\"` and add `files \"evals\"` to the stage".to_owned(),
                    });
                }
                let ngram = node.prop::<usize>("ngram", sink).unwrap_or(30).max(1);
                p.decontaminate = Some(DecontaminateParams { files, ngram });
            }
            "redact" => {
                node.check_entries(usize::MAX, &[], sink);
                let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
                let kinds = keywords(node, &names, sink);
                p.redact = if node.positional().is_empty() {
                    PiiKind::ALL.to_vec()
                } else {
                    let mut kinds: Vec<PiiKind> = kinds
                        .iter()
                        .filter_map(|k| PiiKind::from_name(&k.value))
                        .collect();
                    kinds.sort();
                    kinds.dedup();
                    kinds
                };
            }
            "dedup" => {
                node.check_entries(2, &["threshold", "ngram", "permutations"], sink);
                let methods = keywords(node, &["exact", "minhash"], sink);
                if node.positional().is_empty() {
                    sink.push(RecipeError::MissingValue {
                        what: "the method of `dedup`".to_owned(),
                        span: node.name_span(),
                        help: "write `dedup exact`, `dedup minhash threshold=0.8` or both"
                            .to_owned(),
                    });
                }
                p.dedup_exact = methods.iter().any(|m| m.value == "exact");
                let minhash = methods.iter().any(|m| m.value == "minhash");
                let threshold = fraction_prop(node, "threshold", sink).unwrap_or(0.8);
                let ngram = node.prop::<usize>("ngram", sink).unwrap_or(5).max(1);
                let permutations = node
                    .prop::<usize>("permutations", sink)
                    .unwrap_or(128)
                    .clamp(1, 1024);
                if minhash {
                    p.minhash = Some(MinHashParams::new(threshold, ngram, permutations));
                } else if node.entries().iter().any(|e| e.name().is_some()) {
                    sink.push(RecipeError::InvalidValue {
                        message: "`threshold`, `ngram` and `permutations` are settings of `dedup minhash`".to_owned(),
                        span: node.name_span(),
                        label: "no minhash here".to_owned(),
                        help: "write `dedup minhash threshold=0.8` (add `exact` to keep exact dedup too)".to_owned(),
                    });
                }
            }
            "samples" => {
                node.check_entries(1, &[], sink);
                if let Some(n) = node.arg::<usize>(0, sink) {
                    p.samples = n;
                }
            }
            _ => {}
        }
    }
    p
}

impl Stage for Filter {
    fn kind(&self) -> &'static str {
        "filter"
    }

    fn summary(&self) -> &'static str {
        "filters documents: quality heuristics, dedup (exact, MinHash), PII redaction, blocklist, decontamination"
    }

    fn version(&self) -> u32 {
        1
    }

    fn children(&self) -> &'static [&'static str] {
        &[
            "quality",
            "min-words",
            "max-words",
            "mean-word-length",
            "symbol-ratio",
            "digit-ratio",
            "bullet-lines",
            "ellipsis-lines",
            "alpha-words",
            "stop-words",
            "repeated-lines",
            "repeated-paragraphs",
            "repeated-ngrams",
            "blocklist",
            "decontaminate",
            "redact",
            "dedup",
            "samples",
        ]
    }

    fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        if stage.inputs.is_empty() {
            sink.push(RecipeError::MissingValue {
                what: format!("the input of filter stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add `input STAGE` naming the stage whose documents to filter".to_owned(),
            });
        }
        serde_json::to_value(decode_params(stage, cx, sink)).unwrap_or(Value::Null)
    }

    fn launch(&self, _params: &Value) -> Launch {
        Launch::Internal
    }

    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let params: FilterParams = serde_json::from_value(params.clone())?;
        let inputs: Vec<&Path> = io.inputs.values().map(PathBuf::as_path).collect();
        let stats = run(&params, &inputs, &io.recipe_dir, &io.out)?;
        tracing::info!(
            docs_in = stats.docs_in,
            kept = stats.docs_kept,
            "filter done"
        );
        Ok(())
    }
}

/// The rules of a filter stage, built once and shared by the worker threads.
pub struct FilterRules {
    params: FilterParams,
    blocklist: Option<Blocklist>,
    decontam: Option<Decontaminator>,
    redactor: Option<PiiRedactor>,
    hasher: Option<MinHashDedup>,
}

/// A document after the per-document rules.
enum Outcome {
    Kept {
        line: String,
        bytes_in: usize,
        bytes: usize,
        exact: Option<u128>,
        signature: Option<Vec<u32>>,
        pii: Option<PiiCounts>,
    },
    Removed {
        rejection: Rejection,
        source: String,
        text: String,
    },
}

impl FilterRules {
    /// Compiles the rules, reading blocklist and eval files relative to `recipe_dir`.
    pub fn new(params: &FilterParams, recipe_dir: &Path) -> Result<Self, DataError> {
        let files = |pattern: &str| -> Result<Vec<PathBuf>, DataError> {
            let found = expand_glob(recipe_dir, pattern).map_err(|reason| DataError::Glob {
                pattern: pattern.to_owned(),
                reason,
            })?;
            if found.is_empty() {
                return Err(DataError::NoMatch {
                    pattern: pattern.to_owned(),
                    dir: recipe_dir.to_path_buf(),
                });
            }
            Ok(found)
        };
        let blocklist = match &params.blocklist {
            None => None,
            Some(rule) => {
                let mut phrases: Vec<String> = if rule.builtin {
                    BUILTIN_PHRASES.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    Vec::new()
                };
                for pattern in &rule.files {
                    for file in files(pattern)? {
                        let text = std::fs::read_to_string(&file)
                            .map_err(|e| DataError::read(&file, e))?;
                        phrases.extend(Blocklist::parse_list(&text));
                    }
                }
                Some(Blocklist::new(phrases, rule.min_hits).map_err(DataError::Params)?)
            }
        };
        let decontam = match &params.decontaminate {
            None => None,
            Some(rule) => {
                let mut d = Decontaminator::new(rule.ngram);
                for pattern in &rule.files {
                    for file in files(pattern)? {
                        let label = file
                            .strip_prefix(recipe_dir)
                            .unwrap_or(&file)
                            .display()
                            .to_string();
                        d.add_file(&file, label)?;
                    }
                }
                Some(d)
            }
        };
        let redactor = (!params.redact.is_empty()).then(|| PiiRedactor::new(&params.redact));
        let hasher = params.minhash.map(|m| MinHashDedup::new(m, MINHASH_SEED));
        Ok(Self {
            params: params.clone(),
            blocklist,
            decontam,
            redactor,
            hasher,
        })
    }

    fn process(&self, line: &str) -> Result<Outcome, String> {
        let mut doc = Document::from_line(line)?;
        let removed = |doc: Document, rejection: Rejection| Outcome::Removed {
            rejection,
            source: doc.source,
            text: doc.text,
        };
        if let Err(r) = self.params.quality.check(&doc.text) {
            return Ok(removed(doc, r));
        }
        if let Err(r) = self.params.repetition.check(&doc.text) {
            return Ok(removed(doc, r));
        }
        if let Some(list) = &self.blocklist
            && let Some((hits, phrase)) = list.check(&doc.text)
        {
            let r = Rejection::new("blocklist", format!("{hits} hit(s), first \"{phrase}\""));
            return Ok(removed(doc, r));
        }
        let mut words = Vec::new();
        if self.decontam.is_some() || self.params.minhash.is_some() {
            normalized_word_hashes(&doc.text, &mut words);
        }
        if let Some(d) = &self.decontam
            && let Some(file) = d.check(&words)
        {
            let r = Rejection::new(
                "decontaminate",
                format!("shares a {}-gram with {file}", d.ngram()),
            );
            return Ok(removed(doc, r));
        }
        let bytes_in = doc.text.len();
        let mut pii = None;
        if let Some(redactor) = &self.redactor
            && let Some((text, counts)) = redactor.redact(&doc.text)
        {
            doc.text = text;
            pii = Some(counts);
        }
        let exact = self
            .params
            .dedup_exact
            .then(|| xxhash_rust::xxh3::xxh3_128(doc.text.as_bytes()));
        // Signatures come from the words before redaction: a tag in place of an address barely moves them.
        let signature = self.hasher.as_ref().map(|h| h.signature(&words));
        let line = if pii.is_some() {
            doc.to_line()
        } else {
            line.to_owned()
        };
        Ok(Outcome::Kept {
            line,
            bytes_in,
            bytes: doc.text.len(),
            exact,
            signature,
            pii,
        })
    }
}

/// Filters the documents of `inputs` into `out` and writes stats.json.
pub fn run(
    params: &FilterParams,
    inputs: &[&Path],
    recipe_dir: &Path,
    out: &Path,
) -> Result<FilterStats, DataError> {
    let rules = FilterRules::new(params, recipe_dir)?;
    let files = DocumentFiles::find(inputs.iter().copied())?;
    let mut writer = DocumentWriter::create(out, SHARD_BYTES)?;
    let mut stats = FilterStats {
        minhash: params.minhash,
        ..FilterStats::default()
    };
    if let Some(d) = &rules.decontam {
        let (texts, short) = d.texts();
        stats.decontamination = Some(DecontaminationStats {
            eval_files: params
                .decontaminate
                .as_ref()
                .map(|p| p.files.clone())
                .unwrap_or_default(),
            eval_texts: texts,
            too_short: short,
            ngrams: d.ngrams() as u64,
        });
    }
    let mut exact_seen = std::collections::HashSet::<u128>::new();
    let mut minhash = params.minhash.map(|m| MinHashDedup::new(m, MINHASH_SEED));
    for batch in files.batches(BATCH_BYTES) {
        let batch = batch?;
        let outcomes: Vec<Result<Outcome, DataError>> = batch
            .par_iter()
            .map(|raw| {
                let malformed = |reason: String| DataError::Malformed {
                    path: files.files[raw.file].clone(),
                    line: raw.line,
                    reason,
                };
                let line = raw.text.as_ref().map_err(|r| malformed(r.clone()))?;
                rules.process(line).map_err(malformed)
            })
            .collect();
        for outcome in outcomes {
            stats.docs_in += 1;
            match outcome? {
                Outcome::Removed {
                    rejection,
                    source,
                    text,
                } => {
                    stats.bytes_in += text.len() as u64;
                    record(&mut stats, params.samples, rejection, source, &text);
                }
                Outcome::Kept {
                    line,
                    bytes_in,
                    bytes,
                    exact,
                    signature,
                    pii,
                } => {
                    stats.bytes_in += bytes_in as u64;
                    if let Some(counts) = &pii {
                        stats.redacted.add(counts);
                        stats.redacted_docs += 1;
                    }
                    let dup = if exact.is_some_and(|h| !exact_seen.insert(h)) {
                        Some(Rejection::new(
                            "dedup-exact",
                            "same text as an earlier document",
                        ))
                    } else if let (Some(sig), Some(m)) = (&signature, minhash.as_mut()) {
                        (!m.insert(sig)).then(|| {
                            Rejection::new(
                                "dedup-minhash",
                                format!(
                                    "near-duplicate of an earlier document (threshold {})",
                                    m.params().threshold
                                ),
                            )
                        })
                    } else {
                        None
                    };
                    if let Some(rejection) = dup {
                        let doc = Document::from_line(&line).map_err(DataError::Params)?;
                        record(&mut stats, params.samples, rejection, doc.source, &doc.text);
                    } else {
                        writer.write_line(&line, bytes)?;
                        stats.docs_kept += 1;
                        stats.bytes_kept += bytes as u64;
                    }
                }
            }
        }
    }
    writer.finish()?;
    let path = out.join("stats.json");
    let text =
        serde_json::to_string_pretty(&stats).map_err(|e| DataError::Params(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| DataError::write(&path, e))?;
    Ok(stats)
}

fn record(
    stats: &mut FilterStats,
    samples: usize,
    rejection: Rejection,
    source: String,
    text: &str,
) {
    let rule = stats.removed.entry(rejection.rule.to_owned()).or_default();
    rule.docs += 1;
    rule.bytes += text.len() as u64;
    if rule.samples.len() < samples {
        let mut cut: String = text.chars().take(SAMPLE_CHARS).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        rule.samples.push(RemovedSample {
            source,
            reason: rejection.detail,
            text: cut,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::data::testing::{io, params, problems, read_docs, stats};

    fn decode(dir: &Path, body: &str) -> FilterParams {
        let text = format!(
            "stage corpus kind=source {{ synthetic stories docs=10 }}\nstage clean kind=filter {{\n input corpus\n {body}\n}}"
        );
        serde_json::from_value(params(dir, &text, "clean")).unwrap()
    }

    #[test]
    fn presets_settings_and_off_switches() {
        let dir = tempfile::tempdir().unwrap();
        let p = decode(
            dir.path(),
            "min-words 20\n dedup minhash threshold=0.8\n redact email phone ip",
        );
        assert_eq!(
            p.quality,
            QualityRules {
                min_words: Some(20),
                ..QualityRules::default()
            }
        );
        assert!(p.repetition.is_empty());
        assert_eq!(p.redact, [PiiKind::Email, PiiKind::Phone, PiiKind::Ip]);
        let m = p.minhash.unwrap();
        assert_eq!((m.threshold, m.ngram, m.permutations), (0.8, 5, 128));
        assert!(!p.dedup_exact);

        // A single setting written before the preset still overrides it.
        let p = decode(
            dir.path(),
            "stop-words #false\n quality gopher\n min-words 10\n repeated-ngrams #true dup5=0.5\n redact\n dedup exact",
        );
        assert_eq!(p.quality.stop_words, None);
        assert_eq!(p.quality.min_words, Some(10));
        assert_eq!(p.quality.alpha_words, Some(0.8));
        assert_eq!(p.repetition.dup_ngrams[0], NgramLimit { n: 5, max: 0.5 });
        assert_eq!(p.redact, PiiKind::ALL);
        assert!(p.dedup_exact && p.minhash.is_none());

        // Writing a default explicitly gives the same parameters (and so the same fingerprint).
        assert_eq!(
            decode(dir.path(), "samples 5\n dedup minhash"),
            decode(dir.path(), "dedup minhash threshold=0.8 ngram=5")
        );
    }

    #[test]
    fn decode_mistakes_point_at_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("evals")).unwrap();
        std::fs::write(dir.path().join("evals/gsm.jsonl"), "{}\n").unwrap();
        let text = "stage corpus kind=source { synthetic stories docs=10 }\nstage clean kind=filter {\n input corpus\n \
                    alpha-words 1.5\n redact emails\n dedup\n decontaminate \"evals/gsm.jsonl\"\n quality c4\n blocklist\n}";
        let report = problems(dir.path(), text);
        assert!(
            report.contains("`alpha-words` must be between 0 and 1"),
            "{report}"
        );
        assert!(
            report.contains("`emails` is not a value of `redact`")
                && report.contains("did you mean `email`?"),
            "{report}"
        );
        assert!(report.contains("method of `dedup` is missing"), "{report}");
        assert!(
            report.contains("eval file `evals/gsm.jsonl` is not listed under the stage's `files`"),
            "{report}"
        );
        assert!(
            report.contains("`c4` is not a value of `quality`"),
            "{report}"
        );
        assert!(
            report.contains("list of `blocklist` is missing"),
            "{report}"
        );
        let ok = format!(
            "{}\n files \"evals\"\n decontaminate \"evals/gsm.jsonl\"\n}}",
            &text[..text.find("alpha").unwrap()]
        );
        assert_eq!(problems(dir.path(), &ok), "");
        let no_input = problems(dir.path(), "stage clean kind=filter { min-words 3 }");
        assert!(
            no_input.contains("input of filter stage `clean` is missing"),
            "{no_input}"
        );
    }

    fn prose(seed: u64) -> String {
        crate::data::SyntheticKind::Stories.document(seed, 0).text
            + " "
            + &crate::data::SyntheticKind::Stories.document(seed, 1).text
    }

    #[test]
    fn every_rule_removes_its_documents_and_stats_tell() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        let mut writer = DocumentWriter::create(&corpus, 1 << 20).unwrap();
        let eval_question = "Janet has three ducks that lay sixteen eggs per day and she eats three for breakfast every morning and bakes muffins for her friends every day with four of them";
        let near = format!("{} The end.", prose(1));
        let docs = [
            (prose(1), "good"),
            ("too short".to_owned(), "short"),
            (prose(1), "exact copy"),
            (near, "near copy"),
            (
                format!(
                    "{} Mail me at jane@example.com or call +1 415-555-0132.",
                    prose(2)
                ),
                "pii",
            ),
            (
                format!("{} Then he explained how to build a bomb.", prose(3)),
                "unsafe",
            ),
            (format!("{} {eval_question}.", prose(4)), "contaminated"),
        ];
        for (text, source) in &docs {
            writer.write(&Document::new(text.clone(), *source)).unwrap();
        }
        writer.finish().unwrap();
        std::fs::create_dir(dir.path().join("evals")).unwrap();
        std::fs::write(
            dir.path().join("evals/e.jsonl"),
            json!({"question": eval_question}).to_string() + "\n",
        )
        .unwrap();
        let params = FilterParams {
            quality: QualityRules {
                min_words: Some(5),
                ..QualityRules::default()
            },
            blocklist: Some(BlocklistParams {
                builtin: true,
                files: vec![],
                min_hits: 1,
            }),
            decontaminate: Some(DecontaminateParams {
                files: vec!["evals/*.jsonl".into()],
                ngram: 20,
            }),
            redact: PiiKind::ALL.to_vec(),
            dedup_exact: true,
            minhash: Some(MinHashParams::new(0.8, 5, 128)),
            samples: 1,
            ..FilterParams::default()
        };
        let out = dir.path().join("out");
        Filter
            .execute(
                &serde_json::to_value(&params).unwrap(),
                &io(dir.path(), &out, &[("corpus", corpus.clone())]),
            )
            .unwrap();
        let kept = read_docs(&out);
        assert_eq!(
            kept.iter().map(|d| d.source.as_str()).collect::<Vec<_>>(),
            ["good", "pii"]
        );
        assert!(
            kept[1]
                .text
                .ends_with("Mail me at <EMAIL> or call <PHONE>."),
            "{}",
            kept[1].text
        );
        let s = stats(&out);
        assert_eq!(s["docs_in"], 7);
        assert_eq!(s["docs_kept"], 2);
        let total_in: usize = docs.iter().map(|(t, _)| t.len()).sum();
        assert_eq!(s["bytes_in"], total_in);
        for (rule, source) in [
            ("min-words", "short"),
            ("dedup-exact", "exact copy"),
            ("dedup-minhash", "near copy"),
            ("blocklist", "unsafe"),
            ("decontaminate", "contaminated"),
        ] {
            assert_eq!(s["removed"][rule]["docs"], 1, "{rule}: {s}");
            assert_eq!(s["removed"][rule]["samples"][0]["source"], source, "{rule}");
        }
        assert_eq!(
            s["redacted"],
            json!({"email": 1, "phone": 1, "ip": 0, "card": 0})
        );
        assert!(
            s["removed"]["decontaminate"]["samples"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("evals/e.jsonl")
        );
        assert_eq!(s["decontamination"]["eval_texts"], 1);
    }

    #[test]
    fn output_does_not_depend_on_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        let mut writer = DocumentWriter::create(&corpus, 1 << 16).unwrap();
        for i in 0..600 {
            writer
                .write(&Document::new(prose(i % 450), format!("d{i}")))
                .unwrap();
        }
        writer.finish().unwrap();
        let params = FilterParams {
            minhash: Some(MinHashParams::new(0.7, 5, 64)),
            dedup_exact: true,
            ..FilterParams::default()
        };
        let run_with = |threads: usize, name: &str| {
            let out = dir.path().join(name);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(&params, &[corpus.as_path()], dir.path(), &out))
                .unwrap();
            read_docs(&out)
        };
        let (one, many) = (run_with(1, "one"), run_with(4, "many"));
        assert_eq!(one, many);
        assert!(one.len() <= 450 && one.len() > 300, "{} kept", one.len());
    }

    #[test]
    fn a_broken_upstream_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.jsonl"),
            "{\"text\": \"ok\"}\n{\"text\": 3}\n",
        )
        .unwrap();
        let err = run(
            &FilterParams::default(),
            &[dir.path()],
            dir.path(),
            &dir.path().join("out"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x.jsonl:2: not a document"), "{err}");
    }
}
