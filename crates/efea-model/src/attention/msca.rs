//! The multi-scale channel aggregator of EFEA-MSM (MODEL.md "MSCA"): laterals on three
//! backbone taps, fused deepest first by attentional feature fusion (Dai et al., "Attentional
//! Feature Fusion", WACV 2021, with its multi-scale channel attention module MS-CAM).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use crate::layers::{
    Activation, BatchNorm, BatchNormConfig, ConvBnAct, ConvBnActConfig, conv_bn_act, conv2d,
};

/// Configuration of [`Msca`].
#[derive(Config, Debug)]
pub struct MscaConfig {
    /// Channels of the taps P3, P5, P7, shallowest first.
    pub tap_channels: [usize; 3],
    /// `D`, the common width (MODEL.md `msca_channels`).
    #[config(default = 128)]
    pub channels: usize,
    /// `r`, the bottleneck reduction of each AFF.
    #[config(default = 4)]
    pub reduction: usize,
}

impl MscaConfig {
    pub fn init(&self, device: &Device) -> Msca {
        let lateral = self
            .tap_channels
            .iter()
            .map(|&c| {
                ConvBnActConfig::new(c, self.channels)
                    .with_activation(Activation::Relu)
                    .init(device)
            })
            .collect();
        let aff = AffConfig::new(self.channels).with_reduction(self.reduction);
        Msca {
            lateral,
            fuse: vec![aff.init(device), aff.init(device)],
        }
    }
}

/// A lateral: conv1x1 (no bias) + BN + ReLU to `D` channels.
pub type Lateral = ConvBnAct;

#[derive(Module, Debug)]
pub struct Msca {
    /// Laterals for P3, P5, P7.
    pub lateral: Vec<Lateral>,
    /// `fuse[0] = AFF_1(P7, P5)`, `fuse[1] = AFF_2(fuse[0], P3)`.
    pub fuse: Vec<Aff>,
}

impl Msca {
    /// # Shapes
    /// taps `[N, C3, H3, W3]`, `[N, C5, H5, W5]`, `[N, C7, H7, W7]` -> `[N, D]`
    pub fn forward(&self, p3: Tensor<4>, p5: Tensor<4>, p7: Tensor<4>) -> Tensor<2> {
        let p7 = self.lateral[2].forward(p7);
        let [_, _, h, w] = p7.dims();
        // Lateral first, then resize to P7's grid (PyTorch's adaptive-pool bin rule).
        let p5 = adaptive_avg_pool2d(self.lateral[1].forward(p5), [h, w]);
        let p3 = adaptive_avg_pool2d(self.lateral[0].forward(p3), [h, w]);
        let fused = self.fuse[1].forward(self.fuse[0].forward(p7, p5), p3);
        global_avg_pool(fused)
    }
}

/// `[N, C, H, W] -> [N, C]`
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    adaptive_avg_pool2d(x, [1, 1]).reshape([n, c])
}

/// Configuration of [`Aff`].
#[derive(Config, Debug)]
pub struct AffConfig {
    pub channels: usize,
    #[config(default = 4)]
    pub reduction: usize,
}

impl AffConfig {
    pub fn init(&self, device: &Device) -> Aff {
        let hidden = (self.channels / self.reduction).max(1);
        let branch = || AttentionBranch {
            conv1: conv2d([self.channels, hidden], 1, 1, 1, true, device),
            bn1: BatchNormConfig::new(hidden).init(device),
            conv2: conv2d([hidden, self.channels], 1, 1, 1, true, device),
            bn2: BatchNormConfig::new(self.channels).init(device),
        };
        Aff {
            local_att: branch(),
            global_att: branch(),
        }
    }
}

/// `BN(conv1x1(ReLU(BN(conv1x1(z)))))`, the bottleneck of MS-CAM.
#[derive(Module, Debug)]
pub struct AttentionBranch {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
}

impl AttentionBranch {
    fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let hidden = conv_bn_act(&self.conv1, &self.bn1, Activation::Relu, z);
        conv_bn_act(&self.conv2, &self.bn2, Activation::Identity, hidden)
    }
}

/// Attentional feature fusion: `2 x w + 2 y (1 - w)`, `w = sigmoid(L(x + y) + G(x + y))`.
#[derive(Module, Debug)]
pub struct Aff {
    /// Per-position channel attention.
    pub local_att: AttentionBranch,
    /// Channel attention of the globally pooled sum, broadcast over positions.
    pub global_att: AttentionBranch,
}

impl Aff {
    /// # Shapes
    /// `x`, `y`: `[N, D, H, W]` -> `[N, D, H, W]`
    pub fn forward(&self, x: Tensor<4>, y: Tensor<4>) -> Tensor<4> {
        let z = x.clone() + y.clone();
        let local = self.local_att.forward(z.clone());
        let global = self.global_att.forward(adaptive_avg_pool2d(z, [1, 1]));
        let w = sigmoid(local + global);
        let one_minus_w = w.clone().neg().add_scalar(1.0);
        (x * w).mul_scalar(2.0) + (y * one_minus_w).mul_scalar(2.0)
    }
}
