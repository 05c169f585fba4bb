//! The report of a run, an evaluation or a cross-validation: `report.json` (everything, for
//! programs), `report.md` (for people) and `confusion.png`.

use std::fmt::Write as _;
use std::path::Path;

use efea_data::Dataset;
use efea_model::EfeaNetConfig;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, BestScore};
use crate::error::Result;
use crate::evaluate::{Evaluation, Tta};
use crate::metrics::{ClassMetrics, Confusion};
use crate::splits::SplitPlan;

/// The scores of one split (with or without test-time augmentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    pub split: String,
    /// `tencrop` or absent.
    pub tta: Option<String>,
    pub samples: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Confusion,
    pub images_per_sec: f64,
}

impl SplitReport {
    pub fn new(split: &str, tta: Option<Tta>, evaluation: &Evaluation, classes: &[String]) -> Self {
        Self {
            split: split.to_string(),
            tta: tta.map(|t| t.name().to_string()),
            samples: evaluation.samples,
            loss: evaluation.loss,
            accuracy: evaluation.accuracy(),
            macro_f1: evaluation.confusion.macro_f1(),
            per_class: evaluation.confusion.per_class(classes),
            confusion: evaluation.confusion.clone(),
            images_per_sec: evaluation.images_per_sec,
        }
    }

    /// `PrivateTest` or `PrivateTest (tencrop)`.
    pub fn title(&self) -> String {
        match &self.tta {
            Some(tta) => format!("{} ({tta})", self.split),
            None => self.split.clone(),
        }
    }
}

/// One fold of a cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// 1-based.
    pub fold: usize,
    pub subjects: usize,
    pub samples: usize,
    pub accuracy: f64,
    pub best_epoch: Option<usize>,
}

/// Per-fold accuracies with their mean and (sample) standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: Vec<FoldResult>,
    pub mean_accuracy: f64,
    pub std_accuracy: f64,
}

impl CrossValidation {
    pub fn new(folds: Vec<FoldResult>) -> Self {
        let (mean, std) = mean_std(&folds.iter().map(|f| f.accuracy).collect::<Vec<_>>());
        Self {
            folds,
            mean_accuracy: mean,
            std_accuracy: std,
        }
    }
}

/// Mean and sample standard deviation (n - 1; 0 for fewer than two values).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    (mean, var.sqrt())
}

/// Everything a report holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub dataset: String,
    /// Preset (or `custom`), width and input size.
    pub model: String,
    pub params: u64,
    pub macs: u64,
    pub classes: Vec<String>,
    pub train_samples: Option<usize>,
    /// Split that chose the checkpoint, and its size.
    pub selected_on: Option<(String, usize)>,
    pub best: Option<BestScore>,
    pub splits: Vec<SplitReport>,
    pub cross_validation: Option<CrossValidation>,
}

impl Report {
    pub fn new(
        model: &EfeaNetConfig,
        dataset: &Dataset,
        plan: Option<&SplitPlan>,
        best: Option<BestScore>,
        splits: Vec<SplitReport>,
    ) -> Self {
        let summary = model.summary();
        Self {
            dataset: dataset.name.clone(),
            model: model_name(model),
            params: summary.total_params,
            macs: summary.total_macs,
            classes: dataset.classes.clone(),
            train_samples: plan.map(|p| p.train.len()),
            selected_on: plan.map(|p| (p.select_name.clone(), p.select.len())),
            best,
            splits,
            cross_validation: None,
        }
    }

    /// Markdown for people.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} on {}\n", self.model, self.dataset);
        let _ = writeln!(
            md,
            "{} parameters, {} multiply-adds per image, {} classes.",
            thousands(self.params),
            thousands(self.macs),
            self.classes.len()
        );
        if let Some(n) = self.train_samples {
            let _ = write!(md, " Trained on {n} samples");
            if let Some((name, size)) = &self.selected_on {
                let _ = write!(md, "; checkpoint chosen on `{name}` ({size} samples)");
            }
            if let Some(best) = &self.best {
                let _ = write!(
                    md,
                    ", epoch {} ({:.2} %)",
                    best.epoch,
                    100.0 * best.accuracy
                );
            }
            md.push('.');
        }
        md.push_str("\n\n");
        if let Some(cv) = &self.cross_validation {
            let _ = writeln!(
                md,
                "## Cross-validation\n\n{} subject-independent folds: accuracy **{:.2} % ± {:.2}** (mean ± std).\n",
                cv.folds.len(),
                100.0 * cv.mean_accuracy,
                100.0 * cv.std_accuracy
            );
            md.push_str("| fold | subjects | samples | accuracy | best epoch |\n|---:|---:|---:|---:|---:|\n");
            for f in &cv.folds {
                let epoch = f.best_epoch.map(|e| e.to_string()).unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2} % | {epoch} |",
                    f.fold,
                    f.subjects,
                    f.samples,
                    100.0 * f.accuracy
                );
            }
            md.push('\n');
        }
        md.push_str("## Summary\n\n| split | samples | accuracy | macro-F1 | loss |\n|---|---:|---:|---:|---:|\n");
        for s in &self.splits {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} % | {:.4} | {:.4} |",
                s.title(),
                s.samples,
                100.0 * s.accuracy,
                s.macro_f1,
                s.loss
            );
        }
        for s in &self.splits {
            let _ = writeln!(md, "\n## {}\n", s.title());
            md.push_str(
                "| class | support | precision | recall | F1 |\n|---|---:|---:|---:|---:|\n",
            );
            for c in &s.per_class {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.4} | {:.4} | {:.4} |",
                    c.class, c.support, c.precision, c.recall, c.f1
                );
            }
            let _ = writeln!(
                md,
                "\nConfusion matrix (rows: true class, columns: predicted):\n"
            );
            let _ = writeln!(md, "| true \\ predicted | {} |", self.classes.join(" | "));
            let _ = writeln!(md, "|---|{}", "---:|".repeat(self.classes.len()));
            for (name, row) in self.classes.iter().zip(&s.confusion.counts) {
                let cells: Vec<String> = row.iter().map(u64::to_string).collect();
                let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
            }
        }
        md
    }
}

/// `full, width 0.35, 48x48`.
pub fn model_name(model: &EfeaNetConfig) -> String {
    let preset = model
        .preset_name()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "custom".into());
    format!(
        "EFEA-MSM ({preset}, width {}, {}x{})",
        model.width_mult, model.input_size, model.input_size
    )
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Writes `report.json`, `report.md` and `confusion.png` (the splits without TTA, or all of
/// them if every one has TTA) into `dir`.
pub fn write(report: &Report, dir: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).expect("the report is plain data");
    checkpoint::write_atomic(&dir.join(checkpoint::REPORT_JSON), &json)?;
    checkpoint::write_atomic(
        &dir.join(checkpoint::REPORT_MD),
        report.markdown().as_bytes(),
    )?;
    let plain: Vec<&SplitReport> = report.splits.iter().filter(|s| s.tta.is_none()).collect();
    let shown: Vec<&SplitReport> = if plain.is_empty() {
        report.splits.iter().collect()
    } else {
        plain
    };
    if !shown.is_empty() {
        crate::plot::confusions(
            &shown,
            &report.classes,
            &dir.join(checkpoint::CONFUSION_FILE),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (mean, std) = mean_std(&[0.5, 0.7, 0.9]);
        assert!((mean - 0.7).abs() < 1e-12 && (std - 0.2).abs() < 1e-12);
        assert_eq!(mean_std(&[0.4]), (0.4, 0.0));
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
