//! `efea data stats` and `efea synth` end to end: a generated CSV, its statistics as JSON, and
//! a damaged row that exits with code 2 and one line naming file, line and problem.

use std::path::Path;
use std::process::{Command, Output};

fn efea(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_efea"))
        .args(args)
        .output()
        .expect("the efea binary runs")
}

fn synth_csv(dir: &Path, count: usize) -> std::path::PathBuf {
    let csv = dir.join("synth.csv");
    let count = count.to_string();
    let out = efea(&[
        "synth",
        "--out",
        csv.to_str().unwrap(),
        "--count",
        &count,
        "--level",
        "easy",
        "--seed",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    csv
}

#[test]
fn stats_prints_the_json_contract() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synth_csv(dir.path(), 70);
    let out = efea(&[
        "data",
        "stats",
        "--dataset",
        "fer2013",
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dataset"], "fer2013");
    assert_eq!(json["samples"], 70);
    assert_eq!(json["classes"]["Neutral"], 10);
    let splits = json["splits"].as_object().unwrap();
    assert_eq!(
        splits.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        70
    );
    assert!(json.get("folds").is_none());
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);

    let out = efea(&[
        "data",
        "stats",
        "--dataset",
        "synth",
        "--data",
        "count=140,seed=1,subjects=10",
        "--folds",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["subjects"], 10);
    assert_eq!(json["folds"].as_array().unwrap().len(), 5);
}

#[test]
fn a_bad_row_exits_2_with_one_line_and_skip_bad_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synth_csv(dir.path(), 14);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Line 4 loses its last pixel.
    let (label, rest) = lines[3].split_once(',').unwrap();
    let (pixels, usage) = rest.rsplit_once(',').unwrap();
    let short = pixels.rsplit_once(' ').unwrap().0;
    lines[3] = format!("{label},{short},{usage}");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    let out = efea(&[
        "data",
        "stats",
        "--dataset",
        "fer2013",
        "--data",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "error: {}:4: expected 2304 pixel values, found 2303\n",
            csv.display()
        )
    );
    assert!(out.stdout.is_empty());

    let out = efea(&[
        "data",
        "stats",
        "--dataset",
        "fer2013",
        "--data",
        csv.to_str().unwrap(),
        "--skip-bad",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["samples"], 13);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("skipped 1 bad rows or images (first at lines 4)"),
        "{stderr}"
    );
}

#[test]
fn usage_mistakes_exit_1_and_preview_writes_a_png() {
    let out = efea(&["data", "stats", "--dataset", "fer2013"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dataset fer2013 needs --data PATH"));

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("grid.png");
    let out = efea(&[
        "data",
        "preview",
        "--dataset",
        "synth",
        "--data",
        "count=70",
        "--out",
        png.to_str().unwrap(),
        "--per-class",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
}
