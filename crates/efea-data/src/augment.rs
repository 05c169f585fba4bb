//! Training-time augmentation (seeded) and ten-crop test-time augmentation, on grayscale
//! images before [`crate::preprocess`]. The transforms follow torchvision's (`RandomCrop` with
//! padding, `RandomResizedCrop`, `RandomHorizontalFlip`, `RandomRotation`, `ColorJitter`
//! brightness/contrast, `RandomErasing`, `TenCrop`), except that padding and rotation repeat
//! the border pixels instead of filling black, which would be a cue no real face has.

use image::{GrayImage, Luma};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Which augmentations to apply and how strongly. Saved in a training run's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Random crop back to the original size after padding this many pixels on each side.
    pub crop_padding: u32,
    /// Probability of a random resized crop instead of the padded crop.
    pub resized_crop_prob: f32,
    /// Area fraction range of the resized crop.
    pub resized_crop_scale: (f32, f32),
    /// Aspect ratio range (width / height) of the resized crop.
    pub resized_crop_ratio: (f32, f32),
    /// Probability of a horizontal flip.
    pub hflip_prob: f32,
    /// Rotation drawn uniformly in `[-rotation_deg, rotation_deg]` degrees.
    pub rotation_deg: f32,
    /// Brightness factor drawn in `[1 - brightness, 1 + brightness]`.
    pub brightness: f32,
    /// Contrast factor drawn in `[1 - contrast, 1 + contrast]` (around the mean gray).
    pub contrast: f32,
    /// Probability of erasing one random rectangle (filled with noise).
    pub erasing_prob: f32,
    /// Area fraction range of the erased rectangle.
    pub erasing_scale: (f32, f32),
    /// Aspect ratio range of the erased rectangle.
    pub erasing_ratio: (f32, f32),
}

impl Default for AugmentConfig {
    /// A common FER2013 recipe: padded crop, flip, +-10 degrees, mild photometric jitter and
    /// occasional erasing.
    fn default() -> Self {
        Self {
            crop_padding: 4,
            resized_crop_prob: 0.0,
            resized_crop_scale: (0.8, 1.0),
            resized_crop_ratio: (0.75, 4.0 / 3.0),
            hflip_prob: 0.5,
            rotation_deg: 10.0,
            brightness: 0.2,
            contrast: 0.2,
            erasing_prob: 0.25,
            erasing_scale: (0.02, 0.2),
            erasing_ratio: (0.3, 3.3),
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (evaluation).
    pub fn none() -> Self {
        Self {
            crop_padding: 0,
            resized_crop_prob: 0.0,
            hflip_prob: 0.0,
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            erasing_prob: 0.0,
            ..Self::default()
        }
    }

    /// Shifts of up to 2 pixels, flips and mild photometric jitter; no rotation, no erasing.
    /// For data whose classes hang on small cues that the FER2013 recipe can erase or blur
    /// (the synthetic set: on `easy` faces a width-0.35 network left chance by epoch 3-5 with
    /// this, and was still at chance after 4 with the default).
    pub fn light() -> Self {
        Self {
            crop_padding: 2,
            rotation_deg: 0.0,
            brightness: 0.1,
            contrast: 0.1,
            erasing_prob: 0.0,
            ..Self::default()
        }
    }

    /// An augmented copy of `image`, the same size.
    pub fn apply(&self, image: &GrayImage, rng: &mut Rng) -> GrayImage {
        let (width, height) = image.dimensions();
        let mut out = if rng.chance(self.resized_crop_prob) {
            random_resized_crop(image, self.resized_crop_scale, self.resized_crop_ratio, rng)
        } else if self.crop_padding > 0 {
            let pad = self.crop_padding as i64;
            let dx = rng.below(2 * self.crop_padding as usize + 1) as i64 - pad;
            let dy = rng.below(2 * self.crop_padding as usize + 1) as i64 - pad;
            GrayImage::from_fn(width, height, |x, y| {
                sample_clamped(image, x as i64 + dx, y as i64 + dy)
            })
        } else {
            image.clone()
        };
        if self.rotation_deg > 0.0 {
            let angle = rng
                .range(-self.rotation_deg, self.rotation_deg)
                .to_radians();
            out = rotate(&out, angle);
        }
        if rng.chance(self.hflip_prob) {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        if self.brightness > 0.0 || self.contrast > 0.0 {
            let b = 1.0 + rng.range(-self.brightness, self.brightness);
            let c = 1.0 + rng.range(-self.contrast, self.contrast);
            let mean = out.as_raw().iter().map(|&p| p as f32).sum::<f32>()
                / out.as_raw().len().max(1) as f32;
            for p in out.iter_mut() {
                let v = *p as f32 * b;
                *p = ((v - mean * b) * c + mean * b).round().clamp(0.0, 255.0) as u8;
            }
        }
        if rng.chance(self.erasing_prob) {
            erase(&mut out, self.erasing_scale, self.erasing_ratio, rng);
        }
        out
    }

    /// [`AugmentConfig::apply`] with the generator of item `index` in `epoch` under `seed`, so
    /// batches built in parallel or after a resume get the same augmentation.
    pub fn apply_seeded(&self, image: &GrayImage, seed: u64, epoch: u64, index: u64) -> GrayImage {
        self.apply(
            image,
            &mut Rng::for_item(seed, epoch.wrapping_add(0xA0_6000), index),
        )
    }
}

fn sample_clamped(image: &GrayImage, x: i64, y: i64) -> Luma<u8> {
    let (width, height) = image.dimensions();
    *image.get_pixel(
        x.clamp(0, width as i64 - 1) as u32,
        y.clamp(0, height as i64 - 1) as u32,
    )
}

/// Bilinear sample at `(x, y)` with border pixels repeated.
fn bilinear(image: &GrayImage, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let p = |dx, dy| sample_clamped(image, x0 + dx, y0 + dy).0[0] as f32;
    let top = p(0, 0) * (1.0 - fx) + p(1, 0) * fx;
    let bottom = p(0, 1) * (1.0 - fx) + p(1, 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// `image` rotated by `angle` radians about its centre.
pub fn rotate(image: &GrayImage, angle: f32) -> GrayImage {
    let (width, height) = image.dimensions();
    let (cx, cy) = (width as f32 / 2.0 - 0.5, height as f32 / 2.0 - 0.5);
    let (sin, cos) = angle.sin_cos();
    GrayImage::from_fn(width, height, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = cos * dx + sin * dy + cx;
        let sy = -sin * dx + cos * dy + cy;
        Luma([bilinear(image, sx, sy).round().clamp(0.0, 255.0) as u8])
    })
}

/// torchvision's `RandomResizedCrop`: a random area and aspect ratio, resized back.
fn random_resized_crop(
    image: &GrayImage,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> GrayImage {
    let (width, height) = image.dimensions();
    let area = (width * height) as f32;
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1);
        let log_ratio = rng.range(ratio.0.ln(), ratio.1.ln()).exp();
        let w = (target * log_ratio).sqrt().round() as u32;
        let h = (target / log_ratio).sqrt().round() as u32;
        if w > 0 && h > 0 && w <= width && h <= height {
            let x = rng.below((width - w + 1) as usize) as u32;
            let y = rng.below((height - h + 1) as usize) as u32;
            let crop = image::imageops::crop_imm(image, x, y, w, h).to_image();
            return image::imageops::resize(
                &crop,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
        }
    }
    image.clone()
}

/// torchvision's `RandomErasing`, filled with uniform noise.
fn erase(image: &mut GrayImage, scale: (f32, f32), ratio: (f32, f32), rng: &mut Rng) {
    let (width, height) = image.dimensions();
    let area = (width * height) as f32;
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1);
        let aspect = rng.range(ratio.0.ln(), ratio.1.ln()).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if w > 0 && h > 0 && w < width && h < height {
            let x0 = rng.below((width - w + 1) as usize) as u32;
            let y0 = rng.below((height - h + 1) as usize) as u32;
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    image.put_pixel(x, y, Luma([(rng.next_u64() >> 56) as u8]));
                }
            }
            return;
        }
    }
}

/// torchvision's `TenCrop`: the four corners and the centre at `crop x crop`, then the same
/// five of the horizontally flipped image. For test-time augmentation, average the ten
/// predictions (each crop goes through [`crate::preprocess`], which resizes it).
pub fn ten_crop(image: &GrayImage, crop: u32) -> Vec<GrayImage> {
    let (width, height) = image.dimensions();
    let crop = crop.min(width).min(height);
    let corners = [
        (0, 0),
        (width - crop, 0),
        (0, height - crop),
        (width - crop, height - crop),
        ((width - crop) / 2, (height - crop) / 2),
    ];
    let flipped = image::imageops::flip_horizontal(image);
    [image, &flipped]
        .into_iter()
        .flat_map(|source| {
            corners
                .iter()
                .map(move |&(x, y)| image::imageops::crop_imm(source, x, y, crop, crop).to_image())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> GrayImage {
        GrayImage::from_fn(48, 48, |x, y| Luma([(x * 4 + y) as u8]))
    }

    #[test]
    fn same_seed_same_augmentation_and_size_is_kept() {
        let config = AugmentConfig {
            resized_crop_prob: 0.5,
            erasing_prob: 0.5,
            ..AugmentConfig::default()
        };
        let image = gradient();
        let a = config.apply_seeded(&image, 1, 0, 5);
        let b = config.apply_seeded(&image, 1, 0, 5);
        let c = config.apply_seeded(&image, 1, 1, 5);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.dimensions(), (48, 48));
    }

    #[test]
    fn none_is_the_identity() {
        let image = gradient();
        assert_eq!(AugmentConfig::none().apply(&image, &mut Rng::new(3)), image);
    }

    #[test]
    fn ten_crop_gives_corners_centre_and_their_mirrors() {
        let image = gradient();
        let crops = ten_crop(&image, 44);
        assert_eq!(crops.len(), 10);
        assert!(crops.iter().all(|c| c.dimensions() == (44, 44)));
        assert_eq!(crops[0].get_pixel(0, 0), image.get_pixel(0, 0));
        assert_eq!(crops[5].get_pixel(0, 0), image.get_pixel(47, 0));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = AugmentConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<AugmentConfig>(&json).unwrap(),
            config
        );
        let partial: AugmentConfig = serde_json::from_str(r#"{"hflip_prob": 0.0}"#).unwrap();
        assert_eq!(partial.hflip_prob, 0.0);
        assert_eq!(partial.crop_padding, 4);
    }
}
