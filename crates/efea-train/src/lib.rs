//! Training, evaluation and cross-validation of the EFEA-MSM network, with the protocols of
//! the paper: FER2013 (train on `Training`, select on a held-out part or `PublicTest`, report
//! `PublicTest` and `PrivateTest` with and without ten-crop test-time augmentation) and CK+
//! (subject-independent k-fold cross-validation), plus the ablations of MODEL.md.
//!
//! A run lives in a directory (see [`checkpoint`]) that holds its config, its best and last
//! weights, resumable checkpoints, metrics, pictures and reports. Training is reproducible: the
//! same config, seed and data give the same metrics on the CPU backend, and a resumed run
//! continues exactly where the interrupted one stopped.
//!
//! The library never prints: progress goes to an [`Observer`].
//!
//! ```no_run
//! use burn::tensor::Device;
//! use efea_train::{Silent, TrainingConfig, train};
//!
//! let outcome = train(TrainingConfig::demo(), "runs/demo".as_ref(), &[Device::flex()], &mut Silent)?;
//! println!("{:?}", outcome.test_accuracy());
//! # Ok::<(), efea_train::TrainError>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod cv;
mod error;
pub mod eval_run;
pub mod evaluate;
pub mod metrics;
pub mod objective;
pub mod observer;
pub mod optim;
pub mod plot;
pub mod recipe;
pub mod report;
pub mod schedule;
pub mod splits;
mod train;

pub use config::{DEMO, TrainingConfig};
pub use cv::{AblationRow, CvOutcome, ablation, cross_validate};
pub use error::{Result, TrainError};
pub use eval_run::{EvalOutcome, EvalRequest, evaluate_run};
pub use evaluate::{EvalSettings, Evaluation, Tta, evaluate};
pub use metrics::{Confusion, EpochMetrics};
pub use observer::{BatchProgress, Observer, RunStart, Silent};
pub use recipe::{Recipe, RunRequest};
pub use report::{Report, SplitReport};
pub use train::{
    Fit, TrainOutcome, adopt_classes, epoch_batches, fit, resume, score_splits, throughput, train,
    write_config,
};
