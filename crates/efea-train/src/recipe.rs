//! A run's configuration from what a user names: the defaults (the demo on the synthetic set,
//! else the paper's recipe), then a config file, then single settings. `efea train`'s flags
//! and the Python package's keyword arguments are both a [`RunRequest`], so the two resolve a
//! run the same way.

use std::path::PathBuf;

use efea_data::{DataError, DatasetKind, DetectorKind};
use efea_model::Preset;

use crate::config::{FerplusLabels, OptimizerKind, SELECT_HOLDOUT, ScheduleKind};
use crate::{Result, TrainingConfig};

/// Settings that change the recipe; `None` (or `false`) leaves the config's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recipe {
    /// Ablation of MODEL.md.
    pub preset: Option<Preset>,
    /// MobileNetV2 width multiplier.
    pub width: Option<f64>,
    /// Input side in pixels.
    pub input: Option<usize>,
    pub dropout: Option<f64>,
    /// ImageNet weights for the backbone (a torchvision `mobilenet_v2` state dict).
    pub init: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub optimizer: Option<OptimizerKind>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    pub schedule: Option<ScheduleKind>,
    pub step_size: Option<usize>,
    pub gamma: Option<f64>,
    pub warmup_epochs: Option<usize>,
    pub min_lr: Option<f64>,
    pub patience: Option<usize>,
    pub factor: Option<f64>,
    pub label_smoothing: Option<f64>,
    /// mixup's Beta(alpha, alpha) (0: off).
    pub mixup: Option<f64>,
    /// CutMix's Beta(alpha, alpha) (0: off).
    pub cutmix: Option<f64>,
    pub mix_prob: Option<f64>,
    pub clip_grad_norm: Option<f64>,
    pub early_stopping: Option<usize>,
    pub no_augment: bool,
    pub no_tencrop: bool,
    pub balanced_batches: Option<bool>,
    pub seed: Option<u64>,
    pub detector: Option<DetectorKind>,
    pub margin: Option<f32>,
    pub align: Option<bool>,
    pub ferplus_labels: Option<FerplusLabels>,
}

impl Recipe {
    /// Applies the settings that were given to `config`.
    pub fn apply(&self, config: &mut TrainingConfig) {
        if let Some(preset) = self.preset {
            config.model = crate::cv::with_preset(&config.model, preset);
        }
        set(&mut config.model.width_mult, self.width);
        set(&mut config.model.input_size, self.input);
        set(&mut config.model.dropout, self.dropout);
        if self.init.is_some() {
            config.init = self.init.clone();
        }
        set(&mut config.epochs, self.epochs);
        set(&mut config.face.detector, self.detector);
        set(&mut config.face.margin, self.margin);
        set(&mut config.face.align, self.align);
        set(&mut config.batch_size, self.batch_size);
        let o = &mut config.optimizer;
        set(&mut o.lr, self.lr);
        set(&mut o.kind, self.optimizer);
        set(&mut o.momentum, self.momentum);
        set(&mut o.weight_decay, self.weight_decay);
        if self.clip_grad_norm.is_some() {
            o.clip_grad_norm = self.clip_grad_norm;
        }
        let s = &mut config.schedule;
        set(&mut s.kind, self.schedule);
        set(&mut s.step_size, self.step_size);
        set(&mut s.gamma, self.gamma);
        set(&mut s.warmup_epochs, self.warmup_epochs);
        set(&mut s.min_lr, self.min_lr);
        set(&mut s.patience, self.patience);
        set(&mut s.factor, self.factor);
        let r = &mut config.regularization;
        set(&mut r.label_smoothing, self.label_smoothing);
        set(&mut r.mixup_alpha, self.mixup);
        set(&mut r.cutmix_alpha, self.cutmix);
        set(&mut r.mix_prob, self.mix_prob);
        if self.early_stopping.is_some() {
            config.early_stopping = self.early_stopping;
        }
        if self.no_augment {
            config.augment = efea_data::AugmentConfig::none();
        }
        if self.no_tencrop {
            config.report_tencrop = false;
        }
        set(&mut config.balanced_batches, self.balanced_batches);
        set(&mut config.seed, self.seed);
        set(&mut config.data.ferplus_labels, self.ferplus_labels);
    }
}

fn set<T: Clone>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// What a new run is asked to be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    /// Dataset kind by name; `None` (and no config file): the demo on the synthetic set.
    pub dataset: Option<String>,
    /// File or folder of the dataset (for `synth`: an optional `key=value,...` spec).
    pub data: Option<PathBuf>,
    /// Config file (TOML or JSON, keys as in `config.json`).
    pub config: Option<PathBuf>,
    /// `holdout`, `public`, `private` or a split name.
    pub select_on: Option<String>,
    pub holdout: Option<f64>,
    pub max_train_samples: Option<usize>,
    pub recipe: Recipe,
}

impl RunRequest {
    /// The demo: no config file and no dataset but the synthetic set.
    pub fn is_demo(&self) -> bool {
        self.config.is_none() && self.dataset.as_deref().is_none_or(|d| d == "synth")
    }

    /// The run's config: the defaults, then the config file, then the settings.
    pub fn resolve(&self) -> Result<TrainingConfig> {
        let mut config = if self.is_demo() {
            TrainingConfig::demo()
        } else {
            TrainingConfig::paper()
        };
        if let Some(path) = &self.config {
            config = config.merged(path)?;
        }
        if let Some(dataset) = &self.dataset {
            config.data.dataset = dataset.parse::<DatasetKind>()?.name().to_string();
            if self.data.is_none() && config.data.dataset != "synth" && config.data.path.is_none() {
                return Err(DataError::Spec {
                    spec: config.data.dataset.clone(),
                    problem: "this dataset needs a path (`--data PATH`)".into(),
                }
                .into());
            }
        }
        if self.data.is_some() {
            config.data.path = self.data.clone();
        }
        if let Some(select) = &self.select_on {
            config.data.select_on = match select.as_str() {
                "public" | "PublicTest" => "PublicTest".into(),
                "private" | "PrivateTest" => "PrivateTest".into(),
                SELECT_HOLDOUT => SELECT_HOLDOUT.into(),
                other => other.into(),
            };
        }
        set(&mut config.data.holdout_fraction, self.holdout);
        if self.max_train_samples.is_some() {
            config.data.max_train_samples = self.max_train_samples;
        }
        self.recipe.apply(&mut config);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_defaults_and_aliases_name_splits() {
        let request = RunRequest {
            dataset: Some("fer2013".into()),
            data: Some("fer2013.csv".into()),
            select_on: Some("public".into()),
            recipe: Recipe {
                epochs: Some(3),
                lr: Some(0.5),
                schedule: Some(ScheduleKind::Cosine),
                no_tencrop: true,
                ..Recipe::default()
            },
            ..RunRequest::default()
        };
        assert!(!request.is_demo());
        let config = request.resolve().unwrap();
        assert_eq!(config.data.dataset, "fer2013");
        assert_eq!(config.data.select_on, "PublicTest");
        assert_eq!((config.epochs, config.optimizer.lr), (3, 0.5));
        assert_eq!(config.schedule.kind, ScheduleKind::Cosine);
        assert!(!config.report_tencrop);
        assert_eq!(
            RunRequest::default().resolve().unwrap(),
            TrainingConfig::demo()
        );
    }

    #[test]
    fn a_dataset_without_a_path_is_a_data_error() {
        let request = RunRequest {
            dataset: Some("fer2013".into()),
            ..RunRequest::default()
        };
        let error = request.resolve().unwrap_err();
        assert!(
            matches!(error, crate::TrainError::Data(_)) && error.to_string().contains("--data"),
            "{error}"
        );
    }
}
