//! Writes a generated clip (see `efea_video::scene`): synthetic faces moving over a textured
//! background, each changing expression every 1.5 s, encoded by ffmpeg. Used by
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
    let side = (height / 4).clamp(48, 160);
    // Faces on a grid of lanes, each drifting back and forth across its lane.
    let columns = ((width / (side * 3 / 2)).max(1)) as usize;
    let actors = (0..faces)
        .map(|i| {
            let (col, row) = ((i % columns) as f64, (i / columns) as f64);
            let x = 10.0 + col * (side as f64 * 1.5);
            let y = 10.0 + row * (side as f64 * 1.4);
            let speed = if i % 2 == 0 { 12.0 } else { -12.0 };
            Actor {
                legs: vec![
                    (0.0, x + 20.0, y, speed, 0.0),
                    (
                        seconds / 2.0,
                        x + 20.0 + speed * seconds / 2.0,
                        y,
                        -speed,
                        0.0,
                    ),
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
