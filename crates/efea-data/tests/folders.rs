//! Folder layouts: FER2013 image folders map by name (not alphabetically), generic class trees
//! follow the given class order, CK+48 takes subjects from file names, bad images are errors.

mod common;

use common::{synth, write_ck48};
use efea_data::synth::SynthLevel;
use efea_data::write::write_folders;
use efea_data::{DataError, DatasetKind, GrayImage, LoadOptions, load};

fn solid(level: u8) -> GrayImage {
    GrayImage::from_pixel(48, 48, image::Luma([level]))
}

#[test]
fn fer2013_folders_round_trip_through_the_writer() {
    let original = synth(70, SynthLevel::Medium, 4);
    let dir = tempfile::tempdir().unwrap();
    let files = write_folders(&original, dir.path()).unwrap();
    assert_eq!(files.len(), 70);
    assert!(dir.path().join("train/neutral").is_dir() && dir.path().join("test/angry").is_dir());

    let loaded = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.len(), 70);
    assert_eq!(
        loaded.class_counts(0..loaded.len()),
        original.class_counts(0..original.len())
    );
    let train = original.splits["Training"].len();
    assert_eq!(loaded.splits["train"].len(), train);
    assert_eq!(loaded.splits["test"].len(), 70 - train);
    // Same image under the same label, whatever the folder order.
    for sample in &loaded.samples {
        assert!(
            original
                .samples
                .iter()
                .any(|o| o.image == sample.image && o.label == sample.label)
        );
    }
}

#[test]
fn fer2013_folder_names_map_by_name_not_alphabetical_index() {
    let dir = tempfile::tempdir().unwrap();
    // Alphabetically: angry disgust fear happy neutral(4) sad(5) surprise(6).
    for (folder, level) in [
        ("neutral", 10u8),
        ("sad", 20),
        ("surprise", 30),
        ("angry", 40),
    ] {
        let class_dir = dir.path().join("train").join(folder);
        std::fs::create_dir_all(&class_dir).unwrap();
        solid(level).save(class_dir.join("a.png")).unwrap();
    }
    let loaded = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    let label_of = |level: u8| {
        loaded
            .samples
            .iter()
            .find(|s| s.image.as_raw()[0] == level)
            .unwrap()
            .label
    };
    assert_eq!(label_of(10), 6, "neutral is FER2013 label 6");
    assert_eq!(label_of(20), 4, "sad is FER2013 label 4");
    assert_eq!(label_of(30), 5, "surprise is FER2013 label 5");
    assert_eq!(label_of(40), 0);
    assert_eq!(loaded.classes[6], "Neutral");

    // Pointing at one split folder works too; the split is named after it.
    let train_only = load(
        DatasetKind::Fer2013,
        Some(&dir.path().join("train")),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(train_only.splits["train"].len(), 4);
}

#[test]
fn unknown_class_folders_and_unreadable_images_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let class_dir = dir.path().join("train").join("contempt");
    std::fs::create_dir_all(&class_dir).unwrap();
    solid(1).save(class_dir.join("a.png")).unwrap();
    let message = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        format!(
            "{}: unknown class folder `contempt`, expected one of angry disgust fear happy sad surprise neutral",
            class_dir.display()
        )
    );

    std::fs::remove_dir_all(&class_dir).unwrap();
    let happy = dir.path().join("train").join("happy");
    std::fs::create_dir_all(&happy).unwrap();
    solid(5).save(happy.join("good.png")).unwrap();
    std::fs::write(happy.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Image { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: unreadable image: ",
            happy.join("broken.png").display()
        )),
        "{message}"
    );
    assert!(!message.contains('\n'));

    let skipped = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions {
            skip_bad: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped.report.skipped, 1);
    assert!(skipped.report.first_skipped[0].contains("broken.png: unreadable image"));
}

#[test]
fn an_empty_tree_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train/happy")).unwrap();
    let message = load(
        DatasetKind::Fer2013,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("no images found, expected split folders"),
        "{message}"
    );
}

#[test]
fn generic_trees_follow_the_configured_class_order() {
    let dir = tempfile::tempdir().unwrap();
    for (folder, level) in [("zebra", 10u8), ("apple", 100), ("mango", 200)] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        solid(level)
            .save(dir.path().join(folder).join("x.jpg"))
            .unwrap();
        // Non-image files are ignored.
        std::fs::write(dir.path().join(folder).join("notes.txt"), "hi").unwrap();
    }
    let opts = LoadOptions {
        classes: Some(vec!["zebra".into(), "mango".into(), "apple".into()]),
        ..LoadOptions::default()
    };
    let loaded = load(DatasetKind::Folder, Some(dir.path()), &opts).unwrap();
    assert_eq!(loaded.classes, ["zebra", "mango", "apple"]);
    // JPEG is lossy: tell the images apart by rounded level.
    let label_of = |level: u8| {
        loaded
            .samples
            .iter()
            .find(|s| s.image.as_raw()[0].abs_diff(level) <= 2)
            .unwrap()
            .label
    };
    assert_eq!((label_of(10), label_of(200), label_of(100)), (0, 1, 2));

    let sorted = load(
        DatasetKind::Folder,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(sorted.classes, ["apple", "mango", "zebra"]);

    let opts = LoadOptions {
        classes: Some(vec!["zebra".into(), "apple".into()]),
        ..LoadOptions::default()
    };
    let message = load(DatasetKind::Folder, Some(dir.path()), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unknown class folder `mango`, expected one of zebra apple"),
        "{message}"
    );
}

#[test]
fn ck48_takes_subjects_from_file_names() {
    let dir = tempfile::tempdir().unwrap();
    write_ck48(dir.path(), 4);
    let loaded = load(DatasetKind::Ck48, Some(dir.path()), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.name, "ck48");
    assert_eq!(loaded.classes, efea_data::classes::CKPLUS_CLASSES);
    assert_eq!(loaded.len(), 4 * 7 * 3);
    assert_eq!(
        loaded.subjects().into_iter().collect::<Vec<_>>(),
        ["S010", "S011", "S012", "S013"]
    );
    assert!(loaded.splits.is_empty());
    assert_eq!(loaded.class_counts(0..loaded.len()), vec![12; 7]);
}
