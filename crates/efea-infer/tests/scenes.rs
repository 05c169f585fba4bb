//! Generated scenes: synthetic faces from efea-data pasted into larger pictures at known
//! places, so that box recall is measured against the truth; and scenes without faces.

mod common;

use efea_data::synth::{self, SynthConfig, SynthLevel};
use efea_infer::{PredictorConfig, Rect};
use image::{DynamicImage, GrayImage, ImageFormat, Luma, imageops};

/// A face pasted into a scene: where, and what it shows.
#[derive(Debug, Clone)]
struct Truth {
    square: Rect,
}

/// A textured gray scene `width x height` with `count` synthetic faces of side `side` on a
/// grid (jittered), drawn with `seed`.
fn scene(seed: u64, count: usize, side: u32, width: u32, height: u32) -> (GrayImage, Vec<Truth>) {
    let mut canvas = GrayImage::from_fn(width, height, |x, y| {
        // A slow gradient with a fine hash texture: not flat, not face-like.
        let hash = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed as u32) % 23;
        Luma([(90 + (x * 60 / width) + (y * 40 / height) + hash) as u8])
    });
    let config = SynthConfig {
        count: 7 * 40,
        seed,
        level: SynthLevel::Easy,
        size: side,
        subjects: 40,
    };
    let columns = (width / (side + side / 2)).max(1);
    let mut truths = Vec::new();
    for slot in 0..count {
        let index = (seed as usize * 31 + slot * 11) % config.count;
        let face = synth::render(&config, index);
        let (col, row) = (slot as u32 % columns, slot as u32 / columns);
        let jitter = ((slot as u32 * 7 + seed as u32) % 5) * side / 20;
        let x = side / 4 + col * (side + side / 2) + jitter;
        let y = side / 4 + row * (side + side / 2) + jitter / 2;
        assert!(
            x + side <= width && y + side <= height,
            "scene too small for {count} faces"
        );
        imageops::replace(&mut canvas, &face, x as i64, y as i64);
        truths.push(Truth {
            square: Rect {
                x: x as i32,
                y: y as i32,
                width: side,
                height: side,
            },
        });
    }
    (canvas, truths)
}

/// Whether a detected box is this pasted face: its centre in the middle half of the square
/// and its side between a quarter and all of the square's (synthetic faces fill their
/// square as FER2013 crops do, so the detector's tight box is smaller).
fn matches(detected: Rect, truth: Rect) -> bool {
    let cx = detected.x as f64 + detected.width as f64 / 2.0;
    let cy = detected.y as f64 + detected.height as f64 / 2.0;
    let (tx, ty, ts) = (truth.x as f64, truth.y as f64, truth.width as f64);
    let inside =
        (cx - (tx + ts / 2.0)).abs() <= ts / 4.0 && (cy - (ty + ts / 2.0)).abs() <= ts / 4.0;
    let ratio = detected.width as f64 / ts;
    inside && (0.25..=1.1).contains(&ratio)
}

#[test]
fn pasted_synthetic_faces_are_found_where_they_were_put() {
    let predictor = common::predictor(PredictorConfig::default());
    let mut found = 0;
    let mut total = 0;
    let mut false_positives = 0;
    for (seed, side) in [(1, 96), (2, 128), (3, 80)] {
        let (canvas, truths) = scene(
            seed,
            8,
            side,
            4 * side * 3 / 2 + side,
            2 * side * 3 / 2 + side,
        );
        let bytes = common::encode(&DynamicImage::ImageLuma8(canvas), ImageFormat::Png);
        let analysed = predictor.predict_bytes(&bytes).unwrap();
        let faces = &analysed.prediction.faces;
        for truth in &truths {
            total += 1;
            if faces.iter().any(|f| matches(f.bbox, truth.square)) {
                found += 1;
            }
        }
        false_positives += faces
            .iter()
            .filter(|f| !truths.iter().any(|t| matches(f.bbox, t.square)))
            .count();
        eprintln!(
            "seed {seed} side {side}: {} detections, truths {truths:?}, faces {:?}",
            faces.len(),
            faces.iter().map(|f| f.bbox).collect::<Vec<_>>()
        );
    }
    let recall = found as f64 / total as f64;
    eprintln!("box recall {found}/{total} = {recall:.2}, {false_positives} false positives");
    // Measured: 24 of 24 found, no false positive.
    assert!(recall >= 0.9, "box recall {recall:.2}");
    assert!(false_positives <= 1, "{false_positives} false positives");
}
