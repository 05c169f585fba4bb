//! Decoding generated clips: frame counts and time stamps for every sampling, spans, and
//! what damaged, truncated, faceless or missing inputs give.

mod common;

use std::path::Path;

use efea_video::scene::{Actor, Scene};
use efea_video::{
    Decoder, NoSink, Sampling, Span, Tools, VideoConfig, VideoError, analyse, probe, write_timeline,
};

fn scene(seconds: f64, faces: usize) -> Scene {
    Scene {
        width: 240,
        height: 160,
        fps: 25,
        seconds,
        side: 64,
        seed: 3,
        actors: (0..faces)
            .map(|i| Actor::straight(i, vec![3], (20.0 + 90.0 * i as f64, 40.0), (10.0, 0.0)))
            .collect(),
    }
}

fn encoded(scene: &Scene, dir: &Path, name: &str, audio: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    scene.encode(&path, &common::tools(), audio).unwrap();
    path
}

fn times(path: &Path, span: Span) -> (Vec<(u64, f64)>, Option<VideoError>) {
    let tools = common::tools();
    let info = probe(path, &tools).unwrap();
    let mut decoder = Decoder::open(&info, span, &tools).unwrap();
    let mut frames = Vec::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.image.dimensions(), (info.width, info.height));
                frames.push((frame.index, frame.time));
            }
            Ok(None) => return (frames, None),
            Err(e) => {
                assert!(
                    decoder.next_frame().unwrap().is_none(),
                    "one error, then the end"
                );
                return (frames, Some(e));
            }
        }
    }
}

#[test]
fn every_frame_comes_out_once_with_its_time_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = encoded(&scene(2.0, 1), dir.path(), "clip.mp4", true);
    let info = probe(&path, &common::tools()).unwrap();
    assert_eq!((info.width, info.height, info.fps), (240, 160, 25.0));
    assert!(info.has_audio && info.codec == "h264", "{info:?}");
    let (frames, error) = times(&path, Span::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 50);
    assert!(
        frames
            .iter()
            .enumerate()
            .all(|(i, (index, time))| *index == i as u64 && (time - i as f64 / 25.0).abs() < 1e-9)
    );

    // A span: frames from 0.8 s up to (not including) 1.6 s.
    let (frames, error) = times(
        &path,
        Span {
            start: 0.8,
            end: Some(1.6),
        },
    );
    assert!(error.is_none(), "{error:?}");
    assert_eq!(frames.len(), 20, "{frames:?}");
    assert!((frames[0].1 - 0.8).abs() < 1e-9);
}

#[test]
fn sampling_picks_every_nth_frame_or_a_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = encoded(&scene(2.0, 1), dir.path(), "clip.mkv", false);
    let tools = common::tools();
    let info = probe(&path, &tools).unwrap();
    let predictor = common::bundled();
    for (sampling, analysed) in [(Sampling::Every(5), 10), (Sampling::Fps(5.0), 10)] {
        let config = VideoConfig {
            sampling,
            tools: tools.clone(),
            ..VideoConfig::default()
        };
        let analysis = analyse(&predictor, &info, &config, &mut NoSink).unwrap();
        assert_eq!(analysis.frames_decoded, 50);
        assert_eq!(analysis.frames_analysed, analysed, "{sampling:?}");
        assert_eq!(analysis.tracks.len(), 1, "{:?}", analysis.tracks.len());
        let frames: Vec<u64> = analysis.tracks[0]
            .observations
            .iter()
            .map(|o| o.frame)
            .collect();
        assert_eq!(
            frames,
            (0..50).step_by(5).collect::<Vec<_>>(),
            "{sampling:?}"
        );
    }
}

/// A Matroska file cut in half: the frames of the first half, then one error that names
/// where decoding stopped.
#[test]
fn a_truncated_file_gives_its_frames_then_an_error_naming_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = encoded(&scene(4.0, 1), dir.path(), "whole.mkv", false);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (frames, error) = times(&cut, Span::default());
    assert!(
        frames.len() > 10 && frames.len() < 90,
        "{} frames",
        frames.len()
    );
    let error = error.expect("a truncated file is an error");
    let message = error.to_string();
    let last = frames.last().unwrap().1 + 1.0 / 25.0;
    match &error {
        VideoError::Damaged { at, .. } => assert!((at - last).abs() < 1e-6, "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(message.starts_with(&cut.display().to_string()), "{message}");
    assert!(message.contains("of 00:04.0"), "{message}");
    assert_eq!(message.lines().count(), 1);

    // The analysis keeps what it saw and says why it stopped.
    let tools = common::tools();
    let info = probe(&cut, &tools).unwrap();
    let config = VideoConfig {
        tools,
        ..VideoConfig::default()
    };
    let analysis = analyse(&common::bundled(), &info, &config, &mut NoSink).unwrap();
    assert_eq!(analysis.frames_decoded as usize, frames.len());
    assert!(matches!(analysis.stopped, Some(VideoError::Damaged { .. })));
    assert!(!analysis.tracks.is_empty());
}

#[test]
fn a_video_without_faces_gives_an_empty_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = encoded(&scene(1.0, 0), dir.path(), "empty.mp4", false);
    let tools = common::tools();
    let info = probe(&path, &tools).unwrap();
    let config = VideoConfig {
        tools,
        ..VideoConfig::default()
    };
    let analysis = analyse(&common::bundled(), &info, &config, &mut NoSink).unwrap();
    assert!(analysis.stopped.is_none());
    assert!(analysis.tracks.is_empty());
    assert_eq!(analysis.frames_analysed, 25);
    let png = dir.path().join("timeline.png");
    write_timeline(&analysis, &png).unwrap();
    let picture = image::open(&png).unwrap();
    assert!(picture.width() > 100 && picture.height() > 100);
}

#[test]
fn bad_inputs_and_a_missing_ffmpeg_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tools = common::tools();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    let error = probe(&text, &tools).unwrap_err();
    assert!(matches!(error, VideoError::NotAVideo { .. }), "{error:?}");
    let missing = probe(&dir.path().join("absent.mp4"), &tools).unwrap_err();
    assert!(missing.to_string().contains("absent.mp4"), "{missing}");

    let path = encoded(&scene(1.0, 1), dir.path(), "clip.mp4", false);
    let no_ffmpeg = Tools {
        ffmpeg: dir.path().join("no-such-ffmpeg"),
        ffprobe: dir.path().join("no-such-ffprobe"),
    };
    let error = probe(&path, &no_ffmpeg).unwrap_err().to_string();
    assert!(
        error.contains("no-such-ffprobe") && error.contains("apt-get install ffmpeg"),
        "{error}"
    );
    let info = probe(&path, &tools).unwrap();
    let error = Decoder::open(&info, Span::default(), &no_ffmpeg)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no-such-ffmpeg") && error.contains("install"),
        "{error}"
    );
    for error in [
        Span {
            start: 5.0,
            end: None,
        }
        .check(&info)
        .unwrap_err(),
        Span {
            start: 0.5,
            end: Some(0.2),
        }
        .check(&info)
        .unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(
            message.contains("clip.mp4") && message.lines().count() == 1,
            "{message}"
        );
    }
}
