//! Fixture writers shared by the integration tests: every file is generated into a temporary
//! folder from the synthetic set, in the real formats, so nothing binary is committed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use efea_data::synth::{SynthConfig, SynthLevel, generate};
use efea_data::{Dataset, GrayImage};

pub const PIXELS: usize = 48 * 48;

/// A small synthetic set.
pub fn synth(count: usize, level: SynthLevel, seed: u64) -> Dataset {
    generate(&SynthConfig {
        level,
        seed,
        ..SynthConfig::new(count)
    })
    .expect("valid config")
}

/// Space-separated pixels of a 48x48 image.
pub fn pixel_field(image: &GrayImage) -> String {
    image
        .as_raw()
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A valid pixel field of one gray level.
pub fn flat_pixels(level: u8) -> String {
    vec![level.to_string(); PIXELS].join(" ")
}

/// The split (FER2013 Usage) of each sample.
pub fn usage_of(dataset: &Dataset) -> Vec<String> {
    let mut usage = vec![String::new(); dataset.len()];
    for (name, indices) in &dataset.splits {
        for &i in indices {
            usage[i] = name.clone();
        }
    }
    usage
}

/// The FER2013 CSV variants found in the wild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Kaggle `fer2013.csv`: `emotion,pixels,Usage`.
    Kaggle,
    /// `icml_face_data.csv`: `emotion, Usage, pixels` (spaces after the commas).
    Icml,
    /// Every field quoted, as spreadsheet programs write it.
    Quoted,
    /// Windows line endings.
    Crlf,
    /// Kaggle challenge `train.csv`: `emotion,pixels`, pixels quoted.
    Train,
    /// Kaggle challenge `test.csv`: `pixels` only.
    Test,
}

/// Writes `dataset` (48x48) as a FER2013 CSV variant.
pub fn write_variant(dataset: &Dataset, path: &Path, variant: Variant) {
    let usage = usage_of(dataset);
    let mut lines = vec![match variant {
        Variant::Kaggle | Variant::Crlf => "emotion,pixels,Usage".to_string(),
        Variant::Icml => "emotion, Usage, pixels".to_string(),
        Variant::Quoted => "\"emotion\",\"pixels\",\"Usage\"".to_string(),
        Variant::Train => "emotion,pixels".to_string(),
        Variant::Test => "pixels".to_string(),
    }];
    for (sample, usage) in dataset.samples.iter().zip(&usage) {
        let pixels = pixel_field(&sample.image);
        let label = sample.label;
        lines.push(match variant {
            Variant::Kaggle | Variant::Crlf => format!("{label},{pixels},{usage}"),
            Variant::Icml => format!("{label},{usage},{pixels}"),
            Variant::Quoted => format!("\"{label}\",\"{pixels}\",\"{usage}\""),
            Variant::Train => format!("{label},\"{pixels}\""),
            Variant::Test => format!("\"{pixels}\""),
        });
    }
    let ending = if variant == Variant::Crlf {
        "\r\n"
    } else {
        "\n"
    };
    std::fs::write(path, lines.join(ending) + ending).expect("temp dir is writable");
}

/// Writes a CSV from a header and raw rows (for damaged files).
pub fn write_rows(path: &Path, header: &str, rows: &[String]) {
    let mut text = String::from(header);
    text.push('\n');
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(path, text).expect("temp dir is writable");
}

/// A CK+ sequence to generate: subject, sequence, frame count, emotion code (None: no label
/// file), whether frames are RGB, whether frames are blank (no face to find).
pub struct Sequence {
    pub subject: &'static str,
    pub sequence: &'static str,
    pub frames: usize,
    pub emotion: Option<&'static str>,
    pub rgb: bool,
    pub blank: bool,
}

/// Writes a CK+ original tree under `root`: 640x490 PNG frames with a synthetic face in the
/// middle, and `Emotion/` label files.
pub fn write_ckplus(root: &Path, sequences: &[Sequence]) -> Vec<PathBuf> {
    let faces = synth(14, SynthLevel::Easy, 5);
    let mut written = Vec::new();
    for (s, seq) in sequences.iter().enumerate() {
        let frame_dir = root
            .join("cohn-kanade-images")
            .join(seq.subject)
            .join(seq.sequence);
        std::fs::create_dir_all(&frame_dir).unwrap();
        let face = image::imageops::resize(
            &faces.samples[s % faces.len()].image,
            260,
            260,
            image::imageops::FilterType::Triangle,
        );
        for k in 0..seq.frames {
            let mut frame = GrayImage::from_pixel(640, 490, image::Luma([90]));
            if !seq.blank {
                image::imageops::replace(&mut frame, &face, 190, 100);
            }
            let path = frame_dir.join(format!("{}_{}_{:08}.png", seq.subject, seq.sequence, k + 1));
            if seq.rgb {
                image::DynamicImage::ImageLuma8(frame)
                    .to_rgb8()
                    .save(&path)
                    .unwrap();
            } else {
                frame.save(&path).unwrap();
            }
            written.push(path);
        }
        let label_dir = root.join("Emotion").join(seq.subject).join(seq.sequence);
        std::fs::create_dir_all(&label_dir).unwrap();
        if let Some(code) = seq.emotion {
            let name = format!(
                "{}_{}_{:08}_emotion.txt",
                seq.subject, seq.sequence, seq.frames
            );
            std::fs::write(label_dir.join(name), format!("   {code}\n")).unwrap();
        }
    }
    written
}

/// Writes a CK+48 tree: `root/<class>/Sxxx_nnn_000000kk.png` for `subjects` subjects, each with
/// one sequence of 3 frames per class.
pub fn write_ck48(root: &Path, subjects: usize) {
    let classes = efea_data::classes::CKPLUS_CLASSES;
    let faces = synth(7 * subjects, SynthLevel::Easy, 9);
    for (c, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for s in 0..subjects {
            for frame in 0..3 {
                let image = &faces.samples[(s * 7 + c) % faces.len()].image;
                image
                    .save(dir.join(format!("S{:03}_{:03}_{:08}.png", 10 + s, c + 1, 14 + frame)))
                    .unwrap();
            }
        }
    }
}
