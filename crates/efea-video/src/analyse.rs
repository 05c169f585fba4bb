//! The whole run over a video: decode, sample, find and classify faces with the
//! [`Predictor`], link them into tracks, smooth, and hand each result to a [`Sink`] as it
//! comes (so that output is written progressively and a damaged file loses nothing that was
//! analysed before the damage).

use std::time::{Duration, Instant};

use efea_infer::{Predictor, Rect};
use image::{DynamicImage, RgbImage};
use serde::Serialize;

use crate::decode::{Decoder, Span, Tools, VideoFrame, VideoInfo};
use crate::error::{Result, VideoError};
use crate::track::{Detection, Tracker, TrackerConfig};

/// Which frames are analysed (the others are only decoded, and drawn in annotated videos).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every `n`-th frame, starting with the first.
    Every(u32),
    /// About `fps` frames per second (all frames when the video has fewer).
    Fps(f64),
}

impl Default for Sampling {
    fn default() -> Self {
        Self::Every(1)
    }
}

impl Sampling {
    /// Seconds between analysed frames of a video at `fps`.
    pub fn interval(&self, fps: f64) -> f64 {
        match *self {
            Self::Every(n) => n.max(1) as f64 / fps,
            Self::Fps(rate) => (1.0 / rate).max(1.0 / fps),
        }
    }
}

/// Picks the frames to analyse.
#[derive(Debug, Clone)]
struct Sampler {
    sampling: Sampling,
    fps: f64,
    next_time: f64,
}

impl Sampler {
    fn new(sampling: Sampling, fps: f64) -> Self {
        Self {
            sampling,
            fps,
            next_time: f64::NEG_INFINITY,
        }
    }

    fn take(&mut self, index: u64, time: f64) -> bool {
        match self.sampling {
            Sampling::Every(n) => index.is_multiple_of(u64::from(n.max(1))),
            Sampling::Fps(rate) => {
                // Half a frame of tolerance, so 10 of 30 frames/s are exactly every third.
                if time + 0.5 / self.fps < self.next_time {
                    return false;
                }
                let step = 1.0 / rate;
                self.next_time = if self.next_time.is_finite() {
                    (self.next_time + step).max(time + step - 0.5 / self.fps)
                } else {
                    time + step
                };
                true
            }
        }
    }
}

/// How a video is analysed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VideoConfig {
    pub sampling: Sampling,
    pub span: Span,
    pub tracker: TrackerConfig,
    pub tools: Tools,
}

/// One face of one analysed frame, linked to its track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// Frame index in the video (0 is the first frame of the video, not of `--start`).
    pub frame: u64,
    /// Seconds from the start of the video.
    pub time: f64,
    pub track: u32,
    #[serde(rename = "box")]
    pub bbox: Rect,
    /// The square the classifier saw.
    #[serde(skip)]
    pub crop: Rect,
    /// The detector's score.
    pub score: Option<f64>,
    /// The most probable class after smoothing, and before.
    pub class: usize,
    pub raw_class: usize,
    /// Class probabilities in the model's class order: this frame's, and smoothed along the
    /// track.
    pub raw: Vec<f32>,
    pub smoothed: Vec<f32>,
}

/// A track to draw on a frame: where, which class, how sure.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub track: u32,
    pub bbox: Rect,
    pub class: usize,
    /// Smoothed probabilities.
    pub probabilities: Vec<f32>,
}

/// Receives the results as they come.
pub trait Sink {
    /// Each analysed frame, with one observation per face found in it (possibly none).
    fn analysed(&mut self, _frame: &VideoFrame, _observations: &[Observation]) -> Result<()> {
        Ok(())
    }

    /// Every decoded frame in order, analysed or not, with the tracks to show on it: on an
    /// analysed frame its observations, between them the tracks of the last analysed frame
    /// moved to where their motion predicts them.
    fn frame(&mut self, _frame: &VideoFrame, _shown: &[Shown]) -> Result<()> {
        Ok(())
    }
}

/// A sink that keeps nothing (the [`Analysis`] alone is wanted).
#[derive(Debug, Default)]
pub struct NoSink;

impl Sink for NoSink {}

/// Everything observed of one track.
#[derive(Debug, Clone)]
pub struct TrackHistory {
    pub id: u32,
    pub observations: Vec<Observation>,
    /// The crop of the surest detection, `THUMBNAIL_SIDE` square.
    pub thumbnail: RgbImage,
    best_score: f64,
}

/// Side of a track's thumbnail.
pub const THUMBNAIL_SIDE: u32 = 96;

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoTiming {
    pub wall: Duration,
    /// Waiting for decoded frames (ffmpeg decodes in its own process, ahead of the analysis).
    pub decode: Duration,
    /// Gray conversion, detection, crops and preprocessing.
    pub detect: Duration,
    pub classify: Duration,
    pub track: Duration,
    /// The sinks: output rows, drawing and encoding annotated frames.
    pub output: Duration,
}

/// The result of a run.
#[derive(Debug)]
pub struct Analysis {
    pub info: VideoInfo,
    pub span: Span,
    pub sampling: Sampling,
    pub classes: Vec<String>,
    pub frames_decoded: u64,
    pub frames_analysed: u64,
    /// Time stamp of the first decoded frame and just after the last one.
    pub first_time: f64,
    pub end_time: f64,
    /// By track id.
    pub tracks: Vec<TrackHistory>,
    pub timing: VideoTiming,
    /// Set when decoding stopped early (damaged or truncated file): everything above covers
    /// the frames before that.
    pub stopped: Option<VideoError>,
}

impl Analysis {
    /// Seconds between analysed frames.
    pub fn sample_interval(&self) -> f64 {
        self.sampling.interval(self.info.fps)
    }
}

/// Analyses the video `info` describes (see [`crate::probe`]) and hands each result to
/// `sink`. A damaged or truncated file is not an error here: its analysis comes back with
/// [`Analysis::stopped`] set. Errors are the ones that stop the run (ffmpeg missing, a sink
/// that cannot write).
pub fn analyse(
    predictor: &Predictor,
    info: &VideoInfo,
    config: &VideoConfig,
    sink: &mut dyn Sink,
) -> Result<Analysis> {
    let start = Instant::now();
    let mut decoder = Decoder::open(info, config.span, &config.tools)?;
    let mut sampler = Sampler::new(config.sampling, info.fps);
    let mut tracker = Tracker::new(config.tracker.clone());
    let first_frame = (config.span.start * info.fps).round() as u64;
    let mut analysis = Analysis {
        info: info.clone(),
        span: config.span,
        sampling: config.sampling,
        classes: predictor.classes().to_vec(),
        frames_decoded: 0,
        frames_analysed: 0,
        first_time: config.span.start,
        end_time: config.span.start,
        tracks: Vec::new(),
        timing: VideoTiming::default(),
        stopped: None,
    };
    // What the last analysed frame showed, for the frames after it.
    let mut last_shown: Vec<Shown> = Vec::new();
    loop {
        let waited = Instant::now();
        let next = decoder.next_frame();
        analysis.timing.decode += waited.elapsed();
        let mut frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error @ VideoError::Damaged { .. }) => {
                analysis.stopped = Some(error);
                break;
            }
            Err(error) => return Err(error),
        };
        analysis.frames_decoded += 1;
        analysis.end_time = frame.time + 1.0 / info.fps;
        let shown = if sampler.take(frame.index, frame.time) {
            analysis.frames_analysed += 1;
            let image = std::mem::take(&mut frame.image);
            let analysed = predictor.predict_image(DynamicImage::ImageRgb8(image));
            analysis.timing.detect += analysed.prediction.timing.detect;
            analysis.timing.classify += analysed.prediction.timing.classify;
            frame.image = match analysed.image {
                DynamicImage::ImageRgb8(image) => image,
                other => other.to_rgb8(),
            };
            let tracked = Instant::now();
            let faces = &analysed.prediction.faces;
            let detections: Vec<Detection> = faces
                .iter()
                .map(|face| Detection {
                    bbox: face.bbox,
                    landmarks: face.landmarks,
                    probabilities: face.probabilities.iter().map(|(_, p)| *p).collect(),
                })
                .collect();
            let linked = tracker.update(frame.time, &detections);
            let observations: Vec<Observation> = linked
                .into_iter()
                .map(|link| {
                    let face = &faces[link.detection];
                    Observation {
                        frame: first_frame + frame.index,
                        time: frame.time,
                        track: link.track,
                        bbox: face.bbox,
                        crop: face.crop,
                        score: face.score,
                        class: argmax(&link.smoothed),
                        raw_class: face.class,
                        raw: detections[link.detection].probabilities.clone(),
                        smoothed: link.smoothed,
                    }
                })
                .collect();
            for observation in &observations {
                analysis.record(observation, &frame.image);
            }
            analysis.timing.track += tracked.elapsed();
            let written = Instant::now();
            sink.analysed(&frame, &observations)?;
            analysis.timing.output += written.elapsed();
            last_shown = observations
                .iter()
                .map(|o| Shown {
                    track: o.track,
                    bbox: o.bbox,
                    class: o.class,
                    probabilities: o.smoothed.clone(),
                })
                .collect();
            last_shown.clone()
        } else {
            let predicted = tracker.predicted(frame.time);
            last_shown
                .iter()
                .map(|s| Shown {
                    bbox: predicted
                        .iter()
                        .find(|(id, _)| *id == s.track)
                        .map_or(s.bbox, |(_, rect)| *rect),
                    ..s.clone()
                })
                .collect()
        };
        let written = Instant::now();
        sink.frame(&frame, &shown)?;
        analysis.timing.output += written.elapsed();
    }
    analysis.tracks.sort_by_key(|t| t.id);
    analysis.timing.wall = start.elapsed();
    Ok(analysis)
}

impl Analysis {
    fn record(&mut self, observation: &Observation, image: &RgbImage) {
        let score = observation.score.unwrap_or(0.0);
        let index = match self.tracks.iter().position(|t| t.id == observation.track) {
            Some(index) => index,
            None => {
                self.tracks.push(TrackHistory {
                    id: observation.track,
                    observations: Vec::new(),
                    thumbnail: RgbImage::new(1, 1),
                    best_score: f64::NEG_INFINITY,
                });
                self.tracks.len() - 1
            }
        };
        let track = &mut self.tracks[index];
        if score > track.best_score {
            track.best_score = score;
            track.thumbnail = image::imageops::resize(
                &efea_infer::draw::crop_clamped(image, observation.crop),
                THUMBNAIL_SIDE,
                THUMBNAIL_SIDE,
                image::imageops::FilterType::Triangle,
            );
        }
        track.observations.push(observation.clone());
    }
}

/// Index of the largest value.
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(sampling: Sampling, fps: f64, frames: u64) -> Vec<u64> {
        let mut sampler = Sampler::new(sampling, fps);
        (0..frames)
            .filter(|&i| sampler.take(i, 2.0 + i as f64 / fps))
            .collect()
    }

    #[test]
    fn every_nth_frame_is_sampled() {
        assert_eq!(taken(Sampling::Every(3), 30.0, 10), [0, 3, 6, 9]);
        assert_eq!(taken(Sampling::Every(1), 30.0, 3), [0, 1, 2]);
    }

    #[test]
    fn a_rate_samples_evenly() {
        assert_eq!(taken(Sampling::Fps(10.0), 30.0, 10), [0, 3, 6, 9]);
        assert_eq!(taken(Sampling::Fps(60.0), 30.0, 3), [0, 1, 2]);
        // 29.97 frames/s sampled at 2/s: about every 15th frame, never drifting.
        let frames = taken(Sampling::Fps(2.0), 29.97, 300);
        assert_eq!(frames.len(), 20, "{frames:?}");
        assert!(
            frames
                .windows(2)
                .all(|w| (14..=16).contains(&(w[1] - w[0])))
        );
    }
}
