//! The Yi-Lightning model (01.AI, arXiv 2412.01253, §2): a decoder-only transformer with RMSNorm,
//! RoPE, grouped-query attention in hybrid blocks of sliding-window and full-attention layers,
//! KV sharing between consecutive full-attention layers, and a fine-grained MoE feed-forward network
//! with top-k routing, shared experts and the Switch load-balancing loss.
//!
//! [`Config`] is torch-free (the `yiflow` binary validates and fingerprints `model` blocks with it);
//! the tensor code is behind the `torch` feature, which only the worker binary enables.

mod config;
mod decode;

pub use config::{AttentionLayout, Config, ConfigError, Experts, LayerSpec};
