//! Faces linked across frames into tracks, in the manner of SORT (Bewley et al., 2016)
//! without its Kalman filter: each track predicts where its face is now from a constant
//! velocity, detections are matched to predictions by overlap (IoU) plus, where the detector
//! gives them, the agreement of the five landmarks; a track that misses a few detections
//! coasts on its prediction. A track lost for longer (the face left the frame, turned away or
//! was hidden) is taken up again by a face of about its size that comes back within a few
//! seconds where it was last seen or where its motion was taking it: someone stepping out
//! and back keeps their id. This is no face recognition: another person showing up in that
//! spot within that time takes the id over. (A look descriptor, a normalised 16x16 gray
//! thumbnail, was tried and dropped: a change of expression moved the same synthetic person
//! as far as two different people.)
//!
//! Each track smooths its class probabilities over time ([`Smoothing`]); the raw values are
//! kept beside the smoothed ones.

use efea_face::Landmarks;
use efea_infer::Rect;

/// How class probabilities are smoothed along a track. Both are defined in seconds, so the
/// same setting means the same thing at any sampling rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// The raw values.
    None,
    /// An exponential moving average whose weight halves every `half_life` seconds.
    Exponential { half_life: f64 },
    /// The mean of the track's observations of the last `seconds`.
    Window { seconds: f64 },
}

impl Default for Smoothing {
    fn default() -> Self {
        Self::Exponential { half_life: 0.5 }
    }
}

impl std::str::FromStr for Smoothing {
    type Err = String;

    /// `none`, `ema:0.5` (half-life in seconds) or `window:1` (seconds).
    fn from_str(text: &str) -> Result<Self, String> {
        let expected =
            || format!("`{text}`: expected none, ema:SECONDS (half-life) or window:SECONDS");
        let (kind, value) = text.split_once(':').unwrap_or((text, ""));
        let seconds = || -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(expected)
        };
        match kind.trim().to_ascii_lowercase().as_str() {
            "none" | "raw" if value.is_empty() => Ok(Self::None),
            "ema" | "exp" | "exponential" => Ok(Self::Exponential {
                half_life: seconds()?,
            }),
            "window" | "mean" => Ok(Self::Window {
                seconds: seconds()?,
            }),
            _ => Err(expected()),
        }
    }
}

impl std::fmt::Display for Smoothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "none"),
            Self::Exponential { half_life } => write!(f, "ema:{half_life}"),
            Self::Window { seconds } => write!(f, "window:{seconds}"),
        }
    }
}

/// How detections are linked into tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Least overlap between a track's predicted box and a detection to link them.
    pub min_iou: f32,
    /// Weight of landmark agreement (0-1, from the mean landmark distance relative to the
    /// face size) added to the IoU when both sides have landmarks.
    pub landmark_weight: f32,
    /// Analysed frames a track may go without a detection before it is lost.
    pub max_missed: u32,
    /// Seconds during which a lost track is taken up again by a face that comes back where
    /// it was last seen (see [`Tracker`]); 0 turns this off.
    pub reid_seconds: f64,
    /// How far from where a lost track was last seen (or from where its motion would have
    /// taken it) its face may come back, in face widths.
    pub reid_distance: f32,
    pub smoothing: Smoothing,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            min_iou: 0.2,
            landmark_weight: 0.5,
            max_missed: 5,
            reid_seconds: 3.0,
            reid_distance: 1.0,
            smoothing: Smoothing::default(),
        }
    }
}

/// A face found in one frame, as the tracker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: Rect,
    pub landmarks: Option<Landmarks>,
    /// Class probabilities, in the model's class order.
    pub probabilities: Vec<f32>,
}

/// A detection linked to a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    /// Index of the detection in the frame's list.
    pub detection: usize,
    pub track: u32,
    /// The probabilities smoothed along the track, this one included.
    pub smoothed: Vec<f32>,
}

/// A box as centre and size, in pixels, with fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Area {
    cx: f32,
    cy: f32,
    w: f32,
    h: f32,
}

impl Area {
    fn of(rect: Rect) -> Self {
        Self {
            cx: rect.x as f32 + rect.width as f32 / 2.0,
            cy: rect.y as f32 + rect.height as f32 / 2.0,
            w: rect.width as f32,
            h: rect.height as f32,
        }
    }

    fn rect(&self) -> Rect {
        Rect {
            x: (self.cx - self.w / 2.0).round() as i32,
            y: (self.cy - self.h / 2.0).round() as i32,
            width: self.w.round().max(1.0) as u32,
            height: self.h.round().max(1.0) as u32,
        }
    }

    fn iou(&self, other: &Self) -> f32 {
        let w = ((self.cx + self.w / 2.0).min(other.cx + other.w / 2.0)
            - (self.cx - self.w / 2.0).max(other.cx - other.w / 2.0))
        .max(0.0);
        let h = ((self.cy + self.h / 2.0).min(other.cy + other.h / 2.0)
            - (self.cy - self.h / 2.0).max(other.cy - other.h / 2.0))
        .max(0.0);
        let inter = w * h;
        let union = self.w * self.h + other.w * other.h - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    area: Area,
    /// Pixels per second of the centre.
    velocity: (f32, f32),
    landmarks: Option<Landmarks>,
    /// Time of the last linked detection.
    seen: f64,
    missed: u32,
    smoother: Smoother,
}

impl Track {
    fn predicted(&self, time: f64) -> Area {
        let dt = (time - self.seen) as f32;
        Area {
            cx: self.area.cx + self.velocity.0 * dt,
            cy: self.area.cy + self.velocity.1 * dt,
            ..self.area
        }
    }

    /// How well `detection` fits this track at `time`: IoU with the predicted box, plus the
    /// landmarks' agreement; `None` below the IoU gate.
    fn fit(&self, detection: &Detection, time: f64, config: &TrackerConfig) -> Option<f32> {
        let predicted = self.predicted(time);
        let area = Area::of(detection.bbox);
        let iou = predicted.iou(&area);
        if iou < config.min_iou {
            return None;
        }
        let agreement = match (&self.landmarks, &detection.landmarks) {
            (Some(mine), Some(theirs)) => {
                let (dx, dy) = (predicted.cx - self.area.cx, predicted.cy - self.area.cy);
                let mean: f32 = mine
                    .points
                    .iter()
                    .zip(&theirs.points)
                    .map(|(a, b)| ((a[0] + dx - b[0]).powi(2) + (a[1] + dy - b[1]).powi(2)).sqrt())
                    .sum::<f32>()
                    / 5.0;
                // 0 when the points are a quarter of the face apart on average, 1 when equal.
                (1.0 - mean / (0.25 * area.w.max(1.0))).max(0.0)
            }
            _ => 0.0,
        };
        Some(iou + config.landmark_weight * agreement)
    }

    fn link(&mut self, detection: &Detection, time: f64) {
        let area = Area::of(detection.bbox);
        let dt = (time - self.seen) as f32;
        if dt > 0.0 {
            let measured = ((area.cx - self.area.cx) / dt, (area.cy - self.area.cy) / dt);
            // Halfway between the old estimate and the new measurement: detector jitter is
            // damped, a change of direction is followed within a few frames.
            self.velocity = (
                0.5 * (self.velocity.0 + measured.0),
                0.5 * (self.velocity.1 + measured.1),
            );
        }
        self.area = area;
        self.landmarks = detection.landmarks;
        self.seen = time;
        self.missed = 0;
    }
}

/// Links the detections of successive analysed frames into tracks.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    active: Vec<Track>,
    /// Tracks lost within the last `reid_seconds`, with the time they were last seen.
    lost: Vec<Track>,
    next_id: u32,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            active: Vec::new(),
            lost: Vec::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Links the detections of the frame at `time` (seconds; increasing from call to call)
    /// to tracks, starting new ones where needed. One entry per detection, in order.
    pub fn update(&mut self, time: f64, detections: &[Detection]) -> Vec<Linked> {
        let mut track_of: Vec<Option<usize>> = vec![None; detections.len()];
        // Greedy matching on the best fits first: with the handful of faces of a video frame
        // it gives the optimal assignment in practice, and it is easy to follow.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.active.iter().enumerate() {
            for (d, detection) in detections.iter().enumerate() {
                if let Some(fit) = track.fit(detection, time, &self.config) {
                    pairs.push((fit, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.active.len()];
        for (_, t, d) in pairs {
            if !track_taken[t] && track_of[d].is_none() {
                track_taken[t] = true;
                track_of[d] = Some(t);
            }
        }
        for (t, track) in self.active.iter_mut().enumerate() {
            if !track_taken[t] {
                track.missed += 1;
            }
        }
        for (d, detection) in detections.iter().enumerate() {
            if let Some(t) = track_of[d] {
                self.active[t].link(detection, time);
            }
        }

        let matched_ids: Vec<u32> = self.active.iter().map(|t| t.id).collect();
        // Tracks missing for too long are lost; lost ones too old are forgotten.
        let max_missed = self.config.max_missed;
        let (still, gone): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|t| t.missed <= max_missed);
        self.active = still;
        self.lost.extend(gone);
        let reid_seconds = self.config.reid_seconds;
        self.lost.retain(|t| time - t.seen <= reid_seconds);

        // Detections left over: a lost face coming back, or a new one.
        let mut id_of: Vec<u32> = track_of
            .iter()
            .map(|t| t.map_or(0, |t| matched_ids[t]))
            .collect();
        for (d, detection) in detections.iter().enumerate() {
            if track_of[d].is_some() {
                continue;
            }
            let revived = self.recognise(detection, time);
            let mut track = match revived {
                Some(lost) => self.lost.swap_remove(lost),
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    Track {
                        id,
                        area: Area::of(detection.bbox),
                        velocity: (0.0, 0.0),
                        landmarks: detection.landmarks,
                        seen: time,
                        missed: 0,
                        smoother: Smoother::new(self.config.smoothing),
                    }
                }
            };
            // A revived track starts again from where it is now, at rest.
            track.velocity = (0.0, 0.0);
            track.seen = time;
            track.link(detection, time);
            id_of[d] = track.id;
            self.active.push(track);
        }

        detections
            .iter()
            .zip(id_of)
            .enumerate()
            .map(|(d, (detection, id))| {
                let track = self
                    .active
                    .iter_mut()
                    .find(|t| t.id == id)
                    .expect("every detection has an active track");
                Linked {
                    detection: d,
                    track: track.id,
                    smoothed: track.smoother.push(time, &detection.probabilities),
                }
            })
            .collect()
    }

    /// The lost track whose face `detection` at `time` is taken to be: one about its size,
    /// last seen near there or heading there; the nearest if several are.
    fn recognise(&self, detection: &Detection, time: f64) -> Option<usize> {
        if self.config.reid_seconds <= 0.0 {
            return None;
        }
        let area = Area::of(detection.bbox);
        self.lost
            .iter()
            .enumerate()
            .filter(|(_, t)| (0.67..=1.5).contains(&(area.w / t.area.w.max(1.0))))
            .map(|(i, t)| {
                // Its motion is trusted for a second at most.
                let heading = t.predicted(time.min(t.seen + 1.0));
                let distance = |a: &Area| (area.cx - a.cx).hypot(area.cy - a.cy);
                (
                    i,
                    distance(&t.area).min(distance(&heading)) / t.area.w.max(1.0),
                )
            })
            .filter(|(_, distance)| *distance <= self.config.reid_distance)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Where each track seen at the last update is predicted at `time` (for drawing the
    /// frames between analysed ones).
    pub fn predicted(&self, time: f64) -> Vec<(u32, Rect)> {
        self.active
            .iter()
            .filter(|t| t.missed == 0)
            .map(|t| (t.id, t.predicted(time).rect()))
            .collect()
    }
}

/// Smooths one track's probabilities over time.
#[derive(Debug, Clone)]
struct Smoother {
    smoothing: Smoothing,
    state: Vec<f32>,
    last: f64,
    window: std::collections::VecDeque<(f64, Vec<f32>)>,
}

impl Smoother {
    fn new(smoothing: Smoothing) -> Self {
        Self {
            smoothing,
            state: Vec::new(),
            last: 0.0,
            window: Default::default(),
        }
    }

    fn push(&mut self, time: f64, raw: &[f32]) -> Vec<f32> {
        match self.smoothing {
            Smoothing::None => raw.to_vec(),
            Smoothing::Exponential { half_life } => {
                if self.state.len() != raw.len() {
                    self.state = raw.to_vec();
                } else {
                    // The weight of the past halves every `half_life` seconds, whatever the
                    // gap between observations (a face that was missed for a while counts
                    // its old state for less).
                    let keep = 0.5f64.powf((time - self.last).max(0.0) / half_life) as f32;
                    for (s, r) in self.state.iter_mut().zip(raw) {
                        *s = keep * *s + (1.0 - keep) * r;
                    }
                }
                self.last = time;
                self.state.clone()
            }
            Smoothing::Window { seconds } => {
                self.window.push_back((time, raw.to_vec()));
                while self
                    .window
                    .front()
                    .is_some_and(|(t, _)| time - t >= seconds)
                {
                    self.window.pop_front();
                }
                let n = self.window.len() as f32;
                let mut mean = vec![0.0; raw.len()];
                for (_, values) in &self.window {
                    for (m, v) in mean.iter_mut().zip(values) {
                        *m += v / n;
                    }
                }
                mean
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(x: i32, y: i32, side: u32) -> Detection {
        Detection {
            bbox: Rect {
                x,
                y,
                width: side,
                height: side,
            },
            landmarks: None,
            probabilities: vec![0.5, 0.5],
        }
    }

    fn ids(linked: &[Linked]) -> Vec<u32> {
        linked.iter().map(|l| l.track).collect()
    }

    #[test]
    fn a_moving_face_keeps_its_track() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        for step in 0..30 {
            let linked = tracker.update(step as f64 * 0.1, &[detection(step * 20, 50, 60)]);
            assert_eq!(ids(&linked), [1], "step {step}");
        }
    }

    /// Two faces that cross, each hidden behind the other for a few frames: the motion
    /// prediction carries each track through, so the ids do not swap.
    #[test]
    fn crossing_faces_keep_their_ids() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        for step in 0..40 {
            let t = step as f64 / 10.0;
            let a = detection(10 + step * 12, 100, 60);
            let b = detection(490 - step * 12, 130, 60);
            // Near the crossing (step 20) only the front face is seen.
            let frame = if (18..=22).contains(&step) {
                vec![a]
            } else {
                vec![a, b]
            };
            let linked = tracker.update(t, &frame);
            assert_eq!(linked[0].track, 1, "step {step}");
            if frame.len() == 2 {
                assert_eq!(linked[1].track, 2, "step {step}");
            }
        }
    }

    #[test]
    fn a_face_missing_for_too_long_gets_a_new_track_unless_it_comes_back_where_it_left() {
        let config = TrackerConfig {
            max_missed: 2,
            reid_seconds: 5.0,
            ..TrackerConfig::default()
        };
        let mut tracker = Tracker::new(config.clone());
        tracker.update(0.0, &[detection(100, 100, 50)]);
        for step in 1..=3 {
            assert!(tracker.update(step as f64, &[]).is_empty());
        }
        // Back near where it left: the same track; far from there: a new one.
        assert_eq!(ids(&tracker.update(4.0, &[detection(120, 100, 50)])), [1]);
        for step in 5..=7 {
            tracker.update(step as f64, &[]);
        }
        assert_eq!(ids(&tracker.update(8.0, &[detection(300, 100, 50)])), [2]);
        // Too late to be taken up again.
        let mut tracker = Tracker::new(config.clone());
        tracker.update(0.0, &[detection(100, 100, 50)]);
        for step in 1..=3 {
            tracker.update(step as f64, &[]);
        }
        assert_eq!(ids(&tracker.update(9.0, &[detection(100, 100, 50)])), [2]);
    }

    #[test]
    fn exponential_smoothing_halves_the_past_every_half_life() {
        let mut smoother = Smoother::new(Smoothing::Exponential { half_life: 1.0 });
        assert_eq!(smoother.push(0.0, &[1.0, 0.0]), [1.0, 0.0]);
        let after = smoother.push(1.0, &[0.0, 1.0]);
        assert!((after[0] - 0.5).abs() < 1e-6 && (after[1] - 0.5).abs() < 1e-6);
        let after = smoother.push(3.0, &[0.0, 1.0]);
        assert!((after[0] - 0.125).abs() < 1e-6, "{after:?}");
    }

    #[test]
    fn window_smoothing_is_the_mean_of_the_last_seconds() {
        let mut smoother = Smoother::new(Smoothing::Window { seconds: 1.0 });
        smoother.push(0.0, &[1.0]);
        smoother.push(0.5, &[0.0]);
        assert_eq!(smoother.push(0.9, &[0.5]), [0.5]);
        // The observation at 0.0 is a second old at 1.0 and leaves the window.
        assert_eq!(smoother.push(1.0, &[1.0]), [0.5]);
    }

    #[test]
    fn smoothing_settings_parse() {
        assert_eq!("none".parse(), Ok(Smoothing::None));
        assert_eq!(
            "ema:0.25".parse(),
            Ok(Smoothing::Exponential { half_life: 0.25 })
        );
        assert_eq!("window:2".parse(), Ok(Smoothing::Window { seconds: 2.0 }));
        for bad in ["ema", "ema:0", "window:-1", "median:1", "none:1"] {
            assert!(bad.parse::<Smoothing>().is_err(), "{bad}");
        }
    }
}
