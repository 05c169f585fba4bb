//! Run directories as inference reads them (`config.json` with `model` and `classes`, plus
//! `best.bpk`), written from a network in memory: tests, demos and benchmarks of inference
//! get a model without depending on training.

use std::fs;
use std::io;
use std::path::Path;

use burn::tensor::Device;
use efea_model::checkpoint::{BEST_WEIGHTS, CONFIG_FILE, ModelSpec, save_module, write_atomic};
use efea_model::{EfeaNet, EfeaNetConfig};

/// Writes `spec` and `model` as a run directory at `dir` (created if missing).
pub fn write(dir: &Path, spec: &ModelSpec, model: &EfeaNet) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(spec).map_err(io::Error::other)?;
    write_atomic(&dir.join(CONFIG_FILE), (json + "\n").as_bytes())?;
    save_module(model, &dir.join(BEST_WEIGHTS))
}

/// Writes a run directory holding a randomly initialised `config` network (seeded; the
/// device's generator is reseeded) with the given class names.
pub fn write_random(
    dir: &Path,
    config: EfeaNetConfig,
    classes: Vec<String>,
    seed: u64,
) -> io::Result<ModelSpec> {
    let device = Device::flex();
    device.seed(seed);
    let spec = ModelSpec::new(config.with_num_classes(classes.len()), classes);
    let model = spec.model.init(&device);
    write(dir, &spec, &model)?;
    Ok(spec)
}
