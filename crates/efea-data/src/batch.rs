//! Batches for training and evaluation. All tensor creation of the data pipeline lives here:
//! samples -> (augment) -> [`preprocess`] -> `[N, 1, S, S]` images and `[N]` targets on a
//! device, plus the seeded order in which to visit them.

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::GrayImage;
use rayon::prelude::*;

use crate::augment::AugmentConfig;
use crate::preprocess::preprocess_into;
use crate::rng::Rng;
use crate::{Dataset, Sample};

/// One batch on a device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[N, 1, S, S]`, normalised as [`crate::preprocess`] does.
    pub images: Tensor<4>,
    /// `[N]` class indices.
    pub targets: Tensor<1, Int>,
    /// `[N, classes]` vote distributions when every sample of the batch has one (FER+).
    pub soft_targets: Option<Tensor<2>>,
}

/// Turns samples into [`Batch`]es, with augmentation for training.
#[derive(Debug, Clone, PartialEq)]
pub struct Batcher {
    /// Input side `S`.
    pub size: u32,
    /// Augmentation for training; `None` for evaluation.
    pub augment: Option<AugmentConfig>,
    /// Seed of the augmentation (with the epoch and the sample index).
    pub seed: u64,
}

impl Batcher {
    /// An evaluation batcher (no augmentation).
    pub fn new(size: u32) -> Self {
        Self {
            size,
            augment: None,
            seed: 0,
        }
    }

    /// A training batcher.
    pub fn with_augment(mut self, augment: AugmentConfig, seed: u64) -> Self {
        self.augment = Some(augment);
        self.seed = seed;
        self
    }

    /// The batch of `dataset.samples[indices]`; augmentation of each sample is seeded by
    /// `(seed, epoch, sample index)`, so it is the same however batches are built.
    ///
    /// # Panics
    /// If `indices` is empty or out of range.
    pub fn batch(
        &self,
        dataset: &Dataset,
        indices: &[usize],
        epoch: usize,
        device: &Device,
    ) -> Batch {
        let samples: Vec<&Sample> = indices.iter().map(|&i| &dataset.samples[i]).collect();
        let images: Vec<GrayImage> = match &self.augment {
            Some(augment) => indices
                .par_iter()
                .map(|&i| {
                    augment.apply_seeded(
                        &dataset.samples[i].image,
                        self.seed,
                        epoch as u64,
                        i as u64,
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let image_refs: Vec<&GrayImage> = if images.is_empty() {
            samples.iter().map(|s| &s.image).collect()
        } else {
            images.iter().collect()
        };
        let targets: Vec<i64> = samples.iter().map(|s| s.label as i64).collect();
        let has_soft = !samples.is_empty() && samples.iter().all(|s| s.soft_label.is_some());
        let soft_targets = has_soft.then(|| {
            let classes = dataset.num_classes();
            let values: Vec<f32> = samples
                .iter()
                .flat_map(|s| {
                    s.soft_label
                        .as_deref()
                        .expect("checked above")
                        .iter()
                        .copied()
                })
                .collect();
            Tensor::<2>::from_data(TensorData::new(values, [samples.len(), classes]), device)
        });
        Batch {
            images: images_tensor(&image_refs, self.size, device),
            targets: Tensor::<1, Int>::from_data(TensorData::new(targets, [samples.len()]), device),
            soft_targets,
        }
    }
}

/// `[N, 1, S, S]` network input of `images` (each resized and normalised by [`preprocess`]).
///
/// [`preprocess`]: crate::preprocess
pub fn images_tensor(images: &[&GrayImage], size: u32, device: &Device) -> Tensor<4> {
    let pixels = (size * size) as usize;
    let mut values = vec![0.0f32; images.len() * pixels];
    values
        .par_chunks_mut(pixels.max(1))
        .zip(images.par_iter())
        .for_each(|(out, image)| preprocess_into(image, size, out));
    let side = size as usize;
    Tensor::<4>::from_data(
        TensorData::new(values, [images.len(), 1, side, side]),
        device,
    )
}

/// The ten crops of [`crate::augment::ten_crop`] as one `[10, 1, S, S]` input.
pub fn ten_crop_tensor(image: &GrayImage, crop: u32, size: u32, device: &Device) -> Tensor<4> {
    let crops = crate::augment::ten_crop(image, crop);
    let refs: Vec<&GrayImage> = crops.iter().collect();
    images_tensor(&refs, size, device)
}

/// Stream of the batch order (separate from augmentation and the synthetic set).
const STREAM_SHUFFLE: u64 = 0x5348_5546;

/// The batches of one epoch, as lists of sample indices: shuffled by `(seed, epoch)` or in
/// order. Resuming at an epoch (and skipping the batches already done) gives the same batches.
#[derive(Debug, Clone)]
pub struct BatchIndices {
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    position: usize,
}

impl BatchIndices {
    /// `indices` in a seeded random order for `epoch`.
    pub fn shuffled(indices: &[usize], batch_size: usize, seed: u64, epoch: usize) -> Self {
        let mut order = indices.to_vec();
        Rng::for_item(seed, STREAM_SHUFFLE, epoch as u64).shuffle(&mut order);
        Self {
            order,
            batch_size: batch_size.max(1),
            drop_last: false,
            position: 0,
        }
    }

    /// `indices` in the given order (evaluation).
    pub fn sequential(indices: &[usize], batch_size: usize) -> Self {
        Self {
            order: indices.to_vec(),
            batch_size: batch_size.max(1),
            drop_last: false,
            position: 0,
        }
    }

    /// Drop a last batch smaller than `batch_size` (batch norm dislikes tiny batches).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }

    /// The whole order of the epoch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for BatchIndices {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let remaining = self.order.len() - self.position;
        if remaining == 0 || (self.drop_last && remaining < self.batch_size) {
            return None;
        }
        let end = self.position + remaining.min(self.batch_size);
        let batch = self.order[self.position..end].to_vec();
        self.position = end;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_index_once_and_are_seeded() {
        let indices: Vec<usize> = (0..10).collect();
        let batches: Vec<Vec<usize>> = BatchIndices::shuffled(&indices, 4, 1, 0).collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort();
        assert_eq!(seen, indices);
        assert_eq!(
            BatchIndices::shuffled(&indices, 4, 1, 0).order(),
            BatchIndices::shuffled(&indices, 4, 1, 0).order()
        );
        assert_ne!(
            BatchIndices::shuffled(&indices, 4, 1, 0).order(),
            BatchIndices::shuffled(&indices, 4, 1, 1).order()
        );
        assert_eq!(
            BatchIndices::shuffled(&indices, 4, 1, 0)
                .drop_last(true)
                .count(),
            2
        );
    }
}
