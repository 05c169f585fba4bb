//! Inference: the convolution with its batch norm folded in, then the activation; ULSAM in one
//! pass.

use burn::backend::Flex;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::tensor::Tensor;

use super::cpu::{self, Act, SubspaceEval};
use super::pointwise::pointwise_forward;
use super::{Route, contiguous, dims4, flex, from_flex, new_tensor, route, values};

/// The convolution of a conv + BN + activation unit, as [`conv_bn_act_eval`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

/// The running statistics and affine parameters of a batch norm.
#[derive(Debug, Clone)]
pub struct BnParams {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub mean: Tensor<1>,
    pub variance: Tensor<1>,
    pub epsilon: f64,
}

/// An eval-mode batch norm after a convolution with `bias`, as `y * scale + shift` per output
/// channel of the convolution without its bias: `scale = gamma / sqrt(var + eps)`,
/// `shift = (bias - mean) * scale + beta`.
pub fn fold_batch_norm(bn: BnParams, bias: Option<Tensor<1>>) -> (Vec<f32>, Vec<f32>) {
    let (gamma, beta) = (host(bn.gamma), host(bn.beta));
    let (mean, var) = (host(bn.mean), host(bn.variance));
    let bias = bias.map(host);
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + bn.epsilon as f32).sqrt())
        .collect();
    let shift = (0..scale.len())
        .map(|c| (bias.as_ref().map_or(0.0, |b| b[c]) - mean[c]) * scale[c] + beta[c])
        .collect();
    (scale, shift)
}

/// A tensor's values on the host, as `f32`.
pub fn host<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// `act(BN(conv(x)))` in eval mode with the batch norm folded into a per-channel scale and
/// shift of the convolution's output (`y = conv(x) * s + (b - mean) * s + beta`,
/// `s = gamma / sqrt(var + eps)`), applied in place with the activation; `None` unless `x`
/// routes to [`Route::Flex`].
///
/// # Shapes
/// `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in / groups, k, k]` -> `[N, C_out, H', W']`
pub fn conv_bn_act_eval(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    geometry: ConvGeometry,
    bn: BnParams,
    act: Act,
) -> Option<Tensor<4>> {
    if route(&x) != Route::Flex {
        return None;
    }
    let x = contiguous(flex(x));
    let w = contiguous(flex(weight));
    let [c_out, _, k, _] = dims4(&w);
    // The batch norm scales each output channel: applied to the convolution's output rather
    // than to a copy of the weights, which at batch 1 costs more than the convolution itself.
    let (scale, shift) = fold_batch_norm(bn, bias);
    let n = dims4(&x)[0];
    let mut y = if k == 1 && geometry.stride == 1 && geometry.padding == 0 && geometry.groups == 1 {
        pointwise_forward(&x, &w, None)
    } else {
        // Flex's own convolution; its depthwise fast path is a direct convolution.
        let options = ConvOptions::new(
            [geometry.stride; 2],
            [geometry.padding; 2],
            [1, 1],
            geometry.groups,
        );
        contiguous(Flex::conv2d(x, w, None, options))
    };
    let [_, _, oh, ow] = dims4(&y);
    let plane = oh * ow;
    let apply = |out: &mut [f32]| cpu::scale_bias_act_in_place(out, plane, &scale, &shift, act);
    let dense = y.layout().contiguous_offsets() == Some((0, n * c_out * plane));
    match y.try_storage_mut::<f32>() {
        Some(out) if dense && out.len() == n * c_out * plane => apply(out),
        _ => {
            let mut owned = values(&y).to_vec();
            apply(&mut owned);
            y = new_tensor(owned, &[n, c_out, oh, ow]);
        }
    }
    Some(from_flex(y))
}

/// ULSAM in eval mode by [`cpu::subspace_eval_forward`]; `None` unless `x` routes to
/// [`Route::Flex`].
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H, W]`, `C = groups.len() * groups[i].scale.len()`
pub fn subspace_attention_eval(x: Tensor<4>, groups: &[SubspaceEval]) -> Option<Tensor<4>> {
    if route(&x) != Route::Flex {
        return None;
    }
    let x = contiguous(flex(x));
    let [n, c, h, w] = dims4(&x);
    let y = cpu::subspace_eval_forward(values(&x), h, w, groups);
    Some(from_flex(new_tensor(y, &[n, c, h, w])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, random};
    use burn::tensor::Device;
    use burn::tensor::activation::relu6;
    use burn::tensor::module::conv2d;

    #[test]
    fn folded_inference_equals_conv_then_batch_norm() {
        let device = Device::flex();
        // (C_in, C_out, k, stride, pad, groups)
        for (c_in, c_out, k, stride, pad, groups) in [
            (3, 8, 3, 2, 1, 1),
            (8, 8, 3, 1, 1, 8),
            (8, 8, 3, 2, 1, 8),
            (8, 12, 1, 1, 0, 1),
            (2, 1, 7, 1, 3, 1),
        ] {
            let x = random([2, c_in, 10, 10], &device);
            let w = random([c_out, c_in / groups, k, k], &device);
            let b = random([c_out], &device);
            let bn = BnParams {
                gamma: random([c_out], &device),
                beta: random([c_out], &device),
                mean: random([c_out], &device),
                variance: random([c_out], &device).abs().add_scalar(0.1),
                epsilon: 1e-5,
            };
            for act in [Act::Identity, Act::Relu6] {
                let geometry = ConvGeometry {
                    stride,
                    padding: pad,
                    groups,
                };
                let fused = conv_bn_act_eval(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    geometry,
                    bn.clone(),
                    act,
                )
                .expect("flex routes");
                let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], groups);
                let plain = burn::tensor::module::batch_norm(
                    conv2d(x.clone(), w.clone(), Some(b.clone()), options),
                    bn.gamma.clone(),
                    bn.beta.clone(),
                    bn.mean.clone(),
                    bn.variance.clone(),
                    1e-5,
                );
                let plain = if act == Act::Relu6 {
                    relu6(plain)
                } else {
                    plain
                };
                assert_close(&fused, &plain, "folded conv + bn");
            }
        }
    }
}
