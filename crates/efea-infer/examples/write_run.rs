//! Writes a run directory holding a randomly initialised network, for the browser test, the
//! benchmarks and demos that must not wait for training:
//! `cargo run -p efea-infer --example write_run -- DIR [WIDTH_MULT] [SEED]`.
//! Its answers are arbitrary (near-uniform probabilities); its speed and shapes are real.

use std::path::PathBuf;

use efea_data::classes::FER2013_CLASSES;
use efea_model::EfeaNetConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: write_run DIR [WIDTH_MULT] [SEED]")?,
    );
    let width: f64 = args.next().map(|w| w.parse()).transpose()?.unwrap_or(1.0);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let config = EfeaNetConfig::new().with_width_mult(width);
    let classes = FER2013_CLASSES.iter().map(|c| c.to_string()).collect();
    efea_infer::run_dir::write_random(&dir, config, classes, seed)?;
    println!("{}", dir.display());
    Ok(())
}
