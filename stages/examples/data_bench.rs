//! Drives the data stage kinds for `bench/data/run.sh`: builds the benchmark input and runs the
//! `filter`, `bpe` and `tokenize` kinds through their real `execute`, printing one JSON line of timings.
//!
//! ```text
//! data_bench make-input SHARED_DATA_DIR OUT_DIR MEGABYTES
//! data_bench filter INPUT_DIR OUT_DIR
//! data_bench bpe INPUT_DIR OUT_DIR VOCAB
//! data_bench tokenize INPUT_DIR TOKENIZER_DIR OUT_DIR
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use yiflow_engine::{Stage, StageIo};
use yiflow_stages::data::{
    Document, DocumentFiles, DocumentWriter, Line, LineReader, MinHashParams, PiiKind,
    QualityRules, RepetitionRules, Rng, SyntheticKind,
};
use yiflow_stages::{Bpe, BpeParams, Filter, FilterParams, Tokenize, TokenizeParams};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn io(out: &Path, inputs: &[(&str, &Path)]) -> StageIo {
    StageIo {
        stage: "bench".into(),
        kind: "bench".into(),
        out: out.to_path_buf(),
        inputs: inputs
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.to_path_buf()))
            .collect(),
        checkpoints: out.join("checkpoints"),
        devices: Vec::new(),
        seed: 1,
        recipe_dir: std::env::current_dir().unwrap_or_default(),
        params_file: out.join("params.json"),
    }
}

fn input_mb(dir: &Path) -> Result<f64> {
    let files = DocumentFiles::find([dir])?;
    let mut bytes = 0u64;
    for batch in files.batches(64 << 20) {
        for raw in batch? {
            bytes += Document::from_line(&raw.text?)?.text.len() as u64;
        }
    }
    Ok(bytes as f64 / 1e6)
}

/// The shared corpora, then synthetic "web pages" (several stories and problems per page, some with an
/// e-mail address or IP, some pages repeated) until the text reaches `megabytes`.
fn make_input(shared: &Path, out: &Path, megabytes: u64) -> Result<()> {
    let mut writer = DocumentWriter::create(out, 64 << 20)?;
    let mut bytes = 0u64;
    let corpora = [
        "gutenberg_books.jsonl.gz",
        "wikitext2_raw_test.jsonl.gz",
        "chinese_poetry_classics.jsonl.gz",
        "chinese_trpl_zh.jsonl.gz",
        "code_python_stdlib.jsonl.gz",
        "code_rust_crates.jsonl.gz",
    ];
    for name in corpora {
        let path = shared.join(name);
        let mut reader = LineReader::open(&path, 1 << 30)?;
        while let Some(line) = reader.next_line()? {
            if let Line::Text { number, text } = line {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                if let Some(t) = value["text"].as_str() {
                    bytes += t.len() as u64;
                    writer.write(&Document::new(t, format!("{name}:{number}")))?;
                }
            }
        }
    }
    let shakespeare = std::fs::read_to_string(shared.join("tinyshakespeare.txt"))?;
    for (i, chunk) in shakespeare
        .split("\n\n")
        .collect::<Vec<_>>()
        .chunks(40)
        .enumerate()
    {
        let text = chunk.join("\n\n");
        bytes += text.len() as u64;
        writer.write(&Document::new(text, format!("tinyshakespeare.txt:{i}")))?;
    }
    let mut rng = Rng::new(42);
    let mut page = 0u64;
    let mut previous: Vec<String> = Vec::new();
    while bytes < megabytes * 1_000_000 {
        let text = if page % 33 == 7 && !previous.is_empty() {
            previous[(rng.next_u64() % previous.len() as u64) as usize].clone()
        } else {
            let mut parts = Vec::new();
            for k in 0..rng.range(3, 9) as u64 {
                let kind = if k % 3 == 2 {
                    SyntheticKind::WordProblems
                } else {
                    SyntheticKind::Stories
                };
                parts.push(kind.document(7, page * 16 + k).text);
            }
            if page % 20 == 3 {
                parts.push(format!(
                    "Contact us at user{page}@example.org or visit 10.{}.{}.{}.",
                    page % 250,
                    (page / 7) % 250,
                    page % 97
                ));
            }
            parts.join("\n\n")
        };
        if previous.len() < 1000 {
            previous.push(text.clone());
        }
        bytes += text.len() as u64;
        writer.write(&Document::new(text, format!("synthetic-page:{page}")))?;
        page += 1;
    }
    let written = writer.finish()?;
    println!(
        "{}",
        json!({"docs": written.docs, "mb": written.bytes as f64 / 1e6})
    );
    Ok(())
}

/// The pipeline datatrove runs in bench/data/peers.py: Gopher quality and repetition, e-mail and IP
/// redaction, MinHash dedup with 5-grams and 112 hash functions.
fn filter_params() -> FilterParams {
    FilterParams {
        quality: QualityRules::gopher(),
        repetition: RepetitionRules::gopher(),
        redact: vec![PiiKind::Email, PiiKind::Ip],
        minhash: Some(MinHashParams {
            threshold: 0.72,
            ngram: 5,
            permutations: 112,
            bands: 14,
            rows: 8,
        }),
        ..FilterParams::default()
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path =
        |i: usize| -> Result<PathBuf> { Ok(PathBuf::from(args.get(i).ok_or("missing argument")?)) };
    let start = Instant::now();
    match args.first().map(String::as_str) {
        Some("make-input") => make_input(
            &path(1)?,
            &path(2)?,
            args.get(3).ok_or("missing MEGABYTES")?.parse()?,
        )?,
        Some("filter") => {
            let (input, out) = (path(1)?, path(2)?);
            let mb = input_mb(&input)?;
            let start = Instant::now();
            Filter.execute(
                &serde_json::to_value(filter_params())?,
                &io(&out, &[("input", &input)]),
            )?;
            let secs = start.elapsed().as_secs_f64();
            let stats: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("stats.json"))?)?;
            println!(
                "{}",
                json!({"seconds": secs, "mb": mb, "mb_per_s": mb / secs, "docs_in": stats["docs_in"], "docs_kept": stats["docs_kept"]})
            );
        }
        Some("bpe") => {
            let (input, out) = (path(1)?, path(2)?);
            let vocab: usize = args.get(3).ok_or("missing VOCAB")?.parse()?;
            Bpe.execute(
                &serde_json::to_value(BpeParams::new(vocab))?,
                &io(&out, &[("input", &input)]),
            )?;
            println!("{}", json!({"seconds": start.elapsed().as_secs_f64()}));
        }
        Some("tokenize") => {
            let (input, tokenizer, out) = (path(1)?, path(2)?, path(3)?);
            let mb = input_mb(&input)?;
            let start = Instant::now();
            let params = TokenizeParams {
                validation: 0.0,
                ..TokenizeParams::default()
            };
            Tokenize.execute(
                &serde_json::to_value(params)?,
                &io(&out, &[("input", &input), ("tokenizer", &tokenizer)]),
            )?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"seconds": secs, "mb": mb, "mb_per_s": mb / secs})
            );
        }
        _ => return Err("usage: data_bench make-input|filter|bpe|tokenize ...".into()),
    }
    Ok(())
}
