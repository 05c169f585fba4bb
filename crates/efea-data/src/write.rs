//! Writers for the FER2013 CSV and folder layouts, so every loader path can run on the
//! synthetic set (and a user can export it).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::GrayImage;
use rayon::prelude::*;

use crate::Dataset;
use crate::classes::{FER2013_CLASSES, FER2013_FOLDER_NAMES, FER2013_SIDE};
use crate::error::{DataError, Result};
use crate::fer2013::{FER2013_HEADER, USAGES};
use crate::preprocess::resize_square;

fn write_error(path: &Path, error: impl std::fmt::Display) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        error: error.to_string(),
    }
}

/// The split name of every sample (`None` when in no split).
fn split_of_samples(dataset: &Dataset) -> Vec<Option<&str>> {
    let mut split = vec![None; dataset.len()];
    for (name, indices) in &dataset.splits {
        for &i in indices {
            split[i] = Some(name.as_str());
        }
    }
    split
}

/// The FER2013 `Usage` of a split name (folder layouts' `train`/`test` map to
/// Training/PublicTest; samples in no split are Training).
fn usage_of(split: Option<&str>) -> &'static str {
    match split.map(str::to_ascii_lowercase).as_deref() {
        Some("publictest") | Some("test") | Some("val") | Some("valid") => USAGES[1],
        Some("privatetest") => USAGES[2],
        _ => USAGES[0],
    }
}

/// Writes `dataset` as a Kaggle `fer2013.csv` (`emotion,pixels,Usage`, 48x48 pixels per row).
/// Labels are written as they are: the dataset should use the FER2013 classes.
pub fn write_fer2013_csv(dataset: &Dataset, path: &Path) -> Result<()> {
    let file = File::create(path).map_err(|e| write_error(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "{FER2013_HEADER}").map_err(|e| write_error(path, e))?;
    let splits = split_of_samples(dataset);
    // Format rows in parallel, a block at a time, and write them in order.
    for block in (0..dataset.len()).collect::<Vec<_>>().chunks(2048) {
        let rows: Vec<Vec<u8>> = block
            .par_iter()
            .map(|&i| {
                let sample = &dataset.samples[i];
                let resized;
                let image = if sample.image.dimensions() == (FER2013_SIDE, FER2013_SIDE) {
                    &sample.image
                } else {
                    resized = resize_square(&sample.image, FER2013_SIDE);
                    &resized
                };
                format_row(sample.label, image, usage_of(splits[i]))
            })
            .collect();
        for row in rows {
            out.write_all(&row).map_err(|e| write_error(path, e))?;
        }
    }
    out.flush().map_err(|e| write_error(path, e))
}

fn format_row(label: usize, image: &GrayImage, usage: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(image.as_raw().len() * 4 + 16);
    row.extend_from_slice(label.to_string().as_bytes());
    row.push(b',');
    for (i, &p) in image.as_raw().iter().enumerate() {
        if i > 0 {
            row.push(b' ');
        }
        if p >= 100 {
            row.push(b'0' + p / 100);
        }
        if p >= 10 {
            row.push(b'0' + (p / 10) % 10);
        }
        row.push(b'0' + p % 10);
    }
    row.push(b',');
    row.extend_from_slice(usage.as_bytes());
    row.push(b'\n');
    row
}

/// Writes `dataset` in the FER2013 folder layout: `root/train/<class>/...png` for Training and
/// `root/test/<class>/...png` for the test splits, class folders named as in the Kaggle image
/// version (`angry disgust fear happy neutral sad surprise`) when the classes are FER2013's,
/// else the class names in lower case. Returns the files written.
pub fn write_folders(dataset: &Dataset, root: &Path) -> Result<Vec<PathBuf>> {
    let fer_classes = dataset
        .classes
        .iter()
        .map(String::as_str)
        .eq(FER2013_CLASSES.iter().copied());
    let class_folder = |label: usize| -> String {
        if fer_classes {
            FER2013_FOLDER_NAMES
                .iter()
                .find(|(_, l)| *l == label)
                .expect("every FER2013 label has a folder")
                .0
                .to_string()
        } else {
            dataset.classes[label].to_ascii_lowercase()
        }
    };
    let splits = split_of_samples(dataset);
    let paths: Vec<PathBuf> = (0..dataset.len())
        .map(|i| {
            let usage = usage_of(splits[i]);
            let split_dir = if usage == USAGES[0] { "train" } else { "test" };
            root.join(split_dir)
                .join(class_folder(dataset.samples[i].label))
                .join(format!("{usage}_{i:05}.png"))
        })
        .collect();
    let mut dirs: Vec<&Path> = paths.iter().filter_map(|p| p.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    }
    paths
        .par_iter()
        .zip(dataset.samples.par_iter())
        .try_for_each(|(path, sample)| sample.image.save(path).map_err(|e| write_error(path, e)))?;
    Ok(paths)
}
