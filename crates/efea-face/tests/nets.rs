//! Each net of MTCNN with the compiled-in weights reproduces facenet-pytorch's outputs on the
//! committed inputs of `tests/fixtures/mtcnn/` (written by `reference/mtcnn_convert.py`):
//! P-Net on a window of the group photo's pyramid and on noise, R-Net and O-Net on crops of
//! faces, of background and on noise.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use efea_face::{Mtcnn, MtcnnConfig};

/// facenet-pytorch computes in float32; so do the nets here, with other summation orders.
const ATOL: f32 = 1e-4;

fn fixture(net: &str) -> BTreeMap<String, TensorData> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mtcnn")
        .join(format!("{net}.io.safetensors"));
    let mut store = SafetensorsStore::from_file(&path);
    store
        .get_all_tensors()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .iter()
        .map(|(name, tensor)| {
            let data = burn::store::bridge::to_data(tensor).expect("fixture tensor decodes");
            (name.clone(), data)
        })
        .collect()
}

fn values(data: TensorData) -> Vec<f32> {
    data.try_into_vec().expect("f32 tensor")
}

/// Asserts `actual` equals the fixture's `key` (shape and values to `ATOL`); returns the
/// largest difference.
fn assert_matches<const D: usize>(
    net: &str,
    key: &str,
    actual: Tensor<D>,
    io: &BTreeMap<String, TensorData>,
) -> f32 {
    let expected = &io[key];
    assert_eq!(
        actual.dims().to_vec(),
        expected.shape().to_vec(),
        "{net}.{key}: shape"
    );
    let actual = values(actual.into_data());
    let expected = values(expected.clone());
    let max = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        actual.iter().all(|v| v.is_finite()),
        "{net}.{key}: non-finite output"
    );
    assert!(
        max <= ATOL,
        "{net}.{key}: max abs difference {max:e} > {ATOL:e}"
    );
    println!("{net}.{key}: max abs difference {max:e}");
    max
}

/// The face probabilities of the fixture spread over a wide range, so a net that ignored its
/// input (or its weights) could not match them.
fn assert_varied(net: &str, prob: &TensorData) {
    let p = values(prob.clone());
    // [N, 2, ...]: the face channel is the second half of each sample.
    let per_sample = p.len() / prob.shape()[0];
    let face: Vec<f32> = p
        .chunks(per_sample)
        .flat_map(|s| s[per_sample / 2..].to_vec())
        .collect();
    let (lo, hi) = face
        .iter()
        .fold((1.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(
        lo < 0.1 && hi > 0.9,
        "{net}: face probabilities span only {lo}..{hi}"
    );
}

fn input(io: &BTreeMap<String, TensorData>, device: &Device) -> Tensor<4> {
    Tensor::from_data(io["input"].clone(), device)
}

fn detector(device: &Device) -> Mtcnn {
    Mtcnn::new(MtcnnConfig::default(), device)
}

#[test]
fn pnet_matches_facenet_pytorch() {
    let device = Device::flex();
    let io = fixture("pnet");
    assert_varied("pnet", &io["prob"]);
    let out = detector(&device).pnet().forward(input(&io, &device));
    assert_matches("pnet", "prob", out.prob, &io);
    assert_matches("pnet", "reg", out.reg, &io);
}

#[test]
fn rnet_matches_facenet_pytorch() {
    let device = Device::flex();
    let io = fixture("rnet");
    assert_varied("rnet", &io["prob"]);
    let out = detector(&device).rnet().forward(input(&io, &device));
    assert_matches("rnet", "prob", out.prob, &io);
    assert_matches("rnet", "reg", out.reg, &io);
}

#[test]
fn onet_matches_facenet_pytorch() {
    let device = Device::flex();
    let io = fixture("onet");
    assert_varied("onet", &io["prob"]);
    let out = detector(&device).onet().forward(input(&io, &device));
    assert_matches("onet", "prob", out.prob, &io);
    assert_matches("onet", "reg", out.reg, &io);
    assert_matches("onet", "landmarks", out.landmarks, &io);
}

#[test]
fn regressions_vary_across_inputs() {
    // Two different crops give different regressions: the fixture cannot pass vacuously.
    for net in ["rnet", "onet"] {
        let reg = values(fixture(net)["reg"].clone());
        assert_ne!(reg[..4], reg[4..8], "{net}: first two crops regress alike");
    }
}

#[test]
fn detector_is_shareable_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Mtcnn>();
}
