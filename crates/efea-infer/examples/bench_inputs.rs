//! Inputs for the benchmarks of `bench/predict` and `bench/serve`, written to DIR:
//! `photos/` (the rustface group photo, committed in `tests/fixtures/photos/`, 8 copies
//! alternating PNG and JPEG), `frame.jpg` (a 640x480 webcam-sized part of it), and `crops/`
//! (256 synthetic 48x48 faces, for `--no-detect`).
//!
//! `cargo run --release -p efea-infer --example bench_inputs -- DIR`

use std::fs;
use std::path::PathBuf;

use efea_data::synth::{self, SynthConfig};
use image::{DynamicImage, ImageFormat, imageops};

/// Copies of the group photo in `photos/`.
const PHOTOS: usize = 8;
/// Synthetic face crops in `crops/`.
const CROPS: usize = 256;

/// The group photo of the rustface crate, committed as a fixture.
fn group_photo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos/solvay_1927.png")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: bench_inputs DIR")?);
    let photo_path = group_photo();
    let photo = image::open(&photo_path).map_err(|e| format!("{}: {e}", photo_path.display()))?;
    fs::create_dir_all(dir.join("photos"))?;
    for n in 0..PHOTOS {
        let (name, format) = if n % 2 == 0 {
            (format!("photo{n}.png"), ImageFormat::Png)
        } else {
            (format!("photo{n}.jpg"), ImageFormat::Jpeg)
        };
        DynamicImage::ImageRgb8(photo.to_rgb8())
            .save_with_format(dir.join("photos").join(name), format)?;
    }
    // The middle of the back rows: eleven faces, as a webcam might see a small group (the
    // window `reference/mtcnn_convert.py` and the detection tests use).
    let frame = imageops::crop_imm(&photo.to_rgb8(), 513, 0, 640, 480).to_image();
    DynamicImage::ImageRgb8(frame).save_with_format(dir.join("frame.jpg"), ImageFormat::Jpeg)?;
    fs::create_dir_all(dir.join("crops"))?;
    let config = SynthConfig::new(CROPS);
    for index in 0..CROPS {
        synth::render(&config, index)
            .save(dir.join("crops").join(format!("face{index:03}.png")))?;
    }
    println!("{}", dir.display());
    Ok(())
}
