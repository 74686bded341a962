//! Grouped-query attention (Ainslie et al., 2023) for the two layer kinds of the report's hybrid
//! blocks (§2, KV-cache reduction): full causal attention, and sliding-window attention in which a
//! query at position `i` sees the `window` positions `i - window + 1 ..= i`.
//!
//! Everything goes through `scaled_dot_product_attention` with `enable_gqa`, so the key/value heads
//! are never copied out to the query heads. Full layers, and sliding layers whose window covers the
//! whole sequence, pass no mask (`is_causal`), which lets PyTorch pick its flash kernel; only a
//! window shorter than the sequence builds a boolean mask.
//!
//! A layer that borrows keys and values (KV sharing, see [`Config::layer_specs`]) has no K/V
//! projections: it attends with its own queries over the owner's rotated keys and values.

use tch::{Device, Kind, Tensor, nn};

use super::config::{Config, LayerSpec};
use super::fused::rope;
use super::kv_cache::CacheSlot;
use super::mlp::linear_init;
use super::rope::Rope;

/// Keys and values of one layer, `[batch, kv_heads, len, head_dim]`, keys already rotated.
#[derive(Debug)]
pub struct Kv {
    pub k: Tensor,
    pub v: Tensor,
}

/// Which keys each query may see.
#[derive(Debug)]
pub enum Visibility {
    /// Queries and keys are the same positions; each query sees itself and what precedes it.
    Causal,
    /// Every key (a single decoding query over a cache that holds only visible positions).
    All,
    /// An explicit `[queries, keys]` boolean mask, true where the query may attend.
    Mask(Tensor),
}

/// What every layer of one training forward pass shares: the RoPE angles of positions `0..len`
/// and the visibility of the sliding-window layers.
#[derive(Debug)]
pub struct SequenceContext {
    pub cos: Tensor,
    pub sin: Tensor,
    /// For sliding-window layers; `Causal` when the window covers the whole sequence.
    pub windowed: Visibility,
}

impl SequenceContext {
    /// The context of a sequence of `len` tokens for a model with the given window.
    pub fn new(rope: &Rope, len: i64, window: Option<i64>, kind: Kind, device: Device) -> Self {
        let (cos, sin) = rope.cos_sin(0, len, kind);
        let windowed = match window {
            Some(w) if w < len => {
                let positions = Tensor::arange(len, (Kind::Int64, device));
                Visibility::Mask(visibility_mask(&positions, &positions, Some(w)))
            }
            _ => Visibility::Causal,
        };
        Self { cos, sin, windowed }
    }
}

/// `[queries, keys]` mask of the keys each query may attend to: at or before the query's position,
/// within `window` positions of it when there is a window, and not a negative (empty-slot) position.
pub fn visibility_mask(
    query_positions: &Tensor,
    key_positions: &Tensor,
    window: Option<i64>,
) -> Tensor {
    let q = query_positions.unsqueeze(1);
    let k = key_positions.unsqueeze(0);
    let visible = k.le_tensor(&q).logical_and(&k.ge(0));
    match window {
        Some(w) => visible.logical_and(&(&q - &k).lt(w)),
        None => visible,
    }
}

/// Softmax attention of `q` (`[batch, heads, len, head_dim]`) over `k`, `v`
/// (`[batch, kv_heads, keys, head_dim]`).
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, visibility: &Visibility) -> Tensor {
    let gqa = q.size()[1] != k.size()[1];
    match visibility {
        Visibility::Causal => {
            Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, true, None, gqa)
        }
        Visibility::All => {
            Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, false, None, gqa)
        }
        Visibility::Mask(mask) => {
            Tensor::scaled_dot_product_attention(q, k, v, Some(mask), 0.0, false, None, gqa)
        }
    }
}

/// The input projections: queries, keys and values in one matrix for a layer that owns its KV,
/// queries only for one that borrows.
#[derive(Debug)]
enum Projection {
    Qkv(nn::Linear),
    Q(nn::Linear),
}

/// One layer's grouped-query attention.
#[derive(Debug)]
pub struct Attention {
    projection: Projection,
    out: nn::Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    window: Option<i64>,
}

impl Attention {
    /// Weights at `p / "qkv"` (`[(heads + 2 kv_heads) * head_dim, d]`: queries, then keys, then
    /// values) or `p / "q"` for a layer that borrows its keys and values, and `p / "out"`.
    pub fn new(p: &nn::Path, config: &Config, spec: LayerSpec, std: f64, out_std: f64) -> Self {
        let d = config.d_model as i64;
        let (heads, kv_heads, head_dim) = (
            config.heads as i64,
            config.kv_heads as i64,
            config.head_dim() as i64,
        );
        let projection = if spec.owns_kv {
            Projection::Qkv(nn::linear(
                p / "qkv",
                d,
                (heads + 2 * kv_heads) * head_dim,
                linear_init(std),
            ))
        } else {
            Projection::Q(nn::linear(p / "q", d, heads * head_dim, linear_init(std)))
        };
        Self {
            projection,
            out: nn::linear(p / "out", heads * head_dim, d, linear_init(out_std)),
            heads,
            kv_heads,
            head_dim,
            window: spec.window.map(|w| w as i64),
        }
    }

    /// Training forward over `x` (`[batch, len, d]`). An owning layer stores its keys and values in
    /// `shared` for the layer that borrows them; a borrowing layer reads them from there.
    pub fn forward(&self, x: &Tensor, cx: &SequenceContext, shared: &mut Option<Kv>) -> Tensor {
        let (q, new_kv) = self.project(x, &cx.cos, &cx.sin);
        if let Some(kv) = new_kv {
            *shared = Some(kv);
        }
        let kv = shared
            .as_ref()
            .expect("the layer owning a shared KV runs before the one borrowing it");
        let visibility = if self.window.is_some() {
            &cx.windowed
        } else {
            &Visibility::Causal
        };
        self.output(&attend(&q, &kv.k, &kv.v, visibility))
    }

    /// Decoding forward over `x` (`[batch, len, d]`, positions `start..start + len`) against the
    /// layer's cache slot: an owning layer writes its new keys and values first.
    pub fn forward_step(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        slot: &mut CacheSlot,
        start: i64,
    ) -> Tensor {
        let (q, new_kv) = self.project(x, cos, sin);
        let (k, v, visibility) = match new_kv {
            Some(kv) => slot.update(&kv.k, &kv.v, start),
            None => slot.read(start, q.size()[2]),
        };
        self.output(&attend(&q, &k, &v, &visibility))
    }

    /// Rotated queries `[batch, heads, len, head_dim]`, and keys and values if the layer owns them.
    fn project(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> (Tensor, Option<Kv>) {
        let (batch, len, _) = x.size3().expect("attention input is [batch, len, d]");
        let split = |t: Tensor, heads: i64| t.view([batch, len, heads, self.head_dim]);
        match &self.projection {
            Projection::Q(q) => {
                let q = split(x.apply(q), self.heads);
                (rope(&q, cos, sin).transpose(1, 2), None)
            }
            Projection::Qkv(qkv) => {
                let all = split(x.apply(qkv), self.heads + 2 * self.kv_heads);
                // Splits, not narrows: the backward of a split is one concatenation, where each
                // narrow's would fill a zero gradient of the whole and add them up.
                let qk_v = all.split_with_sizes([self.heads + self.kv_heads, self.kv_heads], 2);
                // Queries and keys rotate by the same angles: one pass over both.
                let qk = rope(&qk_v[0], cos, sin).split_with_sizes([self.heads, self.kv_heads], 2);
                let heads_first = |t: &Tensor| t.transpose(1, 2);
                let kv = Kv {
                    k: heads_first(&qk[1]),
                    v: heads_first(&qk_v[1]),
                };
                (heads_first(&qk[0]), Some(kv))
            }
        }
    }

    fn output(&self, attended: &Tensor) -> Tensor {
        let (batch, _, len, _) = attended
            .size4()
            .expect("attention output is [batch, heads, len, head_dim]");
        attended
            .transpose(1, 2)
            .reshape([batch, len, self.heads * self.head_dim])
            .apply(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qkv(len: i64) -> (Tensor, Tensor, Tensor) {
        let opts = (Kind::Double, Device::Cpu);
        (
            Tensor::randn([2, 4, len, 8], opts),
            Tensor::randn([2, 2, len, 8], opts),
            Tensor::randn([2, 2, len, 8], opts),
        )
    }

    #[test]
    fn a_window_covering_the_sequence_is_full_causal_attention() {
        tch::manual_seed(1);
        let len = 12;
        let (q, k, v) = qkv(len);
        let positions = Tensor::arange(len, (Kind::Int64, Device::Cpu));
        let causal = attend(&q, &k, &v, &Visibility::Causal);
        for window in [len, len + 5] {
            let mask = visibility_mask(&positions, &positions, Some(window));
            let windowed = attend(&q, &k, &v, &Visibility::Mask(mask));
            assert!(
                windowed.allclose(&causal, 1e-10, 1e-10, false),
                "window {window}"
            );
        }
        // A shorter window really is different.
        let mask = visibility_mask(&positions, &positions, Some(len - 1));
        assert!(!attend(&q, &k, &v, &Visibility::Mask(mask)).allclose(&causal, 1e-6, 1e-6, false));
    }

    #[test]
    fn sliding_window_attention_matches_a_naive_reference() {
        tch::manual_seed(2);
        let (len, window) = (10, 3);
        let (q, k, v) = qkv(len);
        let positions = Tensor::arange(len, (Kind::Int64, Device::Cpu));
        let fast = attend(
            &q,
            &k,
            &v,
            &Visibility::Mask(visibility_mask(&positions, &positions, Some(window))),
        );
        let scale = 1.0 / 8f64.sqrt();
        for head in 0..4 {
            let kv_head = head / 2; // 4 query heads over 2 KV heads
            for i in 0..len {
                let from = (i - window + 1).max(0);
                let keys = k.select(1, kv_head).narrow(1, from, i - from + 1); // [batch, n, 8]
                let values = v.select(1, kv_head).narrow(1, from, i - from + 1);
                let query = q.select(1, head).narrow(1, i, 1); // [batch, 1, 8]
                let weights =
                    (query.matmul(&keys.transpose(1, 2)) * scale).softmax(-1, Kind::Double);
                let expected = weights.matmul(&values).squeeze_dim(1);
                let got = fast.select(1, head).select(1, i);
                assert!(
                    got.allclose(&expected, 1e-10, 1e-10, false),
                    "head {head} query {i}"
                );
            }
        }
    }

    #[test]
    fn masks_hide_the_future_far_past_and_empty_slots() {
        let queries = Tensor::from_slice(&[5i64, 6]);
        let keys = Tensor::from_slice(&[-1i64, 3, 4, 5, 6]);
        let mask = visibility_mask(&queries, &keys, Some(2));
        let rows: Vec<Vec<bool>> = (0..2)
            .map(|r| (0..5).map(|c| mask.int64_value(&[r, c]) != 0).collect())
            .collect();
        assert_eq!(
            rows,
            [
                [false, false, true, true, false],
                [false, false, false, true, true]
            ]
        );
    }
}
