//! `efea` on a second Burn backend, run for real rather than only compiled: training learns,
//! and evaluation and prediction there give what the CPU gives for the same model. CI runs it
//! on wgpu over Mesa's lavapipe, a software Vulkan device (`.ci/run` installs it);
//! `tests/tch/run.sh` on libtorch (PyPI's torch, on the CPU):
//!
//! ```text
//! EFEA_TEST_DEVICE=wgpu cargo test -p efea-cli --features wgpu --test backend
//! EFEA_TEST_DEVICE=tch cargo test -p efea-cli --features tch --test backend
//! ```
//!
//! `EFEA_TEST_DEVICE` names the device as `--device` spells it (`wgpu`, `wgpu:cpu`, `tch`);
//! without it, `wgpu` in a build with wgpu, else `tch`. The fused CPU kernels of `efea-model`
//! are flex-only; elsewhere the network runs Burn's own operations, so agreement with the CPU
//! here is agreement between the two paths. Lavapipe is some 30 times slower than `flex` at
//! training, hence the small run.
#![cfg(any(feature = "wgpu", feature = "tch"))]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const EFEA: &str = env!("CARGO_BIN_EXE_efea");

fn backend() -> String {
    let default = if cfg!(feature = "wgpu") {
        "wgpu"
    } else {
        "tch"
    };
    match std::env::var("EFEA_TEST_DEVICE") {
        Ok(name) if !name.is_empty() => name,
        _ => default.into(),
    }
}

fn efea(args: &[&str]) -> Output {
    Command::new(EFEA)
        .args(args)
        // Mesa warns on every start without it.
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("efea runs")
}

fn succeed(args: &[&str]) -> String {
    let out = efea(args);
    assert!(
        out.status.success(),
        "efea {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn group_photo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos/solvay_1927.png")
}

/// Every face's probabilities of a `--format json` answer for one image.
fn probabilities(json: &str) -> Vec<Vec<f64>> {
    let records: Vec<Value> = serde_json::from_str(json).unwrap();
    records[0]["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|face| {
            face["probabilities"]
                .as_object()
                .unwrap()
                .values()
                .map(|p| p.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// `efea predict` of the group photo on the CPU and on the backend agree face by face to 1e-3.
fn predict_agrees(model: &[&str]) {
    let photo = group_photo();
    let photo = photo.to_str().unwrap();
    let run = |device: &str| {
        let mut args = vec!["predict", photo, "--format", "json", "--device", device];
        args.extend_from_slice(model);
        probabilities(&succeed(&args))
    };
    let (cpu, gpu) = (run("cpu"), run(&backend()));
    assert!(cpu.len() >= 20, "{} faces", cpu.len());
    assert_eq!(
        cpu.len(),
        gpu.len(),
        "the same faces: detection runs on the CPU"
    );
    for (a, b) in cpu.iter().zip(&gpu) {
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() < 1e-3, "{p} on the CPU, {q} on {}", backend());
        }
    }
}

#[test]
fn the_bundled_model_predicts_on_the_backend_as_on_the_cpu() {
    predict_agrees(&[]);
}

/// The scores of `report.json`, without the timing.
fn scores(run: &Path) -> Value {
    let mut report: Value =
        serde_json::from_str(&fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    for split in report["splits"].as_array_mut().unwrap() {
        split.as_object_mut().unwrap().remove("images_per_sec");
    }
    report["splits"].take()
}

#[test]
fn a_network_trained_on_the_backend_learns_and_evaluates_and_predicts_as_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let device = backend();
    // A recipe that learns within a few dozen steps (measured on the CPU, seeds 1-3: the
    // training loss falls from 2.02-2.10 in the first epoch to 1.25-1.45 in the fourth):
    // 98 training faces, no augmentation, AdamW.
    let stdout = succeed(&[
        "train",
        "--dataset",
        "synth",
        "--data",
        "count=140,level=easy",
        "--preset",
        "plain",
        "--width",
        "0.25",
        "--input",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--optimizer",
        "adamw",
        "--lr",
        "0.003",
        "--schedule",
        "constant",
        "--no-augment",
        "--dropout",
        "0",
        "--no-tencrop",
        "--quiet",
        "--seed",
        "1",
        "--device",
        &device,
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(stdout.contains(&format!("; on {device}\n")), "{stdout}");
    // Learns: the training loss of the last epoch is well below the first's.
    let metrics = fs::read_to_string(run.join("metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 4, "{metrics}");
    assert!(
        losses[3] < losses[0] - 0.2,
        "training loss per epoch: {losses:?}"
    );

    // The same checkpoint evaluated on each device: the same scores.
    let run_path = run.to_str().unwrap();
    let evaluated = |device: &str| {
        let out = dir
            .path()
            .join(format!("eval-{}", device.replace(':', "-")));
        succeed(&[
            "eval",
            "--model",
            run_path,
            "--split",
            "PrivateTest",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        scores(&out)
    };
    let (cpu, gpu) = (evaluated("cpu"), evaluated(&device));
    let accuracy = |s: &Value| s[0]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy(&cpu) - accuracy(&gpu)).abs() < 1e-9,
        "CPU {cpu}, {device} {gpu}"
    );

    predict_agrees(&["--model", run_path]);
}
