//! Triplet attention (Misra et al., "Rotate to Attend", WACV 2021), as MODEL.md's `T(x)`:
//! three gates that let (channel, width), (height, channel) and (height, width) interact.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use crate::kernels::{self, Axis, Route};
use crate::layers::{Activation, BatchNorm, BatchNormConfig, conv_bn_act, conv2d};

/// Kernel of each gate's 2 -> 1 convolution (MODEL.md: 7x7, pad 3).
const GATE_KERNEL: usize = 7;

/// `G(y) = y * sigmoid(BN(conv7x7(ZPool(y))))`.
#[derive(Module, Debug)]
pub struct AttentionGate {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl AttentionGate {
    fn new(device: &Device) -> Self {
        Self {
            conv: conv2d([2, 1], GATE_KERNEL, 1, 1, false, device),
            bn: BatchNormConfig::new(1).init(device),
        }
    }

    /// # Shapes
    /// `[N, C, H, W] -> [N, C, H, W]`; the gate itself is `[N, 1, H, W]`.
    pub fn forward(&self, y: Tensor<4>) -> Tensor<4> {
        // ZPool: channel 0 is the max over dim 1, channel 1 the mean.
        let pooled = Tensor::cat(vec![y.clone().max_dim(1), y.clone().mean_dim(1)], 1);
        y * self.gate(pooled)
    }

    /// `sigmoid(BN(conv7x7(pooled)))`, `[N, 2, A, B] -> [N, 1, A, B]`.
    fn gate(&self, pooled: Tensor<4>) -> Tensor<4> {
        sigmoid(conv_bn_act(
            &self.conv,
            &self.bn,
            Activation::Identity,
            pooled,
        ))
    }
}

/// Configuration of [`TripletAttention`]; it has no hyper-parameters of its own.
#[derive(Config, Debug)]
pub struct TripletAttentionConfig {}

impl TripletAttentionConfig {
    pub fn init(&self, device: &Device) -> TripletAttention {
        TripletAttention {
            cw: AttentionGate::new(device),
            hc: AttentionGate::new(device),
            hw: AttentionGate::new(device),
        }
    }
}

/// `T(x) = (b1 + b2 + b3) / 3`.
#[derive(Module, Debug)]
pub struct TripletAttention {
    /// Channels x width: applied to `x.permute(0, 2, 1, 3)`.
    pub cw: AttentionGate,
    /// Height x channels: applied to `x.permute(0, 3, 2, 1)`.
    pub hc: AttentionGate,
    /// The spatial gate, applied to `x` itself.
    pub hw: AttentionGate,
}

impl TripletAttention {
    /// # Shapes
    /// `[N, C, H, W] -> [N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if kernels::route(&x) != Route::Other {
            // The same arithmetic without permuted copies: each ZPool reads NCHW directly and
            // one pass applies the three gates.
            let pooled = |axis| kernels::zpool(x.clone(), axis).expect("routed to the kernels");
            let g_cw = self.cw.gate(pooled(Axis::Height));
            let g_hc = self.hc.gate(pooled(Axis::Width));
            let g_hw = self.hw.gate(pooled(Axis::Channel));
            return kernels::triplet_combine(x, g_cw, g_hc, g_hw).expect("routed to the kernels");
        }
        // Both permutations are their own inverse.
        let b1 = self
            .cw
            .forward(x.clone().permute([0, 2, 1, 3]))
            .permute([0, 2, 1, 3]);
        let b2 = self
            .hc
            .forward(x.clone().permute([0, 3, 2, 1]))
            .permute([0, 3, 2, 1]);
        let b3 = self.hw.forward(x);
        (b1 + b2 + b3).div_scalar(3.0)
    }
}
