//! What the fuzz targets check, and the seed inputs they start from (`run.sh` asks each
//! target binary to write its seeds by setting `EFEA_FUZZ_WRITE_SEEDS` to a folder).
//!
//! Every target asserts the project's promise for untrusted bytes: a result or a one-line
//! error that says where and what, never a panic, a hang or a 5xx. A failed assertion is a
//! crash to libFuzzer, which saves the input under `artifacts/`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use burn::module::Module;
use burn::tensor::Device;
use efea_data::decode::{DecodeError, decode, dimensions};
use efea_data::{DataError, DatasetKind, LoadOptions, fer2013, load};
use efea_infer::{Predictor, PredictorConfig};
use efea_model::EfeaNetConfig;
use efea_model::checkpoint::ModelSpec;
use efea_server::{AppState, ServerConfig, app};
use http_body_util::BodyExt;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, RgbImage};
use tower::ServiceExt;

/// Writes `target`'s seeds into the folder named by `EFEA_FUZZ_WRITE_SEEDS` and exits, when it
/// is set; call first in the target's `init`.
pub fn init(target: &str) {
    let Some(dir) = std::env::var_os("EFEA_FUZZ_WRITE_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("the seed folder can be made");
    let seeds = match target {
        "fer2013_csv" => fer2013_seeds(),
        "ferplus_csv" => ferplus_seeds(),
        "decode_image" => image_seeds(),
        "server_request" => request_seeds(),
        other => panic!("no seeds for `{other}`"),
    };
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("the seed folder is writable");
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------
// CSV readers
// ---------------------------------------------------------------------------------------

/// One folder per process for the files the readers are given (they read paths, not bytes).
static FILES: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a temporary folder"));

/// The error is one line, starts with `path`, and a row error names a line the file has.
fn check_csv_error(error: &DataError, path: &Path, bytes: &[u8]) {
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
                "line {line} of {lines}: {message}"
            );
        }
        DataError::File { .. } => {}
        other => panic!("unexpected kind of error for a CSV file: {other:?}"),
    }
}

/// `data` as a FER2013 CSV, strict and with `--skip-bad`.
pub fn fer2013_csv(data: &[u8]) {
    let path = FILES.path().join("fer2013.csv");
    std::fs::write(&path, data).expect("the temporary folder is writable");
    for skip_bad in [false, true] {
        let options = LoadOptions {
            skip_bad,
            ..LoadOptions::default()
        };
        match fer2013::load_csv(&path, &options) {
            Ok(dataset) => assert!(!dataset.is_empty(), "an empty dataset is an error"),
            Err(error) => check_csv_error(&error, &path, data),
        }
    }
}

/// Rows of the `fer2013.csv` beside the fuzzed `fer2013new.csv`.
const FERPLUS_IMAGES: usize = 4;

/// The folder of the FER+ target: a valid `fer2013.csv` of [`FERPLUS_IMAGES`] rows.
static FERPLUS_DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let text = fer2013_text(FERPLUS_IMAGES, Spelling::Kaggle);
    std::fs::write(dir.path().join("fer2013.csv"), text).expect("writable");
    dir
});

/// `data` as FER+'s `fer2013new.csv` next to a valid `fer2013.csv`, strict and skipping.
pub fn ferplus_csv(data: &[u8]) {
    let path = FERPLUS_DIR.path().join("fer2013new.csv");
    std::fs::write(&path, data).expect("the temporary folder is writable");
    for skip_bad in [false, true] {
        let options = LoadOptions {
            skip_bad,
            ..LoadOptions::default()
        };
        match load(DatasetKind::FerPlus, Some(FERPLUS_DIR.path()), &options) {
            Ok(dataset) => {
                assert!(!dataset.is_empty(), "an empty dataset is an error");
                for sample in &dataset.samples {
                    let soft = sample.soft_label.as_ref().expect("FER+ gives soft labels");
                    let sum: f32 = soft.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-4, "{soft:?}");
                }
            }
            Err(error) => check_csv_error(&error, &path, data),
        }
    }
}

#[derive(Clone, Copy)]
enum Spelling {
    Kaggle,
    /// `icml_face_data.csv`: other column order, spaces after commas.
    Icml,
    /// Every field quoted, CRLF, a byte-order mark.
    Spreadsheet,
    /// `train.csv`: no Usage.
    Train,
    /// `test.csv`: pixels only.
    Test,
}

fn fer2013_text(rows: usize, spelling: Spelling) -> Vec<u8> {
    let usages = ["Training", "PublicTest", "PrivateTest"];
    let mut text = String::from(match spelling {
        Spelling::Kaggle => "emotion,pixels,Usage\n",
        Spelling::Icml => "emotion, Usage, pixels\n",
        Spelling::Spreadsheet => "\u{feff}\"emotion\",\"pixels\",\"Usage\"\r\n",
        Spelling::Train => "emotion,pixels\n",
        Spelling::Test => "pixels\n",
    });
    for row in 0..rows {
        let pixels: Vec<String> = (0..48 * 48)
            .map(|j| ((row * 37 + j * 7) % 256).to_string())
            .collect();
        let (label, pixels, usage) = (row % 7, pixels.join(" "), usages[row % 3]);
        text.push_str(&match spelling {
            Spelling::Kaggle => format!("{label},{pixels},{usage}\n"),
            Spelling::Icml => format!("{label}, {usage}, {pixels}\n"),
            Spelling::Spreadsheet => format!("\"{label}\",\"{pixels}\",\"{usage}\"\r\n"),
            Spelling::Train => format!("{label},\"{pixels}\"\n"),
            Spelling::Test => format!("\"{pixels}\"\n"),
        });
    }
    text.into_bytes()
}

fn fer2013_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("kaggle.csv", fer2013_text(2, Spelling::Kaggle)),
        ("icml.csv", fer2013_text(2, Spelling::Icml)),
        ("spreadsheet.csv", fer2013_text(1, Spelling::Spreadsheet)),
        ("train.csv", fer2013_text(1, Spelling::Train)),
        ("test.csv", fer2013_text(1, Spelling::Test)),
    ]
}

fn ferplus_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF";
    // A clear majority, a tie with a single (noise) vote, an `unknown` majority, no image.
    let rows = [
        "Training,fer0000000.png,4,0,0,1,0,0,0,0,0,5",
        "PublicTest,fer0000001.png,0,3,3,0,0,0,0,2,1,1",
        "PrivateTest,fer0000002.png,1,1,1,0,0,0,0,0,7,0",
        "Training,,10,0,0,0,0,0,0,0,0,0",
    ];
    let plain = format!("{header}\n{}\n", rows.join("\n"));
    let indexed: String = std::iter::once(format!(",{header}"))
        .chain(rows.iter().enumerate().map(|(i, row)| format!("{i},{row}")))
        .map(|line| line + "\r\n")
        .collect();
    vec![
        ("fer2013new.csv", plain.into_bytes()),
        ("indexed_crlf.csv", indexed.into_bytes()),
    ]
}

// ---------------------------------------------------------------------------------------
// Image decoding
// ---------------------------------------------------------------------------------------

/// Pixel limit of the decode target: 1 megapixel, so that damaged headers reach the limit
/// and the fuzzer does not spend its time on large pictures.
pub const MAX_PIXELS: u64 = 1 << 20;

/// `data` through the shared decoder: an image within the limit (the size its header
/// declares, turned by its orientation), or a one-line reason; a header over the limit is
/// refused as too large, whatever follows it.
pub fn decode_image(data: &[u8]) {
    let declared = dimensions(data);
    match decode(data, MAX_PIXELS) {
        Ok(image) => {
            let (width, height) = (image.width(), image.height());
            assert!(u64::from(width) * u64::from(height) <= MAX_PIXELS);
            assert!(
                declared == Some((width, height)) || declared == Some((height, width)),
                "decoded {width}x{height}, the header declares {declared:?}"
            );
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty() && !message.contains('\n'), "{message}");
            if let Some((width, height)) = declared
                && u64::from(width) * u64::from(height) > MAX_PIXELS
            {
                assert_eq!(
                    error,
                    DecodeError::TooLarge {
                        width,
                        height,
                        max_pixels: MAX_PIXELS
                    }
                );
            }
        }
    }
}

fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 40) as u8, ((x + y) * 10) as u8])
    })
}

fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encoding to memory");
    bytes
}

/// A JPEG carrying an EXIF orientation (6: rotate 90 degrees clockwise).
fn jpeg_with_exif(image: &RgbImage) -> Vec<u8> {
    // A little-endian TIFF block with one IFD entry: 0x0112 Orientation, SHORT, 6.
    let exif = vec![
        b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 80);
    encoder.set_exif_metadata(exif).expect("JPEG carries EXIF");
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("encoding to memory");
    bytes
}

fn image_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rgb = DynamicImage::ImageRgb8(picture(8, 6));
    vec![
        ("rgb.png", encoded(rgb.clone(), ImageFormat::Png)),
        ("gray.png", encoded(rgb.grayscale(), ImageFormat::Png)),
        (
            "rgba16.png",
            encoded(DynamicImage::ImageRgba16(rgb.to_rgba16()), ImageFormat::Png),
        ),
        ("rgb.jpg", encoded(rgb.clone(), ImageFormat::Jpeg)),
        ("gray.jpg", encoded(rgb.grayscale(), ImageFormat::Jpeg)),
        ("exif.jpg", jpeg_with_exif(&picture(8, 6))),
        ("rgb.bmp", encoded(rgb.clone(), ImageFormat::Bmp)),
        ("rgb.gif", encoded(rgb.clone(), ImageFormat::Gif)),
        ("rgb.webp", encoded(rgb.clone(), ImageFormat::WebP)),
        ("rgb.tiff", encoded(rgb, ImageFormat::Tiff)),
    ]
}

// ---------------------------------------------------------------------------------------
// Server requests
// ---------------------------------------------------------------------------------------

/// Small limits, so that the fuzzer reaches the 413 answers too.
const MAX_BODY_BYTES: usize = 8192;
const SERVER_MAX_PIXELS: u64 = 256 * 256;

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let device = Device::flex();
    device.seed(3);
    let classes = [
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
    ];
    let spec = ModelSpec::new(
        EfeaNetConfig::new().with_width_mult(0.35),
        classes.iter().map(|c| c.to_string()).collect(),
    );
    let model = spec.model.init(&device).valid();
    let predictor = Predictor::new(
        spec,
        model,
        device,
        PredictorConfig {
            max_pixels: SERVER_MAX_PIXELS,
            ..PredictorConfig::default()
        },
    );
    app(AppState::new(
        predictor,
        ServerConfig {
            max_body_bytes: MAX_BODY_BYTES,
            ..ServerConfig::default()
        },
    ))
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// The bytes before the first newline, and those after it.
fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[]),
    }
}

/// `data` as `CONTENT-TYPE \n QUERY \n BODY`, posted to `/v1/predict` through the whole
/// router: the answer is 200 or a 4xx whose body is a one-line JSON error.
pub fn server_request(data: &[u8]) {
    let (content_type, rest) = first_line(data);
    let (query, body) = first_line(rest);
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let mut request = Request::post(if query.is_empty() {
        "/v1/predict".to_string()
    } else {
        format!("/v1/predict?{query}")
    });
    // A value no HTTP parser would hand to the router is sent without the header.
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        request = request.header(header::CONTENT_TYPE, value);
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return; // not a URI
    };
    let (status, content_type, body) = RUNTIME.block_on(async {
        let response = ROUTER.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, content_type, body)
    });
    let text = String::from_utf8_lossy(&body);
    assert!(
        status == StatusCode::OK || status.is_client_error(),
        "{status}: {text}"
    );
    if status != StatusCode::OK {
        let is_json = content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        assert!(is_json, "{status} answered as {content_type:?}: {text}");
        let error: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{status}: {text}"
        );
    }
}

fn request_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let png = encoded(DynamicImage::ImageRgb8(picture(24, 20)), ImageFormat::Png);
    let jpeg = jpeg_with_exif(&picture(16, 16));
    let with = |head: &str, body: &[u8]| [head.as_bytes(), body].concat();
    let boundary = "efea";
    let form = [
        format!(
            "multipart/form-data; boundary={boundary}\n\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
        &png,
        format!("\r\n--{boundary}--\r\n").as_bytes(),
    ]
    .concat();
    vec![
        ("png", with("image/png\n\n", &png)),
        ("jpeg_cam", with("image/jpeg\ncam=true\n", &jpeg)),
        ("raw", with("\n\n", &png)),
        ("form", form),
        (
            "text",
            with("text/plain; charset=utf-8\ncam=no\n", b"hello"),
        ),
    ]
}
