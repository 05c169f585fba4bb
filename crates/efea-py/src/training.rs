//! `efea.train` and `efea.evaluate`: efea-train's `train` / `resume` and `evaluate_run` with
//! the options of `efea train` and `efea eval`, without the GIL. Ctrl-C is checked after every
//! training batch (efea-train's `Observer::should_abort`) and re-raised as
//! `KeyboardInterrupt` once the run has stopped; the run resumes from its last epoch.
#![allow(unsafe_code)] // `#[pyfunction]` generates the FFI glue

use std::path::PathBuf;

use efea_data::classes::ClassMap;
use efea_train::{
    EpochMetrics, EvalRequest, Observer, Recipe, RunRequest, TrainError, evaluate_run,
};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;

use crate::detector::parse_device;
use crate::errors::{train_error, value_error};

/// Hears the run for Python: checks for Ctrl-C, and hands each epoch's metrics to the
/// caller's `progress(metrics_json, best)`.
struct PyObserver {
    progress: Option<Py<PyAny>>,
    /// The `KeyboardInterrupt` (or the callback's exception) that stopped the run.
    raised: Option<PyErr>,
}

impl Observer for PyObserver {
    fn epoch_done(&mut self, metrics: &EpochMetrics, best: bool) {
        let Some(progress) = &self.progress else {
            return;
        };
        let json = serde_json::to_string(metrics).expect("metrics are plain data");
        if let Err(error) = Python::attach(|py| progress.call1(py, (json, best)).map(drop)) {
            self.raised.get_or_insert(error);
        }
    }

    fn should_abort(&mut self) -> bool {
        if self.raised.is_none()
            && let Err(interrupt) = Python::attach(|py| py.check_signals())
        {
            self.raised = Some(interrupt);
        }
        self.raised.is_some()
    }
}

/// The interrupt or callback error that stopped a run, else the run's own error.
fn stopped(observer: &mut PyObserver, error: TrainError) -> PyErr {
    match (observer.raised.take(), &error) {
        (Some(raised), TrainError::Interrupted { .. }) => raised,
        _ => train_error(error),
    }
}

/// A setting's value by its name in `config.json` (`sgd`, `cosine`, `full`, ...).
fn named<T: DeserializeOwned>(what: &str, name: Option<&str>) -> PyResult<Option<T>> {
    name.map(|name| {
        serde_json::from_value(serde_json::Value::String(name.to_ascii_lowercase()))
            .map_err(|e| value_error(format!("{what} `{name}`: {e}")))
    })
    .transpose()
}

/// Trains (or resumes) a run; the report, the run directory and the epochs as JSON.
#[pyfunction]
#[pyo3(signature = (
    dataset=None, data=None, *, config=None, out=None, resume=None, select_on=None,
    holdout=None, max_train_samples=None, device="cpu", progress=None,
    preset=None, width=None, input=None, dropout=None, init=None, epochs=None,
    batch_size=None, lr=None, optimizer=None, momentum=None, weight_decay=None,
    schedule=None, step_size=None, gamma=None, warmup_epochs=None, min_lr=None,
    patience=None, factor=None, label_smoothing=None, mixup=None, cutmix=None,
    mix_prob=None, clip_grad_norm=None, early_stopping=None, no_augment=false,
    no_tencrop=false, balanced_batches=None, seed=None, detector=None, margin=None,
    align=None, ferplus_labels=None
))]
#[allow(clippy::too_many_arguments)] // the flags of `efea train`, by keyword
pub fn train(
    py: Python<'_>,
    dataset: Option<String>,
    data: Option<PathBuf>,
    config: Option<PathBuf>,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    select_on: Option<String>,
    holdout: Option<f64>,
    max_train_samples: Option<usize>,
    device: &str,
    progress: Option<Py<PyAny>>,
    preset: Option<&str>,
    width: Option<f64>,
    input: Option<usize>,
    dropout: Option<f64>,
    init: Option<PathBuf>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    optimizer: Option<&str>,
    momentum: Option<f64>,
    weight_decay: Option<f64>,
    schedule: Option<&str>,
    step_size: Option<usize>,
    gamma: Option<f64>,
    warmup_epochs: Option<usize>,
    min_lr: Option<f64>,
    patience: Option<usize>,
    factor: Option<f64>,
    label_smoothing: Option<f64>,
    mixup: Option<f64>,
    cutmix: Option<f64>,
    mix_prob: Option<f64>,
    clip_grad_norm: Option<f64>,
    early_stopping: Option<usize>,
    no_augment: bool,
    no_tencrop: bool,
    balanced_batches: Option<bool>,
    seed: Option<u64>,
    detector: Option<&str>,
    margin: Option<f32>,
    align: Option<bool>,
    ferplus_labels: Option<&str>,
) -> PyResult<String> {
    let devices = vec![parse_device(device)?];
    let recipe = Recipe {
        preset: named("preset", preset)?,
        width,
        input,
        dropout,
        init,
        epochs,
        batch_size,
        lr,
        optimizer: named("optimizer", optimizer)?,
        momentum,
        weight_decay,
        schedule: named("schedule", schedule)?,
        step_size,
        gamma,
        warmup_epochs,
        min_lr,
        patience,
        factor,
        label_smoothing,
        mixup,
        cutmix,
        mix_prob,
        clip_grad_norm,
        early_stopping,
        no_augment,
        no_tencrop,
        balanced_batches,
        seed,
        detector: detector
            .map(|name| name.parse().map_err(value_error))
            .transpose()?,
        margin,
        align,
        ferplus_labels: named("ferplus_labels", ferplus_labels)?,
    };
    let request = RunRequest {
        dataset,
        data,
        config,
        select_on,
        holdout,
        max_train_samples,
        recipe,
    };
    let mut observer = PyObserver {
        progress,
        raised: None,
    };
    let outcome = match resume {
        Some(dir) => {
            if request != RunRequest::default() || out.is_some() {
                return Err(value_error(format!(
                    "resume continues {} with its saved config.json: drop the other training options",
                    dir.display()
                )));
            }
            py.detach(|| efea_train::resume(&dir, &devices, &mut observer))
        }
        None => {
            let config = request.resolve().map_err(train_error)?;
            let dir = out
                .unwrap_or_else(|| efea_train::checkpoint::default_run_dir(&config.data.dataset));
            py.detach(|| efea_train::train(config, &dir, &devices, &mut observer))
        }
    };
    let outcome = outcome.map_err(|error| stopped(&mut observer, error))?;
    if let Some(error) = observer.raised.take() {
        return Err(error);
    }
    Ok(serde_json::json!({
        "run_dir": outcome.dir,
        "epochs_done": outcome.epochs_done,
        "stopped_early": outcome.stopped_early,
        "history": outcome.history,
        "report": outcome.report,
    })
    .to_string())
}

/// Scores a run on a dataset and writes its report; the report and where it went as JSON.
#[pyfunction]
#[pyo3(signature = (
    model, dataset=None, data=None, *, splits=None, tta=None, class_map=None, out=None,
    batch_size=128, device="cpu"
))]
#[allow(clippy::too_many_arguments)] // the flags of `efea eval`, by keyword
pub fn evaluate(
    py: Python<'_>,
    model: PathBuf,
    dataset: Option<String>,
    data: Option<PathBuf>,
    splits: Option<Vec<String>>,
    tta: Option<&str>,
    class_map: Option<&str>,
    out: Option<PathBuf>,
    batch_size: usize,
    device: &str,
) -> PyResult<String> {
    let device = parse_device(device)?;
    let tencrop = match tta {
        None => false,
        Some(name) if name.eq_ignore_ascii_case("tencrop") => true,
        Some(other) => return Err(value_error(format!("tta `{other}`, expected tencrop"))),
    };
    let class_map: ClassMap = match class_map {
        Some(map) => map.parse().map_err(crate::errors::data_error)?,
        None => ClassMap::default(),
    };
    let request = EvalRequest {
        model,
        dataset,
        data,
        splits: splits.unwrap_or_default(),
        tencrop,
        class_map,
        out,
        batch_size,
    };
    let mut observer = PyObserver {
        progress: None,
        raised: None,
    };
    let outcome = py
        .detach(|| evaluate_run(&request, &device, &mut observer))
        .map_err(train_error)?;
    Ok(serde_json::json!({
        "out": outcome.out,
        "config": outcome.config_path,
        "left_out": outcome.left_out,
        "report": outcome.report,
    })
    .to_string())
}
