//! The one error type of `efea-train`. Every message is one line and names the file or the
//! setting at fault.

use std::path::{Path, PathBuf};

use efea_data::DataError;
use efea_model::WeightsError;

/// Everything that can stop training, evaluation or cross-validation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A dataset could not be loaded or split.
    #[error(transparent)]
    Data(#[from] DataError),

    /// A checkpoint or weight file is missing, damaged, foreign or of another architecture.
    #[error(transparent)]
    Weights(#[from] WeightsError),

    /// The network's classes do not match the dataset's (the source, a
    /// [`DataError::ClassMismatch`], says how; boxed to keep every `Result` small).
    #[error("{} on `{dataset}`", model.display())]
    Classes {
        model: PathBuf,
        dataset: String,
        #[source]
        source: Box<DataError>,
    },

    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },

    /// A configuration file or value is invalid.
    #[error("invalid configuration{}: {message}", source_of(path))]
    Config {
        path: Option<PathBuf>,
        message: String,
    },

    /// A run directory cannot be resumed or reused.
    #[error("{}: {message}", path.display())]
    Run { path: PathBuf, message: String },

    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the loss became {loss} at epoch {epoch}, batch {batch}: training stopped (lower the \
         learning rate or enable gradient clipping); the last good checkpoint is kept"
    )]
    NonFinite {
        epoch: usize,
        batch: usize,
        loss: f32,
    },

    /// The caller asked the run to stop.
    #[error("training stopped on request after epoch {epoch}")]
    Stopped { epoch: usize },

    /// The caller abandoned the run in the middle of an epoch.
    #[error(
        "training interrupted at epoch {epoch}, batch {batch}: the run resumes from its last \
         epoch's checkpoint"
    )]
    Interrupted { epoch: usize, batch: usize },

    /// A report or plot could not be drawn.
    #[error("cannot draw {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

fn source_of(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

impl TrainError {
    pub(crate) fn io(path: &Path, error: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Config {
            path: None,
            message: message.into(),
        }
    }

    pub(crate) fn run(path: &Path, message: impl Into<String>) -> Self {
        Self::Run {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// Whether the error is the user's input (a dataset, a checkpoint, a config), as opposed
    /// to a failure of the machine or the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Data(_)
                | Self::Weights(_)
                | Self::Classes { .. }
                | Self::Config { .. }
                | Self::Run { .. }
        )
    }
}

/// `Result` with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
