//! Rotary position embeddings (Su et al., RoFormer, 2021) with a configurable base, as in the Yi
//! models; context extension raises the base (report §3, long-context pre-training). Angles are
//! computed for the positions at hand rather than from a table, so decoding at any position and a
//! changed base need nothing rebuilt, and they are computed in f64 so positions near 64K keep their
//! precision before the cast to the model's dtype.

use tch::{Device, Kind, Tensor};

/// The rotation frequencies of one head size and base.
#[derive(Debug)]
pub struct Rope {
    /// `base^(-2i/head_dim)` for `i < head_dim/2`, in f64.
    inv_freq: Tensor,
}

impl Rope {
    /// Frequencies for heads of `head_dim` (even) dimensions.
    pub fn new(head_dim: i64, base: f64, device: Device) -> Self {
        let inv_freq: Vec<f64> = (0..head_dim / 2)
            .map(|i| base.powf(-2.0 * i as f64 / head_dim as f64))
            .collect();
        Self {
            inv_freq: Tensor::from_slice(&inv_freq).to_device(device),
        }
    }

    /// Cosines and sines for positions `start..start + len`, each `[len, head_dim]` in `kind`
    /// (the two halves of a head rotate by the same angles: the "rotate half" layout).
    pub fn cos_sin(&self, start: i64, len: i64, kind: Kind) -> (Tensor, Tensor) {
        let positions =
            Tensor::arange_start(start, start + len, (Kind::Double, self.inv_freq.device()));
        let angles = positions.outer(&self.inv_freq);
        let angles = Tensor::cat(&[&angles, &angles], -1);
        (angles.cos().to_kind(kind), angles.sin().to_kind(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_norms_and_scores_depend_only_on_distance() {
        let rope = Rope::new(16, 10_000.0, Device::Cpu);
        let q = Tensor::randn([1, 1, 1, 16], (Kind::Double, Device::Cpu));
        let k = Tensor::randn([1, 1, 1, 16], (Kind::Double, Device::Cpu));
        let at = |x: &Tensor, pos: i64| {
            let (cos, sin) = rope.cos_sin(pos, 1, Kind::Double);
            crate::model::fused::rope(x, &cos, &sin)
        };
        let norm = |x: &Tensor| x.norm().double_value(&[]);
        assert!((norm(&at(&q, 1234)) - norm(&q)).abs() < 1e-9);
        let score = |m: i64, n: i64| (at(&q, m) * at(&k, n)).sum(Kind::Double).double_value(&[]);
        assert!((score(10, 3) - score(1007, 1000)).abs() < 1e-9);
        assert!((score(10, 3) - score(10, 4)).abs() > 1e-6);
        // Position 0 is the identity.
        assert!(at(&q, 0).allclose(&q, 1e-12, 1e-12, false));
    }
}
