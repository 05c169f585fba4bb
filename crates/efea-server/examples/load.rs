//! A load generator for `efea serve`, loopback only: `C` clients, each on its own keep-alive
//! connection, post the same image back to back until `N` requests are done or the time
//! limit passes. Prints one JSON line: throughput, latency percentiles of the answered
//! requests, and counts by status (503s are the server shedding load on purpose).
//!
//! `cargo run --release -p efea-server --example load -- --addr 127.0.0.1:8080 \
//!     --image photo.jpg --concurrency 4 --requests 200 --seconds 60`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug)]
struct Options {
    addr: SocketAddr,
    image: PathBuf,
    concurrency: usize,
    requests: usize,
    seconds: f64,
    path: String,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        addr: "127.0.0.1:8080".parse().expect("a valid address"),
        image: PathBuf::new(),
        concurrency: 1,
        requests: 100,
        seconds: 60.0,
        path: "/v1/predict".into(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--addr" => options.addr = value.parse().map_err(|e| bad(&e))?,
            "--image" => options.image = value.into(),
            "--concurrency" => options.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--requests" => options.requests = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => options.seconds = value.parse().map_err(|e| bad(&e))?,
            "--path" => options.path = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    // Load is only ever sent to this machine.
    if !options.addr.ip().is_loopback() {
        return Err(format!("{} is not a loopback address", options.addr));
    }
    Ok(options)
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_ok: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    transport_errors: usize,
}

async fn client(
    options: Arc<Options>,
    image: Bytes,
    next: Arc<AtomicUsize>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    while next.fetch_add(1, Ordering::Relaxed) < options.requests && Instant::now() < deadline {
        if sender.is_none() {
            match connect(options.addr).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let request = Request::post(&options.path)
            .header("host", options.addr.to_string())
            .header("content-type", "application/octet-stream")
            .body(Body::from(image.clone()))
            .expect("a valid request");
        let start = Instant::now();
        let send = sender
            .as_mut()
            .expect("connected above")
            .send_request(request);
        match send.await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let done = response.into_body().collect().await.is_ok();
                *tally.statuses.entry(status).or_default() += 1;
                if status == 200 && done {
                    tally.latencies_ok.push(start.elapsed());
                }
                if status == 503 {
                    assert!(retry_after, "a 503 without Retry-After");
                    // Honour the server's request to back off, briefly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(_) => {
                tally.transport_errors += 1;
                sender = None;
            }
        }
    }
    tally
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, Box<dyn std::error::Error + Send + Sync>>
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Arc::new(options()?);
    let image = Bytes::from(std::fs::read(&options.image)?);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(options.seconds);
    let clients: Vec<_> = (0..options.concurrency)
        .map(|_| {
            tokio::spawn(client(
                Arc::clone(&options),
                image.clone(),
                Arc::clone(&next),
                deadline,
            ))
        })
        .collect();
    let mut total = Tally::default();
    for client in clients {
        let tally = client.await?;
        total.latencies_ok.extend(tally.latencies_ok);
        total.transport_errors += tally.transport_errors;
        for (status, count) in tally.statuses {
            *total.statuses.entry(status).or_default() += count;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    total.latencies_ok.sort();
    let ok = total.latencies_ok.len();
    let other_5xx: usize = total
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    let statuses: BTreeMap<String, usize> = total
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    let report = serde_json::json!({
        "concurrency": options.concurrency,
        "requests": total.statuses.values().sum::<usize>(),
        "ok": ok,
        "statuses": statuses,
        "other_5xx": other_5xx,
        "transport_errors": total.transport_errors,
        "seconds": elapsed,
        "throughput_rps": ok as f64 / elapsed,
        "p50_ms": percentile(&total.latencies_ok, 0.50),
        "p99_ms": percentile(&total.latencies_ok, 0.99),
        "max_ms": total.latencies_ok.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
    });
    println!("{report}");
    if other_5xx > 0 || total.transport_errors > 0 {
        return Err(format!(
            "{other_5xx} 5xx other than 503, {} transport errors",
            total.transport_errors
        )
        .into());
    }
    Ok(())
}
