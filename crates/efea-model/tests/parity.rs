//! Parity with the PyTorch reference (`reference/efea_msm.py`): each fixture of
//! `tests/fixtures/parity/` is loaded into the Burn module, which must reproduce the
//! reference's eval-mode and train-mode outputs to 1e-4 absolute, the loss and the updated
//! BN running statistics to 1e-5, and the gradients to 1e-3 relative (twice those two off the
//! CPU: [`slack`]).

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{assert_close, assert_close_rel, max_abs, read_io, remap, tensors, weights_path};
use efea_model::attention::{AffConfig, SubspaceAttentionConfig, TripletAttentionConfig};
use efea_model::backbone::InvertedResidualConfig;
use efea_model::weights::{block_key_rules, load_pytorch_into, net_key_rules};
use efea_model::{EfeaNetConfig, Preset};

const OUTPUT_ATOL: f32 = 1e-4;
const LOSS_ATOL: f32 = 1e-5;
const RUNNING_ATOL: f32 = 1e-5;
const GRAD_RTOL: f32 = 1e-3;
/// For gradients that are zero in exact arithmetic: float32 round-off only.
const ZERO_GRAD_ATOL: f32 = 1e-6;
/// How far the gradient and running-statistic tolerances widen off the CPU. wgpu sums its
/// reductions (batch-norm statistics over N x H x W, weight gradients over the batch) in
/// workgroup trees, another order than flex's, and on lavapipe two values fell just outside the
/// CPU's bounds: `net_full`'s `msca.fuse.0.local_att.bn1` running variance by 1.3e-5 (1.1e-5 of
/// its value) and `net_w035`'s subspace `pw.weight` gradient by 1.15e-3 relative, a gradient
/// formed by cancellation (each sample's softmax gradients sum to zero). Outputs and losses
/// keep the CPU's tolerances everywhere.
fn slack() -> f32 {
    match std::env::var("EFEA_TEST_DEVICE").as_deref() {
        Err(_) | Ok("" | "flex" | "cpu") => 1.0,
        Ok(_) => 2.0,
    }
}

type Io = BTreeMap<String, TensorData>;

fn input(io: &Io, key: &str, device: &Device) -> Tensor<4> {
    Tensor::from_data(io[key].clone().convert::<f32>(), device)
}

/// How the case turns its output into the scalar the reference differentiated.
enum Loss {
    /// `(out * probe).mean()` for blocks.
    Probe,
    /// `cross_entropy(out, target)` for networks.
    CrossEntropy,
}

/// The Burn path of a PyTorch key: the case's rules, then BN's `weight`/`bias` as Burn's
/// `gamma`/`beta` where the module has no `weight`/`bias` of that name.
fn burn_path(
    rules: &[(String, String)],
    key: &str,
    known: &BTreeMap<String, TensorData>,
) -> String {
    let path = remap(rules, key);
    if known.contains_key(&path) {
        return path;
    }
    let bn = path
        .strip_suffix(".weight")
        .map(|p| format!("{p}.gamma"))
        .or_else(|| path.strip_suffix(".bias").map(|p| format!("{p}.beta")));
    match bn {
        Some(bn) if known.contains_key(&bn) => bn,
        _ => panic!("`{key}` maps to `{path}`, which the Burn module does not have"),
    }
}

/// Burn stores a linear weight as `[in, out]`, PyTorch as `[out, in]`.
fn torch_layout(actual: &TensorData, expected: &TensorData) -> TensorData {
    let (a, e) = (actual.shape(), expected.shape());
    if a.num_dims() == 2 && a != e && a[0] == e[1] && a[1] == e[0] {
        let t: Tensor<2> = Tensor::from_data(actual.clone(), &common::device());
        t.transpose().into_data()
    } else {
        actual.clone()
    }
}

fn check<M, const D: usize>(
    case: &str,
    init: impl Fn(&Device) -> M,
    rules: &[(String, String)],
    forward: impl Fn(&M, &Io, &Device) -> Tensor<D>,
    loss_kind: Loss,
    grad_rtol: f32,
) where
    M: Module,
{
    let io = read_io(case);
    let grad_rtol = grad_rtol * slack();
    let train_device = common::device().autodiff();
    let eval_device = common::device();
    let mut module = init(&train_device);
    let report = load_pytorch_into(&mut module, &weights_path(case), rules, None)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(
        report.missing.is_empty(),
        "{case}: not in the fixture: {:?}",
        report.missing
    );
    let unused: Vec<_> = report
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    assert!(
        unused.is_empty(),
        "{case}: fixture keys without a place: {unused:?}"
    );

    // Eval mode first, from the loaded running statistics.
    let eval_model = module.valid();
    let eval_out = forward(&eval_model, &io, &eval_device);
    assert_close(
        &format!("{case}: eval output"),
        &eval_out.into_data(),
        &io["eval_out"],
        OUTPUT_ATOL,
    );
    if !io.contains_key("train_out") {
        return;
    }

    let out = forward(&module, &io, &train_device);
    assert_close(
        &format!("{case}: train output"),
        &out.to_data(),
        &io["train_out"],
        OUTPUT_ATOL,
    );
    let loss: Tensor<1> = match loss_kind {
        Loss::Probe => {
            let probe = Tensor::<D>::from_data(io["probe"].clone().convert::<f32>(), &train_device);
            (out * probe).mean()
        }
        Loss::CrossEntropy => {
            let target =
                Tensor::<1, Int>::from_data(io["target"].clone().convert::<i64>(), &train_device);
            let logits: Tensor<2> = out.reshape([0, -1]);
            CrossEntropyLossConfig::new()
                .init(&train_device)
                .forward(logits, target)
        }
    };
    assert_close(
        &format!("{case}: loss"),
        &loss.clone().reshape([1]).into_data(),
        &io["loss"],
        LOSS_ATOL,
    );

    let grads = GradientsParams::from_grads(loss.backward(), &module);
    let burn = tensors(&module, Some(&grads));
    // Running statistics are folded in by `valid()` (threads update them lazily).
    let synced = tensors(&module.valid(), None);
    let grad_scale = io
        .iter()
        .filter(|(k, _)| k.starts_with("grad."))
        .map(|(_, v)| max_abs(v))
        .fold(0.0f32, f32::max);
    let exact_zero = common::exact_zero_grads(case);
    let mut compared = 0;
    for (key, expected) in &io {
        if let Some(param) = key.strip_prefix("grad.") {
            let path = burn_path(rules, param, &burn.values);
            let actual = burn
                .grads
                .get(&path)
                .unwrap_or_else(|| panic!("{case}: no gradient reached `{path}`"));
            let actual = &torch_layout(actual, expected);
            let what = format!("{case}: grad of {param}");
            if exact_zero.contains(key) {
                assert_close(&what, actual, expected, ZERO_GRAD_ATOL);
            } else if param.ends_with("dw.weight") {
                // Subspace attention's depthwise 1x1 only scales each channel, which the
                // train-mode BN after it normalises away: its gradient is zero but for BN's
                // eps, so only the case's overall gradient scale gives it a meaning.
                assert_close(&what, actual, expected, grad_rtol * grad_scale);
            } else {
                assert_close_rel(&what, actual, expected, grad_rtol);
            }
            compared += 1;
        } else if let Some(stat) = key.strip_prefix("running.") {
            let path = burn_path(rules, stat, &burn.values);
            assert_close(
                &format!("{case}: {stat} after one step"),
                &synced.values[&path],
                expected,
                RUNNING_ATOL * slack(),
            );
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "{case}: the fixture holds no gradients or running statistics"
    );
}

fn probe_case<M: Module>(
    case: &str,
    init: impl Fn(&Device) -> M,
    rules: Vec<(String, String)>,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<4>,
) {
    check(
        case,
        init,
        &rules,
        |m, io, d| forward(m, input(io, "input", d)),
        Loss::Probe,
        GRAD_RTOL,
    );
}

#[test]
fn inverted_residual_with_cdsm() {
    probe_case(
        "inverted_residual",
        |d| {
            InvertedResidualConfig::new(24, 24)
                .with_cdsm_groups(Some(4))
                .init(d)
        },
        block_key_rules("", "", 6),
        |m, x| m.forward(x),
    );
}

#[test]
fn inverted_residual_stride_2() {
    probe_case(
        "inverted_residual_s2",
        |d| InvertedResidualConfig::new(16, 24).with_stride(2).init(d),
        block_key_rules("", "", 6),
        |m, x| m.forward(x),
    );
}

#[test]
fn triplet_attention() {
    probe_case(
        "triplet_attention",
        |d| TripletAttentionConfig::new().init(d),
        vec![],
        |m, x| m.forward(x),
    );
}

#[test]
fn subspace_attention() {
    probe_case(
        "subspace_attention",
        |d| SubspaceAttentionConfig::new(24).init(d),
        vec![],
        |m, x| m.forward(x),
    );
}

#[test]
fn subspace_attention_with_uneven_groups() {
    probe_case(
        "subspace_attention_c18",
        |d| SubspaceAttentionConfig::new(18).init(d),
        vec![],
        |m, x| m.forward(x),
    );
}

#[test]
fn attentional_feature_fusion() {
    check(
        "aff",
        |d| AffConfig::new(16).init(d),
        &[],
        |m, io, d| m.forward(input(io, "input_x", d), input(io, "input_y", d)),
        Loss::Probe,
        GRAD_RTOL,
    );
}

fn net_case(case: &str, config: EfeaNetConfig, grad_rtol: f32) {
    let rules = net_key_rules(&config.blocks());
    let forward = |m: &efea_model::EfeaNet, io: &Io, d: &Device| m.forward(input(io, "input", d));
    check(
        case,
        |d| config.init(d),
        &rules,
        forward,
        Loss::CrossEntropy,
        grad_rtol,
    );
}

#[test]
fn full_network_width_035() {
    net_case(
        "net_w035",
        EfeaNetConfig::new().with_width_mult(0.35).with_dropout(0.0),
        GRAD_RTOL,
    );
}

#[test]
fn plain_network_width_035() {
    net_case(
        "net_plain_w035",
        EfeaNetConfig::preset(Preset::Plain)
            .with_width_mult(0.35)
            .with_dropout(0.0),
        GRAD_RTOL,
    );
}

#[test]
fn default_full_network() {
    // The full-width network's deep gradients (batch 2, train-mode BN over 3x3 maps) are
    // ill-conditioned in float32: PyTorch float32 itself misses this float64 fixture by
    // 1.7e-3 relative on the stem kernel (measured with reference/efea_msm.py), so the 1e-3
    // target of the other cases is out of reach for any float32 implementation here.
    net_case("net_full", EfeaNetConfig::new().with_dropout(0.0), 1e-2);
}
