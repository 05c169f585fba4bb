//! Frames out of any video FFmpeg reads: `ffprobe` describes the file, `ffmpeg` decodes it
//! to raw RGB frames on a pipe. A subprocess rather than bindings: Debian's ffmpeg reads every
//! common container and codec, needs no build-time headers, and a crash in a decoder stays in
//! its own process.
//!
//! Frames come out at a constant rate (the stream's average frame rate, `-fps_mode cfr`), so
//! frame `i` is at `start + i / fps` even for variable-rate sources.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use image::RgbImage;
use serde_json::Value;

use crate::error::{Result, VideoError};

/// Where the FFmpeg programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Default for Tools {
    /// `ffmpeg` and `ffprobe` on the `PATH`.
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

impl Tools {
    /// The tools named by `EFEA_FFMPEG` / `EFEA_FFPROBE` where set, else on the `PATH`.
    pub fn from_env() -> Self {
        let default = Self::default();
        Self {
            ffmpeg: std::env::var_os("EFEA_FFMPEG").map_or(default.ffmpeg, PathBuf::from),
            ffprobe: std::env::var_os("EFEA_FFPROBE").map_or(default.ffprobe, PathBuf::from),
        }
    }
}

/// File name extensions taken for videos (case-insensitive).
pub const VIDEO_EXTENSIONS: [&str; 16] = [
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "ts", "mts", "m2ts",
    "3gp", "ogv", "y4m",
];

/// Whether `path` has one of [`VIDEO_EXTENSIONS`].
pub fn is_video_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// What ffprobe says about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub path: PathBuf,
    /// Frame size as decoded (after the rotation the file asks for).
    pub width: u32,
    pub height: u32,
    /// Frames per second of the decoded (constant-rate) stream.
    pub fps: f64,
    /// Seconds, when the container or stream says.
    pub duration: Option<f64>,
    /// The video codec, as FFmpeg names it (`h264`).
    pub codec: String,
    /// The container (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// Whether there is an audio stream (copied into annotated videos).
    pub has_audio: bool,
}

/// Frame rates outside this are taken as a container's time base, not a real rate.
const SANE_FPS: std::ops::RangeInclusive<f64> = 0.5..=240.0;

/// Describes `path` with ffprobe.
pub fn probe(path: &Path, tools: &Tools) -> Result<VideoInfo> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(VideoError::io(path, "reading the video", e));
    }
    let output = Command::new(&tools.ffprobe)
        .args(["-v", "error", "-show_entries"])
        .arg(
            "stream=index,codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,duration:\
             stream_side_data=rotation:format=duration,format_name",
        )
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VideoError::spawn(&tools.ffprobe, path, e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // ffprobe starts its message with the file name, which the error already gives.
        let prefix = format!("{}: ", path.display());
        return Err(VideoError::NotAVideo {
            path: path.to_path_buf(),
            reason: last_line(&stderr)
                .map(|line| line.strip_prefix(&prefix).unwrap_or(&line).to_string())
                .unwrap_or_else(|| format!("ffprobe {}", output.status)),
        });
    }
    let probe_error = |entry: &str, message: &str| VideoError::Probe {
        path: path.to_path_buf(),
        entry: entry.into(),
        message: message.into(),
    };
    let json: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| probe_error("ffprobe output", &format!("not JSON: {e}")))?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or_else(|| VideoError::NoVideoStream {
            path: path.to_path_buf(),
        })?;
    let has_audio = streams.iter().any(|s| s["codec_type"] == "audio");
    let dimension = |key: &str| -> Result<u32> {
        video[key]
            .as_u64()
            .filter(|&v| v > 0 && v <= 1 << 16)
            .map(|v| v as u32)
            .ok_or_else(|| {
                probe_error(
                    &format!("stream {key}"),
                    "expected a frame size of 1-65536 pixels",
                )
            })
    };
    let (mut width, mut height) = (dimension("width")?, dimension("height")?);
    let rotation = video["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["rotation"].as_f64())
        .unwrap_or(0.0);
    // ffmpeg turns the frames upright by default; a quarter turn swaps the sides.
    if (rotation.abs() / 90.0).round() as i64 % 2 == 1 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = [&video["avg_frame_rate"], &video["r_frame_rate"]]
        .into_iter()
        .filter_map(|v| v.as_str().and_then(parse_rate))
        .find(|fps| SANE_FPS.contains(fps))
        .ok_or_else(|| {
            probe_error(
                "stream avg_frame_rate",
                "expected a frame rate between 0.5 and 240 frames per second",
            )
        })?;
    let seconds = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|d| *d > 0.0)
    };
    let duration = seconds(&video["duration"]).or_else(|| seconds(&json["format"]["duration"]));
    Ok(VideoInfo {
        path: path.to_path_buf(),
        width,
        height,
        fps,
        duration,
        codec: video["codec_name"].as_str().unwrap_or("unknown").into(),
        container: json["format"]["format_name"]
            .as_str()
            .unwrap_or("unknown")
            .into(),
        has_audio,
    })
}

/// `30000/1001` or `25` as frames per second.
fn parse_rate(text: &str) -> Option<f64> {
    let rate = match text.split_once('/') {
        Some((n, d)) => {
            let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
            if d == 0.0 {
                return None;
            }
            n / d
        }
        None => text.parse().ok()?,
    };
    rate.is_finite().then_some(rate)
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

/// An ffmpeg log line without the address of the component that wrote it
/// (`[h264 @ 0x55d0c0a8] error` reads `[h264] error`).
fn readable(line: &str) -> String {
    let line = line.trim();
    match (line.find(" @ 0x"), line.find(']')) {
        (Some(at), Some(end)) if at < end => format!("{}{}", &line[..at], &line[end..]),
        _ => line.to_string(),
    }
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Counted from the first decoded frame (the one at `--start`).
    pub index: u64,
    /// Seconds from the start of the video.
    pub time: f64,
    pub image: RgbImage,
}

/// The part of a video to decode.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Span {
    /// Seconds from the start of the video.
    pub start: f64,
    /// Seconds from the start of the video; `None`: to the end.
    pub end: Option<f64>,
}

impl Span {
    /// Checks the span against the video: start before end, start inside the video.
    pub fn check(&self, info: &VideoInfo) -> Result<()> {
        let range = |message: String| VideoError::Range {
            path: info.path.clone(),
            message,
        };
        if let Some(end) = self.end
            && end <= self.start
        {
            return Err(range(format!(
                "--end {end} s is not after --start {} s",
                self.start
            )));
        }
        if let Some(duration) = info.duration
            && self.start >= duration
        {
            return Err(range(format!(
                "--start {} s is past the end of the video ({duration:.3} s)",
                self.start
            )));
        }
        Ok(())
    }

    /// Where decoding should stop: the end asked for, or the video's.
    pub fn expected_end(&self, info: &VideoInfo) -> Option<f64> {
        match (self.end, info.duration) {
            (Some(end), Some(duration)) => Some(end.min(duration)),
            (end, duration) => end.or(duration),
        }
    }

    /// About how many frames the span holds.
    pub fn expected_frames(&self, info: &VideoInfo) -> Option<u64> {
        self.expected_end(info)
            .map(|end| ((end - self.start).max(0.0) * info.fps).round() as u64)
    }
}

/// Frames buffered between the decoding process and the analysis: enough to keep ffmpeg
/// decoding while a frame is analysed, little memory (3 MB at 640x480).
const FRAMES_IN_FLIGHT: usize = 4;

/// Error lines of ffmpeg kept for the report.
const STDERR_LINES: usize = 20;

/// A running `ffmpeg` decoding a video to frames.
#[derive(Debug)]
pub struct Decoder {
    info: VideoInfo,
    span: Span,
    child: Option<Child>,
    frames: Receiver<Vec<u8>>,
    reader: Option<JoinHandle<std::io::Result<()>>>,
    stderr: Option<JoinHandle<Vec<String>>>,
    next_index: u64,
    done: bool,
}

impl Decoder {
    /// Starts decoding `span` of the video `info` describes.
    pub fn open(info: &VideoInfo, span: Span, tools: &Tools) -> Result<Self> {
        span.check(info)?;
        let mut command = Command::new(&tools.ffmpeg);
        command.args(["-nostdin", "-hide_banner", "-v", "error"]);
        if span.start > 0.0 {
            // Before `-i`: seeks the input, then decodes from the key frame before `start` and
            // drops the frames up to it, so the first frame is at `start`.
            command.arg("-ss").arg(format!("{:.6}", span.start));
        }
        command.arg("-i").arg(&info.path);
        if let Some(end) = span.end {
            command.arg("-t").arg(format!("{:.6}", end - span.start));
        }
        command
            .args([
                "-map",
                "0:v:0",
                "-an",
                "-sn",
                "-dn",
                "-fps_mode",
                "cfr",
                "-r",
            ])
            .arg(format!("{}", info.fps))
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| VideoError::spawn(&tools.ffmpeg, &info.path, e))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let frame_bytes = info.width as usize * info.height as usize * 3;
        let (sender, frames) = sync_channel(FRAMES_IN_FLIGHT);
        let reader = std::thread::spawn(move || -> std::io::Result<()> {
            loop {
                let mut frame = vec![0u8; frame_bytes];
                if !read_full(&mut stdout, &mut frame)? {
                    return Ok(());
                }
                if sender.send(frame).is_err() {
                    return Ok(()); // the decoder was dropped
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if lines.len() < STDERR_LINES && !line.trim().is_empty() {
                    lines.push(readable(&line));
                }
            }
            lines
        });
        Ok(Self {
            info: info.clone(),
            span,
            child: Some(child),
            frames,
            reader: Some(reader),
            stderr: Some(stderr),
            next_index: 0,
            done: false,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The next frame; `Ok(None)` at the end of the span. A damaged or truncated file gives
    /// its decodable frames, then one [`VideoError::Damaged`] naming where decoding stopped,
    /// then `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>> {
        if self.done {
            return Ok(None);
        }
        if let Ok(bytes) = self.frames.recv() {
            let index = self.next_index;
            self.next_index += 1;
            let image = RgbImage::from_raw(self.info.width, self.info.height, bytes)
                .expect("the reader sends whole frames");
            return Ok(Some(VideoFrame {
                index,
                time: self.time_of(index),
                image,
            }));
        }
        self.done = true;
        self.finish()
    }

    /// Time stamp of frame `index`.
    fn time_of(&self, index: u64) -> f64 {
        self.span.start + index as f64 / self.info.fps
    }

    /// After the last frame: was the whole span decoded?
    fn finish(&mut self) -> Result<Option<VideoFrame>> {
        let read = self
            .reader
            .take()
            .map(|r| r.join().expect("the frame reader does not panic"));
        let status = self.child.take().map(|mut c| c.wait());
        let errors = self
            .stderr
            .take()
            .map(|h| h.join().expect("the stderr reader does not panic"))
            .unwrap_or_default();
        let at = self.time_of(self.next_index);
        let expected = self.span.expected_end(&self.info);
        let damaged = |reason: String| {
            Err(VideoError::Damaged {
                path: self.info.path.clone(),
                at,
                expected,
                reason,
            })
        };
        if let Some(Err(e)) = read {
            return damaged(format!("reading decoded frames: {e}"));
        }
        match status {
            Some(Err(e)) => return damaged(format!("waiting for ffmpeg: {e}")),
            Some(Ok(status)) if !status.success() => {
                return damaged(errors.last().cloned().unwrap_or(format!("ffmpeg {status}")));
            }
            _ => {}
        }
        if let Some(first) = errors.first() {
            return damaged(format!("ffmpeg: {first}"));
        }
        // A container that says how long it is but whose data ends early decodes "cleanly".
        let slack = (3.0 / self.info.fps).max(0.3);
        if let Some(end) = expected
            && at + slack < end
        {
            return damaged("the video data ends early".into());
        }
        if self.next_index == 0 {
            return damaged("no frame could be decoded".into());
        }
        Ok(None)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fills `buffer` from `reader`; `false` at the end of the stream (a partial last frame is
/// dropped).
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_parse_as_fractions() {
        assert_eq!(parse_rate("30/1"), Some(30.0));
        assert!((parse_rate("30000/1001").unwrap() - 29.97).abs() < 1e-3);
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(parse_rate("25"), Some(25.0));
        assert_eq!(parse_rate("x"), None);
    }

    #[test]
    fn ffmpeg_lines_lose_their_addresses() {
        assert_eq!(
            readable("[h264 @ 0x560988868780] left block unavailable"),
            "[h264] left block unavailable"
        );
        assert_eq!(readable("  plain line "), "plain line");
    }

    #[test]
    fn video_paths_are_known_by_extension() {
        assert!(is_video_path(Path::new("a/clip.MP4")));
        assert!(is_video_path(Path::new("clip.mkv")));
        assert!(!is_video_path(Path::new("face.png")));
        assert!(!is_video_path(Path::new("mp4")));
    }
}
