//! Classification metrics from a confusion matrix: accuracy, per-class precision, recall and
//! F1, macro-F1; and the per-epoch record of a run (`metrics.csv`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// `counts[true][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: Vec<Vec<u64>>,
}

/// Precision, recall and F1 of one class (0 where undefined, as scikit-learn's
/// `zero_division=0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    /// Samples of this class.
    pub support: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self {
            counts: vec![vec![0; classes]; classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Adds another matrix of the same size (pooling folds).
    pub fn merge(&mut self, other: &Confusion) {
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (cell, other_cell) in row.iter_mut().zip(other_row) {
                *cell += other_cell;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes()).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction of samples classified correctly (0 for no samples).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    pub fn per_class(&self, names: &[String]) -> Vec<ClassMetrics> {
        (0..self.classes())
            .map(|c| {
                let tp = self.counts[c][c];
                let support: u64 = self.counts[c].iter().sum();
                let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                    support,
                    precision,
                    recall,
                    f1,
                }
            })
            .collect()
    }

    /// Unweighted mean of the per-class F1 over the classes that occur among the true or the
    /// predicted labels (scikit-learn's `f1_score(average="macro")`).
    pub fn macro_f1(&self) -> f64 {
        let per_class = self.per_class(&[]);
        let present: Vec<f64> = (0..self.classes())
            .filter(|&c| per_class[c].support > 0 || self.counts.iter().any(|row| row[c] > 0))
            .map(|c| per_class[c].f1)
            .collect();
        if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        }
    }

    /// Each row divided by its sum (rows without samples stay 0).
    pub fn row_normalized(&self) -> Vec<Vec<f64>> {
        self.counts
            .iter()
            .map(|row| {
                let sum: u64 = row.iter().sum();
                row.iter().map(|&c| ratio(c, sum)).collect()
            })
            .collect()
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// One line of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// On the selection split.
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Learning rate of the epoch's last batch.
    pub lr: f64,
    /// Training images per second (forward, backward and update).
    pub images_per_sec: f64,
    /// Wall-clock seconds of the epoch, evaluation included.
    pub seconds: f64,
}

impl EpochMetrics {
    pub const CSV_HEADER: &'static str =
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,images_per_sec,seconds";

    /// `metrics.csv` for these epochs.
    pub fn csv(rows: &[EpochMetrics]) -> String {
        let mut out = String::from(Self::CSV_HEADER);
        out.push('\n');
        for r in rows {
            let _ = writeln!(
                out,
                "{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.2},{:.2}",
                r.epoch,
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                r.lr,
                r.images_per_sec,
                r.seconds
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_computed_matrix() {
        // truth 0: 3 right, 1 as class 1; truth 1: 2 right; class 2: no samples, 1 predicted.
        let mut confusion = Confusion::new(3);
        for (t, p) in [(0, 0), (0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 2)] {
            confusion.add(t, p);
        }
        assert_eq!(confusion.total(), 7);
        assert!((confusion.accuracy() - 5.0 / 7.0).abs() < 1e-12);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let per = confusion.per_class(&names);
        assert_eq!(per[0].precision, 1.0);
        assert_eq!(per[0].recall, 0.75);
        assert!((per[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(per[2].f1, 0.0);
        let f1_a = 2.0 * 0.75 / 1.75;
        let f1_b = 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0);
        assert!((confusion.macro_f1() - (f1_a + f1_b) / 3.0).abs() < 1e-12);
        assert_eq!(confusion.row_normalized()[0], vec![0.75, 0.25, 0.0]);
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_epoch() {
        let row = EpochMetrics {
            epoch: 1,
            train_loss: 1.5,
            train_accuracy: 0.4,
            val_loss: 1.2,
            val_accuracy: 0.5,
            lr: 0.01,
            images_per_sec: 100.0,
            seconds: 3.0,
        };
        let csv = EpochMetrics::csv(&[row.clone(), EpochMetrics { epoch: 2, ..row }]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], EpochMetrics::CSV_HEADER);
        assert!(lines[2].starts_with("2,1.500000,"));
    }
}
