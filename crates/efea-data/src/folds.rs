//! Subject-independent k-fold cross-validation (the CK+ protocol: no person in two folds),
//! stratified by class as far as whole subjects allow, deterministic under a seed.

use std::collections::BTreeMap;

use crate::Dataset;
use crate::error::{DataError, Result};
use crate::rng::Rng;

/// Stream of the fold assignment under the seed.
const STREAM_FOLDS: u64 = 0x464F_4C44;

/// Splits every sample of `dataset` into `k` folds (lists of sample indices, ascending) such
/// that each subject's samples all land in one fold, and each fold's class mix is as close to
/// the whole set's as whole subjects allow.
///
/// Subjects are visited largest first (ties in a seeded random order); each goes to the fold
/// where it most reduces the squared gap between the fold's class counts and `1/k` of the
/// totals, the emptiest fold first, so the folds also come out of similar size. Before that
/// gap comes coverage: a subject showing a class that has no more subjects left than folds
/// lacking it goes to a fold lacking it, so that a class shown by at least `k` subjects is in
/// every fold wherever the other classes allow it (the squared gap alone can put two of a
/// rare class's subjects in one fold and leave another fold without the class).
pub fn subject_folds(dataset: &Dataset, k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    let error = |problem: String| DataError::Folds {
        dataset: dataset.name.clone(),
        folds: k,
        problem,
    };
    if k < 2 {
        return Err(error("expected at least 2 folds".into()));
    }
    let mut by_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, sample) in dataset.samples.iter().enumerate() {
        let subject = sample.subject.as_deref().ok_or_else(|| {
            error(format!(
                "sample {} has no subject, expected every sample to name its subject",
                sample.source
            ))
        })?;
        by_subject.entry(subject).or_default().push(index);
    }
    if by_subject.len() < k {
        return Err(error(format!(
            "only {} subjects, expected at least one subject per fold",
            by_subject.len()
        )));
    }

    let classes = dataset.num_classes();
    let mut subjects: Vec<(&str, Vec<usize>)> = by_subject.into_iter().collect();
    Rng::for_item(seed, STREAM_FOLDS, k as u64).shuffle(&mut subjects);
    // Stable: equal sizes keep their seeded order.
    subjects.sort_by_key(|(_, samples)| std::cmp::Reverse(samples.len()));

    let totals = dataset.class_counts(0..dataset.len());
    let target: Vec<f64> = totals.iter().map(|&t| t as f64 / k as f64).collect();
    let mut fold_counts = vec![vec![0usize; classes]; k];
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut subjects_in = vec![0usize; k];
    let remaining_subjects = subjects.len();
    let class_counts_of = |samples: &[usize]| {
        let mut counts = vec![0usize; classes];
        for &index in samples {
            counts[dataset.samples[index].label] += 1;
        }
        counts
    };
    // Subjects not yet placed that show each class.
    let mut subjects_left = vec![0usize; classes];
    for (_, samples) in &subjects {
        for (left, &n) in subjects_left.iter_mut().zip(&class_counts_of(samples)) {
            *left += usize::from(n > 0);
        }
    }
    for (visited, (_, samples)) in subjects.into_iter().enumerate() {
        let counts = class_counts_of(&samples);
        // Classes of this subject that every remaining subject showing them must bring to a
        // fold still lacking them.
        let urgent: Vec<usize> = (0..classes)
            .filter(|&c| {
                let lacking = fold_counts.iter().filter(|f| f[c] == 0).count();
                counts[c] > 0 && subjects_left[c] <= lacking
            })
            .collect();
        let wasted = |fold: usize| urgent.iter().filter(|&&c| fold_counts[fold][c] > 0).count();
        let empty_folds = subjects_in.iter().filter(|&&n| n == 0).count();
        let must_fill = remaining_subjects - visited <= empty_folds;
        let best = (0..k)
            .filter(|&fold| !must_fill || subjects_in[fold] == 0)
            .min_by(|&a, &b| {
                let cost = |fold: usize| -> f64 {
                    fold_counts[fold]
                        .iter()
                        .zip(&counts)
                        .zip(&target)
                        .map(|((&have, &add), &want)| {
                            let after = (have + add) as f64 - want;
                            let before = have as f64 - want;
                            after * after - before * before
                        })
                        .sum()
                };
                wasted(a)
                    .cmp(&wasted(b))
                    .then(cost(a).total_cmp(&cost(b)))
                    .then(folds[a].len().cmp(&folds[b].len()))
                    .then(a.cmp(&b))
            })
            .expect("k >= 2 folds to choose from");
        for (have, add) in fold_counts[best].iter_mut().zip(&counts) {
            *have += add;
        }
        for (left, &n) in subjects_left.iter_mut().zip(&counts) {
            *left -= usize::from(n > 0);
        }
        folds[best].extend(samples);
        subjects_in[best] += 1;
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    Ok(folds)
}

/// The subjects of each fold, sorted.
pub fn fold_subjects(dataset: &Dataset, folds: &[Vec<usize>]) -> Vec<Vec<String>> {
    folds
        .iter()
        .map(|fold| {
            let mut subjects: Vec<String> = fold
                .iter()
                .filter_map(|&i| dataset.samples[i].subject.clone())
                .collect();
            subjects.sort();
            subjects.dedup();
            subjects
        })
        .collect()
}

/// Training and test indices for fold `fold`: the test part is that fold, the rest trains.
pub fn fold_split(folds: &[Vec<usize>], fold: usize) -> (Vec<usize>, Vec<usize>) {
    let mut train: Vec<usize> = folds
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != fold)
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    train.sort_unstable();
    (train, folds[fold].clone())
}
