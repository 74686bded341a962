//! The pretraining data loader over memory-mapped token shards ([`TokenSplit`]).
//!
//! The split's concatenated documents (each with its end token) are cut into blocks of a fixed
//! number of tokens, and an epoch visits the blocks in an order shuffled from the seed and the
//! epoch. A phase cuts its sequences out of the blocks one after the other, never across a block's
//! end. The blocks do not depend on the phase (their length is the least common multiple of all
//! phases' sequence lengths), so a phase with longer sequences goes on in the same token stream
//! where the phase before it stopped instead of starting the data over.
//!
//! Everything follows from the seed and a [`DataPosition`], which a checkpoint saves: a resumed
//! run reads exactly the batches the interrupted one would have.

use serde::{Deserialize, Serialize};

use crate::data::{Rng, TokenSplit, mix64};

/// Where the loader stands: the epoch, and how many tokens of that epoch's block order are behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub offset: u64,
}

/// One batch of next-token examples, row-major `[rows, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub seq: usize,
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
}

/// Why a loader cannot be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "the training split holds {tokens} tokens, fewer than one block of {block} and its next-token target (a block is the phases' sequence lengths' least common multiple): tokenize more documents, or choose sequence lengths with a smaller common multiple"
)]
pub struct TooFewTokens {
    pub tokens: u64,
    pub block: usize,
}

/// Blocks longer than this many times the longest sequence are not worth their alignment: the
/// blocks are then that longest sequence, and a shorter one that does not divide it leaves the
/// rest of each block unread.
const MAX_BLOCK_SEQS: usize = 16;

/// The block length for phases of these sequence lengths: their least common multiple, so that
/// every phase fills every block, unless that is over [`MAX_BLOCK_SEQS`] times the longest one.
pub fn block_tokens(seqs: impl IntoIterator<Item = usize>) -> usize {
    let seqs: Vec<usize> = seqs.into_iter().map(|s| s.max(1)).collect();
    let longest = seqs.iter().copied().max().unwrap_or(1);
    let mut lcm = 1usize;
    for &s in &seqs {
        lcm = match (lcm / gcd(lcm, s)).checked_mul(s) {
            Some(l) if l <= longest * MAX_BLOCK_SEQS => l,
            _ => return longest,
        };
    }
    lcm
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Shuffles one split's blocks per epoch and cuts batches out of them.
pub struct Loader<'a> {
    split: &'a TokenSplit,
    block: usize,
    /// Whole blocks, each with the token after it (the last target).
    blocks: u64,
    seed: u64,
    /// The visiting order of `epoch`, computed when first needed.
    order: Option<(u64, Vec<u32>)>,
}

impl<'a> Loader<'a> {
    /// A loader of `split` in blocks of `block` tokens, shuffled from `seed`.
    pub fn new(split: &'a TokenSplit, block: usize, seed: u64) -> Result<Self, TooFewTokens> {
        let block = block.max(1);
        let blocks = split.tokens().saturating_sub(1) / block as u64;
        if blocks == 0 {
            return Err(TooFewTokens {
                tokens: split.tokens(),
                block,
            });
        }
        Ok(Self {
            split,
            block,
            blocks,
            seed,
            order: None,
        })
    }

    /// Tokens per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Tokens per epoch (whole blocks).
    pub fn epoch_tokens(&self) -> u64 {
        self.blocks * self.block as u64
    }

    /// The shuffled order of `epoch` (Fisher-Yates from a seed mixed with the epoch).
    fn order(&mut self, epoch: u64) -> &[u32] {
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let n = self.blocks as usize;
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

    /// The next `rows` sequences of `seq` tokens from `pos`, which moves past them (to the next
    /// block where one does not fit the rest of the current block, into the next epoch as needed).
    ///
    /// # Panics
    /// If `seq` is 0 or longer than a block ([`block_tokens`] makes blocks that fit every phase).
    pub fn next_batch(&mut self, pos: &mut DataPosition, rows: usize, seq: usize) -> Batch {
        assert!(
            seq > 0 && seq <= self.block,
            "sequence of {seq} in blocks of {}",
            self.block
        );
        let block = self.block as u64;
        let mut batch = Batch {
            rows,
            seq,
            inputs: Vec::with_capacity(rows * seq),
            targets: Vec::with_capacity(rows * seq),
        };
        let mut tokens = Vec::with_capacity(seq + 1);
        for _ in 0..rows {
            let within = pos.offset % block;
            if within + seq as u64 > block {
                pos.offset += block - within;
            }
            if pos.offset >= self.epoch_tokens() {
                pos.epoch += 1;
                pos.offset = 0;
            }
            let b = self.order(pos.epoch)[(pos.offset / block) as usize];
            let start = u64::from(b) * block + pos.offset % block;
            pos.offset += seq as u64;
            tokens.clear();
            self.split.read(start, seq + 1, &mut tokens);
            batch
                .inputs
                .extend(tokens[..seq].iter().map(|&t| i64::from(t)));
            batch
                .targets
                .extend(tokens[1..].iter().map(|&t| i64::from(t)));
        }
        batch
    }
}

/// Sequences `first..first + rows` of `seq` tokens of `split` in file order, as far as there are
/// (validation: the same ones at every evaluation).
pub fn fixed_batch(split: &TokenSplit, seq: usize, first: usize, rows: usize) -> Batch {
    let packed = split.packed(seq);
    let mut batch = Batch {
        rows: 0,
        seq: packed.seq_len(),
        inputs: Vec::new(),
        targets: Vec::new(),
    };
    for i in first..(first + rows).min(packed.len()) {
        if let Some(s) = packed.get(i) {
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

    /// Token values of a batch's inputs, without the documents' end token.
    fn values(b: &Batch) -> Vec<i64> {
        b.inputs.iter().copied().filter(|&t| t != 1).collect()
    }

    #[test]
    fn batches_are_shifted_and_cover_an_epoch_once() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let mut loader = Loader::new(&split, 16, 7).unwrap();
        let n = loader.epoch_tokens() / 16;
        assert_eq!(n, (split.tokens() - 1) / 16);
        let mut pos = DataPosition::default();
        let mut firsts = BTreeSet::new();
        for _ in 0..n {
            let b = loader.next_batch(&mut pos, 1, 16);
            assert_eq!((b.rows, b.inputs.len(), b.targets.len()), (1, 16, 16));
            assert_eq!(
                b.inputs[1..],
                b.targets[..15],
                "targets are the inputs shifted by one"
            );
            firsts.insert(b.inputs);
        }
        assert_eq!(firsts.len() as u64, n, "every block once per epoch");
        assert_eq!(
            pos,
            DataPosition {
                epoch: 0,
                offset: n * 16
            }
        );
        loader.next_batch(&mut pos, 1, 16);
        assert_eq!(
            pos,
            DataPosition {
                epoch: 1,
                offset: 16
            }
        );
    }

    #[test]
    fn a_phase_of_longer_sequences_goes_on_where_the_last_one_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let block = block_tokens([8, 16]);
        assert_eq!(block, 16);
        let mut loader = Loader::new(&split, block, 3).unwrap();
        let blocks = loader.epoch_tokens() / 16;
        let mut pos = DataPosition::default();
        // About a quarter of the epoch in sequences of 8 (two to a block), the rest in sequences
        // of 16.
        let halves = blocks / 4 * 2;
        let first: Vec<i64> = (0..halves)
            .flat_map(|_| values(&loader.next_batch(&mut pos, 1, 8)))
            .collect();
        assert_eq!(pos.offset, halves * 8);
        let mut second = Vec::new();
        while pos.epoch == 0 && pos.offset < loader.epoch_tokens() {
            second.extend(values(&loader.next_batch(&mut pos, 1, 16)));
        }
        assert_eq!(pos.epoch, 0, "the epoch ends exactly at its last block");
        let (a, b): (BTreeSet<i64>, BTreeSet<i64>) = (
            first.iter().copied().collect(),
            second.iter().copied().collect(),
        );
        assert_eq!(
            a.len(),
            first.len(),
            "token values are unique in the fixture"
        );
        assert!(
            a.is_disjoint(&b),
            "the second phase reads no token the first read"
        );
        let mut all = Vec::new();
        split.read(0, loader.epoch_tokens() as usize, &mut all);
        let all: BTreeSet<i64> = all
            .iter()
            .filter(|&&t| t != 1)
            .map(|&t| i64::from(t))
            .collect();
        assert_eq!(
            a.union(&b).copied().collect::<BTreeSet<_>>(),
            all,
            "together they read the epoch's every block"
        );
    }

    #[test]
    fn a_sequence_never_crosses_a_block_end() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let mut loader = Loader::new(&split, 16, 5).unwrap();
        let mut pos = DataPosition::default();
        let b = loader.next_batch(&mut pos, 3, 6);
        // Two sequences of 6 fit a block of 16; the third starts the next block.
        assert_eq!(pos.offset, 16 + 6);
        let mut whole = DataPosition::default();
        let blocks = loader.next_batch(&mut whole, 2, 16);
        assert_eq!(b.inputs[..6], blocks.inputs[..6]);
        assert_eq!(b.inputs[6..12], blocks.inputs[6..12]);
        assert_eq!(b.inputs[12..18], blocks.inputs[16..22]);
    }

    #[test]
    fn blocks_are_the_least_common_multiple_within_reason() {
        assert_eq!(block_tokens([4096, 8192, 8192]), 8192);
        assert_eq!(block_tokens([3, 4]), 12);
        assert_eq!(block_tokens([64]), 64);
        // 1000 x 1023 is far over 16 sequences of 1023: the blocks are the longest sequence.
        assert_eq!(block_tokens([1000, 1023]), 1023);
    }

    #[test]
    fn the_order_follows_from_the_seed_and_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let run = |seed: u64, steps: usize| {
            let mut loader = Loader::new(&split, 8, seed).unwrap();
            let mut pos = DataPosition::default();
            let batches: Vec<Batch> = (0..steps)
                .map(|_| loader.next_batch(&mut pos, 3, 8))
                .collect();
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
        let rest: Vec<Batch> = (5..12)
            .map(|_| resumed.next_batch(&mut pos, 3, 8))
            .collect();
        assert_eq!(rest, a[5..]);
        assert!(Loader::new(&split, 10_000, 1).is_err());
    }

    #[test]
    fn validation_batches_are_the_first_sequences_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shards(dir.path());
        let split = shards.split("train").unwrap();
        let b = fixed_batch(&split, 8, 1, 2);
        let mut tokens = Vec::new();
        split.read(8, 17, &mut tokens);
        let tokens: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        assert_eq!((b.rows, b.seq), (2, 8));
        assert_eq!(b.inputs, tokens[..16]);
        assert_eq!(b.targets, tokens[1..]);
        assert_eq!(fixed_batch(&split, 8, usize::MAX / 16, 2).rows, 0);
    }
}
