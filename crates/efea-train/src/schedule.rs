//! Learning-rate schedules. Every kind but `plateau` is a pure function of the position in
//! training, so a resumed run computes the same rates; `plateau` keeps a small state that is
//! saved with each checkpoint.

use serde::{Deserialize, Serialize};

use crate::config::{ScheduleConfig, ScheduleKind};

/// Warm-up starts at this fraction of the peak rate.
const WARMUP_START: f64 = 0.01;

/// A schedule and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    config: ScheduleConfig,
    base_lr: f64,
    epochs: usize,
    pub state: PlateauState,
}

/// What `ReduceLROnPlateau` remembers between epochs (unused by the other kinds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    /// Current multiplier of the base rate.
    pub scale: f64,
    /// Best selection loss so far.
    pub best: Option<f64>,
    /// Epochs since it improved.
    pub bad_epochs: usize,
}

impl Default for PlateauState {
    fn default() -> Self {
        Self {
            scale: 1.0,
            best: None,
            bad_epochs: 0,
        }
    }
}

impl LrSchedule {
    pub fn new(config: &ScheduleConfig, base_lr: f64, epochs: usize) -> Self {
        Self {
            config: config.clone(),
            base_lr,
            epochs: epochs.max(1),
            state: PlateauState::default(),
        }
    }

    /// The rate for batch `batch` of `batches` in `epoch` (0-based).
    pub fn lr(&self, epoch: usize, batch: usize, batches: usize) -> f64 {
        let c = &self.config;
        // Position in epochs, fractional within an epoch.
        let t = epoch as f64 + batch as f64 / batches.max(1) as f64;
        let warmup = c.warmup_epochs as f64;
        if t < warmup {
            let start = self.base_lr * WARMUP_START;
            return start + (self.base_lr - start) * t / warmup;
        }
        match c.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step => self.base_lr * c.gamma.powi((epoch / c.step_size.max(1)) as i32),
            ScheduleKind::Cosine => {
                let span = (self.epochs as f64 - warmup).max(1e-9);
                let progress = ((t - warmup) / span).clamp(0.0, 1.0);
                c.min_lr
                    + (self.base_lr - c.min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Plateau => (self.base_lr * self.state.scale).max(c.min_lr),
        }
    }

    /// Called once per epoch with the selection loss; only `plateau` listens.
    pub fn epoch_end(&mut self, selection_loss: f64) {
        if self.config.kind != ScheduleKind::Plateau || !selection_loss.is_finite() {
            return;
        }
        let s = &mut self.state;
        let improved = s
            .best
            .is_none_or(|best| selection_loss < best * (1.0 - self.config.threshold));
        if improved {
            s.best = Some(selection_loss);
            s.bad_epochs = 0;
        } else {
            s.bad_epochs += 1;
            if s.bad_epochs > self.config.patience {
                s.scale *= self.config.factor;
                s.bad_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lr_matches_pytorch() {
        let schedule = LrSchedule::new(&ScheduleConfig::default(), 0.01, 50);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(schedule.lr(0, 0, 10), 0.01));
        assert!(close(schedule.lr(14, 9, 10), 0.01));
        assert!(close(schedule.lr(15, 0, 10), 0.001));
        assert!(close(schedule.lr(45, 0, 10), 0.00001));
    }

    #[test]
    fn cosine_warms_up_then_decays_to_min() {
        let config = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 2,
            min_lr: 1e-5,
            ..ScheduleConfig::default()
        };
        let schedule = LrSchedule::new(&config, 0.1, 10);
        assert!((schedule.lr(0, 0, 4) - 0.001).abs() < 1e-12);
        assert!(schedule.lr(1, 0, 4) < schedule.lr(1, 2, 4));
        assert!((schedule.lr(2, 0, 4) - 0.1).abs() < 1e-12);
        assert!(schedule.lr(6, 0, 4) < schedule.lr(3, 0, 4));
        assert!((schedule.lr(9, 4, 4) - 1e-5).abs() < 1e-9);
    }

    #[test]
    fn plateau_reduces_after_patience_epochs_without_improvement() {
        let config = ScheduleConfig {
            kind: ScheduleKind::Plateau,
            patience: 1,
            factor: 0.5,
            ..ScheduleConfig::default()
        };
        let mut schedule = LrSchedule::new(&config, 0.1, 10);
        for loss in [1.0, 0.9, 0.95, 0.95] {
            schedule.epoch_end(loss);
        }
        assert!((schedule.lr(4, 0, 1) - 0.05).abs() < 1e-12);
    }
}
