//! The training loop: epochs of seeded batches, a selection pass after each, the best and last
//! checkpoints, and the final report of the best epoch on every reported split.
//!
//! Reproducibility: every random stream is derived from `(seed, stream, epoch, batch)`: the
//! initialisation, the batch order, the augmentation of each sample, the mixing of each batch
//! and the backend RNG (dropout), which is reseeded before every step. A run resumed after
//! epoch `e` therefore replays epoch `e + 1` exactly as an uninterrupted run would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use efea_data::batch::BatchIndices;
use efea_data::classes::ClassMatching;
use efea_data::rng::Rng;
use efea_data::{Batcher, Dataset};
use efea_model::EfeaNet;
use efea_model::checkpoint::save_module;

use crate::checkpoint::{self, BestScore, TrainState};
use crate::config::TrainingConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::{EvalSettings, Tta, evaluate};
use crate::metrics::EpochMetrics;
use crate::objective::{
    Mix, argmax_rows, input, matrix, soft_cross_entropy, soft_targets, training_targets,
};
use crate::observer::{BatchProgress, Observer, RunStart};
use crate::report::{self, Report, SplitReport};
use crate::schedule::LrSchedule;
use crate::splits::{self, SplitPlan};
use crate::{optim, plot};

// Random streams under the run's seed.
const STREAM_INIT: u64 = 0x494E_4954;
const STREAM_BACKEND: u64 = 0x4452_4F50;
const STREAM_MIX: u64 = 0x4D49_5845;

/// A seed for item `(epoch, batch, shard)` of `stream`.
fn stream_seed(seed: u64, stream: u64, epoch: usize, batch: usize, shard: usize) -> u64 {
    let index = ((epoch as u64) << 40) ^ ((batch as u64) << 8) ^ shard as u64;
    Rng::for_item(seed, stream, index).next_u64()
}

/// How a finished (or early-stopped) run went.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub dir: PathBuf,
    pub best: Option<BestScore>,
    pub epochs_done: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochMetrics>,
    pub report: Report,
}

impl TrainOutcome {
    /// The headline test accuracy: the last reported split without TTA (FER2013: PrivateTest).
    pub fn test_accuracy(&self) -> Option<(&str, f64)> {
        self.report
            .splits
            .iter()
            .rev()
            .find(|s| s.tta.is_none())
            .map(|s| (s.split.as_str(), s.accuracy))
    }
}

/// Starts a new run in `dir` (which must not hold one): loads the data, trains, reports.
///
/// `devices`: the first trains (and evaluates); with more, each batch is split into one shard
/// per device, shards on different devices run in parallel (those sharing one, in turn) and
/// their gradients are summed on the first (data parallel). Batch norm sees each shard's statistics, as in PyTorch's
/// `DistributedDataParallel` without `SyncBatchNorm`.
pub fn train(
    mut config: TrainingConfig,
    dir: &Path,
    devices: &[Device],
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    config.validate()?;
    let config_path = dir.join(checkpoint::CONFIG_FILE);
    if config_path.exists() {
        return Err(TrainError::run(
            dir,
            "already holds a run: resume it with --resume, or choose another directory",
        ));
    }
    let dataset = splits::load_dataset(&config)?;
    adopt_classes(&mut config, &dataset)?;
    let plan = splits::plan(&dataset, &config.data, config.seed)?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    write_config(&config, dir)?;
    run(&config, &dataset, &plan, dir, devices, observer)
}

/// Continues the run in `dir` from its newest checkpoint (or from the start if it has none).
pub fn resume(dir: &Path, devices: &[Device], observer: &mut dyn Observer) -> Result<TrainOutcome> {
    let config_path = dir.join(checkpoint::CONFIG_FILE);
    if !config_path.is_file() {
        return Err(TrainError::run(
            dir,
            format!("no {} here: not a run directory", checkpoint::CONFIG_FILE),
        ));
    }
    let config = TrainingConfig::read(&config_path)?;
    config.validate()?;
    let dataset = splits::load_dataset(&config)?;
    if dataset.classes != config.classes {
        return Err(TrainError::run(
            dir,
            format!(
                "the dataset's classes changed since the run started ({:?})",
                dataset.classes
            ),
        ));
    }
    let plan = splits::plan(&dataset, &config.data, config.seed)?;
    run(&config, &dataset, &plan, dir, devices, observer)
}

/// Makes the network's outputs the dataset's classes.
pub fn adopt_classes(config: &mut TrainingConfig, dataset: &Dataset) -> Result<()> {
    config.classes = dataset.classes.clone();
    config.model.num_classes = dataset.num_classes();
    config.validate()
}

/// Writes `config.json`.
pub fn write_config(config: &TrainingConfig, dir: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(config).expect("the config is plain data");
    checkpoint::write_atomic(&dir.join(checkpoint::CONFIG_FILE), &json)
}

fn run(
    config: &TrainingConfig,
    dataset: &Dataset,
    plan: &SplitPlan,
    dir: &Path,
    devices: &[Device],
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    let fit = fit(config, dataset, plan, dir, devices, observer)?;
    let report = report_best(config, dataset, plan, dir, &devices[0], &fit, observer)?;
    Ok(TrainOutcome {
        dir: dir.to_path_buf(),
        best: fit.best.clone(),
        epochs_done: fit.epochs_done,
        stopped_early: fit.stopped_early,
        history: fit.history,
        report,
    })
}

/// What [`fit`] leaves behind besides the files.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub best: Option<BestScore>,
    pub epochs_done: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochMetrics>,
}

/// Trains `config` on `plan` in `dir` (continuing from the newest checkpoint there, if any),
/// writing checkpoints, `metrics.csv` and `curves.png` after every epoch.
pub fn fit(
    config: &TrainingConfig,
    dataset: &Dataset,
    plan: &SplitPlan,
    dir: &Path,
    devices: &[Device],
    observer: &mut dyn Observer,
) -> Result<Fit> {
    let main = devices
        .first()
        .ok_or_else(|| TrainError::config("no device to train on"))?
        .clone()
        .inner();
    let train_devices: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let seed = config.seed;
    train_devices[0].seed(stream_seed(seed, STREAM_INIT, 0, 0, 0));
    let mut model = config.model.init(&train_devices[0]);
    let mut optimizer = optim::build(&config.optimizer);
    let mut schedule = LrSchedule::new(&config.schedule, config.optimizer.lr, config.epochs);
    let mut state = TrainState::new(seed);

    if let Some(checkpoint) = checkpoint::latest(dir) {
        let (loaded, loaded_optimizer, loaded_state) =
            checkpoint::load(&checkpoint, model, optimizer)?;
        (model, optimizer, state) = (loaded, loaded_optimizer, loaded_state);
        schedule.state = state.schedule.clone();
        observer.note(&format!(
            "resuming after epoch {} from {}",
            state.epochs_done,
            checkpoint.display()
        ));
    } else if let Some(init) = &config.init {
        let imported = model.load_torchvision_backbone(&config.model.blocks(), init)?;
        observer.note(&format!(
            "backbone initialised from {}: {} tensors loaded, {} missing",
            init.display(),
            imported.applied.len(),
            imported.missing.len()
        ));
    }

    let summary = config.model.summary();
    observer.run_started(&RunStart {
        dir: dir.to_path_buf(),
        first_epoch: state.epochs_done,
        epochs: config.epochs,
        train_samples: plan.train.len(),
        select_samples: plan.select.len(),
        select_name: plan.select_name.clone(),
        params: summary.total_params,
        macs: summary.total_macs,
        devices: devices.iter().map(|d| format!("{d:?}")).collect(),
    });

    let size = config.model.input_size as u32;
    let batcher = Batcher::new(size).with_augment(config.augment.clone(), seed);
    let eval_settings = EvalSettings {
        input_size: size,
        batch_size: config.eval_batch_size,
        tta: None,
    };
    let classes = dataset.num_classes();

    while state.epochs_done < config.epochs && !state.stopped_early {
        let epoch = state.epochs_done;
        let strata = config.balanced_batches.then(|| {
            plan.train
                .iter()
                .map(|&i| dataset.samples[i].label)
                .collect::<Vec<_>>()
        });
        let batches = epoch_batches(
            &plan.train,
            config.batch_size,
            seed,
            epoch,
            strata.as_deref(),
        );
        observer.epoch_started(epoch + 1, config.epochs, batches.len());
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = config.optimizer.lr;
        for (b, indices) in batches.iter().enumerate() {
            lr = schedule.lr(epoch, b, batches.len());
            let step = Step {
                dataset,
                batcher: &batcher,
                config,
                epoch,
                batch: b,
                classes,
            };
            let (mut grads, loss, hits) = step.run(&model, indices, &train_devices)?;
            if !loss.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch: epoch + 1,
                    batch: b + 1,
                    loss,
                });
            }
            if let Some(max_norm) = config.optimizer.clip_grad_norm {
                optim::clip_global_norm(&mut grads, &model, max_norm);
            }
            model = optimizer.step(lr, model, grads);
            loss_sum += loss as f64 * indices.len() as f64;
            correct += hits;
            seen += indices.len();
            observer.batch_done(&BatchProgress {
                epoch: epoch + 1,
                batch: b + 1,
                batches: batches.len(),
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_sec: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
                lr,
            });
            if observer.should_abort() {
                return Err(TrainError::Interrupted {
                    epoch: epoch + 1,
                    batch: b + 1,
                });
            }
        }
        let train_seconds = started.elapsed().as_secs_f64();

        observer.evaluation_started(&plan.select_name, plan.select.len());
        let selection = evaluate(
            &model.valid(),
            dataset,
            &plan.select,
            eval_settings,
            &ClassMatching::identity(classes),
            &main,
            |n| observer.evaluation_progress(n),
        );
        observer.evaluation_done();
        schedule.epoch_end(selection.loss);
        let improved = state
            .best
            .as_ref()
            .is_none_or(|b| b.is_beaten_by(selection.accuracy(), selection.loss));
        if improved {
            let best = dir.join(checkpoint::BEST_WEIGHTS);
            save_module(&model, &best).map_err(|e| TrainError::io(&best, e))?;
            state.best = Some(BestScore {
                epoch: epoch + 1,
                accuracy: selection.accuracy(),
                loss: selection.loss,
            });
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        let row = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: selection.loss,
            val_accuracy: selection.accuracy(),
            lr,
            images_per_sec: seen as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
        };
        state.history.push(row.clone());
        state.epochs_done = epoch + 1;
        state.schedule = schedule.state.clone();
        state.stopped_early = config
            .early_stopping
            .is_some_and(|p| state.epochs_without_improvement >= p);
        checkpoint::save(dir, &model, &optimizer, &state)?;
        write_history(dir, &state.history, &plan.select_name)?;
        observer.epoch_done(&row, improved);
        if state.stopped_early {
            observer.note(&format!(
                "early stopping: no better {} accuracy for {} epochs",
                plan.select_name, state.epochs_without_improvement
            ));
        }
        if state.epochs_done < config.epochs && !state.stopped_early && observer.should_stop() {
            return Err(TrainError::Stopped {
                epoch: state.epochs_done,
            });
        }
    }
    Ok(Fit {
        best: state.best,
        epochs_done: state.epochs_done,
        stopped_early: state.stopped_early,
        history: state.history,
    })
}

/// `metrics.csv` and `curves.png` for the epochs so far.
fn write_history(dir: &Path, history: &[EpochMetrics], select_name: &str) -> Result<()> {
    checkpoint::write_atomic(
        &dir.join(checkpoint::METRICS_FILE),
        EpochMetrics::csv(history).as_bytes(),
    )?;
    plot::curves(history, select_name, &dir.join(checkpoint::CURVES_FILE))
}

/// The batches of an epoch: a seeded shuffle; a last batch of one sample (which batch norm
/// cannot normalise in training mode) joins the batch before it.
///
/// With `labels` (the label of each of `indices`), the shuffle is stratified: each class's
/// samples, in their shuffled order, are spread evenly over the epoch, so that every run of
/// `batch_size` samples holds the classes in their overall proportions.
pub fn epoch_batches(
    indices: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
    labels: Option<&[usize]>,
) -> Vec<Vec<usize>> {
    let shuffled = BatchIndices::shuffled(indices, batch_size, seed, epoch);
    let mut batches: Vec<Vec<usize>> = match labels {
        None => shuffled.collect(),
        Some(labels) => {
            let label_of: std::collections::HashMap<usize, usize> = indices
                .iter()
                .copied()
                .zip(labels.iter().copied())
                .collect();
            let order = shuffled.order();
            let mut count = std::collections::HashMap::<usize, usize>::new();
            for i in order {
                *count.entry(label_of[i]).or_default() += 1;
            }
            // The j-th of a class's n samples sits at (j + 0.5) / n of the epoch; ties go to
            // the shuffled order.
            let mut seen = std::collections::HashMap::<usize, usize>::new();
            let mut keyed: Vec<(f64, usize, usize)> = order
                .iter()
                .enumerate()
                .map(|(rank, &i)| {
                    let label = label_of[&i];
                    let j = seen.entry(label).or_default();
                    let key = (*j as f64 + 0.5) / count[&label] as f64;
                    *j += 1;
                    (key, rank, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let order: Vec<usize> = keyed.into_iter().map(|(_, _, i)| i).collect();
            BatchIndices::sequential(&order, batch_size).collect()
        }
    };
    if batches.len() >= 2 && batches.last().is_some_and(|b| b.len() == 1) {
        let single = batches.pop().expect("checked above");
        batches.last_mut().expect("checked above").extend(single);
    }
    batches
}

/// A shard of a batch: its position and its samples.
type Shard<'a> = (usize, &'a [usize]);

/// One optimisation step's forward and backward passes.
struct Step<'a> {
    dataset: &'a Dataset,
    batcher: &'a Batcher,
    config: &'a TrainingConfig,
    epoch: usize,
    batch: usize,
    classes: usize,
}

impl Step<'_> {
    /// Gradients of the batch's mean loss (summed over devices), the loss and the number of
    /// correctly classified samples (against their own labels, before mixing).
    fn run(
        &self,
        model: &EfeaNet,
        indices: &[usize],
        devices: &[Device],
    ) -> Result<(GradientsParams, f32, usize)> {
        // Each device needs two samples for batch norm.
        let shards = devices.len().min(indices.len() / 2).max(1);
        if shards == 1 {
            let (grads, loss, hits) = self.shard(model, indices, 0, indices.len(), &devices[0]);
            return Ok((grads, loss, hits));
        }
        let chunk = indices.len().div_ceil(shards);
        // Shards that share a device (`cpu,cpu`) run one after another on one thread: each
        // shard seeds its device's random generator (dropout), and the CPU backend has one
        // generator per process.
        let mut groups: Vec<(&Device, Vec<Shard>)> = Vec::new();
        for ((shard, part), device) in indices.chunks(chunk).enumerate().zip(devices) {
            match groups.iter_mut().find(|(d, _)| *d == device) {
                Some((_, shards)) => shards.push((shard, part)),
                None => groups.push((device, vec![(shard, part)])),
            }
        }
        let results: Vec<Vec<(GradientsParams, f32, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .map(|(device, shards)| {
                    let replica = model.clone().fork(device);
                    scope.spawn(move || {
                        shards
                            .iter()
                            .map(|&(shard, part)| {
                                self.shard(&replica, part, shard, indices.len(), device)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a training worker panicked"))
                .collect()
        });
        let main = &devices[0];
        let mut accumulator = GradientsAccumulator::<EfeaNet>::new();
        let (mut loss, mut hits) = (0.0f32, 0usize);
        // A shard's loss is its part's mean; the batch's is their mean weighted by size.
        let sizes = groups
            .iter()
            .flat_map(|(_, shards)| shards.iter().map(|(_, p)| p.len()));
        for ((grads, shard_loss, shard_hits), size) in results.into_iter().flatten().zip(sizes) {
            accumulator.accumulate(model, grads.to_device(main, model));
            loss += shard_loss * size as f32 / indices.len() as f32;
            hits += shard_hits;
        }
        Ok((accumulator.grads(), loss, hits))
    }

    /// Forward and backward of one part of the batch on one device; its loss is weighted by
    /// its share of the batch so that the shards' gradients sum to the batch's.
    fn shard(
        &self,
        model: &EfeaNet,
        indices: &[usize],
        shard: usize,
        batch_len: usize,
        device: &Device,
    ) -> (GradientsParams, f32, usize) {
        let seed = self.config.seed;
        device.seed(stream_seed(
            seed,
            STREAM_BACKEND,
            self.epoch,
            self.batch,
            shard,
        ));
        let n = indices.len();
        let samples: Vec<_> = indices.iter().map(|&i| &self.dataset.samples[i]).collect();
        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        let mut targets = training_targets(
            &samples,
            self.config.data.ferplus_labels,
            self.classes,
            self.config.regularization.label_smoothing,
        );
        let mut images = input(
            self.batcher.batch(self.dataset, indices, self.epoch),
            device,
        );
        let mut rng = Rng::new(stream_seed(seed, STREAM_MIX, self.epoch, self.batch, shard));
        if let Some(mix) = Mix::draw(
            &self.config.regularization,
            n,
            self.config.model.input_size,
            &mut rng,
        ) {
            images = mix.images(images);
            targets = mix.targets(&targets, self.classes);
        }
        let logits = model.forward(images);
        let loss = soft_cross_entropy(logits.clone(), matrix(targets, n, self.classes, device));
        let weighted = if n == batch_len {
            loss.clone()
        } else {
            loss.clone().mul_scalar(n as f32 / batch_len as f32)
        };
        let grads = GradientsParams::from_grads(weighted.backward(), model);
        let hits = argmax_rows(logits.detach())
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        (grads, loss.into_scalar::<f32>(), hits)
    }
}

/// Scores the best checkpoint on every reported split (plainly, and with ten crops when the
/// config asks), writes `report.json`, `report.md` and `confusion.png`.
fn report_best(
    config: &TrainingConfig,
    dataset: &Dataset,
    plan: &SplitPlan,
    dir: &Path,
    device: &Device,
    fit: &Fit,
    observer: &mut dyn Observer,
) -> Result<Report> {
    let device = device.clone().inner();
    let mut model = config.model.init(&device);
    efea_model::checkpoint::load_module(&mut model, &dir.join(checkpoint::BEST_WEIGHTS))?;
    let model = model.valid();
    let matching = ClassMatching::identity(dataset.num_classes());
    let splits = score_splits(
        config,
        dataset,
        &plan.reports,
        &model,
        &matching,
        &device,
        observer,
    );
    let report = Report::new(&config.model, dataset, Some(plan), fit.best.clone(), splits);
    report::write(&report, dir)?;
    Ok(report)
}

/// Scores `model` on each split, plainly and (if the config asks) with ten crops, its outputs
/// read as the dataset's classes through `matching`.
pub fn score_splits(
    config: &TrainingConfig,
    dataset: &Dataset,
    splits: &[(String, Vec<usize>)],
    model: &EfeaNet,
    matching: &ClassMatching,
    device: &Device,
    observer: &mut dyn Observer,
) -> Vec<SplitReport> {
    let mut out = Vec::new();
    let mut ttas = vec![None];
    if config.report_tencrop {
        ttas.push(Some(Tta::TenCrop(config.tencrop_side())));
    }
    for (name, indices) in splits {
        for &tta in &ttas {
            let settings = EvalSettings {
                input_size: config.model.input_size as u32,
                batch_size: config.eval_batch_size,
                tta,
            };
            let label = match tta {
                Some(t) => format!("{name} ({})", t.name()),
                None => name.clone(),
            };
            observer.evaluation_started(&label, indices.len());
            let evaluation = evaluate(model, dataset, indices, settings, matching, device, |n| {
                observer.evaluation_progress(n)
            });
            observer.evaluation_done();
            out.push(SplitReport::new(name, tta, &evaluation, &dataset.classes));
        }
    }
    out
}

/// Training and inference throughput of a network, images per second, measured over `steps`
/// batches after one warm-up batch (random inputs; no data loading).
pub fn throughput(
    model_config: &efea_model::EfeaNetConfig,
    batch: usize,
    steps: usize,
    device: &Device,
) -> (f64, f64) {
    use burn::tensor::{Distribution, Int, Tensor};
    let ad = device.clone().autodiff();
    let plain = device.clone().inner();
    let mut model = model_config.init(&ad);
    let mut optimizer = optim::build(&crate::config::OptimizerConfig::default());
    let s = model_config.input_size;
    let input = |d: &Device| {
        Tensor::<4>::random(
            [batch, model_config.in_channels, s, s],
            Distribution::Normal(0.0, 1.0),
            d,
        )
    };
    let labels: Vec<usize> = (0..batch).map(|i| i % model_config.num_classes).collect();
    let mut train_step = |model: EfeaNet| {
        let targets = matrix(
            soft_targets(&labels, &vec![None; batch], model_config.num_classes, 0.0),
            batch,
            model_config.num_classes,
            &ad,
        );
        let loss = soft_cross_entropy(model.forward(input(&ad)), targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optimizer.step(1e-3, model, grads);
        let _ = model.stem.conv.weight.val().sum().into_scalar::<f32>();
        model
    };
    model = train_step(model);
    let start = Instant::now();
    for _ in 0..steps {
        model = train_step(model);
    }
    let train = (steps * batch) as f64 / start.elapsed().as_secs_f64();
    let valid = model.valid();
    let _ = argmax_rows(valid.forward(input(&plain)));
    let start = Instant::now();
    for _ in 0..steps {
        let _: Tensor<1, Int> = valid.forward(input(&plain)).argmax(1).reshape([batch]);
        let _ = plain.sync();
    }
    let infer = (steps * batch) as f64 / start.elapsed().as_secs_f64();
    (train, infer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    #[test]
    fn a_last_batch_of_one_joins_the_one_before() {
        let indices: Vec<usize> = (0..9).collect();
        let batches = epoch_batches(&indices, 4, 0, 0, None);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 5]);
        let batches = epoch_batches(&indices[..6], 4, 0, 0, None);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 2]);
    }

    #[test]
    fn balanced_batches_hold_every_class_and_every_sample_once() {
        // 7 classes of 12 samples each, in class blocks.
        let indices: Vec<usize> = (100..184).collect();
        let labels: Vec<usize> = (0..84).map(|k| k / 12).collect();
        let batches = epoch_batches(&indices, 14, 3, 0, Some(&labels));
        assert_eq!(batches.len(), 6);
        for batch in &batches {
            let mut counts = [0; 7];
            for &i in batch {
                counts[(i - 100) / 12] += 1;
            }
            assert_eq!(counts, [2; 7], "{batch:?}");
        }
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        assert_eq!(all, indices);
        assert_ne!(
            batches,
            epoch_batches(&indices, 14, 3, 1, Some(&labels)),
            "each epoch reshuffles"
        );
    }

    /// The largest difference between two sets of gradients of `module`'s parameters.
    struct MaxDifference<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        max: f32,
        compared: usize,
    }

    impl burn::module::ModuleVisitor for MaxDifference<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            match (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) {
                (Some(a), Some(b)) => {
                    let difference: f32 = (a - b).abs().max().into_scalar();
                    self.max = self.max.max(difference);
                    self.compared += 1;
                }
                (None, None) => {}
                _ => self.max = f32::INFINITY,
            }
        }
    }

    /// Two replicas of `device` given one batch sum the gradients of their shards: the
    /// reference is computed another way, one graph that holds both halves (each normalised
    /// by its own batch statistics, as on its own replica), the batch's mean loss and one
    /// backward pass, on the same backend, so both see the same activations and any
    /// difference is the sharding's.
    fn check_split_sums_shards(device: &Device, tolerance: f32) {
        let mut config = TrainingConfig::demo();
        // No random stream inside the step (dropout masks, mixing), so that the reference
        // below sees the very same batches.
        config.model = efea_model::EfeaNetConfig::preset(efea_model::Preset::Full)
            .with_width_mult(0.25)
            .with_input_size(32)
            .with_dropout(0.0);
        config.regularization.mixup_alpha = 0.0;
        config.regularization.cutmix_alpha = 0.0;
        config.data.path = Some("count=70,level=easy".into());
        let dataset = splits::load_dataset(&config).unwrap();
        let batcher = Batcher::new(32).with_augment(config.augment.clone(), config.seed);
        let classes = dataset.num_classes();
        let step = Step {
            dataset: &dataset,
            batcher: &batcher,
            config: &config,
            epoch: 0,
            batch: 0,
            classes,
        };
        let model = config.model.init(device);
        let indices: Vec<usize> = (0..12).collect();

        let (split, loss, hits) = step
            .run(&model, &indices, &[device.clone(), device.clone()])
            .unwrap();

        let half = |part: &[usize]| {
            let samples: Vec<_> = part.iter().map(|&i| &dataset.samples[i]).collect();
            let targets = training_targets(
                &samples,
                config.data.ferplus_labels,
                classes,
                config.regularization.label_smoothing,
            );
            let images = input(batcher.batch(&dataset, part, 0), device);
            let logits = model.forward(images);
            let hits = argmax_rows(logits.clone().detach())
                .iter()
                .zip(&samples)
                .filter(|(p, s)| **p == s.label)
                .count();
            let loss = soft_cross_entropy(logits, matrix(targets, part.len(), classes, device));
            (loss, hits)
        };
        let first_alone = GradientsParams::from_grads(half(&indices[..6]).0.backward(), &model);
        let (first, first_hits) = half(&indices[..6]);
        let (second, second_hits) = half(&indices[6..]);
        let mean = (first + second).div_scalar(2.0);
        let reference_loss: f32 = mean.clone().into_scalar();
        let reference = GradientsParams::from_grads(mean.backward(), &model);

        let difference = |a: &GradientsParams, b: &GradientsParams| {
            let mut difference = MaxDifference {
                a,
                b,
                max: 0.0,
                compared: 0,
            };
            model.visit(&mut difference);
            assert!(difference.compared > 100, "{} tensors", difference.compared);
            difference.max
        };
        let max = difference(&split, &reference);
        assert!(max < tolerance, "gradients differ by {max}");
        // The comparison can fail: half the batch alone gives other gradients.
        let half_only = difference(&first_alone, &reference);
        assert!(half_only > 1e-3, "one half differs by only {half_only}");
        assert!(
            (loss - reference_loss).abs() < tolerance,
            "{loss} vs {reference_loss}"
        );
        assert_eq!(hits, first_hits + second_hits);
    }

    #[test]
    fn a_batch_split_over_two_devices_sums_the_gradients_of_its_shards() {
        check_split_sums_shards(&Device::flex().autodiff(), 1e-5);
    }

    /// `--devices wgpu:0,wgpu:0`: two replicas on one wgpu device (in CI, Mesa's lavapipe).
    /// The reference runs on wgpu too: against the CPU's gradients the whole network differs
    /// wherever an activation input sits within float32 round-off of a ReLU6 kink on one
    /// backend and not the other (README, Backends), which says nothing about the sharding.
    #[cfg(feature = "wgpu")]
    #[test]
    fn two_wgpu_replicas_sum_the_gradients_of_their_shards() {
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice).autodiff();
        check_split_sums_shards(&wgpu, 1e-5);
    }

    #[test]
    fn stream_seeds_differ_by_position() {
        let a = stream_seed(1, STREAM_MIX, 0, 0, 0);
        assert_eq!(a, stream_seed(1, STREAM_MIX, 0, 0, 0));
        assert_ne!(a, stream_seed(1, STREAM_MIX, 1, 0, 0));
        assert_ne!(a, stream_seed(1, STREAM_MIX, 0, 1, 0));
        assert_ne!(a, stream_seed(1, STREAM_BACKEND, 0, 0, 0));
    }
}
