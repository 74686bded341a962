//! Everything about a training run besides its tensors that a resumed run needs to continue exactly
//! where the interrupted one was: counters, the phase, the data position, batch growth, the running
//! loss average of the spike detector, the batches skipped after faults and the faults themselves.

use serde::{Deserialize, Serialize};

use super::batch_growth::BatchGrower;
use super::loader::DataPosition;
use super::metrics::Fault;

/// A batch, named by where it was drawn (skipped after it caused a fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    pub phase: usize,
    pub position: DataPosition,
}

/// The training run's counters and positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Index of the current phase (equal to the number of phases when training is done).
    pub phase: usize,
    /// Steps done in the current phase.
    pub phase_step: usize,
    /// Tokens trained on in the current phase.
    pub phase_tokens: u64,
    /// Tokens trained on in all.
    pub tokens: u64,
    /// Position in the shuffled token stream, which every phase continues.
    pub data: DataPosition,
    pub grower: BatchGrower,
    /// Exponential moving average of the loss (the spike detector's reference).
    pub loss_average: Option<f64>,
    /// Steps the average has seen.
    pub averaged: u64,
    pub skipped: Vec<BatchId>,
    pub faults: Vec<Fault>,
}

impl TrainState {
    /// The state before the first step, starting with `batch` sequences per step.
    pub fn new(batch: usize) -> Self {
        Self {
            step: 0,
            phase: 0,
            phase_step: 0,
            phase_tokens: 0,
            tokens: 0,
            data: DataPosition::default(),
            grower: BatchGrower::new(batch),
            loss_average: None,
            averaged: 0,
            skipped: Vec::new(),
            faults: Vec::new(),
        }
    }
}
