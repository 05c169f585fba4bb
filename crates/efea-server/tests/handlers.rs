//! The routes without a socket: requests go through the full router and its layers with
//! `tower::ServiceExt::oneshot`.

use std::io::Cursor;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use burn::module::Module;
use burn::tensor::Device;
use efea_infer::{Predictor, PredictorConfig};
use efea_model::EfeaNetConfig;
use efea_model::checkpoint::ModelSpec;
use efea_server::{AppState, ServerConfig, app};
use http_body_util::BodyExt;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::Value;
use tower::ServiceExt;

const CLASSES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

fn state(config: ServerConfig, predictor_config: PredictorConfig) -> AppState {
    let device = Device::flex();
    device.seed(3);
    let spec = ModelSpec::new(
        EfeaNetConfig::new().with_width_mult(0.35),
        CLASSES.iter().map(|c| c.to_string()).collect(),
    );
    let model = spec.model.init(&device).valid();
    AppState::new(
        Predictor::new(spec, model, device, predictor_config),
        config,
    )
}

fn router() -> Router {
    app(state(ServerConfig::default(), PredictorConfig::default()))
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

/// The group photo shipped in the rustface crate, committed as a fixture.
fn group_photo() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/photos/solvay_1927.png");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn send(router: Router, request: Request<Body>) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn post(uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::post(uri);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(Body::from(body)).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn assert_json_error(
    status: StatusCode,
    headers: &header::HeaderMap,
    body: &[u8],
    expected: StatusCode,
) {
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(body));
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{headers:?}"
    );
    let error = json(body)["error"].as_str().unwrap().to_string();
    assert!(!error.is_empty() && !error.contains('\n'), "{error}");
}

#[tokio::test]
async fn a_photo_gives_faces_boxes_labels_and_probabilities() {
    let photo = group_photo();
    let (status, _, body) = send(router(), post("/v1/predict", Some("image/png"), photo)).await;
    assert_eq!(status, StatusCode::OK);
    let answer = json(&body);
    let faces = answer["faces"].as_array().unwrap();
    assert!(faces.len() >= 20, "{} faces", faces.len());
    // In the model's class order.
    assert_eq!(
        probability_keys_in_order(std::str::from_utf8(&body).unwrap()),
        CLASSES
    );
    for face in faces {
        let b = &face["box"];
        assert!(b["width"].as_u64().unwrap() > 0 && b["x"].as_i64().unwrap() >= 0);
        let probabilities = face["probabilities"].as_object().unwrap();
        assert_eq!(probabilities.len(), CLASSES.len());
        let sum: f64 = probabilities.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3);
        assert!(probabilities.contains_key(face["label"].as_str().unwrap()));
        assert!(face.get("cam").is_none());
    }
    assert_eq!(answer["width"], 1666);
    assert!(answer["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(answer["model"], "efea");
}

#[tokio::test]
async fn cam_true_adds_a_png_per_face_and_multipart_works() {
    let photo = group_photo();
    let boundary = "XyZ-efea-boundary";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(&photo);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, _, body) = send(
        router(),
        post("/v1/predict?cam=true", Some(&content_type), form),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer = json(&body);
    let faces = answer["faces"].as_array().unwrap();
    assert!(!faces.is_empty());
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(faces[0]["cam"].as_str().unwrap())
        .unwrap();
    let cam = image::load_from_memory_with_format(&png, ImageFormat::Png).unwrap();
    assert!(cam.width() >= 64 && cam.width() == cam.height());
    assert!(answer["timing"]["cam_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn an_image_without_faces_answers_an_empty_list() {
    let (status, _, body) = send(router(), post("/v1/predict", None, png(160, 120))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["faces"], Value::Array(vec![]));
}

#[tokio::test]
async fn bad_inputs_get_json_errors_with_the_right_status() {
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode)> = vec![
        (
            Some("image/png"),
            b"this is text".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("application/json"),
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (Some("image/png"), Vec::new(), StatusCode::BAD_REQUEST),
        (
            Some("image/png"),
            png(50, 50)[..60].to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("multipart/form-data; boundary=b"),
            b"--b\r\nbroken".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (content_type, body, expected) in cases {
        let (status, headers, body) = send(router(), post("/v1/predict", content_type, body)).await;
        assert_json_error(status, &headers, &body, expected);
    }
    // A query that does not parse.
    let (status, headers, body) =
        send(router(), post("/v1/predict?cam=maybe", None, png(10, 10))).await;
    assert_json_error(status, &headers, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn too_large_bodies_and_images_get_413() {
    let small_body = app(state(
        ServerConfig {
            max_body_bytes: 1000,
            ..ServerConfig::default()
        },
        PredictorConfig::default(),
    ));
    // Announced by Content-Length: refused before reading.
    let (status, headers, body) =
        send(small_body.clone(), post("/v1/predict", None, vec![0; 5000])).await;
    assert_json_error(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length.
    let chunks =
        futures_util::stream::iter([vec![0u8; 600], vec![0u8; 600]].map(Ok::<_, std::io::Error>));
    let request = Request::post("/v1/predict")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, headers, body) = send(small_body, request).await;
    assert_json_error(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);

    let few_pixels = app(state(
        ServerConfig::default(),
        PredictorConfig {
            max_pixels: 1000,
            ..PredictorConfig::default()
        },
    ));
    let (status, headers, body) = send(few_pixels, post("/v1/predict", None, png(100, 100))).await;
    assert_json_error(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    // No worker, no queue slot free: one worker held busy by a slow request.
    let state = state(
        ServerConfig {
            workers: 1,
            queue: 0,
            ..ServerConfig::default()
        },
        PredictorConfig::default(),
    );
    let router = app(state.clone());
    let pool = state.pool().clone();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let blocker = tokio::spawn(async move { pool.run(move || wait.recv().unwrap()).await });
    while state.pool().admitted() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, headers, body) =
        send(router.clone(), post("/v1/predict", None, png(40, 40))).await;
    assert_json_error(status, &headers, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    let (status, _, _) = send(router.clone(), post("/v1/predict", None, png(40, 40))).await;
    assert_eq!(status, StatusCode::OK);
    // Counted in the metrics.
    let (_, _, body) = send(router, get("/metrics")).await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("efea_rejected_total 1"), "{text}");
    assert!(
        text.contains("route=\"/v1/predict\",status=\"503\"")
            || text.contains("status=\"503\",route=\"/v1/predict\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_request_over_the_timeout_answers_503() {
    let state = state(
        ServerConfig {
            workers: 1,
            queue: 4,
            request_timeout: Duration::from_millis(200),
            ..ServerConfig::default()
        },
        PredictorConfig::default(),
    );
    let router = app(state.clone());
    let pool = state.pool().clone();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let blocker = tokio::spawn(async move { pool.run(move || wait.recv().unwrap()).await });
    while state.pool().admitted() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Queued behind the blocker until the timeout fires.
    let (status, headers, body) = send(router, post("/v1/predict", None, png(40, 40))).await;
    assert_json_error(status, &headers, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    // The timed-out request gave its queue slot back.
    assert_eq!(state.pool().admitted(), 0);
}

#[tokio::test]
async fn model_health_metrics_and_openapi() {
    let router = router();
    let (status, _, body) = send(router.clone(), get("/v1/model")).await;
    assert_eq!(status, StatusCode::OK);
    let model = json(&body);
    assert_eq!(model["classes"].as_array().unwrap().len(), 7);
    assert_eq!(model["input_size"], 48);
    assert_eq!(model["preset"], "full");

    let (status, _, body) = send(router.clone(), get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");

    let (_, _, _) = send(router.clone(), post("/v1/predict", None, png(30, 30))).await;
    let (status, headers, body) = send(router.clone(), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let text = String::from_utf8(body).unwrap();
    for metric in [
        "efea_http_requests_total",
        "efea_http_request_duration_seconds_bucket",
        "efea_faces_total",
        "efea_inference_duration_seconds_count",
        "efea_jobs_running",
    ] {
        assert!(text.contains(metric), "{metric} missing from\n{text}");
    }

    let (status, _, body) = send(router, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let openapi = json(&body);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/v1/predict", "/v1/model", "/healthz", "/metrics"] {
        assert!(openapi["paths"][path].is_object(), "{path}");
    }
    let schemas = &openapi["components"]["schemas"];
    assert!(schemas["PredictResponse"].is_object() && schemas["Face"].is_object());
    let predict = &openapi["paths"]["/v1/predict"]["post"];
    assert!(predict["requestBody"]["content"]["multipart/form-data"].is_object());
    assert!(predict["responses"]["503"].is_object());
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_and_nothing_else() {
    let router = router();
    let (status, headers, body) = send(router.clone(), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(String::from_utf8(body).unwrap().contains("/assets/app.js"));
    for (asset, kind) in [
        ("app.js", "javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "svg"),
    ] {
        let (status, headers, _) = send(router.clone(), get(&format!("/assets/{asset}"))).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains(kind)
        );
    }
    for path in [
        "/assets/../Cargo.toml",
        "/assets/..%2fCargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/..%2F..%2Fsrc%2Flib.rs",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets/app.js/../../Cargo.toml",
        "/../../Cargo.toml",
        "/Cargo.toml",
        "/src/lib.rs",
    ] {
        let (status, headers, body) = send(router.clone(), get(path)).await;
        assert_json_error(status, &headers, &body, StatusCode::NOT_FOUND);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("[package]") && !text.contains("root:"),
            "{path}: {text}"
        );
    }
}

#[tokio::test]
async fn wrong_methods_and_routes_are_json_errors() {
    let router = router();
    let (status, headers, body) = send(router.clone(), get("/v1/predict")).await;
    assert_json_error(status, &headers, &body, StatusCode::METHOD_NOT_ALLOWED);
    let (status, headers, body) = send(router, get("/nope")).await;
    assert_json_error(status, &headers, &body, StatusCode::NOT_FOUND);
}

/// The keys of the first `"probabilities"` object of a JSON text, in the order written
/// (`serde_json::Value` sorts keys, so the order has to be read off the text).
fn probability_keys_in_order(text: &str) -> Vec<String> {
    let start = text
        .find("\"probabilities\":")
        .expect("a probabilities object")
        + "\"probabilities\":".len();
    let object = &text[start..];
    let body = &object[object.find('{').unwrap() + 1..object.find('}').unwrap()];
    body.split(',')
        .map(|pair| {
            pair.split(':')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}
