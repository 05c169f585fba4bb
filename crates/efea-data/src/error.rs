//! The one error type of `efea-data`: every message names the file, the 1-based line (the
//! header is line 1) or the entry, and what was expected, on one line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Every way a dataset, an image or a dataset specification can be bad.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or directory could not be opened or read.
    #[error("{}: cannot read: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file could not be written.
    #[error("{}: cannot write: {error}", path.display())]
    Write { path: PathBuf, error: String },

    /// One row of a CSV file is bad.
    #[error("{}:{line}: {problem}", path.display())]
    Row {
        path: PathBuf,
        line: usize,
        problem: RowProblem,
    },

    /// A whole file is bad (empty, header only, ...).
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: FileProblem },

    /// An image file could not be decoded.
    #[error("{}: unreadable image: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    /// A directory tree does not have the expected layout.
    #[error("{}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },

    /// Subject-independent folds cannot be made.
    #[error("cannot make {folds} subject-independent folds of `{dataset}`: {problem}")]
    Folds {
        dataset: String,
        folds: usize,
        problem: String,
    },

    /// The classes of a network and of a dataset do not match by name.
    #[error(
        "the network's classes ({}) do not match the dataset's ({}): {problem}",
        model.join(", "),
        data.join(", ")
    )]
    ClassMismatch {
        model: Vec<String>,
        data: Vec<String>,
        problem: String,
    },

    /// A `key=value,...` specification (synthetic set) or an option is invalid.
    #[error("invalid specification `{spec}`: {problem}")]
    Spec { spec: String, problem: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn row(path: &Path, line: usize, problem: RowProblem) -> Self {
        Self::Row {
            path: path.to_path_buf(),
            line,
            problem,
        }
    }

    pub(crate) fn file(path: &Path, problem: FileProblem) -> Self {
        Self::File {
            path: path.to_path_buf(),
            problem,
        }
    }

    pub(crate) fn layout(path: &Path, problem: impl Into<String>) -> Self {
        Self::Layout {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn image(path: &Path, reason: impl fmt::Display) -> Self {
        Self::Image {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn spec(spec: &str, problem: impl Into<String>) -> Self {
        Self::Spec {
            spec: spec.to_string(),
            problem: problem.into(),
        }
    }

    /// Whether `--skip-bad` may skip this error and go on with the next row or image.
    pub fn is_skippable(&self) -> bool {
        matches!(self, Self::Row { .. } | Self::Image { .. })
    }
}

/// What is wrong with one row of a CSV file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("expected {expected} pixel values, found {found}")]
    PixelCount { found: usize, expected: usize },
    #[error("pixel {index} is `{value}`, expected an integer 0-255")]
    PixelValue { index: usize, value: String },
    #[error("unknown label `{found}`, expected {expected}")]
    UnknownLabel { found: String, expected: String },
    #[error("unknown Usage `{found}`, expected Training, PublicTest or PrivateTest")]
    UnknownUsage { found: String },
    #[error("truncated row: found {found} of {expected} fields ({columns})")]
    Truncated {
        found: usize,
        expected: usize,
        columns: String,
    },
    #[error("too many fields: found {found}, expected {expected} ({columns})")]
    ExtraFields {
        found: usize,
        expected: usize,
        columns: String,
    },
    #[error("truncated row: quoted field has no closing `\"`")]
    UnterminatedQuote,
    #[error("bad header `{found}`, expected columns {expected}")]
    Header { found: String, expected: String },
    #[error("bad vote count `{found}` in column `{column}`, expected a non-negative number")]
    Votes { column: String, found: String },
}

/// What is wrong with a whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("file is empty, expected a header line `{expected}`")]
    Empty { expected: String },
    #[error("file has a header and no rows, expected at least one row after line 1")]
    HeaderOnly,
    #[error("all {rows} rows are bad (first: line {first_line}), expected at least one good row")]
    AllBad { rows: usize, first_line: usize },
    #[error("has {found} rows, expected {expected} rows aligned with {other}")]
    RowCount {
        found: usize,
        expected: usize,
        other: String,
    },
    #[error("empty emotion file, expected one emotion code 1-7")]
    EmptyEmotion,
    #[error("emotion `{found}`, expected one emotion code 1-7")]
    Emotion { found: String },
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
