//! The training objective: cross-entropy against soft targets, which covers hard labels, label
//! smoothing (Szegedy et al., 2016), FER+ vote distributions, mixup (Zhang et al., 2018) and
//! CutMix (Yun et al., 2019) with one loss.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use efea_data::rng::Rng;
use efea_data::{Batch, Sample};

use crate::config::{FerplusLabels, RegularizationConfig};

/// The targets `[N * K]` of training samples: FER+ vote distributions under
/// [`FerplusLabels::Soft`], else the one-hot of each label; smoothed by `smoothing`.
pub fn training_targets(
    samples: &[&Sample],
    labels: FerplusLabels,
    classes: usize,
    smoothing: f64,
) -> Vec<f32> {
    let hard: Vec<usize> = samples.iter().map(|s| s.label).collect();
    let soft: Vec<Option<&[f32]>> = match labels {
        FerplusLabels::Soft => samples.iter().map(|s| s.soft_label.as_deref()).collect(),
        FerplusLabels::Majority => vec![None; samples.len()],
    };
    soft_targets(&hard, &soft, classes, smoothing)
}

/// Targets `[N * K]` (row-major): the sample's distribution (its one-hot label, or its FER+
/// votes), smoothed as `(1 - e) * p + e / K`.
pub fn soft_targets(
    labels: &[usize],
    soft: &[Option<&[f32]>],
    classes: usize,
    smoothing: f64,
) -> Vec<f32> {
    let e = smoothing as f32;
    let floor = e / classes as f32;
    let mut out = vec![0.0; labels.len() * classes];
    for (i, (&label, soft)) in labels.iter().zip(soft).enumerate() {
        let row = &mut out[i * classes..(i + 1) * classes];
        match soft {
            Some(votes) => row.copy_from_slice(votes),
            None => row[label] = 1.0,
        }
        for p in row.iter_mut() {
            *p = (1.0 - e) * *p + floor;
        }
    }
    out
}

/// Mean cross-entropy of `logits [N, K]` against target distributions `[N, K]`.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// How one batch is mixed with a permutation of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Partner of each sample.
    pub partner: Vec<usize>,
    /// Weight of the sample itself in the mixed target.
    pub lambda: f32,
    /// CutMix: the pasted box `(x0, y0, x1, y1)`, end exclusive; `None` for mixup.
    pub cut: Option<[usize; 4]>,
}

impl Mix {
    /// Draws the mixing of a batch of `n` images of side `size`, or `None` (no mixing).
    pub fn draw(
        config: &RegularizationConfig,
        n: usize,
        size: usize,
        rng: &mut Rng,
    ) -> Option<Mix> {
        let mixup = config.mixup_alpha > 0.0;
        let cutmix = config.cutmix_alpha > 0.0;
        if !(mixup || cutmix) || n < 2 || !rng.chance(config.mix_prob as f32) {
            return None;
        }
        let use_cutmix = cutmix && (!mixup || rng.chance(0.5));
        let mut partner: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut partner);
        if use_cutmix {
            let lambda = beta(config.cutmix_alpha, rng);
            // A box of area (1 - lambda), centred uniformly, clipped to the image (as in CutMix).
            let side = (1.0 - lambda).sqrt();
            let cut = (size as f64 * side) as usize;
            let (cx, cy) = (rng.below(size), rng.below(size));
            let x0 = cx.saturating_sub(cut / 2);
            let y0 = cy.saturating_sub(cut / 2);
            let x1 = (cx + cut / 2).min(size);
            let y1 = (cy + cut / 2).min(size);
            let area = ((x1 - x0) * (y1 - y0)) as f64 / (size * size) as f64;
            Some(Mix {
                partner,
                lambda: (1.0 - area) as f32,
                cut: Some([x0, y0, x1, y1]),
            })
        } else {
            Some(Mix {
                partner,
                lambda: beta(config.mixup_alpha, rng) as f32,
                cut: None,
            })
        }
    }

    /// The mixed images `[N, C, S, S]`.
    pub fn images(&self, images: Tensor<4>) -> Tensor<4> {
        let device = images.device();
        let [n, _, h, w] = images.dims();
        let partner = Tensor::<1, Int>::from_data(
            TensorData::new(
                self.partner.iter().map(|&p| p as i64).collect::<Vec<_>>(),
                [n],
            ),
            &device,
        );
        let others = images.clone().select(0, partner);
        match self.cut {
            None => images.mul_scalar(self.lambda) + others.mul_scalar(1.0 - self.lambda),
            Some([x0, y0, x1, y1]) => {
                let mut mask = vec![0.0f32; h * w];
                for y in y0..y1 {
                    mask[y * w + x0..y * w + x1].fill(1.0);
                }
                let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, h, w]), &device);
                let keep = mask.clone().neg().add_scalar(1.0);
                images * keep + others * mask
            }
        }
    }

    /// The mixed targets `[N * K]`.
    pub fn targets(&self, targets: &[f32], classes: usize) -> Vec<f32> {
        let mut out = vec![0.0; targets.len()];
        for (i, &j) in self.partner.iter().enumerate() {
            for k in 0..classes {
                out[i * classes + k] = self.lambda * targets[i * classes + k]
                    + (1.0 - self.lambda) * targets[j * classes + k];
            }
        }
        out
    }
}

/// A draw from Beta(alpha, alpha).
fn beta(alpha: f64, rng: &mut Rng) -> f64 {
    let a = gamma(alpha, rng);
    let b = gamma(alpha, rng);
    if a + b > 0.0 { a / (a + b) } else { 0.5 }
}

/// A draw from Gamma(shape, 1) (Marsaglia and Tsang, 2000; boosted for shape < 1).
fn gamma(shape: f64, rng: &mut Rng) -> f64 {
    if shape < 1.0 {
        let u = (rng.f32() as f64).max(1e-12);
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal() as f64;
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = (rng.f32() as f64).max(1e-12);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Class index of the largest logit of each row.
pub fn argmax_rows(logits: Tensor<2>) -> Vec<usize> {
    let data = logits.argmax(1).into_data();
    data.iter::<i64>().map(|v| v as usize).collect()
}

/// The network input `[N, 1, S, S]` of `batch` on `device`.
pub fn input(batch: Batch, device: &Device) -> Tensor<4> {
    let shape = batch.shape();
    Tensor::<4>::from_data(TensorData::new(batch.pixels, shape), device)
}

/// Tensor `[N, K]` of `values` on `device`.
pub fn matrix(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three FER+ rows through the loader: a clear majority with a single (noise) vote, a tie
    /// with a noise vote in `unknown`, and an `unknown` majority that is dropped.
    fn ferplus_samples() -> Vec<Sample> {
        use efea_data::synth::{SynthConfig, generate};
        let dir = tempfile::tempdir().unwrap();
        let faces = generate(&SynthConfig::new(3)).unwrap();
        efea_data::write::write_fer2013_csv(&faces, &dir.path().join("fer2013.csv")).unwrap();
        std::fs::write(
            dir.path().join("fer2013new.csv"),
            "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n\
             Training,a.png,6,3,0,0,0,0,0,1,0,0\n\
             Training,b.png,0,0,4,4,0,0,1,0,1,0\n\
             Training,c.png,0,0,0,0,2,0,0,0,8,0\n",
        )
        .unwrap();
        let kind = efea_data::DatasetKind::FerPlus;
        let loaded = efea_data::load(kind, Some(dir.path()), &Default::default()).unwrap();
        assert_eq!(loaded.report.dropped, 1, "the unknown majority is dropped");
        loaded.samples
    }

    #[test]
    fn ferplus_majority_targets_are_one_hot_and_soft_targets_the_votes() {
        let samples = ferplus_samples();
        let samples: Vec<&Sample> = samples.iter().collect();
        // neutral, and surprise (a tie with sadness goes to the first column).
        assert_eq!(samples.iter().map(|s| s.label).collect::<Vec<_>>(), [0, 2]);
        let majority = training_targets(&samples, FerplusLabels::Majority, 8, 0.0);
        let mut expected = vec![0.0; 16];
        expected[0] = 1.0;
        expected[8 + 2] = 1.0;
        assert_eq!(majority, expected);
        let soft = training_targets(&samples, FerplusLabels::Soft, 8, 0.0);
        let expected = [
            [6.0 / 9.0, 3.0 / 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
        ];
        for (got, want) in soft.iter().zip(expected.as_flattened()) {
            assert!((got - want).abs() < 1e-6, "{soft:?}");
        }
    }

    #[test]
    fn smoothing_keeps_a_distribution() {
        let t = soft_targets(&[1, 0], &[None, None], 4, 0.1);
        assert!((t[1] - 0.925).abs() < 1e-6 && (t[0] - 0.025).abs() < 1e-6);
        assert!((t[4..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let votes = [0.5, 0.5, 0.0, 0.0];
        let t = soft_targets(&[0], &[Some(&votes)], 4, 0.0);
        assert_eq!(t, votes);
    }

    #[test]
    fn cross_entropy_of_one_hot_is_the_usual_one() {
        let device = Device::flex();
        let logits = matrix(vec![2.0, 0.0, 0.0, 0.0, 1.0, 3.0], 2, 3, &device);
        let targets = matrix(soft_targets(&[0, 2], &[None, None], 3, 0.0), 2, 3, &device);
        let loss: f32 = soft_cross_entropy(logits, targets).into_scalar();
        let ce =
            |l: [f32; 3], k: usize| -(l[k].exp() / l.iter().map(|v| v.exp()).sum::<f32>()).ln();
        let expected = (ce([2.0, 0.0, 0.0], 0) + ce([0.0, 1.0, 3.0], 2)) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn mixing_is_seeded_and_targets_stay_distributions() {
        let config = RegularizationConfig {
            mixup_alpha: 0.4,
            cutmix_alpha: 1.0,
            ..RegularizationConfig::default()
        };
        let draws: Vec<Mix> = (0..20)
            .filter_map(|i| Mix::draw(&config, 4, 48, &mut Rng::new(i)))
            .collect();
        assert_eq!(draws.len(), 20);
        assert!(draws.iter().any(|m| m.cut.is_some()) && draws.iter().any(|m| m.cut.is_none()));
        assert_eq!(
            Mix::draw(&config, 4, 48, &mut Rng::new(3)),
            Mix::draw(&config, 4, 48, &mut Rng::new(3))
        );
        let targets = soft_targets(&[0, 1, 2, 0], &[None; 4], 3, 0.0);
        for mix in &draws {
            assert!((0.0..=1.0).contains(&mix.lambda));
            let mixed = mix.targets(&targets, 3);
            for row in mixed.chunks(3) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        let device = Device::flex();
        let images = Tensor::<4>::ones([4, 1, 48, 48], &device);
        let mixed: f32 = draws[0].images(images).sum().into_scalar();
        assert!(
            (mixed - 4.0 * 48.0 * 48.0).abs() < 1e-2,
            "mixing equal images changes nothing"
        );
    }
}
