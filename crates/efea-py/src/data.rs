//! `efea.load_dataset` and `efea.synth`: efea-data's loaders, their samples handed over as
//! one block of pixels (the Python half makes an `(n, size, size)` `uint8` array of it).

#![allow(unsafe_code)] // `#[pyfunction]` generates the FFI glue

use std::collections::BTreeMap;
use std::path::PathBuf;

use efea_data::{Dataset, DatasetKind, LoadOptions, SynthConfig, SynthLevel};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::data_error;

/// A dataset as the Python half builds its `efea.Dataset` from it.
#[derive(IntoPyObject)]
pub struct Loaded {
    name: String,
    classes: Vec<String>,
    /// `count * size * size` gray values, sample after sample, row-major.
    pixels: Py<PyBytes>,
    count: usize,
    size: u32,
    labels: Vec<usize>,
    splits: BTreeMap<String, Vec<usize>>,
    /// Who each sample shows, where the dataset says (synthetic, CK+).
    subjects: Vec<Option<String>>,
    labelled: bool,
    /// Bad rows or images skipped under `skip_bad`.
    skipped: usize,
}

fn hand_over(py: Python<'_>, dataset: Dataset, size: u32) -> Loaded {
    let mut pixels = Vec::with_capacity(dataset.len() * (size * size) as usize);
    for sample in &dataset.samples {
        pixels.extend_from_slice(sample.image.as_raw());
    }
    Loaded {
        pixels: PyBytes::new(py, &pixels).unbind(),
        count: dataset.len(),
        size,
        labels: dataset.samples.iter().map(|s| s.label).collect(),
        subjects: dataset.samples.iter().map(|s| s.subject.clone()).collect(),
        name: dataset.name,
        classes: dataset.classes,
        splits: dataset.splits,
        labelled: dataset.labelled,
        skipped: dataset.report.skipped,
    }
}

/// Loads any dataset `efea train --dataset` reads, without the GIL.
#[pyfunction]
#[pyo3(signature = (kind, path=None, *, size=48, skip_bad=false))]
pub fn load_dataset(
    py: Python<'_>,
    kind: &str,
    path: Option<PathBuf>,
    size: u32,
    skip_bad: bool,
) -> PyResult<Loaded> {
    let kind: DatasetKind = kind.parse().map_err(data_error)?;
    let options = LoadOptions {
        size,
        skip_bad,
        ..LoadOptions::default()
    };
    let dataset = py
        .detach(|| efea_data::load(kind, path.as_deref(), &options))
        .map_err(data_error)?;
    Ok(hand_over(py, dataset, size))
}

/// The built-in synthetic expression set (as `efea synth`), without the GIL.
#[pyfunction]
#[pyo3(signature = (count=3000, level="medium", seed=0, *, size=48, subjects=None))]
pub fn synth(
    py: Python<'_>,
    count: usize,
    level: &str,
    seed: u64,
    size: u32,
    subjects: Option<usize>,
) -> PyResult<Loaded> {
    let level: SynthLevel = level.parse().map_err(data_error)?;
    let config = SynthConfig {
        count,
        seed,
        level,
        size,
        subjects: subjects.unwrap_or_else(|| SynthConfig::default_subjects(count)),
    };
    let dataset = py
        .detach(|| efea_data::synth::generate(&config))
        .map_err(data_error)?;
    Ok(hand_over(py, dataset, size))
}
