//! Bytes to pixels, defensively: whatever a person uploads, points the CLI at or keeps in a
//! dataset folder either decodes into an upright image or fails with a one-line reason, and a
//! huge image is refused from its header before any pixel buffer is allocated. The dataset
//! loaders and inference both decode here, so a model sees the same pixels (formats, EXIF
//! orientation) in training and at prediction.

use std::io::{Cursor, ErrorKind as IoErrorKind};

use image::error::{ImageError, LimitErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// Why bytes did not decode into an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty file")]
    Empty,
    /// The bytes start like no image format efea knows.
    #[error("not an image (jpeg, png, bmp, webp, tiff or gif expected)")]
    NotAnImage,
    /// A known image format that this build cannot decode (e.g. AVIF).
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    /// More pixels than allowed, refused from the header before decoding.
    #[error("{width}x{height} image has {} pixels, over the limit of {max_pixels}", *width as u64 * *height as u64)]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// Truncated or damaged image data.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// File extensions of the formats [`decode`] reads (lower case); folders are searched for
/// these, a file named explicitly is read whatever its name.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "gif"];

/// Default pixel limit: a 50-megapixel camera frame (200 MB as RGBA).
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// Bytes a decoder may allocate per pixel: 16-bit RGBA plus the decoder's own working rows.
const ALLOC_BYTES_PER_PIXEL: u64 = 12;

/// Decodes `bytes` (jpeg, png, bmp, webp, tiff, gif) into an upright image.
///
/// The format is recognised from the content, not a file name. The dimensions are read from
/// the header and checked against `max_pixels` before decoding; the EXIF orientation of a
/// JPEG (or TIFF) is applied, so a photo taken sideways comes out as the camera's screen
/// showed it.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("guessing the format of an in-memory buffer does no fallible I/O");
    if reader.format().is_none() {
        return Err(DecodeError::NotAnImage);
    }
    // The header alone: the limits are set once the dimensions have been checked.
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|error| match error {
        // The png decoder refuses, as it opens, a header whose pixels no buffer could hold,
        // before it reports the dimensions; they are read off the header instead.
        ImageError::Limits(limit) => png_too_large(bytes, max_pixels)
            .unwrap_or_else(|| from_image_error(ImageError::Limits(limit))),
        other => from_image_error(other),
    })?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("{width}x{height} image")));
    }
    if width as u64 * height as u64 > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(ALLOC_BYTES_PER_PIXEL));
    decoder.set_limits(limits).map_err(from_image_error)?;
    // A damaged EXIF block is no reason to refuse the picture: keep it as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(from_image_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The dimensions `bytes` declare, without decoding them (`None` if it is no image).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    reader.no_limits();
    reader.into_dimensions().ok()
}

/// [`DecodeError::TooLarge`] if `bytes` are a PNG whose header declares more than
/// `max_pixels` (IHDR is the first chunk: width and height at bytes 16-23, big-endian).
fn png_too_large(bytes: &[u8], max_pixels: u64) -> Option<DecodeError> {
    let header = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n")?.get(4..16)?;
    let (tag, size) = header.split_at(4);
    let width = u32::from_be_bytes(size[..4].try_into().ok()?);
    let height = u32::from_be_bytes(size[4..].try_into().ok()?);
    (tag == b"IHDR" && u64::from(width) * u64::from(height) > max_pixels).then_some(
        DecodeError::TooLarge {
            width,
            height,
            max_pixels,
        },
    )
}

fn from_image_error(error: ImageError) -> DecodeError {
    match error {
        ImageError::Unsupported(e) => DecodeError::Unsupported(e.to_string()),
        ImageError::Limits(e) => match e.kind() {
            LimitErrorKind::InsufficientMemory | LimitErrorKind::DimensionError => {
                DecodeError::Corrupt(format!("image needs more memory than allowed ({e})"))
            }
            _ => DecodeError::Corrupt(e.to_string()),
        },
        ImageError::IoError(e) if e.kind() == IoErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the data ends early".into())
        }
        other => DecodeError::Corrupt(one_line(&other.to_string())),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, RgbImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::new(width, height))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .expect("encoding to memory");
        bytes
    }

    #[test]
    fn a_small_png_decodes_and_reports_its_dimensions() {
        let bytes = png(7, 5);
        assert_eq!(dimensions(&bytes), Some((7, 5)));
        let image = decode(&bytes, 100).unwrap();
        assert_eq!((image.width(), image.height()), (7, 5));
    }

    #[test]
    fn the_pixel_limit_is_inclusive() {
        assert!(decode(&png(10, 10), 100).is_ok());
        assert!(matches!(
            decode(&png(10, 11), 100),
            Err(DecodeError::TooLarge {
                width: 10,
                height: 11,
                max_pixels: 100
            })
        ));
    }

    #[test]
    fn empty_and_text_inputs_are_named() {
        assert!(matches!(decode(b"", 100), Err(DecodeError::Empty)));
        assert!(matches!(
            decode(b"hello, world", 100),
            Err(DecodeError::NotAnImage)
        ));
    }
}
