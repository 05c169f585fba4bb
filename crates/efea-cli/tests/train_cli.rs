//! `efea train`, `efea eval` and `efea cv` as a user runs them: a run killed with SIGKILL in the
//! middle of an epoch resumes to the same metrics as an uninterrupted one; evaluation writes a
//! report and names a damaged checkpoint in one line; cross-validation reports its folds.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EFEA: &str = env!("CARGO_BIN_EXE_efea");

/// A tiny recipe: width 0.25 at 32x32, 280 easy synthetic faces, two epochs.
const TINY: &[&str] = &[
    "train",
    "--dataset",
    "synth",
    "--data",
    "count=280,level=easy",
    "--width",
    "0.25",
    "--input",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--no-tencrop",
    "--quiet",
];

fn efea(args: &[&str]) -> Output {
    Command::new(EFEA).args(args).output().expect("efea runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// metrics.csv without the timing columns (images/s, seconds).
fn learning_columns(run: &Path) -> Vec<String> {
    fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|line| line.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let out = efea(&[TINY, &["--out", whole.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("test accuracy (PrivateTest)"), "{stdout}");
    assert!(
        stdout.contains("epoch   2/2"),
        "one summary line per epoch: {stdout}"
    );

    let killed = dir.path().join("killed");
    // Without --quiet: a pipe gets plain progress lines within the epoch.
    let loud = TINY.iter().filter(|&&a| a != "--quiet");
    let mut child = Command::new(EFEA)
        .args(loud.chain(&["--out", killed.to_str().unwrap()]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let mid_epoch_two = line.trim_start().starts_with("epoch 2/2 batch");
        seen.push(line);
        if mid_epoch_two {
            // SIGKILL: no destructor, no flush, nothing runs.
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed mid-epoch: {seen:?}");
    assert!(
        killed
            .join("state")
            .join("epoch-0001")
            .join("state.json")
            .is_file()
    );
    assert!(!killed.join("report.json").exists());

    let resumed = efea(&["train", "--resume", killed.to_str().unwrap(), "--quiet"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stdout).contains("resuming after epoch 1"),
        "{}",
        text(&resumed.stdout)
    );
    assert_eq!(learning_columns(&killed), learning_columns(&whole));
    assert_eq!(scores(&killed), scores(&whole));

    // Flags do not mix with --resume.
    let mixed = efea(&[
        "train",
        "--resume",
        killed.to_str().unwrap(),
        "--epochs",
        "9",
    ]);
    assert!(!mixed.status.success());

    // Evaluation of the finished run, with ten crops.
    let eval_dir = dir.path().join("eval");
    let out = efea(&[
        "eval",
        "--model",
        whole.to_str().unwrap(),
        "--split",
        "PrivateTest",
        "--tta",
        "tencrop",
        "--out",
        eval_dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PrivateTest (tencrop)"),
        "{}",
        text(&out.stdout)
    );
    for file in ["report.json", "report.md", "confusion.png"] {
        assert!(eval_dir.join(file).is_file(), "{file}");
    }

    classes_are_matched_by_name(&whole, dir.path());

    // A truncated and a foreign checkpoint: one line naming the file, no panic.
    let bad = dir.path().join("bad");
    fs::create_dir(&bad).unwrap();
    fs::copy(whole.join("config.json"), bad.join("config.json")).unwrap();
    let weights = fs::read(whole.join("best.bpk")).unwrap();
    for (what, bytes) in [
        ("truncated", &weights[..weights.len() / 2]),
        ("foreign", &b"PK\x03\x04 not burnpack"[..]),
    ] {
        fs::write(bad.join("best.bpk"), bytes).unwrap();
        let out = efea(&["eval", "--model", bad.to_str().unwrap(), "--quiet"]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{what}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
        assert!(
            stderr.contains("best.bpk") && !stderr.contains("panicked"),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn training_split_over_two_devices_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    for run in &runs {
        let mut args = TINY.to_vec();
        args.extend(["--devices", "cpu,cpu", "--out"]);
        args.push(run.to_str().unwrap());
        let out = efea(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("; on cpu, cpu\n"), "{stdout}");
    }
    assert_eq!(learning_columns(&runs[0]).len(), 3);
    assert_eq!(learning_columns(&runs[0]), learning_columns(&runs[1]));
}

/// The scores of `report.json` without the timing.
fn scores(run: &Path) -> serde_json::Value {
    let mut report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    for split in report["splits"].as_array_mut().unwrap() {
        split.as_object_mut().unwrap().remove("images_per_sec");
    }
    report["splits"].take()
}

#[test]
fn cross_validation_reports_every_fold_and_their_mean() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("cv");
    let out = efea(&[
        "cv",
        "--dataset",
        "synth",
        "--data",
        "count=210,level=easy,subjects=6",
        "--folds",
        "3",
        "--width",
        "0.25",
        "--input",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("over 3 folds"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["cross_validation"]["folds"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let pooled: u64 = report["splits"][0]["samples"].as_u64().unwrap();
    assert_eq!(pooled, 210, "every sample is tested exactly once");
    assert!(out_dir.join("fold-03").join("best.bpk").is_file());
}

/// `efea eval` of `run` with its outputs in another order under other spellings of the class
/// names scores what the run itself scores; a class of no name the dataset knows is a
/// one-line error listing both sides, unless `--class-map` says what it is.
fn classes_are_matched_by_name(run: &Path, dir: &Path) {
    let eval = |model: &Path, extra: &[&str]| {
        let out_dir = dir.join("eval-by-name");
        let mut args = vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--split",
            "PrivateTest",
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
        ];
        args.extend(extra);
        let out = efea(&args);
        let report = out.status.success().then(|| scores(&out_dir)[0].clone());
        (out, report)
    };
    let (out, own) = eval(run, &[]);
    let own = own.unwrap_or_else(|| panic!("{}", text(&out.stderr)));

    let permuted = dir.join("permuted");
    fs::create_dir(&permuted).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let classes: Vec<String> = config["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes, efea_data::classes::FER2013_CLASSES);
    // Output k of the permuted network is output ORDER[k] of the run's, named as FER+ does.
    const ORDER: [usize; 7] = [6, 3, 5, 4, 0, 1, 2];
    let ferplus_names = &efea_data::classes::FERPLUS_CLASSES[..7];
    config["classes"] = serde_json::json!(ferplus_names);
    let write_config = |config: &serde_json::Value| {
        fs::write(permuted.join("config.json"), config.to_string()).unwrap()
    };
    write_config(&config);
    let device = burn::tensor::Device::flex();
    let (_, model) = efea_model::checkpoint::load_model(run, &device).unwrap();
    efea_model::checkpoint::save_module(
        &reorder_outputs(model, &ORDER),
        &permuted.join("best.bpk"),
    )
    .unwrap();
    let (out, by_name) = eval(&permuted, &[]);
    let by_name = by_name.unwrap_or_else(|| panic!("{}", text(&out.stderr)));
    assert_eq!(by_name["accuracy"], own["accuracy"], "{by_name} {own}");
    assert_eq!(by_name["confusion"], own["confusion"]);

    let mut renamed = config.clone();
    renamed["classes"][0] = "calm".into();
    write_config(&renamed);
    let (out, _) = eval(&permuted, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("network `calm` has no dataset class")
            && stderr.contains("dataset `Neutral` has no network class")
            && stderr.contains("calm, happiness, surprise")
            && stderr.contains("Angry, Disgust, Fear"),
        "{stderr}"
    );
    let (out, mapped) = eval(&permuted, &["--class-map", "calm=neutral"]);
    let mapped = mapped.unwrap_or_else(|| panic!("{}", text(&out.stderr)));
    assert_eq!(mapped["confusion"], own["confusion"]);
}

/// `model` with its classifier's outputs reordered: new output k is old output `order[k]`.
fn reorder_outputs(mut model: efea_model::EfeaNet, order: &[usize]) -> efea_model::EfeaNet {
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    let device = burn::tensor::Device::flex();
    let weight = model.classifier.weight.val();
    let [inputs, outputs] = weight.dims();
    let weights: Vec<f32> = weight.into_data().iter::<f32>().collect();
    let mut reordered = Vec::with_capacity(weights.len());
    for row in weights.chunks(outputs) {
        reordered.extend(order.iter().map(|&k| row[k]));
    }
    let data = TensorData::new(reordered, [inputs, outputs]);
    model.classifier.weight = Param::from_tensor(Tensor::from_data(data, &device));
    let bias: Vec<f32> = model
        .classifier
        .bias
        .as_ref()
        .expect("a bias")
        .val()
        .into_data()
        .iter::<f32>()
        .collect();
    let data = TensorData::new(
        order.iter().map(|&k| bias[k]).collect::<Vec<_>>(),
        [outputs],
    );
    model.classifier.bias = Some(Param::from_tensor(Tensor::from_data(data, &device)));
    model
}
