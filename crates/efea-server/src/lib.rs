//! efea over HTTP: `POST /v1/predict` finds the faces in an image and classifies their
//! expressions; `/` is a web page that does it for a dropped photo or the webcam.
//!
//! Inference runs on a bounded [`Pool`] of blocking threads, never on the runtime's; when
//! every worker is busy and the queue is full a request gets 503 with `Retry-After` at once.
//! Every error is JSON. See [`app`] for the routes and layers.

mod api;
mod assets;
mod handlers;
pub mod metrics;
mod pool;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use efea_infer::Predictor;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use api::{ApiError, ErrorBody, FaceOut, Health, PredictResponse, RETRY_AFTER_SECONDS};
pub use handlers::ApiDoc;
pub use metrics::Metrics;
pub use pool::{Pool, PoolError};

/// Limits and sizes of the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Inference jobs run at once (default 2: see `efea serve --help`).
    pub workers: usize,
    /// Jobs that may wait for a worker; one more gets 503.
    pub queue: usize,
    /// A request not answered by then gets 503.
    pub request_timeout: Duration,
    /// Largest side of a Grad-CAM picture in an answer.
    pub cam_max_side: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            workers: 2,
            queue: 8,
            request_timeout: Duration::from_secs(30),
            cam_max_side: 256,
        }
    }
}

/// What the handlers share. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    predictor: Arc<Predictor>,
    pool: Pool,
    metrics: Metrics,
    config: ServerConfig,
}

impl AppState {
    pub fn new(predictor: Predictor, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Shared {
                predictor: Arc::new(predictor),
                pool: Pool::new(config.workers, config.queue),
                metrics: Metrics::new(),
                config,
            }),
        }
    }

    pub fn predictor(&self) -> &Arc<Predictor> {
        &self.inner.predictor
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }
}

/// The routes, each behind (outermost first): metrics and JSON errors, panic catching, the
/// body limit, and the request timeout.
///
/// | route | |
/// |---|---|
/// | `GET /` , `GET /assets/{name}` | the web page |
/// | `POST /v1/predict[?cam=true]` | faces and expressions of an image |
/// | `GET /v1/model` | classes, input size, preset, training report |
/// | `GET /healthz` | liveness |
/// | `GET /metrics` | Prometheus metrics |
/// | `GET /openapi.json` | the OpenAPI document |
pub fn app(state: AppState) -> Router {
    let config = state.config().clone();
    Router::new()
        .route("/", get(handlers::index))
        .route("/assets/{*name}", get(handlers::static_asset))
        .route("/v1/predict", post(handlers::predict))
        .route("/v1/model", get(handlers::model))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::not_found)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), observe))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    config.request_timeout,
                )),
        )
        .with_state(state)
}

/// A handler that panicked: the client gets a JSON 500, the server goes on.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    api::error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Counts and times every request by route and status, and makes every error answer JSON
/// (the layers' own 413 and timeout answers included).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let response = json_errors(next.run(request).await).await;
    state
        .metrics()
        .record_request(&route, response.status().as_u16(), start.elapsed());
    response
}

async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if is_json {
        let mut response = response;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert(HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        return response;
    }
    // Layers and extractor rejections answer in plain text; keep their words, in JSON.
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match (text.is_empty(), status) {
        (_, StatusCode::SERVICE_UNAVAILABLE) => "the request took too long; retry later".into(),
        (_, StatusCode::PAYLOAD_TOO_LARGE) => "body over the size limit".into(),
        (true, _) => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        (false, _) => text,
    };
    let mut response = api::error_response(status, message);
    // Keep what else the layer said (e.g. `Allow` on a 405).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    response
}

/// Serves `state` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let interrupt = async {
        // Without a handler Ctrl-C would still stop the process, just not gracefully.
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
