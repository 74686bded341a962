//! Batch growth from the loss (the report's intermediate phase grows the batch as training goes):
//! when the loss has not improved on its best by the relative `plateau` for `patience` steps, the
//! batch doubles, up to `max`. The state is part of every checkpoint so a resumed run grows at the
//! same steps.

use serde::{Deserialize, Serialize};

use super::params::BatchGrowth;

/// Where the growth rule stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchGrower {
    /// Sequences per step now.
    pub batch: usize,
    /// Best loss seen since the last growth.
    pub best: Option<f64>,
    /// Steps since the loss last improved.
    pub stale: usize,
}

impl BatchGrower {
    pub fn new(batch: usize) -> Self {
        Self {
            batch,
            best: None,
            stale: 0,
        }
    }

    /// Takes one step's loss; returns true when the batch just grew.
    pub fn observe(&mut self, loss: f64, rule: &BatchGrowth) -> bool {
        let Some(best) = self.best.filter(|b| loss >= b * (1.0 - rule.plateau)) else {
            self.best = Some(loss);
            self.stale = 0;
            return false;
        };
        self.best = Some(best.min(loss));
        self.stale += 1;
        if self.stale < rule.patience || self.batch >= rule.max {
            return false;
        }
        self.batch = (self.batch * 2).min(rule.max);
        self.stale = 0;
        self.best = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_on_a_plateau_up_to_the_maximum() {
        let rule = BatchGrowth {
            max: 20,
            patience: 3,
            plateau: 0.01,
        };
        let mut g = BatchGrower::new(4);
        // Falling loss: no growth.
        for i in 0..10 {
            assert!(!g.observe(5.0 - f64::from(i) * 0.2, &rule));
        }
        assert_eq!(g.batch, 4);
        // 3.0 improves on 3.2; then flat (less than 1% better) for 3 steps: growth, and again.
        let grew: Vec<bool> = (0..8).map(|_| g.observe(3.0, &rule)).collect();
        assert_eq!(grew, [false, false, false, true, false, false, false, true]);
        assert_eq!(g.batch, 16);
        // The maximum caps it: 16 -> 20, then no more.
        for _ in 0..20 {
            g.observe(3.0, &rule);
        }
        assert_eq!(g.batch, 20);
    }
}
