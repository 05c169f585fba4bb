//! Counts per class and split (and folds), as `efea data stats` prints them.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::Dataset;
use crate::error::Result;
use crate::folds::{fold_subjects, subject_folds};

/// Split names in the order they are shown; others follow alphabetically.
const SPLIT_ORDER: [&str; 7] = [
    "Training",
    "PublicTest",
    "PrivateTest",
    "Test",
    "train",
    "val",
    "test",
];

/// What `efea data stats` prints: `{"dataset", "samples", "classes": {name: count},
/// "splits": {name: count}}`, plus `"subjects"` and `"folds"` when folds are asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub dataset: String,
    pub samples: usize,
    /// Samples per class, in class order.
    #[serde(serialize_with = "ordered_map")]
    pub classes: Vec<(String, usize)>,
    /// Samples per split.
    #[serde(serialize_with = "ordered_map")]
    pub splits: Vec<(String, usize)>,
    /// Number of distinct subjects (with folds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds: Option<Vec<FoldStats>>,
}

/// One fold: who is in it and how many samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldStats {
    pub subjects: Vec<String>,
    pub samples: usize,
}

fn ordered_map<S: Serializer>(
    entries: &[(String, usize)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// The statistics of `dataset`; with `folds = Some((k, seed))` also its subject folds.
pub fn stats(dataset: &Dataset, folds: Option<(usize, u64)>) -> Result<Stats> {
    let counts = dataset.class_counts(0..dataset.len());
    let classes = dataset.classes.iter().cloned().zip(counts).collect();
    let mut splits: Vec<(String, usize)> = dataset
        .splits
        .iter()
        .map(|(name, indices)| (name.clone(), indices.len()))
        .collect();
    splits.sort_by_key(|(name, _)| {
        (
            SPLIT_ORDER
                .iter()
                .position(|known| known == name)
                .unwrap_or(SPLIT_ORDER.len()),
            name.clone(),
        )
    });
    let (subjects, folds) = match folds {
        Some((k, seed)) => {
            let folds = subject_folds(dataset, k, seed)?;
            let names = fold_subjects(dataset, &folds);
            let folds = folds
                .iter()
                .zip(names)
                .map(|(fold, subjects)| FoldStats {
                    subjects,
                    samples: fold.len(),
                })
                .collect();
            (Some(dataset.subjects().len()), Some(folds))
        }
        None => (None, None),
    };
    Ok(Stats {
        dataset: dataset.name.clone(),
        samples: dataset.len(),
        classes,
        splits,
        subjects,
        folds,
    })
}

impl Stats {
    /// A plain-text table for people.
    pub fn to_table(&self) -> String {
        let mut out = format!("dataset  {}\nsamples  {}\n", self.dataset, self.samples);
        let width = self
            .classes
            .iter()
            .map(|(n, _)| n.len())
            .chain(self.splits.iter().map(|(n, _)| n.len()))
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str(&format!(
            "\n{:<width$}  {:>7}  {:>6}\n",
            "class", "samples", "share"
        ));
        for (name, count) in &self.classes {
            let share = 100.0 * *count as f64 / self.samples.max(1) as f64;
            out.push_str(&format!("{name:<width$}  {count:>7}  {share:>5.1}%\n"));
        }
        if !self.splits.is_empty() {
            out.push_str(&format!("\n{:<width$}  {:>7}\n", "split", "samples"));
            for (name, count) in &self.splits {
                out.push_str(&format!("{name:<width$}  {count:>7}\n"));
            }
        }
        if let (Some(subjects), Some(folds)) = (self.subjects, &self.folds) {
            out.push_str(&format!(
                "\nsubjects {subjects}\n{:<5}  {:>8}  {:>7}\n",
                "fold", "subjects", "samples"
            ));
            for (i, fold) in folds.iter().enumerate() {
                out.push_str(&format!(
                    "{:<5}  {:>8}  {:>7}\n",
                    i,
                    fold.subjects.len(),
                    fold.samples
                ));
            }
        }
        out
    }
}
