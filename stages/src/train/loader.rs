//! The pretraining data loader: memory-mapped token shards ([`TokenSplit`]) packed into fixed-length
//! sequences (documents concatenated with their end tokens, cut every `seq` tokens), visited in an
//! order shuffled per epoch. Everything follows from the seed and a [`DataPosition`], which a
//! checkpoint saves: a resumed run reads exactly the batches the interrupted one would have.

use serde::{Deserialize, Serialize};

use crate::data::{PackedSequences, Rng, TokenSplit, mix64};

/// Where the loader stands within a phase: the epoch over the packed sequences and the next one to
/// read in that epoch's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub index: u64,
}

/// One batch of next-token examples, row-major `[rows, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub seq: usize,
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
}

/// Packs and shuffles one split for one phase (a sequence length and a seed).
pub struct Loader<'a> {
    packed: PackedSequences<'a>,
    seed: u64,
    /// The visiting order of `epoch`, computed when first needed.
    order: Option<(u64, Vec<u32>)>,
}

/// Why a loader cannot be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "the training split holds {tokens} tokens, fewer than one sequence of {seq}: tokenize more documents or shorten `seq`"
)]
pub struct TooFewTokens {
    pub tokens: u64,
    pub seq: usize,
}

impl<'a> Loader<'a> {
    /// A loader of sequences of `seq` tokens from `split`, shuffled from `seed`.
    pub fn new(split: &'a TokenSplit, seq: usize, seed: u64) -> Result<Self, TooFewTokens> {
        let packed = split.packed(seq);
        if packed.is_empty() {
            return Err(TooFewTokens {
                tokens: split.tokens(),
                seq,
            });
        }
        Ok(Self {
            packed,
            seed,
            order: None,
        })
    }

    /// Sequences per epoch.
    pub fn len(&self) -> usize {
        self.packed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// The shuffled order of `epoch` (Fisher-Yates from a seed mixed with the epoch).
    fn order(&mut self, epoch: u64) -> &[u32] {
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let n = self.packed.len();
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut rng = Rng::new(mix64(self.seed ^ mix64(epoch.wrapping_add(1))));
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            self.order = Some((epoch, order));
        }
        self.order.as_ref().map_or(&[], |(_, o)| o.as_slice())
    }

    /// The next `rows` sequences from `pos`, which moves past them (into the next epoch as needed).
    pub fn next_batch(&mut self, pos: &mut DataPosition, rows: usize) -> Batch {
        let seq = self.packed.seq_len();
        let mut batch = Batch {
            rows,
            seq,
            inputs: Vec::with_capacity(rows * seq),
            targets: Vec::with_capacity(rows * seq),
        };
        for _ in 0..rows {
            if pos.index as usize >= self.packed.len() {
                pos.epoch += 1;
                pos.index = 0;
            }
            let i = self.order(pos.epoch)[pos.index as usize] as usize;
            pos.index += 1;
            let sequence = self
                .packed
                .get(i)
                .unwrap_or_else(|| unreachable!("index below len"));
            batch
                .inputs
                .extend(sequence.inputs().iter().map(|&t| i64::from(t)));
            batch
                .targets
                .extend(sequence.targets().iter().map(|&t| i64::from(t)));
        }
        batch
    }

    /// The first `rows` sequences in file order (validation: the same ones at every evaluation).
    pub fn fixed_batch(&self, first: usize, rows: usize) -> Batch {
        let seq = self.packed.seq_len();
        let mut batch = Batch {
            rows: 0,
            seq,
            inputs: Vec::new(),
            targets: Vec::new(),
        };
        for i in first..(first + rows).min(self.packed.len()) {
            if let Some(s) = self.packed.get(i) {
                batch.rows += 1;
                batch
                    .inputs
                    .extend(s.inputs().iter().map(|&t| i64::from(t)));
                batch
                    .targets
                    .extend(s.targets().iter().map(|&t| i64::from(t)));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::data::{ShardIndex, ShardWriter, TokenDtype, TokenShards};

    fn shards(dir: &std::path::Path) -> TokenShards {
        let mut w = ShardWriter::new(dir, "train", TokenDtype::U16, 50).unwrap();
        for d in 0..40u32 {
            let doc: Vec<u32> = (0..(3 + d % 9))
                .map(|t| 10 + d * 20 + t)
                .chain([1])
                .collect();
            w.write_document(&doc).unwrap();
        }
        let index = ShardIndex {
            format: 1,
            dtype: TokenDtype::U16,
            vocab_size: 1000,
            eos: Some(1),
            bos: None,
            splits: [("train".to_owned(), w.finish().unwrap())]
                .into_iter()
                .collect(),
        };
        index.write(dir).unwrap();
        TokenShards::open(dir).unwrap()
    }

    #[test]
    fn batches_are_packed_shifted_and_cover_an_epoch_once() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let mut loader = Loader::new(&split, 16, 7).unwrap();
        let n = loader.len();
        let mut pos = DataPosition::default();
        let mut firsts = BTreeSet::new();
        for _ in 0..n {
            let b = loader.next_batch(&mut pos, 1);
            assert_eq!((b.rows, b.inputs.len(), b.targets.len()), (1, 16, 16));
            assert_eq!(
                b.inputs[1..],
                b.targets[..15],
                "targets are the inputs shifted by one"
            );
            firsts.insert(b.inputs);
        }
        assert_eq!(firsts.len(), n, "every sequence once per epoch");
        assert_eq!(
            pos,
            DataPosition {
                epoch: 0,
                index: n as u64
            }
        );
        loader.next_batch(&mut pos, 1);
        assert_eq!(pos, DataPosition { epoch: 1, index: 1 });
    }

    #[test]
    fn the_order_follows_from_the_seed_and_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let run = |seed: u64, steps: usize| {
            let mut loader = Loader::new(&split, 8, seed).unwrap();
            let mut pos = DataPosition::default();
            let batches: Vec<Batch> = (0..steps).map(|_| loader.next_batch(&mut pos, 3)).collect();
            (batches, pos)
        };
        let (a, _) = run(1, 12);
        let (b, _) = run(1, 12);
        assert_eq!(a, b);
        let (c, _) = run(2, 12);
        assert_ne!(a, c, "another seed, another order");
        // Resuming from a saved position gives the batches an uninterrupted loader gives.
        let (_, mid) = run(1, 5);
        let mut resumed = Loader::new(&split, 8, 1).unwrap();
        let mut pos = mid;
        let rest: Vec<Batch> = (5..12).map(|_| resumed.next_batch(&mut pos, 3)).collect();
        assert_eq!(rest, a[5..]);
        assert!(Loader::new(&split, 10_000, 1).is_err());
    }
}
