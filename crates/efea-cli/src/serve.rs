//! `efea serve`: the HTTP API and the web page of `efea_server`, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use efea_infer::{DEFAULT_MAX_PIXELS, PredictorConfig};
use efea_server::{AppState, ServerConfig};

use crate::faces::ModelArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body, in bytes (413 above).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Images analysed at once. A face batch of one gains little from a second core, so two
    /// at once nearly double throughput on two cores (measured: 7.5 against 4.9 requests/s).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Requests that may wait for a worker; beyond that the answer is 503 with Retry-After.
    #[arg(long, default_value_t = 8)]
    queue: usize,
    /// Seconds before a request is answered 503.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// cpu, wgpu, wgpu:N, cuda:N or tch[:cuda:N] (GPU backends need the matching feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let device = crate::device::parse_device(&args.device)?;
    let predictor_config = PredictorConfig {
        max_pixels: args.max_pixels,
        ..PredictorConfig::default()
    };
    let predictor = args.model.load(&device, predictor_config)?;
    let model_name = predictor.info().name;
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        workers: args.workers.max(1),
        queue: args.queue,
        request_timeout: Duration::from_secs(args.timeout.max(1)),
        ..ServerConfig::default()
    };
    let state = AppState::new(predictor, config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr()?;
        eprintln!("efea serving {model_name} on http://{addr}/");
        efea_server::serve(listener, state, efea_server::shutdown_signal()).await?;
        eprintln!("efea stopped");
        anyhow::Ok(())
    })
}
