//! Subject-independent folds: no subject in two folds, every sample in exactly one, classes
//! spread as evenly as subjects allow, the same folds for the same seed, and a clear error
//! when there are fewer subjects than folds.

mod common;

use std::collections::BTreeSet;

use common::{synth, write_ck48};
use efea_data::folds::{fold_split, fold_subjects, subject_folds};
use efea_data::synth::{SynthConfig, SynthLevel, generate};
use efea_data::{DataError, DatasetKind, LoadOptions, load, stats};

#[test]
fn folds_never_share_a_subject_and_cover_every_sample_once() {
    let dataset = synth(700, SynthLevel::Medium, 2);
    let folds = subject_folds(&dataset, 10, 7).unwrap();
    assert_eq!(folds.len(), 10);
    let subjects = fold_subjects(&dataset, &folds);
    for a in 0..10 {
        assert!(!folds[a].is_empty());
        for b in a + 1..10 {
            let (sa, sb): (BTreeSet<_>, BTreeSet<_>) =
                (subjects[a].iter().collect(), subjects[b].iter().collect());
            assert!(sa.is_disjoint(&sb), "folds {a} and {b} share a subject");
        }
    }
    let mut all: Vec<usize> = folds.concat();
    all.sort();
    assert_eq!(all, (0..dataset.len()).collect::<Vec<_>>());

    // Every subject shows every class here, so each fold's class mix matches the whole set's.
    for fold in &folds {
        let counts = dataset.class_counts(fold.iter().copied());
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 0 && max - min <= 2, "{counts:?}");
    }

    let (train, test) = fold_split(&folds, 3);
    assert_eq!(train.len() + test.len(), dataset.len());
    assert!(test.iter().all(|i| !train.contains(i)));
}

#[test]
fn folds_are_deterministic_under_a_seed() {
    let dataset = synth(700, SynthLevel::Medium, 2);
    assert_eq!(
        subject_folds(&dataset, 5, 1).unwrap(),
        subject_folds(&dataset, 5, 1).unwrap()
    );
    assert_ne!(
        subject_folds(&dataset, 5, 1).unwrap(),
        subject_folds(&dataset, 5, 2).unwrap()
    );
}

#[test]
fn uneven_subjects_still_stratify_as_far_as_they_allow() {
    // CK+-like: subjects show different subsets of classes.
    let mut dataset = synth(420, SynthLevel::Easy, 3);
    for (i, sample) in dataset.samples.iter_mut().enumerate() {
        let subject = i % 12;
        sample.subject = Some(format!("S{subject:03}"));
        sample.label = (subject + i / 12 % 3) % 7;
    }
    let folds = subject_folds(&dataset, 4, 0).unwrap();
    let totals = dataset.class_counts(0..dataset.len());
    // How many subjects show each class: at least one per fold lets every fold hold it.
    let shown_by: Vec<usize> = (0..7)
        .map(|class| {
            let subjects: BTreeSet<_> = dataset
                .samples
                .iter()
                .filter(|s| s.label == class)
                .map(|s| s.subject.clone())
                .collect();
            subjects.len()
        })
        .collect();
    assert!(
        shown_by.iter().filter(|&&n| n >= 4).count() >= 5,
        "the data must let most classes be in every fold: {shown_by:?}"
    );
    for fold in &folds {
        let counts = dataset.class_counts(fold.iter().copied());
        for (class, (&have, &subjects)) in counts.iter().zip(&shown_by).enumerate() {
            assert!(
                have > 0 || subjects < 4,
                "a fold has no sample of class {class}, which {subjects} subjects show: {counts:?}"
            );
        }
        for (have, total) in counts.iter().zip(&totals) {
            // Within a third of the total of a class away from an even share.
            let even = *total as f64 / 4.0;
            assert!(
                (*have as f64 - even).abs() <= *total as f64 / 3.0 + 1.0,
                "{counts:?} vs {totals:?}"
            );
        }
    }
}

#[test]
fn fewer_subjects_than_folds_is_a_clear_error() {
    let dataset = generate(&SynthConfig {
        subjects: 3,
        ..SynthConfig::new(42)
    })
    .unwrap();
    let err = subject_folds(&dataset, 5, 0).unwrap_err();
    assert!(matches!(err, DataError::Folds { .. }));
    assert_eq!(
        err.to_string(),
        "cannot make 5 subject-independent folds of `synth`: only 3 subjects, expected at least one subject per fold"
    );

    let mut no_subjects = dataset.clone();
    no_subjects.samples[4].subject = None;
    let message = subject_folds(&no_subjects, 2, 0).unwrap_err().to_string();
    assert!(
        message.contains("sample synth(seed=0)#4 has no subject"),
        "{message}"
    );
}

#[test]
fn ck48_folds_and_stats_list_subjects() {
    let dir = tempfile::tempdir().unwrap();
    write_ck48(dir.path(), 5);
    let dataset = load(DatasetKind::Ck48, Some(dir.path()), &LoadOptions::default()).unwrap();
    let stats = stats(&dataset, Some((5, 0))).unwrap();
    assert_eq!(stats.subjects, Some(5));
    let folds = stats.folds.unwrap();
    assert!(
        folds
            .iter()
            .all(|f| f.subjects.len() == 1 && f.samples == 21)
    );
    // Every subject shows every class three times, so every fold holds every class.
    for fold in subject_folds(&dataset, 5, 0).unwrap() {
        assert_eq!(dataset.class_counts(fold.iter().copied()), [3; 7]);
    }
    let json = serde_json::to_value(stats_of(&dataset)).unwrap();
    assert_eq!(json["classes"]["anger"], 15);
    assert!(json.get("folds").is_none());
}

fn stats_of(dataset: &efea_data::Dataset) -> efea_data::Stats {
    stats(dataset, None).unwrap()
}
