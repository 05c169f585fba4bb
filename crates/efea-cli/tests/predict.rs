//! `efea predict` end to end: the binary on a folder of good and damaged files, in every
//! output format, with pictures, stdin and `--no-detect`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use efea_data::synth::{self, SynthConfig};
use efea_model::EfeaNetConfig;
use image::{DynamicImage, GrayImage, ImageFormat, Luma};
use serde_json::Value;

const CLASSES: [&str; 7] = [
    "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral",
];

fn efea() -> Command {
    Command::new(env!("CARGO_BIN_EXE_efea"))
}

fn run_dir(root: &Path) -> PathBuf {
    let dir = root.join("run");
    efea_infer::run_dir::write_random(
        &dir,
        EfeaNetConfig::new().with_width_mult(0.35),
        CLASSES.iter().map(|c| c.to_string()).collect(),
        1,
    )
    .unwrap();
    dir
}

/// The rustface crate's group photo, committed as a fixture.
fn group_photo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/photos/solvay_1927.png")
}

/// A folder of inputs: `images/` holds a blank picture, a synthetic face crop and the group
/// photo (as JPEG); `damaged/` an empty file and a text file named `.jpg`.
fn inputs(root: &Path) -> PathBuf {
    let images = root.join("in/images");
    let damaged = root.join("in/damaged");
    fs::create_dir_all(&images).unwrap();
    fs::create_dir_all(&damaged).unwrap();
    GrayImage::from_pixel(120, 90, Luma([128]))
        .save(images.join("blank.png"))
        .unwrap();
    synth::render(&SynthConfig::new(7), 3)
        .save(images.join("crop.png"))
        .unwrap();
    image::open(group_photo())
        .unwrap()
        .to_rgb8()
        .save_with_format(images.join("group.jpg"), ImageFormat::Jpeg)
        .unwrap();
    fs::write(damaged.join("empty.png"), b"").unwrap();
    fs::write(damaged.join("notes.jpg"), b"not a picture\n").unwrap();
    root.join("in")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn a_folder_with_damaged_files_reports_each_and_fails_overall() {
    let tmp = tempfile::tempdir().unwrap();
    let model = run_dir(tmp.path());
    let folder = inputs(tmp.path());

    let output = efea()
        .args(["predict", "--model"])
        .arg(&model)
        .arg(&folder)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("2 of"), "{}", stderr(&output));
    let records: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(records.len(), 5);
    let by_name = |name: &str| {
        records
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert!(
        by_name("empty.png")["error"]
            .as_str()
            .unwrap()
            .contains("empty")
    );
    assert!(
        by_name("notes.jpg")["error"]
            .as_str()
            .unwrap()
            .contains("not an image")
    );
    assert_eq!(by_name("blank.png")["faces"], Value::Array(vec![]));
    let faces = by_name("group.jpg")["faces"].as_array().unwrap().clone();
    assert!(faces.len() >= 20, "{} faces", faces.len());
    assert_eq!(
        faces[0]["probabilities"].as_object().unwrap().len(),
        CLASSES.len()
    );
    assert_eq!(
        probability_keys_in_order(&stdout(&output)),
        CLASSES,
        "in the model's class order"
    );
    assert!(faces[0]["box"]["width"].as_u64().unwrap() > 0);
}

#[test]
fn jsonl_csv_and_table_say_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let model = run_dir(tmp.path());
    let folder = inputs(tmp.path());
    let images = folder.join("images");
    let run = |format: &str| {
        let output = efea()
            .args(["predict", "--model"])
            .arg(&model)
            .arg(&images)
            .args(["--format", format])
            .output()
            .unwrap();
        assert!(output.status.success(), "{format}: {}", stderr(&output));
        stdout(&output)
    };
    let jsonl = run("jsonl");
    let records: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One record per image of the folder (blank, crop, group).
    assert_eq!(records.len(), 3, "{jsonl}");
    let faces: usize = records
        .iter()
        .map(|r| r["faces"].as_array().unwrap().len())
        .sum();
    let images_without_faces = records
        .iter()
        .filter(|r| r["faces"].as_array().unwrap().is_empty())
        .count();

    let csv = run("csv");
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        format!(
            "path,face,x,y,width,height,label,{},error",
            CLASSES.join(",")
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), faces + images_without_faces);
    assert!(
        rows.iter()
            .all(|r| r.split(',').count() == 8 + CLASSES.len())
    );

    let table = run("table");
    let mut table_lines = table.lines();
    assert!(
        table_lines.next().unwrap().starts_with("model: "),
        "{table}"
    );
    assert!(table_lines.next().unwrap().starts_with("path"));
    assert!(table.contains("(no face found)"));
    assert_eq!(table.lines().count(), 2 + faces + images_without_faces);
}

#[test]
fn no_detect_classifies_each_image_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let model = run_dir(tmp.path());
    let crops = tmp.path().join("crops");
    fs::create_dir_all(&crops).unwrap();
    let config = SynthConfig::new(7);
    for index in 0..7 {
        synth::render(&config, index)
            .save(crops.join(format!("{index}.png")))
            .unwrap();
    }
    let output = efea()
        .args(["predict", "--no-detect", "--format", "jsonl", "--model"])
        .arg(&model)
        .arg(&crops)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 7, "one record per crop: {out}");
    for line in out.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let faces = record["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1);
        assert_eq!(
            faces[0]["box"],
            serde_json::json!({"x": 0, "y": 0, "width": 48, "height": 48})
        );
        assert!(faces[0].get("score").is_none());
    }
}

#[test]
fn pictures_stdin_and_verbose_timing() {
    let photo = group_photo();
    let tmp = tempfile::tempdir().unwrap();
    let model = run_dir(tmp.path());
    let annotated = tmp.path().join("annotated");
    let cams = tmp.path().join("cam");
    let mut child = efea()
        .args(["predict", "--verbose", "--format", "jsonl", "--model"])
        .arg(&model)
        .arg("--annotate")
        .arg(&annotated)
        .arg("--cam")
        .arg(&cams)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(&photo).unwrap())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let record: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(record["path"], "-");
    let faces = record["faces"].as_array().unwrap().len();
    assert!(faces >= 20);

    let picture = image::open(annotated.join("stdin.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (1666, 1136));
    let overlays: Vec<_> = fs::read_dir(&cams).unwrap().flatten().collect();
    assert_eq!(overlays.len(), faces);
    let first = image::open(overlays[0].path()).unwrap();
    assert!(first.width() >= 128 && first.width() == first.height());
    assert!(matches!(first, DynamicImage::ImageRgb8(_)));

    let err = stderr(&output);
    let timing = err
        .lines()
        .find(|l| l.starts_with("per image:"))
        .unwrap_or_else(|| panic!("{err}"));
    for part in ["decode", "detection", "classification", "faces/s"] {
        assert!(timing.contains(part), "{timing}");
    }
}

#[test]
fn a_missing_model_or_path_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let output = efea()
        .args(["predict", "--model"])
        .arg(tmp.path().join("nowhere"))
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error:"), "{err}");

    let model = run_dir(tmp.path());
    let output = efea()
        .args(["predict", "--model"])
        .arg(&model)
        .arg(tmp.path().join("missing.jpg"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("missing.jpg"),
        "{}",
        stderr(&output)
    );
}

/// The keys of the first `"probabilities"` object of a JSON text, in the order written
/// (`serde_json::Value` sorts keys, so the order has to be read off the text).
fn probability_keys_in_order(text: &str) -> Vec<String> {
    let start = text
        .find("\"probabilities\":")
        .expect("a probabilities object")
        + "\"probabilities\":".len();
    let object = &text[start..];
    let body = &object[object.find('{').unwrap() + 1..object.find('}').unwrap()];
    body.split(',')
        .map(|pair| {
            pair.split(':')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}
