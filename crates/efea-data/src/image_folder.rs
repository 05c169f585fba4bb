//! Folder layouts: the FER2013 image version (`train/`, `test/`, one folder per class, mapped
//! to FER2013's label order by name) and any `root/class_name/*.{png,jpg}` tree.

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};
use rayon::prelude::*;

use crate::classes::{FER2013_CLASSES, FER2013_FOLDER_NAMES, fer2013_label_of_folder, owned};
use crate::decode::{DEFAULT_MAX_PIXELS, decode};
use crate::error::{DataError, Result};
use crate::preprocess::{resize_square, to_gray};
use crate::{Dataset, LoadOptions, Sample, Source};

pub use crate::decode::IMAGE_EXTENSIONS;

/// Decodes an image file at its own size, upright (EXIF orientation applied), as inference
/// decodes it.
pub fn read_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode(&bytes, DEFAULT_MAX_PIXELS).map_err(|e| DataError::image(path, e))
}

/// Decodes an image file to grayscale (RGB is converted) at its own size.
pub fn read_gray(path: &Path) -> Result<GrayImage> {
    Ok(to_gray(&read_image(path)?))
}

/// Decodes an image file to a `size x size` grayscale square (centre crop, then resize).
pub fn read_square(path: &Path, size: u32) -> Result<GrayImage> {
    Ok(resize_square(&read_gray(path)?, size))
}

/// Sub-directories of `dir`, sorted by name.
pub(crate) fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if path.is_dir() && !is_hidden(&path) {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Image files directly in `dir` (by extension), sorted by name.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if path.is_file() && !is_hidden(&path) && is_image(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn is_hidden(path: &Path) -> bool {
    file_name(path).starts_with('.')
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One image to load: its file, label and split; the subject is derived by the caller.
pub(crate) struct Entry {
    pub path: PathBuf,
    pub label: usize,
    pub split: Option<String>,
    pub subject: Option<String>,
}

/// Decodes `entries` in parallel into `dataset`, in order; bad images fail the load or, under
/// `skip_bad`, are counted in the report.
pub(crate) fn load_entries(
    dataset: &mut Dataset,
    root: &Path,
    entries: Vec<Entry>,
    opts: &LoadOptions,
) -> Result<()> {
    let images: Vec<Result<GrayImage>> = entries
        .par_iter()
        .map(|entry| read_square(&entry.path, opts.size))
        .collect();
    dataset.report.rows += entries.len();
    for (entry, image) in entries.into_iter().zip(images) {
        match image {
            Ok(image) => {
                let sample = Sample {
                    image,
                    label: entry.label,
                    soft_label: None,
                    subject: entry.subject,
                    source: Source::Entry { path: entry.path },
                };
                dataset.push(entry.split.as_deref(), sample);
            }
            Err(error) if opts.skip_bad && error.is_skippable() => dataset.report.skip(&error),
            Err(error) => return Err(error),
        }
    }
    if dataset.samples.is_empty()
        && let Some(first) = dataset.report.first_skipped.first()
    {
        return Err(DataError::layout(
            root,
            format!(
                "all {} images are unreadable (first: {first}), expected PNG or JPEG files",
                dataset.report.skipped
            ),
        ));
    }
    Ok(())
}

/// Error for a tree that yielded no image at all.
pub(crate) fn no_images(root: &Path, layout: &str) -> DataError {
    DataError::layout(root, format!("no images found, expected {layout}"))
}

/// FER2013 folder layout: `root/{train,test}/{angry,...,neutral}/*.png`, or a single split
/// folder `root/{angry,...}/*.png` (then the split is named after `root`).
pub fn load_fer2013_folders(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let expected = FER2013_FOLDER_NAMES.map(|(name, _)| name).join(" ");
    let layout = format!("split folders (train/, test/) holding class folders {expected}");
    let children = sub_dirs(root)?;
    let direct = children
        .iter()
        .any(|dir| fer2013_label_of_folder(&file_name(dir)).is_some());
    let splits: Vec<(String, PathBuf)> = if direct {
        vec![(file_name(root), root.to_path_buf())]
    } else {
        children
            .into_iter()
            .map(|dir| (file_name(&dir), dir))
            .collect()
    };
    if splits.is_empty() {
        return Err(DataError::layout(
            root,
            format!("no folders found, expected {layout}"),
        ));
    }
    let mut entries = Vec::new();
    for (split, dir) in &splits {
        for class_dir in sub_dirs(dir)? {
            let name = file_name(&class_dir);
            let label = fer2013_label_of_folder(&name).ok_or_else(|| {
                DataError::layout(
                    &class_dir,
                    format!("unknown class folder `{name}`, expected one of {expected}"),
                )
            })?;
            for path in image_files(&class_dir)? {
                entries.push(Entry {
                    path,
                    label,
                    split: Some(split.clone()),
                    subject: None,
                });
            }
        }
    }
    if entries.is_empty() {
        return Err(no_images(root, &layout));
    }
    let mut dataset = Dataset::new("fer2013", owned(&FER2013_CLASSES));
    load_entries(&mut dataset, root, entries, opts)?;
    Ok(dataset)
}

/// Any `root/class_name/*.{png,jpg}` tree. Classes are `opts.classes` in that order (every
/// folder must be one of them), or the folder names sorted when none are given.
pub fn load_tree(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let class_dirs = sub_dirs(root)?;
    let classes: Vec<String> = match &opts.classes {
        Some(classes) => classes.clone(),
        None => class_dirs.iter().map(|dir| file_name(dir)).collect(),
    };
    if classes.is_empty() {
        return Err(DataError::layout(
            root,
            "no class folders found, expected root/class_name/*.png",
        ));
    }
    let name = file_name(root);
    load_class_dirs(root, &name, classes, &class_dirs, |_| None, opts)
}

/// Loads class folders `class_dirs` of `root`, each named after one of `classes`
/// (case-insensitive); `subject_of(file_name)` gives each image's subject.
pub(crate) fn load_class_dirs(
    root: &Path,
    name: &str,
    classes: Vec<String>,
    class_dirs: &[PathBuf],
    subject_of: impl Fn(&str) -> Option<String>,
    opts: &LoadOptions,
) -> Result<Dataset> {
    let mut entries = Vec::new();
    for class_dir in class_dirs {
        let folder = file_name(class_dir);
        let label = classes
            .iter()
            .position(|class| class.eq_ignore_ascii_case(&folder))
            .ok_or_else(|| {
                DataError::layout(
                    class_dir,
                    format!(
                        "unknown class folder `{folder}`, expected one of {}",
                        classes.join(" ")
                    ),
                )
            })?;
        for path in image_files(class_dir)? {
            let subject = subject_of(&file_name(&path));
            entries.push(Entry {
                path,
                label,
                split: None,
                subject,
            });
        }
    }
    if entries.is_empty() {
        return Err(no_images(
            root,
            &format!("class folders {} holding images", classes.join(" ")),
        ));
    }
    let mut dataset = Dataset::new(name, classes);
    load_entries(&mut dataset, root, entries, opts)?;
    Ok(dataset)
}
