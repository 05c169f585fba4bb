//! Shared by the integration tests: small networks, encoded images, the rustface group photo.
#![allow(dead_code)] // each test binary uses a different part

use std::io::Cursor;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Device;
use efea_infer::{Predictor, PredictorConfig};
use efea_model::EfeaNetConfig;
use efea_model::checkpoint::ModelSpec;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat};

pub const CLASSES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// A narrow randomly initialised network (same seed, same weights).
pub fn small_spec() -> ModelSpec {
    ModelSpec::new(
        EfeaNetConfig::new().with_width_mult(0.35),
        CLASSES.iter().map(|c| c.to_string()).collect(),
    )
}

pub fn predictor(config: PredictorConfig) -> Predictor {
    let device = Device::flex();
    device.seed(7);
    let spec = small_spec();
    let model = spec.model.init(&device).valid();
    Predictor::new(spec, model, device, config)
}

/// The bundled mini-XCEPTION, trained on FER2013: its answers depend on the face it is shown,
/// so a comparison of two answers made with it can fail (a random network's barely move).
pub fn bundled(config: PredictorConfig) -> Predictor {
    Predictor::bundled(&Device::flex(), config)
}

/// The largest difference between two faces' probabilities, class by class.
pub fn max_difference(a: &efea_infer::Face, b: &efea_infer::Face) -> f32 {
    a.probabilities
        .iter()
        .zip(&b.probabilities)
        .map(|((_, p), (_, q))| (p - q).abs())
        .fold(0.0, f32::max)
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encoding to memory");
    bytes
}

/// `image` as a JPEG whose EXIF says how to turn it upright (`orientation`, 1..=8).
pub fn jpeg_with_orientation(image: &DynamicImage, orientation: u16) -> Vec<u8> {
    // A minimal little-endian TIFF block holding one IFD entry: 0x0112 Orientation, SHORT.
    let mut exif = vec![
        b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0,
    ];
    exif.extend_from_slice(&orientation.to_le_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let rgb = image.to_rgb8();
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 92);
    encoder.set_exif_metadata(exif).expect("JPEG carries EXIF");
    encoder
        .write_image(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory");
    bytes
}

/// The group photo that the rustface crate ships (`test.png`, 1666x1136, the 1927 Solvay
/// conference), committed as `tests/fixtures/photos/solvay_1927.png`.
pub fn group_photo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos/solvay_1927.png")
}

/// Intersection over union of two rectangles.
pub fn iou(a: efea_infer::Rect, b: efea_infer::Rect) -> f64 {
    let (ax1, ay1) = (a.x as f64, a.y as f64);
    let (ax2, ay2) = (ax1 + a.width as f64, ay1 + a.height as f64);
    let (bx1, by1) = (b.x as f64, b.y as f64);
    let (bx2, by2) = (bx1 + b.width as f64, by1 + b.height as f64);
    let w = (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
    let h = (ay2.min(by2) - ay1.max(by1)).max(0.0);
    let inter = w * h;
    inter / (a.width as f64 * a.height as f64 + b.width as f64 * b.height as f64 - inter)
}
