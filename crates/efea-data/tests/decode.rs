//! The dataset loaders decode images as inference does (efea_data::decode): every format that
//! `efea predict` reads, upright by their EXIF orientation, and damaged files named.

use std::io::Cursor;

use efea_data::decode::{DecodeError, decode};
use efea_data::{DataError, DatasetKind, LoadOptions, load};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage, ImageEncoder, ImageFormat, Luma};

/// 90x60, dark on the left half and bright on the right.
fn halves() -> GrayImage {
    GrayImage::from_fn(90, 60, |x, _| Luma([if x < 45 { 20 } else { 230 }]))
}

/// `image` as a JPEG whose EXIF orientation is `orientation` (1..=8).
fn jpeg_with_orientation(image: &GrayImage, orientation: u16) -> Vec<u8> {
    // A minimal little-endian TIFF block holding one IFD entry: 0x0112 Orientation, SHORT.
    let mut exif = vec![
        b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0,
    ];
    exif.extend_from_slice(&orientation.to_le_bytes());
    exif.extend_from_slice(&[0; 6]);
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif).expect("JPEG carries EXIF");
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::L8,
        )
        .expect("encoding to memory");
    bytes
}

fn encoded(image: &GrayImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    // RGB: the WebP and GIF encoders take no gray input.
    DynamicImage::ImageRgb8(DynamicImage::ImageLuma8(image.clone()).into_rgb8())
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encoding to memory");
    bytes
}

/// Mean of the left and right thirds of `image`.
fn left_right(image: &GrayImage) -> (f32, f32) {
    let (width, height) = image.dimensions();
    let mean = |xs: std::ops::Range<u32>| {
        let count = (xs.len() as u32 * height) as f32;
        xs.flat_map(|x| (0..height).map(move |y| (x, y)))
            .map(|(x, y)| image.get_pixel(x, y).0[0] as f32)
            .sum::<f32>()
            / count
    };
    (mean(0..width / 3), mean(2 * width / 3..width))
}

#[test]
fn a_folder_dataset_reads_every_format_of_predict_upright() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("calm");
    std::fs::create_dir_all(&class).unwrap();
    // Stored sideways (turned 90 degrees counter-clockwise), EXIF 6: "rotate 90 clockwise".
    let sideways = image::imageops::rotate270(&halves());
    std::fs::write(class.join("phone.jpg"), jpeg_with_orientation(&sideways, 6)).unwrap();
    for (name, format) in [
        ("a.bmp", ImageFormat::Bmp),
        ("b.tiff", ImageFormat::Tiff),
        ("c.gif", ImageFormat::Gif),
        ("d.webp", ImageFormat::WebP),
        ("e.png", ImageFormat::Png),
    ] {
        std::fs::write(class.join(name), encoded(&halves(), format)).unwrap();
    }
    let options = LoadOptions {
        size: 60,
        ..LoadOptions::default()
    };
    let dataset = load(DatasetKind::Folder, Some(dir.path()), &options).unwrap();
    assert_eq!(dataset.len(), 6, "every format is read");
    for sample in &dataset.samples {
        let (left, right) = left_right(&sample.image);
        assert!(
            left < 60.0 && right > 190.0,
            "{}: left {left}, right {right}",
            sample.source
        );
    }
}

#[test]
fn a_damaged_image_in_a_dataset_is_named_with_the_decoder_s_reason() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("calm");
    std::fs::create_dir_all(&class).unwrap();
    let mut png = encoded(&halves(), ImageFormat::Png);
    png.truncate(png.len() / 2);
    std::fs::write(class.join("cut.png"), png).unwrap();
    let error = load(
        DatasetKind::Folder,
        Some(dir.path()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, DataError::Image { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("cut.png") && message.contains("corrupt or truncated"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn decode_refuses_a_huge_image_from_its_header() {
    let bytes = encoded(&GrayImage::new(300, 200), ImageFormat::Png);
    assert_eq!(
        decode(&bytes, 59_999).unwrap_err(),
        DecodeError::TooLarge {
            width: 300,
            height: 200,
            max_pixels: 59_999
        }
    );
    assert!(decode(&bytes, 60_000).is_ok());
}
