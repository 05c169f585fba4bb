//! Labels over time: a small network trained here on easy synthetic faces (other people than
//! the clip's, as efea-infer's scenes test does), then a clip where two people change
//! expression every 1.5 s. The smoothed track label is scored against the expression shown.

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
        width: 400,
        height: 200,
        fps: 25,
        seconds: 10.5,
        side: 96,
        seed: 21,
        actors: vec![
            Actor::straight(5, vec![3, 0, 5, 6, 4, 1, 2], (20.0, 40.0), (8.0, 0.0)),
            Actor::straight(8, vec![5, 2, 3, 4, 6, 0, 1], (260.0, 60.0), (-8.0, 0.0)),
        ],
    };
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
    assert!(followed.iter().all(|f| f.recall() >= 0.9 && f.kept() >= 0.95));

    // Frames within 0.5 s after a change of expression are left out: the smoothing needs
    // that long to follow (by design: it is what removes the flicker).
    let (mut smoothed_right, mut raw_right, mut scored) = (0, 0, 0);
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
        }
    }
    let smoothed = smoothed_right as f64 / scored as f64;
    let raw = raw_right as f64 / scored as f64;
    eprintln!(
        "seed {}: held-out accuracy {held_out:.3}; {scored} observations scored: smoothed {smoothed:.3}, raw {raw:.3}",
        seed()
    );
    // Seven classes: chance is 14 %. Measured over training seeds 1-3 (debug build): see the
    // spread below; the bar sits under the worst seed.
    assert!(smoothed > 0.3, "smoothed track accuracy {smoothed:.3}");
    assert!(smoothed >= raw - 0.05, "smoothed {smoothed:.3} against raw {raw:.3}");
}
