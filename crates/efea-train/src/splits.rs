//! Which samples train, which choose the best epoch, and which are reported: the protocol of
//! a run, decided before training and never changed by it.
//!
//! FER2013 (the paper's protocol): train on `Training`; select on a stratified, seeded 10 % of
//! `Training` (or on `PublicTest`); report every other split. A split used for selection is
//! never reported.

use std::collections::BTreeMap;

use efea_data::rng::Rng;
use efea_data::{Dataset, LoadOptions};
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, SELECT_HOLDOUT, TrainingConfig};
use crate::error::{Result, TrainError};

/// Names a training split may have, in order of preference (FER2013, then folder layouts).
pub const TRAIN_SPLIT_NAMES: [&str; 2] = ["Training", "train"];
/// Reported splits come in this order, then any others.
const REPORT_ORDER: [&str; 2] = ["PublicTest", "PrivateTest"];
/// Name of the held-out selection part in reports and logs.
pub const HOLDOUT_NAME: &str = "holdout";

// Random streams under the run's seed (distinct from efea-data's own streams).
const STREAM_HOLDOUT: u64 = 0x484F_4C44;
const STREAM_SUBSET: u64 = 0x5355_4253;

/// The sample indices of each role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub train: Vec<usize>,
    /// Chooses the best epoch (and drives plateau schedules and early stopping).
    pub select: Vec<usize>,
    pub select_name: String,
    /// Reported at the end with the best checkpoint, in order.
    pub reports: Vec<(String, Vec<usize>)>,
}

/// Loads the dataset a config names, at the network's input size.
pub fn load_dataset(config: &TrainingConfig) -> Result<Dataset> {
    let kind = config.data.kind()?;
    let mut options = LoadOptions {
        size: config.model.input_size as u32,
        skip_bad: config.data.skip_bad,
        ckplus_neutral: config.data.ckplus_neutral,
        face: config.face,
        ..LoadOptions::default()
    };
    if let Some(synth) = config.synth()? {
        options.synth = synth;
    }
    let dataset = match kind {
        // The spec is already in `options.synth`.
        efea_data::DatasetKind::Synth => efea_data::load(kind, None, &options)?,
        _ => efea_data::load(kind, config.data.path.as_deref(), &options)?,
    };
    if !dataset.labelled {
        return Err(TrainError::config(format!(
            "`{}` has no labels (a test file without the emotion column): it cannot train or be scored",
            dataset.name
        )));
    }
    if dataset.is_empty() {
        return Err(TrainError::config(format!(
            "`{}` has no samples",
            dataset.name
        )));
    }
    Ok(dataset)
}

/// The protocol of [`DataConfig`] applied to `dataset`.
pub fn plan(dataset: &Dataset, data: &DataConfig, seed: u64) -> Result<SplitPlan> {
    let train_name = match &data.train_split {
        Some(name) => name.clone(),
        None => TRAIN_SPLIT_NAMES
            .iter()
            .find(|name| dataset.splits.contains_key(**name))
            .map(|name| name.to_string())
            .ok_or_else(|| {
                TrainError::config(format!(
                    "`{}` has no training split ({}); for CK+ use `efea cv`, or name one with train_split",
                    dataset.name,
                    TRAIN_SPLIT_NAMES.join(" or ")
                ))
            })?,
    };
    let all_train = dataset.split(&train_name)?.to_vec();
    let (train, select, select_name) = if data.select_on == SELECT_HOLDOUT {
        let (rest, held) = stratified_holdout(dataset, &all_train, data.holdout_fraction, seed);
        (rest, held, HOLDOUT_NAME.to_string())
    } else {
        if data.select_on == train_name {
            return Err(TrainError::config(format!(
                "cannot select on `{}`: it is the training split",
                data.select_on
            )));
        }
        (
            all_train,
            dataset.split(&data.select_on)?.to_vec(),
            data.select_on.clone(),
        )
    };
    let train = match data.max_train_samples {
        Some(n) if n < train.len() => stratified_subset(dataset, &train, n, seed),
        _ => train,
    };
    let mut reports: Vec<(String, Vec<usize>)> = dataset
        .splits
        .iter()
        .filter(|(name, _)| **name != train_name && **name != select_name)
        .map(|(name, indices)| (name.clone(), indices.clone()))
        .collect();
    // FER2013's order (the paper reports PublicTest, then PrivateTest); others alphabetical.
    reports.sort_by_key(|(name, _)| {
        REPORT_ORDER
            .iter()
            .position(|n| n == name)
            .unwrap_or(REPORT_ORDER.len())
    });
    check_plan(dataset, &train, &select, &select_name)?;
    Ok(SplitPlan {
        train,
        select,
        select_name,
        reports,
    })
}

/// A plan for one cross-validation fold: train on the other folds less a stratified holdout
/// that selects the epoch; report the fold.
pub fn fold_plan(
    dataset: &Dataset,
    folds: &[Vec<usize>],
    fold: usize,
    holdout: f64,
    seed: u64,
) -> Result<SplitPlan> {
    let (train, test) = efea_data::folds::fold_split(folds, fold);
    let (train, select) = stratified_holdout(dataset, &train, holdout, seed);
    check_plan(dataset, &train, &select, HOLDOUT_NAME)?;
    Ok(SplitPlan {
        train,
        select,
        select_name: HOLDOUT_NAME.into(),
        reports: vec![(format!("fold {}", fold + 1), test)],
    })
}

fn check_plan(
    dataset: &Dataset,
    train: &[usize],
    select: &[usize],
    select_name: &str,
) -> Result<()> {
    if train.len() < 2 {
        return Err(TrainError::config(format!(
            "`{}` leaves {} training samples, expected at least 2",
            dataset.name,
            train.len()
        )));
    }
    if select.is_empty() {
        return Err(TrainError::config(format!(
            "the selection split `{select_name}` of `{}` is empty (raise holdout_fraction or select on a split)",
            dataset.name
        )));
    }
    Ok(())
}

/// Splits `indices` into (rest, held out): in each class a seeded `fraction` of its samples
/// (at least one when the class has two or more and `fraction > 0`). Both ascending.
pub fn stratified_holdout(
    dataset: &Dataset,
    indices: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rest = Vec::with_capacity(indices.len());
    let mut held = Vec::new();
    for (class, mut members) in by_class(dataset, indices) {
        Rng::for_item(seed, STREAM_HOLDOUT, class as u64).shuffle(&mut members);
        let mut take = (members.len() as f64 * fraction).round() as usize;
        if fraction > 0.0 && take == 0 && members.len() >= 2 {
            take = 1;
        }
        held.extend_from_slice(&members[..take]);
        rest.extend_from_slice(&members[take..]);
    }
    rest.sort_unstable();
    held.sort_unstable();
    (rest, held)
}

/// A seeded subset of about `n` of `indices` with the classes in proportion, ascending.
pub fn stratified_subset(dataset: &Dataset, indices: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let fraction = n as f64 / indices.len().max(1) as f64;
    let mut subset = Vec::with_capacity(n);
    for (class, mut members) in by_class(dataset, indices) {
        Rng::for_item(seed, STREAM_SUBSET, class as u64).shuffle(&mut members);
        let take = ((members.len() as f64 * fraction).round() as usize)
            .max(1)
            .min(members.len());
        subset.extend_from_slice(&members[..take]);
    }
    subset.sort_unstable();
    subset
}

fn by_class(dataset: &Dataset, indices: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let mut classes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in indices {
        classes.entry(dataset.samples[i].label).or_default().push(i);
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;
    use efea_data::SynthConfig;

    fn synth() -> Dataset {
        efea_data::synth::generate(&SynthConfig::new(140)).unwrap()
    }

    #[test]
    fn holdout_is_stratified_seeded_and_disjoint() {
        let dataset = synth();
        let all: Vec<usize> = (0..dataset.len()).collect();
        let (rest, held) = stratified_holdout(&dataset, &all, 0.1, 3);
        assert_eq!(rest.len() + held.len(), all.len());
        assert_eq!(held.len(), 14);
        assert!(
            dataset
                .class_counts(held.iter().copied())
                .iter()
                .all(|&c| c == 2)
        );
        assert!(held.iter().all(|i| rest.binary_search(i).is_err()));
        assert_eq!(stratified_holdout(&dataset, &all, 0.1, 3).1, held);
        assert_ne!(stratified_holdout(&dataset, &all, 0.1, 4).1, held);
    }

    #[test]
    fn the_selection_split_is_never_reported() {
        let dataset = synth();
        let mut data = DataConfig::default();
        let plan_holdout = plan(&dataset, &data, 0).unwrap();
        let names: Vec<&str> = plan_holdout
            .reports
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["PublicTest", "PrivateTest"]);
        data.select_on = "PublicTest".into();
        let plan_public = plan(&dataset, &data, 0).unwrap();
        let names: Vec<&str> = plan_public
            .reports
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["PrivateTest"]);
        assert_eq!(plan_public.train, dataset.split("Training").unwrap());
        data.select_on = "Training".into();
        assert!(plan(&dataset, &data, 0).is_err());
    }
}
