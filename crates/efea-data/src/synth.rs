//! The built-in synthetic expression set: procedurally drawn, anti-aliased grayscale faces for
//! the seven FER2013 classes, so that tests, benchmarks and demos have a dataset that really
//! learns without any download.
//!
//! Each class is a set of facial action cues after the Facial Action Coding System (Ekman and
//! Friesen, 1978; prototypes as in Ekman, Friesen and Hager, 2002, EMFACS): brow raise (AU1+2),
//! brow lower and squeeze (AU4), inner brow raise (AU1), eye openness (AU5 / AU7), cheek raise
//! (AU6), nose wrinkle (AU9), upper-lip raise (AU10), lip-corner pull (AU12) and depress
//! (AU15), lip stretch (AU20), lip press (AU24) and mouth opening (AU25-27). A face is a
//! per-subject identity (head shape, feature placement, skin, hair, glasses) showing those
//! cues at some intensity, under a per-sample pose, lighting gradient, blur, noise and
//! occluder. Shapes are signed-distance functions, so edges are anti-aliased at any size.
//!
//! Every sample is drawn from its own generator seeded by `(seed, index)`, so the set is the
//! same whatever the number of threads.

use std::fmt;
use std::str::FromStr;

use image::GrayImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classes::{FER2013_CLASSES, owned};
use crate::error::{DataError, Result};
use crate::fer2013::USAGES;
use crate::rng::Rng;
use crate::{Dataset, Sample, Source};

/// How hard the synthetic set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthLevel {
    /// Strong cues, frontal faces, clean images.
    Easy,
    /// Varied intensity, pose, lighting and blur; some occluders.
    Medium,
    /// Subtle cues, Fear/Surprise and Angry/Disgust overlapping as in real data, strong pose,
    /// lighting and noise, frequent occluders.
    Hard,
}

impl SynthLevel {
    pub const NAMES: [&'static str; 3] = ["easy", "medium", "hard"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for SynthLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SynthLevel {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "easy" => Ok(Self::Easy),
            "medium" => Ok(Self::Medium),
            "hard" => Ok(Self::Hard),
            _ => Err(DataError::spec(
                s,
                "unknown level, expected easy, medium or hard",
            )),
        }
    }
}

/// What to draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of faces; classes take turns, so they are balanced to within one.
    pub count: usize,
    pub seed: u64,
    pub level: SynthLevel,
    /// Side of the square images (48 like FER2013).
    pub size: u32,
    /// Number of distinct people (at least 3). Splits and folds never share a subject.
    pub subjects: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self::new(3000)
    }
}

/// Splits of the synthetic set, as in FER2013, with 80 / 10 / 10 % of the subjects.
const SPLIT_FRACTIONS: [f32; 3] = [0.8, 0.1, 0.1];

impl SynthConfig {
    /// `count` medium faces, seed 0, 48x48, about 30 faces per subject.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            seed: 0,
            level: SynthLevel::Medium,
            size: 48,
            subjects: Self::default_subjects(count),
        }
    }

    /// About 30 faces per subject (4 per class), between 3 and 1,000 subjects.
    pub fn default_subjects(count: usize) -> usize {
        (count / 30).clamp(3, 1000)
    }

    /// This configuration with the keys of `spec` (`count=3000,level=medium,seed=1`; keys
    /// `count`, `level`, `seed`, `subjects`, `size`) overriding it. When `count` is given and
    /// `subjects` is not, the subjects follow [`SynthConfig::default_subjects`].
    pub fn with_spec(&self, spec: &str) -> Result<Self> {
        let mut config = self.clone();
        let mut subjects_given = false;
        for part in spec
            .split([',', ';'])
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| DataError::spec(spec, format!("`{part}` is not key=value")))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            let number = |what: &str| -> Result<u64> {
                value.parse().map_err(|_| {
                    DataError::spec(
                        spec,
                        format!("{what} `{value}` is not a non-negative integer"),
                    )
                })
            };
            match key.as_str() {
                "count" | "n" => config.count = number("count")? as usize,
                "seed" => config.seed = number("seed")?,
                "size" => config.size = number("size")? as u32,
                "subjects" => {
                    config.subjects = number("subjects")? as usize;
                    subjects_given = true;
                }
                "level" => {
                    config.level = value.parse().map_err(|_| {
                        DataError::spec(
                            spec,
                            format!("level `{value}`, expected easy, medium or hard"),
                        )
                    })?
                }
                _ => {
                    return Err(DataError::spec(
                        spec,
                        format!(
                            "unknown key `{key}`, expected count, level, seed, subjects or size"
                        ),
                    ));
                }
            }
            if key == "count" && !subjects_given {
                config.subjects = Self::default_subjects(config.count);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the numbers make a drawable set.
    pub fn validate(&self) -> Result<()> {
        let spec = format!(
            "count={},level={},seed={},subjects={},size={}",
            self.count, self.level, self.seed, self.subjects, self.size
        );
        if self.count == 0 {
            return Err(DataError::spec(&spec, "count must be at least 1"));
        }
        if !(16..=512).contains(&self.size) {
            return Err(DataError::spec(&spec, "size must be 16-512"));
        }
        if self.subjects < 3 {
            return Err(DataError::spec(
                &spec,
                "subjects must be at least 3 (one per split)",
            ));
        }
        Ok(())
    }

    /// The label of face `index` (classes take turns).
    pub fn label_of(&self, index: usize) -> usize {
        index % FER2013_CLASSES.len()
    }

    /// The subject number of face `index`: every subject shows every class.
    pub fn subject_of(&self, index: usize) -> usize {
        (index / FER2013_CLASSES.len()) % self.subjects
    }

    /// The subject id as stored in samples, e.g. `synth_0042`.
    pub fn subject_name(subject: usize) -> String {
        format!("synth_{subject:04}")
    }

    /// The split of each subject: a seeded permutation, then 80 / 10 / 10 %.
    fn split_of_subjects(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.subjects).collect();
        Rng::for_item(self.seed, STREAM_SPLIT, 0).shuffle(&mut order);
        let n = self.subjects as f32;
        let public = ((n * SPLIT_FRACTIONS[1]).round() as usize).max(1);
        let private = ((n * SPLIT_FRACTIONS[2]).round() as usize).max(1);
        let mut split = vec![0; self.subjects];
        for (rank, &subject) in order.iter().enumerate() {
            split[subject] = if rank < private {
                2
            } else if rank < private + public {
                1
            } else {
                0
            };
        }
        split
    }
}

/// Faces fill the frame as tightly as FER2013's crops (forehead and ears at the border).
const BASE_ZOOM: f32 = 1.1;

// Independent random streams under one seed.
const STREAM_SAMPLE: u64 = 1;
const STREAM_SUBJECT: u64 = 2;
const STREAM_SPLIT: u64 = 3;

/// Draws the whole set (in parallel; the result does not depend on the thread count).
pub fn generate(config: &SynthConfig) -> Result<Dataset> {
    config.validate()?;
    let identities: Vec<Identity> = (0..config.subjects)
        .map(|s| Identity::draw(config.seed, s))
        .collect();
    let images: Vec<GrayImage> = (0..config.count)
        .into_par_iter()
        .map(|index| render_with(config, &identities, index))
        .collect();
    let split_of_subject = config.split_of_subjects();
    let mut dataset = Dataset::new("synth", owned(&FER2013_CLASSES));
    for (index, image) in images.into_iter().enumerate() {
        let subject = config.subject_of(index);
        let sample = Sample {
            image,
            label: config.label_of(index),
            soft_label: None,
            subject: Some(SynthConfig::subject_name(subject)),
            source: Source::Synthetic {
                seed: config.seed,
                index,
            },
        };
        dataset.push(Some(USAGES[split_of_subject[subject]]), sample);
    }
    dataset.report.rows = config.count;
    Ok(dataset)
}

/// Draws face `index` of the set `config` describes, alone.
pub fn render(config: &SynthConfig, index: usize) -> GrayImage {
    let identity = Identity::draw(config.seed, config.subject_of(index));
    let face = Face::draw(config, &identity, index);
    face.paint(config.size)
}

fn render_with(config: &SynthConfig, identities: &[Identity], index: usize) -> GrayImage {
    Face::draw(config, &identities[config.subject_of(index)], index).paint(config.size)
}

/// What stays the same for one person. Lengths are fractions of the image side.
#[derive(Debug, Clone)]
struct Identity {
    head_rx: f32,
    head_ry: f32,
    jaw: f32,
    eye_sep: f32,
    eye_y: f32,
    eye_w: f32,
    eye_h: f32,
    brow_gap: f32,
    brow_len: f32,
    brow_th: f32,
    nose_y: f32,
    nose_w: f32,
    mouth_y: f32,
    mouth_w: f32,
    lip_th: f32,
    skin: f32,
    features: f32,
    hair: f32,
    hairline: f32,
    /// How far the hair stands out of the skull, and where it parts (-1..1).
    hair_volume: f32,
    hair_part: f32,
    long_hair: bool,
    glasses: bool,
    background: f32,
    clothes: f32,
}

impl Identity {
    fn draw(seed: u64, subject: usize) -> Self {
        let mut rng = Rng::for_item(seed, STREAM_SUBJECT, subject as u64);
        let skin = rng.range(0.42, 0.82);
        let mut background = rng.range(0.05, 0.95);
        if (background - skin).abs() < 0.15 {
            background = if skin > 0.5 { skin - 0.3 } else { skin + 0.3 };
        }
        let bald = rng.chance(0.08);
        Self {
            head_rx: rng.range(0.35, 0.41),
            head_ry: rng.range(0.46, 0.52),
            jaw: rng.range(0.1, 0.5),
            eye_sep: rng.range(0.135, 0.16),
            eye_y: rng.range(-0.075, -0.04),
            eye_w: rng.range(0.055, 0.07),
            eye_h: rng.range(0.022, 0.03),
            brow_gap: rng.range(0.055, 0.07),
            brow_len: rng.range(0.065, 0.08),
            brow_th: rng.range(0.016, 0.026),
            nose_y: rng.range(0.085, 0.115),
            nose_w: rng.range(0.035, 0.05),
            mouth_y: rng.range(0.22, 0.255),
            mouth_w: rng.range(0.095, 0.12),
            lip_th: rng.range(0.011, 0.018),
            skin,
            features: rng.range(0.04, 0.25),
            hair: if rng.chance(0.75) {
                rng.range(0.02, 0.3)
            } else {
                rng.range(0.45, 0.85)
            },
            hairline: if bald { -0.9 } else { rng.range(-0.36, -0.22) },
            hair_volume: rng.range(0.01, 0.05),
            hair_part: rng.range(-1.0, 1.0),
            long_hair: !bald && rng.chance(0.4),
            glasses: rng.chance(0.1),
            background,
            clothes: rng.range(0.05, 0.9),
        }
    }
}

/// Facial action cues, 0 = neutral, about +-1 at full intensity.
#[derive(Debug, Clone, Copy, Default)]
struct Cues {
    /// AU1+2: whole brow up (negative: AU4 lowers it).
    brow_raise: f32,
    /// AU1 alone: inner ends up (negative: inner ends down, the angry V).
    brow_inner: f32,
    /// AU4: brows drawn together.
    brow_squeeze: f32,
    /// AU5 upper-lid raise (positive) or AU7 lid tightening (negative).
    eye_open: f32,
    /// AU6: cheeks push the lower lids up.
    cheek_raise: f32,
    /// AU9.
    nose_wrinkle: f32,
    /// AU10.
    upper_lip_raise: f32,
    /// AU12 (positive) or AU15 (negative).
    lip_corner: f32,
    /// AU20 (positive) or lips drawn in (negative).
    lip_stretch: f32,
    /// AU24 (and AU17's raised lower lip).
    lip_press: f32,
    /// AU25-27.
    mouth_open: f32,
    /// Teeth showing inside an open mouth.
    teeth: f32,
}

impl Cues {
    /// The prototype of a FER2013 class at full intensity.
    #[rustfmt::skip]
    fn prototype(label: usize) -> Self {
        let c = |brow_raise, brow_inner, brow_squeeze, eye_open, cheek_raise, nose_wrinkle,
                 upper_lip_raise, lip_corner, lip_stretch, lip_press, mouth_open, teeth| Cues {
            brow_raise, brow_inner, brow_squeeze, eye_open, cheek_raise, nose_wrinkle,
            upper_lip_raise, lip_corner, lip_stretch, lip_press, mouth_open, teeth,
        };
        match label {
            //          brow  inner  squeeze eye  cheek nose  ulip  corner stretch press open teeth
            0 => c(-1.0, -1.0,  1.0, -0.4,  0.0, 0.0,  0.0, -0.2, -0.3,  1.0, 0.0, 0.0), // Angry
            1 => c(-0.5, -0.2,  0.4, -0.5,  0.5, 1.0,  1.0, -0.5,  0.0,  0.0, 0.25, 0.3), // Disgust
            2 => c( 0.6,  0.7,  0.6,  1.0,  0.0, 0.0,  0.0, -0.3,  1.0,  0.0, 0.45, 0.3), // Fear
            3 => c( 0.0,  0.0,  0.0, -0.3,  1.0, 0.0,  0.0,  1.0,  0.5,  0.0, 0.3, 0.8), // Happy
            4 => c(-0.1,  1.0,  0.3, -0.35, 0.0, 0.0,  0.0, -1.0, -0.1,  0.4, 0.0, 0.0), // Sad
            5 => c( 1.0,  0.2,  0.0,  0.9,  0.0, 0.0,  0.0,  0.0, -0.5,  0.0, 1.0, 0.2), // Surprise
            _ => Cues::default(),                                                          // Neutral
        }
    }

    fn fields(&mut self) -> [&mut f32; 12] {
        [
            &mut self.brow_raise,
            &mut self.brow_inner,
            &mut self.brow_squeeze,
            &mut self.eye_open,
            &mut self.cheek_raise,
            &mut self.nose_wrinkle,
            &mut self.upper_lip_raise,
            &mut self.lip_corner,
            &mut self.lip_stretch,
            &mut self.lip_press,
            &mut self.mouth_open,
            &mut self.teeth,
        ]
    }

    fn mix(mut self, mut other: Self, t: f32) -> Self {
        for (a, b) in self.fields().into_iter().zip(other.fields()) {
            *a += (*b - *a) * t;
        }
        self
    }

    fn scaled(mut self, s: f32) -> Self {
        for a in self.fields() {
            *a *= s;
        }
        self
    }
}

/// The per-level ranges of everything drawn per sample.
#[derive(Debug, Clone, Copy)]
struct LevelParams {
    intensity: (f32, f32),
    cue_noise: f32,
    /// How far Fear/Surprise and Angry/Disgust blend into each other.
    confusion: (f32, f32),
    roll_deg: f32,
    scale: f32,
    shift: f32,
    yaw: f32,
    light: f32,
    blur: (f32, f32),
    noise: f32,
    occluder: f32,
    contrast: f32,
}

impl LevelParams {
    #[rustfmt::skip]
    fn of(level: SynthLevel) -> Self {
        match level {
            SynthLevel::Easy => Self {
                intensity: (0.85, 1.0), cue_noise: 0.05, confusion: (0.0, 0.0), roll_deg: 3.0,
                scale: 0.03, shift: 0.015, yaw: 0.0, light: 0.1, blur: (0.0, 0.4), noise: 0.01,
                occluder: 0.0, contrast: 0.05,
            },
            SynthLevel::Medium => Self {
                intensity: (0.5, 1.0), cue_noise: 0.12, confusion: (0.0, 0.2), roll_deg: 8.0,
                scale: 0.07, shift: 0.04, yaw: 0.12, light: 0.25, blur: (0.0, 0.6), noise: 0.03,
                occluder: 0.1, contrast: 0.15,
            },
            SynthLevel::Hard => Self {
                intensity: (0.25, 0.75), cue_noise: 0.2, confusion: (0.2, 0.5), roll_deg: 14.0,
                scale: 0.12, shift: 0.07, yaw: 0.25, light: 0.4, blur: (0.2, 1.0), noise: 0.05,
                occluder: 0.3, contrast: 0.3,
            },
        }
    }
}

/// An occluding blob (a hand, a cup, a microphone).
#[derive(Debug, Clone, Copy)]
struct Occluder {
    x: f32,
    y: f32,
    rx: f32,
    ry: f32,
    tone: f32,
}

/// Everything needed to paint one face.
#[derive(Debug, Clone)]
struct Face {
    id: Identity,
    cues: Cues,
    /// Asymmetry of the upper-lip raise and brows (-1..1).
    asym: f32,
    roll: f32,
    scale: f32,
    shift: (f32, f32),
    yaw: f32,
    light_dir: (f32, f32),
    light: f32,
    blur: f32,
    noise: f32,
    noise_seed: u64,
    occluder: Option<Occluder>,
    contrast: f32,
    brightness: f32,
}

/// Index of the class each class is confused with at `hard` (Fear<->Surprise,
/// Angry<->Disgust), as in FER2013's confusion matrices.
fn confusable(label: usize) -> Option<usize> {
    match label {
        0 => Some(1),
        1 => Some(0),
        2 => Some(5),
        5 => Some(2),
        _ => None,
    }
}

impl Face {
    fn draw(config: &SynthConfig, identity: &Identity, index: usize) -> Self {
        let level = LevelParams::of(config.level);
        let mut rng = Rng::for_item(config.seed, STREAM_SAMPLE, index as u64);
        let label = config.label_of(index);
        let mut cues = Cues::prototype(label);
        // Some natural variety within a class.
        match label {
            0 if rng.chance(0.3) => {
                // Angry with an open, teeth-baring mouth instead of pressed lips.
                cues.lip_press = 0.2;
                cues.mouth_open = 0.45;
                cues.teeth = 1.0;
                cues.lip_stretch = 0.2;
            }
            3 => {
                cues.mouth_open = rng.range(0.0, 0.6);
                cues.teeth = if cues.mouth_open > 0.15 { 1.0 } else { 0.0 };
            }
            5 => cues.mouth_open = rng.range(0.7, 1.1),
            _ => {}
        }
        if let Some(other) = confusable(label) {
            let t = rng.range(level.confusion.0, level.confusion.1);
            cues = cues.mix(Cues::prototype(other), t);
        }
        cues = cues.scaled(rng.range(level.intensity.0, level.intensity.1));
        for value in cues.fields() {
            *value += level.cue_noise * rng.normal();
        }
        cues.teeth = cues.teeth.clamp(0.0, 1.0);
        cues.mouth_open = cues.mouth_open.max(0.0);

        let occluder = rng.chance(level.occluder).then(|| Occluder {
            x: rng.range(-0.35, 0.35),
            y: rng.range(-0.15, 0.45),
            rx: rng.range(0.07, 0.16),
            ry: rng.range(0.06, 0.14),
            tone: rng.range(0.1, 0.95),
        });
        let angle = rng.range(0.0, std::f32::consts::TAU);
        Self {
            id: identity.clone(),
            cues,
            asym: rng.range(-1.0, 1.0),
            roll: (level.roll_deg * rng.normal())
                .clamp(-2.5 * level.roll_deg, 2.5 * level.roll_deg)
                .to_radians(),
            scale: BASE_ZOOM * (1.0 + level.scale * rng.range(-1.0, 1.0)),
            shift: (
                level.shift * rng.range(-1.0, 1.0),
                level.shift * rng.range(-1.0, 1.0),
            ),
            yaw: level.yaw * rng.range(-1.0, 1.0),
            light_dir: (angle.cos(), angle.sin()),
            light: level.light * rng.f32(),
            blur: rng.range(level.blur.0, level.blur.1),
            noise: level.noise * rng.range(0.3, 1.0),
            noise_seed: rng.next_u64(),
            occluder,
            contrast: 1.0 + level.contrast * rng.range(-1.0, 1.0),
            brightness: level.contrast * 0.5 * rng.range(-1.0, 1.0),
        }
    }

    fn paint(&self, size: u32) -> GrayImage {
        let n = size as usize;
        let mut pixels = vec![0.0f32; n * n];
        let (sin, cos) = (-self.roll).sin_cos();
        // One pixel in face units, for anti-aliasing.
        let pixel = 1.0 / (size as f32 * self.scale);
        let geometry = Geometry::new(self);
        for row in 0..n {
            for col in 0..n {
                // Image coordinates in [-0.5, 0.5], y down; then into the face frame.
                let qx = (col as f32 + 0.5) / size as f32 - 0.5;
                let qy = (row as f32 + 0.5) / size as f32 - 0.5;
                let (dx, dy) = (
                    (qx - self.shift.0) / self.scale,
                    (qy - self.shift.1) / self.scale,
                );
                let (px, py) = (cos * dx - sin * dy, sin * dx + cos * dy);
                let mut value = geometry.shade(px, py, pixel);
                // Lighting gradient across the image, then global contrast.
                value *= 1.0 + self.light * (qx * self.light_dir.0 + qy * self.light_dir.1) * 2.0;
                value = (value - 0.5) * self.contrast + 0.5 + self.brightness;
                pixels[row * n + col] = value;
            }
        }
        let sigma = self.blur * size as f32 / 48.0;
        if sigma > 0.05 {
            gaussian_blur(&mut pixels, n, sigma);
        }
        let mut rng = Rng::new(self.noise_seed);
        let bytes = pixels
            .iter()
            .map(|&v| {
                // + 0.5 then truncation rounds (non-negative), without a libm call per pixel.
                ((v + self.noise * approx_normal(&mut rng)).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            })
            .collect();
        GrayImage::from_raw(size, size, bytes).expect("n * n pixels")
    }
}

/// The face's shapes, resolved from identity and cues once per face.
struct Geometry<'a> {
    face: &'a Face,
    head_cy: f32,
    /// Horizontal offset of the features for a turned head.
    yaw_dx: f32,
    eyes: [Eye; 2],
    brows: [[(f32, f32); 3]; 2],
    brow_th: f32,
    nostril_y: f32,
    nostril_dx: f32,
    mouth: Mouth,
    fold: f32,
}

struct Eye {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    /// Lower lid line pushed up by the cheeks (face units, absolute y).
    lower_cut: f32,
    iris: f32,
}

struct Mouth {
    cx: f32,
    half_width: f32,
    corner_y: f32,
    upper_y: f32,
    lower_y: f32,
    /// Extra raise of the upper lip towards one side (disgust's asymmetric sneer).
    sneer: f32,
    lip_upper: f32,
    lip_lower: f32,
    teeth: f32,
}

impl Mouth {
    /// The upper and lower edges of the mouth opening at horizontal offset `x`.
    fn edges(&self, x: f32) -> (f32, f32) {
        let t = ((x - self.cx) / self.half_width).clamp(-1.0, 1.0);
        let bulge = (1.0 - t * t).max(0.0).powf(0.7);
        let upper = self.corner_y + (self.upper_y - self.corner_y) * bulge
            - self.sneer * (0.5 + 0.5 * t) * bulge;
        let lower = self.corner_y + (self.lower_y - self.corner_y) * bulge;
        (upper, lower.max(upper))
    }
}

impl<'a> Geometry<'a> {
    fn new(face: &'a Face) -> Self {
        let id = &face.id;
        let c = &face.cues;
        let yaw_dx = face.yaw * 0.12;
        let eye_open = (1.0 + 0.7 * c.eye_open).clamp(0.2, 2.0);
        let eyes = [-1.0f32, 1.0].map(|side| {
            let ry = id.eye_h * eye_open;
            // The upper lid moves; the lower lid stays, so the centre follows half the change.
            let cy = id.eye_y - (ry - id.eye_h) * 0.5;
            let lower_cut = cy + ry * (1.0 - 0.65 * c.cheek_raise.max(0.0));
            Eye {
                cx: side * id.eye_sep + yaw_dx * (1.0 - 0.3 * side * face.yaw.signum()),
                cy,
                rx: id.eye_w * (1.0 - 0.08 * c.cheek_raise.max(0.0)),
                ry,
                lower_cut,
                iris: id.eye_w * 0.5,
            }
        });
        let brows = [-1.0f32, 1.0].map(|side| {
            let asym = 1.0 + 0.15 * face.asym * side;
            let base_y = id.eye_y - id.brow_gap;
            let lift = -0.045 * c.brow_raise * asym;
            let inner_x =
                side * (id.eye_sep - id.brow_len * 0.95 - 0.018 * c.brow_squeeze) + yaw_dx;
            let outer_x = side * (id.eye_sep + id.brow_len * 0.95) + yaw_dx;
            let mid_x = side * (id.eye_sep + 0.012) + yaw_dx;
            let inner_y = base_y + lift - 0.04 * c.brow_inner + 0.01;
            let outer_y = base_y + lift + 0.018 * c.brow_inner.max(0.0) + 0.008;
            let arch = 0.014 + 0.018 * c.brow_raise.max(0.0) - 0.012 * c.brow_inner.max(0.0);
            let mid_y = base_y + lift - arch - 0.01 * c.brow_inner.min(0.0);
            [(inner_x, inner_y), (mid_x, mid_y), (outer_x, outer_y)]
        });
        let half_width = id.mouth_w
            * (1.0 + 0.3 * c.lip_stretch + 0.2 * c.lip_corner.max(0.0)
                - 0.45 * c.mouth_open.max(0.0) * (1.0 - c.lip_stretch.max(0.0))
                - 0.1 * c.lip_press.max(0.0))
            .clamp(0.45, 1.6);
        let opening = 0.12 * c.mouth_open;
        let y = id.mouth_y + 0.02 * c.mouth_open - 0.008 * c.lip_press;
        let mouth = Mouth {
            cx: yaw_dx * 1.1,
            half_width,
            corner_y: y - 0.04 * c.lip_corner - 0.01 * c.upper_lip_raise,
            upper_y: y - 0.3 * opening - 0.02 * c.upper_lip_raise,
            lower_y: y + 0.7 * opening,
            sneer: 0.014 * c.upper_lip_raise.max(0.0) * face.asym.signum(),
            lip_upper: id.lip_th * (1.0 - 0.6 * c.lip_press.clamp(0.0, 1.0)),
            lip_lower: id.lip_th * 1.3 * (1.0 - 0.5 * c.lip_press.clamp(0.0, 1.0)),
            teeth: c.teeth,
        };
        Self {
            face,
            head_cy: 0.04,
            yaw_dx,
            eyes,
            brows,
            brow_th: id.brow_th * (1.0 + 0.15 * c.brow_squeeze.max(0.0)),
            nostril_y: id.nose_y
                - 0.012 * c.nose_wrinkle.max(0.0)
                - 0.01 * c.upper_lip_raise.max(0.0),
            nostril_dx: id.nose_w * 0.55 * (1.0 + 0.25 * c.nose_wrinkle.max(0.0)),
            mouth,
            fold: (0.8 * c.lip_corner.max(0.0)
                + 0.7 * c.upper_lip_raise.max(0.0)
                + 0.3 * c.cheek_raise.max(0.0))
            .clamp(0.0, 1.0),
        }
    }

    /// The gray level at face-frame point `(x, y)`; `pw` is one pixel in face units.
    ///
    /// Layers are painted back to front; each block first checks that the point is near its
    /// features, which keeps 30,000 faces within seconds.
    fn shade(&self, x: f32, y: f32, pw: f32) -> f32 {
        let id = &self.face.id;
        let mut v = id.background;

        // Shoulders and neck.
        if y > 0.2 {
            let shoulders = 0.47 + 0.25 * (x / 0.5).powi(2) - y;
            v = blend(v, id.clothes, cover(shoulders, pw));
            let neck = box_sdf(x - self.yaw_dx * 0.5, y - 0.45, 0.13, 0.2);
            v = blend(v, id.skin * 0.78, cover(neck, pw));
        }

        // Hair behind the head when long, ears, the head, hair on top.
        let head = head_sdf(x, y - self.head_cy, id.head_rx, id.head_ry, id.jaw);
        if id.long_hair && head > -pw {
            let back = ellipse_sdf(x, y - 0.02, id.head_rx + 0.06, id.head_ry * 0.95).max(y - 0.3);
            v = blend(v, id.hair, cover(back, pw));
        }
        if head > -pw && (y - id.eye_y - 0.05).abs() < 0.08 {
            for side in [-1.0f32, 1.0] {
                let ear = ellipse_sdf(
                    x - side * (id.head_rx + 0.005) - self.yaw_dx * 0.4,
                    y - id.eye_y - 0.05,
                    0.035,
                    0.07,
                );
                v = blend(v, id.skin * 0.85, cover(ear, pw));
            }
        }
        let head_cover = cover(head, pw);
        if head_cover > 0.0 {
            v = blend(v, self.skin(x, y, pw), head_cover);
        }
        if head < id.hair_volume + pw {
            let across = x / id.head_rx;
            let hairline = id.hairline
                + 0.07 * across * across
                + 0.05 * id.hair_part * across
                + (id.eye_y - id.hairline) * smoothstep(0.7, 1.0, across.abs());
            let hair = (head - id.hair_volume).max(y - hairline);
            v = blend(v, id.hair, cover(hair, pw));
        }
        self.occlude(v, x, y, pw)
    }

    /// The face inside the head outline: skin shading and every feature.
    fn skin(&self, x: f32, y: f32, pw: f32) -> f32 {
        let id = &self.face.id;
        let c = &self.face.cues;
        let dark = id.features;
        // Skin, darker towards the rim as on a rounded surface.
        let r2 = (x / id.head_rx).powi(2) + ((y - self.head_cy) / id.head_ry).powi(2);
        let mut s = id.skin * (1.0 - 0.25 * r2.min(1.0)) + 0.04 * self.face.yaw * x / id.head_rx;
        let fx = x - self.yaw_dx;

        // Forehead wrinkles (raised brows) and frown lines (AU4).
        let brow_y = id.eye_y - id.brow_gap;
        let raise = c.brow_raise.max(0.0) + 0.5 * c.brow_inner.max(0.0);
        if raise > 0.05 && fx.abs() < 0.11 && y < brow_y - 0.05 && y > brow_y - 0.2 {
            for k in 0..2 {
                let yk = brow_y - 0.075 - 0.035 * k as f32 - 0.03 * c.brow_raise.max(0.0);
                let line = segment_sdf(fx, y, -0.1, yk, 0.1, yk + 0.004) - 0.004;
                s = blend(s, s * 0.7, cover(line, pw) * (0.6 * raise).min(0.6));
            }
        }
        let frown = (-c.brow_inner).max(0.0) * 0.5 + c.brow_squeeze.max(0.0) * 0.5 - 0.1;
        if frown > 0.0 && fx.abs() < 0.04 && (y - brow_y - 0.01).abs() < 0.04 {
            for side in [-1.0f32, 1.0] {
                let lx = side * 0.022;
                let line = segment_sdf(fx, y, lx, brow_y - 0.015, lx * 0.8, brow_y + 0.035) - 0.004;
                s = blend(s, s * 0.6, cover(line, pw) * (frown * 0.9).min(0.7));
            }
        }

        // Eye sockets, eyes, brows.
        if (y - id.eye_y + 0.04).abs() < 0.14 {
            for (eye, brow) in self.eyes.iter().zip(&self.brows) {
                if (x - eye.cx).abs() > id.eye_w + id.brow_len + 0.04 {
                    continue;
                }
                let socket = ellipse_sdf(
                    x - eye.cx,
                    y - (eye.cy - 0.012),
                    eye.rx * 1.35,
                    id.eye_h * 2.2 + 0.01,
                );
                s = blend(s, s * 0.85, soft(socket, 0.03));

                let shape =
                    ellipse_sdf(x - eye.cx, y - eye.cy, eye.rx, eye.ry).max(y - eye.lower_cut);
                if shape < 0.01 + pw {
                    let white = (0.55 + 0.45 * id.skin).min(0.95);
                    s = blend(s, white, cover(shape, pw));
                    let iris =
                        ((x - eye.cx).powi(2) + (y - eye.cy - 0.002).powi(2)).sqrt() - eye.iris;
                    s = blend(s, dark * 0.8, cover(iris.max(shape), pw));
                    // Upper lid and lashes: the upper rim of the eye.
                    let rim = shape.abs() - 0.006;
                    let upper = y - eye.cy - eye.ry * 0.2;
                    s = blend(s, dark, cover(rim.max(upper), pw) * 0.9);
                }

                let (a, m, b) = (brow[0], brow[1], brow[2]);
                let (d1, h1) = segment_sdf_h(x, y, a.0, a.1, m.0, m.1);
                let (d2, h2) = segment_sdf_h(x, y, m.0, m.1, b.0, b.1);
                // Thicker at the inner end, tapering outwards.
                let d = (d1 - self.brow_th * (0.6 - 0.1 * h1))
                    .min(d2 - self.brow_th * (0.5 - 0.2 * h2));
                let tone = dark * 0.6 + id.hair * 0.4;
                s = blend(s, tone, cover(d, pw) * 0.95);
            }
        }

        // Nose: bridge shade, wrinkles (AU9), tip shadow, nostrils.
        if fx.abs() < 0.1 && y > id.eye_y - 0.02 && y < self.nostril_y + 0.05 {
            let bridge = ellipse_sdf(
                fx - 0.02 * self.face.light_dir.0.signum(),
                y - (id.eye_y + id.nose_y) * 0.5,
                0.012,
                (id.nose_y - id.eye_y) * 0.5,
            );
            s = blend(s, s * 0.9, soft(bridge, 0.02));
            if c.nose_wrinkle > 0.05 {
                for k in 0..3 {
                    let yk = id.eye_y + 0.025 + 0.02 * k as f32;
                    let line = segment_sdf(fx, y, -0.03, yk, 0.03, yk - 0.003) - 0.0045;
                    s = blend(
                        s,
                        s * 0.62,
                        cover(line, pw) * (0.8 * c.nose_wrinkle).min(0.8),
                    );
                }
            }
            let nx = x - self.yaw_dx * 1.1;
            let tip = ellipse_sdf(nx, y - self.nostril_y - 0.012, id.nose_w, 0.02);
            s = blend(s, s * 0.8, soft(tip, 0.02));
            for side in [-1.0f32, 1.0] {
                let nostril = ellipse_sdf(
                    nx - side * self.nostril_dx,
                    y - self.nostril_y,
                    0.014,
                    0.008,
                );
                s = blend(s, dark * 1.5, cover(nostril, pw) * 0.7);
            }
        }

        let m = &self.mouth;
        // Nasolabial folds (smile, sneer).
        if self.fold > 0.05
            && y > self.nostril_y - 0.02
            && y < m.corner_y + 0.04
            && (x - m.cx).abs() < m.half_width + 0.06
        {
            for side in [-1.0f32, 1.0] {
                let top = (
                    side * (self.nostril_dx + 0.022) + self.yaw_dx,
                    self.nostril_y - 0.005,
                );
                let mid = (
                    side * (self.nostril_dx + 0.05) + self.yaw_dx,
                    (self.nostril_y + m.corner_y) * 0.5,
                );
                let end = (m.cx + side * (m.half_width + 0.02), m.corner_y + 0.015);
                let d = segment_sdf(x, y, top.0, top.1, mid.0, mid.1)
                    .min(segment_sdf(x, y, mid.0, mid.1, end.0, end.1))
                    - 0.005;
                s = blend(s, s * 0.65, cover(d, pw) * self.fold * 0.8);
            }
        }

        // Mouth: lips, opening, teeth; chin crease under pressed lips (AU17/24).
        if (x - m.cx).abs() < m.half_width + 0.02
            && y > m.corner_y.min(m.upper_y) - 0.05
            && y < m.lower_y + 0.05
        {
            let (upper, lower) = m.edges(x);
            let lip_d = (upper - m.lip_upper - y)
                .max(y - lower - m.lip_lower)
                .max((x - m.cx).abs() - m.half_width);
            s = blend(s, s * 0.72, cover(lip_d, pw));
            // The line between the lips, or the opening.
            let gap = (upper - y)
                .max(y - lower)
                .max((x - m.cx).abs() - m.half_width * 0.97);
            let line = if lower - upper < pw {
                gap - 0.0045
            } else {
                gap
            };
            s = blend(s, dark * 0.7, cover(line, pw));
            if m.teeth > 0.05 && lower - upper > 0.015 {
                let teeth = gap.max(y - (upper + (lower - upper) * 0.45));
                s = blend(s, 0.9, cover(teeth, pw) * m.teeth);
            }
        }
        let press = c.lip_press.max(0.0) + 0.5 * (-c.lip_corner).max(0.0);
        let chin_y = m.lower_y + m.lip_lower + 0.045;
        if press > 0.1 && (y - chin_y).abs() < 0.02 && (x - m.cx).abs() < 0.06 {
            let crease = segment_sdf(x, y, m.cx - 0.04, chin_y, m.cx + 0.04, chin_y) - 0.004;
            s = blend(s, s * 0.75, cover(crease, pw) * press.min(1.0) * 0.6);
        }

        // Glasses.
        if id.glasses && (y - id.eye_y).abs() < id.eye_w * 1.2 {
            for eye in &self.eyes {
                let ring = ellipse_sdf(x - eye.cx, y - id.eye_y, id.eye_w * 1.45, id.eye_w * 1.1)
                    .abs()
                    - 0.006;
                s = blend(s, 0.08, cover(ring, pw) * 0.9);
            }
            let bridge = segment_sdf(
                x,
                y,
                self.eyes[0].cx + id.eye_w * 1.4,
                id.eye_y,
                self.eyes[1].cx - id.eye_w * 1.4,
                id.eye_y,
            ) - 0.005;
            s = blend(s, 0.08, cover(bridge, pw) * 0.9);
        }
        s
    }

    fn occlude(&self, v: f32, x: f32, y: f32, pw: f32) -> f32 {
        match &self.face.occluder {
            Some(o) => blend(
                v,
                o.tone,
                cover(ellipse_sdf(x - o.x, y - o.y, o.rx, o.ry), pw),
            ),
            None => v,
        }
    }
}

/// Roughly standard normal from one draw: the sum of four 16-bit uniforms (Irwin-Hall),
/// centred and scaled; plenty for pixel noise and much cheaper than Box-Muller.
fn approx_normal(rng: &mut Rng) -> f32 {
    let bits = rng.next_u64();
    let sum: u64 = (0..4).map(|k| (bits >> (16 * k)) & 0xFFFF).sum();
    (sum as f32 / 65536.0 - 2.0) * 3.0f32.sqrt()
}

fn blend(under: f32, over: f32, alpha: f32) -> f32 {
    under + (over - under) * alpha
}

/// Anti-aliased coverage of a shape with signed distance `d` (negative inside).
fn cover(d: f32, pw: f32) -> f32 {
    (0.5 - d / pw).clamp(0.0, 1.0)
}

/// Soft coverage over `width` (for shading, not edges).
fn soft(d: f32, width: f32) -> f32 {
    (0.5 - d / width).clamp(0.0, 1.0)
}

fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Approximate signed distance to an axis-aligned ellipse centred at the origin
/// (Quilez's first-order approximation: exact on the axes, good near the boundary).
fn ellipse_sdf(x: f32, y: f32, rx: f32, ry: f32) -> f32 {
    let k0 = ((x / rx).powi(2) + (y / ry).powi(2)).sqrt();
    let k1 = ((x / (rx * rx)).powi(2) + (y / (ry * ry)).powi(2)).sqrt();
    if k1 < 1e-9 {
        -rx.min(ry)
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

/// A head: an ellipse whose lower half narrows towards the chin by `jaw`.
fn head_sdf(x: f32, y: f32, rx: f32, ry: f32, jaw: f32) -> f32 {
    let narrowing = 1.0 - jaw * 0.35 * (y / ry).max(0.0).powi(2);
    ellipse_sdf(x, y, rx * narrowing, ry)
}

fn box_sdf(x: f32, y: f32, half_w: f32, half_h: f32) -> f32 {
    let (dx, dy) = (x.abs() - half_w, y.abs() - half_h);
    let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
    outside + dx.max(dy).min(0.0)
}

fn segment_sdf(x: f32, y: f32, ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    segment_sdf_h(x, y, ax, ay, bx, by).0
}

/// Distance to the segment `a`-`b`, and where along it (0 at `a`, 1 at `b`) the nearest point is.
fn segment_sdf_h(x: f32, y: f32, ax: f32, ay: f32, bx: f32, by: f32) -> (f32, f32) {
    let (pax, pay, bax, bay) = (x - ax, y - ay, bx - ax, by - ay);
    let h = ((pax * bax + pay * bay) / (bax * bax + bay * bay).max(1e-12)).clamp(0.0, 1.0);
    (
        ((pax - bax * h).powi(2) + (pay - bay * h).powi(2)).sqrt(),
        h,
    )
}

/// Separable Gaussian blur with edge clamping.
fn gaussian_blur(pixels: &mut [f32], n: usize, sigma: f32) {
    let radius = (sigma * 2.5).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let mut tmp = vec![0.0f32; n * n];
    let clamp = |i: isize| i.clamp(0, n as isize - 1) as usize;
    for row in 0..n {
        for col in 0..n {
            let mut acc = 0.0;
            for (k, weight) in kernel.iter().enumerate() {
                acc += weight * pixels[row * n + clamp(col as isize + k as isize - radius)];
            }
            tmp[row * n + col] = acc;
        }
    }
    for row in 0..n {
        for col in 0..n {
            let mut acc = 0.0;
            for (k, weight) in kernel.iter().enumerate() {
                acc += weight * tmp[clamp(row as isize + k as isize - radius) * n + col];
            }
            pixels[row * n + col] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_overrides_and_rejects_unknown_keys() {
        let config = SynthConfig::default()
            .with_spec("count=70, level=hard,seed=9")
            .unwrap();
        assert_eq!(
            (config.count, config.level, config.seed),
            (70, SynthLevel::Hard, 9)
        );
        assert_eq!(config.subjects, SynthConfig::default_subjects(70));
        let err = SynthConfig::default()
            .with_spec("colour=red")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(SynthConfig::default().with_spec("subjects=2").is_err());
    }

    #[test]
    fn faces_vary_and_stay_in_range() {
        let config = SynthConfig::new(14);
        let a = render(&config, 0);
        let b = render(&config, 1);
        assert_eq!(a.dimensions(), (48, 48));
        assert_ne!(a.as_raw(), b.as_raw());
        let min = a.as_raw().iter().min().unwrap();
        let max = a.as_raw().iter().max().unwrap();
        assert!(max - min > 60, "a face has contrast: {min}..{max}");
    }
}
