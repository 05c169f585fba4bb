//! FER+: majority labels and vote distributions from `fer2013new.csv`, aligned with the rows of
//! `fer2013.csv`; unknown / not-a-face rows dropped as the FER+ authors do.

mod common;

use common::{synth, write_rows};
use efea_data::synth::SynthLevel;
use efea_data::write::write_fer2013_csv;
use efea_data::{DatasetKind, LoadOptions, load};

const HEADER: &str =
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF";

/// FER2013 label -> FER+ column.
const FERPLUS_OF_FER: [usize; 7] = [4, 5, 6, 1, 3, 2, 0];

fn votes_row(usage: &str, name: &str, votes: [u32; 10]) -> String {
    let votes: Vec<String> = votes.iter().map(u32::to_string).collect();
    format!("{usage},{name},{}", votes.join(","))
}

#[test]
fn majority_and_soft_labels_with_dropped_rows() {
    let dir = tempfile::tempdir().unwrap();
    let faces = synth(14, SynthLevel::Easy, 2);
    write_fer2013_csv(&faces, &dir.path().join("fer2013.csv")).unwrap();
    let usage = common::usage_of(&faces);
    let mut rows = Vec::new();
    for (i, sample) in faces.samples.iter().enumerate() {
        let mut votes = [0u32; 10];
        match i {
            3 => votes[8] = 8,  // unknown majority: dropped
            5 => votes[9] = 10, // not a face: dropped
            _ => {
                votes[FERPLUS_OF_FER[sample.label]] = 7;
                votes[7] = 2; // contempt, kept
                votes[(FERPLUS_OF_FER[sample.label] + 1) % 7] += 1; // a single vote: noise
            }
        }
        let name = if i == 9 {
            String::new()
        } else {
            format!("fer{i:07}.png")
        };
        rows.push(votes_row(&usage[i], &name, votes));
    }
    write_rows(&dir.path().join("fer2013new.csv"), HEADER, &rows);

    let loaded = load(
        DatasetKind::FerPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.name, "ferplus");
    assert_eq!(loaded.classes, efea_data::classes::FERPLUS_CLASSES);
    assert_eq!(loaded.len(), 11);
    assert_eq!(loaded.report.dropped, 3);
    let kept: Vec<usize> = (0..14).filter(|i| ![3, 5, 9].contains(i)).collect();
    for (sample, &i) in loaded.samples.iter().zip(&kept) {
        let expected = FERPLUS_OF_FER[faces.samples[i].label];
        assert_eq!(sample.label, expected);
        assert_eq!(sample.image, faces.samples[i].image);
        let soft = sample.soft_label.as_ref().unwrap();
        assert!((soft[expected] - 7.0 / 9.0).abs() < 1e-6, "{soft:?}");
        assert!((soft[7] - 2.0 / 9.0).abs() < 1e-6);
        assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    assert!(
        loaded.samples[0]
            .source
            .to_string()
            .ends_with("fer2013new.csv:2")
    );

    // The path of the label file works as well as the folder.
    let by_file = load(
        DatasetKind::FerPlus,
        Some(&dir.path().join("fer2013new.csv")),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(by_file.len(), 11);
}

#[test]
fn misaligned_or_damaged_vote_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let faces = synth(7, SynthLevel::Easy, 2);
    write_fer2013_csv(&faces, &dir.path().join("fer2013.csv")).unwrap();
    let labels = dir.path().join("fer2013new.csv");
    let row = votes_row("Training", "fer0.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    write_rows(&labels, HEADER, &vec![row.clone(); 6]);
    let message = load(
        DatasetKind::FerPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with(&format!(
            "{}: has 6 rows, expected 7 rows aligned with",
            labels.display()
        )),
        "{message}"
    );

    let mut rows = vec![row.clone(); 7];
    rows[2] = "Training,fer2.png,1,2,x,0,0,0,0,0,0,0".into();
    write_rows(&labels, HEADER, &rows);
    let message = load(
        DatasetKind::FerPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        format!(
            "{}:4: bad vote count `x` in column `surprise`, expected a non-negative number",
            labels.display()
        )
    );

    std::fs::remove_file(dir.path().join("fer2013.csv")).unwrap();
    let message = load(
        DatasetKind::FerPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("expected `fer2013.csv`"), "{message}");
}

#[test]
fn a_header_with_an_extra_column_and_a_short_row_is_a_row_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let faces = synth(3, SynthLevel::Easy, 2);
    write_fer2013_csv(&faces, &dir.path().join("fer2013.csv")).unwrap();
    let labels = dir.path().join("fer2013new.csv");
    // A pandas index before the columns: `NF` is field 13 of a 13-field header.
    let header = format!(",{HEADER}");
    let full = |i: usize| format!("{i},{}", votes_row("Training", "fer.png", [10; 10]));
    // Twelve fields, as many as the FER+ columns but without this header's last, `NF`.
    let full_row = full(1);
    let short = full_row[..full_row.rfind(',').unwrap()].to_string();
    write_rows(&labels, &header, &[full(0), short, full(2)]);
    for skip_bad in [false, true] {
        let options = LoadOptions {
            skip_bad,
            ..LoadOptions::default()
        };
        let result =
            std::panic::catch_unwind(|| load(DatasetKind::FerPlus, Some(dir.path()), &options));
        let result = result.unwrap_or_else(|_| panic!("skip_bad {skip_bad}: the loader panicked"));
        if skip_bad {
            let loaded = result.unwrap();
            assert_eq!((loaded.len(), loaded.report.skipped), (2, 1));
            assert!(loaded.report.first_skipped[0].contains(":3: truncated row: found 12 of 13"));
        } else {
            let message = result.unwrap_err().to_string();
            assert_eq!(
                message,
                format!(
                    "{}:3: truncated row: found 12 of 13 fields ({HEADER})",
                    labels.display()
                )
            );
        }
    }
}
