//! Real faces from the command line: `efea predict` with no model names the expressions of a
//! real photograph with the bundled FER2013 model, and a model's face framing (detector,
//! margin) travels from `efea train` to `efea predict` through the run directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const EFEA: &str = env!("CARGO_BIN_EXE_efea");

/// The 1927 Solvay Conference photograph (1666x1136 gray, 29 faces), committed.
fn solvay() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos/solvay_1927.png");
    assert!(path.is_file(), "missing fixture {}", path.display());
    path
}

fn efea(args: &[&str]) -> Output {
    Command::new(EFEA).args(args).output().expect("efea runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn faces_of(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let records: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    records[0]["faces"]
        .as_array()
        .expect("a list of faces")
        .clone()
}

#[test]
fn predict_without_a_model_uses_the_bundled_one_on_real_faces() {
    let photo = solvay();
    let out = efea(&["predict", photo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let first = table.lines().next().unwrap_or_default();
    assert!(first.starts_with("model: fer-mini-xception"), "{first}");
    let rows = table
        .lines()
        .filter(|l| l.contains("solvay_1927.png"))
        .count();
    assert!(
        rows >= 25,
        "{rows} faces found in the group photo:\n{table}"
    );

    let out = efea(&["predict", photo.to_str().unwrap(), "--format", "json"]);
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records[0]["model"], "fer-mini-xception");
    let faces = faces_of(&out);
    let labels: std::collections::BTreeSet<&str> =
        faces.iter().map(|f| f["label"].as_str().unwrap()).collect();
    assert!(
        labels.len() >= 2,
        "every face got the same label: {labels:?}"
    );
    for face in &faces {
        let probabilities = face["probabilities"].as_object().unwrap();
        assert_eq!(probabilities.len(), 7);
        assert!(probabilities.contains_key("happy") && probabilities.contains_key("neutral"));
        let sum: f64 = probabilities.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        let landmarks = face["landmarks"]
            .as_object()
            .expect("MTCNN gives landmarks");
        assert_eq!(landmarks.len(), 5);
    }
}

#[test]
fn a_model_trained_with_a_margin_is_served_with_that_margin() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = efea(&[
        "train",
        "--dataset",
        "synth",
        "--data",
        "count=140,level=easy",
        "--width",
        "0.25",
        "--input",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-tencrop",
        "--quiet",
        "--detector",
        "rustface",
        "--margin",
        "0.35",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["face"]["margin"], 0.35);
    assert_eq!(config["face"]["detector"], "rustface");

    let photo = solvay();
    let predict = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--model",
            run.to_str().unwrap(),
            photo.to_str().unwrap(),
        ];
        args.extend_from_slice(&["--format", "json"]);
        args.extend_from_slice(extra);
        efea(&args)
    };
    let side_ratio = |faces: &[Value]| {
        faces
            .iter()
            .map(|f| {
                let side = f["box"]["width"]
                    .as_f64()
                    .unwrap()
                    .max(f["box"]["height"].as_f64().unwrap());
                f["crop"]["width"].as_f64().unwrap() / side
            })
            .collect::<Vec<_>>()
    };
    let out = predict(&[]);
    assert!(
        !text(&out.stderr).contains("note:"),
        "{}",
        text(&out.stderr)
    );
    let faces = faces_of(&out);
    assert!(faces.len() >= 20, "{} faces", faces.len());
    assert!(
        faces.iter().all(|f| f.get("landmarks").is_none()),
        "rustface has no landmarks"
    );
    for ratio in side_ratio(&faces) {
        assert!(
            (ratio - 1.7).abs() < 0.02,
            "crop / box side {ratio}, expected 1 + 2 * 0.35"
        );
    }

    // A flag that frames differently says so, and is followed.
    let out = predict(&["--margin", "0.1"]);
    assert!(text(&out.stderr).contains("margin 0.1 instead of the model's training margin 0.35"));
    for ratio in side_ratio(&faces_of(&out)) {
        assert!((ratio - 1.2).abs() < 0.03, "crop / box side {ratio}");
    }
}

#[test]
fn an_absurd_margin_is_a_one_line_error() {
    let photo = solvay();
    let out = efea(&["predict", photo.to_str().unwrap(), "--margin", "1000"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--margin 1000"), "{stderr}");
}
