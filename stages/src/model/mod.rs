//! The Yi-Lightning model (01.AI, arXiv 2412.01253, §2): a decoder-only transformer with RMSNorm,
//! RoPE, grouped-query attention in hybrid blocks of sliding-window and full-attention layers,
//! KV sharing between consecutive full-attention layers, and a fine-grained MoE feed-forward network
//! with top-k routing, shared experts and the Switch load-balancing loss.
//!
//! [`Config`] is torch-free (the `yiflow` binary validates and fingerprints `model` blocks with it);
//! the tensor code is behind the `torch` feature, which only the worker binary enables.

mod config;
mod decode;

#[cfg(feature = "torch")]
mod attention;
#[cfg(feature = "torch")]
mod block;
#[cfg(feature = "torch")]
mod error;
#[cfg(feature = "torch")]
mod expert_order;
#[cfg(feature = "torch")]
pub mod fused;
#[cfg(feature = "torch")]
mod kv_cache;
#[cfg(feature = "torch")]
mod mlp;
#[cfg(feature = "torch")]
mod moe;
#[cfg(feature = "torch")]
mod rms_norm;
#[cfg(feature = "torch")]
mod rope;
#[cfg(feature = "torch")]
mod transformer;

pub use config::{AttentionLayout, Config, ConfigError, Experts, LayerSpec};
#[cfg(feature = "torch")]
pub use error::ModelError;
#[cfg(feature = "torch")]
pub use kv_cache::KvCache;
#[cfg(feature = "torch")]
pub use moe::{ExpertKernel, load_balancing_loss};
#[cfg(feature = "torch")]
pub use transformer::{Output, Transformer};
