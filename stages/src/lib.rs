//! yiflow's stage kinds, one file per kind. Parameters are decoded torch-free; the tensor work of the
//! ML kinds sits behind the `torch` feature, which only the worker binary enables.

mod bpe;
mod command;
pub mod data;
mod filter;
pub mod model;
mod pretrain;
#[cfg(feature = "torch")]
mod pretrain_run;
#[cfg(feature = "torch")]
pub mod profiler;
#[cfg(feature = "torch")]
mod shim;
mod source;
mod tokenize;
pub mod train;

pub use bpe::{BOS, Bpe, BpeParams, EOS, PAD, SPECIAL_TOKENS, TOKENIZER_FILE};
pub use command::Command;
pub use filter::{Filter, FilterParams, FilterStats};
pub use pretrain::Pretrain;
pub use source::{Source, SourceParams};
pub use tokenize::{Tokenize, TokenizeParams, tokenize};
use yiflow_engine::Registry;

/// Every stage kind yiflow knows.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Command);
    registry.register(Source);
    registry.register(Filter);
    registry.register(Bpe);
    registry.register(Tokenize);
    registry.register(Pretrain);
    registry
}
