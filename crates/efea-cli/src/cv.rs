//! `efea cv`: subject-independent k-fold cross-validation (the CK+ protocol), and with
//! `--ablation` the four presets of MODEL.md over the same folds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use efea_data::DatasetKind;
use efea_model::Preset;
use efea_train::{TrainingConfig, ablation, cross_validate};

use crate::device::DeviceArgs;
use crate::progress::Progress;
use crate::train::{RecipeArgs, default_run_dir, user_error};

#[derive(Debug, Args)]
pub struct CvArgs {
    /// ckplus, ck48, synth (any dataset whose samples name their subject).
    #[arg(long, default_value = "synth")]
    dataset: String,
    /// File or folder of the dataset (for synth: an optional spec such as `count=700`).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    folds: usize,
    /// Cross-validate the four presets (plain, cdsm, msca, full) over the same folds and write
    /// one comparison table.
    #[arg(long)]
    ablation: bool,
    /// Config file (TOML or JSON); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output directory (default: the first free `runs/cv-<dataset>-N`); rerunning with the
    /// same directory and config reuses the folds already finished.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fraction of each training fold held out to choose the epoch.
    #[arg(long)]
    holdout: Option<f64>,
    #[command(flatten)]
    recipe: RecipeArgs,
    #[command(flatten)]
    devices: DeviceArgs,
}

pub fn run(args: CvArgs) -> anyhow::Result<()> {
    let devices = args.devices.devices()?;
    crate::device::compute_on_main_thread(&devices);
    let kind: DatasetKind = args.dataset.parse()?;
    let demo = kind == DatasetKind::Synth && args.config.is_none();
    let mut config = if demo {
        TrainingConfig::cv_demo()
    } else {
        TrainingConfig::paper()
    };
    if let Some(path) = &args.config {
        config = config.merged(path)?;
    }
    config.data.dataset = kind.name().to_string();
    if args.data.is_some() {
        config.data.path = args.data.clone();
    }
    if kind != DatasetKind::Synth && config.data.path.is_none() {
        bail!("--dataset {} needs --data PATH", kind.name());
    }
    if let Some(holdout) = args.holdout {
        config.data.holdout_fraction = holdout;
    }
    args.recipe.apply(&mut config);
    if demo {
        let line = if args.ablation {
            let presets: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            format!(
                "{} networks {}",
                presets.join(", "),
                config.describe_recipe()
            )
        } else {
            config.describe()
        };
        println!("demo, per fold: {line}");
    }
    config.validate().map_err(user_error)?;
    let dataset = efea_train::splits::load_dataset(&config).map_err(user_error)?;
    let prefix = if args.ablation { "ablation" } else { "cv" };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&format!("{prefix}-{}", kind.name())));
    println!(
        "{} samples of {} subjects, {} folds -> {}",
        dataset.len(),
        dataset.subjects().len(),
        args.folds,
        dir.display()
    );
    let mut progress = Progress::new(&args.devices);
    let started = Instant::now();
    if args.ablation {
        let rows = ablation(
            config.clone(),
            &dataset,
            args.folds,
            &dir,
            &devices,
            &mut progress,
        )
        .map_err(user_error)?;
        println!();
        print!(
            "{}",
            efea_train::cv::ablation_markdown(&rows, args.folds, &config)
        );
        println!(
            "\n{} ({:.0} s)",
            dir.join("ablation.md").display(),
            started.elapsed().as_secs_f64()
        );
    } else {
        let outcome = cross_validate(config, &dataset, args.folds, &dir, &devices, &mut progress)
            .map_err(user_error)?;
        let cv = outcome
            .report
            .cross_validation
            .as_ref()
            .expect("cross_validate fills it");
        println!();
        for fold in &cv.folds {
            println!(
                "fold {:>2}: {:6.2} %  ({} samples, {} subjects)",
                fold.fold,
                100.0 * fold.accuracy,
                fold.samples,
                fold.subjects
            );
        }
        println!(
            "accuracy {:.2} % ± {:.2} over {} folds; {} ({:.0} s)",
            100.0 * cv.mean_accuracy,
            100.0 * cv.std_accuracy,
            cv.folds.len(),
            dir.join("report.md").display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
