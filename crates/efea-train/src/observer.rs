//! How a run tells its caller what it is doing. The library never prints: the CLI implements
//! [`Observer`] with progress bars, tests with counters.

use std::path::PathBuf;

use crate::metrics::EpochMetrics;

/// What a run is about to do.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    pub dir: PathBuf,
    /// Epochs already done (a resumed run), and in all.
    pub first_epoch: usize,
    pub epochs: usize,
    pub train_samples: usize,
    pub select_samples: usize,
    pub select_name: String,
    /// Trainable parameters and multiply-adds per image.
    pub params: u64,
    pub macs: u64,
    pub devices: Vec<String>,
}

/// Progress within an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchProgress {
    /// 1-based.
    pub epoch: usize,
    /// Batches done in this epoch, and in all.
    pub batch: usize,
    pub batches: usize,
    /// Running means over the epoch so far.
    pub loss: f64,
    pub accuracy: f64,
    pub images_per_sec: f64,
    pub lr: f64,
}

/// Receives a run's events. Every method has a default that ignores it.
pub trait Observer {
    fn run_started(&mut self, _start: &RunStart) {}
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    fn batch_done(&mut self, _progress: &BatchProgress) {}
    /// `best`: this epoch is the best so far on the selection split.
    fn epoch_done(&mut self, _metrics: &EpochMetrics, _best: bool) {}
    /// An evaluation of `samples` samples starts (`what` names the split).
    fn evaluation_started(&mut self, _what: &str, _samples: usize) {}
    fn evaluation_progress(&mut self, _done: usize) {}
    fn evaluation_done(&mut self) {}
    /// A one-line remark (early stopping, resume, weights import).
    fn note(&mut self, _message: &str) {}
    /// Asked after every epoch's checkpoint; `true` stops the run there (resumable).
    fn should_stop(&mut self) -> bool {
        false
    }
    /// Asked after every training batch; `true` abandons the run there with
    /// [`TrainError::Interrupted`](crate::TrainError::Interrupted) (the last epoch's checkpoint
    /// is kept, so the run resumes from it): how a caller honours a user's interrupt, such as
    /// Ctrl-C in Python, without waiting for the epoch's end.
    fn should_abort(&mut self) -> bool {
        false
    }
}

/// Ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}
