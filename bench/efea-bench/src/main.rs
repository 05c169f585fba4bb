//! Benchmarks of the EFEA-MSM network (MODEL.md) on Burn's CPU backend `flex` (or, for
//! `train` and `infer`, any `--device` that efea names, e.g. `wgpu` or `tch:cuda:0` in a build
//! with that feature; `bench/gpu/run.sh`), one
//! measurement per process so that peak memory belongs to one contender. `bench/run.sh` drives
//! it side by side with the PyTorch reference (`bench/bench_torch.py`); every subcommand prints
//! one JSON object on stdout.
//!
//! ```text
//! efea-bench train --preset full --size 48 --batch 64 --warmup 1 --steps 5 [--min-seconds 10]
//! efea-bench infer --preset full --size 48 --batch 1  --warmup 5 --steps 50 [--min-seconds 5]
//!                  [--engine burn|compiled]   # compiled: `EfeaNet::compile()` (CPU only)
//! efea-bench gemm                      # 1x1 convolutions vs a plain matmul of the same shapes
//! efea-bench ops                       # the hot operations of a training step, one by one
//! efea-bench layers --batch 1          # eval-mode forward time of each part of the network
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::{log_softmax, relu6};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Int, Tensor};
use efea_model::layers::{Activation, BatchNorm, BatchNormConfig, conv_forward};
use efea_model::{EfeaNet, EfeaNetConfig, Preset, kernels};
use serde_json::{Value, json};

/// mimalloc keeps freed pages for reuse: glibc returns every large tensor buffer to the kernel
/// and faults it in again, zeroed, on the next allocation (a tenth of a training step on
/// `flex`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Learning rate and momentum of the benchmark step (the values only need to be plausible: the
/// cost of a step does not depend on them).
const LEARNING_RATE: f64 = 0.01;
const MOMENTUM: f64 = 0.9;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: efea-bench train|infer|gemm|ops [--key value ...]");
        return ExitCode::FAILURE;
    };
    let options = match parse_options(rest) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("efea-bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    if command == "train" {
        // As `efea train` runs: its main thread computes as one of the pool's threads.
        kernels::join_global_pool();
    }
    let result = match command.as_str() {
        "train" => train(&options),
        "infer" => infer(&options),
        "gemm" => gemm_efficiency(&options),
        "ops" => ops(&options),
        "layers" => layers(&options),
        other => Err(format!("unknown command `{other}`")),
    };
    match result {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("efea-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--key value` pairs.
struct Options(HashMap<String, String>);

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut map = HashMap::new();
    let mut iter = args.iter();
    while let Some(key) = iter.next() {
        let key = key
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --key, got `{key}`"))?;
        let value = iter
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        map.insert(key.to_string(), value.clone());
    }
    Ok(Options(map))
}

impl Options {
    fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| format!("--{key}: cannot parse `{raw}`")),
        }
    }

    /// `--device` (default `cpu`), named as `efea --device` names it.
    fn device(&self) -> Result<(String, Device), String> {
        let name: String = self.get("device", "cpu".to_string())?;
        let device = efea_model::device::parse_device(&name).map_err(|e| e.to_string())?;
        Ok((name, device))
    }

    fn model_config(&self) -> Result<EfeaNetConfig, String> {
        let preset: Preset = self.get("preset", "full".to_string())?.parse()?;
        let size: usize = self.get("size", 48)?;
        Ok(EfeaNetConfig::preset(preset).with_input_size(size))
    }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs `step` `warmup` times untimed, then at least `steps` times and for at least
/// `min_seconds`; returns (timed steps, seconds).
fn timed(warmup: usize, steps: usize, min_seconds: f64, mut step: impl FnMut()) -> (usize, f64) {
    for _ in 0..warmup {
        step();
    }
    let start = Instant::now();
    let mut done = 0;
    while done < steps.max(1) || start.elapsed().as_secs_f64() < min_seconds {
        step();
        done += 1;
    }
    (done, start.elapsed().as_secs_f64())
}

fn random_input(config: &EfeaNetConfig, batch: usize, device: &Device) -> Tensor<4> {
    let s = config.input_size;
    Tensor::random(
        [batch, config.in_channels, s, s],
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

/// Mean cross-entropy of `logits` against class indices, as PyTorch's `F.cross_entropy`.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1]));
    picked.mean().neg()
}

/// One SGD step (momentum 0.9, dampening 0 as PyTorch) on a random batch, repeated: images/s.
fn train(options: &Options) -> Result<Value, String> {
    let config = options.model_config()?;
    let batch: usize = options.get("batch", 64)?;
    let warmup: usize = options.get("warmup", 1)?;
    let steps: usize = options.get("steps", 3)?;
    let min_seconds: f64 = options.get("min-seconds", 0.0)?;
    let (device_name, device) = options.device()?;
    let device = device.autodiff();
    let mut model: Option<EfeaNet> = Some(config.init(&device));
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(MOMENTUM)
                .with_dampening(0.0),
        ))
        .init();
    let input = random_input(&config, batch, &device);
    let labels_host: Vec<i64> = (0..batch as i64)
        .map(|i| i % config.num_classes as i64)
        .collect();
    let labels = Tensor::<1, Int>::from_data(labels_host.as_slice(), &device);
    let (done, seconds) = timed(warmup, steps, min_seconds, || {
        let current = model
            .take()
            .expect("the model is put back after every step");
        let loss = cross_entropy(current.forward(input.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &current);
        let next = optimizer.step(LEARNING_RATE, current, grads);
        // Reading a value back forces every lazy computation of the step to finish.
        let _ = next.classifier.weight.val().sum().into_scalar::<f32>();
        model = Some(next);
    });
    Ok(json!({
        "contender": "efea",
        "task": "train",
        "device": device_name,
        "preset": config.preset_name().map(|p| p.name()),
        "size": config.input_size,
        "batch": batch,
        "steps": done,
        "seconds": seconds,
        "img_s": (done * batch) as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// Eval-mode forward passes on one random batch, repeated: latency and images/s.
fn infer(options: &Options) -> Result<Value, String> {
    let config = options.model_config()?;
    let batch: usize = options.get("batch", 1)?;
    let warmup: usize = options.get("warmup", 3)?;
    let steps: usize = options.get("steps", 20)?;
    let min_seconds: f64 = options.get("min-seconds", 0.0)?;
    let engine: String = options.get("engine", "burn".to_string())?;
    let (device_name, device) = options.device()?;
    let model = config.init(&device).valid();
    let input = random_input(&config, batch, &device);
    let (done, seconds) = match engine.as_str() {
        "burn" => timed(warmup, steps, min_seconds, || {
            let logits = model.forward(input.clone());
            let _ = logits.into_data();
        }),
        "compiled" => {
            let compiled = model.compile().map_err(|e| e.to_string())?;
            let pixels = kernels::host(input);
            let size = config.input_size;
            timed(warmup, steps, min_seconds, || {
                let logits = compiled.forward(&pixels, batch, size, size);
                std::hint::black_box(logits);
            })
        }
        other => {
            return Err(format!(
                "--engine: expected burn or compiled, got `{other}`"
            ));
        }
    };
    Ok(json!({
        "contender": "efea",
        "task": "infer",
        "engine": engine,
        "device": device_name,
        "preset": config.preset_name().map(|p| p.name()),
        "size": config.input_size,
        "batch": batch,
        "steps": done,
        "seconds": seconds,
        "ms": 1000.0 * seconds / done as f64,
        "img_s": (done * batch) as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// Eval-mode forward time of each part of the network (stem, each block with its CDSM
/// separately, last conv, MSCA, head) on one random batch, in ms, and their sum.
fn layers(options: &Options) -> Result<Value, String> {
    let config = options.model_config()?;
    let batch: usize = options.get("batch", 1)?;
    let repeats: usize = options.get("repeats", 20)?;
    let device = Device::flex();
    let model = config.init(&device);
    let mut x = random_input(&config, batch, &device);
    let mut rows = Vec::new();
    let mut time = |name: String, f: &dyn Fn() -> Tensor<4>| {
        let ms = 1000.0 * seconds_per_call(repeats, || drop(f()));
        rows.push(json!({"part": name, "ms": ms}));
        f()
    };
    let input = x.clone();
    x = time("stem".into(), &|| model.stem.forward(input.clone()));
    let mut taps = Vec::new();
    for (i, block) in model.blocks.iter().enumerate() {
        let input = x.clone();
        let dims = input.dims();
        let body = time(format!("block {} {dims:?}", i + 1), &|| {
            let mut out = input.clone();
            if let Some(expand) = &block.expand {
                out = expand.forward(out);
            }
            out = block.depthwise.forward(out);
            efea_model::layers::conv_bn_act(
                &block.project,
                &block.project_bn,
                Activation::Identity,
                out,
            )
        });
        let out = match &block.cdsm {
            Some(cdsm) => time(format!("cdsm {}", i + 1), &|| cdsm.forward(body.clone())),
            None => body,
        };
        x = if block.residual { out + input } else { out };
        if model.taps.contains(&(i + 1)) {
            taps.push(x.clone());
        }
    }
    let input = x.clone();
    let last = time("last".into(), &|| model.last.forward(input.clone()));
    if let (Some(msca), [p3, p5, p7]) = (&model.msca, taps.as_slice()) {
        let ms = 1000.0
            * seconds_per_call(repeats, || {
                drop(msca.forward(p3.clone(), p5.clone(), p7.clone()))
            });
        rows.push(json!({"part": "msca", "ms": ms}));
    }
    let features = model.forward_features(random_input(&config, batch, &device));
    let head_ms = 1000.0
        * seconds_per_call(repeats, || {
            let _ = model.forward_head(efea_model::FeatureMaps {
                last: last.clone(),
                taps: features.taps.clone(),
            });
        });
    rows.push(json!({"part": "head (incl. msca)", "ms": head_ms}));
    let input = random_input(&config, batch, &device);
    let whole = 1000.0 * seconds_per_call(repeats, || drop(model.forward(input.clone())));
    Ok(json!({"batch": batch, "whole_ms": whole, "parts": rows}))
}

/// Seconds per call of `f`, the best of a few timed runs after one untimed call.
fn seconds_per_call(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..repeats {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64() / repeats as f64);
    }
    best
}

/// The 1x1 convolutions of the default network at 48x48, batch 64, against a plain matmul of
/// the same `[C_out, C_in] x [C_in, N*H*W]` shape on the same backend: forward GFLOP/s of Burn's
/// `conv2d`, of the model's pointwise kernel (`efea_model::kernels::pointwise_conv2d`, one
/// batched matmul) and of the matmul, and the kernel's fraction of the matmul's rate.
fn gemm_efficiency(options: &Options) -> Result<Value, String> {
    let batch: usize = options.get("batch", 64)?;
    let device = Device::flex();
    // (C_in, C_out, H = W) of representative pointwise convolutions of the 48x48 network.
    let shapes: [(usize, usize, usize); 7] = [
        (16, 96, 48),
        (96, 24, 24),
        (24, 144, 24),
        (144, 32, 12),
        (192, 64, 6),
        (384, 96, 6),
        (320, 1280, 3),
    ];
    let mut rows = Vec::new();
    for (c_in, c_out, hw) in shapes {
        let x = Tensor::<4>::random([batch, c_in, hw, hw], Distribution::Default, &device);
        let w = Tensor::<4>::random([c_out, c_in, 1, 1], Distribution::Default, &device);
        let flops = 2.0 * (batch * hw * hw * c_in * c_out) as f64;
        let repeats = (2e9 / flops).clamp(1.0, 50.0) as usize;
        let conv = seconds_per_call(repeats, || {
            let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
            let _ = conv2d(x.clone(), w.clone(), None, options).into_data();
        });
        let pointwise = seconds_per_call(repeats, || {
            let y = kernels::pointwise_conv2d(x.clone(), w.clone(), None)
                .expect("a flex tensor routes to the kernel");
            let _ = y.into_data();
        });
        let a = Tensor::<2>::random([c_out, c_in], Distribution::Default, &device);
        let b = Tensor::<2>::random([c_in, batch * hw * hw], Distribution::Default, &device);
        let matmul = seconds_per_call(repeats, || {
            let _ = a.clone().matmul(b.clone()).into_data();
        });
        rows.push(json!({
            "c_in": c_in, "c_out": c_out, "hw": hw, "batch": batch,
            "burn_conv2d_gflops": flops / conv / 1e9,
            "pointwise_gflops": flops / pointwise / 1e9,
            "matmul_gflops": flops / matmul / 1e9,
            "pointwise_fraction": matmul / pointwise,
            "burn_conv2d_fraction": matmul / conv,
        }));
    }
    Ok(json!({ "contender": "efea", "task": "gemm", "rows": rows }))
}

/// The operations BURN_NOTES names as hot, forward + backward on the autodiff device, in ms:
/// Burn's own operations (`plain`) and the fused kernels of `efea_model::kernels` (`fused`).
fn ops(options: &Options) -> Result<Value, String> {
    let batch: usize = options.get("batch", 64)?;
    let repeats: usize = options.get("repeats", 3)?;
    let device = Device::flex().autodiff();
    let x =
        Tensor::<4>::random([batch, 144, 24, 24], Distribution::Default, &device).require_grad();
    let fwd_bwd = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        seconds_per_call(repeats, || {
            let grads = f(x.clone()).sum().backward();
            let _ = x.grad(&grads).map(|g| g.into_data());
        }) * 1e3
    };
    let bn: BatchNorm = BatchNormConfig::new(144).init(&device);
    let dw = Conv2dConfig::new([144, 144], [3, 3])
        .with_groups(144)
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    let pw = Conv2dConfig::new([144, 32], [1, 1])
        .with_bias(false)
        .init(&device);
    let dw_forward = |fused: bool| {
        seconds_per_call(repeats, || {
            let x = x.clone().detach();
            let y = if fused {
                conv_forward(&dw, x)
            } else {
                dw.forward(x)
            };
            let _ = y.into_data();
        }) * 1e3
    };
    Ok(json!({
        "contender": "efea",
        "task": "ops",
        "shape": [batch, 144, 24, 24],
        "bn_relu6_fwd_bwd_ms": {
            "plain": fwd_bwd(&|x| relu6(bn.forward(x))),
            "fused": fwd_bwd(&|x| bn.forward_act(x, Activation::Relu6)),
        },
        "depthwise3x3_fwd_ms": { "plain": dw_forward(false), "fused": dw_forward(true) },
        "depthwise3x3_fwd_bwd_ms": {
            "plain": fwd_bwd(&|x| dw.forward(x)),
            "fused": fwd_bwd(&|x| conv_forward(&dw, x)),
        },
        "pointwise_144_32_fwd_bwd_ms": {
            "plain": fwd_bwd(&|x| pw.forward(x)),
            "fused": fwd_bwd(&|x| conv_forward(&pw, x)),
        },
    }))
}
