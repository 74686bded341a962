//! The document format between data stages: JSON Lines shards `documents/part-NNNNN.jsonl` in an
//! artifact folder, one `{"text", "source", "meta"}` object per line. [`DocumentWriter`] rolls shards
//! over by size; [`DocumentFiles`] finds the shards of an upstream artifact (or, for a `command` stage's
//! output, its plain `*.jsonl` / `*.jsonl.gz` files) and [`DocumentBatches`] streams them in bounded
//! batches.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{DataError, Line, LineReader};

/// Folder of an artifact that holds the document shards.
pub const DOCUMENTS_DIR: &str = "documents";
/// Longest line a document shard may hold (a document of 256 MiB of JSON).
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// One document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub text: String,
    /// Where the document came from (`file:line`, `synthetic:stories:17`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Anything else worth carrying along (the checkable answer of a synthetic problem, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
}

impl Document {
    pub fn new(text: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            source: source.into(),
            meta: None,
        }
    }

    /// Parses one shard line.
    pub fn from_line(line: &str) -> Result<Self, String> {
        serde_json::from_str(line).map_err(|e| format!("not a document ({e})"))
    }

    /// The document as one shard line, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a [`DocumentWriter`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenDocuments {
    pub docs: u64,
    /// Bytes of document text (UTF-8), not of JSON.
    pub bytes: u64,
    pub shards: u64,
}

/// Writes documents into size-limited shards under `<out>/documents/`.
pub struct DocumentWriter {
    dir: PathBuf,
    shard_bytes: u64,
    current: Option<(PathBuf, BufWriter<File>, u64)>,
    written: WrittenDocuments,
}

impl DocumentWriter {
    /// A writer into `<out>/documents/`, starting a new shard past `shard_bytes` of JSON.
    pub fn create(out: &Path, shard_bytes: u64) -> Result<Self, DataError> {
        let dir = out.join(DOCUMENTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| DataError::write(&dir, e))?;
        Ok(Self {
            dir,
            shard_bytes: shard_bytes.max(1),
            current: None,
            written: WrittenDocuments::default(),
        })
    }

    pub fn write(&mut self, doc: &Document) -> Result<(), DataError> {
        self.write_line(&doc.to_line(), doc.text.len())
    }

    /// Writes a line already serialised by [`Document::to_line`] (so callers can serialise in parallel).
    pub fn write_line(&mut self, line: &str, text_bytes: usize) -> Result<(), DataError> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, n)| *n >= self.shard_bytes)
        {
            self.close_shard()?;
        }
        if self.current.is_none() {
            let path = self
                .dir
                .join(format!("part-{:05}.jsonl", self.written.shards));
            let file = File::create(&path).map_err(|e| DataError::write(&path, e))?;
            self.current = Some((path, BufWriter::with_capacity(1 << 20, file), 0));
            self.written.shards += 1;
        }
        let (path, writer, n) = self.current.as_mut().expect("opened above");
        writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.write_all(b"\n"))
            .map_err(|e| DataError::write(path.as_path(), e))?;
        *n += line.len() as u64 + 1;
        self.written.docs += 1;
        self.written.bytes += text_bytes as u64;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        if let Some((path, mut writer, _)) = self.current.take() {
            writer.flush().map_err(|e| DataError::write(&path, e))?;
            writer
                .get_ref()
                .sync_all()
                .map_err(|e| DataError::write(&path, e))?;
        }
        Ok(())
    }

    /// Flushes the last shard and says what was written.
    pub fn finish(mut self) -> Result<WrittenDocuments, DataError> {
        self.close_shard()?;
        Ok(self.written)
    }
}

/// The document files of one or more upstream artifacts, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct DocumentFiles {
    pub files: Vec<PathBuf>,
}

impl DocumentFiles {
    /// The shards of each folder in turn: `documents/*.jsonl`, else the folder's own `*.jsonl` and
    /// `*.jsonl.gz` files.
    pub fn find<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<Self, DataError> {
        let mut files = Vec::new();
        for dir in dirs {
            let shards = dir.join(DOCUMENTS_DIR);
            let mut found = if shards.is_dir() {
                list_jsonl(&shards)?
            } else {
                list_jsonl(dir)?
            };
            if found.is_empty() && !shards.is_dir() {
                return Err(DataError::NotDocuments {
                    path: dir.to_path_buf(),
                    reason: "it has neither a documents/ folder nor *.jsonl files".to_owned(),
                });
            }
            found.sort();
            files.extend(found);
        }
        Ok(Self { files })
    }

    /// Total size on disk, for progress and throughput.
    pub fn disk_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Streams the lines of every file in batches of about `batch_bytes`.
    pub fn batches(&self, batch_bytes: usize) -> DocumentBatches<'_> {
        DocumentBatches {
            files: &self.files,
            next_file: 0,
            reader: None,
            batch_bytes,
        }
    }
}

fn list_jsonl(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::read(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::read(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_file() && is_jsonl_name(&name) {
            files.push(path);
        }
    }
    Ok(files)
}

/// True for `*.jsonl` and `*.jsonl.gz` names, in any case.
pub fn is_jsonl_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    Path::new(stem).extension().is_some_and(|e| e == "jsonl")
}

/// One raw line of a document file, with where it came from.
#[derive(Debug)]
pub struct RawLine {
    /// Index into [`DocumentFiles::files`].
    pub file: usize,
    pub line: u64,
    /// The line's text, or why it could not be read as text.
    pub text: Result<String, String>,
}

/// Iterator over batches of [`RawLine`]s; parse them with [`Document::from_line`], in parallel if useful.
pub struct DocumentBatches<'a> {
    files: &'a [PathBuf],
    next_file: usize,
    reader: Option<(usize, LineReader)>,
    batch_bytes: usize,
}

impl Iterator for DocumentBatches<'_> {
    type Item = Result<Vec<RawLine>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while bytes < self.batch_bytes {
            if self.reader.is_none() {
                if self.next_file >= self.files.len() {
                    break;
                }
                match LineReader::open(&self.files[self.next_file], MAX_LINE_BYTES) {
                    Ok(reader) => self.reader = Some((self.next_file, reader)),
                    Err(e) => return Some(Err(e)),
                }
                self.next_file += 1;
            }
            let (file, reader) = self.reader.as_mut().expect("opened above");
            match reader.next_line() {
                Ok(Some(Line::Text { number, text })) => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    bytes += text.len();
                    batch.push(RawLine {
                        file: *file,
                        line: number,
                        text: Ok(text),
                    });
                }
                Ok(Some(Line::Bad { number, reason })) => {
                    batch.push(RawLine {
                        file: *file,
                        line: number,
                        text: Err(reason),
                    });
                }
                Ok(None) => self.reader = None,
                Err(e) => return Some(Err(e)),
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_rolls_shards_and_reader_reads_them_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = DocumentWriter::create(dir.path(), 64).unwrap();
        let docs: Vec<Document> = (0..10)
            .map(|i| Document::new(format!("document number {i}"), format!("t:{i}")))
            .collect();
        for doc in &docs {
            writer.write(doc).unwrap();
        }
        let written = writer.finish().unwrap();
        assert_eq!(written.docs, 10);
        assert!(written.shards > 1, "{written:?}");
        let files = DocumentFiles::find([dir.path()]).unwrap();
        assert_eq!(files.files.len() as u64, written.shards);
        let mut back = Vec::new();
        for batch in files.batches(50) {
            for raw in batch.unwrap() {
                back.push(Document::from_line(&raw.text.unwrap()).unwrap());
            }
        }
        assert_eq!(back, docs);
    }

    #[test]
    fn plain_jsonl_folders_are_documents_too_and_empty_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            DocumentFiles::find([dir.path()]),
            Err(DataError::NotDocuments { .. })
        ));
        std::fs::write(
            dir.path().join("x.jsonl"),
            "{\"text\":\"hi\",\"extra\":1}\n\n",
        )
        .unwrap();
        let files = DocumentFiles::find([dir.path()]).unwrap();
        let batch = files.batches(1 << 20).next().unwrap().unwrap();
        assert_eq!(batch.len(), 1, "blank lines are skipped");
        assert_eq!(
            Document::from_line(batch[0].text.as_ref().unwrap())
                .unwrap()
                .text,
            "hi"
        );
    }
}
