//! The files of a run directory, and resumable training checkpoints.
//!
//! ```text
//! RUN/config.json            TrainingConfig (inference reads `model` and `classes`)
//! RUN/best.bpk               weights of the best epoch on the selection split
//! RUN/last.bpk               weights after the last finished epoch
//! RUN/metrics.csv, curves.png, confusion.png, report.json, report.md
//! RUN/state/epoch-NNNN/      everything to continue after epoch NNNN:
//!     model.bpk, optimizer.bpk, state.json (epoch, best score, schedule, metrics so far)
//! ```
//!
//! A checkpoint directory is filled under a temporary name, synced, then renamed into place,
//! so any `epoch-NNNN` that exists is complete; older ones are removed only after the newer
//! one is in place. A kill at any moment leaves the previous checkpoint readable and loses at
//! most the epoch in progress. The random state is not stored: every random stream is derived
//! from the seed and the position (epoch, batch, sample), so the epoch number restores it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use efea_model::EfeaNet;
use efea_model::checkpoint::{load_module, save_module};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::metrics::EpochMetrics;
use crate::schedule::PlateauState;

pub use efea_model::checkpoint::{BEST_WEIGHTS, CONFIG_FILE};
/// Weights after the last finished epoch.
pub const LAST_WEIGHTS: &str = "last.bpk";
pub const METRICS_FILE: &str = "metrics.csv";
pub const CURVES_FILE: &str = "curves.png";
pub const CONFUSION_FILE: &str = "confusion.png";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
/// Folder of the resumable checkpoints.
pub const STATE_DIR: &str = "state";
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "state.json";
const STATE_FORMAT: &str = "efea-train-state/1";

/// The best epoch so far on the selection split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestScore {
    /// 1-based.
    pub epoch: usize,
    pub accuracy: f64,
    pub loss: f64,
}

impl BestScore {
    /// Higher accuracy wins; equal accuracy, lower loss.
    pub fn is_beaten_by(&self, accuracy: f64, loss: f64) -> bool {
        accuracy > self.accuracy || (accuracy == self.accuracy && loss < self.loss)
    }
}

/// Everything beyond the tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: String,
    /// Epochs finished.
    pub epochs_done: usize,
    /// The seed every random stream derives from (with the epoch and batch).
    pub seed: u64,
    pub best: Option<BestScore>,
    pub epochs_without_improvement: usize,
    pub schedule: PlateauState,
    /// One entry per finished epoch.
    pub history: Vec<EpochMetrics>,
    /// Early stopping ended the run.
    pub stopped_early: bool,
}

impl TrainState {
    pub fn new(seed: u64) -> Self {
        Self {
            format: STATE_FORMAT.into(),
            epochs_done: 0,
            seed,
            best: None,
            epochs_without_improvement: 0,
            schedule: PlateauState::default(),
            history: Vec::new(),
            stopped_early: false,
        }
    }
}

/// [`efea_model::checkpoint::write_atomic`], its error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    efea_model::checkpoint::write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}

fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    match dir.filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch-{epoch:04}")
}

/// Saves the checkpoint after `state.epochs_done` epochs and `last.bpk`, then drops older
/// checkpoints.
pub fn save(
    run: &Path,
    model: &EfeaNet,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
    let states = run.join(STATE_DIR);
    fs::create_dir_all(&states).map_err(|e| TrainError::io(&states, e))?;
    let final_dir = states.join(epoch_dir_name(state.epochs_done));
    let tmp = states.join(format!(".tmp-{}-{}", std::process::id(), state.epochs_done));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_module(model, &tmp.join(MODEL_FILE))
        .map_err(|e| TrainError::io(&tmp.join(MODEL_FILE), e))?;
    let optimizer_path = tmp.join(OPTIMIZER_FILE);
    optimizer
        .save(&optimizer_path)
        .map_err(|e| TrainError::io(&optimizer_path, e))?;
    fs::File::open(&optimizer_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(&optimizer_path, e))?;
    let json = serde_json::to_vec_pretty(state).expect("the state is plain data");
    write_atomic(&tmp.join(STATE_FILE), &json)?;
    sync_dir(Some(&tmp)).map_err(|e| TrainError::io(&tmp, e))?;
    if final_dir.exists() {
        // The same epoch again (a resumed run redid it): the new one is identical.
        fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    sync_dir(Some(&states)).map_err(|e| TrainError::io(&states, e))?;
    let last = run.join(LAST_WEIGHTS);
    save_module(model, &last).map_err(|e| TrainError::io(&last, e))?;
    // Only now is it safe to forget the older checkpoints and any abandoned temporary ones.
    for entry in fs::read_dir(&states)
        .map_err(|e| TrainError::io(&states, e))?
        .flatten()
    {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_epoch = parse_epoch_dir(&name).is_some_and(|e| e < state.epochs_done);
        if stale_epoch || name.starts_with(".tmp-") {
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(())
}

fn parse_epoch_dir(name: &str) -> Option<usize> {
    name.strip_prefix("epoch-")?.parse().ok()
}

/// The newest complete checkpoint of `run`, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    let states = run.join(STATE_DIR);
    fs::read_dir(states)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let epoch = parse_epoch_dir(&entry.file_name().to_string_lossy())?;
            entry
                .path()
                .join(STATE_FILE)
                .is_file()
                .then(|| (epoch, entry.path()))
        })
        .max_by_key(|(epoch, _)| *epoch)
        .map(|(_, path)| path)
}

/// Loads a checkpoint written by [`save`] into `model` (built from the run's config) and
/// `optimizer` (built empty from it).
pub fn load(
    checkpoint: &Path,
    mut model: EfeaNet,
    optimizer: ModuleOptimizer,
) -> Result<(EfeaNet, ModuleOptimizer, TrainState)> {
    let state_path = checkpoint.join(STATE_FILE);
    let text = fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| TrainError::run(&state_path, format!("not a training state: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(TrainError::run(
            &state_path,
            format!(
                "training state format `{}`, expected `{STATE_FORMAT}`",
                state.format
            ),
        ));
    }
    // Restores the parameter ids too, which the optimizer state is keyed by.
    load_module(&mut model, &checkpoint.join(MODEL_FILE))?;
    let optimizer_path = checkpoint.join(OPTIMIZER_FILE);
    let optimizer = optimizer.load(&optimizer_path).map_err(|e| {
        TrainError::run(
            &optimizer_path,
            format!("not a readable optimizer state ({e})"),
        )
    })?;
    Ok((model, optimizer, state))
}

/// The first free `runs/<prefix>-N` (relative to the working directory): where a run goes
/// when its caller names no directory.
pub fn default_run_dir(prefix: &str) -> PathBuf {
    (1..)
        .map(|n| Path::new("runs").join(format!("{prefix}-{n}")))
        .find(|dir| !dir.exists())
        .expect("some run number is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn latest_ignores_incomplete_and_temporary_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let states = dir.path().join(STATE_DIR);
        for name in ["epoch-0002", "epoch-0010", ".tmp-1-11", "epoch-0011"] {
            fs::create_dir_all(states.join(name)).unwrap();
        }
        for name in ["epoch-0002", "epoch-0010", ".tmp-1-11"] {
            fs::write(states.join(name).join(STATE_FILE), "{}").unwrap();
        }
        assert_eq!(latest(dir.path()), Some(states.join("epoch-0010")));
        assert_eq!(latest(&dir.path().join("nothing")), None);
    }
}
