//! efea on video: any file FFmpeg reads is decoded to frames ([`decode`]), sampled, its faces
//! found and classified by efea-infer's [`Predictor`](efea_infer::Predictor), linked across
//! frames into tracks with stable ids ([`track`]) whose probabilities are smoothed over time;
//! the results come out as rows ([`output`]), a per-track [`summary`], a [`timeline`]
//! picture and an annotated video ([`annotate`]).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use efea_infer::{Predictor, PredictorConfig};
//! use efea_video::{NoSink, VideoConfig, analyse, probe};
//!
//! let predictor = Predictor::bundled(&Device::flex(), PredictorConfig::default());
//! let config = VideoConfig::default();
//! let info = probe("clip.mp4".as_ref(), &config.tools)?;
//! let analysis = analyse(&predictor, &info, &config, &mut NoSink)?;
//! for track in &analysis.tracks {
//!     println!("track {}: {} frames", track.id, track.observations.len());
//! }
//! # Ok::<(), efea_video::VideoError>(())
//! ```
//!
//! The library never prints: progress and output go through a [`Sink`].

pub mod analyse;
pub mod annotate;
pub mod decode;
mod error;
pub mod output;
pub mod scene;
pub mod summary;
pub mod time;
pub mod timeline;
pub mod track;

pub use analyse::{
    Analysis, NoSink, Observation, Sampling, Shown, Sink, TrackHistory, VideoConfig, VideoTiming,
    analyse,
};
pub use annotate::Annotator;
pub use decode::{Decoder, Span, Tools, VideoFrame, VideoInfo, is_video_path, probe};
pub use error::{Result, VideoError};
pub use summary::{Summary, TrackSummary};
pub use timeline::write_timeline;
pub use track::{Smoothing, Tracker, TrackerConfig};
