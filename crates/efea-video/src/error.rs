use std::io;
use std::path::PathBuf;

use crate::time::clock;

/// Everything video analysis can fail on. Each message is one line that names the file and
/// says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// `ffmpeg` or `ffprobe` is not installed (or not where it was said to be).
    #[error(
        "`{program}` not found: efea reads and writes videos through FFmpeg; install it \
         (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)"
    )]
    ToolMissing { program: String },
    /// A file could not be read or written, or a tool could not be started.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// ffprobe finds no container it knows in the file.
    #[error("{}: not a video FFmpeg can read: {reason}", path.display())]
    NotAVideo { path: PathBuf, reason: String },
    /// A container without a video stream (an audio file, say).
    #[error("{}: no video stream (expected a video with at least one picture track)", path.display())]
    NoVideoStream { path: PathBuf },
    /// ffprobe's description of the file lacks something efea needs, or has it in a form
    /// that makes no sense (a zero frame size).
    #[error("{}: {entry}: {message}", path.display())]
    Probe {
        path: PathBuf,
        entry: String,
        message: String,
    },
    /// `--start` / `--end` outside the video or the wrong way round.
    #[error("{}: {message}", path.display())]
    Range { path: PathBuf, message: String },
    /// Decoding met errors, or stopped before the end of the video: the frames before `at`
    /// were analysed (a decoder conceals damage inside a stream and goes on, so `at` can be
    /// the end).
    #[error(
        "{}: damaged or truncated video: decoded up to {}{}: {reason}",
        path.display(),
        clock(*at),
        expected.map(|e| format!(" of {}", clock(e))).unwrap_or_default()
    )]
    Damaged {
        path: PathBuf,
        /// Time stamp (seconds from the start of the video) after the last decoded frame.
        at: f64,
        /// Where the video should have ended.
        expected: Option<f64>,
        reason: String,
    },
    /// The annotated video could not be written.
    #[error("{}: writing the annotated video: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
    /// The timeline picture could not be drawn.
    #[error("{}: drawing the timeline: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

impl VideoError {
    pub(crate) fn io(path: impl Into<PathBuf>, what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            what: what.into(),
            source,
        }
    }

    /// `program` could not be started: missing, or another I/O error.
    pub(crate) fn spawn(
        program: &std::path::Path,
        path: &std::path::Path,
        source: io::Error,
    ) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Self::ToolMissing {
                program: program.display().to_string(),
            }
        } else {
            Self::io(path, format!("starting {}", program.display()), source)
        }
    }
}

pub type Result<T, E = VideoError> = std::result::Result<T, E>;
