//! Faces for efea: where they are in an image, their five landmarks where the detector gives
//! them, and the one geometry ([`Framing`]) that turns a face into a network input. The CK+
//! loader, `efea predict` and `efea serve` all find and frame faces here.
//!
//! Two detectors ship inside the crate, nothing is downloaded:
//! - [`DetectorKind::Rustface`]: SeetaFace's frontal cascade through `rustface` (boxes only);
//! - [`DetectorKind::Mtcnn`]: MTCNN (Zhang et al., 2016) on Burn, with facenet-pytorch's
//!   weights (boxes and five landmarks, so crops can be aligned).
//!
//! ```
//! use efea_face::{Detector, DetectorKind, Framing};
//!
//! let detector = Detector::new(DetectorKind::Rustface, 20);
//! let image = image::DynamicImage::new_luma8(64, 64);
//! for face in detector.detect(&image) {
//!     let crop = Framing::default().frame(&face).cut(&image.to_luma8(), 48);
//!     assert_eq!(crop.dimensions(), (48, 48));
//! }
//! ```

pub mod frame;
pub mod mtcnn;
pub mod seeta;

use std::fmt;
use std::str::FromStr;

use image::DynamicImage;
use serde::{Deserialize, Serialize};

pub use frame::{DEFAULT_MARGIN, Frame, Framing, MAX_MARGIN};
pub use mtcnn::{DetectedFace, Mtcnn, MtcnnConfig};
pub use seeta::{SeetaConfig, SeetaDetector};

/// A face found in an image: a box in pixels of that image (it may reach past the border),
/// the detector's score, and five landmarks where the detector finds them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    /// Higher is surer; the scale is the detector's (SeetaFace: about 2-30; MTCNN: a
    /// probability).
    pub score: f32,
    pub landmarks: Option<Landmarks>,
}

impl FaceBox {
    pub fn area(&self) -> f32 {
        self.width * self.height
    }

    /// The box and its landmarks with every coordinate multiplied by `factor` (a face found
    /// on a downscaled copy, mapped back).
    pub fn scaled(&self, factor: f32) -> Self {
        Self {
            x: self.x * factor,
            y: self.y * factor,
            width: self.width * factor,
            height: self.height * factor,
            score: self.score,
            landmarks: self.landmarks.map(|l| Landmarks {
                points: l.points.map(|[x, y]| [x * factor, y * factor]),
            }),
        }
    }
}

/// Five facial landmarks in pixels: left eye, right eye, nose tip, left and right mouth
/// corner, "left" meaning the image's left (MTCNN's order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Landmarks {
    pub points: [[f32; 2]; 5],
}

impl Landmarks {
    pub const NAMES: [&str; 5] = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"];

    /// The angle of the line from the left to the right eye, in radians, clockwise in image
    /// coordinates (y down); 0 when the eyes are level.
    pub fn eye_angle(&self) -> f32 {
        let [[lx, ly], [rx, ry], ..] = self.points;
        (ry - ly).atan2(rx - lx)
    }
}

/// Why a detector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// `origin` names the file (or the compiled-in asset).
    #[error("{origin}: cannot load MTCNN weights: {message}")]
    Weights { origin: String, message: String },
}

/// Which detector finds the faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// SeetaFace's frontal cascade (rustface): boxes, no landmarks.
    Rustface,
    /// MTCNN: boxes and five landmarks.
    Mtcnn,
}

impl DetectorKind {
    pub const NAMES: [&str; 2] = ["rustface", "mtcnn"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Rustface => "rustface",
            Self::Mtcnn => "mtcnn",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DetectorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rustface" | "seeta" | "seetaface" => Ok(Self::Rustface),
            "mtcnn" => Ok(Self::Mtcnn),
            _ => Err(format!(
                "unknown face detector `{s}`, expected one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// A face detector of either kind; `&self` everywhere, so one is shared between threads.
#[derive(Debug)]
pub enum Detector {
    Rustface(SeetaDetector),
    /// Boxed: its nets and fused layers make it some 7 KB against rustface's 120 bytes.
    Mtcnn(Box<Mtcnn>),
}

impl Detector {
    /// A detector of `kind` with its default settings, searching faces of at least
    /// `min_face_size` pixels (20 at least).
    pub fn new(kind: DetectorKind, min_face_size: u32) -> Self {
        match kind {
            DetectorKind::Rustface => Self::Rustface(SeetaDetector::new(SeetaConfig {
                min_face_size: min_face_size.max(20),
                ..SeetaConfig::default()
            })),
            // The detector runs on the CPU backend whatever device classifies: its nets are
            // small and its pyramid makes many small passes.
            DetectorKind::Mtcnn => Self::Mtcnn(Box::new(Mtcnn::new(
                MtcnnConfig {
                    min_face_size: min_face_size.max(20) as f64,
                    ..MtcnnConfig::default()
                },
                &burn::tensor::Device::flex(),
            ))),
        }
    }

    pub fn kind(&self) -> DetectorKind {
        match self {
            Self::Rustface(_) => DetectorKind::Rustface,
            Self::Mtcnn(_) => DetectorKind::Mtcnn,
        }
    }

    /// Faces in `image`, highest score first.
    pub fn detect(&self, image: &DynamicImage) -> Vec<FaceBox> {
        match self {
            Self::Rustface(detector) => detector.detect(&image.to_luma8()),
            Self::Mtcnn(detector) => detector
                .detect(&image.to_rgb8())
                .into_iter()
                .map(|face| {
                    let [x1, y1, x2, y2] = face.bbox;
                    FaceBox {
                        x: x1,
                        y: y1,
                        width: x2 - x1,
                        height: y2 - y1,
                        score: face.score,
                        landmarks: Some(Landmarks {
                            points: face.landmarks,
                        }),
                    }
                })
                .collect(),
        }
    }

    /// The largest face in `image`, if any (datasets show one face per image).
    pub fn largest_face(&self, image: &DynamicImage) -> Option<FaceBox> {
        self.detect(image)
            .into_iter()
            .max_by(|a, b| a.area().total_cmp(&b.area()))
    }
}

/// How faces are found and framed for a model: saved in every run directory's `config.json`
/// (as `face`), so inference frames a face exactly as the model's training data did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    pub detector: DetectorKind,
    /// Margin on each side, as a fraction of the face box's side.
    pub margin: f32,
    /// Rotate crops so the eyes are level (with a detector that gives landmarks).
    pub align: bool,
}

impl Default for FaceConfig {
    /// What efea used before the choice was recorded (rustface, margin 0.2, upright), so a
    /// run directory without a `face` entry is framed as it was trained.
    fn default() -> Self {
        Self {
            detector: DetectorKind::Rustface,
            margin: DEFAULT_MARGIN,
            align: false,
        }
    }
}

impl FaceConfig {
    pub fn framing(&self) -> Framing {
        Framing {
            margin: self.margin,
            align: self.align,
        }
    }
}
