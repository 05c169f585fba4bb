//! Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
//! Gradient-based Localization"): the activations of one layer, weighted by the spatially
//! averaged gradient of a class score with respect to them, summed over channels and passed
//! through a ReLU. It shows where in the face the network found evidence for the class.
//!
//! The network runs in eval mode (running batch-norm statistics, no dropout) with gradients
//! tracked only from the target layer on: the activations there become a fresh autodiff leaf
//! and the layers before it run on the plain device, untracked.

use burn::module::{Flag, Module, ModuleMapper, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use efea_model::mini_xception::MiniXception;
use efea_model::{EfeaNet, FeatureMaps};

/// The default target: `features.18`, the last 1x1 convolution of the backbone (1280
/// channels), whose maps feed the global average pool.
pub const LAST_LAYER: usize = 18;

/// A class-activation map over the network's input, values in `[0, 1]` (all zero when no
/// location raises the class score).
#[derive(Debug, Clone, PartialEq)]
pub struct CamMap {
    /// The class whose evidence the map shows.
    pub class: usize,
    /// Width and height of the target layer's maps (coarser than the input).
    pub width: usize,
    pub height: usize,
    /// Row-major, `width * height` values.
    pub values: Vec<f32>,
}

/// Sets every module flag (batch-norm `training`, dropout `training`) to disabled, so a
/// network on an autodiff device still behaves as at inference.
#[derive(Debug)]
struct DisableFlags;

impl ModuleMapper for DisableFlags {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

/// `model` with batch statistics and dropout switched off whatever the device.
pub fn eval_mode(model: EfeaNet) -> EfeaNet {
    model.map(&mut DisableFlags)
}

/// Grad-CAM of `classes[i]` for input `i` of `input` (`[N, C, S, S]`, already preprocessed),
/// at `features.layer` (1..=17 are the inverted-residual blocks, 18 the last convolution).
///
/// # Panics
/// If `layer` is outside `1..=18` or `classes.len()` is not `N`.
pub fn grad_cam(model: &EfeaNet, input: Tensor<4>, classes: &[usize], layer: usize) -> Vec<CamMap> {
    assert!(
        (1..=LAST_LAYER).contains(&layer),
        "Grad-CAM layer must be features.1..=18, got {layer}"
    );
    let [n, ..] = input.dims();
    assert_eq!(classes.len(), n, "one class per input");
    if n == 0 {
        return Vec::new();
    }
    let model = eval_mode(model.clone());
    let (logits, activation) = forward_from_leaf(&model, input, layer);
    cam_of(logits, activation, classes)
}

/// Grad-CAM of fer's mini-XCEPTION at the output of its last residual module (128 maps of
/// 4x4 for a 64x64 input), the maps its class convolution reads.
///
/// # Panics
/// If `classes.len()` is not the batch size.
pub fn grad_cam_mini_xception(
    model: &MiniXception,
    input: Tensor<4>,
    classes: &[usize],
) -> Vec<CamMap> {
    let [n, ..] = input.dims();
    assert_eq!(classes.len(), n, "one class per input");
    if n == 0 {
        return Vec::new();
    }
    let activation = model.forward_features(input).autodiff().require_grad();
    let logits = model.forward_head(activation.clone());
    cam_of(logits, activation, classes)
}

/// The maps of `activation` weighted by the gradient of each input's class logit.
fn cam_of(logits: Tensor<2>, activation: Tensor<4>, classes: &[usize]) -> Vec<CamMap> {
    let device = logits.device();
    let [_, num_classes] = logits.dims();
    // The score is the sum of each input's own class logit (pre-softmax, as in the paper); in
    // eval mode the inputs do not interact, so one backward pass serves the whole batch.
    let score = logits.mul(one_hot(classes, num_classes, &device)).sum();
    let grads = score.backward();
    let gradient = activation
        .grad(&grads)
        .expect("the activation is a tracked leaf that the score depends on");
    let activation = activation.without_autodiff();
    // alpha_k^c: the gradient averaged over the map, one weight per channel.
    let weights = gradient.mean_dim(3).mean_dim(2);
    let cam = relu(activation.mul(weights).sum_dim(1));
    let [_, _, height, width] = cam.dims();
    let values = cam
        .into_data()
        .try_into_vec::<f32>()
        .expect("Grad-CAM maps are f32");
    values
        .chunks(width * height)
        .zip(classes)
        .map(|(map, &class)| CamMap {
            class,
            width,
            height,
            values: normalise(map),
        })
        .collect()
}

/// The network's forward pass with the output of `features.layer` turned into a tracked
/// leaf. Mirrors [`EfeaNet::forward_features`] block by block (a test checks the logits are
/// the same); the layers before the leaf run untracked.
fn forward_from_leaf(model: &EfeaNet, x: Tensor<4>, layer: usize) -> (Tensor<2>, Tensor<4>) {
    let leaf = |t: Tensor<4>| t.autodiff().require_grad();
    let mut activation = None;
    let mut x = model.stem.forward(x);
    let want_taps = model.msca.is_some();
    let mut taps = Vec::with_capacity(3);
    for (i, block) in model.blocks.iter().enumerate() {
        x = block.forward(x);
        if i + 1 == layer {
            x = leaf(x);
            activation = Some(x.clone());
        }
        if want_taps && model.taps.contains(&(i + 1)) {
            taps.push(x.clone());
        }
    }
    let mut last = model.last.forward(x);
    if layer == LAST_LAYER {
        last = leaf(last);
        activation = Some(last.clone());
    }
    let taps = want_taps.then(|| {
        taps.try_into()
            .expect("the three tap indices are distinct blocks of the plan")
    });
    let logits = model.forward_head(FeatureMaps { last, taps });
    (
        logits,
        activation.expect("layer was checked to be in 1..=18"),
    )
}

fn one_hot(classes: &[usize], num_classes: usize, device: &Device) -> Tensor<2> {
    let mut values = vec![0.0f32; classes.len() * num_classes];
    for (row, &class) in classes.iter().enumerate() {
        values[row * num_classes + class] = 1.0;
    }
    Tensor::from_data(
        TensorData::new(values, [classes.len(), num_classes]),
        device,
    )
}

/// Scales a map to `[0, 1]` by its maximum (ReLU already removed negatives).
fn normalise(map: &[f32]) -> Vec<f32> {
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 && max.is_finite() {
        map.iter().map(|v| v / max).collect()
    } else {
        vec![0.0; map.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use efea_model::EfeaNetConfig;

    fn small_model(device: &Device) -> EfeaNet {
        EfeaNetConfig::new()
            .with_width_mult(0.35)
            .init(device)
            .valid()
    }

    fn input(device: &Device, n: usize) -> Tensor<4> {
        let values: Vec<f32> = (0..n * 48 * 48)
            .map(|i| ((i * 7919 % 255) as f32 / 127.5) - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(values, [n, 1, 48, 48]), device)
    }

    #[test]
    fn the_split_forward_gives_the_logits_of_the_network() {
        let device = Device::flex();
        let model = small_model(&device);
        let x = input(&device, 2);
        let expected = model
            .forward(x.clone())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for layer in [5, LAST_LAYER] {
            let (logits, _) = forward_from_leaf(&model, x.clone(), layer);
            let got = logits
                .without_autodiff()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            for (a, b) in expected.iter().zip(&got) {
                assert!((a - b).abs() < 1e-5, "layer {layer}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn flags_are_disabled_even_on_a_training_network() {
        let device = Device::flex().autodiff();
        let model = EfeaNetConfig::new().with_width_mult(0.35).init(&device);
        assert!(model.stem.bn.training.is_enabled() && model.dropout.training.is_enabled());
        let model = eval_mode(model);
        assert!(!model.stem.bn.training.is_enabled());
        assert!(!model.last.bn.training.is_enabled());
        assert!(!model.dropout.training.is_enabled());
    }

    #[test]
    fn maps_have_the_layer_resolution_and_lie_in_zero_one() {
        let device = Device::flex();
        let model = small_model(&device);
        let maps = grad_cam(&model, input(&device, 2), &[3, 5], LAST_LAYER);
        assert_eq!(maps.len(), 2);
        // 48x48 input, stem stride 1, four stride-2 stages: 3x3 maps at features.18.
        assert_eq!((maps[0].width, maps[0].height), (3, 3));
        assert_eq!(maps[1].class, 5);
        for map in &maps {
            assert!(map.values.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        let early = grad_cam(&model, input(&device, 1), &[0], 3);
        assert_eq!((early[0].width, early[0].height), (24, 24));
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        // d(logit_c)/d(activation) from the leaf, against a central difference through the
        // same head: the autodiff path (mixed plain weights, autodiff leaf) is right.
        let device = Device::flex();
        let model = small_model(&device);
        let x = input(&device, 1);
        let features = model.forward_features(x);
        let class = 2;
        let last = features.last.clone().autodiff().require_grad();
        let logits = model.forward_head(FeatureMaps {
            last: last.clone(),
            taps: features.taps.clone(),
        });
        let grads = logits.mul(one_hot(&[class], 7, &device)).sum().backward();
        let gradient = last
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let base = features
            .last
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let dims = features.last.dims();
        let logit_at = |values: Vec<f32>| {
            let last = Tensor::from_data(TensorData::new(values, dims), &device);
            let logits = model.forward_head(FeatureMaps {
                last,
                taps: features.taps.clone(),
            });
            logits.into_data().try_into_vec::<f32>().unwrap()[class] as f64
        };
        let eps = 1e-2;
        for index in [0, 17, base.len() / 2, base.len() - 1] {
            let mut plus = base.clone();
            plus[index] += eps;
            let mut minus = base.clone();
            minus[index] -= eps;
            let numeric = (logit_at(plus) - logit_at(minus)) / (2.0 * eps as f64);
            let analytic = gradient[index] as f64;
            assert!(
                (numeric - analytic).abs() < 2e-5 + 1e-2 * analytic.abs(),
                "element {index}: numeric {numeric}, autodiff {analytic}"
            );
        }
    }

    /// fer's mini-XCEPTION: the maps equal `relu(sum_k alpha_k A_k)` with each channel's
    /// weight `alpha_k` found without autodiff. Its head (class convolution, global average
    /// pool) is linear in the maps, so adding `eps` to all of channel k's map moves the logit
    /// by exactly `eps * H * W * alpha_k`.
    #[test]
    fn mini_xception_maps_match_weights_from_finite_differences() {
        let device = Device::flex();
        let model = MiniXception::bundled(&device);
        let values: Vec<f32> = (0..2 * 64 * 64)
            .map(|i| ((i * 7919 % 255) as f32 / 127.5) - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, 1, 64, 64]), &device);
        let classes = [3, 6];
        let maps = grad_cam_mini_xception(&model, x.clone(), &classes);
        assert_eq!(maps.len(), 2);
        let features = model.forward_features(x);
        let dims @ [_, channels, height, width] = features.dims();
        assert_eq!((channels, height, width), (128, 4, 4));
        assert_eq!((maps[0].width, maps[0].height), (width, height));
        let base = features.into_data().try_into_vec::<f32>().unwrap();
        let logits = |values: Vec<f32>| {
            let features = Tensor::from_data(TensorData::new(values, dims), &device);
            let logits = model.forward_head(features);
            logits.into_data().try_into_vec::<f32>().unwrap()
        };
        let reference = logits(base.clone());
        let plane = height * width;
        let eps = 0.5;
        for (b, (map, &class)) in maps.iter().zip(&classes).enumerate() {
            assert_eq!(map.class, class);
            let mut expected = vec![0.0f64; plane];
            for k in 0..channels {
                let mut moved = base.clone();
                let at = (b * channels + k) * plane;
                moved[at..at + plane].iter_mut().for_each(|v| *v += eps);
                let delta = logits(moved)[b * 7 + class] - reference[b * 7 + class];
                let alpha = delta as f64 / (eps as f64 * plane as f64);
                for (e, a) in expected.iter_mut().zip(&base[at..at + plane]) {
                    *e += alpha * *a as f64;
                }
            }
            let expected: Vec<f32> = expected.iter().map(|v| v.max(0.0) as f32).collect();
            let expected = normalise(&expected);
            assert!(expected.iter().any(|v| *v > 0.0), "input {b}: an empty map");
            for (e, got) in expected.iter().zip(&map.values) {
                assert!((e - got).abs() < 2e-3, "input {b}: {e} vs {got}");
            }
        }
    }
}
