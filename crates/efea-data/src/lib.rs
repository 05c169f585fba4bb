//! Datasets for efea: FER2013 (CSV and folders), FER+, CK+ (original and CK+48), any
//! class-folder tree, and a built-in synthetic expression set; plus augmentation, folds,
//! preprocessing and batching.
//!
//! Every loader returns a [`Dataset`] of [`Sample`]s whose images are square grayscale at the
//! configured size, whose labels index the dataset's canonical class order
//! ([`classes`]), and whose [`Source`] says where each came from. Bad input is a
//! [`DataError`] naming the file, the 1-based line (header = line 1) or entry, and what was
//! expected; with [`LoadOptions::skip_bad`] bad rows and images are counted in the
//! [`LoadReport`] instead.

pub mod augment;
pub mod batch;
pub mod ckplus;
pub mod classes;
mod csv;
pub mod decode;
mod error;
pub mod fer2013;
pub mod ferplus;
pub mod folds;
pub mod image_folder;
pub mod preprocess;
pub mod preview;
pub mod rng;
pub mod stats;
pub mod synth;
pub mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

pub use error::{DataError, FileProblem, Result, RowProblem};
pub use image::GrayImage;

pub use augment::AugmentConfig;
pub use batch::{Batch, BatchIndices, Batcher};
pub use efea_face::{DetectorKind, FaceConfig};
pub use folds::subject_folds;
pub use preprocess::preprocess;
pub use stats::{Stats, stats};
pub use synth::{SynthConfig, SynthLevel};

/// Where a sample came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A row of a CSV file; `line` is 1-based with the header as line 1.
    Line { file: Arc<Path>, line: usize },
    /// An image file (folder layouts, CK+).
    Entry { path: PathBuf },
    /// Item `index` of the synthetic set drawn with `seed`.
    Synthetic { seed: u64, index: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { file, line } => write!(f, "{}:{line}", file.display()),
            Self::Entry { path } => write!(f, "{}", path.display()),
            Self::Synthetic { seed, index } => write!(f, "synth(seed={seed})#{index}"),
        }
    }
}

/// One face image with its label.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Square grayscale image at the loader's configured size (48 by default).
    pub image: GrayImage,
    /// Index into [`Dataset::classes`]. Meaningless when [`Dataset::labelled`] is false.
    pub label: usize,
    /// FER+ vote distribution over [`Dataset::classes`] (sums to 1), for soft-label training.
    pub soft_label: Option<Vec<f32>>,
    /// Who is shown, where the dataset says (CK+, synthetic); folds never split a subject.
    pub subject: Option<String>,
    /// File and line, or entry, this sample was read from.
    pub source: Source,
}

/// What a loader skipped, dropped or patched up, for the user to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Data rows or image entries read (good and bad; blank lines are not rows).
    pub rows: usize,
    /// Bad rows or images skipped under [`LoadOptions::skip_bad`].
    pub skipped: usize,
    /// The one-line errors of the first skipped items (at most [`LoadReport::KEEP`]).
    pub first_skipped: Vec<String>,
    /// Line numbers of the first skipped rows (at most [`LoadReport::KEEP`]; CSV only).
    pub first_skipped_lines: Vec<usize>,
    /// Rows dropped by the dataset's own rules (FER+ `unknown` / `NF` majority, no image).
    pub dropped: usize,
    /// CK+ frames cropped around a detected face.
    pub faces_detected: usize,
    /// CK+ frames where no face was found and a centre crop was used instead.
    pub face_fallbacks: usize,
}

impl LoadReport {
    /// How many skipped items are remembered by message and line.
    pub const KEEP: usize = 10;

    pub(crate) fn skip(&mut self, error: &DataError) {
        self.skipped += 1;
        if self.first_skipped.len() < Self::KEEP {
            self.first_skipped.push(error.to_string());
        }
        if let DataError::Row { line, .. } = error
            && self.first_skipped_lines.len() < Self::KEEP
        {
            self.first_skipped_lines.push(*line);
        }
    }
}

/// A loaded dataset: samples, class names and named splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Short name, e.g. `fer2013`, `ckplus`, `synth`.
    pub name: String,
    /// Class names in the dataset's canonical order (labels index this).
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Split name -> sample indices, ascending. FER2013: `Training`, `PublicTest`,
    /// `PrivateTest`; folder layouts: `train`, `test`; CK+: none (use folds).
    pub splits: BTreeMap<String, Vec<usize>>,
    /// False for sets without labels (FER2013 `test.csv`); then every label is 0.
    pub labelled: bool,
    /// What the loader skipped, dropped or patched up.
    pub report: LoadReport,
}

impl Dataset {
    /// An empty labelled dataset with the given classes.
    pub fn new(name: impl Into<String>, classes: Vec<String>) -> Self {
        Self {
            name: name.into(),
            classes,
            samples: Vec::new(),
            splits: BTreeMap::new(),
            labelled: true,
            report: LoadReport::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The indices of a split, or an error listing the splits there are.
    pub fn split(&self, name: &str) -> Result<&[usize]> {
        self.splits.get(name).map(Vec::as_slice).ok_or_else(|| {
            let known: Vec<&str> = self.splits.keys().map(String::as_str).collect();
            DataError::spec(
                name,
                format!(
                    "`{}` has no split `{name}`, expected one of: {}",
                    self.name,
                    if known.is_empty() {
                        "(none; use folds)".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// Samples per class among `indices`.
    pub fn class_counts(&self, indices: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for index in indices {
            counts[self.samples[index].label] += 1;
        }
        counts
    }

    /// The distinct subjects, sorted.
    pub fn subjects(&self) -> BTreeSet<&str> {
        self.samples
            .iter()
            .filter_map(|s| s.subject.as_deref())
            .collect()
    }

    pub(crate) fn push(&mut self, split: Option<&str>, sample: Sample) {
        let index = self.samples.len();
        self.samples.push(sample);
        if let Some(split) = split {
            match self.splits.get_mut(split) {
                Some(indices) => indices.push(index),
                None => {
                    self.splits.insert(split.to_string(), vec![index]);
                }
            }
        }
    }
}

/// The dataset formats `load` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// FER2013: `fer2013.csv` / `icml_face_data.csv` / `train.csv` / `test.csv`, or the
    /// folder layout `train/`, `test/` with one folder per class.
    Fer2013,
    /// FER+: `fer2013new.csv` next to `fer2013.csv` (or a folder holding both).
    FerPlus,
    /// CK+ original layout: `cohn-kanade-images/` and `Emotion/`.
    CkPlus,
    /// CK+48: class folders of 48x48 crops named `Sxxx_nnn_000000kk.png`.
    Ck48,
    /// Any `root/class_name/*.{png,jpg}` tree.
    Folder,
    /// The built-in synthetic expression set.
    Synth,
}

impl DatasetKind {
    /// Every kind, in the order of [`DatasetKind::NAMES`].
    pub const ALL: [Self; 6] = [
        Self::Fer2013,
        Self::FerPlus,
        Self::CkPlus,
        Self::Ck48,
        Self::Folder,
        Self::Synth,
    ];
    /// The names `FromStr` accepts, as used on the command line.
    pub const NAMES: [&'static str; 6] =
        ["fer2013", "ferplus", "ckplus", "ck48", "folder", "synth"];

    pub fn name(self) -> &'static str {
        let position = Self::ALL
            .iter()
            .position(|&kind| kind == self)
            .expect("ALL lists every kind");
        Self::NAMES[position]
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .replace('+', "plus");
        let wanted = match wanted.as_str() {
            "fer" => "fer2013",
            "ck" => "ckplus",
            "ckplus48" => "ck48",
            "folders" | "imagefolder" => "folder",
            other => other,
        };
        Self::NAMES
            .iter()
            .position(|&name| name == wanted)
            .map(|position| Self::ALL[position])
            .ok_or_else(|| {
                DataError::spec(
                    s,
                    format!(
                        "unknown dataset, expected one of {}",
                        Self::NAMES.join(", ")
                    ),
                )
            })
    }
}

/// Options shared by the loaders; `Default` gives the paper's setup.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Side of the square images handed out (48, FER2013's native size; see
    /// [`preprocess::INPUT_SIZE`]).
    pub size: u32,
    /// Skip bad rows and unreadable images (counted in [`LoadReport`]) instead of failing.
    pub skip_bad: bool,
    /// Class order of a `folder` tree (its folder names); `None`: folder names sorted.
    pub classes: Option<Vec<String>>,
    /// CK+: add the first frame of each labelled sequence as `neutral` (8 classes).
    pub ckplus_neutral: bool,
    /// CK+: how many of the last frames of each sequence to take (3 in the usual protocol).
    pub ckplus_frames: usize,
    /// CK+: crop the face with the detector (otherwise always a centre crop).
    pub face_crop: bool,
    /// CK+: which detector finds the face and how its crop is framed.
    pub face: FaceConfig,
    /// FER+: the `fer2013.csv` holding the images; `None`: next to `fer2013new.csv`.
    pub ferplus_images: Option<PathBuf>,
    /// The synthetic set drawn for `synth` when no specification is given.
    pub synth: SynthConfig,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            size: preprocess::INPUT_SIZE,
            skip_bad: false,
            classes: None,
            ckplus_neutral: false,
            ckplus_frames: 3,
            face_crop: true,
            face: FaceConfig::default(),
            ferplus_images: None,
            synth: SynthConfig::default(),
        }
    }
}

/// Loads any dataset by kind.
///
/// `path` is the file or folder of the dataset. For `synth` it is optional and, when given,
/// is read as a specification `key=value,...` (keys `count`, `level`, `seed`, `subjects`,
/// `size`) overriding `opts.synth`, e.g. `count=3000,level=medium,seed=1`.
pub fn load(kind: DatasetKind, path: Option<&Path>, opts: &LoadOptions) -> Result<Dataset> {
    if kind == DatasetKind::Synth {
        let mut config = opts.synth.clone();
        config.size = opts.size;
        if let Some(spec) = path {
            config = config.with_spec(&spec.to_string_lossy())?;
        }
        return synth::generate(&config);
    }
    let path = path
        .ok_or_else(|| DataError::spec(kind.name(), "this dataset needs a path (`--data PATH`)"))?;
    match kind {
        DatasetKind::Fer2013 if path.is_dir() => image_folder::load_fer2013_folders(path, opts),
        DatasetKind::Fer2013 => fer2013::load_csv(path, opts),
        DatasetKind::FerPlus => ferplus::load(path, opts),
        DatasetKind::CkPlus => ckplus::load_original(path, opts),
        DatasetKind::Ck48 => ckplus::load_ck48(path, opts),
        DatasetKind::Folder => image_folder::load_tree(path, opts),
        DatasetKind::Synth => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names() {
        for (name, kind) in DatasetKind::NAMES.iter().zip(DatasetKind::ALL) {
            assert_eq!(name.parse::<DatasetKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), *name);
        }
        assert_eq!("FER+".parse::<DatasetKind>().unwrap(), DatasetKind::FerPlus);
        assert_eq!("CK+".parse::<DatasetKind>().unwrap(), DatasetKind::CkPlus);
        let err = "mnist".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(err.contains("mnist") && err.contains("fer2013"), "{err}");
    }
}
