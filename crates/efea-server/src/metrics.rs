//! Prometheus metrics: requests by route and status, request latency, faces found, inference
//! time, jobs running and waiting, and requests refused because the queue was full.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Route and status of a request; the route is the matched pattern (`/v1/predict`), never the
/// raw path, so that scanning a server does not grow the label set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// The server's metrics and the registry that exports them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub faces: Counter,
    pub inference: Histogram,
    pub rejected: Counter,
    pub running: Gauge,
    pub waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let faces = Counter::default();
        let inference = latency_histogram();
        let rejected = Counter::default();
        let running = Gauge::default();
        let waiting = Gauge::default();
        let mut registry = Registry::with_prefix("efea");
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        registry.register("faces", "Faces found and classified", faces.clone());
        registry.register(
            "inference_duration_seconds",
            "Time of one image's decoding, detection and classification on a worker",
            inference.clone(),
        );
        registry.register(
            "rejected",
            "Requests refused with 503 because every worker was busy and the queue full",
            rejected.clone(),
        );
        registry.register(
            "jobs_running",
            "Inference jobs running now",
            running.clone(),
        );
        registry.register(
            "jobs_waiting",
            "Inference jobs admitted and waiting for a worker",
            waiting.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            faces,
            inference,
            rejected,
            running,
            waiting,
        }
    }

    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus (OpenMetrics) text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
