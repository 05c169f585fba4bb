//! `efea predict`: faces and expressions of images, as a table, JSON, JSON lines or CSV;
//! optionally annotated pictures and Grad-CAM overlays. The work is `efea_infer::Predictor`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::faces::ModelArgs;
use crate::video::VideoArgs;
use efea_infer::Face;
use efea_infer::inputs::{self, Input};
use efea_infer::{
    Analysed, DEFAULT_MAX_PIXELS, InferError, LAST_LAYER, Predictor, PredictorConfig, Timing, draw,
};
use serde::Serialize;

/// Images read and analysed together: their faces share the classifier's batches.
const IMAGES_PER_ROUND: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, one row per face.
    Table,
    /// One JSON document: a list of `{path, faces}` or `{path, error}`.
    Json,
    /// One JSON object per image and line.
    Jsonl,
    /// One row per face (an image without faces or with an error: one row).
    Csv,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images, folders (searched recursively for jpg, jpeg, png, bmp, webp, tiff, gif) or `-`
    /// for standard input; or one video (mp4, mkv, mov, webm, avi, ...: anything FFmpeg
    /// reads), analysed over time per tracked face.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Videos: one row per (analysed frame, track); `json` is for images only.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Each image is already a face crop (as FER2013's 48x48 images): no detection.
    #[arg(long)]
    no_detect: bool,
    /// Write each image with boxes, labels and probability bars to DIR; for a video, the
    /// annotated video to this file (boxes, track ids, labels; the audio copied).
    #[arg(long, value_name = "DIR|VIDEO")]
    pub annotate: Option<PathBuf>,
    /// Write a Grad-CAM overlay per face (predicted class) to DIR.
    #[arg(long, value_name = "DIR")]
    cam: Option<PathBuf>,
    /// Grad-CAM target layer `features.N`: 1-17 the inverted-residual blocks, 18 the last
    /// backbone convolution.
    #[arg(long, default_value_t = LAST_LAYER as u8, value_parser = clap::value_parser!(u8).range(1..=18))]
    cam_layer: u8,
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Faces per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// cpu, wgpu, wgpu:N, cuda:N or tch[:cuda:N] (GPU backends need the matching feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print faces/s and the time per image split into decode, detection and classification.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub video: VideoArgs,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let device = crate::device::parse_device(&args.device)?;
    let config = PredictorConfig {
        detect: !args.no_detect,
        max_pixels: args.max_pixels,
        batch_size: args.batch_size.max(1),
        cam_layer: usize::from(args.cam_layer),
        ..PredictorConfig::default()
    };
    let videos: Vec<&PathBuf> = args
        .paths
        .iter()
        .filter(|p| efea_video::is_video_path(p) && !p.is_dir())
        .collect();
    if let Some(video) = videos.first() {
        if args.paths.len() > 1 {
            bail!(
                "{}: a video is analysed alone: give one video, or images and folders",
                video.display()
            );
        }
        if args.no_detect || args.cam.is_some() {
            bail!("--no-detect and --cam are for images, not videos");
        }
        let predictor = args.model.load(&device, config)?;
        return crate::video::run(&args, predictor, video);
    }
    if let Some(flag) = args.video.first_given() {
        bail!("{flag} applies to videos; the inputs are images");
    }
    let load_start = Instant::now();
    let predictor = args.model.load(&device, config)?;
    let load_time = load_start.elapsed();
    let inputs = inputs::collect(&args.paths)?;
    if inputs.is_empty() {
        bail!("no images found in {}", display_paths(&args.paths));
    }
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        bail!("`-` (standard input) can be given only once");
    }
    for dir in [&args.annotate, &args.cam].into_iter().flatten() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let mut out = Output::new(args.format, predictor.classes(), predictor.info().name);
    let mut names = OutputNames::default();
    let mut stats = Stats::default();
    let start = Instant::now();
    for round in inputs.chunks(IMAGES_PER_ROUND) {
        let read: Vec<Result<Vec<u8>, InferError>> = round.iter().map(read_input).collect();
        let bytes: Vec<&[u8]> = read.iter().filter_map(|r| r.as_deref().ok()).collect();
        let mut analysed = predictor.predict_many(&bytes).into_iter();
        let results: Vec<Result<Analysed, InferError>> = read
            .into_iter()
            .map(|read| match read {
                Ok(_) => analysed.next().expect("one result per image read"),
                Err(e) => Err(e),
            })
            .collect();
        for (input, result) in round.iter().zip(results) {
            let name = input.name();
            match result {
                Ok(analysed) => {
                    stats.add(&analysed);
                    write_pictures(&args, &predictor, &analysed, input, &mut names)?;
                    out.image(&name, &analysed)?;
                }
                Err(error) => {
                    stats.failed += 1;
                    out.error(&name, &error)?;
                }
            }
        }
    }
    out.finish()?;
    if args.verbose {
        stats.print(start.elapsed(), load_time);
    }
    if stats.failed > 0 {
        bail!(
            "{} of {} images could not be read",
            stats.failed,
            stats.failed + stats.images
        );
    }
    Ok(())
}

fn read_input(input: &Input) -> Result<Vec<u8>, InferError> {
    match input {
        Input::Stdin => {
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| InferError::Io {
                    path: "-".into(),
                    source: e,
                })?;
            Ok(bytes)
        }
        Input::File(path) => fs::read(path).map_err(|e| InferError::Io {
            path: path.clone(),
            source: e,
        }),
    }
}

fn write_pictures(
    args: &PredictArgs,
    predictor: &Predictor,
    analysed: &Analysed,
    input: &Input,
    names: &mut OutputNames,
) -> anyhow::Result<()> {
    let stem = names.unique(input);
    if let Some(dir) = &args.annotate {
        let path = dir.join(format!("{stem}.png"));
        let annotated = draw::annotate(&analysed.image, &analysed.prediction, predictor.classes());
        crate::output::save_image(annotated, &path)?;
    }
    if let Some(dir) = &args.cam
        && !analysed.prediction.faces.is_empty()
    {
        let rgb = analysed.image.to_rgb8();
        let cams = predictor.grad_cam(analysed);
        for (index, (face, cam)) in analysed.prediction.faces.iter().zip(&cams).enumerate() {
            let side = face.crop.width.clamp(128, 512);
            let path = dir.join(format!("{stem}_face{}_{}.png", index + 1, face.label));
            crate::output::save_image(draw::cam_overlay(&rgb, face.crop, cam, side), &path)?;
        }
    }
    Ok(())
}

/// File stems for pictures, unique within a run (`a/x.jpg` and `b/x.jpg` give `x`, `x-2`).
#[derive(Debug, Default)]
struct OutputNames {
    used: HashSet<String>,
}

impl OutputNames {
    fn unique(&mut self, input: &Input) -> String {
        let base = match input {
            Input::Stdin => "stdin".to_string(),
            Input::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into()),
        };
        let mut name = base.clone();
        let mut n = 1;
        while !self.used.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    }
}

/// Totals for `--verbose`.
#[derive(Debug, Default)]
struct Stats {
    images: usize,
    failed: usize,
    faces: usize,
    timing: Timing,
}

impl Stats {
    fn add(&mut self, analysed: &Analysed) {
        self.images += 1;
        self.faces += analysed.prediction.faces.len();
        self.timing += analysed.prediction.timing;
    }

    fn print(&self, wall: Duration, load: Duration) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let per_image = |d: Duration| ms(d) / self.images.max(1) as f64;
        let faces_per_s = self.faces as f64 / self.timing.classify.as_secs_f64().max(1e-9);
        eprintln!(
            "{} images ({} failed), {} faces in {:.2} s (model loaded in {:.0} ms)",
            self.images + self.failed,
            self.failed,
            self.faces,
            wall.as_secs_f64(),
            ms(load),
        );
        eprintln!(
            "per image: {:.1} ms = decode {:.1} + detection {:.1} + classification {:.1} ms; \
             classification {:.0} faces/s; overall {:.1} images/s",
            per_image(self.timing.total()),
            per_image(self.timing.decode),
            per_image(self.timing.detect),
            per_image(self.timing.classify),
            faces_per_s,
            (self.images + self.failed) as f64 / wall.as_secs_f64().max(1e-9),
        );
    }
}

/// Writes results to stdout as they come (all at the end for `json`).
struct Output {
    format: Format,
    classes: Vec<String>,
    stdout: io::StdoutLock<'static>,
    json: Vec<Record>,
    header_written: bool,
    /// The model's name, in every record and on the table's first line.
    model: String,
}

impl Output {
    fn new(format: Format, classes: &[String], model: String) -> Self {
        Self {
            format,
            classes: classes.to_vec(),
            stdout: io::stdout().lock(),
            json: Vec::new(),
            header_written: false,
            model,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        match self.format {
            Format::Table => {
                writeln!(self.stdout, "model: {}", self.model)?;
                write!(
                    self.stdout,
                    "{:<32} {:>4} {:>20} {:<10} ",
                    "path", "face", "box x,y,w,h", "label"
                )?;
                for class in &self.classes {
                    write!(self.stdout, "{:>9}", truncate(class, 8))?;
                }
                writeln!(self.stdout)
            }
            Format::Csv => {
                write!(self.stdout, "path,face,x,y,width,height,label")?;
                for class in &self.classes {
                    write!(self.stdout, ",{}", csv_field(class))?;
                }
                writeln!(self.stdout, ",error")
            }
            Format::Json | Format::Jsonl => Ok(()),
        }
    }

    fn image(&mut self, path: &str, analysed: &Analysed) -> io::Result<()> {
        self.header()?;
        let prediction = &analysed.prediction;
        match self.format {
            Format::Table => {
                if prediction.faces.is_empty() {
                    writeln!(
                        self.stdout,
                        "{:<32} {:>4} {:>20} (no face found)",
                        path, "-", "-"
                    )?;
                }
                for (index, face) in prediction.faces.iter().enumerate() {
                    let b = face.bbox;
                    let bbox = format!("{},{},{},{}", b.x, b.y, b.width, b.height);
                    write!(
                        self.stdout,
                        "{:<32} {:>4} {:>20} {:<10} ",
                        path,
                        index + 1,
                        bbox,
                        face.label
                    )?;
                    for (_, p) in &face.probabilities {
                        write!(self.stdout, "{:>8.1}%", 100.0 * p)?;
                    }
                    writeln!(self.stdout)?;
                }
                Ok(())
            }
            Format::Csv => {
                let path = csv_field(path);
                if prediction.faces.is_empty() {
                    let empty = ",".repeat(self.classes.len());
                    writeln!(self.stdout, "{path},,,,,,{empty},")?;
                }
                for (index, face) in prediction.faces.iter().enumerate() {
                    let b = face.bbox;
                    write!(
                        self.stdout,
                        "{path},{},{},{},{},{},{}",
                        index + 1,
                        b.x,
                        b.y,
                        b.width,
                        b.height,
                        csv_field(&face.label)
                    )?;
                    for (_, p) in &face.probabilities {
                        write!(self.stdout, ",{p:.6}")?;
                    }
                    writeln!(self.stdout, ",")?;
                }
                Ok(())
            }
            Format::Json | Format::Jsonl => self.record(Record::Faces {
                path: path.to_string(),
                model: self.model.clone(),
                width: prediction.width,
                height: prediction.height,
                faces: prediction.faces.clone(),
            }),
        }
    }

    fn error(&mut self, path: &str, error: &InferError) -> io::Result<()> {
        self.header()?;
        match self.format {
            Format::Table => {
                self.stdout.flush()?;
                eprintln!("{path}: error: {error}");
                Ok(())
            }
            Format::Csv => {
                let empty = ",".repeat(self.classes.len());
                writeln!(
                    self.stdout,
                    "{},,,,,,{empty},{}",
                    csv_field(path),
                    csv_field(&error.to_string())
                )
            }
            Format::Json | Format::Jsonl => self.record(Record::Error {
                path: path.to_string(),
                error: error.to_string(),
            }),
        }
    }

    fn record(&mut self, record: Record) -> io::Result<()> {
        if self.format == Format::Jsonl {
            serde_json::to_writer(&mut self.stdout, &record)?;
            writeln!(self.stdout)?;
            self.stdout.flush()
        } else {
            self.json.push(record);
            Ok(())
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.format == Format::Json {
            serde_json::to_writer_pretty(&mut self.stdout, &self.json)?;
            writeln!(self.stdout)?;
        }
        self.stdout.flush()
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn truncate(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One image's entry of `--format json|jsonl`. Serialised straight from the types (not through
/// `serde_json::Value`, which would sort each face's probabilities by class name).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Record {
    Faces {
        path: String,
        model: String,
        width: u32,
        height: u32,
        faces: Vec<Face>,
    },
    Error {
        path: String,
        error: String,
    },
}
