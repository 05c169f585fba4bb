//! CK+ original layout: labelled sequences only, last frames (and optionally the first as
//! neutral), RGB frames, face crop with a centre-crop fallback that is counted.

mod common;

use common::{Sequence, write_ckplus};
use efea_data::{DataError, DatasetKind, LoadOptions, load};

fn sequences() -> Vec<Sequence> {
    let seq = |subject, sequence, frames, emotion, rgb, blank| Sequence {
        subject,
        sequence,
        frames,
        emotion,
        rgb,
        blank,
    };
    vec![
        seq("S005", "001", 5, Some("3.0000000e+00"), false, false),
        seq("S005", "002", 4, None, false, false), // no label: ignored
        seq("S010", "001", 4, Some("5.0000000e+00"), true, false),
        seq("S010", "004", 6, Some("7.0000000e+00"), false, true),
        seq("S011", "002", 4, Some("1.0000000e+00"), true, true),
    ]
}

#[test]
fn labelled_sequences_give_their_last_three_frames() {
    let dir = tempfile::tempdir().unwrap();
    // Nested one level, as some archives are.
    let root = dir.path().join("CK+");
    write_ckplus(&root, &sequences());
    let loaded = load(
        DatasetKind::CkPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.name, "ckplus");
    assert_eq!(loaded.classes, efea_data::classes::CKPLUS_CLASSES);
    assert_eq!(loaded.len(), 4 * 3);
    assert!(
        loaded
            .samples
            .iter()
            .all(|s| s.image.dimensions() == (48, 48))
    );
    let labels: Vec<usize> = loaded.samples.iter().map(|s| s.label).collect();
    // Codes 3 (disgust), 5 (happy), 7 (surprise), 1 (anger), minus one.
    assert_eq!(labels, [2, 2, 2, 4, 4, 4, 6, 6, 6, 0, 0, 0]);
    let subjects: Vec<&str> = loaded
        .samples
        .iter()
        .map(|s| s.subject.as_deref().unwrap())
        .collect();
    assert_eq!(subjects[..4], ["S005", "S005", "S005", "S010"]);
    let first = loaded.samples[0].source.to_string();
    assert!(first.ends_with("S005_001_00000003.png"), "{first}");

    // The six frames of the two sequences with a face are cropped around it; the six blank
    // ones have none and fall back to a centre crop.
    let report = &loaded.report;
    assert_eq!(
        (report.faces_detected, report.face_fallbacks),
        (6, 6),
        "{report:?}"
    );
    let blank = &loaded.samples[6].image;
    assert!(
        blank.as_raw().iter().all(|&p| p == 90),
        "a blank frame's centre crop is the background"
    );
}

#[test]
fn the_first_frame_can_be_neutral_and_face_crop_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    write_ckplus(dir.path(), &sequences());
    let opts = LoadOptions {
        ckplus_neutral: true,
        face_crop: false,
        ..LoadOptions::default()
    };
    let loaded = load(DatasetKind::CkPlus, Some(dir.path()), &opts).unwrap();
    assert_eq!(
        loaded.classes,
        efea_data::classes::CKPLUS_CLASSES_WITH_NEUTRAL
    );
    assert_eq!(loaded.len(), 4 * 4);
    assert_eq!(loaded.samples.iter().filter(|s| s.label == 0).count(), 4);
    assert_eq!(loaded.samples[1].label, 3, "disgust keeps its CK+ code");
    assert_eq!(loaded.report.face_fallbacks, 16);
    assert_eq!(loaded.report.faces_detected, 0);
}

#[test]
fn bad_labels_short_sequences_and_missing_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let seq = |emotion, frames| Sequence {
        subject: "S020",
        sequence: "003",
        frames,
        emotion,
        rgb: false,
        blank: true,
    };
    write_ckplus(dir.path(), &[seq(Some("9.0"), 4)]);
    let label = dir
        .path()
        .join("Emotion/S020/003/S020_003_00000004_emotion.txt");
    let message = load(
        DatasetKind::CkPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        format!(
            "{}: emotion `9.0`, expected one emotion code 1-7",
            label.display()
        )
    );

    std::fs::write(&label, "  \n").unwrap();
    let message = load(
        DatasetKind::CkPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.ends_with("empty emotion file, expected one emotion code 1-7"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_ckplus(dir.path(), &[seq(Some("2.0"), 2)]);
    let message = load(
        DatasetKind::CkPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("sequence has 2 frames, expected at least 3"),
        "{message}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = load(
        DatasetKind::CkPlus,
        Some(empty.path()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }));
    assert!(
        err.to_string().contains("no `cohn-kanade-images` folder"),
        "{err}"
    );
}

#[test]
fn an_unreadable_frame_fails_or_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let frames = write_ckplus(dir.path(), &sequences()[..1]);
    std::fs::write(&frames[4], b"garbage").unwrap();
    let message = load(
        DatasetKind::CkPlus,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with(&format!("{}: unreadable image", frames[4].display())),
        "{message}"
    );
    let opts = LoadOptions {
        skip_bad: true,
        ..LoadOptions::default()
    };
    let loaded = load(DatasetKind::CkPlus, Some(dir.path()), &opts).unwrap();
    assert_eq!((loaded.len(), loaded.report.skipped), (2, 1));
}
