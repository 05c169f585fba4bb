//! Timings for `bench/data/run.sh`: drawing the synthetic set, writing it as a full-size
//! FER2013 CSV, and loading such a CSV (wall time and peak memory).
//!
//! ```text
//! cargo run --release -p efea-data --example bench_csv -- synth 30000
//! cargo run --release -p efea-data --example bench_csv -- write fer2013_full.csv 35887
//! cargo run --release -p efea-data --example bench_csv -- load fer2013_full.csv
//! ```
//! Prints one JSON object per run.

use std::path::Path;
use std::time::Instant;

use efea_data::synth::{SynthConfig, generate};
use efea_data::write::write_fer2013_csv;
use efea_data::{DatasetKind, LoadOptions, load};

/// A `kB` field of `/proc/self/status` (Linux), in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = rayon::current_num_threads();
    match args.first().map(String::as_str) {
        Some("synth") => {
            let count: usize = args.get(1).map_or(Ok(30_000), |s| s.parse())?;
            let start = Instant::now();
            let dataset = generate(&SynthConfig::new(count))?;
            let seconds = start.elapsed().as_secs_f64();
            println!(
                r#"{{"task": "synth", "faces": {}, "seconds": {seconds:.3}, "threads": {threads}}}"#,
                dataset.len()
            );
        }
        Some("write") => {
            let path = Path::new(args.get(1).ok_or("write needs a path")?);
            let count: usize = args.get(2).map_or(Ok(35_887), |s| s.parse())?;
            let start = Instant::now();
            let dataset = generate(&SynthConfig::new(count))?;
            let drawn = start.elapsed().as_secs_f64();
            write_fer2013_csv(&dataset, path)?;
            let total = start.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(path)?.len();
            println!(
                r#"{{"task": "write", "rows": {count}, "bytes": {bytes}, "draw_seconds": {drawn:.3}, "write_seconds": {:.3}, "threads": {threads}}}"#,
                total - drawn
            );
        }
        Some("load") => {
            let path = Path::new(args.get(1).ok_or("load needs a path")?);
            let before = proc_status_bytes("VmRSS:").unwrap_or(0);
            let start = Instant::now();
            let dataset = load(DatasetKind::Fer2013, Some(path), &LoadOptions::default())?;
            let seconds = start.elapsed().as_secs_f64();
            let peak = proc_status_bytes("VmHWM:").unwrap_or(0);
            let pixel_bytes: usize = dataset.samples.iter().map(|s| s.image.as_raw().len()).sum();
            println!(
                r#"{{"task": "load", "rows": {}, "seconds": {seconds:.3}, "rss_before": {before}, "peak_rss": {peak}, "pixel_bytes": {pixel_bytes}, "peak_over_pixels": {:.3}, "threads": {threads}}}"#,
                dataset.len(),
                (peak - before) as f64 / pixel_bytes as f64
            );
        }
        _ => return Err("usage: bench_csv synth [COUNT] | write PATH [ROWS] | load PATH".into()),
    }
    Ok(())
}
