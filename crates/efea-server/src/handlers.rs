//! The routes: the page and its assets, the prediction API, model information, health,
//! metrics and the OpenAPI document.

use std::io::Cursor;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use efea_infer::{InferError, ModelInfo, Prediction, Predictor, draw};
use image::{ImageFormat, RgbImage};
use utoipa::OpenApi;

use crate::AppState;
use crate::api::{
    ApiError, ErrorBody, FaceOut, Health, PredictParams, PredictResponse, TimingOut, UploadForm,
};
use crate::assets;
use crate::pool::PoolError;

/// The OpenAPI document, generated from the handlers' annotations and the types' schemas.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "efea",
        description = "Facial expression recognition (EFEA-MSM): faces, their boxes and the \
                       probability of every expression, optionally with Grad-CAM maps."
    ),
    paths(predict, model, healthz, metrics),
    components(schemas(PredictResponse, FaceOut, TimingOut, ModelInfo, Health, ErrorBody))
)]
pub struct ApiDoc;

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The page itself may load nothing from elsewhere; the webcam and result pictures are local.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

pub async fn index() -> Response {
    let mut response = Html(assets::INDEX_HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub async fn static_asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = assets::asset(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no asset `{name}`")))?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// Finds the faces in an image and classifies their expressions.
#[utoipa::path(
    post,
    path = "/v1/predict",
    params(PredictParams),
    request_body(
        description = "The image: its raw bytes (jpeg, png, bmp, webp, tiff, gif), or a \
                       multipart form whose first file field holds them.",
        content(
            ("image/jpeg"),
            ("image/png"),
            ("application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Faces found (possibly none)", body = PredictResponse),
        (status = 400, description = "A damaged or empty image, or a bad query", body = ErrorBody),
        (status = 413, description = "Body or image over the size limit", body = ErrorBody),
        (status = 415, description = "Not an image format efea reads", body = ErrorBody),
        (status = 503, description = "Every worker busy and the queue full, or the request \
                                      timed out; see Retry-After", body = ErrorBody),
    )
)]
pub async fn predict(
    State(state): State<AppState>,
    Query(params): Query<PredictParams>,
    request: Request,
) -> Result<Json<PredictResponse>, ApiError> {
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = read_body(body, state.config().max_body_bytes).await?;
    let image = match media_type(&content_type).as_str() {
        "multipart/form-data" => first_file(&content_type, bytes).await?,
        "" | "application/octet-stream" => bytes,
        kind if kind.starts_with("image/") => bytes,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type `{other}`: send the image bytes (image/*, \
                     application/octet-stream) or a multipart/form-data upload"
                ),
            ));
        }
    };
    let predictor = Arc::clone(state.predictor());
    let cam_side = state.config().cam_max_side;
    let analysis = state
        .pool()
        .run(move || analyse(&predictor, &image, params.cam, cam_side))
        .await
        .inspect_err(|e| {
            if matches!(e, PoolError::Busy(_)) {
                state.metrics().rejected.inc();
            }
        })??;
    let metrics = state.metrics();
    metrics.faces.inc_by(analysis.prediction.faces.len() as u64);
    metrics
        .inference
        .observe((analysis.prediction.timing.total() + analysis.cam_time).as_secs_f64());
    let Analysis {
        prediction,
        cams,
        cam_time,
    } = analysis;
    Ok(Json(PredictResponse {
        timing: TimingOut::new(&prediction.timing, cam_time),
        faces: prediction
            .faces
            .into_iter()
            .zip(cams)
            .map(|(face, cam)| FaceOut { face, cam })
            .collect(),
        model: state.predictor().info().name,
        width: prediction.width,
        height: prediction.height,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    }))
}

/// What a worker hands back for one image.
struct Analysis {
    prediction: Prediction,
    cams: Vec<Option<String>>,
    cam_time: Duration,
}

/// Runs on a pool worker: decoding, detection, classification, and Grad-CAM when asked.
fn analyse(
    predictor: &Predictor,
    bytes: &[u8],
    cam: bool,
    cam_max_side: u32,
) -> Result<Analysis, InferError> {
    let analysed = predictor.predict_bytes(bytes)?;
    let start = Instant::now();
    let faces = &analysed.prediction.faces;
    let cams = if cam && !faces.is_empty() {
        let rgb = analysed.image.to_rgb8();
        predictor
            .grad_cam(&analysed)
            .iter()
            .zip(faces)
            .map(|(map, face)| {
                let side = face.crop.width.clamp(64, cam_max_side.max(64));
                Some(png_base64(&draw::cam_overlay(&rgb, face.crop, map, side)))
            })
            .collect()
    } else {
        vec![None; faces.len()]
    };
    let cam_time = if cam { start.elapsed() } else { Duration::ZERO };
    Ok(Analysis {
        prediction: analysed.prediction,
        cams,
        cam_time,
    })
}

fn png_base64(image: &RgbImage) -> String {
    let mut png = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("encoding a PNG to memory cannot fail");
    BASE64.encode(png)
}

/// `type/subtype` of a Content-Type, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The body, or 413 past `limit` bytes (the limit layer refuses a too-large Content-Length
/// before this; this catches bodies without one).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::iter::successors(std::error::Error::source(&e), |s| s.source())
            .any(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
        }
    })
}

/// The first field of a multipart form that carries a file (or, failing that, any field).
async fn first_file(content_type: &str, body: Bytes) -> Result<Bytes, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| bad(format!("multipart upload without a boundary: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fallback = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart upload: {e}")))?
    {
        let is_file = field.file_name().is_some();
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("malformed multipart upload: {e}")))?;
        if is_file {
            return Ok(data);
        }
        fallback.get_or_insert(data);
    }
    fallback.ok_or_else(|| bad("multipart upload without a file field".into()))
}

/// The classes, input size and training metrics of the loaded model.
#[utoipa::path(
    get,
    path = "/v1/model",
    responses((status = 200, body = ModelInfo))
)]
pub async fn model(State(state): State<AppState>) -> Json<ModelInfo> {
    Json(state.predictor().info())
}

/// Liveness, with the number of inference jobs admitted.
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        jobs: state.pool().admitted(),
        capacity: state.pool().capacity(),
    })
}

/// Prometheus metrics (OpenMetrics text format).
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    let pool = state.pool();
    metrics.running.set(pool.running() as i64);
    metrics
        .waiting
        .set(pool.admitted().saturating_sub(pool.running()) as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}
