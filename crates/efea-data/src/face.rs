//! Face detection and cropping with the SeetaFace frontal detector (Wu et al., 2016,
//! "Funnel-structured cascade for multi-view face detection with alignment awareness"), in
//! pure Rust through `rustface`. Its model (BSD-2, see `assets/`) is compiled into the crate,
//! so nothing is downloaded. Used by the CK+ loader and by `efea predict`.

use std::fmt;

use image::GrayImage;
use image::imageops;

use crate::preprocess::resize_square;

/// The SeetaFace frontal model shipped with `rustface` 0.1.7 (`model/seeta_fd_frontal_v1.0.bin`).
static MODEL: &[u8] = include_bytes!("../assets/seeta_fd_frontal_v1.0.bin");

/// Margin added around a detected face on each side, as a fraction of the box side: the
/// detector's box is tight around eyes and mouth; the usual FER crops include brows and chin.
pub const DEFAULT_MARGIN: f32 = 0.2;

/// A detected face: a box in pixels of the image it was found in, and the detector's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    /// SeetaFace's classifier score; higher is more certain (the default threshold is 2.0).
    pub score: f64,
}

impl FaceBox {
    pub fn area(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// Detector settings (rustface's defaults and the values of its demo).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side searched, in pixels (at least 20).
    pub min_face_size: u32,
    /// Minimum score of a reported face.
    pub score_threshold: f64,
    /// Ratio between image pyramid levels, in (0.1, 0.99).
    pub pyramid_scale_factor: f32,
    /// Sliding window step, in pixels.
    pub step: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            min_face_size: 20,
            score_threshold: 2.0,
            pyramid_scale_factor: 0.8,
            step: 4,
        }
    }
}

/// A face detector; cheap to share between threads (each call builds its own working state).
#[derive(Clone)]
pub struct FaceDetector {
    model: rustface::Model,
    config: DetectorConfig,
}

impl fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaceDetector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for FaceDetector {
    fn default() -> Self {
        Self::new(DetectorConfig::default())
    }
}

impl FaceDetector {
    pub fn new(config: DetectorConfig) -> Self {
        let model = rustface::read_model(MODEL).expect("the embedded SeetaFace model is valid");
        Self { model, config }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Faces in `image`, highest score first.
    pub fn detect(&self, image: &GrayImage) -> Vec<FaceBox> {
        let (width, height) = image.dimensions();
        // rustface panics on images smaller than its 20-pixel minimum window.
        if width < 20 || height < 20 {
            return Vec::new();
        }
        let mut detector = rustface::create_detector_with_model(self.model.clone());
        detector.set_min_face_size(self.config.min_face_size.max(20));
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
                    x: bbox.x(),
                    y: bbox.y(),
                    width: bbox.width(),
                    height: bbox.height(),
                    score: face.score(),
                }
            })
            .collect();
        faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        faces
    }

    /// The largest face in `image`, if any (datasets show one face per image).
    pub fn largest_face(&self, image: &GrayImage) -> Option<FaceBox> {
        self.detect(image).into_iter().max_by_key(FaceBox::area)
    }
}

/// The square around `face` grown by `margin` (fraction of its side) on each side, resized to
/// `size x size`. Parts outside the image repeat the border pixels.
pub fn crop_face(image: &GrayImage, face: &FaceBox, margin: f32, size: u32) -> GrayImage {
    let side = face.width.max(face.height) as f32 * (1.0 + 2.0 * margin.max(0.0));
    let centre_x = face.x as f32 + face.width as f32 / 2.0;
    let centre_y = face.y as f32 + face.height as f32 / 2.0;
    crop_square(
        image,
        centre_x,
        centre_y,
        side.round().max(1.0) as u32,
        size,
    )
}

/// The centred square of side `fraction * min(width, height)`, resized to `size x size`: the
/// fallback when no face is found (CK+ faces sit in the middle of the frame).
pub fn centre_crop(image: &GrayImage, fraction: f32, size: u32) -> GrayImage {
    let (width, height) = image.dimensions();
    let side = (width.min(height) as f32 * fraction.clamp(0.05, 1.0))
        .round()
        .max(1.0) as u32;
    crop_square(image, width as f32 / 2.0, height as f32 / 2.0, side, size)
}

fn crop_square(image: &GrayImage, centre_x: f32, centre_y: f32, side: u32, size: u32) -> GrayImage {
    let (width, height) = image.dimensions();
    let left = (centre_x - side as f32 / 2.0).round() as i64;
    let top = (centre_y - side as f32 / 2.0).round() as i64;
    let inside = left >= 0
        && top >= 0
        && left + side as i64 <= width as i64
        && top + side as i64 <= height as i64;
    let square = if inside {
        imageops::crop_imm(image, left as u32, top as u32, side, side).to_image()
    } else {
        GrayImage::from_fn(side, side, |x, y| {
            let sx = (left + x as i64).clamp(0, width as i64 - 1) as u32;
            let sy = (top + y as i64).clamp(0, height as i64 - 1) as u32;
            *image.get_pixel(sx, sy)
        })
    };
    resize_square(&square, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_square_at_the_requested_size_even_at_the_border() {
        let image = GrayImage::from_fn(64, 40, |x, _| image::Luma([(x * 4) as u8]));
        let face = FaceBox {
            x: 50,
            y: 30,
            width: 20,
            height: 20,
            score: 3.0,
        };
        let crop = crop_face(&image, &face, 0.2, 48);
        assert_eq!(crop.dimensions(), (48, 48));
        assert_eq!(centre_crop(&image, 0.7, 48).dimensions(), (48, 48));
    }

    #[test]
    fn a_blank_image_has_no_face() {
        let detector = FaceDetector::default();
        assert!(detector.detect(&GrayImage::new(120, 100)).is_empty());
        assert!(detector.detect(&GrayImage::new(10, 10)).is_empty());
    }
}
