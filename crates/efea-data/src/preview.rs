//! A labelled grid of (augmented) samples per class, for `efea data preview` and the README.

use image::{GrayImage, ImageBuffer, Luma, Pixel, imageops};

use crate::augment::AugmentConfig;
use crate::rng::Rng;
use crate::{DataError, Dataset};

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
/// The largest side of a preview grid (a 16384 x 16384 grid is 256 MiB of pixels).
pub const MAX_GRID_SIDE: u64 = 16384;
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
    // In u64, saturating: `scale` and `per_class` come from the user, and the grid is
    // refused before anything of its size is allocated.
    let scale = u64::from(opts.scale.max(1));
    let tile = u64::from(dataset.samples.first().map_or(48, |s| s.image.width())) * scale;
    let text_scale = (scale / 2).max(1);
    let longest_name = dataset
        .classes
        .iter()
        .map(|c| c.chars().count() as u64)
        .max()
        .unwrap_or(0);
    let label_width = longest_name.saturating_mul(8 * text_scale) + 2 * u64::from(GAP);
    let step = tile + u64::from(GAP);
    let width = (per_class as u64)
        .saturating_mul(step)
        .saturating_add(label_width + u64::from(GAP));
    let height = (rows.len() as u64)
        .saturating_mul(step)
        .saturating_add(u64::from(GAP));
    if width > MAX_GRID_SIDE || height > MAX_GRID_SIDE {
        return Err(DataError::spec(
            &format!("scale={},per_class={}", opts.scale, opts.per_class),
            format!(
                "the grid would be {width} x {height} pixels, expected at most {MAX_GRID_SIDE} \
                 pixels a side"
            ),
        ));
    }
    let fits = "the grid's sides were checked against MAX_GRID_SIDE";
    let [tile, text_scale, label_width, width, height] =
        [tile, text_scale, label_width, width, height].map(|v| u32::try_from(v).expect(fits));
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
            GAP as i64,
            (top + tile / 2).saturating_sub(4 * text_scale) as i64,
            &text,
            text_scale,
            Luma([INK]),
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

/// Draws ASCII `text` with the 8x8 public-domain font in `ink`, `scale` pixels per font
/// pixel, clipped at the image border (the previews' labels and efea-infer's pictures).
pub fn draw_text<P: Pixel>(
    image: &mut ImageBuffer<P, Vec<P::Subpixel>>,
    x: i64,
    y: i64,
    text: &str,
    scale: u32,
    ink: P,
) {
    let (width, height) = (image.width() as i64, image.height() as i64);
    let s = scale as i64;
    for (n, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8i64 {
                // Bit 0 is the leftmost pixel of a row in font8x8.
                if bits >> col & 1 == 0 {
                    continue;
                }
                let (left, top) = (x + (n as i64 * 8 + col) * s, y + row as i64 * s);
                for py in top.max(0)..(top + s).min(height) {
                    for px in left.max(0)..(left + s).min(width) {
                        image.put_pixel(px as u32, py as u32, ink);
                    }
                }
            }
        }
    }
}
