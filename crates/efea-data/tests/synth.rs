//! The synthetic expression set: deterministic, balanced, subject-disjoint splits, and it
//! really learns: a linear classifier on pixels beats chance by far on `medium`, and `easy`
//! is easier than `hard`.

mod common;

use std::collections::BTreeSet;

use common::synth;
use efea_data::Dataset;
use efea_data::rng::Rng;
use efea_data::synth::{SynthConfig, SynthLevel, generate};

#[test]
fn same_seed_same_faces_whatever_the_thread_count() {
    let config = SynthConfig {
        seed: 42,
        ..SynthConfig::new(60)
    };
    let a = generate(&config).unwrap();
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = single.install(|| generate(&config)).unwrap();
    assert!(
        a.samples
            .iter()
            .zip(&b.samples)
            .all(|(x, y)| x.image == y.image && x.label == y.label && x.subject == y.subject)
    );
    assert_eq!(a.splits, b.splits);

    let other = generate(&SynthConfig {
        seed: 43,
        ..config.clone()
    })
    .unwrap();
    let same = a
        .samples
        .iter()
        .zip(&other.samples)
        .filter(|(x, y)| x.image == y.image)
        .count();
    assert_eq!(same, 0, "another seed draws other faces");
    // A single face can be redrawn alone.
    assert_eq!(efea_data::synth::render(&config, 17), a.samples[17].image);
}

#[test]
fn classes_are_balanced_and_splits_are_subject_disjoint() {
    let dataset = synth(1000, SynthLevel::Medium, 0);
    let counts = dataset.class_counts(0..dataset.len());
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    assert_eq!(dataset.classes, efea_data::classes::FER2013_CLASSES);
    assert_eq!(
        dataset.splits.keys().collect::<Vec<_>>(),
        ["PrivateTest", "PublicTest", "Training"]
    );

    let subjects_of = |split: &str| -> BTreeSet<&str> {
        dataset.splits[split]
            .iter()
            .map(|&i| dataset.samples[i].subject.as_deref().unwrap())
            .collect()
    };
    let (train, public, private) = (
        subjects_of("Training"),
        subjects_of("PublicTest"),
        subjects_of("PrivateTest"),
    );
    assert!(
        train.is_disjoint(&public) && train.is_disjoint(&private) && public.is_disjoint(&private)
    );
    let subjects = SynthConfig::default_subjects(1000);
    assert_eq!(train.len() + public.len() + private.len(), subjects);
    assert!(
        train.contains(format!("synth_{:04}", 0).as_str())
            || public.contains("synth_0000")
            || private.contains("synth_0000")
    );
    let share = dataset.splits["Training"].len() as f64 / 1000.0;
    assert!((0.75..=0.85).contains(&share), "{share}");
    // Every split has every class.
    for indices in dataset.splits.values() {
        assert!(
            dataset
                .class_counts(indices.iter().copied())
                .iter()
                .all(|&n| n > 0)
        );
    }
}

#[test]
fn levels_parse_and_bad_specs_are_explained() {
    assert_eq!("Hard".parse::<SynthLevel>().unwrap(), SynthLevel::Hard);
    let message = SynthConfig::default()
        .with_spec("count=10,level=extreme")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("level `extreme`, expected easy, medium or hard"),
        "{message}"
    );
    let message = SynthConfig::default()
        .with_spec("count")
        .unwrap_err()
        .to_string();
    assert!(message.contains("`count` is not key=value"), "{message}");
    let loaded = efea_data::load(
        efea_data::DatasetKind::Synth,
        Some(std::path::Path::new("count=21,level=easy,seed=3")),
        &efea_data::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.len(), 21);
    assert_eq!(
        loaded.samples[0].image,
        synth(21, SynthLevel::Easy, 3).samples[0].image
    );
}

/// Pixel features for a linear model: 24x24 average-pooled, each image standardised (so global
/// lighting and contrast do not help), plus a bias.
fn features(dataset: &Dataset, index: usize) -> Vec<f32> {
    let image = &dataset.samples[index].image;
    let mut f = Vec::with_capacity(24 * 24 + 1);
    for y in 0..24 {
        for x in 0..24 {
            let sum: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dx, dy)| image.get_pixel(2 * x + dx, 2 * y + dy).0[0] as u32)
                .sum();
            f.push(sum as f32 / 4.0);
        }
    }
    let mean = f.iter().sum::<f32>() / f.len() as f32;
    let std = (f.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / f.len() as f32)
        .sqrt()
        .max(1.0);
    f.iter_mut().for_each(|v| *v = (*v - mean) / std);
    f.push(1.0);
    f
}

/// Test accuracy (PublicTest + PrivateTest, unseen subjects) of a softmax regression trained by
/// SGD on Training.
fn linear_accuracy(dataset: &Dataset) -> f64 {
    let classes = dataset.num_classes();
    let train: Vec<usize> = dataset.splits["Training"].clone();
    let test: Vec<usize> = dataset.splits["PublicTest"]
        .iter()
        .chain(&dataset.splits["PrivateTest"])
        .copied()
        .collect();
    let train_x: Vec<Vec<f32>> = train.iter().map(|&i| features(dataset, i)).collect();
    let dim = train_x[0].len();
    let mut weights = vec![vec![0.0f32; dim]; classes];
    let mut rng = Rng::new(0);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let scores = |weights: &[Vec<f32>], x: &[f32]| -> Vec<f32> {
        weights
            .iter()
            .map(|w| w.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    for epoch in 0..12 {
        rng.shuffle(&mut order);
        let lr = 0.01 / (1.0 + epoch as f32 * 0.3);
        for &n in &order {
            let x = &train_x[n];
            let s = scores(&weights, x);
            let max = s.iter().cloned().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = s.iter().map(|v| (v - max).exp()).collect();
            let total: f32 = exp.iter().sum();
            let label = dataset.samples[train[n]].label;
            for (c, w) in weights.iter_mut().enumerate() {
                let grad = exp[c] / total - if c == label { 1.0 } else { 0.0 };
                for (wi, xi) in w.iter_mut().zip(x) {
                    *wi -= lr * (grad * xi + 1e-4 * *wi);
                }
            }
        }
    }
    let correct = test
        .iter()
        .filter(|&&i| {
            let s = scores(&weights, &features(dataset, i));
            let predicted = (0..classes).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
            predicted == dataset.samples[i].label
        })
        .count();
    correct as f64 / test.len() as f64
}

#[test]
fn a_linear_model_learns_medium_well_above_chance_and_easy_beats_hard() {
    let chance = 1.0 / 7.0;
    let medium = linear_accuracy(&synth(2100, SynthLevel::Medium, 1));
    let easy = linear_accuracy(&synth(2100, SynthLevel::Easy, 1));
    let hard = linear_accuracy(&synth(2100, SynthLevel::Hard, 1));
    eprintln!(
        "linear accuracy: easy {easy:.3}, medium {medium:.3}, hard {hard:.3} (chance {chance:.3})"
    );
    assert!(medium > 2.5 * chance, "medium {medium:.3}");
    assert!(easy > hard + 0.1, "easy {easy:.3} vs hard {hard:.3}");
    assert!(
        easy >= medium && medium >= hard,
        "easy {easy:.3} medium {medium:.3} hard {hard:.3}"
    );
}
