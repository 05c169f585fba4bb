//! A labelled grid of (augmented) samples per class, for `efea data preview` and the README.

use image::{GrayImage, Luma, imageops};

use crate::Dataset;
use crate::augment::AugmentConfig;
use crate::rng::Rng;

/// What the grid shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewOptions {
    /// Samples per class (columns).
    pub per_class: usize,
    /// Each image is enlarged this many times (nearest neighbour).
    pub scale: u32,
    /// Augmentation applied to each shown sample; `None` shows them as loaded.
    pub augment: Option<AugmentConfig>,
    /// Picks the samples and seeds the augmentation.
    pub seed: u64,
    /// Only samples of this split.
    pub split: Option<String>,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        Self {
            per_class: 8,
            scale: 2,
            augment: Some(AugmentConfig::default()),
            seed: 0,
            split: None,
        }
    }
}

const GAP: u32 = 4;
const BACKGROUND: u8 = 255;
const INK: u8 = 20;

/// One row per class: its name, then up to `per_class` samples drawn at random (seeded).
pub fn preview_grid(dataset: &Dataset, opts: &PreviewOptions) -> crate::Result<GrayImage> {
    let pool: Vec<usize> = match &opts.split {
        Some(split) => dataset.split(split)?.to_vec(),
        None => (0..dataset.len()).collect(),
    };
    let mut order = pool;
    Rng::new(opts.seed).shuffle(&mut order);
    let per_class = opts.per_class.max(1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); dataset.num_classes()];
    for i in order {
        let row = &mut rows[dataset.samples[i].label];
        if row.len() < per_class {
            row.push(i);
        }
    }
    let tile = dataset.samples.first().map_or(48, |s| s.image.width()) * opts.scale.max(1);
    let text_scale = (opts.scale / 2).max(1);
    let label_width = dataset
        .classes
        .iter()
        .map(|c| c.chars().count() as u32)
        .max()
        .unwrap_or(0)
        * 8
        * text_scale
        + 2 * GAP;
    let width = label_width + per_class as u32 * (tile + GAP) + GAP;
    let height = rows.len() as u32 * (tile + GAP) + GAP;
    let mut grid = GrayImage::from_pixel(width, height, Luma([BACKGROUND]));
    for (label, indices) in rows.iter().enumerate() {
        let top = GAP + label as u32 * (tile + GAP);
        let text = format!("{} ({})", dataset.classes[label], indices.len());
        let text = if indices.len() < per_class {
            text
        } else {
            dataset.classes[label].clone()
        };
        draw_text(
            &mut grid,
            GAP,
            top + tile / 2 - 4 * text_scale,
            &text,
            text_scale,
        );
        for (column, &i) in indices.iter().enumerate() {
            let image = &dataset.samples[i].image;
            let image = match &opts.augment {
                Some(augment) => augment.apply(image, &mut Rng::for_item(opts.seed, 7, i as u64)),
                None => image.clone(),
            };
            let enlarged = imageops::resize(&image, tile, tile, imageops::FilterType::Nearest);
            let left = label_width + column as u32 * (tile + GAP);
            imageops::replace(&mut grid, &enlarged, left as i64, top as i64);
        }
    }
    Ok(grid)
}

/// Draws ASCII `text` with the 8x8 public-domain font, `scale` pixels per font pixel.
pub fn draw_text(image: &mut GrayImage, x: u32, y: u32, text: &str, scale: u32) {
    for (n, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                // Bit 0 is the leftmost pixel of a row in font8x8.
                if bits >> col & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (n as u32 * 8 + col) * scale + dx;
                            let py = y + row as u32 * scale + dy;
                            if px < image.width() && py < image.height() {
                                image.put_pixel(px, py, Luma([INK]));
                            }
                        }
                    }
                }
            }
        }
    }
}
