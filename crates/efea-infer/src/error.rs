use std::io;
use std::path::PathBuf;

use efea_data::decode::DecodeError;
use efea_model::WeightsError;

/// Everything inference can fail on: a model that does not load, or an input that is not a
/// usable image. Input errors are per image: the caller reports them and goes on.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The run directory or checkpoint could not be loaded.
    #[error(transparent)]
    Model(#[from] WeightsError),
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// The bytes start like no image format efea knows.
    #[error("not an image (jpeg, png, bmp, webp, tiff or gif expected)")]
    NotAnImage,
    /// A known image format that this build cannot decode (e.g. AVIF).
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    /// More pixels than allowed, refused from the header before decoding.
    #[error("{width}x{height} image has {} pixels, over the limit of {max_pixels}", *width as u64 * *height as u64)]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Truncated or damaged image data.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    /// A bug met while analysing this image (a panic, caught so the other images go on).
    #[error("internal error while analysing this image: {0}")]
    Internal(String),
}

/// What an input error means to a client, for callers that must answer with a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not an image format efea reads.
    UnsupportedInput,
    /// The input is too large.
    TooLarge,
    /// The input is an image but damaged, or empty.
    BadInput,
    /// The fault is not the input's (model, file system).
    Internal,
}

impl From<DecodeError> for InferError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Empty => Self::Empty,
            DecodeError::NotAnImage => Self::NotAnImage,
            DecodeError::Unsupported(format) => Self::Unsupported(format),
            DecodeError::TooLarge {
                width,
                height,
                max_pixels,
            } => Self::TooLarge {
                width,
                height,
                max_pixels,
            },
            DecodeError::Corrupt(reason) => Self::Corrupt(reason),
        }
    }
}

impl InferError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            InferError::NotAnImage | InferError::Unsupported(_) => ErrorKind::UnsupportedInput,
            InferError::TooLarge { .. } => ErrorKind::TooLarge,
            InferError::Empty | InferError::Corrupt(_) => ErrorKind::BadInput,
            InferError::Model(_) | InferError::Io { .. } | InferError::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        InferError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = InferError> = std::result::Result<T, E>;
