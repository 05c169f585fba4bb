//! `efea train`: arguments, devices and progress display. The training itself is
//! `efea_train::train`; this module also holds what `eval` and `cv` share with it (devices,
//! recipe flags, the progress observer).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::{Args, ValueEnum};
use efea_train::config::{FerplusLabels, OptimizerKind, ScheduleKind};
use efea_train::{Recipe, RunRequest, TrainError, TrainingConfig};

use crate::device::DeviceArgs;
use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset: fer2013, ferplus, ckplus, ck48, folder or synth. Without it (and without
    /// --config), the built-in synthetic set with a demo-sized recipe.
    #[arg(long)]
    dataset: Option<String>,
    /// File or folder of the dataset (for synth: an optional spec such as `count=3000,level=hard`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Config file (TOML or JSON, keys as in config.json); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (default: the first free `runs/<dataset>-N`).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint, with its saved config.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Where the best epoch is chosen: `holdout` (a stratified, seeded 10 % of the training
    /// split), `public` (FER2013's PublicTest) or any split name. That split is not reported.
    #[arg(long)]
    select_on: Option<String>,
    /// Fraction of the training split held out under `--select-on holdout`.
    #[arg(long)]
    holdout: Option<f64>,
    /// Train on at most this many samples (a stratified, seeded subset).
    #[arg(long)]
    max_train_samples: Option<usize>,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    devices: DeviceArgs,
}

/// Flags that change the recipe (shared by `train` and `cv`).
#[derive(Debug, Args, Default, PartialEq)]
pub struct RecipeArgs {
    /// Ablation of MODEL.md.
    #[arg(long, value_enum)]
    preset: Option<crate::model::PresetArg>,
    /// MobileNetV2 width multiplier.
    #[arg(long)]
    width: Option<f64>,
    /// Input side in pixels.
    #[arg(long)]
    input: Option<usize>,
    /// Dropout before the classifier.
    #[arg(long)]
    dropout: Option<f64>,
    /// ImageNet weights for the backbone: a torchvision `mobilenet_v2` state dict (.pth).
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// SGD momentum (dampening stays 0, as in PyTorch).
    #[arg(long)]
    momentum: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// StepLR: epochs between decays.
    #[arg(long)]
    step_size: Option<usize>,
    /// StepLR: decay factor.
    #[arg(long)]
    gamma: Option<f64>,
    /// Linear warm-up epochs (any schedule).
    #[arg(long)]
    warmup_epochs: Option<usize>,
    /// Cosine / plateau floor.
    #[arg(long)]
    min_lr: Option<f64>,
    /// Plateau: epochs without improvement before the rate drops.
    #[arg(long)]
    patience: Option<usize>,
    /// Plateau: factor of each drop.
    #[arg(long)]
    factor: Option<f64>,
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// mixup's Beta(alpha, alpha) (0: off).
    #[arg(long, value_name = "ALPHA")]
    mixup: Option<f64>,
    /// CutMix's Beta(alpha, alpha) (0: off).
    #[arg(long, value_name = "ALPHA")]
    cutmix: Option<f64>,
    /// Probability that a batch is mixed.
    #[arg(long)]
    mix_prob: Option<f64>,
    /// Rescale gradients to at most this global L2 norm.
    #[arg(long, value_name = "NORM")]
    clip_grad_norm: Option<f64>,
    /// Stop after this many epochs without a better selection accuracy.
    #[arg(long, value_name = "EPOCHS")]
    early_stopping: Option<usize>,
    /// Train without augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Report test splits without ten-crop test-time augmentation.
    #[arg(long)]
    no_tencrop: bool,
    /// Stratified batches (every class in every batch, in proportion): `true` or `false`
    /// (default: true for the synthetic demos, false for the paper's recipe).
    #[arg(long, value_name = "BOOL")]
    balanced_batches: Option<bool>,
    #[arg(long)]
    seed: Option<u64>,
    /// Face detector for datasets of whole frames (CK+): mtcnn or rustface. Saved with the
    /// model: `predict` and `serve` find faces with it too.
    #[arg(long, value_parser = crate::faces::detector_parser())]
    detector: Option<efea_face::DetectorKind>,
    /// Margin around each detected face, as a fraction of its side (0-2). Saved with the model.
    #[arg(long)]
    margin: Option<f32>,
    /// Align crops so the eyes are level (`true` or `false`; needs mtcnn's landmarks). Saved
    /// with the model.
    #[arg(long, value_name = "BOOL")]
    align: Option<bool>,
    /// FER+ training targets: `majority` (one-hot of the majority vote, the FER+ paper's main
    /// protocol) or `soft` (the normalised vote distribution). Default: majority.
    #[arg(long, value_enum)]
    ferplus_labels: Option<FerplusLabelsArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum FerplusLabelsArg {
    Majority,
    Soft,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum ScheduleArg {
    Step,
    Cosine,
    Plateau,
    Constant,
}

impl RecipeArgs {
    /// The flags as the library's recipe settings.
    pub fn recipe(&self) -> Recipe {
        Recipe {
            preset: self.preset.map(Into::into),
            width: self.width,
            input: self.input,
            dropout: self.dropout,
            init: self.init.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer.map(|kind| match kind {
                OptimizerArg::Sgd => OptimizerKind::Sgd,
                OptimizerArg::Adamw => OptimizerKind::Adamw,
            }),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule.map(|kind| match kind {
                ScheduleArg::Step => ScheduleKind::Step,
                ScheduleArg::Cosine => ScheduleKind::Cosine,
                ScheduleArg::Plateau => ScheduleKind::Plateau,
                ScheduleArg::Constant => ScheduleKind::Constant,
            }),
            step_size: self.step_size,
            gamma: self.gamma,
            warmup_epochs: self.warmup_epochs,
            min_lr: self.min_lr,
            patience: self.patience,
            factor: self.factor,
            label_smoothing: self.label_smoothing,
            mixup: self.mixup,
            cutmix: self.cutmix,
            mix_prob: self.mix_prob,
            clip_grad_norm: self.clip_grad_norm,
            early_stopping: self.early_stopping,
            no_augment: self.no_augment,
            no_tencrop: self.no_tencrop,
            balanced_batches: self.balanced_batches,
            seed: self.seed,
            detector: self.detector,
            margin: self.margin,
            align: self.align,
            ferplus_labels: self.ferplus_labels.map(|labels| match labels {
                FerplusLabelsArg::Majority => FerplusLabels::Majority,
                FerplusLabelsArg::Soft => FerplusLabels::Soft,
            }),
        }
    }

    /// Applies the flags that were given to `config`.
    pub fn apply(&self, config: &mut TrainingConfig) {
        self.recipe().apply(config);
    }
}

/// A library error for `main`: dataset errors keep their type (exit code 2).
pub fn user_error(error: TrainError) -> anyhow::Error {
    match error {
        TrainError::Data(data) => data.into(),
        other => other.into(),
    }
}

pub use efea_train::checkpoint::default_run_dir;

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let devices = args.devices.devices()?;
    crate::device::compute_on_main_thread(&devices);
    let mut progress = Progress::new(&args.devices);
    let started = Instant::now();
    let outcome = if let Some(dir) = &args.resume {
        let given = args.dataset.is_some()
            || args.data.is_some()
            || args.config.is_some()
            || args.select_on.is_some()
            || args.holdout.is_some()
            || args.max_train_samples.is_some()
            || args.recipe != RecipeArgs::default();
        if given {
            bail!(
                "--resume continues {} with its saved config.json: drop the other training flags",
                dir.display()
            );
        }
        println!("resuming {}", dir.display());
        efea_train::resume(dir, &devices, &mut progress).map_err(user_error)?
    } else {
        let config = resolve_config(&args)?;
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(&config.data.dataset));
        efea_train::train(config, &dir, &devices, &mut progress).map_err(user_error)?
    };
    println!();
    for split in &outcome.report.splits {
        println!(
            "{:<26} accuracy {:6.2} %   macro-F1 {:.4}   ({} samples)",
            split.title(),
            100.0 * split.accuracy,
            split.macro_f1,
            split.samples
        );
    }
    if let Some(best) = &outcome.best {
        println!(
            "best epoch {} ({:.2} % on {})",
            best.epoch,
            100.0 * best.accuracy,
            progress.select_name
        );
    }
    if let Some((split, accuracy)) = outcome.test_accuracy() {
        println!("test accuracy ({split}): {:.2} %", 100.0 * accuracy);
    }
    println!(
        "run directory: {} (report.md, curves.png, confusion.png; {:.0} s in all)",
        outcome.dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Defaults (the demo on the synthetic set, else the paper's recipe), then the config file,
/// then the flags (`efea_train::RunRequest`).
fn resolve_config(args: &TrainArgs) -> anyhow::Result<TrainingConfig> {
    let request = RunRequest {
        dataset: args.dataset.clone(),
        data: args.data.clone(),
        config: args.config.clone(),
        select_on: args.select_on.clone(),
        holdout: args.holdout,
        max_train_samples: args.max_train_samples,
        recipe: args.recipe.recipe(),
    };
    if let Some(dataset) = &args.dataset
        && args.data.is_none()
        && args.config.is_none()
        && dataset.parse::<efea_data::DatasetKind>()? != efea_data::DatasetKind::Synth
    {
        bail!("--dataset {dataset} needs --data PATH");
    }
    let config = request.resolve().map_err(user_error)?;
    if request.is_demo() {
        println!(
            "demo: {}; the paper's recipe is `--dataset fer2013 --data fer2013.csv`",
            config.describe()
        );
    }
    Ok(config)
}
