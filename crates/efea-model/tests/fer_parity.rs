//! The Burn port of fer's mini-Xception against the Keras model it was converted from: real
//! face crops made by fer's own code (`tests/fixtures/fer/`, written by
//! `reference/fer_convert.py`) and what Keras computed for each.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::TensorData;
use common::{assert_close, fixture_dir, tensors};
use efea_model::mini_xception::FER_WEIGHTS;
use efea_model::{FER_CLASSES, FER_INPUT_SIZE, MiniXception, MiniXceptionConfig, normalise_fer};

/// Probabilities: the brief's bar. Logits and features are checked too, at the scale of their
/// values (features reach about 10, logits about 5).
const PROBS_ATOL: f32 = 1e-4;
const LOGITS_ATOL: f32 = 2e-4;
const FEATURES_ATOL: f32 = 5e-4;

struct Fixture {
    crops: Vec<u8>,
    n: usize,
    features: TensorData,
    logits: TensorData,
    probs: TensorData,
}

fn fixture() -> Fixture {
    let path = fixture_dir("fer").join("crops.safetensors");
    let mut store = SafetensorsStore::from_file(&path);
    let all = store
        .get_all_tensors()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let get = |key: &str| {
        let tensor = all
            .get(key)
            .unwrap_or_else(|| panic!("{}: no `{key}`", path.display()));
        burn::store::bridge::to_data(tensor).expect("fixture tensor decodes")
    };
    let crops_data = get("crops");
    let [n, h, w] = crops_data.shape().to_vec()[..] else {
        panic!("crops are [N, 64, 64], got {:?}", crops_data.shape())
    };
    assert_eq!([h, w], [FER_INPUT_SIZE; 2]);
    Fixture {
        crops: crops_data.try_to_vec::<u8>().expect("crops are u8"),
        n,
        features: get("features"),
        logits: get("logits"),
        probs: get("probs"),
    }
}

fn rows(data: &TensorData) -> Vec<Vec<f32>> {
    let k = data.shape().to_vec()[1];
    let values: Vec<f32> = data.try_to_vec().expect("f32");
    values.chunks(k).map(<[f32]>::to_vec).collect()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .expect("a row has classes")
}

#[test]
fn probabilities_match_keras_on_every_crop() {
    let device = common::device();
    let fixture = fixture();
    assert!(fixture.n >= 24, "only {} crops", fixture.n);
    let model = MiniXception::bundled(&device);
    let x = normalise_fer(&fixture.crops, &device);
    let (features, logits) = model.forward_cam(x.clone());
    let probs = model.probabilities(x);

    assert_close(
        "features",
        &features.into_data(),
        &fixture.features,
        FEATURES_ATOL,
    );
    assert_close("logits", &logits.into_data(), &fixture.logits, LOGITS_ATOL);
    let ours = probs.into_data();
    let worst = rows(&ours)
        .iter()
        .zip(rows(&fixture.probs))
        .map(|(a, e)| {
            a.iter()
                .zip(&e)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        })
        .fold(0.0f32, f32::max);
    eprintln!(
        "fer parity: {} crops, probabilities max abs diff {worst:e}",
        fixture.n
    );
    assert_close("probabilities", &ours, &fixture.probs, PROBS_ATOL);
    // Same decision on every crop.
    for (i, (a, e)) in rows(&ours).iter().zip(rows(&fixture.probs)).enumerate() {
        assert_eq!(argmax(a), argmax(&e), "crop {i}: top class");
    }
}

/// The fixture can tell a wrong model from a right one: the crops do not all get the same class
/// and their probabilities differ.
#[test]
fn fixture_is_not_degenerate() {
    let fixture = fixture();
    let probs = rows(&fixture.probs);
    let classes: std::collections::BTreeSet<_> = probs.iter().map(|p| argmax(p)).collect();
    assert!(
        classes.len() >= 2,
        "every crop has top class {:?}",
        classes.iter().map(|&c| FER_CLASSES[c]).collect::<Vec<_>>()
    );
    let spread = (0..FER_CLASSES.len())
        .map(|k| {
            let column = probs.iter().map(|p| p[k]);
            let max = column.clone().fold(f32::MIN, f32::max);
            let min = column.fold(f32::MAX, f32::min);
            max - min
        })
        .fold(0.0f32, f32::max);
    assert!(
        spread > 1e-2,
        "probabilities barely differ across crops ({spread})"
    );
}

/// Every tensor of the network comes from the file, and every tensor of the file is used.
#[test]
fn converted_weights_fill_every_parameter() {
    let device = common::device();
    let mut model = MiniXceptionConfig::new().init(&device);
    let report = model
        .import_safetensors_bytes(FER_WEIGHTS, "bundled")
        .expect("the bundled weights load");
    assert!(report.missing.is_empty(), "missing: {:?}", report.missing);
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    let expected = tensors(&model, None).values.len();
    assert_eq!(report.applied.len(), expected);
    assert_eq!(
        expected, 80,
        "4 stem + 4 x 18 module + 2 classifier tensors"
    );

    // The file on disk is the bundled one, and loads through the path API as well.
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fer_mini_xception.safetensors");
    assert_eq!(std::fs::read(&path).expect("asset readable"), FER_WEIGHTS);
    MiniXception::load_safetensors(&path, &device).expect("loads from its path");
}

#[test]
fn load_errors_name_the_file() {
    let device = common::device();
    let missing = MiniXception::load_safetensors("no/such/fer.safetensors", &device)
        .expect_err("no such file");
    assert!(
        missing.to_string().contains("no/such/fer.safetensors"),
        "{missing}"
    );

    // A file with one tensor too few and one of no use.
    let mut store = SafetensorsStore::from_bytes(Some(FER_WEIGHTS.to_vec()));
    let mut all: BTreeMap<String, TensorData> = store
        .get_all_tensors()
        .expect("bundled file reads")
        .iter()
        .map(|(k, t)| (k.clone(), burn::store::bridge::to_data(t).expect("decodes")))
        .collect();
    let bias = all
        .remove("classifier.bias")
        .expect("the file has the bias");
    all.insert("classifier.extra".into(), bias);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.safetensors");
    write_safetensors(&path, &all);
    let error = MiniXception::load_safetensors(&path, &device).expect_err("mismatch");
    let message = error.to_string();
    assert!(message.contains("broken.safetensors"), "{message}");
    assert!(
        message.contains("classifier.bias") && message.contains("classifier.extra"),
        "{message}"
    );
}

/// A minimal float32 safetensors writer for the test above.
fn write_safetensors(path: &std::path::Path, tensors: &BTreeMap<String, TensorData>) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, tensor) in tensors {
        let values: Vec<f32> = tensor.try_to_vec().expect("f32");
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": tensor.shape().to_vec(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = serde_json::to_vec(&header).expect("json");
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend(text);
    bytes.extend(data);
    std::fs::write(path, bytes).expect("write");
}

/// Inference time on `flex`, batch 1 and 32 (`cargo test --release -p efea-model --test
/// fer_parity -- --ignored --nocapture`). A measurement, not a test.
#[test]
#[ignore]
fn time_forward() {
    let device = common::device();
    let model = MiniXception::bundled(&device);
    let fixture = fixture();
    let plane = FER_INPUT_SIZE * FER_INPUT_SIZE;
    for batch in [1usize, 32] {
        let crops: Vec<u8> = fixture
            .crops
            .iter()
            .copied()
            .cycle()
            .take(batch * plane)
            .collect();
        let x = normalise_fer(&crops, &device);
        for _ in 0..3 {
            let _ = model.forward(x.clone()).into_data();
        }
        let runs = if batch == 1 { 50 } else { 10 };
        let start = std::time::Instant::now();
        for _ in 0..runs {
            let _ = model.forward(x.clone()).into_data();
        }
        let per_batch = start.elapsed().as_secs_f64() / runs as f64;
        eprintln!(
            "mini-Xception forward, batch {batch}: {:.2} ms per batch, {:.0} img/s",
            per_batch * 1e3,
            batch as f64 / per_batch
        );
    }
}
