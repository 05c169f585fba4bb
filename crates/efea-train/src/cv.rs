//! Subject-independent k-fold cross-validation (the CK+ protocol: no person in two folds) and
//! the ablation of MODEL.md over the same folds.
//!
//! ```text
//! CV/config.json, report.json, report.md, confusion.png (pooled over the folds)
//! CV/fold-01/ ...            a full run directory per fold (resumable; a finished fold is reused)
//! ABLATION/ablation.md, ablation.json, ablation.csv
//! ABLATION/plain/, cdsm/, msca/, full/   one CV directory per preset
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use efea_data::Dataset;
use efea_data::folds::{fold_subjects, subject_folds};
use efea_model::{EfeaNetConfig, Preset};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, REPORT_JSON};
use crate::config::TrainingConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::Evaluation;
use crate::metrics::Confusion;
use crate::observer::Observer;
use crate::report::{self, CrossValidation, FoldResult, Report, SplitReport, mean_std};
use crate::splits::fold_plan;
use crate::train::{adopt_classes, fit, score_splits, write_config};

/// How a cross-validation went.
#[derive(Debug, Clone, PartialEq)]
pub struct CvOutcome {
    pub dir: PathBuf,
    pub report: Report,
    /// Mean training images per second over every epoch of every fold.
    pub train_images_per_sec: f64,
    /// Mean inference images per second over the folds' test passes.
    pub infer_images_per_sec: f64,
}

/// Runs `folds`-fold subject-independent cross-validation of `config` on `dataset` in `dir`.
/// Each fold trains on the other folds less a stratified holdout that picks the epoch, and is
/// scored on its own subjects. Folds already finished in `dir` are reused, an interrupted one
/// continues from its checkpoint.
pub fn cross_validate(
    mut config: TrainingConfig,
    dataset: &Dataset,
    folds: usize,
    dir: &Path,
    devices: &[Device],
    observer: &mut dyn Observer,
) -> Result<CvOutcome> {
    config.validate()?;
    adopt_classes(&mut config, dataset)?;
    // A fold reports its test subjects plainly (the CK+ protocol has no test-time augmentation).
    config.report_tencrop = false;
    let assignment = subject_folds(dataset, folds, config.seed)?;
    let subjects = fold_subjects(dataset, &assignment);
    fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    check_same_config(&config, dir)?;
    write_config(&config, dir)?;

    let mut results = Vec::with_capacity(folds);
    let mut pooled = Confusion::new(dataset.num_classes());
    let (mut train_speed, mut infer_speed) = (Vec::new(), Vec::new());
    let mut loss_sum = 0.0;
    for fold in 0..folds {
        let fold_dir = dir.join(format!("fold-{:02}", fold + 1));
        observer.note(&format!(
            "fold {}/{folds}: {} test subjects, {} test samples",
            fold + 1,
            subjects[fold].len(),
            assignment[fold].len()
        ));
        let (report, history_speed) = match finished_fold(&config, &fold_dir)? {
            Some(report) => {
                observer.note(&format!(
                    "fold {} already finished in {}",
                    fold + 1,
                    fold_dir.display()
                ));
                let speeds = read_speeds(&fold_dir);
                (report, speeds)
            }
            None => {
                fs::create_dir_all(&fold_dir).map_err(|e| TrainError::io(&fold_dir, e))?;
                check_same_config(&config, &fold_dir)?;
                write_config(&config, &fold_dir)?;
                let plan = fold_plan(
                    dataset,
                    &assignment,
                    fold,
                    config.data.holdout_fraction,
                    config.seed,
                )?;
                let fitted = fit(&config, dataset, &plan, &fold_dir, devices, observer)?;
                let device = devices[0].clone().inner();
                let mut model = config.model.init(&device);
                efea_model::checkpoint::load_module(
                    &mut model,
                    &fold_dir.join(checkpoint::BEST_WEIGHTS),
                )?;
                let splits = score_splits(
                    &config,
                    dataset,
                    &plan.reports,
                    &model.valid(),
                    &efea_data::classes::ClassMatching::identity(dataset.num_classes()),
                    &device,
                    observer,
                );
                let report = Report::new(
                    &config.model,
                    dataset,
                    Some(&plan),
                    fitted.best.clone(),
                    splits,
                );
                report::write(&report, &fold_dir)?;
                let speeds = fitted.history.iter().map(|m| m.images_per_sec).collect();
                (report, speeds)
            }
        };
        let test = report
            .splits
            .first()
            .ok_or_else(|| TrainError::run(&fold_dir, "the fold report has no test split"))?;
        pooled.merge(&test.confusion);
        loss_sum += test.loss * test.samples as f64;
        infer_speed.push(test.images_per_sec);
        train_speed.extend(history_speed);
        results.push(FoldResult {
            fold: fold + 1,
            subjects: subjects[fold].len(),
            samples: test.samples,
            accuracy: test.accuracy,
            best_epoch: report.best.as_ref().map(|b| b.epoch),
        });
    }
    let samples = pooled.total() as usize;
    let pooled_evaluation = Evaluation {
        samples,
        confusion: pooled,
        loss: loss_sum / samples.max(1) as f64,
        images_per_sec: mean_std(&infer_speed).0,
    };
    let pooled_split = SplitReport::new(
        &format!("pooled over {folds} folds"),
        None,
        &pooled_evaluation,
        &dataset.classes,
    );
    let mut report = Report::new(&config.model, dataset, None, None, vec![pooled_split]);
    report.cross_validation = Some(CrossValidation::new(results));
    report::write(&report, dir)?;
    Ok(CvOutcome {
        dir: dir.to_path_buf(),
        report,
        train_images_per_sec: mean_std(&train_speed).0,
        infer_images_per_sec: mean_std(&infer_speed).0,
    })
}

/// The fold's report, if the fold finished with this very config.
fn finished_fold(config: &TrainingConfig, fold_dir: &Path) -> Result<Option<Report>> {
    let report_path = fold_dir.join(REPORT_JSON);
    if !report_path.is_file() {
        return Ok(None);
    }
    check_same_config(config, fold_dir)?;
    let text = fs::read_to_string(&report_path).map_err(|e| TrainError::io(&report_path, e))?;
    let report = serde_json::from_str(&text)
        .map_err(|e| TrainError::run(&report_path, format!("not a report: {e}")))?;
    Ok(Some(report))
}

fn read_speeds(fold_dir: &Path) -> Vec<f64> {
    let text = fs::read_to_string(fold_dir.join(checkpoint::METRICS_FILE)).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(6)?.parse().ok())
        .collect()
}

/// A directory that already holds a run must hold this run.
fn check_same_config(config: &TrainingConfig, dir: &Path) -> Result<()> {
    let path = dir.join(checkpoint::CONFIG_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let existing = TrainingConfig::read(&path)?;
    if &existing != config {
        return Err(TrainError::run(
            dir,
            "holds a run with another configuration: choose another directory",
        ));
    }
    Ok(())
}

/// One line of the ablation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    pub preset: String,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub params: u64,
    pub macs: u64,
    pub train_images_per_sec: f64,
    pub infer_images_per_sec: f64,
}

/// `model` with the CDSM and MSCA switches of `preset`, everything else kept.
pub fn with_preset(model: &EfeaNetConfig, preset: Preset) -> EfeaNetConfig {
    let switches = EfeaNetConfig::preset(preset);
    let mut out = model.clone();
    out.cdsm_blocks = switches.cdsm_blocks;
    out.msca = switches.msca;
    out
}

/// Cross-validates the four presets of MODEL.md over the same folds (same seed, same data) in
/// `dir/<preset>/`, and writes the comparison table.
pub fn ablation(
    config: TrainingConfig,
    dataset: &Dataset,
    folds: usize,
    dir: &Path,
    devices: &[Device],
    observer: &mut dyn Observer,
) -> Result<Vec<AblationRow>> {
    fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut rows = Vec::new();
    for preset in Preset::ALL {
        observer.note(&format!("ablation: preset {preset}"));
        let mut preset_config = config.clone();
        preset_config.model = with_preset(&config.model, preset);
        let outcome = cross_validate(
            preset_config,
            dataset,
            folds,
            &dir.join(preset.name()),
            devices,
            observer,
        )?;
        let cv = outcome
            .report
            .cross_validation
            .as_ref()
            .expect("cross_validate fills it");
        rows.push(AblationRow {
            preset: preset.name().into(),
            accuracy_mean: cv.mean_accuracy,
            accuracy_std: cv.std_accuracy,
            params: outcome.report.params,
            macs: outcome.report.macs,
            train_images_per_sec: outcome.train_images_per_sec,
            infer_images_per_sec: outcome.infer_images_per_sec,
        });
    }
    let json = serde_json::to_vec_pretty(&rows).expect("plain data");
    checkpoint::write_atomic(&dir.join("ablation.json"), &json)?;
    checkpoint::write_atomic(
        &dir.join("ablation.md"),
        ablation_markdown(&rows, folds, &config).as_bytes(),
    )?;
    checkpoint::write_atomic(&dir.join("ablation.csv"), ablation_csv(&rows).as_bytes())?;
    Ok(rows)
}

/// The comparison table in Markdown.
pub fn ablation_markdown(rows: &[AblationRow], folds: usize, config: &TrainingConfig) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Ablation over {folds} subject-independent folds (width {}, {}x{}, {} epochs, seed {}).\n",
        config.model.width_mult,
        config.model.input_size,
        config.model.input_size,
        config.epochs,
        config.seed
    );
    md.push_str(
        "| preset | accuracy (mean ± std) | parameters | multiply-adds | train img/s | inference img/s |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {:.2} % ± {:.2} | {} | {} | {:.1} | {:.1} |",
            r.preset,
            100.0 * r.accuracy_mean,
            100.0 * r.accuracy_std,
            report::thousands(r.params),
            report::thousands(r.macs),
            r.train_images_per_sec,
            r.infer_images_per_sec
        );
    }
    md
}

fn ablation_csv(rows: &[AblationRow]) -> String {
    let mut csv = String::from(
        "preset,accuracy_mean,accuracy_std,params,macs,train_images_per_sec,infer_images_per_sec\n",
    );
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{},{},{:.2},{:.2}",
            r.preset,
            r.accuracy_mean,
            r.accuracy_std,
            r.params,
            r.macs,
            r.train_images_per_sec,
            r.infer_images_per_sec
        );
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_keep_the_other_settings() {
        let base = EfeaNetConfig::new()
            .with_width_mult(0.35)
            .with_input_size(64)
            .with_dropout(0.1);
        for preset in Preset::ALL {
            let config = with_preset(&base, preset);
            assert_eq!(config.preset_name(), Some(preset));
            assert_eq!(
                (config.width_mult, config.input_size, config.dropout),
                (0.35, 64, 0.1)
            );
        }
    }
}
