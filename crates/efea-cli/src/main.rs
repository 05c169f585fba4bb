//! `efea`: facial expression recognition with the EFEA-MSM network, on the command line.
//!
//! Each subcommand lives in its own module and only parses arguments, shows progress and
//! prints; the work is done by the library crates.

mod model;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(cmd) => model::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line for the user; the chain of causes joined, never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
