//! Model checkpoints: the network's tensors in Burn's `burnpack` format, beside a
//! `config.json` that says which network they belong to. A run directory of `efea train` is
//! such a pair (plus the training state), so inference needs nothing but the directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use efea_face::FaceConfig;
use serde::{Deserialize, Serialize};

use crate::{EfeaNet, EfeaNetConfig, WeightsError};

/// The run directory's description of the network, read by inference.
pub const CONFIG_FILE: &str = "config.json";
/// The checkpoint that inference loads from a run directory.
pub const BEST_WEIGHTS: &str = "best.bpk";

/// What inference needs to know of a trained network. `config.json` may hold more (the whole
/// training config); those fields are ignored here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub model: EfeaNetConfig,
    /// Class names in the order of the network's outputs.
    pub classes: Vec<String>,
    /// How the training faces were found and framed; inference frames faces the same way.
    /// Absent from run directories older than the choice (they were all framed by the
    /// default).
    #[serde(default)]
    pub face: FaceConfig,
}

impl ModelSpec {
    /// A spec framed as efea frames faces by default.
    pub fn new(model: EfeaNetConfig, classes: Vec<String>) -> Self {
        Self {
            model,
            classes,
            face: FaceConfig::default(),
        }
    }

    pub fn read(path: &Path) -> Result<Self, WeightsError> {
        let text = fs::read_to_string(path).map_err(|e| read_error(path, e.to_string()))?;
        let spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| read_error(path, format!("not an efea config: {e}")))?;
        spec.model
            .validate()
            .map_err(|e| read_error(path, format!("invalid model config: {e}")))?;
        spec.face
            .framing()
            .check()
            .map_err(|e| read_error(path, format!("invalid face framing: {e}")))?;
        if spec.classes.len() != spec.model.num_classes {
            return Err(read_error(
                path,
                format!(
                    "{} class names for a {}-class network",
                    spec.classes.len(),
                    spec.model.num_classes
                ),
            ));
        }
        Ok(spec)
    }
}

fn read_error(path: &Path, message: String) -> WeightsError {
    WeightsError::Read {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes `module`'s tensors to `path` atomically: a reader sees the old file or the new
/// one, never a partial one (temporary file in the same directory, fsync, rename).
pub fn save_module<M: Module>(module: &M, path: &Path) -> io::Result<()> {
    // `valid()` folds the running statistics that training threads have updated into the
    // module; visiting the module as it is would save stale ones.
    let module = module.valid();
    replace_atomically(path, |tmp| {
        let mut store = BurnpackStore::from_file(tmp)
            .auto_extension(false)
            .overwrite(true);
        module
            .save_into(&mut store)
            .map_err(|e| io::Error::other(format!("{}: {e}", tmp.display())))
    })
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a part:
/// what every report, chart and picture of efea is written with.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_atomically(path, |tmp| fs::write(tmp, bytes))
}

/// `write` fills a temporary file beside `path`, which is then synced and renamed over
/// `path` (and the rename made durable); on failure the temporary file is removed.
fn replace_atomically(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let result = write(&tmp)
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Loads tensors saved by [`save_module`] into `module`, which must have exactly the same
/// structure: a truncated file, a foreign file or another architecture is an error naming
/// the file.
pub fn load_module<M: Module>(module: &mut M, path: &Path) -> Result<(), WeightsError> {
    if !path.is_file() {
        return Err(read_error(path, "no such file".into()));
    }
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| read_error(path, format!("not a readable efea checkpoint ({e})")))?;
    let mismatch = |message: String| WeightsError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    if let Some(first) = result.errors.first() {
        return Err(mismatch(format!(
            "checkpoint of another architecture: {first}"
        )));
    }
    if !result.missing.is_empty() || !result.unused.is_empty() {
        let first = result
            .missing
            .first()
            .map(|(p, _)| format!("missing `{p}`"))
            .or_else(|| result.unused.first().map(|p| format!("unexpected `{p}`")))
            .unwrap_or_default();
        return Err(mismatch(format!(
            "checkpoint of another architecture: {} missing and {} unexpected tensors ({first})",
            result.missing.len(),
            result.unused.len()
        )));
    }
    Ok(())
}

/// Where the weights and the config of `--model PATH` are: a run directory holds
/// `config.json` and `best.bpk`; a checkpoint file has `config.json` in its directory (or
/// the directory above, for `RUN/checkpoints/*.bpk`).
pub fn resolve(path: &Path) -> Result<(PathBuf, PathBuf), WeightsError> {
    let weights = if path.is_dir() {
        path.join(BEST_WEIGHTS)
    } else {
        path.to_path_buf()
    };
    let config = weights
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|c| c.is_file())
        .ok_or_else(|| read_error(path, format!("no {CONFIG_FILE} beside the checkpoint")))?;
    Ok((weights, config))
}

/// Loads a trained network for inference (eval mode) from a run directory or checkpoint.
pub fn load_model(path: &Path, device: &Device) -> Result<(ModelSpec, EfeaNet), WeightsError> {
    let (weights, config) = resolve(path)?;
    let spec = ModelSpec::read(&config)?;
    let mut model = spec.model.init(device);
    load_module(&mut model, &weights)?;
    Ok((spec, model.valid()))
}
