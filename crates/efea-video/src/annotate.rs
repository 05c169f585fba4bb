//! `--annotate out.mp4`: every decoded frame with its tracks' boxes, ids and labels (drawn by
//! efea-infer's [`draw`]), piped as raw RGB to an `ffmpeg` that encodes them, with the
//! source's audio copied over the same span. The file is written under a temporary name and
//! renamed when ffmpeg has finalised it, so `out.mp4` is always a whole, playable video (also
//! after a damaged source stopped decoding early).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use efea_infer::{Face, Prediction, Timing, draw};
use image::DynamicImage;

use crate::analyse::{Shown, Sink};
use crate::decode::{Span, Tools, VideoFrame, VideoInfo};
use crate::error::{Result, VideoError};
use crate::summary::tmp_beside;

/// Containers written with H.264 (the rest get ffmpeg's default codec for the container,
/// VP9 for WebM, say).
const H264_CONTAINERS: [&str; 5] = ["mp4", "m4v", "mov", "mkv", "avi"];

/// An `ffmpeg` encoding annotated frames into a video file.
#[derive(Debug)]
pub struct Annotator {
    path: PathBuf,
    tmp: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<Vec<String>>>,
    classes: Vec<String>,
    size: (u32, u32),
    finished: bool,
}

impl Annotator {
    /// Starts the encoder for `path`, for frames of the video `info` describes over `span`.
    pub fn create(
        path: &Path,
        info: &VideoInfo,
        span: Span,
        classes: &[String],
        tools: &Tools,
    ) -> Result<Self> {
        let tmp = tmp_beside(path);
        let mut command = Command::new(&tools.ffmpeg);
        command
            .args(["-nostdin", "-hide_banner", "-v", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
            .arg(format!("{}x{}", info.width, info.height))
            .arg("-r")
            .arg(format!("{}", info.fps))
            .args(["-i", "pipe:0"]);
        if info.has_audio {
            if span.start > 0.0 {
                command.arg("-ss").arg(format!("{:.6}", span.start));
            }
            command.arg("-i").arg(&info.path);
            if let Some(end) = span.end {
                command.arg("-t").arg(format!("{:.6}", end - span.start));
            }
            // `1:a?`: the audio if there is one; `-shortest`: cut where the frames stop.
            command.args(["-map", "0:v:0", "-map", "1:a?", "-c:a", "copy", "-shortest"]);
        }
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if H264_CONTAINERS.contains(&extension.as_str()) {
            command.args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"]);
        }
        // 4:2:0 (what players expect) needs even sides.
        command
            .args([
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| VideoError::spawn(&tools.ffmpeg, path, e))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(|l| l.ok())
                .filter(|l| !l.trim().is_empty())
                .take(20)
                .collect()
        });
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            child: Some(child),
            stdin: Some(stdin),
            stderr: Some(stderr),
            classes: classes.to_vec(),
            size: (info.width, info.height),
            finished: false,
        })
    }

    /// Draws `shown` on `frame` and sends it to the encoder.
    pub fn write(&mut self, frame: &VideoFrame, shown: &[Shown]) -> Result<()> {
        assert_eq!(
            frame.image.dimensions(),
            self.size,
            "frames of the probed size"
        );
        let faces: Vec<Face> = shown.iter().map(|s| self.face(s)).collect();
        let prediction = Prediction {
            width: self.size.0,
            height: self.size.1,
            faces,
            timing: Timing::default(),
        };
        // (`annotate` copies the frame: about a millisecond at 640x480, beside 10-30 ms of
        // encoding.)
        let canvas = draw::annotate(
            &DynamicImage::ImageRgb8(frame.image.clone()),
            &prediction,
            &self.classes,
        );
        let stdin = self
            .stdin
            .as_mut()
            .expect("frames are written before finish");
        if let Err(e) = stdin.write_all(canvas.as_raw()) {
            // The encoder stopped: its own message says why.
            return Err(self.failure(format!("sending a frame to ffmpeg: {e}")));
        }
        Ok(())
    }

    /// A track as a face of efea-infer's pictures: the label carries the track id.
    fn face(&self, shown: &Shown) -> Face {
        Face {
            bbox: shown.bbox,
            crop: shown.bbox,
            angle: None,
            score: None,
            landmarks: None,
            label: format!("#{} {}", shown.track, self.classes[shown.class]),
            class: shown.class,
            probabilities: self
                .classes
                .iter()
                .cloned()
                .zip(shown.probabilities.iter().copied())
                .collect(),
        }
    }

    /// Closes the stream, waits for ffmpeg to finalise the file and puts it in place.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        drop(self.stdin.take());
        let status = self
            .child
            .take()
            .expect("the encoder runs until finish")
            .wait();
        let errors = self.stderr_lines();
        match status {
            Ok(status) if status.success() => std::fs::rename(&self.tmp, &self.path).map_err(|e| {
                let _ = std::fs::remove_file(&self.tmp);
                VideoError::io(&self.path, "moving the annotated video in place", e)
            }),
            Ok(status) => {
                let _ = std::fs::remove_file(&self.tmp);
                Err(VideoError::Encode {
                    path: self.path.clone(),
                    reason: errors
                        .last()
                        .cloned()
                        .unwrap_or_else(|| format!("ffmpeg {status}")),
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.tmp);
                Err(VideoError::io(&self.path, "waiting for ffmpeg", e))
            }
        }
    }

    fn stderr_lines(&mut self) -> Vec<String> {
        self.stderr
            .take()
            .map(|h| h.join().expect("the stderr reader does not panic"))
            .unwrap_or_default()
    }

    /// The encoder's error after a failed write: it is stopped and its partial file removed.
    fn failure(&mut self, fallback: String) -> VideoError {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.tmp);
        self.finished = true;
        let errors = self.stderr_lines();
        VideoError::Encode {
            path: self.path.clone(),
            reason: errors.last().cloned().unwrap_or(fallback),
        }
    }
}

impl Drop for Annotator {
    /// Dropped without [`Annotator::finish`] (an error elsewhere): no half-written file stays.
    fn drop(&mut self) {
        if !self.finished {
            drop(self.stdin.take());
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Sink for Annotator {
    fn frame(&mut self, frame: &VideoFrame, shown: &[Shown]) -> Result<()> {
        self.write(frame, shown)
    }
}
