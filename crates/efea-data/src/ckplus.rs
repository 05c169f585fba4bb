//! CK+ (Lucey et al., 2010, "The Extended Cohn-Kanade Dataset (CK+)"), in its original layout
//! and as the CK+48 crops.
//!
//! Original: `cohn-kanade-images/Sxxx/nnn/Sxxx_nnn_000000kk.png` (640x490, some RGB) and
//! `Emotion/Sxxx/nnn/Sxxx_nnn_000000kk_emotion.txt` holding one float code (see
//! [`CKPLUS_CLASSES_WITH_NEUTRAL`]). Only sequences with an emotion file count; the usual
//! protocol takes their last three frames (981 images from 327 sequences, 7 classes), and
//! optionally the first frame as neutral (8 classes). Faces are cropped with the detector, or
//! a centre crop where it finds none (counted in [`crate::LoadReport::face_fallbacks`]).

use std::path::{Path, PathBuf};

use image::GrayImage;
use rayon::prelude::*;

use crate::classes::{CKPLUS_CLASSES, CKPLUS_CLASSES_WITH_NEUTRAL, owned};
use crate::error::{DataError, FileProblem, Result};
use efea_face::{Detector, Frame as Crop};

use crate::image_folder::{file_name, image_files, load_class_dirs, read_image, sub_dirs};
use crate::preprocess::to_gray;
use crate::{Dataset, LoadOptions, Sample, Source};

/// Folder of the frames in the CK+ distribution.
pub const IMAGES_DIR: &str = "cohn-kanade-images";
/// Folder of the emotion labels in the CK+ distribution.
pub const EMOTION_DIR: &str = "Emotion";
/// Side of the centre crop used when no face is found, as a fraction of the frame's height:
/// CK+ faces fill about the middle 60 % of a 490-pixel-high frame.
pub const FALLBACK_CROP: f32 = 0.65;

/// One frame to load.
struct Frame {
    path: PathBuf,
    label: usize,
    subject: String,
}

/// CK+ original layout under `root` (or one or two folder levels below it).
pub fn load_original(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let layout = format!("`{IMAGES_DIR}/` and `{EMOTION_DIR}/` folders (CK+ original layout)");
    let images_dir = find_dir(root, IMAGES_DIR, 2)?.ok_or_else(|| {
        DataError::layout(root, format!("no `{IMAGES_DIR}` folder, expected {layout}"))
    })?;
    let emotion_dir = find_dir(root, EMOTION_DIR, 2)?.ok_or_else(|| {
        DataError::layout(
            root,
            format!("no `{EMOTION_DIR}` folder, expected {layout}"),
        )
    })?;

    let classes = if opts.ckplus_neutral {
        owned(&CKPLUS_CLASSES_WITH_NEUTRAL)
    } else {
        owned(&CKPLUS_CLASSES)
    };
    let mut frames = Vec::new();
    for subject_dir in sub_dirs(&emotion_dir)? {
        let subject = file_name(&subject_dir);
        for sequence_dir in sub_dirs(&subject_dir)? {
            let Some(label_file) = emotion_file(&sequence_dir)? else {
                continue;
            };
            let code = read_emotion(&label_file)?;
            let sequence = file_name(&sequence_dir);
            let frame_dir = images_dir.join(&subject).join(&sequence);
            let sequence_frames = if frame_dir.is_dir() {
                image_files(&frame_dir)?
            } else {
                Vec::new()
            };
            let needed = opts.ckplus_frames.max(1) + usize::from(opts.ckplus_neutral);
            if sequence_frames.len() < needed {
                return Err(DataError::layout(
                    &frame_dir,
                    format!(
                        "sequence has {} frames, expected at least {needed} for {}",
                        sequence_frames.len(),
                        label_file.display()
                    ),
                ));
            }
            let label = if opts.ckplus_neutral { code } else { code - 1 };
            if opts.ckplus_neutral {
                frames.push(Frame {
                    path: sequence_frames[0].clone(),
                    label: 0,
                    subject: subject.clone(),
                });
            }
            for path in &sequence_frames[sequence_frames.len() - opts.ckplus_frames.max(1)..] {
                frames.push(Frame {
                    path: path.clone(),
                    label,
                    subject: subject.clone(),
                });
            }
        }
    }
    if frames.is_empty() {
        return Err(DataError::layout(
            &emotion_dir,
            "no `*_emotion.txt` files, expected Sxxx/nnn/*_emotion.txt",
        ));
    }

    let framing = opts.face.framing();
    framing
        .check()
        .map_err(|message| DataError::spec("face framing", message))?;
    let detector = opts
        .face_crop
        .then(|| Detector::new(opts.face.detector, CKPLUS_MIN_FACE));
    let crops: Vec<Result<(GrayImage, bool)>> = frames
        .par_iter()
        .map(|frame| {
            let image = read_image(&frame.path)?;
            let face = detector
                .as_ref()
                .and_then(|detector| detector.largest_face(&image));
            let gray = to_gray(&image);
            Ok(match face {
                Some(face) => (framing.frame(&face).cut(&gray, opts.size), true),
                None => {
                    let (width, height) = gray.dimensions();
                    let fallback = Crop::centred(width, height, FALLBACK_CROP);
                    (fallback.cut(&gray, opts.size), false)
                }
            })
        })
        .collect();

    let mut dataset = Dataset::new("ckplus", classes);
    dataset.report.rows = frames.len();
    for (frame, crop) in frames.into_iter().zip(crops) {
        match crop {
            Ok((image, detected)) => {
                if detected {
                    dataset.report.faces_detected += 1;
                } else {
                    dataset.report.face_fallbacks += 1;
                }
                let sample = Sample {
                    image,
                    label: frame.label,
                    soft_label: None,
                    subject: Some(frame.subject),
                    source: Source::Entry { path: frame.path },
                };
                dataset.push(None, sample);
            }
            Err(error) if opts.skip_bad && error.is_skippable() => dataset.report.skip(&error),
            Err(error) => return Err(error),
        }
    }
    if dataset.samples.is_empty() {
        return Err(DataError::layout(
            root,
            "every frame was unreadable, expected PNG frames",
        ));
    }
    Ok(dataset)
}

/// CK+ faces are large (about 250 pixels in a 640x490 frame): skipping small faces makes
/// detection several times faster without losing any.
const CKPLUS_MIN_FACE: u32 = 80;

/// The `*_emotion.txt` of a sequence folder, if it has one.
fn emotion_file(sequence_dir: &Path) -> Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sequence_dir).map_err(|e| DataError::io(sequence_dir, e))? {
        let path = entry.map_err(|e| DataError::io(sequence_dir, e))?.path();
        if file_name(&path).ends_with("_emotion.txt") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found.into_iter().next())
}

/// The emotion code 1-7 of a CK+ label file (a float such as `   3.0000000e+00`).
fn read_emotion(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(DataError::file(path, FileProblem::EmptyEmotion));
    }
    let bad = || {
        DataError::file(
            path,
            FileProblem::Emotion {
                found: crate::csv::shown(text.as_bytes(), 30),
            },
        )
    };
    let value: f64 = text.parse().map_err(|_| bad())?;
    if value.fract() != 0.0 || !(1.0..=7.0).contains(&value) {
        return Err(bad());
    }
    Ok(value as usize)
}

/// A folder called `name` at `root` or up to `depth` levels below it (the CK+ archives nest
/// their folders differently), searched breadth-first in name order.
fn find_dir(root: &Path, name: &str, depth: usize) -> Result<Option<PathBuf>> {
    if !root.is_dir() {
        return Err(DataError::layout(
            root,
            "not a folder, expected the CK+ root folder",
        ));
    }
    let mut level = vec![root.to_path_buf()];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for dir in &level {
            for child in sub_dirs(dir)? {
                if file_name(&child) == name {
                    return Ok(Some(child));
                }
                next.push(child);
            }
        }
        level = next;
    }
    Ok(None)
}

/// The subject of a CK+ file name `Sxxx_nnn_000000kk.png`, e.g. `S010`.
pub fn subject_of_file_name(name: &str) -> Option<String> {
    let subject = name.split('_').next()?;
    let valid = subject.len() > 1
        && subject.starts_with(['S', 's'])
        && subject[1..].bytes().all(|b| b.is_ascii_digit());
    valid.then(|| subject.to_ascii_uppercase())
}

/// CK+48: class folders `anger contempt disgust fear happy sadness surprise` of 48x48 crops
/// named `Sxxx_nnn_000000kk.png`; the subject comes from the name.
pub fn load_ck48(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let class_dirs = sub_dirs(root)?;
    let mut dataset = load_class_dirs(
        root,
        "ck48",
        owned(&CKPLUS_CLASSES),
        &class_dirs,
        subject_of_file_name,
        opts,
    )?;
    dataset.name = "ck48".into();
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_come_from_ck_file_names() {
        assert_eq!(
            subject_of_file_name("S010_004_00000017.png").as_deref(),
            Some("S010")
        );
        assert_eq!(subject_of_file_name("s5_1_2.png").as_deref(), Some("S5"));
        assert_eq!(subject_of_file_name("face_001.png"), None);
    }
}
