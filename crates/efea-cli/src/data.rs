//! `efea data stats|preview` and `efea synth`: argument parsing and printing only; the work is
//! done by `efea-data`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand, ValueEnum};
use efea_data::preview::{PreviewOptions, preview_grid};
use efea_data::synth::{SynthConfig, SynthLevel};
use efea_data::write::{write_fer2013_csv, write_folders};
use efea_data::{AugmentConfig, Dataset, DatasetKind, DetectorKind, FaceConfig, LoadOptions};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Counts per class and split (and subject-independent folds), as JSON or a table.
    Stats(StatsArgs),
    /// Draw a labelled grid of augmented samples per class to a PNG file.
    Preview(PreviewArgs),
}

/// Which dataset to read, shared by every command that takes one.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// Dataset format.
    #[arg(long, value_parser = dataset_kind_parser())]
    pub dataset: DatasetKind,
    /// The dataset's file or folder: fer2013 = fer2013.csv, icml_face_data.csv, train.csv,
    /// test.csv or a train/ + test/ folder tree; ferplus = a folder with fer2013new.csv and
    /// fer2013.csv (or the path of fer2013new.csv); ckplus = the CK+ root (with
    /// cohn-kanade-images/ and Emotion/); ck48 and folder = the root of class folders.
    /// For synth it is optional and is a specification instead of a path:
    /// `count=3000,level=medium,seed=1` (keys count, level, seed, subjects, size; default
    /// count=3000,level=medium,seed=0).
    #[arg(long, value_name = "PATH|SPEC")]
    pub data: Option<PathBuf>,
    /// Skip bad rows and unreadable images (and report how many) instead of failing.
    #[arg(long)]
    pub skip_bad: bool,
    /// Class names in label order, for --dataset folder (default: folder names sorted).
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    pub classes: Option<Vec<String>>,
    /// Side of the square images.
    #[arg(long, default_value_t = efea_data::preprocess::INPUT_SIZE)]
    pub size: u32,
    /// CK+: also take the first frame of each sequence as `neutral` (8 classes).
    #[arg(long)]
    pub ckplus_neutral: bool,
    /// CK+: skip face detection and always use a centre crop.
    #[arg(long)]
    pub no_face_crop: bool,
    /// CK+: the face detector, mtcnn or rustface.
    #[arg(long, default_value_t = FaceConfig::default().detector,
        value_parser = crate::faces::detector_parser())]
    pub detector: DetectorKind,
    /// CK+: margin around the detected face, as a fraction of its side (0-2).
    #[arg(long, default_value_t = FaceConfig::default().margin)]
    pub margin: f32,
    /// CK+: rotate crops so the eyes are level (with mtcnn's landmarks).
    #[arg(long)]
    pub align: bool,
}

fn dataset_kind_parser() -> impl TypedValueParser<Value = DatasetKind> {
    clap::builder::PossibleValuesParser::new(DatasetKind::NAMES).map(|name| {
        name.parse::<DatasetKind>()
            .expect("every listed name parses")
    })
}

fn level_parser() -> impl TypedValueParser<Value = SynthLevel> {
    clap::builder::PossibleValuesParser::new(SynthLevel::NAMES).map(|name| {
        name.parse::<SynthLevel>()
            .expect("every listed level parses")
    })
}

impl DatasetArgs {
    /// Loads the dataset and tells the user on stderr what was skipped or patched up.
    pub fn load(&self) -> anyhow::Result<Dataset> {
        if self.data.is_none() && self.dataset != DatasetKind::Synth {
            bail!("--dataset {} needs --data PATH", self.dataset);
        }
        let opts = LoadOptions {
            size: self.size,
            skip_bad: self.skip_bad,
            classes: self.classes.clone(),
            ckplus_neutral: self.ckplus_neutral,
            face_crop: !self.no_face_crop,
            face: FaceConfig {
                detector: self.detector,
                margin: self.margin,
                align: self.align,
            },
            ..LoadOptions::default()
        };
        let dataset = efea_data::load(self.dataset, self.data.as_deref(), &opts)?;
        let report = &dataset.report;
        if report.skipped > 0 {
            let lines: Vec<String> = report
                .first_skipped_lines
                .iter()
                .map(usize::to_string)
                .collect();
            let at = if lines.is_empty() {
                String::new()
            } else {
                format!(" (first at lines {})", lines.join(", "))
            };
            eprintln!("warning: skipped {} bad rows or images{at}", report.skipped);
            if let Some(first) = report.first_skipped.first() {
                eprintln!("warning: first: {first}");
            }
        }
        if report.dropped > 0 {
            eprintln!(
                "note: dropped {} rows whose FER+ majority is unknown or not a face",
                report.dropped
            );
        }
        if report.face_fallbacks > 0 {
            eprintln!(
                "note: no face found in {} of {} frames; used a centre crop for those",
                report.face_fallbacks,
                report.face_fallbacks + report.faces_detected
            );
        }
        Ok(dataset)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    Json,
    Table,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Also split into K subject-independent folds and list them.
    #[arg(long, value_name = "K")]
    pub folds: Option<usize>,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = StatsFormat::Json)]
    pub format: StatsFormat,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Where to write the PNG grid.
    #[arg(long)]
    pub out: PathBuf,
    /// Samples per class.
    #[arg(long, default_value_t = 8)]
    pub per_class: usize,
    /// Enlarge each sample this many times.
    #[arg(long, default_value_t = 2)]
    pub scale: u32,
    /// Picks the samples and seeds their augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Show the samples as loaded, without augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Only samples of this split (e.g. Training).
    #[arg(long)]
    pub split: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthFormat {
    /// A Kaggle-style fer2013.csv (emotion,pixels,Usage).
    Csv,
    /// The FER2013 folder layout: train/ and test/ with one folder per class.
    Folders,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output file (csv) or folder (folders).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = SynthFormat::Csv)]
    pub format: SynthFormat,
    /// Number of faces.
    #[arg(long, default_value_t = 3000)]
    pub count: usize,
    #[arg(long, value_parser = level_parser(), default_value = "medium")]
    pub level: SynthLevel,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of distinct people (default: about 30 faces each).
    #[arg(long)]
    pub subjects: Option<usize>,
    /// Side of the square images (the CSV is always 48x48, like FER2013).
    #[arg(long, default_value_t = 48)]
    pub size: u32,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Stats(args) => stats(args),
        DataCommand::Preview(args) => preview(args),
    }
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let dataset = args.dataset.load()?;
    let stats = efea_data::stats(&dataset, args.folds.map(|k| (k, args.seed)))?;
    match args.format {
        StatsFormat::Json => println!("{}", serde_json::to_string_pretty(&stats)?),
        StatsFormat::Table => print!("{}", stats.to_table()),
    }
    Ok(())
}

fn preview(args: PreviewArgs) -> anyhow::Result<()> {
    let dataset = args.dataset.load()?;
    let opts = PreviewOptions {
        per_class: args.per_class,
        scale: args.scale,
        augment: (!args.no_augment).then(AugmentConfig::default),
        seed: args.seed,
        split: args.split,
    };
    let grid = preview_grid(&dataset, &opts)?;
    if let Some(dir) = args.out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (width, height) = grid.dimensions();
    crate::output::save_image(grid, &args.out)?;
    eprintln!("wrote {} ({width}x{height})", args.out.display());
    Ok(())
}

pub fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        count: args.count,
        seed: args.seed,
        level: args.level,
        size: args.size,
        subjects: args
            .subjects
            .unwrap_or_else(|| SynthConfig::default_subjects(args.count)),
    };
    let start = Instant::now();
    let dataset = efea_data::synth::generate(&config)?;
    let drawn = start.elapsed();
    match args.format {
        SynthFormat::Csv => {
            if let Some(dir) = args.out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_fer2013_csv(&dataset, &args.out)?;
        }
        SynthFormat::Folders => {
            write_folders(&dataset, &args.out)?;
        }
    }
    eprintln!(
        "wrote {} {} faces ({} subjects, seed {}) to {}: drawn in {:.2} s, written in {:.2} s",
        config.count,
        config.level,
        config.subjects,
        config.seed,
        args.out.display(),
        drawn.as_secs_f64(),
        (start.elapsed() - drawn).as_secs_f64()
    );
    Ok(())
}
