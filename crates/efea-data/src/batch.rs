//! Batches for training and evaluation: samples -> (augment) -> [`preprocess`] -> the
//! `[N, 1, S, S]` pixels of a network input, plus the seeded order in which to visit them.
//! The pixels stay on the host: the trainer puts them on its device (efea-data needs no
//! tensor library), and the targets come from the samples themselves.
//!
//! [`preprocess`]: crate::preprocess

use image::GrayImage;
use rayon::prelude::*;

use crate::Dataset;
use crate::augment::AugmentConfig;
use crate::preprocess::preprocess_into;
use crate::rng::Rng;

/// One batch of network inputs: `len` images of `size x size`, one channel, normalised as
/// [`crate::preprocess`] does, image after image in row-major order (`[N, 1, S, S]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub pixels: Vec<f32>,
    pub len: usize,
    pub size: u32,
}

impl Batch {
    /// `[N, 1, S, S]`.
    pub fn shape(&self) -> [usize; 4] {
        let side = self.size as usize;
        [self.len, 1, side, side]
    }

    /// The `i`-th image's pixels.
    pub fn image(&self, i: usize) -> &[f32] {
        let pixels = (self.size * self.size) as usize;
        &self.pixels[i * pixels..(i + 1) * pixels]
    }
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
    /// If an index is out of range.
    pub fn batch(&self, dataset: &Dataset, indices: &[usize], epoch: usize) -> Batch {
        match &self.augment {
            Some(augment) => {
                let images: Vec<GrayImage> = indices
                    .par_iter()
                    .map(|&i| {
                        augment.apply_seeded(
                            &dataset.samples[i].image,
                            self.seed,
                            epoch as u64,
                            i as u64,
                        )
                    })
                    .collect();
                batch_of_images(&images.iter().collect::<Vec<_>>(), self.size)
            }
            None => {
                let images: Vec<&GrayImage> =
                    indices.iter().map(|&i| &dataset.samples[i].image).collect();
                batch_of_images(&images, self.size)
            }
        }
    }
}

/// The network input of `images`, each resized and normalised by [`preprocess`].
///
/// [`preprocess`]: crate::preprocess
pub fn batch_of_images(images: &[&GrayImage], size: u32) -> Batch {
    let pixels = (size * size) as usize;
    let mut values = vec![0.0f32; images.len() * pixels];
    values
        .par_chunks_mut(pixels.max(1))
        .zip(images.par_iter())
        .for_each(|(out, image)| preprocess_into(image, size, out));
    Batch {
        pixels: values,
        len: images.len(),
        size,
    }
}

/// The ten crops of [`crate::augment::ten_crop`] as one batch of ten.
pub fn ten_crop_batch(image: &GrayImage, crop: u32, size: u32) -> Batch {
    let crops = crate::augment::ten_crop(image, crop);
    batch_of_images(&crops.iter().collect::<Vec<_>>(), size)
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
