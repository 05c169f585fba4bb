//! FER2013 as CSV (Goodfellow et al., 2013; Kaggle "Challenges in Representation Learning:
//! Facial Expression Recognition Challenge"): `fer2013.csv` (`emotion,pixels,Usage`),
//! `icml_face_data.csv` (`emotion, Usage, pixels`), `train.csv` (`emotion,pixels`) and
//! `test.csv` (`pixels`). Columns are found by name, so order and spacing do not matter.
//!
//! The parser is hand-rolled for speed: the file is streamed in chunks and the rows of each
//! chunk are parsed in parallel; only the decoded pixels (2,304 bytes a row) stay in memory.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use image::GrayImage;
use rayon::prelude::*;

use crate::classes::{FER2013_CLASSES, FER2013_SIDE, owned};
use crate::csv;
use crate::error::{DataError, FileProblem, Result, RowProblem};
use crate::preprocess::resize_square;
use crate::{Dataset, LoadOptions, Sample, Source};

/// The header of the Kaggle file, for messages.
pub const FER2013_HEADER: &str = "emotion,pixels,Usage";
/// FER2013 `Usage` values, which are also the split names.
pub const USAGES: [&str; 3] = ["Training", "PublicTest", "PrivateTest"];
/// Split of `train.csv`, which has no `Usage` column (it is the Training part).
pub const TRAIN_ONLY_SPLIT: &str = "Training";
/// Split of `test.csv` (PublicTest and PrivateTest together, without labels).
pub const TEST_ONLY_SPLIT: &str = "Test";

const PIXELS: usize = (FER2013_SIDE * FER2013_SIDE) as usize;

/// Where the columns of one FER2013 CSV variant are.
#[derive(Debug, Clone)]
struct Columns {
    count: usize,
    emotion: Option<usize>,
    pixels: usize,
    usage: Option<usize>,
    /// The header as read, for "found N of M fields (...)" messages.
    names: String,
}

impl Columns {
    fn parse(path: &Path, line: &[u8]) -> Result<Self> {
        let names = csv::header_names(line);
        let find = |wanted: &str| {
            names
                .iter()
                .position(|name| name.eq_ignore_ascii_case(wanted))
        };
        let pixels = find("pixels").ok_or_else(|| {
            DataError::row(
                path,
                1,
                RowProblem::Header {
                    found: csv::shown(line, 60),
                    expected: FER2013_HEADER.into(),
                },
            )
        })?;
        Ok(Self {
            count: names.len(),
            emotion: find("emotion"),
            pixels,
            usage: find("usage"),
            names: names.join(","),
        })
    }
}

/// One parsed row.
struct Row {
    label: usize,
    usage: Option<usize>,
    image: GrayImage,
}

/// Loads a FER2013 CSV file (any of the four variants).
pub fn load_csv(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let mut dataset = Dataset::new("fer2013", owned(&FER2013_CLASSES));
    let file: Arc<Path> = Arc::from(path);
    let (columns, rows) = csv::read_lines(
        path,
        FER2013_HEADER,
        |header| Columns::parse(path, header),
        |columns, lines| {
            let rows: Vec<(usize, Result<Row, RowProblem>)> = lines
                .par_iter()
                .map_init(Vec::new, |fields, &(line, bytes)| {
                    (line, parse_row(bytes, columns, fields, opts.size))
                })
                .collect();
            for (line, row) in rows {
                match row {
                    Ok(row) => {
                        let split = match row.usage {
                            Some(usage) => USAGES[usage],
                            None if columns.emotion.is_some() => TRAIN_ONLY_SPLIT,
                            None => TEST_ONLY_SPLIT,
                        };
                        let sample = Sample {
                            image: row.image,
                            label: row.label,
                            soft_label: None,
                            subject: None,
                            source: Source::Line {
                                file: Arc::clone(&file),
                                line,
                            },
                        };
                        dataset.push(Some(split), sample);
                    }
                    Err(problem) => {
                        let error = DataError::row(path, line, problem);
                        if !opts.skip_bad {
                            return Err(error);
                        }
                        dataset.report.skip(&error);
                    }
                }
            }
            Ok(())
        },
    )?;
    dataset.report.rows = rows;
    dataset.labelled = columns.emotion.is_some();
    if dataset.samples.is_empty() {
        let first_line = dataset
            .report
            .first_skipped_lines
            .first()
            .copied()
            .unwrap_or(2);
        return Err(DataError::file(
            path,
            FileProblem::AllBad {
                rows: dataset.report.rows,
                first_line,
            },
        ));
    }
    Ok(dataset)
}

/// Parses one data row; `fields` is a reusable buffer.
fn parse_row(
    line: &[u8],
    columns: &Columns,
    fields: &mut Vec<Range<usize>>,
    size: u32,
) -> Result<Row, RowProblem> {
    csv::split_fields(line, fields).map_err(|problem| match problem {
        // A quote left open is what a row cut off in the middle of its pixels looks like.
        RowProblem::UnterminatedQuote => RowProblem::Truncated {
            found: fields.len() + 1,
            expected: columns.count,
            columns: columns.names.clone(),
        },
        other => other,
    })?;
    if fields.len() != columns.count {
        let problem = if fields.len() < columns.count {
            RowProblem::Truncated {
                found: fields.len(),
                expected: columns.count,
                columns: columns.names.clone(),
            }
        } else {
            RowProblem::ExtraFields {
                found: fields.len(),
                expected: columns.count,
                columns: columns.names.clone(),
            }
        };
        return Err(problem);
    }
    let label = match columns.emotion {
        Some(column) => parse_label(&line[fields[column].clone()])?,
        None => 0,
    };
    let mut pixels = Vec::with_capacity(PIXELS);
    parse_pixels(&line[fields[columns.pixels].clone()], &mut pixels)?;
    let usage = match columns.usage {
        Some(column) => Some(parse_usage(&line[fields[column].clone()])?),
        None => None,
    };
    let image = GrayImage::from_raw(FER2013_SIDE, FER2013_SIDE, pixels)
        .expect("parse_pixels checked the count");
    let image = if size == FER2013_SIDE {
        image
    } else {
        resize_square(&image, size)
    };
    Ok(Row {
        label,
        usage,
        image,
    })
}

fn parse_label(field: &[u8]) -> Result<usize, RowProblem> {
    let unknown = || RowProblem::UnknownLabel {
        found: csv::shown(field, 20),
        expected:
            "an integer 0-6 (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral)"
                .into(),
    };
    match field {
        [digit @ b'0'..=b'6'] => Ok((digit - b'0') as usize),
        _ => Err(unknown()),
    }
}

fn parse_usage(field: &[u8]) -> Result<usize, RowProblem> {
    USAGES
        .iter()
        .position(|usage| usage.as_bytes().eq_ignore_ascii_case(field))
        .ok_or_else(|| RowProblem::UnknownUsage {
            found: csv::shown(field, 30),
        })
}

/// Parses space-separated integers 0-255 into `out`; exactly [`PIXELS`] of them.
///
/// The hot loop of loading: one pass over the bytes, no bounds checks, no per-token branches
/// beyond the separator test (a row is 2,304 tokens of 1-3 digits).
fn parse_pixels(field: &[u8], out: &mut Vec<u8>) -> Result<(), RowProblem> {
    out.clear();
    out.resize(PIXELS, 0);
    let mut count = 0usize;
    let mut value = 0u32;
    let mut digits = 0usize;
    let mut bad = false;
    for (i, &byte) in field.iter().enumerate() {
        if byte == b' ' || byte == b'\t' {
            if digits > 0 {
                end_token(field, i, digits, value, bad, count, out)?;
                count += 1;
                (value, digits, bad) = (0, 0, false);
            }
            continue;
        }
        let digit = byte.wrapping_sub(b'0');
        bad |= digit > 9;
        value = value.wrapping_mul(10).wrapping_add(digit as u32);
        digits += 1;
    }
    if digits > 0 {
        end_token(field, field.len(), digits, value, bad, count, out)?;
        count += 1;
    }
    if count != PIXELS {
        return Err(RowProblem::PixelCount {
            found: count,
            expected: PIXELS,
        });
    }
    Ok(())
}

/// Checks and stores the token of `digits` bytes ending at `end`.
#[inline(always)]
fn end_token(
    field: &[u8],
    end: usize,
    digits: usize,
    value: u32,
    bad: bool,
    count: usize,
    out: &mut [u8],
) -> Result<(), RowProblem> {
    if bad || digits > 3 || value > 255 {
        let token = &field[end - digits..end];
        return Err(RowProblem::PixelValue {
            index: count + 1,
            value: csv::shown(token, 20),
        });
    }
    if let Some(slot) = out.get_mut(count) {
        *slot = value as u8;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_parse_and_report_the_first_bad_value() {
        let mut out = Vec::new();
        let row = vec!["7"; PIXELS].join(" ");
        parse_pixels(row.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), PIXELS);
        assert!(out.iter().all(|&p| p == 7));

        let short = vec!["7"; PIXELS - 1].join(" ");
        let err = parse_pixels(short.as_bytes(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            RowProblem::PixelCount {
                found: PIXELS - 1,
                expected: PIXELS
            }
        );

        let err = parse_pixels(b"1 2 256 3", &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            RowProblem::PixelValue {
                index: 3,
                value: "256".into()
            }
        );
        let err = parse_pixels(b"1 -2 3", &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            RowProblem::PixelValue {
                index: 2,
                value: "-2".into()
            }
        );
    }
}
