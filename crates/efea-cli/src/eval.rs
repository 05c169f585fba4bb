//! `efea eval`: score a trained network on any split of any dataset and write the same report
//! as training does.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use efea_data::classes::{ClassMap, match_classes};
use efea_data::{DatasetKind, LoadOptions};
use efea_model::checkpoint::{CONFIG_FILE, load_model, resolve};
use efea_train::{Report, TrainingConfig, score_splits};

use crate::device::DeviceArgs;
use crate::progress::Progress;
use crate::train::user_error;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (its best.bpk) or a checkpoint file with config.json beside it.
    #[arg(long, value_name = "RUN_DIR|CHECKPOINT")]
    model: PathBuf,
    /// Dataset kind; default: the one the run trained on.
    #[arg(long)]
    dataset: Option<String>,
    /// File or folder of the dataset; default: the one the run trained on.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Splits to score (repeatable); default: every split but the training one, or all samples
    /// of a dataset without splits.
    #[arg(long = "split")]
    splits: Vec<String>,
    /// Test-time augmentation (the report then has each split with and without it).
    #[arg(long, value_enum)]
    tta: Option<TtaArg>,
    /// Classes that do not match by name, as `network=dataset,...`. The network's outputs are
    /// matched to the dataset's classes by name, case-insensitively and with the usual
    /// variants (anger/angry, happiness/happy, sadness/sad, ...), whatever their order; this
    /// says what to do with the rest: `contempt=disgust` scores the network's contempt as the
    /// dataset's disgust (several outputs may go to one class, their probabilities add),
    /// `contempt=-` ignores that output (the others are renormalised), `-=contempt` leaves
    /// the dataset's contempt samples out.
    #[arg(long, value_name = "NETWORK=DATASET,...")]
    class_map: Option<ClassMap>,
    /// Report directory (default: `<run>/eval-<dataset>`).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[command(flatten)]
    devices: DeviceArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TtaArg {
    /// Four corners and the centre, and their mirrors; probabilities averaged.
    Tencrop,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device: Device = args.devices.devices()?.remove(0);
    let (spec, model) = load_model(&args.model, &device)?;
    let (_, config_path) = resolve(&args.model)?;
    // The whole training config when there is one (dataset and protocol defaults).
    let trained = TrainingConfig::read(&config_path).ok();
    let mut config = trained.clone().unwrap_or_default();
    config.model = spec.model.clone();
    config.classes = spec.classes.clone();
    config.eval_batch_size = args.batch_size;
    config.report_tencrop = args.tta.is_some();

    let kind: DatasetKind = match (&args.dataset, &trained) {
        (Some(name), _) => name.parse()?,
        (None, Some(trained)) => trained.data.kind().map_err(user_error)?,
        (None, None) => bail!(
            "{} has no dataset to default to: pass --dataset",
            config_path.display()
        ),
    };
    let path = match (&args.data, &trained) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(trained))
            if args.dataset.is_none() || trained.data.kind().ok() == Some(kind) =>
        {
            trained.data.path.clone()
        }
        _ => None,
    };
    let mut options = LoadOptions {
        size: spec.model.input_size as u32,
        ..LoadOptions::default()
    };
    if let (Some(trained), None) = (&trained, &args.dataset) {
        options.skip_bad = trained.data.skip_bad;
        options.ckplus_neutral = trained.data.ckplus_neutral;
        options.face = trained.face;
    }
    let dataset = efea_data::load(kind, path.as_deref(), &options)?;
    if !dataset.labelled {
        bail!("`{}` has no labels: it cannot be scored", dataset.name);
    }
    let matching = match_classes(
        &spec.classes,
        &dataset.classes,
        &args.class_map.clone().unwrap_or_default(),
    )
    .with_context(|| format!("{} on `{}`", args.model.display(), dataset.name))?;

    let splits: Vec<(String, Vec<usize>)> = if !args.splits.is_empty() {
        args.splits
            .iter()
            .map(|name| Ok((name.clone(), dataset.split(name)?.to_vec())))
            .collect::<Result<_, efea_data::DataError>>()?
    } else {
        let others: Vec<(String, Vec<usize>)> = dataset
            .splits
            .iter()
            .filter(|(name, _)| !efea_train::splits::TRAIN_SPLIT_NAMES.contains(&name.as_str()))
            .map(|(name, indices)| (name.clone(), indices.clone()))
            .collect();
        if others.is_empty() {
            vec![("all".to_string(), (0..dataset.len()).collect())]
        } else {
            others
        }
    };

    let left_out: usize = splits
        .iter()
        .flat_map(|(_, indices)| indices)
        .filter(|&&i| !matching.scores(dataset.samples[i].label))
        .count();
    if left_out > 0 {
        println!("{left_out} samples of classes the network does not score are left out");
    }

    let mut progress = Progress::new(&args.devices);
    let reports = score_splits(
        &config,
        &dataset,
        &splits,
        &model,
        &matching,
        &device,
        &mut progress,
    );
    let report = Report::new(&config.model, &dataset, None, None, reports);
    let out = args.out.clone().unwrap_or_else(|| {
        let run_dir = config_path.parent().map(PathBuf::from).unwrap_or_default();
        run_dir.join(format!("eval-{}", dataset.name))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create", out.display()))?;
    efea_train::report::write(&report, &out).map_err(user_error)?;
    for split in &report.splits {
        println!(
            "{:<26} accuracy {:6.2} %   macro-F1 {:.4}   ({} samples, {:.0} img/s)",
            split.title(),
            100.0 * split.accuracy,
            split.macro_f1,
            split.samples,
            split.images_per_sec
        );
    }
    println!(
        "report: {} ({CONFIG_FILE} from {})",
        out.join("report.md").display(),
        config_path.display()
    );
    Ok(())
}
