//! `EfeaNet::compile()`: the compiled inference form computes what the eval-mode network
//! computes, on the PyTorch fixtures and on random weights with trained-looking batch norms,
//! for every preset, width, input channel count, stem stride and batch size, and no
//! parameter of the network is left out of it.

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use common::{assert_close, read_io, weights_path};
use efea_model::weights::{load_pytorch_into, net_key_rules};
use efea_model::{EfeaNet, EfeaNetConfig, Preset};

/// The eval-mode outputs' tolerance of the parity tests (MODEL.md).
const OUTPUT_ATOL: f32 = 1e-4;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Eval-mode logits of the Burn network and of its compiled form, with the input.
fn both(model: &EfeaNet, x: Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let compiled = model.compile().expect("an EfeaNetConfig network compiles");
    let burn = values(model.forward(x.clone()));
    let fast = values(compiled.forward_tensor(x));
    (burn, fast)
}

#[test]
fn compiled_equals_pytorch_and_burn_on_the_parity_fixtures() {
    let device = Device::flex();
    for (case, config) in [
        (
            "net_w035",
            EfeaNetConfig::new().with_width_mult(0.35).with_dropout(0.0),
        ),
        (
            "net_plain_w035",
            EfeaNetConfig::preset(Preset::Plain)
                .with_width_mult(0.35)
                .with_dropout(0.0),
        ),
        ("net_full", EfeaNetConfig::new().with_dropout(0.0)),
    ] {
        let io = read_io(case);
        let mut model = config.init(&device);
        let rules = net_key_rules(&config.blocks());
        let report = load_pytorch_into(&mut model, &weights_path(case), &rules, None)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(report.missing.is_empty(), "{case}: {:?}", report.missing);
        let model = model.valid();
        let input: Tensor<4> = Tensor::from_data(io["input"].clone().convert::<f32>(), &device);
        let compiled = model.compile().expect("compiles");
        let fast = compiled.forward_tensor(input.clone()).into_data();
        assert_close(
            &format!("{case}: compiled vs PyTorch"),
            &fast,
            &io["eval_out"],
            OUTPUT_ATOL,
        );
        let burn = model.forward(input).into_data();
        assert_close(
            &format!("{case}: compiled vs Burn"),
            &fast,
            &burn,
            OUTPUT_ATOL,
        );
    }
}

/// Every parameter away from its initial value, as after training: batch-norm statistics
/// and affine parameters, convolution biases, weights scaled so that the signal keeps its
/// size through the blocks and the logits spread over several units (so that a wrong layer
/// shows in them).
struct Randomise {
    path: Vec<String>,
    device: Device,
    running_vars: usize,
}

impl ModuleMapper for Randomise {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.last().map_or("", String::as_str).to_string();
        let in_classifier = self.path.iter().any(|p| p == "classifier");
        let device = self.device.clone();
        if name == "running_var" {
            self.running_vars += 1;
        }
        param.map(|t| {
            let shape = t.shape();
            let uniform =
                |lo, hi| Tensor::<D>::random(shape.clone(), Distribution::Uniform(lo, hi), &device);
            match name.as_str() {
                "gamma" => uniform(0.5, 1.5),
                "beta" => uniform(-0.5, 0.5),
                "running_mean" => uniform(-0.3, 0.3),
                "running_var" => uniform(0.5, 2.0),
                "bias" => uniform(-0.2, 0.2),
                // He's fan-in scale: MODEL.md's fan-out init relies on batch statistics to
                // renormalise (a depthwise kernel divides the variance by the width), and
                // with running statistics near 1 the signal would die out block by block,
                // leaving logits that hardly depend on the input.
                "weight" => {
                    let dims = shape.dims::<D>();
                    let fan_in: usize = if D == 2 {
                        dims[0]
                    } else {
                        dims[1..].iter().product()
                    };
                    let gain = if in_classifier { 1.0 } else { 2.0 };
                    Tensor::<D>::random(
                        shape.clone(),
                        Distribution::Normal(0.0, (gain / fan_in as f64).sqrt()),
                        &device,
                    )
                }
                _ => t,
            }
        })
    }
}

fn trained_looking(config: &EfeaNetConfig, device: &Device) -> EfeaNet {
    let mut mapper = Randomise {
        path: Vec::new(),
        device: device.clone(),
        running_vars: 0,
    };
    let model = config.init(device).map(&mut mapper).valid();
    assert!(
        mapper.running_vars > 10,
        "the batch norms' statistics were randomised"
    );
    model
}

fn input(config: &EfeaNetConfig, batch: usize, device: &Device) -> Tensor<4> {
    let s = config.input_size;
    Tensor::random(
        [batch, config.in_channels, s, s],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// Compiled and Burn logits agree, and they depend on the input (a constant network would
/// agree trivially).
fn check(what: &str, config: &EfeaNetConfig, batch: usize, device: &Device) {
    let model = trained_looking(config, device);
    let x = input(config, batch, device);
    let (burn, fast) = both(&model, x.clone());
    let k = config.num_classes;
    assert_eq!(fast.len(), batch * k, "{what}: logits shape");
    let spread = burn.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.1, "{what}: logits all near zero ({spread})");
    let other = values(
        model
            .compile()
            .expect("compiles")
            .forward_tensor(x.mul_scalar(-0.5).add_scalar(0.3)),
    );
    let moved = max_diff(&fast, &other);
    assert!(
        moved > 1e-2,
        "{what}: the logits do not depend on the input ({moved:e}, spread {spread})"
    );
    if batch > 1 {
        assert!(
            max_diff(&fast[..k], &fast[k..2 * k]) > 1e-3,
            "{what}: samples of a batch give the same logits"
        );
    }
    let diff = max_diff(&burn, &fast);
    assert!(
        diff <= OUTPUT_ATOL,
        "{what}: compiled differs from Burn by {diff:e}\nburn {burn:?}\ncompiled {fast:?}"
    );
}

#[test]
fn compiled_equals_burn_for_every_preset_width_channels_and_batch() {
    let device = Device::flex();
    for preset in Preset::ALL {
        for width in [0.35, 1.0] {
            for in_channels in [1, 3] {
                let config = EfeaNetConfig::preset(preset)
                    .with_width_mult(width)
                    .with_in_channels(in_channels);
                let batch = if in_channels == 1 { 1 } else { 3 };
                check(
                    &format!("{preset} x{width} c{in_channels} b{batch}"),
                    &config,
                    batch,
                    &device,
                );
            }
        }
    }
}

#[test]
fn compiled_equals_burn_for_other_sizes_strides_and_hyper_parameters() {
    let device = Device::flex();
    let cases = [
        // 96 pixels: the stride-2 stem.
        (
            "96px",
            EfeaNetConfig::new()
                .with_width_mult(0.35)
                .with_input_size(96),
        ),
        // An odd size: every stride-2 stage has an odd input, maps end at 2x2.
        (
            "37px",
            EfeaNetConfig::new()
                .with_width_mult(0.5)
                .with_input_size(37),
        ),
        // The smallest input: the last stages run on 1x1 maps.
        (
            "16px",
            EfeaNetConfig::new()
                .with_width_mult(0.35)
                .with_input_size(16),
        ),
        (
            "stride-2 stem at 64",
            EfeaNetConfig::new()
                .with_width_mult(0.35)
                .with_input_size(64)
                .with_stem_stride(Some(2)),
        ),
        // MSCA width and reduction off the vector size, uneven subspaces, CDSM in the first
        // blocks, 8 classes, a wider network.
        (
            "odd hyper-parameters",
            EfeaNetConfig::new()
                .with_width_mult(0.75)
                .with_msca_channels(20)
                .with_msca_reduction(3)
                .with_cdsm_groups(3)
                .with_cdsm_blocks(Some(vec![1, 2, 4, 17]))
                .with_num_classes(8)
                .with_input_size(40),
        ),
        (
            "wide",
            EfeaNetConfig::new()
                .with_width_mult(1.4)
                .with_in_channels(3)
                .with_input_size(32),
        ),
    ];
    for (what, config) in cases {
        config.validate().expect("a valid config");
        check(what, &config, 2, &device);
    }
    // More samples than one task takes: the batch is split over rayon's pool.
    check(
        "batch 9",
        &EfeaNetConfig::new().with_width_mult(0.35),
        9,
        &device,
    );
}

/// Adds to one float tensor of a module (the `target`-th in visiting order), leaving the rest.
struct PerturbOne {
    target: usize,
    seen: usize,
}

impl ModuleMapper for PerturbOne {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.seen;
        self.seen += 1;
        if index != self.target {
            return param;
        }
        // Positive tensors (variances) stay positive.
        param.map(|t| t.mul_scalar(1.3).add_scalar(0.1))
    }
}

#[test]
fn every_parameter_reaches_the_compiled_network() {
    let device = Device::flex();
    let config = EfeaNetConfig::new()
        .with_width_mult(0.35)
        .with_input_size(32);
    let model = trained_looking(&config, &device);
    let x = input(&config, 2, &device);
    let (base, _) = both(&model, x.clone());
    let mut count = PerturbOne {
        target: usize::MAX,
        seen: 0,
    };
    let model = model.map(&mut count);
    let tensors = count.seen;
    assert!(
        tensors > 300,
        "the full network has hundreds of float tensors, saw {tensors}"
    );
    let mut insensitive = Vec::new();
    for target in 0..tensors {
        let perturbed = model.clone().map(&mut PerturbOne { target, seen: 0 });
        let (burn, fast) = both(&perturbed, x.clone());
        let diff = max_diff(&burn, &fast);
        assert!(
            diff <= OUTPUT_ATOL,
            "tensor {target}: compiled differs from Burn by {diff:e} after perturbing it"
        );
        if max_diff(&burn, &base) < 10.0 * OUTPUT_ATOL {
            insensitive.push(target);
        }
    }
    // A tensor whose change Burn's own output does not show (a constant shift before a
    // softmax, a bias under a saturated activation) tests nothing; there must be few.
    assert!(
        insensitive.len() * 20 < tensors,
        "{} of {tensors} tensors do not move the logits: {insensitive:?}",
        insensitive.len()
    );
}

#[test]
fn forward_checks_its_input_length() {
    let config = EfeaNetConfig::new().with_width_mult(0.35);
    let compiled = config
        .init(&Device::flex())
        .valid()
        .compile()
        .expect("compiles");
    let result = std::panic::catch_unwind(|| compiled.forward(&[0.0; 10], 1, 48, 48));
    assert!(result.is_err());
    assert!(
        compiled.forward(&[], 0, 48, 48).is_empty(),
        "an empty batch"
    );
    let ok = compiled.forward(&vec![0.0; 48 * 48], 1, 48, 48);
    assert_eq!(ok.len(), 7);
    let _ = TensorData::new(ok, [1, 7]);
}
