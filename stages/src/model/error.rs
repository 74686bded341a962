//! What can go wrong building or running the model, beyond a bug.

use thiserror::Error;

use super::config::ConfigError;

/// A model that cannot be built, or a decoding request it cannot serve.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("invalid model configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(
        "a KV cache of {capacity} positions cannot take {needed}: create it with a larger capacity"
    )]
    CacheFull { needed: i64, capacity: i64 },
    #[error("a KV cache of {capacity} positions exceeds the model's max-seq of {max_seq}")]
    CapacityTooLarge { capacity: i64, max_seq: usize },
    #[error("the KV cache was made for a batch of {cache}, but the tokens are a batch of {tokens}")]
    BatchMismatch { cache: i64, tokens: i64 },
    #[error(
        "tokens must be a [batch, len] tensor of int64 with len >= 1, found {kind:?} of shape {shape:?}"
    )]
    BadTokens { shape: Vec<i64>, kind: tch::Kind },
}
