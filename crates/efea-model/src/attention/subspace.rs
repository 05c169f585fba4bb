//! Subspace attention (Saini et al., "ULSAM: Ultra-Lightweight Subspace Attention Module",
//! WACV 2020), as MODEL.md's `U(x)`: one spatial attention map per channel group.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

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
}
