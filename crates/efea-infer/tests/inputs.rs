//! Damaged and unusual inputs: each gets a correct result or a one-line error of its own,
//! and never stops the images around it.

mod common;

use efea_infer::{ImageSource, InferError, PredictorConfig, decode};
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage,
};

/// A picture with a face-free gradient: enough structure for the detector to scan.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    })
}

fn no_detect() -> PredictorConfig {
    PredictorConfig {
        detect: false,
        ..PredictorConfig::default()
    }
}

#[test]
fn a_zero_byte_file_is_an_empty_file_error() {
    let predictor = common::predictor(PredictorConfig::default());
    let error = predictor.predict_bytes(&[]).unwrap_err();
    assert!(matches!(error, InferError::Empty), "{error}");
}

#[test]
fn truncated_files_are_corrupt_not_a_crash() {
    let predictor = common::predictor(PredictorConfig::default());
    let png = common::encode(&DynamicImage::ImageRgb8(picture(120, 90)), ImageFormat::Png);
    let error = predictor.predict_bytes(&png[..png.len() / 2]).unwrap_err();
    assert!(matches!(error, InferError::Corrupt(_)), "{error}");
    // Only the signature and part of the header.
    let error = predictor.predict_bytes(&png[..20]).unwrap_err();
    assert!(matches!(error, InferError::Corrupt(_)), "{error}");

    let jpeg = common::encode(
        &DynamicImage::ImageRgb8(picture(120, 90)),
        ImageFormat::Jpeg,
    );
    let error = predictor.predict_bytes(&jpeg[..40]).unwrap_err();
    assert!(matches!(error, InferError::Corrupt(_)), "{error}");
    // A JPEG cut in its scan data: refused, or decoded to its full size (decoders may fill
    // the missing rows); never a panic or a wrong size.
    match predictor.predict_bytes(&jpeg[..jpeg.len() * 2 / 3]) {
        Ok(analysed) => assert_eq!(
            (analysed.prediction.width, analysed.prediction.height),
            (120, 90)
        ),
        Err(error) => assert!(matches!(error, InferError::Corrupt(_)), "{error}"),
    }
}

#[test]
fn files_that_are_not_images_are_named_so() {
    let predictor = common::predictor(PredictorConfig::default());
    for bytes in [
        &b"name,label\nx.png,happy\n"[..],
        &b"%PDF-1.7\n"[..],
        &[0u8; 64][..],
        &b"\x7fELF\x02\x01\x01"[..],
    ] {
        let error = predictor.predict_bytes(bytes).unwrap_err();
        assert!(matches!(error, InferError::NotAnImage), "{error}");
        assert_eq!(error.to_string().lines().count(), 1);
    }
}

#[test]
fn a_one_pixel_image_has_no_face_and_classifies_without_detection() {
    let one = common::encode(&DynamicImage::ImageRgb8(picture(1, 1)), ImageFormat::Png);
    let analysed = common::predictor(PredictorConfig::default())
        .predict_bytes(&one)
        .unwrap();
    assert!(analysed.prediction.faces.is_empty());
    let analysed = common::predictor(no_detect()).predict_bytes(&one).unwrap();
    let faces = &analysed.prediction.faces;
    assert_eq!(faces.len(), 1);
    let sum: f32 = faces[0].probabilities.iter().map(|(_, p)| p).sum();
    assert!((sum - 1.0).abs() < 1e-4);
}

/// A PNG that declares `width x height` but holds the pixel data of one pixel (a header
/// reader stops at that first IDAT chunk; a decoder would find the data short).
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = common::encode(&DynamicImage::ImageRgb8(picture(1, 1)), ImageFormat::Png);
    // IHDR's data starts at byte 16: width, height (big-endian); then its CRC at byte 29.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_huge_image_is_refused_from_its_header_before_decoding() {
    let predictor = common::predictor(PredictorConfig::default());
    // 100,000 x 100,000 declared, one pixel's data: refused as too large, so no decoding was tried
    // (decoding would have failed as truncated, or tried to allocate 30 GB).
    let error = predictor
        .predict_bytes(&png_header_only(100_000, 100_000))
        .unwrap_err();
    assert!(
        matches!(
            error,
            InferError::TooLarge {
                width: 100_000,
                height: 100_000,
                ..
            }
        ),
        "{error}"
    );
    // A real image over a configured limit.
    let limited = common::predictor(PredictorConfig {
        max_pixels: 100_000,
        ..PredictorConfig::default()
    });
    let big = common::encode(
        &DynamicImage::ImageRgb8(picture(400, 300)),
        ImageFormat::Png,
    );
    assert!(matches!(
        limited.predict_bytes(&big),
        Err(InferError::TooLarge { .. })
    ));
    let small = common::encode(
        &DynamicImage::ImageRgb8(picture(300, 300)),
        ImageFormat::Png,
    );
    assert!(limited.predict_bytes(&small).is_ok());
}

#[test]
fn gray_rgba_and_16_bit_pngs_give_the_same_answer_as_8_bit_rgb() {
    // A gray picture in every layout: the gray values the network sees are the same.
    let gray = GrayImage::from_fn(64, 48, |x, y| Luma([((x * 3 + y * 2) % 256) as u8]));
    let rgb = DynamicImage::ImageLuma8(gray.clone()).to_rgb8();
    let rgba = RgbaImage::from_fn(64, 48, |x, y| {
        let v = gray.get_pixel(x, y)[0];
        Rgba([v, v, v, 255])
    });
    let gray16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(64, 48, |x, y| Luma([gray.get_pixel(x, y)[0] as u16 * 257]));
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(64, 48, |x, y| {
        let v = gray.get_pixel(x, y)[0] as u16 * 257;
        Rgb([v, v, v])
    });
    let predictor = common::bundled(no_detect());
    let answer = |image: &DynamicImage| {
        let bytes = common::encode(image, ImageFormat::Png);
        let decoded = decode(&bytes, u64::MAX).unwrap();
        assert_eq!(decoded.color(), image.color());
        predictor.predict_bytes(&bytes).unwrap().prediction.faces[0].clone()
    };
    let reference = answer(&DynamicImage::ImageRgb8(rgb));
    // The comparison can fail: the same pattern in negative moves the answer far more than
    // the tolerance below.
    let negative = GrayImage::from_fn(64, 48, |x, y| Luma([255 - gray.get_pixel(x, y)[0]]));
    let moved = common::max_difference(&answer(&DynamicImage::ImageLuma8(negative)), &reference);
    assert!(
        moved > 0.05,
        "the negative moved the answer by only {moved}"
    );
    for (name, image) in [
        ("gray", DynamicImage::ImageLuma8(gray)),
        ("rgba", DynamicImage::ImageRgba8(rgba)),
        ("gray16", DynamicImage::ImageLuma16(gray16)),
        ("rgb16", DynamicImage::ImageRgb16(rgb16)),
    ] {
        let difference = common::max_difference(&answer(&image), &reference);
        assert!(difference < 2e-3, "{name}: differs by {difference}");
    }
}

#[test]
fn an_exif_rotated_jpeg_comes_out_upright() {
    // Stored sideways (the upright picture turned 90 degrees counter-clockwise) with EXIF
    // orientation 6: "rotate 90 degrees clockwise to display".
    let upright = picture(90, 60);
    let stored = image::imageops::rotate270(&upright);
    assert_eq!(stored.dimensions(), (60, 90));
    let jpeg = common::jpeg_with_orientation(&DynamicImage::ImageRgb8(stored), 6);
    let decoded = decode(&jpeg, u64::MAX).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (90, 60));
    // Colour runs left to right in red and top to bottom in green, as in the original.
    let (left, right) = (decoded.get_pixel(2, 30)[0], decoded.get_pixel(87, 30)[0]);
    let (top, bottom) = (decoded.get_pixel(45, 2)[1], decoded.get_pixel(45, 57)[1]);
    assert!(left < 40 && right > 215, "red {left} -> {right}");
    assert!(top < 40 && bottom > 215, "green {top} -> {bottom}");
    let analysed = common::predictor(PredictorConfig::default())
        .predict_bytes(&jpeg)
        .unwrap();
    assert_eq!(
        (analysed.prediction.width, analysed.prediction.height),
        (90, 60)
    );
}

#[test]
fn other_formats_decode() {
    let image = DynamicImage::ImageRgb8(picture(40, 30));
    for format in [
        ImageFormat::Bmp,
        ImageFormat::WebP,
        ImageFormat::Tiff,
        ImageFormat::Gif,
        ImageFormat::Jpeg,
    ] {
        let bytes = common::encode(&image, format);
        let decoded = decode(&bytes, u64::MAX).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!((decoded.width(), decoded.height()), (40, 30), "{format:?}");
    }
}

#[test]
fn a_bad_file_fails_alone_among_many() {
    let predictor = common::predictor(no_detect());
    let good = common::encode(&DynamicImage::ImageRgb8(picture(50, 50)), ImageFormat::Png);
    let inputs: Vec<Vec<u8>> = vec![
        good.clone(),
        Vec::new(),
        b"not an image".to_vec(),
        good[..good.len() / 2].to_vec(),
        good.clone(),
    ];
    let results = predictor.predict_many(&inputs);
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok() && results[4].is_ok());
    assert!(matches!(results[1], Err(InferError::Empty)));
    assert!(matches!(results[2], Err(InferError::NotAnImage)));
    assert!(matches!(results[3], Err(InferError::Corrupt(_))));
    assert_eq!(
        results[0].as_ref().unwrap().prediction.faces,
        results[4].as_ref().unwrap().prediction.faces
    );
}

#[test]
fn decoded_and_encoded_sources_share_a_call_and_give_the_answers_of_one_image_each() {
    let predictor = common::predictor(no_detect());
    let image = DynamicImage::ImageRgb8(picture(60, 40));
    let png = common::encode(&image, ImageFormat::Png);
    let results = predictor.predict_sources(vec![
        ImageSource::Decoded(image.clone()),
        ImageSource::Encoded(b"not an image"),
        ImageSource::Encoded(&png),
    ]);
    assert_eq!(results.len(), 3);
    assert!(matches!(results[1], Err(InferError::NotAnImage)));
    let alone = predictor.predict_image(image).prediction.faces;
    assert_eq!(results[0].as_ref().unwrap().prediction.faces, alone);
    assert_eq!(results[2].as_ref().unwrap().prediction.faces, alone);
}
