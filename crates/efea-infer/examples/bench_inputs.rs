//! Inputs for the benchmarks of `bench/predict` and `bench/serve`, written to DIR:
//! `photos/` (the rustface group photo, 8 copies alternating PNG and JPEG), `frame.jpg` (a
//! 640x480 webcam-sized part of it), and `crops/` (256 synthetic 48x48 faces, for
//! `--no-detect`). `cargo run --release -p efea-infer --example bench_inputs -- DIR`

use std::fs;
use std::path::PathBuf;

use efea_data::synth::{self, SynthConfig};
use image::{DynamicImage, ImageFormat, imageops};

/// Copies of the group photo in `photos/`.
const PHOTOS: usize = 8;
/// Synthetic face crops in `crops/`.
const CROPS: usize = 256;

fn rustface_photo() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .flat_map(|index| fs::read_dir(index.path()).into_iter().flatten().flatten())
        .filter(|k| k.file_name().to_string_lossy().starts_with("rustface-"))
        .map(|k| k.path().join("test.png"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: bench_inputs DIR")?);
    let photo_path = rustface_photo().ok_or("no rustface-*/test.png in the cargo registry")?;
    let photo = image::open(&photo_path)?;
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
    // The middle of the back rows: about ten faces, as a webcam might see a small group.
    let frame = imageops::crop_imm(&photo.to_rgb8(), 520, 0, 640, 480).to_image();
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
