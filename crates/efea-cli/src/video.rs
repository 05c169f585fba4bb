//! `efea predict clip.mp4`: expressions over time, per tracked face. Parses the video flags,
//! shows a progress bar and prints; the work is `efea_video`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use efea_infer::Predictor;
use efea_video::output::{CsvRows, JsonRows};
use efea_video::time::{clock, parse_time};
use efea_video::{
    Analysis, Annotator, Observation, Sampling, Shown, Sink, Smoothing, Span, Summary, Tools,
    TrackerConfig, VideoConfig, VideoError, VideoFrame, VideoInfo,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::predict::{Format, PredictArgs};

/// The flags that apply to videos only.
#[derive(Debug, Args)]
#[command(next_help_heading = "Videos")]
pub struct VideoArgs {
    /// Analyse every N-th frame (the others are decoded, and drawn in --annotate's video).
    #[arg(long, value_name = "N", conflicts_with = "fps", value_parser = clap::value_parser!(u32).range(1..))]
    pub every: Option<u32>,
    /// Analyse about F frames per second instead.
    #[arg(long, value_name = "F", value_parser = positive_f64)]
    pub fps: Option<f64>,
    /// Start at this time: seconds (12.5) or [HH:]MM:SS[.mmm].
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start: Option<f64>,
    /// Stop at this time (same forms as --start).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub end: Option<f64>,
    /// Smoothing of each track's probabilities over time: ema:SECONDS (exponential, the
    /// half-life), window:SECONDS (mean of the last seconds) or none. Raw values are kept.
    #[arg(long, value_name = "HOW", default_value = "ema:0.5", value_parser = parse_smoothing)]
    pub smooth: Smoothing,
    /// Analysed frames a track may miss its face before it is lost.
    #[arg(long, value_name = "N", default_value_t = TrackerConfig::default().max_missed)]
    pub max_missed: u32,
    /// Seconds during which a lost track is recognised by its look when its face comes
    /// back (0: a returning face always gets a new id).
    #[arg(long, value_name = "SECONDS", default_value_t = TrackerConfig::default().reid_seconds)]
    pub reid: f64,
    /// Write the per-track timeline (probabilities over time, a thumbnail per track) as PNG.
    #[arg(long, value_name = "PNG")]
    pub timeline: Option<PathBuf>,
    /// Write the per-track summary (time on screen, share of each expression) as JSON.
    #[arg(long, value_name = "JSON")]
    pub summary: Option<PathBuf>,
}

impl VideoArgs {
    /// The first video flag given, for the error when the inputs are images.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.every.is_some(), "--every"),
            (self.fps.is_some(), "--fps"),
            (self.start.is_some(), "--start"),
            (self.end.is_some(), "--end"),
            (self.timeline.is_some(), "--timeline"),
            (self.summary.is_some(), "--summary"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

fn positive_f64(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("`{text}`: expected a positive number"))
}

fn parse_smoothing(text: &str) -> Result<Smoothing, String> {
    text.parse()
}

pub fn run(args: &PredictArgs, predictor: Predictor, path: &Path) -> anyhow::Result<()> {
    let video = &args.video;
    if args.format == Format::Json {
        bail!("--format json is for images; a video's rows come as --format jsonl or csv");
    }
    if !(0.0..=3600.0).contains(&video.reid) {
        bail!("--reid {}: expected seconds between 0 and 3600", video.reid);
    }
    let tools = Tools::from_env();
    let info = efea_video::probe(path, &tools)?;
    let config = VideoConfig {
        sampling: match (video.every, video.fps) {
            (_, Some(fps)) => Sampling::Fps(fps),
            (every, None) => Sampling::Every(every.unwrap_or(1)),
        },
        span: Span {
            start: video.start.unwrap_or(0.0),
            end: video.end,
        },
        tracker: TrackerConfig {
            max_missed: video.max_missed,
            reid_seconds: video.reid,
            smoothing: video.smooth,
            ..TrackerConfig::default()
        },
        tools,
    };
    config.span.check(&info)?;
    let annotator = match &args.annotate {
        Some(out) => Some(Annotator::create(
            out,
            &info,
            config.span,
            predictor.classes(),
            &config.tools,
        )?),
        None => None,
    };
    let mut sink = CliSink {
        rows: Rows::new(args.format, predictor.classes()),
        annotator,
        bar: progress_bar(config.span.expected_frames(&info)),
        faces: 0,
        model: predictor.info().name,
    };
    let analysis = efea_video::analyse(&predictor, &info, &config, &mut sink);
    sink.bar.finish_and_clear();
    let analysis = analysis?;
    // The annotated video is finalised even when decoding stopped early.
    if let Some(annotator) = sink.annotator.take() {
        annotator.finish()?;
    }
    sink.rows.header()?;
    if let Some(out) = &video.timeline {
        efea_video::write_timeline(&analysis, out)?;
    }
    let summary = Summary::of(&analysis);
    if args.format == Format::Table {
        let mut stdout = io::stdout().lock();
        summary.table(&mut stdout)?;
        stdout.flush()?;
    }
    if let Some(out) = &video.summary {
        summary.write_json(out)?;
    }
    if args.verbose {
        print_timing(&analysis, sink.faces);
    }
    match analysis.stopped {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

fn progress_bar(frames: Option<u64>) -> ProgressBar {
    let bar = match frames {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} frames, {per_sec}, {msg} (eta {eta})")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message("0 faces");
    bar
}

/// Rows on stdout, the annotated video and the progress bar.
struct CliSink {
    rows: Rows,
    annotator: Option<Annotator>,
    bar: ProgressBar,
    faces: u64,
    model: String,
}

impl Sink for CliSink {
    fn analysed(
        &mut self,
        _frame: &VideoFrame,
        observations: &[Observation],
    ) -> efea_video::Result<()> {
        self.faces += observations.len() as u64;
        self.bar.set_message(format!("{} faces", self.faces));
        let model = self.model.clone();
        self.rows
            .write(observations, &model)
            .map_err(|e| VideoError::Io {
                path: "<stdout>".into(),
                what: "writing the rows".into(),
                source: e,
            })
    }

    fn frame(&mut self, frame: &VideoFrame, shown: &[Shown]) -> efea_video::Result<()> {
        self.bar.inc(1);
        match &mut self.annotator {
            Some(annotator) => annotator.write(frame, shown),
            None => Ok(()),
        }
    }
}

/// The rows of `--format table|csv|jsonl` on stdout, flushed after each analysed frame.
enum Rows {
    Table {
        classes: Vec<String>,
        header_written: bool,
    },
    Csv(CsvRows<io::Stdout>),
    Jsonl(JsonRows<io::Stdout>),
}

impl Rows {
    fn new(format: Format, classes: &[String]) -> Self {
        match format {
            Format::Csv => Self::Csv(CsvRows::new(io::stdout(), classes)),
            Format::Jsonl | Format::Json => Self::Jsonl(JsonRows::new(io::stdout(), classes)),
            Format::Table => Self::Table {
                classes: classes.to_vec(),
                header_written: false,
            },
        }
    }

    /// The header alone (a video without faces still gets one).
    fn header(&mut self) -> io::Result<()> {
        match self {
            Self::Csv(rows) => rows.header(),
            _ => Ok(()),
        }
    }

    fn write(&mut self, observations: &[Observation], model: &str) -> io::Result<()> {
        match self {
            Self::Csv(rows) => rows.rows(observations),
            Self::Jsonl(rows) => rows.rows(observations),
            Self::Table {
                classes,
                header_written,
            } => {
                let mut out = io::stdout().lock();
                if !*header_written {
                    *header_written = true;
                    writeln!(out, "model: {model}")?;
                    write!(
                        out,
                        "{:>9} {:>5} {:>20} {:<10} ",
                        "time", "track", "box x,y,w,h", "label"
                    )?;
                    for class in classes.iter() {
                        write!(out, "{:>9}", class.chars().take(8).collect::<String>())?;
                    }
                    writeln!(out)?;
                }
                for o in observations {
                    let b = o.bbox;
                    let bbox = format!("{},{},{},{}", b.x, b.y, b.width, b.height);
                    write!(
                        out,
                        "{:>9} {:>5} {:>20} {:<10} ",
                        clock(o.time),
                        o.track,
                        bbox,
                        classes[o.class]
                    )?;
                    for p in &o.smoothed {
                        write!(out, "{:>8.1}%", 100.0 * p)?;
                    }
                    writeln!(out)?;
                }
                out.flush()
            }
        }
    }
}

fn print_timing(analysis: &Analysis, faces: u64) {
    let t = &analysis.timing;
    let wall = t.wall.as_secs_f64().max(1e-9);
    let seconds_of_video = analysis.frames_decoded as f64 / analysis.info.fps;
    let per = |d: Duration| d.as_secs_f64() * 1e3 / analysis.frames_analysed.max(1) as f64;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / wall;
    let info: &VideoInfo = &analysis.info;
    eprintln!(
        "video: {}x{} at {:.2} frames/s ({}); {} frames decoded, {} analysed, {} faces in {:.2} s",
        info.width,
        info.height,
        info.fps,
        info.codec,
        analysis.frames_decoded,
        analysis.frames_analysed,
        faces,
        wall
    );
    eprintln!(
        "throughput: {:.1} frames/s of input, {:.2}x real time",
        analysis.frames_decoded as f64 / wall,
        seconds_of_video / wall
    );
    eprintln!(
        "per analysed frame: detection {:.1} ms, classification {:.1} ms, tracking {:.1} ms, \
         output {:.1} ms, waiting for frames {:.1} ms; of the wall time: detection {:.0} %, \
         classification {:.0} %",
        per(t.detect),
        per(t.classify),
        per(t.track),
        per(t.output),
        per(t.decode),
        share(t.detect),
        share(t.classify)
    );
}
