//! The three networks of MTCNN (Zhang et al., "Joint Face Detection and Alignment Using
//! Multitask Cascaded Convolutional Networks", 2016) exactly as facenet-pytorch 2.6.0 defines
//! them (`facenet_pytorch/models/mtcnn.py`): field names are its module names, so its state
//! dicts map onto these paths one to one (`reference/mtcnn_convert.py`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// `nn.Conv2d(in, out, kernel_size=k)`: stride 1, no padding, with bias.
fn conv(channels_in: usize, channels_out: usize, kernel: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel]).init(device)
}

/// `nn.PReLU(channels)`: one slope per channel.
fn prelu(channels: usize, device: &Device) -> PRelu {
    PReluConfig::new()
        .with_num_parameters(channels)
        .init(device)
}

/// `nn.MaxPool2d(kernel, stride, ceil_mode=True)`: a last, partial window is kept.
fn max_pool(kernel: usize, stride: usize) -> MaxPool2d {
    MaxPool2dConfig::new([kernel, kernel])
        .with_strides([stride, stride])
        .with_ceil_mode(true)
        .init()
}

/// facenet-pytorch's `x.permute(0, 3, 2, 1).contiguous().view(n, -1)` before the first dense
/// layer: the weights were ported from TensorFlow, which flattens `[N, H, W, C]`, and this
/// permutation (W and H swapped as well) is what makes them line up.
///
/// # Shapes
/// `[N, C, H, W] -> [N, W * H * C]`
fn flatten_like_facenet(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 3, 2, 1]).reshape([n, w * h * c])
}

/// P-Net's outputs: per 12x12 cell (stride 2), the box regression and the class
/// probabilities.
#[derive(Debug, Clone)]
pub struct PNetOutput {
    /// `[N, 4, H', W']`: x1, y1, x2, y2 offsets in units of the 12 px cell.
    pub reg: Tensor<4>,
    /// `[N, 2, H', W']`: softmax over (non-face, face).
    pub prob: Tensor<4>,
}

/// MTCNN's proposal network: fully convolutional, run on every level of the image pyramid.
#[derive(Module, Debug)]
pub struct PNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub conv4_1: Conv2d,
    pub conv4_2: Conv2d,
}

/// Configuration of [`PNet`]; the architecture is fixed.
#[derive(Config, Debug)]
pub struct PNetConfig {}

impl PNetConfig {
    pub fn init(&self, device: &Device) -> PNet {
        PNet {
            conv1: conv(3, 10, 3, device),
            prelu1: prelu(10, device),
            pool1: max_pool(2, 2),
            conv2: conv(10, 16, 3, device),
            prelu2: prelu(16, device),
            conv3: conv(16, 32, 3, device),
            prelu3: prelu(32, device),
            conv4_1: conv(32, 2, 1, device),
            conv4_2: conv(32, 4, 1, device),
        }
    }
}

impl PNet {
    /// # Shapes
    /// `[N, 3, H, W] -> reg [N, 4, H', W'], prob [N, 2, H', W']` with
    /// `H' = ceil((H - 2) / 2) - 4` (likewise `W'`); `H, W >= 12`.
    pub fn forward(&self, x: Tensor<4>) -> PNetOutput {
        let x = self
            .pool1
            .forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.prelu2.forward(self.conv2.forward(x));
        self.forward_head(self.prelu3.forward(self.conv3.forward(x)))
    }

    /// The two 1x1 heads on `prelu3`'s output (the detector runs the layers before them
    /// fused, see `fused.rs`).
    ///
    /// # Shapes
    /// `[N, 32, H', W'] -> reg [N, 4, H', W'], prob [N, 2, H', W']`
    pub fn forward_head(&self, x: Tensor<4>) -> PNetOutput {
        PNetOutput {
            reg: self.conv4_2.forward(x.clone()),
            prob: softmax(self.conv4_1.forward(x), 1),
        }
    }
}

/// R-Net's outputs per 24x24 crop.
#[derive(Debug, Clone)]
pub struct RNetOutput {
    /// `[N, 4]`: x1, y1, x2, y2 offsets relative to the crop's width and height.
    pub reg: Tensor<2>,
    /// `[N, 2]`: softmax over (non-face, face).
    pub prob: Tensor<2>,
}

/// MTCNN's refinement network, on 24x24 crops of P-Net's candidates.
#[derive(Module, Debug)]
pub struct RNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub dense4: Linear,
    pub prelu4: PRelu,
    pub dense5_1: Linear,
    pub dense5_2: Linear,
}

/// Configuration of [`RNet`]; the architecture is fixed.
#[derive(Config, Debug)]
pub struct RNetConfig {}

impl RNetConfig {
    pub fn init(&self, device: &Device) -> RNet {
        RNet {
            conv1: conv(3, 28, 3, device),
            prelu1: prelu(28, device),
            pool1: max_pool(3, 2),
            conv2: conv(28, 48, 3, device),
            prelu2: prelu(48, device),
            pool2: max_pool(3, 2),
            conv3: conv(48, 64, 2, device),
            prelu3: prelu(64, device),
            // 64 channels of 3x3.
            dense4: LinearConfig::new(576, 128).init(device),
            prelu4: prelu(128, device),
            dense5_1: LinearConfig::new(128, 2).init(device),
            dense5_2: LinearConfig::new(128, 4).init(device),
        }
    }
}

impl RNet {
    /// # Shapes
    /// `[N, 3, 24, 24] -> reg [N, 4], prob [N, 2]`
    pub fn forward(&self, x: Tensor<4>) -> RNetOutput {
        let x = self
            .pool1
            .forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self
            .pool2
            .forward(self.prelu2.forward(self.conv2.forward(x)));
        self.forward_head(self.prelu3.forward(self.conv3.forward(x)))
    }

    /// The dense layers on `prelu3`'s output (the detector runs the layers before them fused,
    /// see `fused.rs`).
    ///
    /// # Shapes
    /// `[N, 64, 3, 3] -> reg [N, 4], prob [N, 2]`
    pub fn forward_head(&self, x: Tensor<4>) -> RNetOutput {
        let x = self
            .prelu4
            .forward(self.dense4.forward(flatten_like_facenet(x)));
        RNetOutput {
            reg: self.dense5_2.forward(x.clone()),
            prob: softmax(self.dense5_1.forward(x), 1),
        }
    }
}

/// O-Net's outputs per 48x48 crop.
#[derive(Debug, Clone)]
pub struct ONetOutput {
    /// `[N, 4]`: x1, y1, x2, y2 offsets relative to the crop's width and height.
    pub reg: Tensor<2>,
    /// `[N, 10]`: five x then five y, as fractions of the crop's width and height.
    pub landmarks: Tensor<2>,
    /// `[N, 2]`: softmax over (non-face, face).
    pub prob: Tensor<2>,
}

/// MTCNN's output network, on 48x48 crops of R-Net's survivors; also gives five landmarks.
#[derive(Module, Debug)]
pub struct ONet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub pool3: MaxPool2d,
    pub conv4: Conv2d,
    pub prelu4: PRelu,
    pub dense5: Linear,
    pub prelu5: PRelu,
    pub dense6_1: Linear,
    pub dense6_2: Linear,
    pub dense6_3: Linear,
}

/// Configuration of [`ONet`]; the architecture is fixed.
#[derive(Config, Debug)]
pub struct ONetConfig {}

impl ONetConfig {
    pub fn init(&self, device: &Device) -> ONet {
        ONet {
            conv1: conv(3, 32, 3, device),
            prelu1: prelu(32, device),
            pool1: max_pool(3, 2),
            conv2: conv(32, 64, 3, device),
            prelu2: prelu(64, device),
            pool2: max_pool(3, 2),
            conv3: conv(64, 64, 3, device),
            prelu3: prelu(64, device),
            pool3: max_pool(2, 2),
            conv4: conv(64, 128, 2, device),
            prelu4: prelu(128, device),
            // 128 channels of 3x3.
            dense5: LinearConfig::new(1152, 256).init(device),
            prelu5: prelu(256, device),
            dense6_1: LinearConfig::new(256, 2).init(device),
            dense6_2: LinearConfig::new(256, 4).init(device),
            dense6_3: LinearConfig::new(256, 10).init(device),
        }
    }
}

impl ONet {
    /// # Shapes
    /// `[N, 3, 48, 48] -> reg [N, 4], landmarks [N, 10], prob [N, 2]`
    pub fn forward(&self, x: Tensor<4>) -> ONetOutput {
        let x = self
            .pool1
            .forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self
            .pool2
            .forward(self.prelu2.forward(self.conv2.forward(x)));
        self.forward_head(
            self.pool3
                .forward(self.prelu3.forward(self.conv3.forward(x))),
        )
    }

    /// `conv4` and the dense layers on `pool3`'s output (the detector runs the layers before
    /// them fused, see `fused.rs`; `conv4`'s 128 channels are more than a fused layer holds).
    ///
    /// # Shapes
    /// `[N, 64, 4, 4] -> reg [N, 4], landmarks [N, 10], prob [N, 2]`
    pub fn forward_head(&self, x: Tensor<4>) -> ONetOutput {
        let x = self.prelu4.forward(self.conv4.forward(x));
        let x = self
            .prelu5
            .forward(self.dense5.forward(flatten_like_facenet(x)));
        ONetOutput {
            reg: self.dense6_2.forward(x.clone()),
            landmarks: self.dense6_3.forward(x.clone()),
            prob: softmax(self.dense6_1.forward(x), 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let device = Device::flex();
        // 40x57: the ceil-mode pool keeps the last, partial window (38x55 -> 19x28).
        let p = PNetConfig::new()
            .init(&device)
            .forward(Tensor::zeros([2, 3, 40, 57], &device));
        assert_eq!(p.reg.dims(), [2, 4, 15, 24]);
        assert_eq!(p.prob.dims(), [2, 2, 15, 24]);
        let r = RNetConfig::new()
            .init(&device)
            .forward(Tensor::zeros([3, 3, 24, 24], &device));
        assert_eq!((r.reg.dims(), r.prob.dims()), ([3, 4], [3, 2]));
        let o = ONetConfig::new()
            .init(&device)
            .forward(Tensor::zeros([3, 3, 48, 48], &device));
        assert_eq!(
            (o.reg.dims(), o.landmarks.dims(), o.prob.dims()),
            ([3, 4], [3, 10], [3, 2])
        );
    }

    #[test]
    fn flatten_swaps_height_and_width() {
        let device = Device::flex();
        // x[0, c, h, w] = 100 c + 10 h + w; facenet-pytorch's order runs w, then h, then c.
        let values: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..2).flat_map(move |h| (0..3).map(move |w| (100 * c + 10 * h + w) as f32))
            })
            .collect();
        let x =
            Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [1, 2, 2, 3]), &device);
        let flat: Vec<f32> = flatten_like_facenet(x)
            .into_data()
            .try_to_vec()
            .expect("f32");
        let expected: Vec<f32> = (0..3)
            .flat_map(|w| {
                (0..2).flat_map(move |h| (0..2).map(move |c| (100 * c + 10 * h + w) as f32))
            })
            .collect();
        assert_eq!(flat, expected);
    }
}
