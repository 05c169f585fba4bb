//! `efea`: facial expression recognition with the EFEA-MSM network, on the command line.
//!
//! Each subcommand lives in its own module and only parses arguments, shows progress and
//! prints; the work is done by the library crates.

mod cv;
mod data;
mod device;
mod eval;
mod faces;
mod model;
mod output;
mod predict;
mod progress;
mod serve;
mod train;
mod video;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse where glibc hands large tensor buffers back to the
/// kernel and faults them in again, zeroed, on the next allocation; `efea-bench` measures
/// with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "efea",
    version,
    about = "Facial expression recognition (EFEA-MSM) on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the network: per-layer summary, parameter and multiply-add counts.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Inspect datasets: counts per class and split, folds, augmented previews.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Generate the built-in synthetic expression set in FER2013 CSV or folder layout.
    Synth(data::SynthArgs),
    /// Train a network (no arguments: a demo on the built-in synthetic set).
    Train(Box<train::TrainArgs>),
    /// Score a trained network on any split of any dataset and write a report.
    Eval(Box<eval::EvalArgs>),
    /// Subject-independent k-fold cross-validation; `--ablation` compares the four presets.
    Cv(Box<cv::CvArgs>),
    /// Find the faces in images and classify their expressions (table, JSON, CSV; pictures).
    Predict(Box<predict::PredictArgs>),
    /// Serve the HTTP API and the web page for live expression recognition.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(cmd) => model::run(cmd),
        Command::Data(cmd) => data::run(cmd),
        Command::Synth(args) => data::synth(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(*args),
        Command::Cv(args) => cv::run(*args),
        Command::Predict(args) => predict::run(*args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line for the user; the chain of causes joined, never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Bad input (datasets, images, checkpoints) exits with 2, everything else with 1.
fn exit_code(err: &anyhow::Error) -> u8 {
    let bad_data = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<efea_data::DataError>()
            // A class mismatch is the dataset's (its cause is boxed, so not found by type).
            || matches!(
                cause.downcast_ref::<efea_train::TrainError>(),
                Some(efea_train::TrainError::Classes { .. })
            )
    };
    if err.chain().any(bad_data) { 2 } else { 1 }
}
