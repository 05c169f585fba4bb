//! Synthetic clips with known truth, for the tests and the benchmark: faces from efea-data's
//! synthetic set (each actor one person showing a sequence of expressions) moving over a
//! textured background, encoded by ffmpeg itself. Every frame comes with where each face is,
//! what it shows and whether it can be seen.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use efea_data::synth::{self, SynthConfig, SynthLevel};
use efea_infer::Rect;
use image::{GrayImage, Luma, RgbImage};

use crate::decode::Tools;
use crate::error::{Result, VideoError};

/// Seven expressions per person in the synthetic set: faces `7 s .. 7 s + 6` are person `s`.
const CLASSES: usize = 7;

/// A face moving through a clip.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The person (a subject of the synthetic set).
    pub person: usize,
    /// The expressions shown in turn, each for `seconds_per_expression`.
    pub expressions: Vec<usize>,
    pub seconds_per_expression: f64,
    /// Top-left corner of the face at a time: `(x0, y0)` at `t0` moving at `(vx, vy)` pixels per
    /// second, as straight legs `[(t0, x0, y0, vx, vy), ...]`, the last one that has started
    /// applying.
    pub legs: Vec<(f64, f64, f64, f64, f64)>,
}

impl Actor {
    /// An actor moving in a straight line all along.
    pub fn straight(
        person: usize,
        expressions: Vec<usize>,
        from: (f64, f64),
        velocity: (f64, f64),
    ) -> Self {
        Self {
            person,
            expressions,
            seconds_per_expression: 1.5,
            legs: vec![(0.0, from.0, from.1, velocity.0, velocity.1)],
        }
    }

    pub fn position(&self, time: f64) -> (f64, f64) {
        let &(t0, x0, y0, vx, vy) = self
            .legs
            .iter()
            .rev()
            .find(|leg| leg.0 <= time)
            .unwrap_or(&self.legs[0]);
        (x0 + vx * (time - t0), y0 + vy * (time - t0))
    }

    /// The face of the synthetic set that shows this actor with `expression`.
    pub fn face_index(&self, expression: usize) -> usize {
        self.person * CLASSES + expression
    }

    pub fn expression(&self, time: f64) -> usize {
        let turn = (time / self.seconds_per_expression).floor().max(0.0) as usize;
        self.expressions[turn % self.expressions.len()]
    }
}

/// A clip: its size, rate, length, face size and actors (later actors in front).
#[derive(Debug, Clone)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f64,
    pub side: u32,
    /// The synthetic set's seed: which people exist.
    pub seed: u64,
    pub actors: Vec<Actor>,
}

/// Where one actor is in one frame, and what it shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub actor: usize,
    pub square: Rect,
    pub label: usize,
    /// Wholly inside the frame and less than a quarter hidden by faces in front of it.
    pub visible: bool,
}

/// Faces in front hiding more than this fraction of a face make it not visible.
const HIDDEN: f64 = 0.25;

impl Scene {
    pub fn frames(&self) -> u64 {
        (self.seconds * self.fps as f64).round() as u64
    }

    /// The synthetic set the faces come from.
    pub fn synth(&self) -> SynthConfig {
        SynthConfig {
            count: CLASSES * 40,
            seed: self.seed,
            level: SynthLevel::Easy,
            size: self.side,
            subjects: 40,
        }
    }

    /// The truth of frame `index`.
    pub fn truth(&self, index: u64) -> Vec<Truth> {
        let time = index as f64 / self.fps as f64;
        let squares: Vec<Rect> = self
            .actors
            .iter()
            .map(|a| {
                let (x, y) = a.position(time);
                Rect {
                    x: x.round() as i32,
                    y: y.round() as i32,
                    width: self.side,
                    height: self.side,
                }
            })
            .collect();
        self.actors
            .iter()
            .enumerate()
            .map(|(i, actor)| {
                let s = squares[i];
                let inside = s.x >= 0
                    && s.y >= 0
                    && s.x + s.width as i32 <= self.width as i32
                    && s.y + s.height as i32 <= self.height as i32;
                let hidden = squares[i + 1..]
                    .iter()
                    .map(|front| overlap(s, *front))
                    .fold(0.0, f64::max);
                Truth {
                    actor: i,
                    square: s,
                    label: actor.expression(time),
                    visible: inside && hidden < HIDDEN,
                }
            })
            .collect()
    }

    /// Frame `index` (RGB, the faces gray).
    pub fn render(&self, index: u64) -> RgbImage {
        let (width, height) = (self.width, self.height);
        let seed = self.seed as u32;
        let mut canvas = GrayImage::from_fn(width, height, |x, y| {
            // A slow gradient with a fine hash texture: not flat, not face-like.
            let hash = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed) % 23;
            Luma([(90 + (x * 60 / width) + (y * 40 / height) + hash) as u8])
        });
        let config = self.synth();
        for (truth, actor) in self.truth(index).iter().zip(&self.actors) {
            let face = synth::render(&config, actor.face_index(truth.label));
            image::imageops::replace(
                &mut canvas,
                &face,
                i64::from(truth.square.x),
                i64::from(truth.square.y),
            );
        }
        image::DynamicImage::ImageLuma8(canvas).to_rgb8()
    }

    /// Encodes the clip with ffmpeg (H.264 in MP4 or Matroska, by `path`'s extension), with a
    /// sine tone as audio when `audio`.
    pub fn encode(&self, path: &Path, tools: &Tools, audio: bool) -> Result<()> {
        let mut command = Command::new(&tools.ffmpeg);
        command
            .args(["-nostdin", "-hide_banner", "-v", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
            .arg(format!("{}x{}", self.width, self.height))
            .arg("-r")
            .arg(self.fps.to_string())
            .args(["-i", "pipe:0"]);
        if audio {
            command
                .args(["-f", "lavfi", "-i"])
                .arg(format!("sine=frequency=440:duration={}", self.seconds))
                .args(["-c:a", "aac", "-shortest"]);
        }
        command
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-crf", "16"])
            .args(["-pix_fmt", "yuv420p", "-g", "30"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| VideoError::spawn(&tools.ffmpeg, path, e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut sent = Ok(());
        for index in 0..self.frames() {
            sent = stdin.write_all(self.render(index).as_raw());
            if sent.is_err() {
                break;
            }
        }
        drop(stdin);
        let stderr = child.stderr.take().expect("stderr is piped");
        let errors: Vec<String> = BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
            .collect();
        let status = child
            .wait()
            .map_err(|e| VideoError::io(path, "waiting for ffmpeg", e))?;
        if !status.success() || sent.is_err() {
            return Err(VideoError::Encode {
                path: path.to_path_buf(),
                reason: errors
                    .last()
                    .cloned()
                    .unwrap_or_else(|| format!("ffmpeg {status}")),
            });
        }
        Ok(())
    }
}

/// The fraction of `back` covered by `front`.
fn overlap(back: Rect, front: Rect) -> f64 {
    let w = ((back.x + back.width as i32).min(front.x + front.width as i32) - back.x.max(front.x))
        .max(0);
    let h = ((back.y + back.height as i32).min(front.y + front.height as i32)
        - back.y.max(front.y))
    .max(0);
    (w * h) as f64 / (back.width * back.height) as f64
}

/// Whether a detected box is the face in `square`: its centre in the middle half of the
/// square (synthetic faces fill their square as FER2013's crops do, so the detector's box is
/// smaller and inside it).
pub fn matches(detected: Rect, square: Rect) -> bool {
    let cx = detected.x as f64 + detected.width as f64 / 2.0;
    let cy = detected.y as f64 + detected.height as f64 / 2.0;
    let (tx, ty, ts) = (square.x as f64, square.y as f64, square.width as f64);
    (cx - (tx + ts / 2.0)).abs() <= ts / 4.0 && (cy - (ty + ts / 2.0)).abs() <= ts / 4.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_follow_their_legs_and_expressions() {
        let actor = Actor {
            person: 0,
            expressions: vec![3, 5],
            seconds_per_expression: 1.0,
            legs: vec![(0.0, 0.0, 10.0, 100.0, 0.0), (2.0, 200.0, 10.0, -50.0, 0.0)],
        };
        assert_eq!(actor.position(1.0), (100.0, 10.0));
        assert_eq!(actor.position(3.0), (150.0, 10.0));
        assert_eq!(actor.expression(0.5), 3);
        assert_eq!(actor.expression(1.5), 5);
        assert_eq!(actor.expression(2.5), 3);
    }

    #[test]
    fn a_face_behind_another_or_outside_is_not_visible() {
        let scene = Scene {
            width: 300,
            height: 200,
            fps: 10,
            seconds: 1.0,
            side: 80,
            seed: 1,
            actors: vec![
                Actor::straight(0, vec![0], (10.0, 10.0), (0.0, 0.0)),
                Actor::straight(1, vec![1], (30.0, 20.0), (0.0, 0.0)),
                Actor::straight(2, vec![2], (250.0, 20.0), (0.0, 0.0)),
            ],
        };
        let truth = scene.truth(0);
        assert!(!truth[0].visible && truth[1].visible && !truth[2].visible);
        assert_eq!(scene.render(0).dimensions(), (300, 200));
    }
}
