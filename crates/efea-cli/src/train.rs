//! `efea train`: arguments, devices and progress display. The training itself is
//! `efea_train::train`; this module also holds what `eval` and `cv` share with it (devices,
//! recipe flags, the progress observer).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use efea_train::config::{FerplusLabels, OptimizerKind, ScheduleKind};
use efea_train::{
    BatchProgress, EpochMetrics, Observer, Recipe, RunRequest, RunStart, TrainError, TrainingConfig,
};
use indicatif::{ProgressBar, ProgressStyle};

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

/// `--device` and `--devices`.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu, wgpu (the default adapter), wgpu:N (the N-th discrete GPU), wgpu:cpu (a software
    /// Vulkan such as lavapipe), cuda:N or tch[:cuda:N] (GPU backends need their feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data-parallel training over several devices, e.g. `cuda:0,cuda:1`.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Vec<String>,
    /// Only the per-epoch summary lines, no progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl DeviceArgs {
    /// The devices as the user named them.
    pub fn names(&self) -> Vec<String> {
        let names = if self.devices.is_empty() {
            std::slice::from_ref(&self.device)
        } else {
            &self.devices
        };
        names
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect()
    }

    pub fn devices(&self) -> anyhow::Result<Vec<Device>> {
        if self.devices.is_empty() {
            return Ok(vec![parse_device(&self.device)?]);
        }
        self.devices.iter().map(|d| parse_device(d)).collect()
    }
}

/// A device by name.
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let (backend, index) = match name.split_once(':') {
        Some((backend, rest)) => (backend, Some(rest)),
        None => (name.as_str(), None),
    };
    let number = |what: &str| -> anyhow::Result<usize> {
        index
            .unwrap_or("0")
            .parse()
            .with_context(|| format!("device `{name}`: `{what}:N` expects a number for N"))
    };
    match backend {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu_device(match index {
            None => None,
            // A software Vulkan device (Mesa's lavapipe) has the adapter type `Cpu`.
            Some("cpu") => Some(WgpuAdapter::Cpu),
            Some(_) => Some(WgpuAdapter::Discrete(number("wgpu")?)),
        }),
        "cuda" => cuda_device(number("cuda")?),
        "tch" | "libtorch" => tch_device(index),
        _ => bail!("unknown device `{name}`, expected cpu, wgpu[:N|:cpu], cuda:N or tch[:cuda:N]"),
    }
}

/// Which wgpu adapter `wgpu:...` names: the N-th discrete GPU, or a CPU (software) adapter.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
enum WgpuAdapter {
    Discrete(usize),
    Cpu,
}

/// `None`: wgpu's default adapter (the most powerful one; `CUBECL_WGPU_DEFAULT_DEVICE`
/// overrides it).
#[cfg(feature = "wgpu")]
fn wgpu_device(adapter: Option<WgpuAdapter>) -> anyhow::Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(match adapter {
        None => DeviceKind::DefaultDevice,
        Some(WgpuAdapter::Discrete(n)) => DeviceKind::DiscreteGpu(n),
        Some(WgpuAdapter::Cpu) => DeviceKind::Cpu,
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_adapter: Option<WgpuAdapter>) -> anyhow::Result<Device> {
    bail!("this efea was built without wgpu: rebuild with `--features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> anyhow::Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> anyhow::Result<Device> {
    bail!("this efea was built without CUDA: rebuild with `--features cuda`")
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // Burn 0.22 deprecates LibTorch but still ships it.
fn tch_device(rest: Option<&str>) -> anyhow::Result<Device> {
    match rest {
        None | Some("cpu") => Ok(Device::libtorch()),
        Some(cuda) => {
            let index = cuda
                .strip_prefix("cuda")
                .map(|r| r.trim_start_matches(':'))
                .unwrap_or(cuda);
            let index: usize = if index.is_empty() {
                0
            } else {
                index.parse().context("tch:cuda:N expects a number")?
            };
            Ok(Device::libtorch_cuda(index))
        }
    }
}

#[cfg(not(feature = "tch"))]
fn tch_device(_rest: Option<&str>) -> anyhow::Result<Device> {
    bail!("this efea was built without LibTorch: rebuild with `--features tch`")
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

/// Progress bars on a terminal, plain lines otherwise; one summary line per epoch.
pub struct Progress {
    /// Nothing within an epoch: neither bars nor plain progress lines.
    quiet: bool,
    /// The devices as the user named them, for the run's first line.
    devices: Vec<String>,
    bars: bool,
    bar: Option<ProgressBar>,
    /// Next batch at which a plain progress line is printed.
    next_line: usize,
    epochs: usize,
    pub select_name: String,
}

impl Progress {
    pub fn new(args: &DeviceArgs) -> Self {
        let quiet = args.quiet;
        Self {
            quiet,
            devices: args.names(),
            bars: !quiet && std::io::stdout().is_terminal(),
            bar: None,
            next_line: 0,
            epochs: 0,
            select_name: String::new(),
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn run_started(&mut self, start: &RunStart) {
        self.epochs = start.epochs;
        self.select_name = start.select_name.clone();
        println!(
            "run {}: {} training samples, selection on {} ({} samples); {} parameters, {} multiply-adds; on {}",
            start.dir.display(),
            start.train_samples,
            start.select_name,
            start.select_samples,
            efea_train::report::thousands(start.params),
            efea_train::report::thousands(start.macs),
            self.devices.join(", ")
        );
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.next_line = batches.div_ceil(4);
        if self.bars {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch_done(&mut self, p: &BatchProgress) {
        let message = format!(
            "loss {:.4} acc {:5.1} % {:.0} img/s lr {:.1e}",
            p.loss,
            100.0 * p.accuracy,
            p.images_per_sec,
            p.lr
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.batch as u64);
                bar.set_message(message);
            }
            None if !self.quiet && p.batch >= self.next_line && p.batch < p.batches => {
                println!(
                    "  epoch {}/{} batch {}/{}: {message}",
                    p.epoch, self.epochs, p.batch, p.batches
                );
                self.next_line += p.batches.div_ceil(4);
            }
            None => {}
        }
    }

    fn epoch_done(&mut self, m: &EpochMetrics, best: bool) {
        self.finish_bar();
        println!(
            "epoch {:>3}/{}  train loss {:.4} acc {:5.1} %  {} loss {:.4} acc {:5.1} %  lr {:.1e}  {:.0} img/s  {:.0} s{}",
            m.epoch,
            self.epochs,
            m.train_loss,
            100.0 * m.train_accuracy,
            self.select_name,
            m.val_loss,
            100.0 * m.val_accuracy,
            m.lr,
            m.images_per_sec,
            m.seconds,
            if best { "  *best" } else { "" }
        );
    }

    fn evaluation_started(&mut self, what: &str, samples: usize) {
        self.finish_bar();
        if self.bars {
            let bar = ProgressBar::new(samples as u64);
            bar.set_style(
                ProgressStyle::with_template("  scoring {prefix} [{bar:30}] {pos}/{len}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            self.bar = Some(bar);
        }
    }

    fn evaluation_progress(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(done as u64);
        }
    }

    fn evaluation_done(&mut self) {
        self.finish_bar();
    }

    fn note(&mut self, message: &str) {
        self.finish_bar();
        println!("{message}");
    }
}
