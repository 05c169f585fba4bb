//! Scoring a network on some samples: plainly, or with ten-crop test-time augmentation
//! (the four corners and the centre of the image and of its mirror, softmax averaged).

use std::time::Instant;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use efea_data::batch::{BatchIndices, ten_crop_batch};
use efea_data::classes::ClassMatching;
use efea_data::{Batcher, Dataset};
use efea_model::EfeaNet;
use serde::{Deserialize, Serialize};

use crate::metrics::Confusion;
use crate::objective::input;

/// Test-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    /// Ten crops of this side, each resized back to the input size.
    TenCrop(u32),
}

impl Tta {
    pub fn name(self) -> &'static str {
        match self {
            Tta::TenCrop(_) => "tencrop",
        }
    }
}

/// What scoring some samples gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub confusion: Confusion,
    /// Mean cross-entropy (of the averaged probabilities under TTA).
    pub loss: f64,
    pub samples: usize,
    /// Images per second through the network (each crop counts under TTA).
    pub images_per_sec: f64,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.confusion.accuracy()
    }
}

/// How to score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalSettings {
    /// The network's input side.
    pub input_size: u32,
    /// Images per forward pass (ten crops count ten).
    pub batch_size: usize,
    pub tta: Option<Tta>,
}

/// Scores `model` (in eval mode, on `device`) on `dataset.samples[indices]`, its outputs
/// read as the dataset's classes through `matching` (samples of a class it leaves out are not
/// scored); `progress` hears how many samples each batch scored.
pub fn evaluate(
    model: &EfeaNet,
    dataset: &Dataset,
    indices: &[usize],
    settings: EvalSettings,
    matching: &ClassMatching,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Evaluation {
    let EvalSettings {
        input_size: size,
        batch_size,
        tta,
    } = settings;
    let classes = dataset.num_classes();
    let outputs = matching.data_of_model.len();
    let scored: Vec<usize>;
    let indices = if matching.data_scored.iter().all(|&s| s) {
        indices
    } else {
        scored = indices
            .iter()
            .copied()
            .filter(|&i| matching.scores(dataset.samples[i].label))
            .collect();
        &scored
    };
    let batcher = Batcher::new(size);
    let mut confusion = Confusion::new(classes);
    let mut loss_sum = 0.0f64;
    let mut images = 0usize;
    let start = Instant::now();
    let batch_size = match tta {
        // Ten images per sample.
        Some(_) => batch_size.div_ceil(10).max(1),
        None => batch_size,
    };
    for batch in BatchIndices::sequential(indices, batch_size) {
        let labels: Vec<usize> = batch.iter().map(|&i| dataset.samples[i].label).collect();
        let log_probs: Tensor<2> = match tta {
            None => {
                let input = input(batcher.batch(dataset, &batch, 0), device);
                images += batch.len();
                log_softmax(model.forward(input), 1)
            }
            Some(Tta::TenCrop(crop)) => {
                let crops: Vec<Tensor<4>> = batch
                    .iter()
                    .map(|&i| {
                        input(
                            ten_crop_batch(&dataset.samples[i].image, crop, size),
                            device,
                        )
                    })
                    .collect();
                images += 10 * batch.len();
                let logits = model.forward(Tensor::cat(crops, 0));
                let probs = softmax(logits, 1)
                    .reshape([batch.len(), 10, outputs])
                    .mean_dim(1);
                probs.reshape([batch.len(), outputs]).clamp_min(1e-12).log()
            }
        };
        let mut values: Vec<f32> = log_probs.into_data().iter::<f32>().collect();
        if !matching.is_identity() {
            values = values
                .chunks(outputs)
                .flat_map(|row| {
                    let mut mapped = vec![0.0; classes];
                    matching.map_log_probs(row, &mut mapped);
                    mapped
                })
                .collect();
        }
        for (row, &label) in values.chunks(classes).zip(&labels) {
            let predicted = argmax(row);
            confusion.add(label, predicted);
            loss_sum -= row[label] as f64;
        }
        progress(batch.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    Evaluation {
        confusion,
        loss: if indices.is_empty() {
            0.0
        } else {
            loss_sum / indices.len() as f64
        },
        samples: indices.len(),
        images_per_sec: if seconds > 0.0 {
            images as f64 / seconds
        } else {
            0.0
        },
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}
