//! Times `Mtcnn::detect` on the committed photos, as `reference/mtcnn_convert.py --time`
//! times facenet-pytorch: one warm-up, then the median of several runs. Run on an idle
//! machine, in release:
//!
//! ```text
//! cargo run --release -p efea-face --example detect_timing [-- RUNS]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use efea_face::{Mtcnn, MtcnnConfig};
use image::RgbImage;

fn photo(name: &str) -> RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/photos")
        .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("RUNS is a number"))
        .unwrap_or(7);
    let detector = Mtcnn::new(MtcnnConfig::default(), &Device::flex());
    let solvay = photo("solvay_1927.png");
    // The 640x480 window of reference/mtcnn_convert.py's CROPS.
    let window = image::imageops::crop_imm(&solvay, 513, 0, 640, 480).to_image();
    let cases = [
        ("solvay_1927.png", solvay.clone()),
        ("astronaut.png", photo("astronaut.png")),
        ("solvay_1927.png@crop640x480", window),
    ];
    for (name, image) in &cases {
        let faces = detector.detect(image).len();
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                detector.detect(image);
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: {faces} faces, median {:.1} ms (min {:.1}, max {:.1}, {runs} runs)",
            times[runs / 2],
            times[0],
            times[runs - 1]
        );
    }
}
