//! Scoring a trained run on any split of any dataset, with the report training writes: what
//! `efea eval` and the Python package's `efea.evaluate` do. The dataset and its loading
//! options default to the ones the run trained on; the network's outputs are matched to the
//! dataset's classes by name.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use efea_data::classes::{ClassMap, match_classes};
use efea_data::{DataError, DatasetKind, LoadOptions};
use efea_model::checkpoint::{load_model, resolve};

use crate::{Observer, Report, Result, TrainError, TrainingConfig, score_splits};

/// What to score.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// A run directory (its best weights) or a checkpoint with `config.json` beside it.
    pub model: PathBuf,
    /// Dataset kind by name; `None`: the one the run trained on.
    pub dataset: Option<String>,
    /// File or folder of the dataset; `None`: the one the run trained on.
    pub data: Option<PathBuf>,
    /// Splits to score; empty: every split but the training one, or all samples of a dataset
    /// without splits.
    pub splits: Vec<String>,
    /// Also score with ten-crop test-time augmentation.
    pub tencrop: bool,
    /// How outputs that do not match a class by name are scored.
    pub class_map: ClassMap,
    /// Report directory; `None`: `<run>/eval-<dataset>`.
    pub out: Option<PathBuf>,
    pub batch_size: usize,
}

impl EvalRequest {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            dataset: None,
            data: None,
            splits: Vec::new(),
            tencrop: false,
            class_map: ClassMap::default(),
            out: None,
            batch_size: 128,
        }
    }
}

/// What scoring gave.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    pub report: Report,
    /// Where `report.json`, `report.md` and the confusion matrices were written.
    pub out: PathBuf,
    /// The run's `config.json`.
    pub config_path: PathBuf,
    /// Samples of classes the network does not score, left out.
    pub left_out: usize,
}

/// Scores `request.model` on `device` and writes the report.
pub fn evaluate_run(
    request: &EvalRequest,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<EvalOutcome> {
    let (spec, model) = load_model(&request.model, device)?;
    let (_, config_path) = resolve(&request.model)?;
    // The whole training config when there is one (dataset and protocol defaults).
    let trained = TrainingConfig::read(&config_path).ok();
    let mut config = trained.clone().unwrap_or_default();
    config.model = spec.model.clone();
    config.classes = spec.classes.clone();
    config.eval_batch_size = request.batch_size.max(1);
    config.report_tencrop = request.tencrop;

    let kind: DatasetKind = match (&request.dataset, &trained) {
        (Some(name), _) => name.parse()?,
        (None, Some(trained)) => trained.data.kind()?,
        (None, None) => {
            return Err(TrainError::run(
                &config_path,
                "has no dataset to default to: pass --dataset",
            ));
        }
    };
    let path = match (&request.data, &trained) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(trained))
            if request.dataset.is_none() || trained.data.kind().ok() == Some(kind) =>
        {
            trained.data.path.clone()
        }
        _ => None,
    };
    let mut options = LoadOptions {
        size: spec.model.input_size as u32,
        ..LoadOptions::default()
    };
    if let (Some(trained), None) = (&trained, &request.dataset) {
        options.skip_bad = trained.data.skip_bad;
        options.ckplus_neutral = trained.data.ckplus_neutral;
        options.face = trained.face;
    }
    let dataset = efea_data::load(kind, path.as_deref(), &options)?;
    if !dataset.labelled {
        return Err(TrainError::run(
            path.as_deref().unwrap_or(Path::new(kind.name())),
            format!("`{}` has no labels: it cannot be scored", dataset.name),
        ));
    }
    let matching =
        match_classes(&spec.classes, &dataset.classes, &request.class_map).map_err(|source| {
            TrainError::Classes {
                model: request.model.clone(),
                dataset: dataset.name.clone(),
                source: Box::new(source),
            }
        })?;

    let splits: Vec<(String, Vec<usize>)> = if !request.splits.is_empty() {
        request
            .splits
            .iter()
            .map(|name| Ok((name.clone(), dataset.split(name)?.to_vec())))
            .collect::<Result<_, DataError>>()?
    } else {
        let others: Vec<(String, Vec<usize>)> = dataset
            .splits
            .iter()
            .filter(|(name, _)| !crate::splits::TRAIN_SPLIT_NAMES.contains(&name.as_str()))
            .map(|(name, indices)| (name.clone(), indices.clone()))
            .collect();
        if others.is_empty() {
            vec![("all".to_string(), (0..dataset.len()).collect())]
        } else {
            others
        }
    };
    let left_out = splits
        .iter()
        .flat_map(|(_, indices)| indices)
        .filter(|&&i| !matching.scores(dataset.samples[i].label))
        .count();

    let reports = score_splits(
        &config, &dataset, &splits, &model, &matching, device, observer,
    );
    let report = Report::new(&config.model, &dataset, None, None, reports);
    let out = request.out.clone().unwrap_or_else(|| {
        let run_dir = config_path.parent().map(PathBuf::from).unwrap_or_default();
        run_dir.join(format!("eval-{}", dataset.name))
    });
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    crate::report::write(&report, &out)?;
    Ok(EvalOutcome {
        report,
        out,
        config_path,
        left_out,
    })
}
