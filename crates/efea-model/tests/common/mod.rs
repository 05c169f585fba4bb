//! Helpers for the parity tests: reading fixtures written by `reference/make_fixtures.py`
//! and comparing tensors with explicit tolerances.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};

/// The device the parity tests run on: `flex` (the CPU), or the device that
/// `EFEA_TEST_DEVICE` names as `efea --device` spells it (`wgpu`, `wgpu:cpu`, `tch`), given the
/// crate's feature for it: in CI, Burn's wgpu backend on Mesa's lavapipe software Vulkan;
/// `tests/tch/run.sh`, libtorch. Asking for a backend this build lacks fails the test rather
/// than quietly testing the CPU again.
pub fn device() -> Device {
    match std::env::var("EFEA_TEST_DEVICE").as_deref() {
        Err(_) | Ok("" | "flex" | "cpu") => Device::flex(),
        Ok(name) => efea_model::device::parse_device(name)
            .unwrap_or_else(|e| panic!("EFEA_TEST_DEVICE={name}: {e}")),
    }
}

pub fn fixture_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind)
}

/// All tensors of a `<case>.io.safetensors`, by key.
pub fn read_io(case: &str) -> BTreeMap<String, TensorData> {
    let path = fixture_dir("parity").join(format!("{case}.io.safetensors"));
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

/// Gradient keys that the fixture marks as zero in exact arithmetic (a bias feeding a
/// train-mode batch norm): their stored values are round-off, compared absolutely.
pub fn exact_zero_grads(case: &str) -> Vec<String> {
    let path = fixture_dir("parity").join(format!("{case}.io.safetensors"));
    let bytes = std::fs::read(&path).expect("fixture readable");
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + len]).expect("json header");
    let Some(fixture) = header["__metadata__"]["fixture"].as_str() else {
        return vec![];
    };
    let fixture: serde_json::Value =
        serde_json::from_str(fixture).expect("fixture metadata is json");
    fixture["grad_zero_in_exact_arithmetic"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn weights_path(case: &str) -> PathBuf {
    fixture_dir("parity").join(format!("{case}.weights.safetensors"))
}

fn as_f32(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert::<f32>()
        .try_to_vec()
        .expect("float data")
}

/// `max |a - e| <= atol`, elementwise, with the worst element in the message.
pub fn assert_close(what: &str, actual: &TensorData, expected: &TensorData, atol: f32) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let (a, e) = (as_f32(actual), as_f32(expected));
    let (worst, diff) = a
        .iter()
        .zip(&e)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
        );
    assert!(
        diff <= atol && a.iter().all(|x| x.is_finite()),
        "{what}: max abs diff {diff:e} > {atol:e} at {worst} (actual {}, expected {})",
        a[worst],
        e[worst]
    );
}

pub fn max_abs(data: &TensorData) -> f32 {
    as_f32(data).iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// `max |a - e| <= rtol * max |e|`: relative to the tensor's scale, so that elements near
/// zero (where float32 round-off dominates) do not decide.
pub fn assert_close_rel(what: &str, actual: &TensorData, expected: &TensorData, rtol: f32) {
    let scale = max_abs(expected);
    assert!(
        scale > 0.0,
        "{what}: the expected tensor is all zeros: a useless fixture"
    );
    assert_close(what, actual, expected, rtol * scale);
}

/// Float tensors of a module by path (parameters and running statistics), and the gradient
/// of each parameter when `grads` is given.
pub struct Tensors {
    pub values: BTreeMap<String, TensorData>,
    pub grads: BTreeMap<String, TensorData>,
}

struct Collect<'a> {
    grads: Option<&'a GradientsParams>,
    path: Vec<String>,
    out: Tensors,
}

impl Collect<'_> {
    fn record<const D: usize>(&mut self, name: String, id: ParamId, tensor: &Tensor<D>) {
        if let Some(grad) = self.grads.and_then(|g| g.get::<D>(id)) {
            self.out.grads.insert(name.clone(), grad.into_data());
        }
        self.out.values.insert(name, tensor.to_data());
    }
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        self.record(name, param.id, &param.val());
    }

    /// Running statistics arrive here, with their full path.
    fn visit_float_with_path<const D: usize>(
        &mut self,
        path: &[String],
        id: ParamId,
        tensor: &Tensor<D>,
    ) {
        self.record(path.join("."), id, tensor);
    }
}

pub fn tensors<M: Module>(module: &M, grads: Option<&GradientsParams>) -> Tensors {
    let mut visitor = Collect {
        grads,
        path: Vec::new(),
        out: Tensors {
            values: BTreeMap::new(),
            grads: BTreeMap::new(),
        },
    };
    module.visit(&mut visitor);
    visitor.out
}

/// Applies `rules` (PyTorch key regex -> Burn path) in order, as the stores do.
pub fn remap(rules: &[(String, String)], key: &str) -> String {
    rules.iter().fold(key.to_string(), |k, (from, to)| {
        regex::Regex::new(from)
            .expect("rule compiles")
            .replace_all(&k, to.as_str())
            .into_owned()
    })
}
