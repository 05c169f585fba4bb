//! Building blocks shared by the backbone and the attention modules: a batch norm with
//! PyTorch's semantics and the conv + BN + activation unit of torchvision's MobileNetV2.

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{relu, relu6};
use burn::tensor::{Device, Tensor};

use crate::kernels::{self, Act, BnParams, ConvGeometry, Route};

/// `nn.BatchNorm2d` exactly as PyTorch computes it.
///
/// Burn's `BatchNorm` feeds the biased batch variance into its running estimate; PyTorch
/// feeds the unbiased one (`n / (n - 1)` times larger). Checkpoints trained on either side
/// must mean the same thing, so this layer follows PyTorch. The struct is named `BatchNorm`
/// and its fields `gamma` / `beta` so that Burn's PyTorch adapter maps `weight` / `bias` onto
/// them.
#[derive(Module, Debug)]
pub struct BatchNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    /// Enabled: batch statistics on an autodiff device. Disabled by `valid()`, or explicitly
    /// (Grad-CAM differentiates the network in eval mode).
    pub training: Param<Flag>,
    pub momentum: f64,
    pub epsilon: f64,
}

/// Configuration of [`BatchNorm`]; the defaults are PyTorch's (MODEL.md: eps 1e-5, momentum 0.1).
#[derive(Config, Debug)]
pub struct BatchNormConfig {
    pub num_features: usize,
    #[config(default = 1e-5)]
    pub epsilon: f64,
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNormConfig {
    pub fn init(&self, device: &Device) -> BatchNorm {
        let n = self.num_features;
        BatchNorm {
            gamma: Initializer::Ones.init([n], device),
            beta: Initializer::Zeros.init([n], device),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            training: Param::from_bool(true),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

impl BatchNorm {
    /// # Shapes
    /// `[N, C, H, W] -> [N, C, H, W]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        if input.device().is_autodiff() && self.training.is_enabled() {
            self.forward_train(input)
        } else {
            self.forward_inference(input)
        }
    }

    fn forward_inference(&self, input: Tensor<4>) -> Tensor<4> {
        let device = input.device();
        burn::tensor::module::batch_norm(
            input,
            self.gamma.val(),
            self.beta.val(),
            self.running_mean.value().to_device(&device),
            self.running_var.value().to_device(&device),
            self.epsilon,
        )
    }

    fn forward_train(&self, input: Tensor<4>) -> Tensor<4> {
        let [n, _, h, w] = input.dims();
        let result = burn::tensor::module::batch_norm_train(
            input,
            self.gamma.val(),
            self.beta.val(),
            self.epsilon,
        );
        self.update_running(result.mean, result.variance, n * h * w);
        result.output
    }

    /// Batch statistics on an autodiff device in training mode, else the running ones.
    fn uses_batch_stats(&self, input: &Tensor<4>) -> bool {
        input.device().is_autodiff() && self.training.is_enabled()
    }

    /// `activation(self.forward(input))`, fused into one kernel (forward and backward) where
    /// the backend allows it.
    pub fn forward_act(&self, input: Tensor<4>, activation: Activation) -> Tensor<4> {
        if self.uses_batch_stats(&input) && kernels::route(&input) == Route::AutodiffFlex {
            let [n, _, h, w] = input.dims();
            let fused = kernels::batch_norm_act_train(
                input,
                self.gamma.val(),
                self.beta.val(),
                self.epsilon,
                activation.into(),
            )
            .expect("an autodiff flex tensor routes to the fused kernel");
            self.update_running(fused.mean, fused.variance, n * h * w);
            return fused.output;
        }
        activation.apply(self.forward(input))
    }

    /// PyTorch's running estimates: `running = (1 - momentum) running + momentum batch`, with
    /// the unbiased batch variance.
    fn update_running(&self, mean: Tensor<1>, variance: Tensor<1>, count: usize) {
        let count = count as f64;
        // PyTorch's running variance uses Bessel's correction; a single value has none.
        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let device = mean.device();
        let momentum = self.momentum;
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        let running_mean = running_mean
            .mul_scalar(1.0 - momentum)
            .add(mean.detach().mul_scalar(momentum));
        let running_var = running_var
            .mul_scalar(1.0 - momentum)
            .add(variance.detach().mul_scalar(momentum * unbiased));
        self.running_mean.update(running_mean.detach());
        self.running_var.update(running_var.detach());
    }

    /// The running statistics and affine parameters, on `device`.
    pub(crate) fn eval_params(&self, device: &Device) -> BnParams {
        BnParams {
            gamma: self.gamma.val(),
            beta: self.beta.val(),
            mean: self.running_mean.value().to_device(device),
            variance: self.running_var.value().to_device(device),
            epsilon: self.epsilon,
        }
    }

    /// Switch batch statistics off (or back on) while keeping the device as it is.
    pub fn with_training(mut self, enabled: bool) -> Self {
        self.training = self.training.with_value(enabled);
        self
    }
}

/// The non-linearity after a convolution's batch norm.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `min(max(x, 0), 6)`, MobileNetV2's activation.
    Relu6,
    Relu,
    /// Linear: MobileNetV2's projection and the attention branches' last BN.
    Identity,
}

impl From<Activation> for Act {
    fn from(activation: Activation) -> Self {
        match activation {
            Activation::Relu6 => Act::Relu6,
            Activation::Relu => Act::Relu,
            Activation::Identity => Act::Identity,
        }
    }
}

impl Activation {
    pub fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Activation::Relu6 => relu6(x),
            Activation::Relu => relu(x),
            Activation::Identity => x,
        }
    }
}

/// Conv -> BN -> activation, torchvision's `Conv2dNormActivation` (keys `N.0`, `N.1`).
#[derive(Module, Debug)]
pub struct ConvBnAct {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    #[module(skip)]
    pub activation: Activation,
}

/// Configuration of [`ConvBnAct`]. The convolution has no bias (the BN's beta is one).
#[derive(Config, Debug)]
pub struct ConvBnActConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    #[config(default = 1)]
    pub kernel_size: usize,
    #[config(default = 1)]
    pub stride: usize,
    #[config(default = 1)]
    pub groups: usize,
    #[config(default = "Activation::Relu6")]
    pub activation: Activation,
}

impl ConvBnActConfig {
    pub fn init(&self, device: &Device) -> ConvBnAct {
        ConvBnAct {
            conv: conv2d(
                [self.in_channels, self.out_channels],
                self.kernel_size,
                self.stride,
                self.groups,
                false,
                device,
            ),
            bn: BatchNormConfig::new(self.out_channels).init(device),
            activation: self.activation,
        }
    }
}

impl ConvBnAct {
    /// # Shapes
    /// `[N, C_in, H, W] -> [N, C_out, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn_act(&self.conv, &self.bn, self.activation, x)
    }
}

/// `activation(bn(conv(x)))`, by the fused kernels of [`crate::kernels`] where the backend
/// allows: in training, the convolution (1x1 and depthwise) and the batch norm + activation
/// each as one operation with its own backward pass; in inference, one convolution with the
/// batch norm folded into it. Elsewhere, Burn's own operations.
///
/// # Shapes
/// `[N, C_in, H, W] -> [N, C_out, H', W']`
pub fn conv_bn_act(
    conv: &Conv2d,
    bn: &BatchNorm,
    activation: Activation,
    x: Tensor<4>,
) -> Tensor<4> {
    if bn.uses_batch_stats(&x) {
        return bn.forward_act(conv_forward(conv, x), activation);
    }
    if kernels::route(&x) == Route::Flex
        && let Some(geometry) = square_geometry(conv)
    {
        let params = bn.eval_params(&x.device());
        return kernels::conv_bn_act_eval(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            geometry,
            params,
            activation.into(),
        )
        .expect("a flex tensor routes to the folded kernel");
    }
    activation.apply(bn.forward(conv.forward(x)))
}

/// `conv.forward(x)`, by the kernels of [`crate::kernels`] for 1x1 and depthwise convolutions
/// on the CPU backend.
pub fn conv_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if let Some(g) = square_geometry(conv)
        && kernels::route(&x) != Route::Other
    {
        let [c_out, c_in_group, k, _] = conv.weight.dims();
        let c_in = c_in_group * g.groups;
        let bias = conv.bias.as_ref().map(|b| b.val());
        if k == 1 && g.stride == 1 && g.padding == 0 && g.groups == 1 {
            return kernels::pointwise_conv2d(x, conv.weight.val(), bias)
                .expect("routed to the kernels");
        }
        if g.groups == c_in && c_in == c_out {
            return kernels::depthwise_conv2d(x, conv.weight.val(), bias, g.stride, g.padding)
                .expect("routed to the kernels");
        }
    }
    conv.forward(x)
}

/// Stride, padding and groups of a square convolution with equal strides, symmetric explicit
/// padding and no dilation: the only kind the kernels take.
pub(crate) fn square_geometry(conv: &Conv2d) -> Option<ConvGeometry> {
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
        PaddingConfig2d::Valid => 0,
        _ => return None,
    };
    (kh == kw && sh == sw && conv.dilation == [1, 1]).then_some(ConvGeometry {
        stride: sh,
        padding,
        groups: conv.groups,
    })
}

/// A square convolution with PyTorch's `padding = k / 2` and torchvision's MobileNetV2 init:
/// `kaiming_normal_(mode="fan_out")` for the weight, zeros for the bias.
pub fn conv2d(
    channels: [usize; 2],
    kernel_size: usize,
    stride: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let pad = kernel_size / 2;
    // PyTorch's fan_out of a [out, in / groups, k, k] weight is out * k * k, whatever the
    // groups (Burn's Kaiming divides by groups, which would widen depthwise inits 3x).
    let fan_out = channels[1] * kernel_size * kernel_size;
    let mut conv = Conv2dConfig::new(channels, [kernel_size, kernel_size])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: (2.0 / fan_out as f64).sqrt(),
        })
        .init(device);
    conv.bias = conv
        .bias
        .map(|_| Param::from_tensor(Tensor::zeros([channels[1]], device)));
    conv
}

/// torchvision's Linear init for MobileNetV2: weight ~ N(0, 0.01), bias 0.
pub fn linear(d_input: usize, d_output: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        })
        .init(device);
    linear.bias = linear
        .bias
        .map(|_| Param::from_tensor(Tensor::zeros([d_output], device)));
    linear
}
