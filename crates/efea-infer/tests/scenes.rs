//! Generated scenes: synthetic faces from efea-data pasted into larger pictures at known
//! places, so that box recall and label accuracy are measured against the truth.

mod common;

use burn::tensor::Device;
use efea_data::synth::{self, SynthConfig, SynthLevel};
use efea_infer::{Predictor, PredictorConfig, Rect};
use efea_model::{EfeaNetConfig, Preset};
use efea_train::config::ScheduleKind;
use efea_train::{Silent, TrainingConfig};
use image::{DynamicImage, GrayImage, ImageFormat, Luma, imageops};

/// A face pasted into a scene: where, and what it shows.
#[derive(Debug, Clone)]
struct Truth {
    square: Rect,
    label: usize,
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
            label: config.label_of(index),
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

/// The CPU backend's random generator is one per process: the training run must not share it
/// with a test that seeds it.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    BACKEND_RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn pasted_synthetic_faces_are_found_where_they_were_put() {
    let _rng = exclusive();
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

/// Trains a small network on easy synthetic faces (people other than the scenes' ones), then
/// finds and names the faces of generated scenes, against the same faces given as ready crops.
#[test]
fn faces_found_in_scenes_are_named_well_above_chance() {
    let _rng = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = TrainingConfig::demo();
    config.model = EfeaNetConfig::preset(Preset::Plain).with_width_mult(0.35);
    config.data.path = Some("count=1050,level=easy".into());
    config.epochs = 6;
    config.batch_size = 16;
    config.schedule.kind = ScheduleKind::Constant;
    // AdamW, not the paper's SGD at 0.01: in these 6 epochs (400 steps) SGD sat on the edge
    // of learning, so that floating-point order decided the outcome (held-out 0.63 in one
    // build, 0.40 in another, scenes 0.44 against 0.16). AdamW learns from the first epoch.
    config.optimizer.kind = efea_train::config::OptimizerKind::Adamw;
    config.optimizer.lr = 0.003;
    config.report_tencrop = false;
    config.augment = efea_data::AugmentConfig::light();
    // `EFEA_SCENES_SEED=N` trains with another seed: how the spread below was measured.
    if let Ok(seed) = std::env::var("EFEA_SCENES_SEED") {
        config.seed = seed.parse().expect("EFEA_SCENES_SEED: an integer");
    }
    let config_seed = config.seed;
    let outcome = efea_train::train(config, &run, &[Device::flex()], &mut Silent).unwrap();
    let (_, test_accuracy) = outcome.test_accuracy().unwrap();

    // The synthetic faces fill their square (as FER2013's crops do) and the detector's box is
    // 0.7-0.9 of it: a margin of 0.1 cuts about the square, where the default 0.2 takes in the
    // background around it, which a network trained on these crops alone has never seen.
    let in_scenes = Predictor::load(
        &run,
        &Device::flex(),
        PredictorConfig {
            margin: Some(0.1),
            ..PredictorConfig::default()
        },
    )
    .unwrap();
    let crops = Predictor::load(
        &run,
        &Device::flex(),
        PredictorConfig {
            detect: false,
            ..PredictorConfig::default()
        },
    )
    .unwrap();
    let (mut named, mut found, mut crop_named, mut total) = (0, 0, 0, 0);
    for (seed, side) in [
        (11, 96),
        (12, 128),
        (13, 80),
        (14, 112),
        (15, 96),
        (16, 128),
        (17, 80),
        (18, 112),
    ] {
        let (canvas, truths) = scene(
            seed,
            8,
            side,
            4 * side * 3 / 2 + side,
            2 * side * 3 / 2 + side,
        );
        let faces = in_scenes
            .predict_image(DynamicImage::ImageLuma8(canvas.clone()))
            .prediction
            .faces;
        for truth in &truths {
            total += 1;
            let square = imageops::crop_imm(
                &canvas,
                truth.square.x as u32,
                truth.square.y as u32,
                side,
                side,
            )
            .to_image();
            let crop = crops
                .predict_image(DynamicImage::ImageLuma8(square))
                .prediction
                .faces;
            crop_named += usize::from(crop[0].class == truth.label);
            if let Some(face) = faces.iter().find(|f| matches(f.bbox, truth.square)) {
                found += 1;
                named += usize::from(face.class == truth.label);
            }
        }
    }
    let scene_accuracy = named as f64 / total as f64;
    let crop_accuracy = crop_named as f64 / total as f64;
    eprintln!(
        "seed {}: held-out test accuracy {test_accuracy:.2}; of {total} pasted faces {found} found, \
         {named} named right in the scenes ({scene_accuracy:.2}), {crop_named} as crops ({crop_accuracy:.2})",
        config_seed
    );
    // Seven classes: chance is 14 %; a face the detector misses counts as wrong. A broken
    // pipeline (misframed crops, wrong class order, a network that did not learn) lands near
    // chance: with 64 faces, 0.14 +- 0.04. Spread of a working one over training seeds 0-9
    // (`EFEA_SCENES_SEED`, debug build, 2026-12-08, revision f86dca3): held-out 0.49-0.82,
    // crops 0.44-0.75 (mean 0.63), scenes 0.33-0.66 (mean 0.49), scenes 0.01-0.32 below
    // crops (mean 0.14). Which network six epochs end in, and so how well it names people it
    // has not seen, moves with the floating-point summation order of any kernel; the bars sit
    // below the worst seed and above chance by three of its standard deviations.
    assert!(crop_accuracy > 0.3, "crop accuracy {crop_accuracy:.2}");
    assert!(scene_accuracy > 0.27, "scene accuracy {scene_accuracy:.2}");
    assert!(
        scene_accuracy >= crop_accuracy - 0.45,
        "scenes {scene_accuracy:.2} against crops {crop_accuracy:.2}"
    );
}
