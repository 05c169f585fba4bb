//! FER2013 CSV: every variant loads, every kind of damage is a one-line error naming the file,
//! the 1-based line and the problem, and `skip_bad` skips rows instead.

mod common;

use common::{PIXELS, Variant, flat_pixels, synth, write_rows, write_variant};
use efea_data::synth::SynthLevel;
use efea_data::write::write_fer2013_csv;
use efea_data::{DataError, DatasetKind, LoadOptions, Source, load};

fn load_csv(path: &std::path::Path, skip_bad: bool) -> Result<efea_data::Dataset, DataError> {
    load(
        DatasetKind::Fer2013,
        Some(path),
        &LoadOptions {
            skip_bad,
            ..LoadOptions::default()
        },
    )
}

#[test]
fn every_variant_loads_the_same_pixels_labels_and_splits() {
    let original = synth(70, SynthLevel::Medium, 3);
    let dir = tempfile::tempdir().unwrap();
    for variant in [
        Variant::Kaggle,
        Variant::Icml,
        Variant::Quoted,
        Variant::Crlf,
        Variant::Train,
        Variant::Test,
    ] {
        let path = dir.path().join(format!("{variant:?}.csv"));
        write_variant(&original, &path, variant);
        let loaded = load_csv(&path, false).unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        assert_eq!(loaded.len(), original.len(), "{variant:?}");
        assert_eq!(
            loaded.classes,
            efea_data::classes::FER2013_CLASSES,
            "{variant:?}"
        );
        for (i, (a, b)) in loaded.samples.iter().zip(&original.samples).enumerate() {
            assert_eq!(a.image, b.image, "{variant:?} row {i}");
            if variant != Variant::Test {
                assert_eq!(a.label, b.label, "{variant:?} row {i}");
            }
            assert_eq!(
                a.source,
                Source::Line {
                    file: path.as_path().into(),
                    line: i + 2
                }
            );
        }
        match variant {
            Variant::Train => assert_eq!(loaded.splits.keys().collect::<Vec<_>>(), ["Training"]),
            Variant::Test => {
                assert!(!loaded.labelled);
                assert_eq!(loaded.splits.keys().collect::<Vec<_>>(), ["Test"]);
            }
            _ => {
                assert!(loaded.labelled);
                assert_eq!(loaded.splits, original.splits, "{variant:?}");
            }
        }
    }
}

#[test]
fn the_writer_round_trips_and_images_can_be_resized_on_load() {
    let original = synth(21, SynthLevel::Easy, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fer2013.csv");
    write_fer2013_csv(&original, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("emotion,pixels,Usage\n"));
    let loaded = load_csv(&path, false).unwrap();
    assert!(
        loaded
            .samples
            .iter()
            .zip(&original.samples)
            .all(|(a, b)| a.image == b.image && a.label == b.label)
    );

    let big = load(
        DatasetKind::Fer2013,
        Some(&path),
        &LoadOptions {
            size: 64,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(big.samples[0].image.dimensions(), (64, 64));
}

/// Writes `rows` under the Kaggle header and returns the load error's message.
fn error_of(rows: &[String]) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fer2013.csv");
    write_rows(&path, "emotion,pixels,Usage", rows);
    let err = load_csv(&path, false).expect_err("the file is damaged");
    assert!(err.is_skippable() || matches!(err, DataError::File { .. }));
    (err.to_string(), path, dir)
}

fn good_row() -> String {
    format!("3,{},Training", flat_pixels(100))
}

#[test]
fn wrong_pixel_count_names_file_line_and_counts() {
    let short = vec!["7"; PIXELS - 1].join(" ");
    let (message, path, _dir) = error_of(&[good_row(), format!("0,{short},Training"), good_row()]);
    assert_eq!(
        message,
        format!(
            "{}:3: expected 2304 pixel values, found 2303",
            path.display()
        )
    );
}

#[test]
fn pixel_out_of_range_names_the_value() {
    let mut values = vec!["7".to_string(); PIXELS];
    values[4] = "256".into();
    let (message, path, _dir) = error_of(&[format!("0,{},Training", values.join(" "))]);
    assert_eq!(
        message,
        format!(
            "{}:2: pixel 5 is `256`, expected an integer 0-255",
            path.display()
        )
    );

    values[4] = "x1".into();
    let (message, ..) = error_of(&[good_row(), format!("0,{},Training", values.join(" "))]);
    assert!(
        message.ends_with(":3: pixel 5 is `x1`, expected an integer 0-255"),
        "{message}"
    );
}

#[test]
fn unknown_label_lists_the_classes() {
    let (message, path, _dir) = error_of(&[
        good_row(),
        good_row(),
        format!("7,{},Training", flat_pixels(1)),
    ]);
    assert!(
        message.starts_with(&format!(
            "{}:4: unknown label `7`, expected an integer 0-6",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains("6 Neutral"), "{message}");
    let (message, ..) = error_of(&[format!("happy,{},Training", flat_pixels(1))]);
    assert!(message.contains(":2: unknown label `happy`"), "{message}");
}

#[test]
fn unknown_usage_names_the_value() {
    let (message, path, _dir) = error_of(&[good_row(), format!("1,{},Validation", flat_pixels(1))]);
    assert_eq!(
        message,
        format!(
            "{}:3: unknown Usage `Validation`, expected Training, PublicTest or PrivateTest",
            path.display()
        )
    );
}

#[test]
fn truncated_rows_say_so() {
    // A file cut off in the middle of its last row.
    let partial: String = flat_pixels(9).chars().take(1000).collect();
    let (message, path, _dir) = error_of(&[good_row(), format!("2,{partial}")]);
    assert_eq!(
        message,
        format!(
            "{}:3: truncated row: found 2 of 3 fields (emotion,pixels,Usage)",
            path.display()
        )
    );
    // The same inside a quoted field.
    let (message, ..) = error_of(&[good_row(), format!("2,\"{partial}")]);
    assert!(message.contains(":3: truncated row"), "{message}");
}

#[test]
fn empty_and_header_only_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let message = load_csv(&empty, false).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}: file is empty, expected a header line `emotion,pixels,Usage`",
            empty.display()
        )
    );
    std::fs::write(&empty, "\n\n  \n").unwrap();
    assert!(
        load_csv(&empty, true)
            .unwrap_err()
            .to_string()
            .contains("file is empty")
    );

    let header_only = dir.path().join("header.csv");
    std::fs::write(&header_only, "emotion,pixels,Usage\r\n\r\n").unwrap();
    let message = load_csv(&header_only, true).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}: file has a header and no rows, expected at least one row after line 1",
            header_only.display()
        )
    );
}

#[test]
fn a_missing_or_wrong_header_is_line_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noheader.csv");
    std::fs::write(&path, format!("0,{},Training\n", flat_pixels(3))).unwrap();
    let message = load_csv(&path, false).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:1: bad header `0,", path.display())),
        "{message}"
    );
    assert!(
        message.ends_with("expected columns emotion,pixels,Usage"),
        "{message}"
    );

    let missing = dir.path().join("missing.csv");
    let message = load_csv(&missing, false).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read:", missing.display())),
        "{message}"
    );
}

#[test]
fn messages_are_one_line() {
    let (message, ..) = error_of(&[format!("0,{},Validation\r", flat_pixels(1))]);
    assert!(
        message
            .ends_with("unknown Usage `Validation`, expected Training, PublicTest or PrivateTest"),
        "{message:?}"
    );
    assert!(!message.contains(['\n', '\r']), "{message:?}");
}

#[test]
fn skip_bad_skips_rows_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fer2013.csv");
    let rows = vec![
        good_row(),                                    // line 2
        format!("9,{},Training", flat_pixels(1)),      // line 3: label
        good_row(),                                    // line 4
        String::new(),                                 // line 5: blank, not a row
        format!("0,1 2 3,PublicTest"),                 // line 6: pixel count
        format!("4,{},PrivateTest", flat_pixels(200)), // line 7
        "5".to_string(),                               // line 8: truncated
    ];
    write_rows(&path, "emotion,pixels,Usage", &rows);
    let err = load_csv(&path, false).unwrap_err().to_string();
    assert!(err.contains(":3: unknown label"), "{err}");

    let dataset = load_csv(&path, true).unwrap();
    assert_eq!(dataset.len(), 3);
    assert_eq!(dataset.report.rows, 6);
    assert_eq!(dataset.report.skipped, 3);
    assert_eq!(dataset.report.first_skipped_lines, [3, 6, 8]);
    assert!(dataset.report.first_skipped[1].contains(":6: expected 2304 pixel values, found 3"));
    let lines: Vec<usize> = dataset
        .samples
        .iter()
        .map(|s| match s.source {
            Source::Line { line, .. } => line,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(lines, [2, 4, 7]);
    assert_eq!(dataset.splits["PrivateTest"], [2]);

    // Nothing good at all is still an error.
    write_rows(&path, "emotion,pixels,Usage", &rows[1..2]);
    let message = load_csv(&path, true).unwrap_err().to_string();
    assert!(
        message.contains("all 1 rows are bad (first: line 2)"),
        "{message}"
    );
}
