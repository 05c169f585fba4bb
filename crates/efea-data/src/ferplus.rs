//! FER+ (Barsoum et al., 2016): ten crowd-sourced votes per FER2013 image in
//! `fer2013new.csv` (`Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
//! contempt,unknown,NF`), row for row aligned with `fer2013.csv`, which holds the pixels.
//!
//! As in the FER+ authors' `ferplus.py`: single votes are treated as noise and removed, the
//! label is the emotion with most votes (first in column order on a tie), and rows whose
//! majority is `unknown` or `NF` (not a face), or that have no image name, are dropped (counted
//! in [`crate::LoadReport::dropped`]). The soft label is the remaining vote distribution.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::classes::{FERPLUS_CLASSES, FERPLUS_REJECT_COLUMNS, owned};
use crate::csv;
use crate::error::{DataError, FileProblem, Result, RowProblem};
use crate::fer2013::{self, USAGES};
use crate::{Dataset, LoadOptions, Source};

/// The FER+ label file name.
pub const FERPLUS_FILE: &str = "fer2013new.csv";
/// The FER2013 file whose rows the FER+ rows label.
pub const FER2013_FILE: &str = "fer2013.csv";
/// The header of `fer2013new.csv`, for messages.
pub const FERPLUS_HEADER: &str =
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF";

/// One FER+ row.
struct Votes {
    line: usize,
    usage: usize,
    has_image: bool,
    /// Votes for the 8 emotions, then `unknown` and `NF`.
    counts: [f32; 10],
}

/// Loads FER+ from a folder holding `fer2013new.csv` and `fer2013.csv`, or from the path of
/// `fer2013new.csv` (with `fer2013.csv` beside it or given in `opts.ferplus_images`).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (labels_path, images_path) = locate(path, opts)?;
    let votes = read_votes(&labels_path, opts)?;
    let mut images = fer2013::load_csv(&images_path, opts)?;

    // Pair by line number: both files have one header line, then one row per image.
    let fer_rows = images.report.rows;
    let ferplus_rows = votes.report.rows;
    if fer_rows != ferplus_rows {
        return Err(DataError::file(
            &labels_path,
            FileProblem::RowCount {
                found: ferplus_rows,
                expected: fer_rows,
                other: images_path.display().to_string(),
            },
        ));
    }
    let mut by_line: HashMap<usize, usize> = HashMap::with_capacity(images.samples.len());
    for (index, sample) in images.samples.iter().enumerate() {
        if let Source::Line { line, .. } = sample.source {
            by_line.insert(line, index);
        }
    }

    let mut dataset = Dataset::new("ferplus", owned(&FERPLUS_CLASSES));
    dataset.report = images.report.clone();
    dataset.report.skipped += votes.report.skipped;
    dataset
        .report
        .first_skipped
        .extend(votes.report.first_skipped);
    dataset
        .report
        .first_skipped_lines
        .extend(votes.report.first_skipped_lines);
    let labels_file: Arc<Path> = Arc::from(labels_path.as_path());
    let mut taken = vec![false; images.samples.len()];
    for row in votes.rows {
        let Some(&index) = by_line.get(&row.line) else {
            continue;
        };
        let Some((label, soft)) = majority(&row) else {
            dataset.report.dropped += 1;
            continue;
        };
        if taken[index] {
            continue;
        }
        taken[index] = true;
        let mut sample = images.samples[index].clone();
        sample.label = label;
        sample.soft_label = Some(soft);
        sample.source = Source::Line {
            file: Arc::clone(&labels_file),
            line: row.line,
        };
        dataset.push(Some(USAGES[row.usage]), sample);
    }
    images.samples.clear();
    if dataset.samples.is_empty() {
        return Err(DataError::file(
            &labels_path,
            FileProblem::AllBad {
                rows: ferplus_rows,
                first_line: 2,
            },
        ));
    }
    Ok(dataset)
}

/// The label and vote distribution of a row, or `None` when FER+ drops it.
fn majority(row: &Votes) -> Option<(usize, Vec<f32>)> {
    if !row.has_image {
        return None;
    }
    // One vote out of ten is treated as annotator noise (ferplus.py, `_process_data`).
    let cleaned: Vec<f32> = row
        .counts
        .iter()
        .map(|&c| if c <= 1.0 { 0.0 } else { c })
        .collect();
    let mut best = 0;
    for (column, &count) in cleaned.iter().enumerate() {
        if count > cleaned[best] {
            best = column;
        }
    }
    if cleaned[best] <= 0.0 || best >= FERPLUS_CLASSES.len() {
        return None;
    }
    let emotions = &cleaned[..FERPLUS_CLASSES.len()];
    let total: f32 = emotions.iter().sum();
    Some((best, emotions.iter().map(|c| c / total).collect()))
}

struct VoteFile {
    rows: Vec<Votes>,
    report: crate::LoadReport,
}

fn read_votes(path: &Path, opts: &LoadOptions) -> Result<VoteFile> {
    let mut rows = Vec::new();
    let mut report = crate::LoadReport::default();
    let (_, total) = csv::read_lines(
        path,
        FERPLUS_HEADER,
        |header| {
            let names = csv::header_names(header);
            let find = |wanted: &str| {
                names
                    .iter()
                    .position(|name| name.eq_ignore_ascii_case(wanted))
            };
            let vote_columns: Option<Vec<usize>> = FERPLUS_CLASSES
                .iter()
                .chain(FERPLUS_REJECT_COLUMNS.iter())
                .map(|c| find(c))
                .collect();
            match (find("usage"), find("image name"), vote_columns) {
                (Some(usage), Some(image), Some(votes)) => Ok((usage, image, votes)),
                _ => Err(DataError::row(
                    path,
                    1,
                    RowProblem::Header {
                        found: csv::shown(header, 60),
                        expected: FERPLUS_HEADER.into(),
                    },
                )),
            }
        },
        |(usage_column, image_column, vote_columns), lines| {
            // The header may hold more columns than FER+'s (a pandas index, notes): a row
            // must reach the last one that is read.
            let width = vote_columns
                .iter()
                .chain([usage_column, image_column])
                .max()
                .map_or(0, |&last| last + 1);
            let mut fields: Vec<Range<usize>> = Vec::new();
            for &(line, bytes) in lines {
                let parsed = parse_votes(
                    bytes,
                    line,
                    *usage_column,
                    *image_column,
                    vote_columns,
                    width,
                    &mut fields,
                );
                match parsed {
                    Ok(votes) => rows.push(votes),
                    Err(problem) => {
                        let error = DataError::row(path, line, problem);
                        if !opts.skip_bad {
                            return Err(error);
                        }
                        report.skip(&error);
                    }
                }
            }
            Ok(())
        },
    )?;
    report.rows = total;
    Ok(VoteFile { rows, report })
}

fn parse_votes(
    bytes: &[u8],
    line: usize,
    usage_column: usize,
    image_column: usize,
    vote_columns: &[usize],
    width: usize,
    fields: &mut Vec<Range<usize>>,
) -> Result<Votes, RowProblem> {
    csv::split_fields(bytes, fields)?;
    if fields.len() < width {
        return Err(RowProblem::Truncated {
            found: fields.len(),
            expected: width,
            columns: FERPLUS_HEADER.into(),
        });
    }
    let usage_field = &bytes[fields[usage_column].clone()];
    let usage = USAGES
        .iter()
        .position(|usage| usage.as_bytes().eq_ignore_ascii_case(usage_field))
        .ok_or_else(|| RowProblem::UnknownUsage {
            found: csv::shown(usage_field, 30),
        })?;
    let has_image = !bytes[fields[image_column].clone()].is_empty();
    let mut counts = [0.0f32; 10];
    let names = FERPLUS_CLASSES.iter().chain(FERPLUS_REJECT_COLUMNS.iter());
    for ((slot, &column), name) in counts.iter_mut().zip(vote_columns).zip(names) {
        let field = &bytes[fields[column].clone()];
        let value: f32 = std::str::from_utf8(field)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(-1.0);
        if !(value >= 0.0 && value.is_finite()) {
            return Err(RowProblem::Votes {
                column: name.to_string(),
                found: csv::shown(field, 20),
            });
        }
        *slot = value;
    }
    Ok(Votes {
        line,
        usage,
        has_image,
        counts,
    })
}

fn locate(path: &Path, opts: &LoadOptions) -> Result<(PathBuf, PathBuf)> {
    let (labels, dir) = if path.is_dir() {
        (path.join(FERPLUS_FILE), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        )
    };
    if !labels.is_file() {
        return Err(DataError::layout(
            path,
            format!("no `{FERPLUS_FILE}`, expected the FER+ label file"),
        ));
    }
    let images = opts
        .ferplus_images
        .clone()
        .unwrap_or_else(|| dir.join(FER2013_FILE));
    if !images.is_file() {
        return Err(DataError::layout(
            &images,
            format!(
                "not found, expected `{FER2013_FILE}` (whose rows {FERPLUS_FILE} labels) next to it"
            ),
        ));
    }
    Ok((labels, images))
}
