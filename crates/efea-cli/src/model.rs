//! `efea model ...`: look at the network without training it.

use clap::{Args, Subcommand, ValueEnum};
use efea_model::{EfeaNetConfig, Preset};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Per-layer table: output shape, parameters, multiply-adds.
    Summary(SummaryArgs),
}

/// The ablation presets of MODEL.md, as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum PresetArg {
    Plain,
    Cdsm,
    Msca,
    Full,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Plain => Preset::Plain,
            PresetArg::Cdsm => Preset::Cdsm,
            PresetArg::Msca => Preset::Msca,
            PresetArg::Full => Preset::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SummaryFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Ablation of MODEL.md.
    #[arg(long, value_enum, default_value = "full")]
    preset: PresetArg,
    /// Input side in pixels.
    #[arg(long, default_value_t = 48)]
    input: usize,
    /// Number of classes.
    #[arg(long, default_value_t = 7)]
    classes: usize,
    /// Input channels (1 gray, 3 RGB).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// MobileNetV2 width multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    #[arg(long, value_enum, default_value = "table")]
    format: SummaryFormat,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Summary(args) => summary(args),
    }
}

fn summary(args: SummaryArgs) -> anyhow::Result<()> {
    let config = EfeaNetConfig::preset(args.preset.into())
        .with_input_size(args.input)
        .with_num_classes(args.classes)
        .with_in_channels(args.channels)
        .with_width_mult(args.width);
    config.validate().map_err(anyhow::Error::msg)?;
    let summary = config.summary();
    if let SummaryFormat::Json = args.format {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<20} {:>16} {:>12} {:>14}",
        "layer", "kind", "output", "params", "mult-adds"
    );
    for layer in &summary.layers {
        let shape = layer
            .output_shape
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<18} {:<20} {:>16} {:>12} {:>14}",
            layer.name, layer.kind, shape, layer.params, layer.macs
        );
    }
    println!(
        "total parameters: {}, multiply-adds: {}",
        summary.total_params, summary.total_macs
    );
    Ok(())
}
