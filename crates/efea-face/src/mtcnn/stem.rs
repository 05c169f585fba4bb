//! The first layers of every MTCNN net, `pool1(prelu1(conv1(x)))` (a 3x3 convolution of the
//! three colour channels, per-channel PReLU, max pooling with `ceil_mode=True`), fused into one
//! pass over each output plane. On `flex` these three layers took two thirds of R-Net's and
//! O-Net's time (a 3-channel convolution is a poor fit for im2col + gemm, and each layer
//! wrote and re-read a full-resolution activation); here they run as plain loops that the
//! compiler vectorises, one output plane per rayon task.

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use rayon::prelude::*;

/// Input channels and kernel side of every MTCNN `conv1`.
const IN_CHANNELS: usize = 3;
const KERNEL: usize = 3;

/// `conv1` + `prelu1` + `pool1` of one net, its parameters copied out of the Burn modules.
#[derive(Debug, Clone)]
pub struct Stem {
    channels: usize,
    /// `[channels, 3, 3, 3]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
    alpha: Vec<f32>,
    pool_kernel: usize,
    pool_stride: usize,
}

/// Output length of a max pool with `ceil_mode=True` and no padding (PyTorch's rule: the
/// last window may be partial, but must start inside the input).
fn ceil_pool_len(len: usize, kernel: usize, stride: usize) -> usize {
    let out = (len.saturating_sub(kernel)).div_ceil(stride) + 1;
    if (out - 1) * stride >= len {
        out - 1
    } else {
        out
    }
}

fn values(param: burn::tensor::Tensor<1>) -> Vec<f32> {
    param
        .into_data()
        .try_into_vec()
        .expect("MTCNN parameters are f32")
}

impl Stem {
    pub fn new(conv: &Conv2d, prelu: &PRelu, pool_kernel: usize, pool_stride: usize) -> Self {
        let [channels, in_channels, kh, kw] = conv.weight.dims();
        assert_eq!(
            (in_channels, kh, kw),
            (IN_CHANNELS, KERNEL, KERNEL),
            "an MTCNN conv1"
        );
        let weight = values(
            conv.weight
                .val()
                .reshape([channels * IN_CHANNELS * KERNEL * KERNEL]),
        );
        let bias = values(conv.bias.as_ref().expect("MTCNN convs have a bias").val());
        let alpha = values(prelu.alpha.val());
        assert_eq!(alpha.len(), channels, "one PReLU slope per channel");
        Self {
            channels,
            weight,
            bias,
            alpha,
            pool_kernel,
            pool_stride,
        }
    }

    /// The output shape for a `[n, 3, height, width]` input.
    pub fn output_dims(&self, n: usize, height: usize, width: usize) -> [usize; 4] {
        let (ch, cw) = (height - KERNEL + 1, width - KERNEL + 1);
        [
            n,
            self.channels,
            ceil_pool_len(ch, self.pool_kernel, self.pool_stride),
            ceil_pool_len(cw, self.pool_kernel, self.pool_stride),
        ]
    }

    /// # Shapes
    /// `input` `[n, 3, height, width]` row-major -> `[n, C, H', W']` row-major (see
    /// [`Stem::output_dims`]); `height, width >= 3`.
    pub fn forward(&self, input: &[f32], n: usize, height: usize, width: usize) -> Vec<f32> {
        assert_eq!(
            input.len(),
            n * IN_CHANNELS * height * width,
            "input is [n, 3, h, w]"
        );
        let [_, channels, ph, pw] = self.output_dims(n, height, width);
        let (ch, cw) = (height - KERNEL + 1, width - KERNEL + 1);
        let (k, s) = (self.pool_kernel, self.pool_stride);
        let mut out = vec![0.0f32; n * channels * ph * pw];
        out.par_chunks_mut(ph * pw)
            .enumerate()
            .for_each_init(Vec::new, |conv, (plane, pooled)| {
                let (b, c) = (plane / channels, plane % channels);
                conv.clear();
                conv.resize(ch * cw, self.bias[c]);
                let image =
                    &input[b * IN_CHANNELS * height * width..][..IN_CHANNELS * height * width];
                let weights = &self.weight[c * IN_CHANNELS * KERNEL * KERNEL..]
                    [..IN_CHANNELS * KERNEL * KERNEL];
                for ci in 0..IN_CHANNELS {
                    let src = &image[ci * height * width..][..height * width];
                    for ky in 0..KERNEL {
                        for kx in 0..KERNEL {
                            let wv = weights[(ci * KERNEL + ky) * KERNEL + kx];
                            for y in 0..ch {
                                let row = &src[(y + ky) * width + kx..][..cw];
                                let dst = &mut conv[y * cw..][..cw];
                                for (d, v) in dst.iter_mut().zip(row) {
                                    *d += wv * v;
                                }
                            }
                        }
                    }
                }
                let a = self.alpha[c];
                for v in conv.iter_mut() {
                    if *v < 0.0 {
                        *v *= a;
                    }
                }
                for py in 0..ph {
                    let (y0, y1) = (py * s, (py * s + k).min(ch));
                    for px in 0..pw {
                        let (x0, x1) = (px * s, (px * s + k).min(cw));
                        let mut m = f32::NEG_INFINITY;
                        for y in y0..y1 {
                            for &v in &conv[y * cw + x0..y * cw + x1] {
                                m = m.max(v);
                            }
                        }
                        pooled[py * pw + px] = m;
                    }
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtcnn::nets::{ONetConfig, PNetConfig};
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    #[test]
    fn ceil_pool_lengths_match_pytorch() {
        // nn.MaxPool2d(2, 2, ceil_mode=True) on 55 -> 28; (3, 2) on 22 -> 11, on 46 -> 23.
        assert_eq!(ceil_pool_len(55, 2, 2), 28);
        assert_eq!(ceil_pool_len(38, 2, 2), 19);
        assert_eq!(ceil_pool_len(22, 3, 2), 11);
        assert_eq!(ceil_pool_len(46, 3, 2), 23);
        assert_eq!(ceil_pool_len(1, 2, 2), 1);
    }

    /// The fused stem equals Burn's conv1 -> prelu1 -> pool1 (random weights, odd sizes).
    fn check(burn: Tensor<4>, stem: &Stem, input: &[f32], [n, h, w]: [usize; 3]) {
        assert_eq!(burn.dims(), stem.output_dims(n, h, w));
        let fused = stem.forward(input, n, h, w);
        let expected: Vec<f32> = burn.into_data().try_into_vec().expect("f32");
        let max = expected
            .iter()
            .zip(&fused)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-5, "max abs difference {max}");
    }

    #[test]
    fn fused_stem_equals_the_layers() {
        let device = Device::flex();
        let (n, h, w) = (2, 17, 26);
        let values: Vec<f32> =
            Tensor::<4>::random([n, 3, h, w], Distribution::Normal(0.0, 1.0), &device)
                .into_data()
                .try_into_vec()
                .expect("f32");
        let input =
            || Tensor::<4>::from_data(TensorData::new(values.clone(), [n, 3, h, w]), &device);
        let mut pnet = PNetConfig::new().init(&device);
        // Slopes of either sign rather than the uniform default 0.25, so that a channel mix-up
        // would show.
        pnet.prelu1.alpha = burn::module::Param::from_tensor(Tensor::random(
            [10],
            Distribution::Uniform(-0.5, 0.5),
            &device,
        ));
        let stem = Stem::new(&pnet.conv1, &pnet.prelu1, 2, 2);
        let burn = pnet
            .pool1
            .forward(pnet.prelu1.forward(pnet.conv1.forward(input())));
        check(burn, &stem, &values, [n, h, w]);
        let onet = ONetConfig::new().init(&device);
        let stem = Stem::new(&onet.conv1, &onet.prelu1, 3, 2);
        let burn = onet
            .pool1
            .forward(onet.prelu1.forward(onet.conv1.forward(input())));
        check(burn, &stem, &values, [n, h, w]);
    }
}
