//! Per track: how long the face was on screen and how that time shares out between the
//! expressions (by the smoothed label of each analysed frame).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::analyse::Analysis;
use crate::error::{Result, VideoError};
use crate::time::clock;

/// The summary of a run, as `--summary out.json` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub video: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Seconds analysed: from the first decoded frame to just after the last.
    pub start: f64,
    pub end: f64,
    pub frames_decoded: u64,
    pub frames_analysed: u64,
    /// Seconds between analysed frames.
    pub sample_interval: f64,
    pub classes: Vec<String>,
    pub tracks: Vec<TrackSummary>,
    /// Why decoding stopped early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSummary {
    pub id: u32,
    /// Time stamps of the first and last analysed frames the face was found in.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Seconds on screen: the analysed frames it was found in, each standing for the
    /// interval between analysed frames.
    pub on_screen: f64,
    pub observations: usize,
    /// The expression it showed longest.
    pub dominant: String,
    /// Fraction of its time on screen per expression, in class order.
    #[serde(serialize_with = "share_map")]
    pub share: Vec<(String, f64)>,
}

fn share_map<S: serde::Serializer>(
    pairs: &[(String, f64)],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, (v * 1e4).round() / 1e4)))
}

impl Summary {
    pub fn of(analysis: &Analysis) -> Self {
        let classes = &analysis.classes;
        let interval = analysis.sample_interval();
        let tracks = analysis
            .tracks
            .iter()
            .filter(|t| !t.observations.is_empty())
            .map(|track| {
                let mut counts = vec![0usize; classes.len()];
                for o in &track.observations {
                    counts[o.class] += 1;
                }
                let n = track.observations.len();
                let dominant =
                    crate::analyse::argmax(&counts.iter().map(|&c| c as f32).collect::<Vec<_>>());
                TrackSummary {
                    id: track.id,
                    first_seen: track.observations[0].time,
                    last_seen: track.observations[n - 1].time,
                    on_screen: n as f64 * interval,
                    observations: n,
                    dominant: classes[dominant].clone(),
                    share: classes
                        .iter()
                        .zip(&counts)
                        .map(|(c, &k)| (c.clone(), k as f64 / n as f64))
                        .collect(),
                }
            })
            .collect();
        Self {
            video: analysis.info.path.display().to_string(),
            width: analysis.info.width,
            height: analysis.info.height,
            fps: analysis.info.fps,
            start: analysis.first_time,
            end: analysis.end_time,
            frames_decoded: analysis.frames_decoded,
            frames_analysed: analysis.frames_analysed,
            sample_interval: interval,
            classes: classes.clone(),
            tracks,
            error: analysis.stopped.as_ref().map(|e| e.to_string()),
        }
    }

    /// Writes the summary as pretty JSON, atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self).expect("a summary serialises");
        text.push(b'\n');
        write_atomic(path, &text)
    }

    /// The summary as a table: one line per track, the share of each expression in percent.
    pub fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "\ntracks: {} in {} ({} frames decoded, {} analysed)",
            self.tracks.len(),
            clock(self.end - self.start),
            self.frames_decoded,
            self.frames_analysed
        )?;
        if self.tracks.is_empty() {
            return writeln!(out, "(no face found)");
        }
        write!(
            out,
            "{:>5} {:>9} {:>9} {:>9} {:<10}",
            "track", "first", "last", "on screen", "dominant"
        )?;
        for class in &self.classes {
            write!(out, "{:>9}", truncate(class, 8))?;
        }
        writeln!(out)?;
        for t in &self.tracks {
            write!(
                out,
                "{:>5} {:>9} {:>9} {:>8.1}s {:<10}",
                t.id,
                clock(t.first_seen),
                clock(t.last_seen),
                t.on_screen,
                t.dominant
            )?;
            for (_, share) in &t.share {
                write!(out, "{:>8.1}%", 100.0 * share)?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

fn truncate(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// sees the old file or the whole new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    efea_model::checkpoint::write_atomic(path, bytes)
        .map_err(|e| VideoError::io(path, "writing", e))
}

/// A hidden temporary name beside `path` with the same extension (ffmpeg picks the container
/// from it).
pub(crate) fn tmp_beside(path: &Path) -> std::path::PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!(
            ".{stem}.tmp{}.{}",
            std::process::id(),
            ext.to_string_lossy()
        ),
        None => format!(".{stem}.tmp{}", std::process::id()),
    };
    path.with_file_name(name)
}
