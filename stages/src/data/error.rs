//! What can go wrong while reading, transforming or writing data, each message naming the file (and line)
//! at fault so that a user can find it.

use std::path::PathBuf;

use thiserror::Error;

/// An error of the data stages and their readers and writers.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("cannot read parquet file {path}: {reason}")]
    Parquet { path: PathBuf, reason: String },

    #[error("`{pattern}` is not a valid glob: {reason}")]
    Glob { pattern: String, reason: String },

    #[error("`{pattern}` matches no file under {dir}")]
    NoMatch { pattern: String, dir: PathBuf },

    #[error("{path} is not a document folder: {reason}")]
    NotDocuments { path: PathBuf, reason: String },

    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("token shards in {path}: {reason}")]
    Shards { path: PathBuf, reason: String },

    #[error("invalid parameters: {0}")]
    Params(String),
}

impl DataError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }
}
