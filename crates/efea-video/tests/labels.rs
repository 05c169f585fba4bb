//! Labels over time: a small network trained here on easy synthetic faces (other people than
//! the clip's, as efea-infer's scenes test does), then a clip where two people change
//! expression every 1.5 s. The smoothed track label is scored against the expression shown,
//! and against the network's accuracy on the same faces as ready crops.

mod common;

use burn::tensor::Device;
use efea_infer::{Predictor, PredictorConfig};
use efea_model::{EfeaNetConfig, Preset};
use efea_train::config::ScheduleKind;
use efea_train::{Silent, TrainingConfig};
use efea_video::scene::{Actor, Scene, matches};
use efea_video::{NoSink, Sampling, Smoothing, TrackerConfig, VideoConfig, analyse, probe};

/// The training seed: `EFEA_VIDEO_LABEL_SEED` to measure the spread over seeds.
fn seed() -> u64 {
    std::env::var("EFEA_VIDEO_LABEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn smoothed_track_labels_follow_the_expressions_shown() {
    let tools = common::tools();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut config = TrainingConfig::demo();
    config.model = EfeaNetConfig::preset(Preset::Plain).with_width_mult(0.35);
    config.data.path = Some("count=1050,level=easy".into());
    config.epochs = 6;
    config.batch_size = 16;
    config.seed = seed();
    config.schedule.kind = ScheduleKind::Constant;
    // The paper's SGD, with which the spread below was measured (the demo now uses AdamW).
    config.optimizer = efea_train::config::OptimizerConfig::default();
    config.report_tencrop = false;
    config.augment = efea_data::AugmentConfig::light();
    let outcome = efea_train::train(config, &run, &[Device::flex()], &mut Silent).unwrap();
    let (_, held_out) = outcome.test_accuracy().unwrap();
    // The synthetic faces fill their square and the detector's box is 0.7-0.9 of it: a
    // margin of 0.1 cuts about the square (see efea-infer's tests/scenes.rs).
    let predictor = Predictor::load(
        &run,
        &Device::flex(),
        PredictorConfig {
            margin: Some(0.1),
            ..PredictorConfig::default()
        },
    )
    .unwrap();

    let scene = Scene {
        width: 420,
        height: 200,
        fps: 25,
        seconds: 10.5,
        side: 96,
        seed: 21,
        actors: vec![
            Actor::straight(5, vec![3, 0, 5, 6, 4, 1, 2], (10.0, 40.0), (3.0, 0.0)),
            Actor::straight(8, vec![5, 2, 3, 4, 6, 0, 1], (150.0, 70.0), (-3.0, 0.0)),
            Actor::straight(11, vec![6, 4, 1, 2, 3, 5, 0], (300.0, 50.0), (2.0, 0.0)),
        ],
    };
    // What the network says of each face as a ready crop: its known accuracy on these faces.
    let crops = Predictor::load(
        &run,
        &Device::flex(),
        PredictorConfig {
            detect: false,
            ..PredictorConfig::default()
        },
    )
    .unwrap();
    let synth = scene.synth();
    let crop_right = |actor: usize, label: usize| -> bool {
        let face = efea_data::synth::render(&synth, scene.actors[actor].face_index(label));
        let faces = crops
            .predict_image(image::DynamicImage::ImageLuma8(face))
            .prediction
            .faces;
        faces[0].class == label
    };
    let crop_right: Vec<Vec<bool>> = (0..scene.actors.len())
        .map(|a| (0..7).map(|label| crop_right(a, label)).collect())
        .collect();
    let path = dir.path().join("expressions.mp4");
    scene.encode(&path, &tools, false).unwrap();
    let info = probe(&path, &tools).unwrap();
    let video = VideoConfig {
        sampling: Sampling::Every(2),
        tracker: TrackerConfig {
            smoothing: Smoothing::Exponential { half_life: 0.3 },
            ..TrackerConfig::default()
        },
        tools,
        ..VideoConfig::default()
    };
    let analysis = analyse(&predictor, &info, &video, &mut NoSink).unwrap();
    let followed = common::followed(&scene, &analysis);
    assert!(
        followed
            .iter()
            .all(|f| f.recall() >= 0.9 && f.kept() >= 0.95)
    );

    // Frames within 0.5 s after a change of expression are left out: the smoothing needs
    // that long to follow (by design: it is what removes the flicker).
    let (mut smoothed_right, mut raw_right, mut as_crops, mut scored) = (0, 0, 0, 0);
    for track in &analysis.tracks {
        for o in &track.observations {
            let Some(truth) = scene
                .truth(o.frame)
                .into_iter()
                .find(|t| t.visible && matches(o.bbox, t.square))
            else {
                continue;
            };
            let since_change = o.time % scene.actors[truth.actor].seconds_per_expression;
            if since_change < 0.5 {
                continue;
            }
            scored += 1;
            smoothed_right += usize::from(o.class == truth.label);
            raw_right += usize::from(o.raw_class == truth.label);
            as_crops += usize::from(crop_right[truth.actor][truth.label]);
        }
    }
    let smoothed = smoothed_right as f64 / scored as f64;
    let raw = raw_right as f64 / scored as f64;
    let crop = as_crops as f64 / scored as f64;
    eprintln!(
        "seed {}: held-out accuracy {held_out:.3}; {scored} observations scored: smoothed \
         {smoothed:.3}, raw {raw:.3}, the same faces as crops {crop:.3}",
        seed()
    );
    // Measured over training seeds 1, 2, 3 (debug build, 2026-12-04; 264 observations each):
    //   held-out accuracy  0.373 0.365 0.317
    //   smoothed track     0.307 0.189 0.223
    //   raw per frame      0.292 0.205 0.242
    //   same faces, crops  0.292 0.341 0.189
    // The network is small and briefly trained, on the edge of learning, so its accuracy
    // moves a lot between seeds: a fixed bar would pass or fail by the seed. The bars are tied
    // to its known accuracy on these very faces as ready crops and to the raw labels, and sit
    // under the worst seed (smoothed - crops: +0.015, -0.152, +0.034; smoothed - raw: +0.015,
    // -0.016, -0.019): the tracked, smoothed label may lose the framing cost of detection
    // (efea-infer's scenes test measured 0.22 on stills) but no more, smoothing must not lose
    // accuracy, and the result must beat chance.
    assert!(
        smoothed >= crop - 0.3,
        "smoothed {smoothed:.3} against crops {crop:.3}"
    );
    assert!(
        smoothed >= raw - 0.05,
        "smoothed {smoothed:.3} against raw {raw:.3}"
    );
    assert!(
        smoothed > 1.0 / 7.0,
        "smoothed {smoothed:.3}, chance is 0.143"
    );
}
