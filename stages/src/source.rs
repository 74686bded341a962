//! The `source` kind: reads documents into the document format of the data stages.
//!
//! ```kdl
//! stage corpus kind=source {
//!     files "data"                                // the files read below, so changes rerun the stage
//!     jsonl "data/*.jsonl.gz" field="text"        // JSON Lines (.gz read transparently); `field` may be
//!                                                 // a top-level key (default "text") or a JSON pointer "/a/0"
//!     text "books/*.txt" split="paragraph"        // plain text: split="file" (default) | "paragraph" | "line"
//!     parquet "web/*.parquet" column="text"       // a string column of Parquet files (default "text")
//!     synthetic stories docs=20000                // stories | arithmetic | word-problems; seed=N
//!                                                 // (default: the recipe's seed)
//!     on-error skip                               // skip | fail (default): what a malformed line does
//! }
//! ```
//! Every setting but `on-error` may be repeated; documents come out in the order written, the files of
//! a glob in name order. Paths are relative to the recipe's folder and must be covered by the stage's
//! `files`. Memory stays bounded: files are streamed, and a document is at most 256 MiB.
//!
//! Artifact: `documents/part-NNNNN.jsonl` and `stats.json` (documents and bytes per input, lines
//! skipped and the first few of them with file and line).

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use yiflow_dsl::{KdlNode, KdlValue, NodeExt, RecipeError, Sink, StageDecl};
use yiflow_engine::{DecodeCx, ExecError, Launch, Stage, StageIo};

use crate::data::{
    DataError, Document, DocumentWriter, Line, LineReader, MAX_LINE_BYTES, ParquetTexts,
    SyntheticKind, check_declared_files, expand_glob,
};

/// Shard size of the documents written.
const SHARD_BYTES: u64 = 128 << 20;
/// Lines parsed in parallel at a time.
const BATCH_LINES: usize = 8192;
/// Skipped lines whose location is kept in stats.json.
const SKIPPED_SAMPLES: usize = 20;

/// `stage NAME kind=source { jsonl ...; text ...; parquet ...; synthetic ...; on-error skip|fail }`
pub struct Source;

/// One input of a source stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceInput {
    Jsonl {
        path: String,
        field: String,
    },
    Text {
        path: String,
        split: TextSplit,
    },
    Parquet {
        path: String,
        column: String,
    },
    Synthetic {
        kind: SyntheticKind,
        docs: u64,
        seed: u64,
    },
}

/// How a plain text file is cut into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextSplit {
    File,
    Paragraph,
    Line,
}

/// What a malformed line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    Skip,
    Fail,
}

/// Canonical parameters of a source stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourceParams {
    pub inputs: Vec<SourceInput>,
    pub on_error: OnError,
}

/// What stats.json says about one input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputStats {
    pub input: String,
    pub files: u64,
    pub docs: u64,
    pub bytes: u64,
    pub skipped: u64,
}

/// stats.json of a source stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStats {
    pub docs: u64,
    pub bytes: u64,
    pub shards: u64,
    pub skipped: u64,
    /// The first skipped lines: `file:line: reason`.
    pub skipped_samples: Vec<String>,
    pub inputs: Vec<InputStats>,
}

impl Stage for Source {
    fn kind(&self) -> &'static str {
        "source"
    }

    fn summary(&self) -> &'static str {
        "reads JSONL, text and Parquet files or generates a synthetic corpus into document shards"
    }

    fn version(&self) -> u32 {
        1
    }

    fn children(&self) -> &'static [&'static str] {
        &["jsonl", "text", "parquet", "synthetic", "on-error"]
    }

    fn decode(&self, stage: &StageDecl, cx: &DecodeCx<'_>, sink: &mut Sink) -> Value {
        let dir = &cx.recipe.dir;
        let mut inputs = Vec::new();
        let mut on_error = OnError::Fail;
        for node in &stage.body {
            let path = |node: &KdlNode, sink: &mut Sink, what: &str| {
                let path = node.arg_spanned::<String>(0, sink)?;
                check_declared_files(dir, stage, &path, what, sink);
                Some(path.value)
            };
            match node.node_name() {
                "jsonl" => {
                    node.check_entries(1, &["field"], sink);
                    let field = node
                        .prop::<String>("field", sink)
                        .unwrap_or_else(|| "text".to_owned());
                    if let Some(path) = path(node, sink, "JSON Lines file") {
                        inputs.push(SourceInput::Jsonl { path, field });
                    }
                }
                "text" => {
                    node.check_entries(1, &["split"], sink);
                    let split = match node.prop_spanned::<String>("split", sink) {
                        None => Some(TextSplit::File),
                        Some(s) => match s.value.as_str() {
                            "file" => Some(TextSplit::File),
                            "paragraph" => Some(TextSplit::Paragraph),
                            "line" => Some(TextSplit::Line),
                            other => {
                                sink.push(RecipeError::InvalidValue {
                                    message: format!("unknown text split `{other}`"),
                                    span: s.span,
                                    label: "not a split".to_owned(),
                                    help: "use split=\"file\" (one document per file), \"paragraph\" or \"line\"".to_owned(),
                                });
                                None
                            }
                        },
                    };
                    if let (Some(path), Some(split)) = (path(node, sink, "text file"), split) {
                        inputs.push(SourceInput::Text { path, split });
                    }
                }
                "parquet" => {
                    node.check_entries(1, &["column"], sink);
                    let column = node
                        .prop::<String>("column", sink)
                        .unwrap_or_else(|| "text".to_owned());
                    if let Some(path) = path(node, sink, "Parquet file") {
                        inputs.push(SourceInput::Parquet { path, column });
                    }
                }
                "synthetic" => {
                    node.check_entries(1, &["docs", "seed"], sink);
                    let kind = node.arg_spanned::<String>(0, sink).and_then(|k| {
                        let kind = SyntheticKind::from_name(&k.value);
                        if kind.is_none() {
                            sink.push(RecipeError::InvalidValue {
                                message: format!("unknown synthetic corpus `{}`", k.value),
                                span: k.span,
                                label: "not a synthetic corpus".to_owned(),
                                help: yiflow_dsl::did_you_mean(
                                    &k.value,
                                    SyntheticKind::ALL.map(SyntheticKind::name),
                                    "",
                                ),
                            });
                        }
                        kind
                    });
                    let docs = count_prop(node, "docs", sink);
                    if !has_prop(node, "docs") {
                        sink.push(RecipeError::MissingValue {
                            what: "the number of documents of `synthetic`".to_owned(),
                            span: node.name_span(),
                            help: "write it as docs=N, e.g. `synthetic stories docs=20000`"
                                .to_owned(),
                        });
                    }
                    let seed = node.prop::<u64>("seed", sink).unwrap_or(cx.recipe.seed);
                    if let (Some(kind), Some(docs)) = (kind, docs) {
                        inputs.push(SourceInput::Synthetic { kind, docs, seed });
                    }
                }
                "on-error" => {
                    node.check_entries(1, &[], sink);
                    if let Some(rule) = node.arg_spanned::<String>(0, sink) {
                        match rule.value.as_str() {
                            "skip" => on_error = OnError::Skip,
                            "fail" => on_error = OnError::Fail,
                            other => sink.push(RecipeError::InvalidValue {
                                message: format!("unknown error rule `{other}`"),
                                span: rule.span,
                                label: "not a rule".to_owned(),
                                help: "use `on-error skip` or `on-error fail`".to_owned(),
                            }),
                        }
                    }
                }
                _ => {}
            }
        }
        if inputs.is_empty()
            && !stage
                .body
                .iter()
                .any(|n| self.children()[..4].contains(&n.node_name()))
        {
            sink.push(RecipeError::MissingValue {
                what: format!("the input of source stage `{}`", stage.name.value),
                span: stage.name.span,
                help: "add `jsonl \"GLOB\"`, `text \"GLOB\"`, `parquet \"GLOB\"` or `synthetic stories docs=N`".to_owned(),
            });
        }
        serde_json::to_value(SourceParams { inputs, on_error }).unwrap_or(Value::Null)
    }

    fn launch(&self, _params: &Value) -> Launch {
        Launch::Internal
    }

    fn execute(&self, params: &Value, io: &StageIo) -> Result<(), ExecError> {
        let params: SourceParams = serde_json::from_value(params.clone())?;
        let stats = run(&params, &io.recipe_dir, &io.out)?;
        tracing::info!(
            docs = stats.docs,
            bytes = stats.bytes,
            skipped = stats.skipped,
            "source written"
        );
        Ok(())
    }
}

/// A count written as a number (`docs=20000`) or a string with a suffix (`docs="20K"`); `None` when
/// absent or wrong (reported).
pub(crate) fn count_prop(node: &KdlNode, name: &str, sink: &mut Sink) -> Option<u64> {
    let value = node.prop_spanned::<KdlValue>(name, sink)?;
    let parsed = match &value.value {
        KdlValue::Integer(i) => u64::try_from(*i).ok(),
        KdlValue::String(s) => yiflow_dsl::parse_count(s),
        _ => None,
    };
    if parsed.is_none() {
        sink.push(RecipeError::InvalidValue {
            message: format!("`{name}` of `{}` must be a whole number", node.node_name()),
            span: value.span,
            label: "not a count".to_owned(),
            help: format!("write e.g. {name}=20000 or {name}=\"20K\""),
        });
    }
    parsed
}

/// True when the node has a property `name`.
pub(crate) fn has_prop(node: &KdlNode, name: &str) -> bool {
    node.entries()
        .iter()
        .any(|e| e.name().is_some_and(|n| n.value() == name))
}

/// Reads every input of `params` into document shards in `out` and writes stats.json.
pub fn run(params: &SourceParams, recipe_dir: &Path, out: &Path) -> Result<SourceStats, DataError> {
    let mut writer = DocumentWriter::create(out, SHARD_BYTES)?;
    let mut stats = SourceStats::default();
    for input in &params.inputs {
        let mut input_stats = InputStats {
            input: describe(input),
            ..InputStats::default()
        };
        let mut sink = DocSink {
            writer: &mut writer,
            stats: &mut input_stats,
            skipped: &mut stats.skipped_samples,
            on_error: params.on_error,
        };
        match input {
            SourceInput::Synthetic { kind, docs, seed } => {
                let mut start = 0;
                while start < *docs {
                    let end = (start + BATCH_LINES as u64).min(*docs);
                    let batch: Vec<(String, usize)> = (start..end)
                        .into_par_iter()
                        .map(|i| {
                            let d = kind.document(*seed, i);
                            (d.to_line(), d.text.len())
                        })
                        .collect();
                    for (line, bytes) in batch {
                        sink.keep_line(&line, bytes)?;
                    }
                    start = end;
                }
            }
            SourceInput::Jsonl { path, field } => {
                for file in files_of(recipe_dir, path)? {
                    sink.stats.files += 1;
                    read_jsonl(&file, &display(recipe_dir, &file), field, &mut sink)?;
                }
            }
            SourceInput::Text { path, split } => {
                for file in files_of(recipe_dir, path)? {
                    sink.stats.files += 1;
                    read_text(&file, &display(recipe_dir, &file), *split, &mut sink)?;
                }
            }
            SourceInput::Parquet { path, column } => {
                for file in files_of(recipe_dir, path)? {
                    sink.stats.files += 1;
                    let name = display(recipe_dir, &file);
                    for row in ParquetTexts::open(&file, column)? {
                        let (number, text) = row?;
                        match text {
                            Ok(text) if text.trim().is_empty() => {}
                            Ok(text) => {
                                sink.keep(&Document::new(text, format!("{name}:{number}")))?;
                            }
                            Err(reason) => {
                                sink.bad(&file, &name, number, &format!("row {number}: {reason}"))?;
                            }
                        }
                    }
                }
            }
        }
        stats.docs += input_stats.docs;
        stats.bytes += input_stats.bytes;
        stats.skipped += input_stats.skipped;
        stats.inputs.push(input_stats);
    }
    stats.shards = writer.finish()?.shards;
    let path = out.join("stats.json");
    let text =
        serde_json::to_string_pretty(&stats).map_err(|e| DataError::Params(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| DataError::write(&path, e))?;
    Ok(stats)
}

fn describe(input: &SourceInput) -> String {
    match input {
        SourceInput::Jsonl { path, field } => format!("jsonl {path} field={field}"),
        SourceInput::Text { path, split } => format!(
            "text {path} split={}",
            json!(split).as_str().unwrap_or_default()
        ),
        SourceInput::Parquet { path, column } => format!("parquet {path} column={column}"),
        SourceInput::Synthetic { kind, docs, seed } => {
            format!("synthetic {} docs={docs} seed={seed}", kind.name())
        }
    }
}

fn files_of(dir: &Path, pattern: &str) -> Result<Vec<std::path::PathBuf>, DataError> {
    let files = expand_glob(dir, pattern).map_err(|reason| DataError::Glob {
        pattern: pattern.to_owned(),
        reason,
    })?;
    if files.is_empty() {
        return Err(DataError::NoMatch {
            pattern: pattern.to_owned(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

fn display(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

/// Where documents of one input go, with the error rule applied.
struct DocSink<'a> {
    writer: &'a mut DocumentWriter,
    stats: &'a mut InputStats,
    skipped: &'a mut Vec<String>,
    on_error: OnError,
}

impl DocSink<'_> {
    fn keep(&mut self, doc: &Document) -> Result<(), DataError> {
        self.keep_line(&doc.to_line(), doc.text.len())
    }

    fn keep_line(&mut self, line: &str, bytes: usize) -> Result<(), DataError> {
        self.writer.write_line(line, bytes)?;
        self.stats.docs += 1;
        self.stats.bytes += bytes as u64;
        Ok(())
    }

    fn bad(&mut self, path: &Path, name: &str, line: u64, reason: &str) -> Result<(), DataError> {
        if self.on_error == OnError::Fail {
            return Err(DataError::Malformed {
                path: path.to_path_buf(),
                line,
                reason: format!("{reason} (write `on-error skip` to skip such lines)"),
            });
        }
        self.stats.skipped += 1;
        if self.skipped.len() < SKIPPED_SAMPLES {
            self.skipped.push(format!("{name}:{line}: {reason}"));
        }
        Ok(())
    }
}

fn extract(line: &str, field: &str) -> Result<Option<String>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let found = if field.starts_with('/') {
        value.pointer(field)
    } else {
        value.get(field)
    };
    match found {
        Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.clone())),
        Some(Value::Null) | None => Err(format!("no `{field}` field")),
        Some(other) => Err(format!(
            "`{field}` is not a string but {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_jsonl(
    path: &Path,
    name: &str,
    field: &str,
    sink: &mut DocSink<'_>,
) -> Result<(), DataError> {
    let mut reader = LineReader::open(path, MAX_LINE_BYTES)?;
    let mut done = false;
    while !done {
        let mut batch = Vec::with_capacity(BATCH_LINES);
        while batch.len() < BATCH_LINES {
            match reader.next_line()? {
                Some(Line::Text { text, .. }) if text.trim().is_empty() => {}
                Some(Line::Text { number, text }) => batch.push((number, Ok(text))),
                Some(Line::Bad { number, reason }) => batch.push((number, Err(reason))),
                None => {
                    done = true;
                    break;
                }
            }
        }
        let parsed: Vec<(u64, Result<Option<String>, String>)> = batch
            .into_par_iter()
            .map(|(n, line)| (n, line.and_then(|l| extract(&l, field))))
            .collect();
        for (number, result) in parsed {
            match result {
                Ok(Some(text)) => sink.keep(&Document::new(text, format!("{name}:{number}")))?,
                Ok(None) => {}
                Err(reason) => sink.bad(path, name, number, &reason)?,
            }
        }
    }
    Ok(())
}

fn read_text(
    path: &Path,
    name: &str,
    split: TextSplit,
    sink: &mut DocSink<'_>,
) -> Result<(), DataError> {
    let mut reader = LineReader::open(path, MAX_LINE_BYTES)?;
    let mut doc = String::new();
    let mut first_line = 1;
    let flush = |doc: &mut String, first: u64, sink: &mut DocSink<'_>| -> Result<(), DataError> {
        if !doc.trim().is_empty() {
            let source = if split == TextSplit::File {
                name.to_owned()
            } else {
                format!("{name}:{first}")
            };
            sink.keep(&Document::new(std::mem::take(doc), source))?;
        }
        doc.clear();
        Ok(())
    };
    while let Some(line) = reader.next_line()? {
        match line {
            Line::Bad { number, reason } => sink.bad(path, name, number, &reason)?,
            Line::Text { number, text } => match split {
                TextSplit::Line => {
                    doc.push_str(&text);
                    flush(&mut doc, number, sink)?;
                }
                TextSplit::Paragraph if text.trim().is_empty() => {
                    flush(&mut doc, first_line, sink)?;
                }
                TextSplit::Paragraph | TextSplit::File => {
                    if doc.is_empty() {
                        first_line = number;
                    } else {
                        doc.push('\n');
                    }
                    doc.push_str(&text);
                    if doc.len() > MAX_LINE_BYTES {
                        doc.clear();
                        sink.bad(
                            path,
                            name,
                            number,
                            &format!("document is longer than {MAX_LINE_BYTES} bytes"),
                        )?;
                    }
                }
            },
        }
    }
    flush(&mut doc, first_line, sink)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data::testing::{io, params, problems, read_docs, stats};

    fn write_gz(path: &Path, text: &str) {
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
    }

    #[test]
    fn decode_fills_defaults_and_takes_the_recipe_seed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/a.jsonl"), "").unwrap();
        let p = params(
            dir.path(),
            "recipe r { seed 7 }\nstage c kind=source { files \"data\"; jsonl \"data/*.jsonl\"; synthetic stories docs=\"2K\" }",
            "c",
        );
        assert_eq!(
            p,
            json!({"inputs": [{"jsonl": {"path": "data/*.jsonl", "field": "text"}},
                              {"synthetic": {"kind": "stories", "docs": 2000, "seed": 7}}],
                   "on-error": "fail"})
        );
    }

    #[test]
    fn decode_reports_every_mistake() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        let text = "stage c kind=source {\n text \"a.txt\" split=\"word\"\n jsonl \"missing/*.jsonl\"\n \
                    text \"a.txt\"\n synthetic poems docs=3\n synthetic stories\n on-error maybe\n}";
        let report = problems(dir.path(), text);
        assert!(report.contains("unknown text split `word`"), "{report}");
        assert!(
            report.contains("`missing/*.jsonl` matches no file"),
            "{report}"
        );
        assert!(
            report.contains("text file `a.txt` is not listed under the stage's `files`"),
            "{report}"
        );
        assert!(report.contains("add `files \"a.txt\"`"), "{report}");
        assert!(
            report.contains("unknown synthetic corpus `poems`"),
            "{report}"
        );
        assert!(
            report.contains("number of documents of `synthetic` is missing"),
            "{report}"
        );
        assert!(report.contains("unknown error rule `maybe`"), "{report}");
        let empty = problems(dir.path(), "stage c kind=source { }");
        assert!(
            empty.contains("input of source stage `c` is missing"),
            "{empty}"
        );
    }

    #[test]
    fn jsonl_gzip_with_a_malformed_line_fails_or_skips_as_told() {
        let dir = tempfile::tempdir().unwrap();
        write_gz(
            &dir.path().join("a.jsonl.gz"),
            "{\"text\": \"first\"}\n\n{\"body\": \"x\"}\n{\"text\": \"third\"}\nnot json\n",
        );
        let mut p = SourceParams {
            inputs: vec![SourceInput::Jsonl {
                path: "*.jsonl.gz".into(),
                field: "text".into(),
            }],
            on_error: OnError::Fail,
        };
        let out = dir.path().join("out");
        let err = run(&p, dir.path(), &out).unwrap_err().to_string();
        assert!(err.contains("a.jsonl.gz:3: no `text` field"), "{err}");
        p.on_error = OnError::Skip;
        let out = dir.path().join("out2");
        Source
            .execute(
                &serde_json::to_value(&p).unwrap(),
                &io(dir.path(), &out, &[]),
            )
            .unwrap();
        let docs = read_docs(&out);
        assert_eq!(
            docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
            ["first", "third"]
        );
        assert_eq!(docs[1].source, "a.jsonl.gz:4");
        let s = stats(&out);
        assert_eq!(s["docs"], 2);
        assert_eq!(s["skipped"], 2);
        assert!(
            s["skipped_samples"][1]
                .as_str()
                .unwrap()
                .starts_with("a.jsonl.gz:5: not JSON"),
            "{s}"
        );
    }

    #[test]
    fn text_files_split_by_paragraph_line_or_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "one\ntwo\n\n\nthree\n").unwrap();
        let texts = |split| {
            let out = dir.path().join(format!("out-{split:?}"));
            let p = SourceParams {
                inputs: vec![SourceInput::Text {
                    path: "b.txt".into(),
                    split,
                }],
                on_error: OnError::Fail,
            };
            run(&p, dir.path(), &out).unwrap();
            read_docs(&out)
                .into_iter()
                .map(|d| (d.text, d.source))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            texts(TextSplit::File),
            [("one\ntwo\n\n\nthree".to_owned(), "b.txt".to_owned())]
        );
        assert_eq!(
            texts(TextSplit::Paragraph),
            [
                ("one\ntwo".to_owned(), "b.txt:1".to_owned()),
                ("three".to_owned(), "b.txt:5".to_owned())
            ]
        );
        assert_eq!(texts(TextSplit::Line).len(), 3);
    }

    #[test]
    fn parquet_rows_become_documents() {
        let dir = tempfile::tempdir().unwrap();
        crate::data::parquet_tests::write_parquet(
            &dir.path().join("p.parquet"),
            &[Some("alpha"), None, Some("gamma")],
        );
        let out = dir.path().join("out");
        let p = SourceParams {
            inputs: vec![SourceInput::Parquet {
                path: "p.parquet".into(),
                column: "text".into(),
            }],
            on_error: OnError::Skip,
        };
        let stats = run(&p, dir.path(), &out).unwrap();
        assert_eq!(stats.docs, 2);
        assert_eq!(stats.skipped, 1);
        assert_eq!(read_docs(&out)[1].source, "p.parquet:3");
    }

    #[test]
    fn synthetic_corpus_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let p = SourceParams {
            inputs: vec![SourceInput::Synthetic {
                kind: SyntheticKind::WordProblems,
                docs: 10_000,
                seed: 3,
            }],
            on_error: OnError::Fail,
        };
        run(&p, dir.path(), &dir.path().join("a")).unwrap();
        run(&p, dir.path(), &dir.path().join("b")).unwrap();
        let (a, b) = (
            read_docs(&dir.path().join("a")),
            read_docs(&dir.path().join("b")),
        );
        assert_eq!(a.len(), 10_000);
        assert_eq!(a, b);
        assert_eq!(a[17], SyntheticKind::WordProblems.document(3, 17));
    }
}
