//! The MTCNN nets' convolutions, each fused with the PReLU after it and, where the net pools
//! there, the max pool (`ceil_mode=True`): one pass per band of output rows.
//!
//! On `flex`, layer by layer, the small layers cost more than the convolutions: Burn's PReLU
//! and max pool on O-Net's `[50, 64, 21, 21]` activation took 8 ms each against 19 ms for the
//! convolution before them, and a 3-channel convolution is a poor fit for im2col + gemm (R-Net's
//! `conv1` ran at 6 GMAC/s). Here a convolution is register-blocked: for a few neighbouring
//! output pixels at once, every input tap (channel, row, column) is multiplied into all output
//! channels, held in at most eight registers of eight lanes per pixel; the PReLU is applied
//! before the pixels are stored and the pool reads the stored band. On x86-64 with AVX2 the
//! kernel is written with [`pulp`]'s AVX2 operations; elsewhere a portable kernel sums in the
//! same order (a test checks that they agree to the bit). The multiply and the add are
//! separate instructions, so every machine rounds alike. `examples/detect_timing.rs` times
//! the cascade.

use std::ops::Range;

use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Lanes of a channel block: output channels are computed eight at a time (an AVX register,
/// two SSE ones).
const LANES: usize = 8;
type Block = [f32; LANES];

/// The most output channels a fused convolution holds in registers (O-Net's 64; its `conv4`
/// with 128 stays with Burn).
pub const MAX_CHANNELS: usize = 8 * LANES;

/// Output rows of the pooled map one rayon task computes: a band of a large pyramid level,
/// all of a 24x24 or 48x48 crop.
const BAND_ROWS: usize = 16;

/// Output length of a max pool with `ceil_mode=True` and no padding (PyTorch's rule: the
/// last window may be partial, but must start inside the input). Kernel 1, stride 1 is the
/// identity.
fn ceil_pool_len(len: usize, kernel: usize, stride: usize) -> usize {
    let out = (len.saturating_sub(kernel)).div_ceil(stride) + 1;
    if (out - 1) * stride >= len {
        out - 1
    } else {
        out
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec()
        .expect("the MTCNN nets compute in f32")
}

/// The square kernel and stride of one of the nets' pools (no padding, no dilation, ceil
/// mode); `None` (no pool) is kernel 1, stride 1.
fn pool_geometry(pool: Option<&MaxPool2d>) -> (usize, usize) {
    let Some(pool) = pool else {
        return (1, 1);
    };
    let [k, kw] = pool.kernel_size;
    let [s, sw] = pool.stride;
    assert!(
        k == kw && s == sw && pool.dilation == [1, 1] && pool.ceil_mode,
        "an MTCNN pool: square, undilated, ceil mode"
    );
    (k, s)
}

/// The channels as blocks of eight, zero-padded.
fn blocked(values: &[f32]) -> Vec<Block> {
    values
        .chunks(LANES)
        .map(|chunk| std::array::from_fn(|l| chunk.get(l).copied().unwrap_or(0.0)))
        .collect()
}

/// `pool(prelu(conv(x)))` of one MTCNN layer (stride 1, no padding, square kernel), its
/// parameters copied out of the Burn modules in the kernel's layout.
#[derive(Debug, Clone)]
pub struct FusedConv {
    in_channels: usize,
    channels: usize,
    kernel: usize,
    /// `[taps][blocks]`: tap `(ci * k + ky) * k + kx`, output channel `c` at block `c / 8`,
    /// lane `c % 8`; lanes past `channels` are zero.
    weight: Vec<Block>,
    bias: Vec<Block>,
    alpha: Vec<Block>,
    pool_kernel: usize,
    pool_stride: usize,
}

impl FusedConv {
    pub fn new(conv: &Conv2d, prelu: &PRelu, pool: Option<&MaxPool2d>) -> Self {
        let (pool_kernel, pool_stride) = pool_geometry(pool);
        let [channels, in_channels, kernel, kw] = conv.weight.dims();
        assert_eq!(kernel, kw, "a square kernel");
        assert!(
            conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1,
            "an MTCNN convolution: stride 1, undilated, ungrouped"
        );
        assert!(
            channels <= MAX_CHANNELS,
            "at most {MAX_CHANNELS} output channels"
        );
        let taps = in_channels * kernel * kernel;
        // [channels, taps] -> [taps, channels], each tap's channels blocked.
        let rows = values(conv.weight.val().reshape([channels, taps]));
        let weight = (0..taps)
            .flat_map(|t| {
                let column: Vec<f32> = (0..channels).map(|c| rows[c * taps + t]).collect();
                blocked(&column)
            })
            .collect();
        let bias = values(conv.bias.as_ref().expect("MTCNN convs have a bias").val());
        let alpha = values(prelu.alpha.val());
        assert_eq!(alpha.len(), channels, "one PReLU slope per channel");
        Self {
            in_channels,
            channels,
            kernel,
            weight,
            bias: blocked(&bias),
            alpha: blocked(&alpha),
            pool_kernel,
            pool_stride,
        }
    }

    /// The output shape for a `[n, C_in, height, width]` input.
    pub fn output_dims(&self, n: usize, height: usize, width: usize) -> [usize; 4] {
        let (ch, cw) = (height - self.kernel + 1, width - self.kernel + 1);
        [
            n,
            self.channels,
            ceil_pool_len(ch, self.pool_kernel, self.pool_stride),
            ceil_pool_len(cw, self.pool_kernel, self.pool_stride),
        ]
    }

    /// The layer on a tensor (its values go through the host).
    pub fn forward_tensor(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let [n, _, height, width] = x.dims();
        let dims = self.output_dims(n, height, width);
        let out = self.forward(&values(x), n, height, width);
        Tensor::from_data(TensorData::new(out, dims), &device)
    }

    /// # Shapes
    /// `input` `[n, C_in, height, width]` row-major -> `[n, C, H', W']` row-major (see
    /// [`FusedConv::output_dims`]); `height, width >= kernel`.
    pub fn forward(&self, input: &[f32], n: usize, height: usize, width: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return self.forward_with(Avx2(simd), input, n, height, width);
        }
        self.forward_with(Portable, input, n, height, width)
    }

    fn forward_with<K: Kernel>(
        &self,
        kernel: K,
        input: &[f32],
        n: usize,
        height: usize,
        width: usize,
    ) -> Vec<f32> {
        let image_len = self.in_channels * height * width;
        assert_eq!(input.len(), n * image_len, "input is [n, C_in, h, w]");
        assert!(
            height >= self.kernel && width >= self.kernel,
            "input at least the kernel"
        );
        let [_, channels, ph, pw] = self.output_dims(n, height, width);
        // Tasks: (image, band of pooled rows); each returns its band of every channel.
        let bands = ph.div_ceil(BAND_ROWS);
        let pieces: Vec<Vec<f32>> = (0..n * bands)
            .into_par_iter()
            .map(|task| {
                let (b, band) = (task / bands, task % bands);
                let rows = band * BAND_ROWS..((band + 1) * BAND_ROWS).min(ph);
                let image = &input[b * image_len..][..image_len];
                let band = Band {
                    layer: self,
                    image,
                    size: [height, width],
                    rows,
                };
                match self.bias.len() {
                    1 => kernel.run(Blocks::<1, 8, K>(band, kernel)),
                    2 => kernel.run(Blocks::<2, 4, K>(band, kernel)),
                    3 => kernel.run(Blocks::<3, 4, K>(band, kernel)),
                    4 => kernel.run(Blocks::<4, 2, K>(band, kernel)),
                    5 => kernel.run(Blocks::<5, 2, K>(band, kernel)),
                    6 => kernel.run(Blocks::<6, 2, K>(band, kernel)),
                    7 => kernel.run(Blocks::<7, 1, K>(band, kernel)),
                    _ => kernel.run(Blocks::<8, 1, K>(band, kernel)),
                }
            })
            .collect();
        let mut out = vec![0.0f32; n * channels * ph * pw];
        for (task, piece) in pieces.iter().enumerate() {
            let (b, band) = (task / bands, task % bands);
            let len = piece.len() / channels;
            for (c, rows) in piece.chunks_exact(len).enumerate() {
                let at = ((b * channels + c) * ph + band * BAND_ROWS) * pw;
                out[at..at + len].copy_from_slice(rows);
            }
        }
        out
    }

    /// Pooled rows `rows` of one image, `[C, rows, W']`: the convolution rows they need,
    /// `PIXELS` pixels at a time (see [`pixels`]), then the pool.
    #[inline(always)]
    fn band<const BLOCKS: usize, const PIXELS: usize, K: Kernel>(
        &self,
        kernel: K,
        image: &[f32],
        [height, width]: [usize; 2],
        rows: Range<usize>,
    ) -> Vec<f32> {
        let k = self.kernel;
        let (ch, cw) = (height - k + 1, width - k + 1);
        let (pk, ps) = (self.pool_kernel, self.pool_stride);
        let pw = ceil_pool_len(cw, pk, ps);
        let (y0, y1) = (rows.start * ps, ((rows.end - 1) * ps + pk).min(ch));
        // Offsets of the taps from a pixel's top-left input, in the order a convolution sums
        // them (channel, row, column).
        let offsets: Vec<usize> = (0..self.in_channels * k * k)
            .map(|t| {
                let (ci, ky, kx) = (t / (k * k), t / k % k, t % k);
                (ci * height + ky) * width + kx
            })
            .collect();
        let weight: &[[Block; BLOCKS]] = self.weight.as_chunks::<BLOCKS>().0;
        let bias: [Block; BLOCKS] = std::array::from_fn(|i| self.bias[i]);
        let alpha: [Block; BLOCKS] = std::array::from_fn(|i| self.alpha[i]);
        let mut conv = vec![[[0.0f32; LANES]; BLOCKS]; (y1 - y0) * cw];
        for (y, conv_row) in (y0..y1).zip(conv.chunks_exact_mut(cw)) {
            let mut groups = conv_row.chunks_exact_mut(PIXELS);
            for (g, out) in (&mut groups).enumerate() {
                let base = y * width + g * PIXELS;
                let out: &mut [_; PIXELS] = out.try_into().expect("chunks of PIXELS");
                *out = kernel.pixels::<BLOCKS, PIXELS>(image, base, &offsets, weight, bias, alpha);
            }
            let done = cw - groups.into_remainder().len();
            for (x, out) in conv_row.iter_mut().enumerate().skip(done) {
                let [pixel] =
                    kernel.pixels::<BLOCKS, 1>(image, y * width + x, &offsets, weight, bias, alpha);
                *out = pixel;
            }
        }
        let band = rows.len();
        let mut out = vec![0.0f32; self.channels * band * pw];
        for (r, py) in rows.enumerate() {
            let (wy0, wy1) = (py * ps - y0, (py * ps + pk).min(ch) - y0);
            for px in 0..pw {
                let (x0, x1) = (px * ps, (px * ps + pk).min(cw));
                let mut m = [[f32::NEG_INFINITY; LANES]; BLOCKS];
                for y in wy0..wy1 {
                    for pixel in &conv[y * cw + x0..y * cw + x1] {
                        for (m, p) in m.iter_mut().zip(pixel) {
                            for (m, p) in m.iter_mut().zip(p) {
                                *m = m.max(*p);
                            }
                        }
                    }
                }
                for c in 0..self.channels {
                    out[(c * band + r) * pw + px] = m[c / LANES][c % LANES];
                }
            }
        }
        out
    }
}

/// `prelu(conv(x))` at `PIXELS` consecutive pixels of a row, the first at input offset
/// `base`: every tap's weights are loaded once for all of them, and the `PIXELS * BLOCKS`
/// accumulators are independent chains of additions (one pixel of two blocks would wait on
/// the adder's latency at every tap). Both kernels sum in the same order, multiply and add
/// separately (no fused multiply-add), and so give the same bits.
trait Kernel: Copy + Send + Sync {
    #[allow(clippy::too_many_arguments)]
    fn pixels<const BLOCKS: usize, const PIXELS: usize>(
        self,
        image: &[f32],
        base: usize,
        offsets: &[usize],
        weight: &[[Block; BLOCKS]],
        bias: [Block; BLOCKS],
        alpha: [Block; BLOCKS],
    ) -> [[Block; BLOCKS]; PIXELS];

    /// Runs `op` compiled for the kernel's instruction set.
    fn run<Op: pulp::WithSimd>(self, op: Op) -> Op::Output;
}

/// Plain Rust, left to the compiler's vectorizer (for machines without AVX2).
#[derive(Debug, Clone, Copy)]
struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn pixels<const BLOCKS: usize, const PIXELS: usize>(
        self,
        image: &[f32],
        base: usize,
        offsets: &[usize],
        weight: &[[Block; BLOCKS]],
        bias: [Block; BLOCKS],
        alpha: [Block; BLOCKS],
    ) -> [[Block; BLOCKS]; PIXELS] {
        std::array::from_fn(|p| {
            let mut acc = bias;
            for (&offset, w) in offsets.iter().zip(weight) {
                let v = image[base + p + offset];
                for (a, w) in acc.iter_mut().zip(w) {
                    for (a, w) in a.iter_mut().zip(w) {
                        *a += w * v;
                    }
                }
            }
            for (a, slope) in acc.iter_mut().zip(&alpha) {
                for (a, slope) in a.iter_mut().zip(slope) {
                    *a = if *a < 0.0 { *a * slope } else { *a };
                }
            }
            acc
        })
    }

    fn run<Op: pulp::WithSimd>(self, op: Op) -> Op::Output {
        pulp::Arch::new().dispatch(op)
    }
}

/// AVX2 written out: a block is one `f32x8` register (the compiler's vectorizer turned the
/// multi-pixel loop into scalar code).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
struct Avx2(pulp::x86::V3);

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn pixels<const BLOCKS: usize, const PIXELS: usize>(
        self,
        image: &[f32],
        base: usize,
        offsets: &[usize],
        weight: &[[Block; BLOCKS]],
        bias: [Block; BLOCKS],
        alpha: [Block; BLOCKS],
    ) -> [[Block; BLOCKS]; PIXELS] {
        use pulp::f32x8;
        // No closures here: a closure is not inlined into `vectorize`'s AVX2 function, and
        // the intrinsics inside it would become calls.
        let simd = self.0;
        let zero = simd.splat_f32x8(0.0);
        let mut bias_v = [zero; BLOCKS];
        let mut alpha_v = [zero; BLOCKS];
        for b in 0..BLOCKS {
            bias_v[b] = pulp::cast(bias[b]);
            alpha_v[b] = pulp::cast(alpha[b]);
        }
        let mut acc: [[f32x8; BLOCKS]; PIXELS] = [bias_v; PIXELS];
        for (&offset, w) in offsets.iter().zip(weight) {
            let v: &[f32; PIXELS] = image[base + offset..][..PIXELS]
                .try_into()
                .expect("PIXELS values");
            let mut w_v = [zero; BLOCKS];
            for b in 0..BLOCKS {
                w_v[b] = pulp::cast(w[b]);
            }
            for p in 0..PIXELS {
                let v = simd.splat_f32x8(v[p]);
                for b in 0..BLOCKS {
                    acc[p][b] = simd.add_f32x8(acc[p][b], simd.mul_f32x8(w_v[b], v));
                }
            }
        }
        let mut out = [[[0.0; LANES]; BLOCKS]; PIXELS];
        for p in 0..PIXELS {
            for b in 0..BLOCKS {
                let a = acc[p][b];
                let negative = simd.cmp_lt_f32x8(a, zero);
                out[p][b] =
                    pulp::cast(simd.select_f32x8(negative, simd.mul_f32x8(a, alpha_v[b]), a));
            }
        }
        out
    }

    fn run<Op: pulp::WithSimd>(self, op: Op) -> Op::Output {
        pulp::Simd::vectorize(self.0, op)
    }
}

/// One task's work: pooled rows `rows` of one image.
struct Band<'a> {
    layer: &'a FusedConv,
    image: &'a [f32],
    size: [usize; 2],
    rows: Range<usize>,
}

/// A band with `BLOCKS` channel blocks, as a [`pulp::WithSimd`] operation: `with_simd` is
/// inlined into the function `dispatch` compiles for the machine's instruction set, and
/// [`FusedConv::band`] into it (a closure would be called, not inlined, and run as SSE).
/// `PIXELS` is chosen with `BLOCKS` so that the accumulators fill about half of AVX2's
/// sixteen registers.
struct Blocks<'a, const BLOCKS: usize, const PIXELS: usize, K>(Band<'a>, K);

impl<const BLOCKS: usize, const PIXELS: usize, K: Kernel> pulp::WithSimd
    for Blocks<'_, BLOCKS, PIXELS, K>
{
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let Band {
            layer,
            image,
            size,
            rows,
        } = self.0;
        layer.band::<BLOCKS, PIXELS, K>(self.1, image, size, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtcnn::nets::{ONetConfig, PNetConfig, RNetConfig};
    use burn::module::Param;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn ceil_pool_lengths_match_pytorch() {
        // nn.MaxPool2d(2, 2, ceil_mode=True) on 55 -> 28; (3, 2) on 22 -> 11, on 46 -> 23.
        assert_eq!(ceil_pool_len(55, 2, 2), 28);
        assert_eq!(ceil_pool_len(38, 2, 2), 19);
        assert_eq!(ceil_pool_len(22, 3, 2), 11);
        assert_eq!(ceil_pool_len(46, 3, 2), 23);
        assert_eq!(ceil_pool_len(1, 2, 2), 1);
        assert_eq!(ceil_pool_len(17, 1, 1), 17);
    }

    /// Slopes of either sign rather than the uniform default 0.25, so that a channel mix-up
    /// would show.
    fn mixed_slopes(prelu: &PRelu, device: &Device) -> PRelu {
        let mut prelu = prelu.clone();
        let [channels] = prelu.alpha.dims();
        prelu.alpha = Param::from_tensor(Tensor::random(
            [channels],
            Distribution::Uniform(-0.5, 0.5),
            device,
        ));
        prelu
    }

    /// The fused layer equals Burn's conv -> prelu (-> pool) on random input of `[n, h, w]`.
    fn check(conv: &Conv2d, prelu: &PRelu, pool: Option<&MaxPool2d>, [n, h, w]: [usize; 3]) {
        let device = Device::flex();
        let prelu = mixed_slopes(prelu, &device);
        let [_, c_in, _, _] = conv.weight.dims();
        let x = Tensor::<4>::random([n, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let layers = prelu.forward(conv.forward(x.clone()));
        let layers = match pool {
            Some(pool) => pool.forward(layers),
            None => layers,
        };
        let layer = FusedConv::new(conv, &prelu, pool);
        let portable = layer.forward_with(Portable, &values(x.clone()), n, h, w);
        let fused = layer.forward_tensor(x);
        assert_eq!(fused.dims(), layers.dims());
        // The machine's kernel (AVX2 where it has it) and the portable one sum alike.
        assert_eq!(values(fused.clone()), portable);
        let (fused, layers) = (values(fused), values(layers));
        let max = layers
            .iter()
            .zip(&fused)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Burn's im2col + gemm sums in another order.
        assert!(max < 1e-5, "max abs difference {max}");
    }

    #[test]
    fn fused_layers_equal_burns() {
        let device = Device::flex();
        let p = PNetConfig::new().init(&device);
        let r = RNetConfig::new().init(&device);
        let o = ONetConfig::new().init(&device);
        // Odd sizes: partial last pooling windows, several bands (40 rows pool to 19 > 16).
        check(&p.conv1, &p.prelu1, Some(&p.pool1), [2, 40, 27]);
        check(&p.conv2, &p.prelu2, None, [1, 19, 12]);
        check(&p.conv3, &p.prelu3, None, [2, 17, 10]);
        check(&r.conv1, &r.prelu1, Some(&r.pool1), [3, 24, 24]);
        check(&r.conv2, &r.prelu2, Some(&r.pool2), [3, 11, 11]);
        check(&r.conv3, &r.prelu3, None, [3, 4, 4]);
        check(&o.conv1, &o.prelu1, Some(&o.pool1), [2, 48, 48]);
        check(&o.conv2, &o.prelu2, Some(&o.pool2), [2, 23, 23]);
        check(&o.conv3, &o.prelu3, Some(&o.pool3), [2, 10, 10]);
    }
}
