//! The inverted residual block of MobileNetV2, with MODEL.md's optional CDSM after the
//! linear projection and before the residual add.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::attention::{Cdsm, CdsmConfig};
use crate::layers::{
    Activation, BatchNorm, BatchNormConfig, ConvBnAct, ConvBnActConfig, conv_bn_act, conv2d,
};

/// Configuration of [`InvertedResidual`].
#[derive(Config, Debug)]
pub struct InvertedResidualConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    #[config(default = 1)]
    pub stride: usize,
    /// `t`: the hidden width is `round(t * in_channels)`; no expand conv when 1.
    #[config(default = 6)]
    pub expansion: usize,
    /// Subspaces of the CDSM; `None` builds the block without one.
    #[config(default = "None")]
    pub cdsm_groups: Option<usize>,
}

impl InvertedResidualConfig {
    pub fn init(&self, device: &Device) -> InvertedResidual {
        let hidden = self.in_channels * self.expansion;
        let expand = (self.expansion != 1)
            .then(|| ConvBnActConfig::new(self.in_channels, hidden).init(device));
        InvertedResidual {
            expand,
            depthwise: ConvBnActConfig::new(hidden, hidden)
                .with_kernel_size(3)
                .with_stride(self.stride)
                .with_groups(hidden)
                .init(device),
            project: conv2d([hidden, self.out_channels], 1, 1, 1, false, device),
            project_bn: BatchNormConfig::new(self.out_channels).init(device),
            cdsm: self.cdsm_groups.map(|groups| {
                CdsmConfig::new(self.out_channels)
                    .with_groups(groups)
                    .init(device)
            }),
            residual: self.stride == 1 && self.in_channels == self.out_channels,
        }
    }
}

/// `[expand 1x1] -> depthwise 3x3 -> project 1x1 (linear) -> [CDSM] -> [+ input]`.
///
/// torchvision's keys are `conv.0 .. conv.3`; [`crate::weights`] maps them onto these names.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub expand: Option<ConvBnAct>,
    pub depthwise: ConvBnAct,
    pub project: Conv2d,
    pub project_bn: BatchNorm,
    pub cdsm: Option<Cdsm>,
    /// Stride 1 and as many channels out as in.
    #[module(skip)]
    pub residual: bool,
}

impl InvertedResidual {
    /// # Shapes
    /// `[N, C_in, H, W] -> [N, C_out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = x.clone();
        if let Some(expand) = &self.expand {
            out = expand.forward(out);
        }
        out = self.depthwise.forward(out);
        out = conv_bn_act(&self.project, &self.project_bn, Activation::Identity, out);
        if let Some(cdsm) = &self.cdsm {
            out = cdsm.forward(out);
        }
        if self.residual { out + x } else { out }
    }
}
