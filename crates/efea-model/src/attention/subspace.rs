//! Subspace attention (Saini et al., "ULSAM: Ultra-Lightweight Subspace Attention Module",
//! WACV 2020), as MODEL.md's `U(x)`: one spatial attention map per channel group.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::kernels::{self, Route, SubspaceEval};
use crate::layers::{Activation, BatchNorm, BatchNormConfig, conv_bn_act, conv2d};

/// The number of subspaces for `channels`: the largest divisor not above `requested`.
pub fn subspace_groups(channels: usize, requested: usize) -> usize {
    (1..=requested.max(1))
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .expect("1 divides every channel count")
}

/// Configuration of [`SubspaceAttention`].
#[derive(Config, Debug)]
pub struct SubspaceAttentionConfig {
    pub channels: usize,
    /// Requested number of subspaces (MODEL.md `cdsm_groups`).
    #[config(default = 4)]
    pub groups: usize,
}

impl SubspaceAttentionConfig {
    pub fn init(&self, device: &Device) -> SubspaceAttention {
        let groups = subspace_groups(self.channels, self.groups);
        let width = self.channels / groups;
        let groups = (0..groups)
            .map(|_| SubspaceGroup {
                dw: conv2d([width, width], 1, 1, width, true, device),
                dw_bn: BatchNormConfig::new(width).init(device),
                pw: conv2d([width, 1], 1, 1, 1, true, device),
                pw_bn: BatchNormConfig::new(1).init(device),
            })
            .collect();
        SubspaceAttention {
            groups,
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
        }
    }
}

/// One subspace: `y * softmax_hw(m) + y` with `m` from a depthwise and a pointwise conv.
#[derive(Module, Debug)]
pub struct SubspaceGroup {
    pub dw: Conv2d,
    pub dw_bn: BatchNorm,
    pub pw: Conv2d,
    pub pw_bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct SubspaceAttention {
    pub groups: Vec<SubspaceGroup>,
    pool: MaxPool2d,
}

impl SubspaceAttention {
    /// # Shapes
    /// `[N, C, H, W] -> [N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if kernels::route(&x) == Route::Flex {
            // Inference on the CPU: one fused pass ([`kernels::subspace_attention_eval`]).
            let params = self.eval_params(&x.device());
            return kernels::subspace_attention_eval(x, &params)
                .expect("a flex tensor routes to the kernel");
        }
        self.forward_ops(x)
    }

    /// [`Self::forward`] by Burn's tensor operations: the definition, and the path for
    /// training and other backends.
    pub fn forward_ops(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, channels, h, w] = x.dims();
        let width = channels / self.groups.len();
        let outputs = x
            .split(width, 1)
            .into_iter()
            .zip(&self.groups)
            .map(|(y, group)| {
                let a = conv_bn_act(&group.dw, &group.dw_bn, Activation::Relu, y.clone());
                let a = self.pool.forward(a);
                let m = conv_bn_act(&group.pw, &group.pw_bn, Activation::Relu, a);
                // Softmax over all H*W positions of each sample.
                let m = softmax(m.reshape([n, h * w]), 1).reshape([n, 1, h, w]);
                y.clone() * m + y
            })
            .collect();
        Tensor::cat(outputs, 1)
    }

    /// Each subspace's convolutions with their batch norms' running statistics folded in.
    pub(crate) fn eval_params(&self, device: &Device) -> Vec<SubspaceEval> {
        let bias = |conv: &Conv2d| conv.bias.as_ref().map(|b| b.val());
        self.groups
            .iter()
            .map(|group| {
                let (dw_scale, dw_shift) =
                    kernels::fold_batch_norm(group.dw_bn.eval_params(device), bias(&group.dw));
                let (pw_scale, pw_shift) =
                    kernels::fold_batch_norm(group.pw_bn.eval_params(device), bias(&group.pw));
                let dw_weight = kernels::host(group.dw.weight.val());
                let pw_weight = kernels::host(group.pw.weight.val());
                SubspaceEval {
                    scale: dw_weight
                        .iter()
                        .zip(&dw_scale)
                        .map(|(w, s)| w * s)
                        .collect(),
                    shift: dw_shift,
                    weight: pw_weight.iter().map(|w| w * pw_scale[0]).collect(),
                    bias: pw_shift[0],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Param, RunningState};
    use burn::tensor::{Distribution, Tolerance};

    fn random(n: usize, low: f64, high: f64, device: &Device) -> Tensor<1> {
        Tensor::random([n], Distribution::Uniform(low, high), device)
    }

    /// Trained-looking batch norms: every statistic and affine parameter away from its
    /// initial value, so that a wrongly folded one shows.
    fn perturb(bn: &mut BatchNorm, device: &Device) {
        let n = bn.gamma.dims()[0];
        bn.gamma = Param::from_tensor(random(n, 0.5, 1.5, device));
        bn.beta = Param::from_tensor(random(n, -0.5, 0.5, device));
        bn.running_mean = RunningState::new(random(n, -0.3, 0.3, device));
        bn.running_var = RunningState::new(random(n, 0.5, 2.0, device));
    }

    #[test]
    fn the_fused_eval_kernel_equals_the_tensor_operations() {
        let device = Device::flex();
        for (channels, h, w) in [(24, 7, 5), (64, 6, 6), (3, 1, 1)] {
            let mut attention = SubspaceAttentionConfig::new(channels).init(&device);
            for group in &mut attention.groups {
                perturb(&mut group.dw_bn, &device);
                perturb(&mut group.pw_bn, &device);
                let width = group.dw.weight.dims()[0];
                group.dw.bias = Some(Param::from_tensor(random(width, -0.2, 0.2, &device)));
                group.pw.bias = Some(Param::from_tensor(random(1, -0.2, 0.2, &device)));
            }
            let x =
                Tensor::<4>::random([2, channels, h, w], Distribution::Normal(0.0, 1.0), &device);
            let fused = attention.forward(x.clone());
            let ops = attention.forward_ops(x.clone());
            fused
                .to_data()
                .assert_approx_eq::<f32>(&ops.to_data(), Tolerance::absolute(1e-5));
            let changed: f32 = (fused - x).abs().max().into_scalar();
            assert!(
                changed > 1e-3,
                "the attention changed nothing ({channels} channels)"
            );
        }
    }
}
