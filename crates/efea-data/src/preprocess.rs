//! The one mapping from a grayscale image to the network input (MODEL.md, "Input"): resize to
//! `S x S`, scale pixels to `[0, 1]`, then normalise `(x - 0.5) / 0.5`. The batcher, the CLI
//! and the server all go through [`preprocess`], so training and inference cannot drift apart.

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage};

/// Default input side `S` (MODEL.md "Input": 48, FER2013's native size).
pub const INPUT_SIZE: u32 = 48;
/// Pixels are divided by this to land in `[0, 1]` (MODEL.md "Input").
pub const PIXEL_SCALE: f32 = 255.0;
/// Normalisation mean (MODEL.md "Input": `(x - 0.5) / 0.5`).
pub const NORM_MEAN: f32 = 0.5;
/// Normalisation standard deviation (MODEL.md "Input": `(x - 0.5) / 0.5`).
pub const NORM_STD: f32 = 0.5;

/// Any decoded image as 8-bit grayscale (ITU-R BT.601 luma, the `image` crate's conversion).
pub fn to_gray(image: &DynamicImage) -> GrayImage {
    image.to_luma8()
}

/// The largest centred square of `image`, resized to `size x size` (a copy when it already is).
pub fn resize_square(image: &GrayImage, size: u32) -> GrayImage {
    let (width, height) = image.dimensions();
    if width == size && height == size {
        return image.clone();
    }
    let side = width.min(height);
    let square = if width == height {
        image.clone()
    } else {
        imageops::crop_imm(image, (width - side) / 2, (height - side) / 2, side, side).to_image()
    };
    // Triangle widens its support with the scale factor, so shrinking a 640-pixel frame to 48
    // averages instead of aliasing.
    imageops::resize(&square, size, size, FilterType::Triangle)
}

/// Writes the network input of `image` (`size * size` values, row-major) into `out`.
///
/// # Panics
/// If `out.len() != size * size`.
pub fn preprocess_into(image: &GrayImage, size: u32, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        (size * size) as usize,
        "output buffer must hold size * size values"
    );
    let resized;
    let image = if image.dimensions() == (size, size) {
        image
    } else {
        resized = resize_square(image, size);
        &resized
    };
    for (value, &pixel) in out.iter_mut().zip(image.as_raw()) {
        *value = (pixel as f32 / PIXEL_SCALE - NORM_MEAN) / NORM_STD;
    }
}

/// The network input of `image`: `size * size` values in `[-1, 1]`, row-major.
pub fn preprocess(image: &GrayImage, size: u32) -> Vec<f32> {
    let mut out = vec![0.0; (size * size) as usize];
    preprocess_into(image, size, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_is_minus_one_white_is_one_and_size_is_enforced() {
        let mut image = GrayImage::new(60, 40);
        image.put_pixel(30, 20, image::Luma([255]));
        let input = preprocess(&image, 48);
        assert_eq!(input.len(), 48 * 48);
        assert!(input.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(input[0], -1.0);
        let white = preprocess(&GrayImage::from_pixel(48, 48, image::Luma([255])), 48);
        assert!(white.iter().all(|&v| v == 1.0));
    }
}
