//! `efea eval`: score a trained network on any split of any dataset and write the same report
//! as training does. The work is `efea_train::evaluate_run`.

use std::path::PathBuf;

use burn::tensor::Device;
use clap::{Args, ValueEnum};
use efea_data::classes::ClassMap;
use efea_model::checkpoint::CONFIG_FILE;
use efea_train::{EvalRequest, evaluate_run};

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
    let request = EvalRequest {
        model: args.model.clone(),
        dataset: args.dataset.clone(),
        data: args.data.clone(),
        splits: args.splits.clone(),
        tencrop: args.tta.is_some(),
        class_map: args.class_map.clone().unwrap_or_default(),
        out: args.out.clone(),
        batch_size: args.batch_size,
    };
    let mut progress = Progress::new(&args.devices);
    let outcome = evaluate_run(&request, &device, &mut progress).map_err(user_error)?;
    if outcome.left_out > 0 {
        println!(
            "{} samples of classes the network does not score are left out",
            outcome.left_out
        );
    }
    for split in &outcome.report.splits {
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
        outcome.out.join("report.md").display(),
        outcome.config_path.display()
    );
    Ok(())
}
