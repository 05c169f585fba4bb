//! Property tests of request parsing: whatever the body, content type and query of a
//! `POST /v1/predict`, the server answers 200 or a 4xx whose body is a one-line JSON error,
//! never a 5xx or a panic. Requests go through the full router without a socket, as in
//! `handlers.rs`; `fuzz/` runs the same under libFuzzer for longer.

use std::io::Cursor;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use burn::module::Module;
use burn::tensor::Device;
use efea_infer::{Predictor, PredictorConfig};
use efea_model::EfeaNetConfig;
use efea_model::checkpoint::ModelSpec;
use efea_server::{AppState, ServerConfig, app};
use http_body_util::BodyExt;
use image::{DynamicImage, ImageFormat, RgbImage};
use proptest::prelude::*;
use tower::ServiceExt;

/// Small limits, so that generated inputs reach the 413 paths too.
const MAX_BODY_BYTES: usize = 4096;
const MAX_PIXELS: u64 = 64 * 64;

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
            max_pixels: MAX_PIXELS,
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
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Sends the request and checks the answer: 200, or a 4xx with a one-line JSON error.
fn check(query: &str, content_type: Option<&[u8]>, body: Vec<u8>) -> Result<(), TestCaseError> {
    let mut request = Request::post(format!("/v1/predict{query}"));
    if let Some(content_type) = content_type {
        let value = HeaderValue::from_bytes(content_type).expect("generated as a header value");
        request = request.header(header::CONTENT_TYPE, value);
    }
    let request = request.body(Body::from(body)).expect("a valid request");
    let (status, headers, body) = RUNTIME.block_on(async {
        let response = ROUTER.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, headers, body)
    });
    let text = String::from_utf8_lossy(&body);
    prop_assert!(
        status == StatusCode::OK || status.is_client_error(),
        "{status}: {text}"
    );
    if status != StatusCode::OK {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        prop_assert!(json, "{status} without JSON: {headers:?}");
        let error: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text}")))?;
        let message = error["error"].as_str().unwrap_or_default();
        prop_assert!(
            !message.is_empty() && !message.contains('\n'),
            "{status}: {text}"
        );
    }
    Ok(())
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 5) as u8, 90])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encoding to memory");
    bytes
}

const BOUNDARY: &str = "efea-boundary";

fn multipart(file_name: Option<&str>, content: &[u8], closed: bool) -> Vec<u8> {
    let disposition = match file_name {
        Some(name) => format!("form-data; name=\"file\"; filename=\"{name}\""),
        None => "form-data; name=\"note\"".into(),
    };
    let mut form =
        format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").into_bytes();
    form.extend_from_slice(content);
    if closed {
        form.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    }
    form
}

/// Content types as clients send them, and some as nobody should.
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None::<Vec<u8>>),
        prop::sample::select(vec![
            "image/png",
            "image/jpeg",
            "IMAGE/PNG; charset=binary",
            "application/octet-stream",
            "multipart/form-data; boundary=efea-boundary",
            "multipart/form-data; boundary=\"efea-boundary\"",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=efea-boundary",
            "application/json",
            "text/plain",
            "",
            ";",
        ])
        .prop_map(|t| Some(t.as_bytes().to_vec())),
        // Any header value: visible ASCII, spaces, tabs and obs-text (not valid UTF-8).
        prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..60)
            .prop_map(Some),
    ]
}

/// Bodies: arbitrary bytes, images cut short or damaged, forms around either.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let bytes = prop::collection::vec(any::<u8>(), 0..600);
    let damaged_png = (
        1u32..80,
        1u32..80,
        any::<usize>(),
        any::<usize>(),
        any::<u8>(),
    )
        .prop_map(|(w, h, cut, at, byte)| {
            let mut png = png(w, h);
            let at = at % png.len();
            png[at] = byte;
            png.truncate(cut % (png.len() + 1));
            png
        });
    let inner = prop_oneof![bytes.clone(), damaged_png];
    prop_oneof![
        bytes,
        inner.clone(),
        (
            prop::option::of(prop::sample::select(vec!["a.png", "", "\"x\""])),
            inner,
            any::<bool>()
        )
            .prop_map(|(name, content, closed)| multipart(name, &content, closed)),
        // Over the body limit.
        (MAX_BODY_BYTES + 1..MAX_BODY_BYTES + 100).prop_map(|n| vec![b'x'; n]),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?cam=true".to_string()),
        "[a-z=&%0-9+;]{0,20}".prop_map(|q| format!("?{q}")),
        "[a-zA-Z0-9%]{0,10}".prop_map(|v| format!("?cam={v}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_an_answer_or_a_one_line_json_4xx(
        query in query(),
        content_type in content_type(),
        body in body(),
    ) {
        check(&query, content_type.as_deref(), body)?;
    }
}

/// The generators above do reach each kind of answer they are meant to.
#[test]
fn each_kind_of_answer_is_reached() {
    let status = |query: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = Request::post(format!("/v1/predict{query}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(body)).expect("a valid request");
        RUNTIME
            .block_on(async { ROUTER.clone().oneshot(request).await.expect("infallible") })
            .status()
    };
    let form = format!("multipart/form-data; boundary={BOUNDARY}");
    assert_eq!(status("", Some("image/png"), png(40, 30)), StatusCode::OK);
    assert_eq!(
        status(
            "",
            Some(&form),
            multipart(Some("a.png"), &png(20, 20), true)
        ),
        StatusCode::OK
    );
    assert_eq!(status("", None, png(65, 64)), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        status("", None, vec![0; MAX_BODY_BYTES + 1]),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        status("", Some("text/plain"), b"hi".to_vec()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        status("", Some(&form), multipart(None, b"hi", false)),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status("?cam=2", None, png(8, 8)), StatusCode::BAD_REQUEST);
}
