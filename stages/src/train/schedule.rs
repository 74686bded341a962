//! The learning rate of each phase as a function of its progress, after the report's three phases
//! (Yi-Lightning, §3): *initial* warms up linearly over `warmup` steps, then follows a cosine from
//! the peak down to `lr-end` (half of the peak unless given); *intermediate* goes linearly from its
//! LR to `lr-end` (held constant unless given); *decay* falls from its LR to the floor `lr-end`
//! along `1 - sqrt(progress)`, which drops fast at first — the "aggressive" cool-down of
//! warmup-stable-decay schedules (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
//! Beyond Fixed Training Durations", §3). Progress is measured in tokens, not steps, so a batch that
//! grows mid-phase does not stretch the schedule.

use super::params::{PhaseKind, PhaseParams};

/// The LR at step `step` of `phase` (counted from the phase's start), `tokens` into it.
pub fn learning_rate(phase: &PhaseParams, step: usize, tokens: u64) -> f64 {
    if step < phase.warmup {
        return phase.lr * (step + 1) as f64 / phase.warmup as f64;
    }
    let progress = (tokens as f64 / phase.tokens.max(1) as f64).clamp(0.0, 1.0);
    let span = phase.lr - phase.lr_end;
    match phase.kind {
        PhaseKind::Initial => {
            phase.lr_end + span * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        PhaseKind::Intermediate => phase.lr - span * progress,
        PhaseKind::Decay => phase.lr_end + span * (1.0 - progress.sqrt()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(kind: PhaseKind, lr: f64, lr_end: f64, warmup: usize) -> PhaseParams {
        PhaseParams {
            kind,
            tokens: 1000,
            lr,
            lr_end,
            warmup,
            seq: 10,
            batch: 1,
            batch_growth: None,
        }
    }

    #[test]
    fn initial_warms_up_then_decays_to_half_the_peak() {
        let p = phase(PhaseKind::Initial, 1e-3, 5e-4, 10);
        assert!((learning_rate(&p, 0, 0) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&p, 9, 90) - 1e-3).abs() < 1e-12);
        let lrs: Vec<f64> = (10..100)
            .map(|s| learning_rate(&p, s, s as u64 * 10))
            .collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "decays monotonically");
        assert!((learning_rate(&p, 100, 1000) - 5e-4).abs() < 1e-12);
        // Half-way in tokens, the cosine is half-way between peak and end.
        assert!((learning_rate(&p, 50, 500) - 7.5e-4).abs() < 1e-12);
    }

    #[test]
    fn intermediate_holds_and_decay_drops_fast_to_the_floor() {
        let mid = phase(PhaseKind::Intermediate, 5e-4, 5e-4, 0);
        assert!((0..=10).all(|i| (learning_rate(&mid, i, i as u64 * 100) - 5e-4).abs() < 1e-15));
        let decay = phase(PhaseKind::Decay, 5e-4, 0.0, 0);
        assert!((learning_rate(&decay, 0, 0) - 5e-4).abs() < 1e-15);
        assert!(learning_rate(&decay, 10, 1000).abs() < 1e-15);
        // A quarter of the way in, half the LR is gone already (linear would keep 3/4).
        assert!((learning_rate(&decay, 2, 250) - 2.5e-4).abs() < 1e-12);
    }
}
