//! What the HTTP API sends and receives, and its errors: every error is JSON
//! `{"error": "..."}` with a status that says whose fault it is.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use efea_infer::{ErrorKind, Face, InferError, Timing};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::pool::PoolError;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Query of `POST /v1/predict`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictParams {
    /// Add each face's Grad-CAM (for its predicted class) as a base64 PNG.
    #[serde(default)]
    pub cam: bool,
}

/// A multipart upload: the first field with a file (any field name) is the image.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema of the form; the handler reads uploads with `multer`
pub struct UploadForm {
    #[schema(content_media_type = "application/octet-stream")]
    pub file: Vec<u8>,
}

/// One face of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaceOut {
    #[serde(flatten)]
    pub face: Face,
    /// With `?cam=true`: the face's crop (the `crop` square) with its Grad-CAM heat map
    /// blended over it, as a base64 PNG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<String>,
}

/// Milliseconds spent on each step for this image.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimingOut {
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub classify_ms: f64,
    /// Grad-CAM and its pictures, when asked for.
    pub cam_ms: f64,
}

impl TimingOut {
    pub fn new(timing: &Timing, cam: std::time::Duration) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            decode_ms: ms(timing.decode),
            detect_ms: ms(timing.detect),
            classify_ms: ms(timing.classify),
            cam_ms: ms(cam),
        }
    }
}

/// The answer of `POST /v1/predict`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    /// Highest detector score first.
    pub faces: Vec<FaceOut>,
    /// The model's name (its run directory).
    pub model: String,
    /// Size of the upright image (after its EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// Time from request to answer, queueing included.
    pub elapsed_ms: f64,
    pub timing: TimingOut,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// Inference jobs running and waiting, and how many may.
    pub jobs: usize,
    pub capacity: usize,
}

/// Every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// An error answer: status and one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<InferError> for ApiError {
    fn from(error: InferError) -> Self {
        let status = match error.kind() {
            ErrorKind::UnsupportedInput => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let status = match error {
            PoolError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            PoolError::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

/// `{"error": message}` with `status`; a 503 carries `Retry-After`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}
