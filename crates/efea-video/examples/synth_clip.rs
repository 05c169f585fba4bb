//! Writes a generated clip (see `efea_video::scene`): synthetic faces moving over a textured
//! background, each changing expression every 1.5 s, with a sine tone as audio, encoded by
//! ffmpeg. Used by
//! `bench/video/run.sh` and for trying `efea predict` on a video without one at hand.
//!
//! `cargo run --release -p efea-video --example synth_clip -- OUT.mp4 [FACES] [WIDTHxHEIGHT] [SECONDS] [FPS]`

use std::path::PathBuf;
use std::process::ExitCode;

use efea_video::Tools;
use efea_video::scene::{Actor, Scene};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: synth_clip OUT.mp4 [FACES=1] [WIDTHxHEIGHT=640x480] [SECONDS=10] [FPS=30]"
        );
        return ExitCode::from(2);
    };
    let number = |i: usize, default: f64| -> f64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let faces = number(1, 1.0) as usize;
    let (width, height) = args
        .get(2)
        .and_then(|s| s.split_once('x'))
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .unwrap_or((640u32, 480u32));
    let seconds = number(3, 10.0);
    let fps = number(4, 30.0) as u32;
    let side = (height / 5).clamp(48, 160);
    // Faces on a grid below the legend of annotated frames, all drifting the same way and
    // back, so none hides another.
    let pitch = side as f64 * 1.6;
    let columns = ((width as f64 - 60.0) / pitch).max(1.0) as usize;
    let actors = (0..faces)
        .map(|i| {
            let (col, row) = ((i % columns) as f64, (i / columns) as f64);
            let (x, y) = (20.0 + col * pitch, 110.0 + row * pitch);
            let speed = 10.0;
            Actor {
                legs: vec![
                    (0.0, x, y, speed, 0.0),
                    (seconds / 2.0, x + speed * seconds / 2.0, y, -speed, 0.0),
                ],
                ..Actor::straight(i, vec![i % 7, (i + 3) % 7, (i + 5) % 7], (x, y), (0.0, 0.0))
            }
        })
        .collect();
    let scene = Scene {
        width,
        height,
        fps,
        seconds,
        side,
        seed: 42,
        actors,
    };
    match scene.encode(&out, &Tools::from_env(), true) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
