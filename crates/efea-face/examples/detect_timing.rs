//! Times face detection as `bench/predict/facenet_timing.py` times facenet-pytorch: per
//! image one warm-up, then the median of several runs. Run on an idle machine, in release:
//!
//! ```text
//! cargo run --release -p efea-face --example detect_timing -- [--runs N] [--detector mtcnn|rustface] [IMAGE ...]
//! ```
//!
//! With no image, the committed photos and the 640x480 window of the group photo that
//! `reference/mtcnn_convert.py` also uses. One Markdown table row per image: `| image |
//! detector | faces | median ms | min | max |`. Decoding is not timed; rustface is given the
//! gray image it works on, MTCNN the RGB one.

use std::path::PathBuf;
use std::time::Instant;

use efea_face::{Detector, DetectorKind};
use image::DynamicImage;

fn photo(name: &str) -> DynamicImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/photos")
        .join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = 7usize;
    let mut kind = DetectorKind::Mtcnn;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--detector" => kind = args.next().ok_or("--detector mtcnn|rustface")?.parse()?,
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let runs = runs.max(1);
    let cases: Vec<(String, DynamicImage)> = if paths.is_empty() {
        let solvay = photo("solvay_1927.png");
        let window = solvay.crop_imm(513, 0, 640, 480);
        vec![
            ("solvay_1927.png".into(), solvay),
            ("astronaut.png".into(), photo("astronaut.png")),
            ("solvay_1927.png@crop640x480".into(), window),
        ]
    } else {
        paths
            .iter()
            .map(|path| {
                let image = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                Ok((name.into_owned(), image))
            })
            .collect::<Result<_, String>>()?
    };
    let detector = Detector::new(kind, 20);
    for (name, image) in &cases {
        // Each detector's own input, converted once, outside the timing.
        let image = match kind {
            DetectorKind::Rustface => DynamicImage::ImageLuma8(image.to_luma8()),
            DetectorKind::Mtcnn => DynamicImage::ImageRgb8(image.to_rgb8()),
        };
        let faces = detector.detect(&image).len();
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(detector.detect(&image));
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | efea {kind} | {faces} | {:.1} | {:.1} | {:.1} |",
            times[runs / 2],
            times[0],
            times[runs - 1]
        );
    }
    Ok(())
}
