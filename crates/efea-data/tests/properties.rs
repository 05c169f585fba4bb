//! Property tests of what reads untrusted bytes: the FER2013 and FER+ CSV readers and the image
//! decoder. Generated valid files read back exactly as written; arbitrary and mutated ones
//! give a dataset or a one-line error naming the file (and, for a row, a line the file has),
//! never a panic; an image declaring more pixels than allowed is refused from its header.
//! `fuzz/` runs the same readers under libFuzzer for longer.

mod common;

use std::io::Cursor;
use std::path::Path;

use efea_data::decode::{DecodeError, decode};
use efea_data::fer2013::{USAGES, load_csv};
use efea_data::{DataError, Dataset, DatasetKind, LoadOptions, load};
use image::{DynamicImage, ImageFormat, RgbImage};
use proptest::prelude::*;

use common::PIXELS;

/// Few cases: every case writes and reads files, and the suite runs unoptimised in CI.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Repeat the `len` bytes at a position (a duplicated row or field).
    Repeat(usize, usize),
}

/// Bytes that mean something to a CSV reader, and some that mean nothing.
fn telling_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b",\"\n\r \t0123456789-.x".to_vec()),
        any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), telling_byte()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), telling_byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Repeat(at, len)),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Replace(at, byte) if len > 0 => bytes[at % len] = byte,
            Edit::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
            Edit::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Edit::Truncate(at) => bytes.truncate(at % (len + 1)),
            Edit::Repeat(at, count) if len > 0 => {
                let start = at % len;
                let piece = bytes[start..(start + count).min(len)].to_vec();
                bytes.splice(start..start, piece);
            }
            _ => {}
        }
    }
    bytes
}

/// The error is one line, starts with the file, and a row error names a line the file has.
fn assert_names_file_and_line(error: &DataError, path: &Path, bytes: &[u8]) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(
        message.starts_with(&path.display().to_string()),
        "does not name {}: {message}",
        path.display()
    );
    match error {
        DataError::Row { line, .. } => {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            assert!(
                (1..=lines).contains(line),
                "line {line} of a {lines}-line file: {message}"
            );
        }
        DataError::File { .. } => {}
        other => panic!("unexpected kind of error for a CSV file: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// FER2013
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FerRow {
    label: usize,
    usage: usize,
    pixels: Vec<u8>,
}

fn fer_rows(max: usize) -> impl Strategy<Value = Vec<FerRow>> {
    let row = (
        0usize..7,
        0usize..3,
        prop::collection::vec(any::<u8>(), PIXELS),
    )
        .prop_map(|(label, usage, pixels)| FerRow {
            label,
            usage,
            pixels,
        });
    prop::collection::vec(row, 1..=max)
}

/// How a generated file is spelled: all of it legal FER2013 as found in the wild.
#[derive(Debug, Clone)]
struct Spelling {
    /// Order of `emotion`, `pixels`, `Usage` (indices into them).
    order: [usize; 3],
    quoted: bool,
    crlf: bool,
    /// Spaces after the commas (`icml_face_data.csv`).
    spaced: bool,
    /// A UTF-8 byte-order mark before the header.
    bom: bool,
    /// Blank lines between the rows.
    blank_lines: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    let orders = vec![
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    (
        prop::sample::select(orders),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(order, quoted, crlf, spaced, bom, blank_lines)| Spelling {
            order,
            quoted,
            crlf,
            spaced,
            bom,
            blank_lines,
        })
}

fn fer2013_text(rows: &[FerRow], spelling: &Spelling) -> Vec<u8> {
    let join = |fields: [String; 3]| {
        let fields: Vec<String> = spelling
            .order
            .iter()
            .map(|&i| {
                if spelling.quoted {
                    format!("\"{}\"", fields[i])
                } else {
                    fields[i].clone()
                }
            })
            .collect();
        fields.join(if spelling.spaced { ", " } else { "," })
    };
    let ending = if spelling.crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    if spelling.bom {
        text.push('\u{feff}');
    }
    text.push_str(&join(["emotion".into(), "pixels".into(), "Usage".into()]));
    text.push_str(ending);
    for row in rows {
        let pixels: Vec<String> = row.pixels.iter().map(u8::to_string).collect();
        text.push_str(&join([
            row.label.to_string(),
            pixels.join(" "),
            USAGES[row.usage].to_string(),
        ]));
        text.push_str(ending);
        if spelling.blank_lines {
            text.push_str(ending);
        }
    }
    text.into_bytes()
}

/// Writes `bytes` as `fer2013.csv` in a fresh folder and reads it.
fn read_fer2013(bytes: &[u8], skip_bad: bool) -> (tempfile::TempDir, Result<Dataset, DataError>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fer2013.csv");
    std::fs::write(&path, bytes).expect("temp dir is writable");
    let options = LoadOptions {
        skip_bad,
        ..LoadOptions::default()
    };
    let result = load_csv(&path, &options);
    (dir, result)
}

fn check_fer2013(bytes: &[u8], skip_bad: bool) {
    let (dir, result) = read_fer2013(bytes, skip_bad);
    match result {
        Ok(dataset) => {
            assert!(!dataset.is_empty());
            for sample in &dataset.samples {
                assert_eq!(sample.image.dimensions(), (48, 48));
                assert!(sample.label < dataset.num_classes());
            }
        }
        Err(error) => assert_names_file_and_line(&error, &dir.path().join("fer2013.csv"), bytes),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn fer2013_a_generated_file_reads_back_as_written(
        rows in fer_rows(5),
        spelling in spelling(),
    ) {
        let (_dir, result) = read_fer2013(&fer2013_text(&rows, &spelling), false);
        let dataset = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(dataset.len(), rows.len());
        prop_assert!(dataset.labelled);
        for (i, (sample, row)) in dataset.samples.iter().zip(&rows).enumerate() {
            prop_assert_eq!(sample.label, row.label);
            prop_assert_eq!(sample.image.as_raw(), &row.pixels);
            prop_assert!(dataset.splits[USAGES[row.usage]].contains(&i));
        }
    }

    #[test]
    fn fer2013_a_mutated_file_is_read_or_refused_with_its_line(
        rows in fer_rows(3),
        spelling in spelling(),
        edits in prop::collection::vec(edit(), 1..8),
        skip_bad in any::<bool>(),
    ) {
        check_fer2013(&mutate(fer2013_text(&rows, &spelling), &edits), skip_bad);
    }

    #[test]
    fn fer2013_arbitrary_bytes_are_read_or_refused_with_a_line(
        header in prop::sample::select(vec!["", "emotion,pixels,Usage\n", "pixels\n", "emotion,pixels\r\n"]),
        body in prop::collection::vec(telling_byte(), 0..3000),
        skip_bad in any::<bool>(),
    ) {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&body);
        check_fer2013(&bytes, skip_bad);
    }
}

// ---------------------------------------------------------------------------------------
// FER+
// ---------------------------------------------------------------------------------------

const FERPLUS_HEADER: &str =
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF";

#[derive(Debug, Clone)]
struct VoteRow {
    usage: usize,
    has_image: bool,
    votes: [u8; 10],
}

fn vote_rows(max: usize) -> impl Strategy<Value = Vec<VoteRow>> {
    let row = (
        0usize..3,
        prop::bool::weighted(0.9),
        prop::array::uniform10(0u8..=10),
    )
        .prop_map(|(usage, has_image, votes)| VoteRow {
            usage,
            has_image,
            votes,
        });
    prop::collection::vec(row, 1..=max)
}

fn votes_text(rows: &[VoteRow]) -> Vec<u8> {
    let mut text = format!("{FERPLUS_HEADER}\n");
    for (i, row) in rows.iter().enumerate() {
        let name = if row.has_image {
            format!("fer{i:07}.png")
        } else {
            String::new()
        };
        let votes: Vec<String> = row.votes.iter().map(u8::to_string).collect();
        text.push_str(&format!(
            "{},{name},{}\n",
            USAGES[row.usage],
            votes.join(",")
        ));
    }
    text.into_bytes()
}

/// The pixels of image `row` of the companion `fer2013.csv`: different for every row.
fn companion_pixels(row: usize) -> Vec<u8> {
    (0..PIXELS)
        .map(|j| ((row * 37 + j * 7) % 256) as u8)
        .collect()
}

/// A folder with `fer2013.csv` of `count` rows and `fer2013new.csv` holding `votes`.
fn ferplus_folder(count: usize, votes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: Vec<String> = (0..count)
        .map(|i| {
            let pixels: Vec<String> = companion_pixels(i).iter().map(u8::to_string).collect();
            format!("{},{},Training", i % 7, pixels.join(" "))
        })
        .collect();
    common::write_rows(
        &dir.path().join("fer2013.csv"),
        "emotion,pixels,Usage",
        &rows,
    );
    std::fs::write(dir.path().join("fer2013new.csv"), votes).expect("temp dir is writable");
    dir
}

/// What the FER+ authors' `ferplus.py` makes of a row: single votes are noise, the majority
/// (first in column order on a tie) is the label, unknown / not-a-face / no image drop it.
fn expected_label(row: &VoteRow) -> Option<(usize, Vec<f32>)> {
    if !row.has_image {
        return None;
    }
    let cleaned: Vec<f32> = row
        .votes
        .iter()
        .map(|&v| if v <= 1 { 0.0 } else { f32::from(v) })
        .collect();
    let best = (0..10).fold(
        0,
        |best, i| if cleaned[i] > cleaned[best] { i } else { best },
    );
    if cleaned[best] == 0.0 || best >= 8 {
        return None;
    }
    let total: f32 = cleaned[..8].iter().sum();
    Some((best, cleaned[..8].iter().map(|v| v / total).collect()))
}

fn check_ferplus(count: usize, votes: &[u8], skip_bad: bool) {
    let dir = ferplus_folder(count, votes);
    let options = LoadOptions {
        skip_bad,
        ..LoadOptions::default()
    };
    match load(DatasetKind::FerPlus, Some(dir.path()), &options) {
        Ok(dataset) => {
            assert!(!dataset.is_empty());
            for sample in &dataset.samples {
                assert!(sample.label < dataset.num_classes());
                let soft = sample.soft_label.as_ref().expect("FER+ gives soft labels");
                assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{soft:?}");
            }
        }
        Err(error) => assert_names_file_and_line(&error, &dir.path().join("fer2013new.csv"), votes),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn ferplus_generated_votes_give_the_authors_labels_and_the_images_pixels(
        rows in vote_rows(8),
    ) {
        let dir = ferplus_folder(rows.len(), &votes_text(&rows));
        let result = load(DatasetKind::FerPlus, Some(dir.path()), &LoadOptions::default());
        let expected: Vec<(usize, usize, Vec<f32>)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| expected_label(row).map(|(label, soft)| (i, label, soft)))
            .collect();
        if expected.is_empty() {
            let message = result.expect_err("every row dropped").to_string();
            prop_assert!(message.contains("all") && message.contains("rows are bad"), "{}", message);
            return Ok(());
        }
        let dataset = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(dataset.len(), expected.len());
        prop_assert_eq!(dataset.report.dropped, rows.len() - expected.len());
        for (k, (sample, (i, label, soft))) in dataset.samples.iter().zip(&expected).enumerate() {
            prop_assert_eq!(sample.label, *label, "row {}", i);
            let read = sample.soft_label.as_ref().expect("soft label");
            for (a, b) in read.iter().zip(soft) {
                prop_assert!((a - b).abs() < 1e-6, "row {}: {:?} against {:?}", i, read, soft);
            }
            prop_assert_eq!(sample.image.as_raw(), &companion_pixels(*i));
            let source = format!("fer2013new.csv:{}", i + 2);
            prop_assert!(sample.source.to_string().ends_with(&source), "{}", sample.source);
            prop_assert!(dataset.splits[USAGES[rows[*i].usage]].contains(&k));
        }
    }

    #[test]
    fn ferplus_a_mutated_vote_file_is_read_or_refused_with_its_line(
        rows in vote_rows(6),
        edits in prop::collection::vec(edit(), 1..8),
        skip_bad in any::<bool>(),
    ) {
        check_ferplus(rows.len(), &mutate(votes_text(&rows), &edits), skip_bad);
    }

    #[test]
    fn ferplus_arbitrary_bytes_are_read_or_refused_with_a_line(
        header in any::<bool>(),
        body in prop::collection::vec(telling_byte(), 0..1000),
        count in 1usize..4,
        skip_bad in any::<bool>(),
    ) {
        let mut bytes = if header { format!("{FERPLUS_HEADER}\n").into_bytes() } else { Vec::new() };
        bytes.extend_from_slice(&body);
        check_ferplus(count, &bytes, skip_bad);
    }
}

// ---------------------------------------------------------------------------------------
// Image decoding and its size limit
// ---------------------------------------------------------------------------------------

const FORMATS: [ImageFormat; 6] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Bmp,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Tiff,
];

fn encoded(width: u32, height: u32, seed: u8, format: ImageFormat) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(seed),
            (y as u8).wrapping_add(seed),
            seed,
        ])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encoding to memory");
    bytes
}

/// `decode` returned, and what it returned keeps to the limit and to one line.
fn check_decode(bytes: &[u8], max_pixels: u64) {
    match decode(bytes, max_pixels) {
        Ok(image) => {
            assert!(image.width() > 0 && image.height() > 0);
            assert!(u64::from(image.width()) * u64::from(image.height()) <= max_pixels);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty() && !message.contains('\n'), "{message}");
        }
    }
}

/// The magic numbers of the formats the decoder knows, to get arbitrary bytes past the
/// format guess.
fn magic() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        &b""[..],
        &b"\x89PNG\r\n\x1a\n"[..],
        &b"\xff\xd8\xff"[..],
        &b"GIF89a"[..],
        &b"BM"[..],
        &b"RIFF\0\0\0\0WEBPVP8 "[..],
        &b"II*\0"[..],
        &b"MM\0*"[..],
    ])
}

/// CRC-32 of PNG chunks (ISO 3309, as the PNG specification gives it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real PNG whose IHDR now declares `width` x `height` (CRC fixed, data unchanged).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = encoded(4, 3, 9, ImageFormat::Png);
    // Signature (8), length (4), "IHDR" (4), then width and height.
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A real baseline JPEG whose SOF0 now declares `width` x `height`.
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = encoded(16, 16, 3, ImageFormat::Jpeg);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("the encoder writes a baseline SOF0");
    // Marker (2), length (2), precision (1), then height and width.
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// Found by the PNG property below: the png decoder refused this header as it opened (its
/// buffer would not fit in memory) and `decode` called the file corrupt instead of too large.
#[test]
fn decode_refuses_a_png_declaring_more_pixels_than_memory_holds_as_too_large() {
    let (width, height) = (1_541_809_878, 1_994_057_367);
    assert_eq!(
        decode(&png_declaring(width, height), 1).unwrap_err(),
        DecodeError::TooLarge {
            width,
            height,
            max_pixels: 1
        }
    );
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn decode_arbitrary_bytes_give_an_image_within_the_limit_or_a_reason(
        magic in magic(),
        body in prop::collection::vec(any::<u8>(), 0..2000),
        max_pixels in 1u64..100_000,
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&body);
        check_decode(&bytes, max_pixels);
    }

    #[test]
    fn decode_mutated_images_give_an_image_within_the_limit_or_a_reason(
        format in prop::sample::select(FORMATS.to_vec()),
        width in 1u32..24,
        height in 1u32..24,
        seed in any::<u8>(),
        edits in prop::collection::vec(edit(), 0..6),
        max_pixels in 1u64..1000,
    ) {
        check_decode(&mutate(encoded(width, height, seed, format), &edits), max_pixels);
    }

    #[test]
    fn decode_refuses_a_png_declaring_too_many_pixels_from_its_header(
        width in 1u32..=i32::MAX as u32,
        height in 1u32..=i32::MAX as u32,
        max_pixels in 1u64..50_000_000,
    ) {
        prop_assume!(u64::from(width) * u64::from(height) > max_pixels);
        prop_assert_eq!(
            decode(&png_declaring(width, height), max_pixels).unwrap_err(),
            DecodeError::TooLarge { width, height, max_pixels }
        );
    }

    #[test]
    fn decode_refuses_a_jpeg_declaring_too_many_pixels_from_its_header(
        width in 1u16..,
        height in 1u16..,
        max_pixels in 256u64..1_000_000,
    ) {
        let (w, h) = (u32::from(width), u32::from(height));
        prop_assume!(u64::from(w) * u64::from(h) > max_pixels);
        prop_assert_eq!(
            decode(&jpeg_declaring(width, height), max_pixels).unwrap_err(),
            DecodeError::TooLarge { width: w, height: h, max_pixels }
        );
    }
}
