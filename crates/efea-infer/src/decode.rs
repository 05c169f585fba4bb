//! Image bytes to pixels exactly as the dataset loaders decode them ([`efea_data::decode`]:
//! the same formats, EXIF orientation and size limits), with inference's error type.

use image::DynamicImage;

pub use efea_data::decode::{DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, dimensions};

use crate::error::Result;

/// Decodes `bytes` into an upright image; see [`efea_data::decode::decode`].
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage> {
    Ok(efea_data::decode::decode(bytes, max_pixels)?)
}
