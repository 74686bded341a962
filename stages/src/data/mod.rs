//! The pieces the data stage kinds share: the document format between stages, line and Parquet
//! readers, the synthetic corpus, the filter rules (quality, repetition, `MinHash`, PII, blocklist,
//! decontamination) and the binary token shards the trainer reads through memory mapping.

mod blocklist;
mod declared_files;
mod decontam;
mod document;
mod error;
mod hashing;
mod lines;
mod minhash;
mod parquet_texts;
#[cfg(test)]
pub(crate) use parquet_texts::tests as parquet_tests;
mod pii;
mod quality;
mod rejection;
mod repetition;
mod shards;
mod synthetic;
#[cfg(test)]
pub(crate) mod testing;
mod words;

pub use blocklist::{BUILTIN_PHRASES, Blocklist};
pub use declared_files::{check as check_declared_files, expand as expand_glob};
pub use decontam::Decontaminator;
pub use document::{
    DOCUMENTS_DIR, Document, DocumentBatches, DocumentFiles, DocumentWriter, MAX_LINE_BYTES,
    RawLine, WrittenDocuments, is_jsonl_name,
};
pub use error::DataError;
pub use hashing::{HashMap64, HashSet64, IdentityHasher, mix64, ngram_hashes, sequence_hash};
pub use lines::{Line, LineReader};
pub use minhash::{MinHashDedup, MinHashParams, estimated_jaccard, optimal_bands};
pub use parquet_texts::ParquetTexts;
pub use pii::{PiiCounts, PiiKind, PiiRedactor, luhn};
pub use quality::{QualityRules, STOP_WORDS};
pub use rejection::Rejection;
pub use repetition::{NgramLimit, RepetitionRules};
pub use shards::{
    INDEX_FILE, PackedSequences, Sequence, ShardEntry, ShardIndex, ShardWriter, SplitEntry,
    TOKENS_DIR, TokenDtype, TokenShards, TokenSplit,
};
pub use synthetic::{Rng, SyntheticKind};
pub use words::{is_cjk, normalized_word_hashes};
