//! Binary token shards, the artifact of the `tokenize` kind and the pretraining data: per split
//! (`train`, `val`) a series of `NAME-NNNNN.bin` files of little-endian token ids (u16 when the vocab
//! fits, else u32) and `NAME-NNNNN.docs` files of little-endian u64 document start offsets (one per
//! document, then the shard's end), described by `index.json`. Documents never straddle shards.
//!
//! [`TokenShards`] reads them through memory mapping; [`TokenSplit::packed`] cuts a split's token
//! stream into fixed-length training sequences with the document boundaries inside each.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::data::DataError;

/// Folder of an artifact that holds the shards.
pub const TOKENS_DIR: &str = "tokens";
/// Name of the index file in [`TOKENS_DIR`].
pub const INDEX_FILE: &str = "index.json";

/// Width of a stored token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    U16,
    U32,
}

impl TokenDtype {
    /// The narrowest width that holds every id of a vocabulary.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// One shard as recorded in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub docs_file: String,
    pub tokens: u64,
    pub docs: u64,
}

/// One split as recorded in the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntry {
    pub tokens: u64,
    pub docs: u64,
    pub shards: Vec<ShardEntry>,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    pub format: u32,
    pub dtype: TokenDtype,
    pub vocab_size: usize,
    /// The id that ends every document, if the documents were written with one.
    pub eos: Option<u32>,
    /// The id that starts every document, if any.
    pub bos: Option<u32>,
    pub splits: std::collections::BTreeMap<String, SplitEntry>,
}

/// Writes one split's shards.
pub struct ShardWriter {
    dir: PathBuf,
    split: String,
    dtype: TokenDtype,
    shard_tokens: u64,
    current: Option<OpenShard>,
    entry: SplitEntry,
    buf: Vec<u8>,
}

struct OpenShard {
    tokens_path: PathBuf,
    docs_path: PathBuf,
    tokens: BufWriter<File>,
    starts: Vec<u64>,
    written: u64,
}

impl ShardWriter {
    /// A writer of `<dir>/<split>-NNNNN.{bin,docs}`, starting a new shard past `shard_tokens`.
    pub fn new(
        dir: &Path,
        split: &str,
        dtype: TokenDtype,
        shard_tokens: u64,
    ) -> Result<Self, DataError> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::write(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            split: split.to_owned(),
            dtype,
            shard_tokens: shard_tokens.max(1),
            current: None,
            entry: SplitEntry::default(),
            buf: Vec::new(),
        })
    }

    /// Appends one document's tokens (with its boundary tokens already in place).
    pub fn write_document(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.written >= self.shard_tokens)
        {
            self.close_shard()?;
        }
        if self.current.is_none() {
            let n = self.entry.shards.len();
            let tokens_path = self.dir.join(format!("{}-{n:05}.bin", self.split));
            let docs_path = self.dir.join(format!("{}-{n:05}.docs", self.split));
            let file = File::create(&tokens_path).map_err(|e| DataError::write(&tokens_path, e))?;
            self.current = Some(OpenShard {
                tokens_path,
                docs_path,
                tokens: BufWriter::with_capacity(1 << 20, file),
                starts: Vec::new(),
                written: 0,
            });
        }
        let shard = self.current.as_mut().expect("opened above");
        self.buf.clear();
        match self.dtype {
            TokenDtype::U16 => {
                for &t in tokens {
                    let t = u16::try_from(t).map_err(|_| DataError::Shards {
                        path: shard.tokens_path.clone(),
                        reason: format!("token id {t} does not fit in u16"),
                    })?;
                    self.buf.extend_from_slice(&t.to_le_bytes());
                }
            }
            TokenDtype::U32 => tokens
                .iter()
                .for_each(|t| self.buf.extend_from_slice(&t.to_le_bytes())),
        }
        shard
            .tokens
            .write_all(&self.buf)
            .map_err(|e| DataError::write(&shard.tokens_path, e))?;
        shard.starts.push(shard.written);
        shard.written += tokens.len() as u64;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        let Some(mut shard) = self.current.take() else {
            return Ok(());
        };
        shard
            .tokens
            .flush()
            .map_err(|e| DataError::write(&shard.tokens_path, e))?;
        let mut docs = Vec::with_capacity((shard.starts.len() + 1) * 8);
        for s in shard.starts.iter().chain(std::iter::once(&shard.written)) {
            docs.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(&shard.docs_path, docs)
            .map_err(|e| DataError::write(&shard.docs_path, e))?;
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        self.entry.tokens += shard.written;
        self.entry.docs += shard.starts.len() as u64;
        self.entry.shards.push(ShardEntry {
            file: name(&shard.tokens_path),
            docs_file: name(&shard.docs_path),
            tokens: shard.written,
            docs: shard.starts.len() as u64,
        });
        Ok(())
    }

    /// Closes the last shard and returns the split's index entry.
    pub fn finish(mut self) -> Result<SplitEntry, DataError> {
        self.close_shard()?;
        Ok(self.entry)
    }
}

impl ShardIndex {
    /// Writes `index.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), DataError> {
        let path = dir.join(INDEX_FILE);
        let text =
            serde_json::to_string_pretty(self).map_err(|e| DataError::Params(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| DataError::write(&path, e))
    }
}

/// Memory-maps a file that never changes after it is written (artifacts are immutable once stored).
fn map(path: &Path) -> Result<Option<Mmap>, DataError> {
    let file = File::open(path).map_err(|e| DataError::read(path, e))?;
    let len = file.metadata().map_err(|e| DataError::read(path, e))?.len();
    if len == 0 {
        return Ok(None); // mapping an empty file fails on some platforms
    }
    // SAFETY: the file is part of a finished artifact: the store writes artifacts into a temporary folder,
    // renames them into place and never modifies them, so the mapped bytes cannot change under us.
    #[allow(unsafe_code)]
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| DataError::read(path, e))?;
    Ok(Some(mmap))
}

/// The token shards of an artifact.
#[derive(Debug, Clone)]
pub struct TokenShards {
    dir: PathBuf,
    index: ShardIndex,
}

impl TokenShards {
    /// Opens an artifact folder (or its `tokens/` folder).
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let dir = if dir.join(TOKENS_DIR).join(INDEX_FILE).is_file() {
            dir.join(TOKENS_DIR)
        } else {
            dir.to_path_buf()
        };
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::read(&path, e))?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| DataError::Shards {
            path: path.clone(),
            reason: format!("index is not valid ({e})"),
        })?;
        Ok(Self { dir, index })
    }

    pub fn index(&self) -> &ShardIndex {
        &self.index
    }

    pub fn vocab_size(&self) -> usize {
        self.index.vocab_size
    }

    pub fn eos(&self) -> Option<u32> {
        self.index.eos
    }

    /// Maps a split (`"train"`, `"val"`), checking each shard's size against the index.
    pub fn split(&self, name: &str) -> Result<TokenSplit, DataError> {
        let entry = self
            .index
            .splits
            .get(name)
            .ok_or_else(|| DataError::Shards {
                path: self.dir.clone(),
                reason: format!(
                    "no split `{name}` (splits: {})",
                    self.index
                        .splits
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let width = self.index.dtype.bytes();
        let mut shards = Vec::with_capacity(entry.shards.len());
        let mut offsets = vec![0u64];
        for shard in &entry.shards {
            let tokens_path = self.dir.join(&shard.file);
            let docs_path = self.dir.join(&shard.docs_file);
            let tokens = map(&tokens_path)?;
            let docs = map(&docs_path)?;
            let token_bytes = tokens.as_ref().map_or(0, |m| m.len());
            let doc_bytes = docs.as_ref().map_or(0, |m| m.len());
            if token_bytes as u64 != shard.tokens * width as u64
                || doc_bytes as u64 != (shard.docs + 1) * 8
            {
                return Err(DataError::Shards {
                    path: tokens_path,
                    reason: format!(
                        "size does not match the index ({token_bytes} token bytes and {doc_bytes} offset bytes for {} tokens in {} documents): the artifact is damaged",
                        shard.tokens, shard.docs
                    ),
                });
            }
            shards.push(MappedShard {
                tokens,
                docs,
                len: shard.tokens,
                doc_count: shard.docs,
            });
            offsets.push(offsets.last().copied().unwrap_or(0) + shard.tokens);
        }
        Ok(TokenSplit {
            dtype: self.index.dtype,
            shards,
            offsets,
            docs: entry.docs,
        })
    }
}

#[derive(Debug)]
struct MappedShard {
    tokens: Option<Mmap>,
    docs: Option<Mmap>,
    len: u64,
    doc_count: u64,
}

impl MappedShard {
    fn doc_start(&self, i: u64) -> u64 {
        let bytes = self.docs.as_deref().unwrap_or(&[]);
        let at = i as usize * 8;
        bytes.get(at..at + 8).map_or(self.len, |b| {
            u64::from_le_bytes(b.try_into().expect("8 bytes"))
        })
    }

    fn read(&self, dtype: TokenDtype, start: u64, out: &mut Vec<u32>, count: usize) {
        let bytes = self.tokens.as_deref().unwrap_or(&[]);
        let w = dtype.bytes();
        let slice = &bytes[start as usize * w..(start as usize + count) * w];
        match dtype {
            TokenDtype::U16 => out.extend(
                slice
                    .chunks_exact(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))),
            ),
            TokenDtype::U32 => out.extend(
                slice
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
        }
    }
}

/// One memory-mapped split: a stream of tokens made of documents.
#[derive(Debug)]
pub struct TokenSplit {
    dtype: TokenDtype,
    shards: Vec<MappedShard>,
    /// Global token offset of each shard's start, then the total.
    offsets: Vec<u64>,
    docs: u64,
}

impl TokenSplit {
    pub fn tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    pub fn docs(&self) -> u64 {
        self.docs
    }

    fn shard_of(&self, token: u64) -> usize {
        self.offsets
            .partition_point(|&o| o <= token)
            .saturating_sub(1)
    }

    /// Appends `count` tokens from global offset `start` (clamped to the end of the split) to `out`.
    pub fn read(&self, start: u64, count: usize, out: &mut Vec<u32>) {
        let end = (start + count as u64).min(self.tokens());
        let mut at = start;
        while at < end {
            let s = self.shard_of(at);
            let local = at - self.offsets[s];
            let take = (self.offsets[s + 1].min(end) - at) as usize;
            self.shards[s].read(self.dtype, local, out, take);
            at += take as u64;
        }
    }

    /// Global offsets of the document starts in `start..end`.
    pub fn doc_starts(&self, start: u64, end: u64) -> Vec<u64> {
        let mut starts = Vec::new();
        if start >= end {
            return starts;
        }
        for s in self.shard_of(start)..self.shards.len() {
            let base = self.offsets[s];
            if base >= end {
                break;
            }
            let shard = &self.shards[s];
            let lo = start.saturating_sub(base);
            // First document starting at or after `lo` (binary search over the offsets file).
            let (mut a, mut b) = (0u64, shard.doc_count);
            while a < b {
                let mid = u64::midpoint(a, b);
                if shard.doc_start(mid) < lo {
                    a = mid + 1;
                } else {
                    b = mid;
                }
            }
            let mut i = a;
            while i < shard.doc_count {
                let global = base + shard.doc_start(i);
                if global >= end {
                    break;
                }
                starts.push(global);
                i += 1;
            }
        }
        starts
    }

    /// The tokens of document `i` in shard order, or `None` past the end.
    pub fn document(&self, mut i: u64) -> Option<Vec<u32>> {
        for (s, shard) in self.shards.iter().enumerate() {
            if i < shard.doc_count {
                let (a, b) = (shard.doc_start(i), shard.doc_start(i + 1));
                let mut out = Vec::with_capacity((b - a) as usize);
                self.read(self.offsets[s] + a, (b - a) as usize, &mut out);
                return Some(out);
            }
            i -= shard.doc_count;
        }
        None
    }

    /// The split cut into sequences of `seq_len` inputs and their next-token targets.
    pub fn packed(&self, seq_len: usize) -> PackedSequences<'_> {
        PackedSequences {
            split: self,
            seq_len: seq_len.max(1),
        }
    }
}

/// Fixed-length training sequences over a split's concatenated documents: sequence `i` holds tokens
/// `i * seq_len ..= (i + 1) * seq_len` (one more than `seq_len`, so inputs and targets are shifted views).
#[derive(Debug, Clone, Copy)]
pub struct PackedSequences<'a> {
    split: &'a TokenSplit,
    seq_len: usize,
}

/// One packed sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// `seq_len + 1` tokens.
    pub tokens: Vec<u32>,
    /// Positions in `tokens` where a document starts (for block-causal masks or position resets).
    pub doc_starts: Vec<u32>,
}

impl Sequence {
    pub fn inputs(&self) -> &[u32] {
        &self.tokens[..self.tokens.len() - 1]
    }

    pub fn targets(&self) -> &[u32] {
        &self.tokens[1..]
    }
}

impl PackedSequences<'_> {
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of whole sequences (the tail shorter than a sequence is left out).
    pub fn len(&self) -> usize {
        (self.split.tokens().saturating_sub(1) / self.seq_len as u64) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Sequence> {
        if i >= self.len() {
            return None;
        }
        let start = (i * self.seq_len) as u64;
        let mut tokens = Vec::with_capacity(self.seq_len + 1);
        self.split.read(start, self.seq_len + 1, &mut tokens);
        let doc_starts = self
            .split
            .doc_starts(start, start + self.seq_len as u64 + 1)
            .into_iter()
            .map(|g| (g - start) as u32)
            .collect();
        Some(Sequence { tokens, doc_starts })
    }

    pub fn iter(&self) -> impl Iterator<Item = Sequence> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, dtype: TokenDtype, docs: &[Vec<u32>], shard_tokens: u64) -> TokenShards {
        let mut writer = ShardWriter::new(dir, "train", dtype, shard_tokens).unwrap();
        for d in docs {
            writer.write_document(d).unwrap();
        }
        let entry = writer.finish().unwrap();
        let index = ShardIndex {
            format: 1,
            dtype,
            vocab_size: 70_000,
            eos: Some(0),
            bos: None,
            splits: [("train".to_owned(), entry)].into_iter().collect(),
        };
        index.write(dir).unwrap();
        TokenShards::open(dir).unwrap()
    }

    fn docs() -> Vec<Vec<u32>> {
        (0..20u32)
            .map(|d| (0..=(d % 7)).map(|t| d * 100 + t + 1).chain([0]).collect())
            .collect()
    }

    #[test]
    fn documents_round_trip_across_shards_in_both_widths() {
        for dtype in [TokenDtype::U16, TokenDtype::U32] {
            let dir = tempfile::tempdir().unwrap();
            let shards = write(dir.path(), dtype, &docs(), 10);
            let split = shards.split("train").unwrap();
            assert!(shards.index().splits["train"].shards.len() > 2);
            assert_eq!(split.docs(), 20);
            assert_eq!(
                split.tokens(),
                docs().iter().map(|d| d.len() as u64).sum::<u64>()
            );
            for (i, d) in docs().iter().enumerate() {
                assert_eq!(split.document(i as u64).as_ref(), Some(d));
            }
            assert_eq!(split.document(20), None);
        }
    }

    #[test]
    fn packed_sequences_cover_the_stream_with_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let shards = write(dir.path(), TokenDtype::U16, &docs(), 9);
        let split = shards.split("train").unwrap();
        let stream: Vec<u32> = docs().concat();
        let starts: Vec<usize> = docs()
            .iter()
            .scan(0, |at, d| {
                let s = *at;
                *at += d.len();
                Some(s)
            })
            .collect();
        let packed = split.packed(8);
        assert_eq!(packed.len(), (stream.len() - 1) / 8);
        for (i, seq) in packed.iter().enumerate() {
            assert_eq!(seq.tokens, stream[i * 8..=i * 8 + 8]);
            let expected: Vec<u32> = starts
                .iter()
                .filter(|&&s| s >= i * 8 && s <= i * 8 + 8)
                .map(|&s| (s - i * 8) as u32)
                .collect();
            assert_eq!(seq.doc_starts, expected, "sequence {i}");
            assert_eq!(seq.inputs().len(), 8);
            assert_eq!(seq.targets()[0], seq.tokens[1]);
        }
    }

    #[test]
    fn damaged_shards_and_u16_overflow_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let shards = write(dir.path(), TokenDtype::U16, &docs(), 1000);
        let bin = dir.path().join("train-00000.bin");
        let len = std::fs::metadata(&bin).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&bin)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let err = shards.split("train").unwrap_err().to_string();
        assert!(
            err.contains("damaged") && err.contains("train-00000.bin"),
            "{err}"
        );
        assert!(
            shards
                .split("val")
                .unwrap_err()
                .to_string()
                .contains("no split `val`")
        );
        let mut w = ShardWriter::new(dir.path(), "x", TokenDtype::U16, 10).unwrap();
        assert!(w.write_document(&[70_000]).is_err());
    }
}
