//! The SeetaFace frontal detector (Wu et al., 2016, "Funnel-structured cascade for multi-view
//! face detection with alignment awareness"), in pure Rust through `rustface`. Its model
//! (BSD-2, see `assets/`) is compiled into the crate, so nothing is downloaded. It gives boxes
//! only, no landmarks.

use std::fmt;

use image::GrayImage;

use crate::FaceBox;

/// The SeetaFace frontal model shipped with `rustface` 0.1.7 (`model/seeta_fd_frontal_v1.0.bin`).
static MODEL: &[u8] = include_bytes!("../assets/seeta_fd_frontal_v1.0.bin");

/// Smallest window rustface can search; it panics on images smaller than this.
const MIN_WINDOW: u32 = 20;

/// Detector settings (rustface's defaults and the values of its demo).
#[derive(Debug, Clone, PartialEq)]
pub struct SeetaConfig {
    /// Smallest face side searched, in pixels (at least 20).
    pub min_face_size: u32,
    /// Minimum score of a reported face.
    pub score_threshold: f64,
    /// Ratio between image pyramid levels, in (0.1, 0.99).
    pub pyramid_scale_factor: f32,
    /// Sliding window step, in pixels.
    pub step: u32,
}

impl Default for SeetaConfig {
    fn default() -> Self {
        Self {
            min_face_size: MIN_WINDOW,
            score_threshold: 2.0,
            pyramid_scale_factor: 0.8,
            step: 4,
        }
    }
}

/// A SeetaFace detector; cheap to share between threads (each call builds its own working
/// state).
#[derive(Clone)]
pub struct SeetaDetector {
    model: rustface::Model,
    config: SeetaConfig,
}

impl fmt::Debug for SeetaDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeetaDetector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for SeetaDetector {
    fn default() -> Self {
        Self::new(SeetaConfig::default())
    }
}

impl SeetaDetector {
    pub fn new(config: SeetaConfig) -> Self {
        let model = rustface::read_model(MODEL).expect("the embedded SeetaFace model is valid");
        Self { model, config }
    }

    pub fn config(&self) -> &SeetaConfig {
        &self.config
    }

    /// Faces in `image`, highest score first. SeetaFace's scores are unbounded (about 2-30;
    /// higher is surer).
    pub fn detect(&self, image: &GrayImage) -> Vec<FaceBox> {
        let (width, height) = image.dimensions();
        if width < MIN_WINDOW || height < MIN_WINDOW {
            return Vec::new();
        }
        let mut detector = rustface::create_detector_with_model(self.model.clone());
        detector.set_min_face_size(self.config.min_face_size.max(MIN_WINDOW));
        detector.set_score_thresh(self.config.score_threshold);
        detector.set_pyramid_scale_factor(self.config.pyramid_scale_factor);
        detector.set_slide_window_step(self.config.step.max(1), self.config.step.max(1));
        let data = rustface::ImageData::new(image.as_raw(), width, height);
        let mut faces: Vec<FaceBox> = detector
            .detect(&data)
            .into_iter()
            .map(|face| {
                let bbox = face.bbox();
                FaceBox {
                    x: bbox.x() as f32,
                    y: bbox.y() as f32,
                    width: bbox.width() as f32,
                    height: bbox.height() as f32,
                    score: face.score() as f32,
                    landmarks: None,
                }
            })
            .collect();
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        faces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_or_tiny_image_has_no_face() {
        let detector = SeetaDetector::default();
        assert!(detector.detect(&GrayImage::new(120, 100)).is_empty());
        assert!(detector.detect(&GrayImage::new(10, 10)).is_empty());
    }
}
