//! The KV cache of incremental decoding, holding only what the hybrid layout needs (report §2,
//! KV-cache reduction):
//!
//! - one slot per layer that owns its keys and values ([`LayerSpec::owns_kv`]); a full-attention
//!   layer that borrows (KV sharing) reads its owner's slot and stores nothing, so a pair of
//!   consecutive full-attention layers keeps one full-length cache between them;
//! - a full-attention slot keeps every position up to the cache's capacity;
//! - a sliding-window slot is a ring of `min(window, capacity)` positions: position `p` lives at
//!   index `p % ring`, so it never holds more than the window a query can see.
//!
//! Keys are stored already rotated by RoPE at their absolute positions, so the order of a ring's
//! entries does not matter to attention; only which positions are present does.

use tch::{Device, Kind, Tensor};

use super::attention::{Visibility, visibility_mask};
use super::config::Config;

/// The keys and values of one owning layer.
#[derive(Debug)]
pub struct CacheSlot {
    /// `[batch, kv_heads, capacity or ring, head_dim]`.
    k: Tensor,
    v: Tensor,
    /// `Some((window, ring))` for a sliding-window slot.
    ring: Option<(i64, i64)>,
}

impl CacheSlot {
    /// Writes the keys and values of positions `start..start + len` (`[batch, kv_heads, len,
    /// head_dim]`) and returns what the queries of those positions attend over.
    pub fn update(&mut self, k: &Tensor, v: &Tensor, start: i64) -> (Tensor, Tensor, Visibility) {
        let len = k.size()[2];
        let Some((window, ring)) = self.ring else {
            self.k.narrow(2, start, len).copy_(k);
            self.v.narrow(2, start, len).copy_(v);
            return self.read(start, len);
        };
        if len == 1 {
            // The new position replaces the one a window ago, which its query may no longer see;
            // everything left in the ring is then visible.
            let index = Tensor::from_slice(&[start % ring]).to_device(self.k.device());
            let _ = self.k.index_copy_(2, &index, k);
            let _ = self.v.index_copy_(2, &index, v);
            let filled = (start + 1).min(ring);
            return (
                self.k.narrow(2, 0, filled),
                self.v.narrow(2, 0, filled),
                Visibility::All,
            );
        }
        // Several new positions: attend over the ring as it was plus all of them, with a mask,
        // then keep the last `ring` of them.
        let device = self.k.device();
        let filled = start.min(ring);
        let old_positions: Vec<i64> = (0..filled)
            .map(|slot| ring_position(slot, start, ring))
            .collect();
        let new_positions: Vec<i64> = (start..start + len).collect();
        let keys = Tensor::cat(&[&self.k.narrow(2, 0, filled), k], 2);
        let values = Tensor::cat(&[&self.v.narrow(2, 0, filled), v], 2);
        let key_positions =
            Tensor::from_slice(&[old_positions, new_positions.clone()].concat()).to_device(device);
        let query_positions = Tensor::from_slice(&new_positions).to_device(device);
        let mask = visibility_mask(&query_positions, &key_positions, Some(window));
        let kept = len.min(ring);
        let slots: Vec<i64> = new_positions[(len - kept) as usize..]
            .iter()
            .map(|p| p % ring)
            .collect();
        let index = Tensor::from_slice(&slots).to_device(device);
        let _ = self
            .k
            .index_copy_(2, &index, &k.narrow(2, len - kept, kept));
        let _ = self
            .v
            .index_copy_(2, &index, &v.narrow(2, len - kept, kept));
        (keys, values, Visibility::Mask(mask))
    }

    /// What the queries of positions `start..start + len` attend over in a full-attention slot that
    /// already holds them (the owning layer wrote them earlier in the same step).
    pub fn read(&self, start: i64, len: i64) -> (Tensor, Tensor, Visibility) {
        assert!(self.ring.is_none(), "only full-attention slots are shared");
        let end = start + len;
        let visibility = if len == 1 {
            Visibility::All
        } else {
            let device = self.k.device();
            let keys = Tensor::arange(end, (Kind::Int64, device));
            let queries = Tensor::arange_start(start, end, (Kind::Int64, device));
            Visibility::Mask(visibility_mask(&queries, &keys, None))
        };
        (
            self.k.narrow(2, 0, end),
            self.v.narrow(2, 0, end),
            visibility,
        )
    }

    fn bytes(&self) -> usize {
        [&self.k, &self.v]
            .iter()
            .map(|t| t.numel() * t.kind().elt_size_in_bytes())
            .sum()
    }
}

/// The position held at `slot` of a ring of `ring` entries before position `start` is written:
/// the one of `start - ring .. start` that is `slot` modulo `ring` (negative: never written).
fn ring_position(slot: i64, start: i64, ring: i64) -> i64 {
    let oldest = start - ring;
    oldest + (slot - oldest).rem_euclid(ring)
}

/// The KV cache of a batch of sequences decoded together, all at the same position.
#[derive(Debug)]
pub struct KvCache {
    slots: Vec<CacheSlot>,
    batch: i64,
    capacity: i64,
    len: i64,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` positions, in `kind` on `device`.
    pub fn new(config: &Config, batch: i64, capacity: i64, kind: Kind, device: Device) -> Self {
        let shape = |positions: i64| {
            [
                batch,
                config.kv_heads as i64,
                positions,
                config.head_dim() as i64,
            ]
        };
        let slots = config
            .layer_specs()
            .iter()
            .filter(|spec| spec.owns_kv)
            .map(|spec| {
                let ring = spec.window.map(|w| (w as i64, (w as i64).min(capacity)));
                let positions = ring.map_or(capacity, |(_, r)| r);
                CacheSlot {
                    k: Tensor::zeros(shape(positions), (kind, device)),
                    v: Tensor::zeros(shape(positions), (kind, device)),
                    ring,
                }
            })
            .collect();
        Self {
            slots,
            batch,
            capacity,
            len: 0,
        }
    }

    /// Positions decoded so far (the position of the next token).
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Nothing decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions the cache can hold.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Sequences decoded together.
    pub fn batch(&self) -> i64 {
        self.batch
    }

    /// Bytes of the tensors the cache holds.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(CacheSlot::bytes).sum()
    }

    /// The slot a layer reads and writes.
    pub(crate) fn slot(&mut self, index: usize) -> &mut CacheSlot {
        &mut self.slots[index]
    }

    /// Records that `len` more positions were decoded.
    pub(crate) fn advance(&mut self, len: i64) {
        self.len += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionLayout;

    #[test]
    fn ring_positions_are_the_last_ring_positions() {
        // Before writing position 10 into a ring of 4: slots hold 8, 9, 6, 7.
        let held: Vec<i64> = (0..4).map(|s| ring_position(s, 10, 4)).collect();
        assert_eq!(held, [8, 9, 6, 7]);
        // Before position 2: slots 0 and 1 hold 0 and 1, slots 2 and 3 were never written.
        let held: Vec<i64> = (0..4).map(|s| ring_position(s, 2, 4)).collect();
        assert_eq!(held, [0, 1, -2, -1]);
    }

    #[test]
    fn measured_bytes_per_token_follow_the_report_formula() {
        // The report's layout at small scale: 8 layers in blocks of 3 sliding + 1 full, KV sharing.
        let hybrid = Config {
            layers: 8,
            attention: AttentionLayout {
                window: Some(8),
                full_every: 4,
            },
            kv_share: true,
            ..Config::preset("tiny").unwrap()
        };
        let full = Config {
            attention: AttentionLayout::FULL,
            kv_share: false,
            ..hybrid.clone()
        };
        for seq in [32i64, 64, 128] {
            let measured =
                KvCache::new(&hybrid, 1, seq, Kind::Float, Device::Cpu).bytes() as f64 / seq as f64;
            let baseline =
                KvCache::new(&full, 1, seq, Kind::Float, Device::Cpu).bytes() as f64 / seq as f64;
            let formula = 1.0 / 8.0 + 0.75 * 8.0 / seq as f64;
            assert!(
                (measured / baseline - formula).abs() < 1e-12,
                "seq {seq}: {}",
                measured / baseline
            );
            assert!((measured - hybrid.kv_cache_bytes_per_token(seq as usize, 4)).abs() < 1e-9);
            // A full cache per layer: K and V, 2 heads of 16 values of 4 bytes, per position.
            assert!((baseline - 8.0 * 2.0 * 2.0 * 16.0 * 4.0).abs() < 1e-9);
        }
    }
}
