//! `efea predict clip.mp4` end to end on generated clips (efea-video's scenes, encoded by
//! ffmpeg): rows, timeline, summary and annotated video; a truncated file; bad flags. The
//! tests need FFmpeg and fail (never skip) without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use efea_video::scene::{Actor, Scene};
use efea_video::{Tools, probe};
use serde_json::Value;

fn efea() -> Command {
    Command::new(env!("CARGO_BIN_EXE_efea"))
}

fn tools() -> Tools {
    let tools = Tools::from_env();
    let found = Command::new(&tools.ffmpeg)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the video tests need FFmpeg (`{}` did not run): apt-get install ffmpeg (.ci/run does)",
        tools.ffmpeg.display()
    );
    tools
}

/// Two faces drifting apart, 2 s at 25 frames/s, with a sine tone as audio.
fn clip(dir: &Path, name: &str) -> PathBuf {
    let scene = Scene {
        width: 320,
        height: 200,
        fps: 25,
        seconds: 2.0,
        side: 72,
        seed: 9,
        actors: vec![
            Actor::straight(1, vec![3, 5], (20.0, 40.0), (-5.0, 0.0)),
            Actor::straight(2, vec![0, 6], (200.0, 60.0), (10.0, 0.0)),
        ],
    };
    let path = dir.join(name);
    scene.encode(&path, &tools(), true).unwrap();
    path
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn a_clip_gives_rows_a_timeline_a_summary_and_an_annotated_video() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4");
    let (timeline, summary, annotated) = (
        dir.path().join("timeline.png"),
        dir.path().join("summary.json"),
        dir.path().join("annotated.mp4"),
    );
    let output = efea()
        .arg("predict")
        .arg(&video)
        .args(["--every", "2", "--format", "csv", "--timeline"])
        .arg(&timeline)
        .arg("--summary")
        .arg(&summary)
        .arg("--annotate")
        .arg(&annotated)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = stdout(&output);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..4], ["frame", "time", "track", "x"]);
    assert_eq!(header.len(), 10 + 2 * 7);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    // 25 analysed frames with two faces each (the detector may miss one now and then).
    assert!((45..=52).contains(&rows.len()), "{} rows", rows.len());
    let frames: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(frames.iter().all(|f| f % 2 == 0));

    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let tracks = summary["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{summary}");
    for track in tracks {
        let share: f64 = track["share"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((share - 1.0).abs() < 1e-3, "{track}");
        assert!(track["on_screen"].as_f64().unwrap() > 1.5, "{track}");
    }
    assert!(image::open(&timeline).unwrap().height() > 300);

    // Every frame annotated, the audio copied.
    let info = probe(&annotated, &tools()).unwrap();
    assert!(info.has_audio, "{info:?}");
    assert_eq!((info.width, info.height), (320, 200));
    assert!((info.duration.unwrap() - 2.0).abs() < 0.1, "{info:?}");
    let (mut frames, _) = (0, ());
    let mut decoder = efea_video::Decoder::open(&info, Default::default(), &tools()).unwrap();
    while decoder.next_frame().unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 50);
}

#[test]
fn jsonl_rows_and_the_table_summary() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mkv");
    let output = efea()
        .arg("predict")
        .arg(&video)
        .args(["--fps", "5", "--format", "jsonl", "--smooth", "window:1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 10 analysed frames of two faces (11 when the container rounds the length up).
    assert!((18..=22).contains(&rows.len()), "{} rows", rows.len());
    for row in &rows {
        assert!(
            row["probabilities"].as_object().unwrap().len() == 7,
            "{row}"
        );
        assert!(row["raw"].as_object().unwrap().len() == 7, "{row}");
        assert!(row["box"]["width"].as_u64().unwrap() > 20, "{row}");
    }

    let output = efea()
        .arg("predict")
        .arg(&video)
        .args(["--every", "5", "--start", "0.4", "--end", "00:01.6"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.starts_with("model: "), "{table}");
    assert!(table.contains("tracks: 2 in 00:01.200"), "{table}");
    assert!(table.contains("dominant"), "{table}");
}

/// Half a Matroska file: the rows of what could be decoded (complete lines), a finalised
/// annotated video, a summary that says why it stopped, then a one-line error and a non-zero
/// exit.
#[test]
fn a_truncated_clip_keeps_what_was_written_and_names_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "whole.mkv");
    let bytes = std::fs::read(&video).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (summary, annotated) = (dir.path().join("summary.json"), dir.path().join("out.mp4"));
    let output = efea()
        .arg("predict")
        .arg(&cut)
        .args(["--format", "csv", "--summary"])
        .arg(&summary)
        .arg("--annotate")
        .arg(&annotated)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("cut.mkv: damaged or truncated video: decoded up to 00:0"),
        "{message}"
    );
    let csv = stdout(&output);
    assert!(csv.ends_with('\n'));
    let widths: Vec<usize> = csv.lines().map(|l| l.split(',').count()).collect();
    assert!(
        widths.len() > 5 && widths.iter().all(|w| *w == widths[0]),
        "{csv}"
    );

    let info = probe(&annotated, &tools()).unwrap();
    assert!(info.duration.unwrap() > 0.2, "{info:?}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(
        summary["error"].as_str().unwrap().contains("damaged"),
        "{summary}"
    );
    assert!(!summary["tracks"].as_array().unwrap().is_empty());
}

#[test]
fn bad_video_arguments_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let video = clip(dir.path(), "clip.mp4");
    let image = dir.path().join("face.png");
    image::RgbImage::new(32, 32).save(&image).unwrap();
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec![video.as_os_str(), "--format".as_ref(), "json".as_ref()],
            "jsonl",
        ),
        (
            vec![video.as_os_str(), "--start".as_ref(), "9".as_ref()],
            "past the end",
        ),
        (vec![video.as_os_str(), image.as_os_str()], "analysed alone"),
        (
            vec![image.as_os_str(), "--every".as_ref(), "3".as_ref()],
            "--every applies to videos",
        ),
    ];
    for (args, expected) in cases {
        let output = efea().arg("predict").args(&args).output().unwrap();
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            message.contains(expected) && message.lines().count() == 1,
            "{args:?}: {message}"
        );
    }
    let output = efea()
        .arg("predict")
        .arg(&video)
        .env("EFEA_FFPROBE", dir.path().join("no-ffprobe"))
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("apt-get install ffmpeg") && message.lines().count() == 1,
        "{message}"
    );
}
