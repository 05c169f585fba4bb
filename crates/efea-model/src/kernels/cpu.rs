//! The arithmetic of the fused operations on plain `f32` slices in NCHW order, free of any
//! tensor type so that it can be tested against a direct evaluation of the definitions.
//!
//! Loops are written so that LLVM vectorises them: fixed-width accumulator arrays for
//! reductions (a plain `iter().sum()` of floats cannot be reordered, so it stays scalar), and
//! per-channel constants hoisted out of the element loops. Work is split over channels (for
//! reductions) or over `(n, c)` planes (for element-wise writes) with rayon.

use rayon::prelude::*;

/// Elements below which a rayon task is not worth its scheduling (a few microseconds of work):
/// at batch 1 most planes are tiny, and one task per plane costs more than the arithmetic.
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// The least number of items of `len` elements each that make one rayon task.
fn min_items(len: usize) -> usize {
    MIN_TASK_ELEMENTS.div_ceil(len.max(1))
}

/// Lanes of the partial sums: two AVX registers, enough to hide the latency of the adds.
const LANES: usize = 16;

/// The activation fused after a batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    Relu,
    Relu6,
}

impl Act {
    #[cfg(test)]
    fn apply(self, z: f32) -> f32 {
        match self {
            Act::Identity => Identity::apply(z),
            Act::Relu => Relu::apply(z),
            Act::Relu6 => Relu6::apply(z),
        }
    }
}

/// An activation as a type, so that each kernel is compiled once per activation with the
/// choice hoisted out of its loops (a runtime `match` inside them keeps LLVM from vectorising).
trait Activation: Copy + Send + Sync {
    fn apply(z: f32) -> f32;
    /// Whether the gradient passes at `z`: PyTorch's `relu` (z > 0) and `hardtanh` (0 < z < 6).
    /// Non-short-circuit `&` so that the comparison stays a branch-free mask.
    fn passes(z: f32) -> bool;
}

#[derive(Clone, Copy)]
struct Identity;
#[derive(Clone, Copy)]
struct Relu;
#[derive(Clone, Copy)]
struct Relu6;

impl Activation for Identity {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z
    }
    #[inline(always)]
    fn passes(_: f32) -> bool {
        true
    }
}

impl Activation for Relu {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z.max(0.0)
    }
    #[inline(always)]
    fn passes(z: f32) -> bool {
        z > 0.0
    }
}

impl Activation for Relu6 {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z.clamp(0.0, 6.0)
    }
    #[inline(always)]
    fn passes(z: f32) -> bool {
        (z > 0.0) & (z < 6.0)
    }
}

/// Runs `$body` with `$A` bound to the activation type of `$act`.
macro_rules! with_act {
    ($act:expr, $A:ident => $body:expr) => {
        match $act {
            Act::Identity => {
                type $A = Identity;
                $body
            }
            Act::Relu => {
                type $A = Relu;
                $body
            }
            Act::Relu6 => {
                type $A = Relu6;
                $body
            }
        }
    };
}

/// `(sum(f(a[i], b[i])), sum(g(a[i], b[i])))` with `LANES` independent partial sums each.
#[inline(always)]
fn sum2x2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let mut acc0 = [0.0f32; LANES];
    let mut acc1 = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            let (u, v) = f(ca[i], cb[i]);
            acc0[i] += u;
            acc1[i] += v;
        }
    }
    let mut total0: f64 = acc0.iter().map(|&v| v as f64).sum();
    let mut total1: f64 = acc1.iter().map(|&v| v as f64).sum();
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        let (u, v) = f(x, y);
        total0 += u as f64;
        total1 += v as f64;
    }
    (total0, total1)
}

/// `sum(f(a[i], b[i]))` with `LANES` independent partial sums, accumulated in `f64` per call.
#[inline(always)]
fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    let mut total: f64 = acc.iter().map(|&v| v as f64).sum();
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        total += f(x, y) as f64;
    }
    total
}

#[inline(always)]
fn sum1(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum2(a, a, |x, _| f(x))
}

/// The `(n, c)` planes of channel `c` in an NCHW buffer.
fn planes(data: &[f32], channels: usize, plane: usize, c: usize) -> impl Iterator<Item = &[f32]> {
    data.chunks_exact(plane).skip(c).step_by(channels)
}

/// Shape of an NCHW activation: batch, channels and `H * W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl Nchw {
    fn len(self) -> usize {
        self.n * self.c * self.hw
    }

    fn count(self) -> f64 {
        (self.n * self.hw) as f64
    }
}

/// Batch statistics of each channel: mean and biased variance (two passes over each channel,
/// as PyTorch, so that a large mean does not eat the variance's digits).
pub fn channel_stats(x: &[f32], shape: Nchw) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        shape.len(),
        "channel_stats: buffer and shape disagree"
    );
    let stats: Vec<(f32, f32)> = (0..shape.c)
        .into_par_iter()
        .with_min_len(min_items(shape.n * shape.hw))
        .map(|c| {
            let mean = planes(x, shape.c, shape.hw, c)
                .map(|p| sum1(p, |v| v))
                .sum::<f64>()
                / shape.count();
            let m = mean as f32;
            let var = planes(x, shape.c, shape.hw, c)
                .map(|p| sum1(p, |v| (v - m) * (v - m)))
                .sum::<f64>()
                / shape.count();
            (m, var as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// Per-channel `(scale, shift)` of a batch norm: `y = x * scale + shift`.
fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Vec<(f32, f32)> {
    (0..gamma.len())
        .map(|c| {
            let scale = gamma[c] / (var[c] + eps).sqrt();
            (scale, beta[c] - mean[c] * scale)
        })
        .collect()
}

/// `y = act(x * scale[c] + shift[c])` over every plane.
fn scale_shift_act(x: &[f32], y: &mut [f32], shape: Nchw, coef: &[(f32, f32)], act: Act) {
    with_act!(act, A => y
    .par_chunks_mut(shape.hw)
    .zip(x.par_chunks(shape.hw))
    .enumerate()
    .for_each(|(i, (out, inp))| {
        let (scale, shift) = coef[i % shape.c];
        for (o, &v) in out.iter_mut().zip(inp) {
            *o = A::apply(v * scale + shift);
        }
    }))
}

/// `out = act(out * scale[c] + bias[c])` over every plane, in place.
pub fn scale_bias_act_in_place(
    out: &mut [f32],
    plane: usize,
    scale: &[f32],
    bias: &[f32],
    act: Act,
) {
    let channels = bias.len();
    with_act!(act, A => out
    .par_chunks_mut(plane.max(1))
    .enumerate()
    .for_each(|(i, p)| {
        let (s, b) = (scale[i % channels], bias[i % channels]);
        for v in p.iter_mut() {
            *v = A::apply(*v * s + b);
        }
    }))
}

/// Batch norm with the batch's statistics, then `act`: `(output, mean, biased variance)`.
pub fn bn_act_train_forward(
    x: &[f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = channel_stats(x, shape);
    let coef = affine(gamma, beta, &mean, &var, eps);
    let mut y = vec![0.0; x.len()];
    scale_shift_act(x, &mut y, shape, &coef, act);
    (y, mean, var)
}

/// Gradients of [`bn_act_train_forward`]: `(dx, dgamma, dbeta)`. The activation's input is
/// recomputed from `x`, so the forward output need not be kept.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_train_backward(
    x: &[f32],
    dy: &[f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = dy.to_vec();
    let (dgamma, dbeta) =
        bn_act_train_backward_in_place(x, &mut dx, shape, gamma, beta, mean, var, eps, act);
    (dx, dgamma, dbeta)
}

/// [`bn_act_train_backward`] writing `dx` over `dy` (each element of `dx` depends only on the
/// same element of `dy` once the channel sums are known): no new buffer to allocate and zero.
/// Returns `(dgamma, dbeta)`.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_train_backward_in_place(
    x: &[f32],
    dy: &mut [f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "bn backward: x and shape disagree");
    assert_eq!(dy.len(), shape.len(), "bn backward: dy and shape disagree");
    with_act!(act, A => bn_act_backward_typed::<A>(x, dy, shape, gamma, beta, mean, var, eps))
}

#[allow(clippy::too_many_arguments)]
fn bn_act_backward_typed<A: Activation>(
    x: &[f32],
    dy: &mut [f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let dy_read: &[f32] = dy;
    let count = shape.count();
    // dz = dy where the activation passes; sums of dz and dz * (x - mean) per channel.
    let sums: Vec<(f64, f64)> = (0..shape.c)
        .into_par_iter()
        .with_min_len(min_items(shape.n * shape.hw))
        .map(|c| {
            let inv_std = 1.0 / (var[c] + eps).sqrt();
            let scale = gamma[c] * inv_std;
            let shift = beta[c] - mean[c] * scale;
            let m = mean[c];
            let (mut sum_dz, mut sum_dz_xc) = (0.0, 0.0);
            for (px, pdy) in
                planes(x, shape.c, shape.hw, c).zip(planes(dy_read, shape.c, shape.hw, c))
            {
                let (a, b) = sum2x2(px, pdy, |v, g| {
                    let dz = if A::passes(v * scale + shift) { g } else { 0.0 };
                    (dz, dz * (v - m))
                });
                sum_dz += a;
                sum_dz_xc += b;
            }
            (sum_dz, sum_dz_xc * inv_std as f64)
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    // dx = a * dz + b + k * x, per channel:
    //   a = gamma * inv_std, k = -a * inv_std * dgamma / M,
    //   b = -a * dbeta / M - k * mean.
    let coef: Vec<[f32; 4]> = (0..shape.c)
        .map(|c| {
            let inv_std = 1.0 / (var[c] as f64 + eps as f64).sqrt();
            let a = gamma[c] as f64 * inv_std;
            let k = -a * inv_std * sums[c].1 / count;
            let b = -a * sums[c].0 / count - k * mean[c] as f64;
            let shift = beta[c] as f64 - mean[c] as f64 * a;
            [a as f32, b as f32, k as f32, shift as f32]
        })
        .collect();
    dy.par_chunks_mut(shape.hw)
        .zip(x.par_chunks(shape.hw))
        .with_min_len(min_items(shape.hw))
        .enumerate()
        .for_each(|(i, (out, px))| {
            let [a, b, k, shift] = coef[i % shape.c];
            for (o, &v) in out.iter_mut().zip(px) {
                let dz = if A::passes(v * a + shift) { *o } else { 0.0 };
                *o = a * dz + b + k * v;
            }
        });
    (dgamma, dbeta)
}

/// Geometry of a depthwise convolution (one filter per channel, square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depthwise {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Depthwise {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kernel) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// Output positions `o` (half-open range) whose input `o * stride + k - pad` lies inside
    /// `0..size`.
    fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let s = self.stride;
        // o * s + k >= pad
        let lo = self.pad.saturating_sub(k).div_ceil(s);
        // o * s + k - pad <= size - 1  <=>  o <= (size - 1 + pad - k) / s
        let hi = if size + self.pad > k {
            ((size - 1 + self.pad - k) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// Forward depthwise convolution: `y[n,c] = sum_k w[c,k] * x[n,c,shifted by k] (+ bias[c])`,
/// the definition the backward passes are the adjoints of (the operation itself runs flex's
/// own depthwise convolution).
#[cfg(test)]
pub fn depthwise_forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: Depthwise,
) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let kk = g.kernel * g.kernel;
    let mut y = vec![0.0; g.n * g.c * oh * ow];
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(g.h * g.w))
        .with_min_len(min_items(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, inp))| {
            let c = i % g.c;
            out.fill(bias.map_or(0.0, |b| b[c]));
            let filter = &weight[c * kk..(c + 1) * kk];
            for kh in 0..g.kernel {
                let (oh_lo, oh_hi) = g.valid(kh, g.h, oh);
                for kw in 0..g.kernel {
                    let (ow_lo, ow_hi) = g.valid(kw, g.w, ow);
                    let wv = filter[kh * g.kernel + kw];
                    for o_row in oh_lo..oh_hi {
                        let i_row = o_row * g.stride + kh - g.pad;
                        let dst = &mut out[o_row * ow + ow_lo..o_row * ow + ow_hi];
                        let i0 = i_row * g.w + ow_lo * g.stride + kw - g.pad;
                        if g.stride == 1 {
                            let src = &inp[i0..i0 + dst.len()];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += wv * s;
                            }
                        } else {
                            for (j, d) in dst.iter_mut().enumerate() {
                                *d += wv * inp[i0 + j * g.stride];
                            }
                        }
                    }
                }
            }
        });
    y
}

/// Gradient of [`depthwise_forward`] with respect to its input.
pub fn depthwise_backward_input(dy: &[f32], weight: &[f32], g: Depthwise) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let kk = g.kernel * g.kernel;
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(dy.par_chunks(oh * ow))
        .with_min_len(min_items(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, grad))| {
            let c = i % g.c;
            let filter = &weight[c * kk..(c + 1) * kk];
            for kh in 0..g.kernel {
                let (oh_lo, oh_hi) = g.valid(kh, g.h, oh);
                for kw in 0..g.kernel {
                    let (ow_lo, ow_hi) = g.valid(kw, g.w, ow);
                    let wv = filter[kh * g.kernel + kw];
                    for o_row in oh_lo..oh_hi {
                        let i_row = o_row * g.stride + kh - g.pad;
                        let src = &grad[o_row * ow + ow_lo..o_row * ow + ow_hi];
                        let i0 = i_row * g.w + ow_lo * g.stride + kw - g.pad;
                        if g.stride == 1 {
                            let dst = &mut out[i0..i0 + src.len()];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += wv * s;
                            }
                        } else {
                            for (j, &s) in src.iter().enumerate() {
                                out[i0 + j * g.stride] += wv * s;
                            }
                        }
                    }
                }
            }
        });
    dx
}

/// Gradients of [`depthwise_forward`] with respect to its weight `[C, 1, k, k]` and bias `[C]`.
pub fn depthwise_backward_params(x: &[f32], dy: &[f32], g: Depthwise) -> (Vec<f32>, Vec<f32>) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let kk = g.kernel * g.kernel;
    let per_channel: Vec<(Vec<f32>, f32)> = (0..g.c)
        .into_par_iter()
        .with_min_len(min_items(g.n * g.h * g.w))
        .map(|c| {
            let mut dw = vec![0.0f64; kk];
            let mut db = 0.0f64;
            for n in 0..g.n {
                let plane = (n * g.c + c) * g.h * g.w;
                let inp = &x[plane..plane + g.h * g.w];
                let oplane = (n * g.c + c) * oh * ow;
                let grad = &dy[oplane..oplane + oh * ow];
                db += sum1(grad, |v| v);
                for kh in 0..g.kernel {
                    let (oh_lo, oh_hi) = g.valid(kh, g.h, oh);
                    for kw in 0..g.kernel {
                        let (ow_lo, ow_hi) = g.valid(kw, g.w, ow);
                        let mut acc = 0.0f64;
                        for o_row in oh_lo..oh_hi {
                            let i_row = o_row * g.stride + kh - g.pad;
                            let src = &grad[o_row * ow + ow_lo..o_row * ow + ow_hi];
                            let i0 = i_row * g.w + ow_lo * g.stride + kw - g.pad;
                            if g.stride == 1 {
                                acc += sum2(src, &inp[i0..i0 + src.len()], |a, b| a * b);
                            } else {
                                let mut part = 0.0f32;
                                for (j, &s) in src.iter().enumerate() {
                                    part += s * inp[i0 + j * g.stride];
                                }
                                acc += part as f64;
                            }
                        }
                        dw[kh * g.kernel + kw] += acc;
                    }
                }
            }
            (dw.into_iter().map(|v| v as f32).collect(), db as f32)
        })
        .collect();
    let mut dweight = Vec::with_capacity(g.c * kk);
    let mut dbias = Vec::with_capacity(g.c);
    for (dw, db) in per_channel {
        dweight.extend(dw);
        dbias.push(db);
    }
    (dweight, dbias)
}

/// Shape of a 4-D NCHW tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    fn sample(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// The dimension a triplet-attention ZPool reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// `[N, C, H, W] -> [N, 2, H, W]`
    Channel,
    /// `[N, C, H, W] -> [N, 2, C, W]` (PyTorch: ZPool of `x.permute(0, 2, 1, 3)`)
    Height,
    /// `[N, C, H, W] -> [N, 2, H, C]` (PyTorch: ZPool of `x.permute(0, 3, 2, 1)`)
    Width,
}

impl Axis {
    /// The two kept dimensions `(A, B)` of the pooled `[N, 2, A, B]`.
    pub fn pooled(self, d: Dims) -> (usize, usize) {
        match self {
            Axis::Channel => (d.h, d.w),
            Axis::Height => (d.c, d.w),
            Axis::Width => (d.h, d.c),
        }
    }

    fn size(self, d: Dims) -> usize {
        match self {
            Axis::Channel => d.c,
            Axis::Height => d.h,
            Axis::Width => d.w,
        }
    }
}

/// ZPool of triplet attention: channel 0 the max, channel 1 the mean over `axis`, read
/// straight from NCHW (no permuted copy). Also returns the index of each max along `axis`
/// (the first one, as PyTorch's `max(dim)`), which the backward pass routes the gradient to.
pub fn zpool_forward(x: &[f32], d: Dims, axis: Axis) -> (Vec<f32>, Vec<u32>) {
    let (a, b) = axis.pooled(d);
    let inv = 1.0 / axis.size(d) as f32;
    let mut pooled = vec![0.0f32; d.n * 2 * a * b];
    let mut argmax = vec![0u32; d.n * a * b];
    pooled
        .par_chunks_mut(2 * a * b)
        .zip(argmax.par_chunks_mut(a * b))
        .zip(x.par_chunks(d.sample()))
        .for_each(|((out, idx), xs)| {
            let (max, mean) = out.split_at_mut(a * b);
            max.fill(f32::NEG_INFINITY);
            match axis {
                Axis::Channel => {
                    for (c, plane) in xs.chunks_exact(d.h * d.w).enumerate() {
                        for (((m, s), i), &v) in max
                            .iter_mut()
                            .zip(mean.iter_mut())
                            .zip(idx.iter_mut())
                            .zip(plane)
                        {
                            if v > *m {
                                *m = v;
                                *i = c as u32;
                            }
                            *s += v;
                        }
                    }
                }
                Axis::Height => {
                    for (c, plane) in xs.chunks_exact(d.h * d.w).enumerate() {
                        let row = c * d.w..(c + 1) * d.w;
                        let (m_row, s_row, i_row) =
                            (&mut max[row.clone()], &mut mean[row.clone()], &mut idx[row]);
                        for (h, line) in plane.chunks_exact(d.w).enumerate() {
                            for (((m, s), i), &v) in m_row
                                .iter_mut()
                                .zip(s_row.iter_mut())
                                .zip(i_row.iter_mut())
                                .zip(line)
                            {
                                if v > *m {
                                    *m = v;
                                    *i = h as u32;
                                }
                                *s += v;
                            }
                        }
                    }
                }
                Axis::Width => {
                    for (c, plane) in xs.chunks_exact(d.h * d.w).enumerate() {
                        for (h, line) in plane.chunks_exact(d.w).enumerate() {
                            let (mut m, mut at, mut s) = (f32::NEG_INFINITY, 0u32, 0.0f32);
                            for (w, &v) in line.iter().enumerate() {
                                if v > m {
                                    m = v;
                                    at = w as u32;
                                }
                                s += v;
                            }
                            let o = h * d.c + c;
                            max[o] = m;
                            mean[o] = s;
                            idx[o] = at;
                        }
                    }
                }
            }
            for s in mean.iter_mut() {
                *s *= inv;
            }
        });
    (pooled, argmax)
}

/// Gradient of [`zpool_forward`] with respect to `x`: the max channel's gradient to the
/// arg-max, the mean channel's spread evenly.
pub fn zpool_backward(grad: &[f32], argmax: &[u32], d: Dims, axis: Axis) -> Vec<f32> {
    let (a, b) = axis.pooled(d);
    let inv = 1.0 / axis.size(d) as f32;
    let mut dx = vec![0.0f32; d.n * d.sample()];
    dx.par_chunks_mut(d.sample())
        .zip(grad.par_chunks(2 * a * b))
        .zip(argmax.par_chunks(a * b))
        .for_each(|((out, g), idx)| {
            let (g_max, g_mean) = g.split_at(a * b);
            for (c, plane) in out.chunks_exact_mut(d.h * d.w).enumerate() {
                for (h, line) in plane.chunks_exact_mut(d.w).enumerate() {
                    for (w, v) in line.iter_mut().enumerate() {
                        let (o, along) = match axis {
                            Axis::Channel => (h * d.w + w, c),
                            Axis::Height => (c * d.w + w, h),
                            Axis::Width => (h * d.c + c, w),
                        };
                        let hit = if idx[o] as usize == along {
                            g_max[o]
                        } else {
                            0.0
                        };
                        *v = hit + g_mean[o] * inv;
                    }
                }
            }
        });
    dx
}

/// One subspace of ULSAM in eval mode, with its batch norms folded: the attention map is
/// `m = softmax_hw(relu(sum_c weight[c] * maxpool3x3(relu(scale[c] * y[c] + shift[c])) + bias))`.
#[derive(Debug, Clone)]
pub struct SubspaceEval {
    /// The depthwise 1x1 convolution and its batch norm, per channel of the subspace.
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    /// The pointwise convolution to one map and its batch norm.
    pub weight: Vec<f32>,
    pub bias: f32,
}

/// ULSAM in eval mode, `y * m + y` per subspace (MODEL.md `U`), one pass per subspace and
/// sample instead of some thirty tensor operations.
pub fn subspace_eval_forward(x: &[f32], h: usize, w: usize, groups: &[SubspaceEval]) -> Vec<f32> {
    let hw = h * w;
    let width = groups[0].scale.len();
    let mut y = x.to_vec();
    y.par_chunks_mut(width * hw)
        .enumerate()
        .for_each(|(i, out)| {
            let group = &groups[i % groups.len()];
            let mut m = vec![0.0f32; hw];
            let mut a = vec![0.0f32; hw];
            let mut rows = vec![0.0f32; hw];
            for (ch, plane) in out.chunks_exact(hw).enumerate() {
                let (scale, shift) = (group.scale[ch], group.shift[ch]);
                for (a, &v) in a.iter_mut().zip(plane) {
                    *a = (v * scale + shift).max(0.0);
                }
                // 3x3 max pool, stride 1, padding ignored: along rows, then along columns.
                for r in 0..h {
                    let row = &a[r * w..(r + 1) * w];
                    for c in 0..w {
                        let (lo, hi) = (c.saturating_sub(1), (c + 2).min(w));
                        rows[r * w + c] = row[lo..hi].iter().copied().fold(f32::MIN, f32::max);
                    }
                }
                let weight = group.weight[ch];
                for r in 0..h {
                    let (lo, hi) = (r.saturating_sub(1), (r + 2).min(h));
                    for c in 0..w {
                        let pooled = (lo..hi).map(|k| rows[k * w + c]).fold(f32::MIN, f32::max);
                        m[r * w + c] += weight * pooled;
                    }
                }
            }
            let mut max = f32::MIN;
            for v in m.iter_mut() {
                *v = (*v + group.bias).max(0.0);
                max = max.max(*v);
            }
            let mut sum = 0.0f32;
            for v in m.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in m.iter_mut() {
                *v /= sum;
            }
            for plane in out.chunks_exact_mut(hw) {
                for (v, &m) in plane.iter_mut().zip(&m) {
                    *v = *v * m + *v;
                }
            }
        });
    y
}

/// `(x * g_cw + x * g_hc + x * g_hw) / 3`, each gate broadcast over the dimension its ZPool
/// reduced: `g_cw [N, C, W]`, `g_hc [N, H, C]`, `g_hw [N, H, W]`.
pub fn triplet_forward(x: &[f32], g_cw: &[f32], g_hc: &[f32], g_hw: &[f32], d: Dims) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(d.sample())
        .zip(x.par_chunks(d.sample()))
        .enumerate()
        .for_each(|(n, (out, xs))| {
            let cw = &g_cw[n * d.c * d.w..(n + 1) * d.c * d.w];
            let hc = &g_hc[n * d.h * d.c..(n + 1) * d.h * d.c];
            let hw = &g_hw[n * d.h * d.w..(n + 1) * d.h * d.w];
            for (c, (plane, xp)) in out
                .chunks_exact_mut(d.h * d.w)
                .zip(xs.chunks_exact(d.h * d.w))
                .enumerate()
            {
                let cw_row = &cw[c * d.w..(c + 1) * d.w];
                for (h, (line, xl)) in plane
                    .chunks_exact_mut(d.w)
                    .zip(xp.chunks_exact(d.w))
                    .enumerate()
                {
                    let g2 = hc[h * d.c + c];
                    let hw_row = &hw[h * d.w..(h + 1) * d.w];
                    for (((o, &v), &g1), &g3) in line.iter_mut().zip(xl).zip(cw_row).zip(hw_row) {
                        *o = v * (g1 + g2 + g3) * (1.0 / 3.0);
                    }
                }
            }
        });
    y
}

/// Gradients of [`triplet_forward`]: `(dx, dg_cw, dg_hc, dg_hw)`.
pub fn triplet_backward(
    x: &[f32],
    g_cw: &[f32],
    g_hc: &[f32],
    g_hw: &[f32],
    dy: &[f32],
    d: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f32; x.len()];
    let mut d_cw = vec![0.0f32; g_cw.len()];
    let mut d_hc = vec![0.0f32; g_hc.len()];
    let mut d_hw = vec![0.0f32; g_hw.len()];
    let third = 1.0f32 / 3.0;
    dx.par_chunks_mut(d.sample())
        .zip(d_cw.par_chunks_mut(d.c * d.w))
        .zip(d_hc.par_chunks_mut(d.h * d.c))
        .zip(d_hw.par_chunks_mut(d.h * d.w))
        .enumerate()
        .for_each(|(n, (((dxs, dcw), dhc), dhw))| {
            let xs = &x[n * d.sample()..(n + 1) * d.sample()];
            let gs = &dy[n * d.sample()..(n + 1) * d.sample()];
            let cw = &g_cw[n * d.c * d.w..(n + 1) * d.c * d.w];
            let hc = &g_hc[n * d.h * d.c..(n + 1) * d.h * d.c];
            let hw = &g_hw[n * d.h * d.w..(n + 1) * d.h * d.w];
            let plane = d.h * d.w;
            for c in 0..d.c {
                let cw_row = &cw[c * d.w..(c + 1) * d.w];
                let dcw_row = &mut dcw[c * d.w..(c + 1) * d.w];
                for h in 0..d.h {
                    let at = c * plane + h * d.w;
                    let (xl, gl) = (&xs[at..at + d.w], &gs[at..at + d.w]);
                    let g2 = hc[h * d.c + c];
                    let hw_row = &hw[h * d.w..(h + 1) * d.w];
                    let dhw_row = &mut dhw[h * d.w..(h + 1) * d.w];
                    let mut row_sum = 0.0f32;
                    for w in 0..d.w {
                        let gx = gl[w] * xl[w] * third;
                        dxs[at + w] = gl[w] * (cw_row[w] + g2 + hw_row[w]) * third;
                        dcw_row[w] += gx;
                        dhw_row[w] += gx;
                        row_sum += gx;
                    }
                    dhc[h * d.c + c] = row_sum;
                }
            }
        });
    (dx, d_cw, d_hc, d_hw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// The batch norm + activation, straight from its definition, in f64.
    fn bn_reference(x: &[f32], s: Nchw, gamma: &[f32], beta: &[f32], act: Act) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for c in 0..s.c {
            let idx: Vec<usize> = (0..s.n)
                .flat_map(|n| (0..s.hw).map(move |p| (n * s.c + c) * s.hw + p))
                .collect();
            let m = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / idx.len() as f64;
            let v = idx.iter().map(|&i| (x[i] as f64 - m).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let z = (x[i] as f64 - m) / (v + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                y[i] = act.apply(z as f32) as f64;
            }
        }
        y
    }

    #[test]
    fn bn_act_forward_matches_the_definition() {
        let s = Nchw { n: 3, c: 5, hw: 37 };
        let x = pseudo_random(s.len(), 1);
        let gamma = pseudo_random(s.c, 2);
        let beta = pseudo_random(s.c, 3);
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let (y, _, _) = bn_act_train_forward(&x, s, &gamma, &beta, 1e-5, act);
            let want: Vec<f32> = bn_reference(&x, s, &gamma, &beta, act)
                .iter()
                .map(|&v| v as f32)
                .collect();
            close(&y, &want, 1e-5, "bn forward");
        }
    }

    #[test]
    fn bn_act_backward_matches_finite_differences() {
        let s = Nchw { n: 2, c: 3, hw: 19 };
        let x = pseudo_random(s.len(), 4);
        let gamma: Vec<f32> = pseudo_random(s.c, 5).iter().map(|g| g + 2.5).collect();
        let beta = pseudo_random(s.c, 6);
        let dy = pseudo_random(s.len(), 7);
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let (mean, var) = channel_stats(&x, s);
            let (dx, dgamma, dbeta) =
                bn_act_train_backward(&x, &dy, s, &gamma, &beta, &mean, &var, 1e-5, act);
            // loss = sum(dy * y), differentiated numerically in f64.
            let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
                bn_reference(x, s, gamma, beta, act)
                    .iter()
                    .zip(&dy)
                    .map(|(y, g)| y * *g as f64)
                    .sum()
            };
            let h = 1e-2f32;
            let numeric = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
            for i in [0, 5, 20, 57, s.len() - 1] {
                let num = numeric(&|d| {
                    let mut xp = x.clone();
                    xp[i] += d;
                    loss(&xp, &gamma, &beta)
                });
                assert!(
                    (dx[i] as f64 - num).abs() < 2e-2 * (1.0 + num.abs()),
                    "{act:?} dx[{i}]: {} vs {num}",
                    dx[i]
                );
            }
            for c in 0..s.c {
                let num_g = numeric(&|d| {
                    let mut gp = gamma.clone();
                    gp[c] += d;
                    loss(&x, &gp, &beta)
                });
                let num_b = numeric(&|d| {
                    let mut bp = beta.clone();
                    bp[c] += d;
                    loss(&x, &gamma, &bp)
                });
                assert!(
                    (dgamma[c] as f64 - num_g).abs() < 2e-2 * (1.0 + num_g.abs()),
                    "{act:?} dgamma[{c}]"
                );
                assert!(
                    (dbeta[c] as f64 - num_b).abs() < 2e-2 * (1.0 + num_b.abs()),
                    "{act:?} dbeta[{c}]"
                );
            }
        }
    }

    /// Depthwise convolution straight from its definition.
    fn dw_reference(x: &[f32], w: &[f32], g: Depthwise) -> Vec<f32> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut y = vec![0.0; g.n * g.c * oh * ow];
        for n in 0..g.n {
            for c in 0..g.c {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut acc = 0.0;
                        for kh in 0..g.kernel {
                            for kw in 0..g.kernel {
                                let ih = (r * g.stride + kh) as isize - g.pad as isize;
                                let iw = (q * g.stride + kw) as isize - g.pad as isize;
                                if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w
                                {
                                    acc += w[(c * g.kernel + kh) * g.kernel + kw]
                                        * x[((n * g.c + c) * g.h + ih as usize) * g.w
                                            + iw as usize];
                                }
                            }
                        }
                        y[((n * g.c + c) * oh + r) * ow + q] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn depthwise_matches_the_definition_and_its_adjoint() {
        for (kernel, stride, pad, h, w) in [
            (3, 1, 1, 7, 6),
            (3, 2, 1, 7, 8),
            (3, 2, 1, 6, 6),
            (1, 1, 0, 5, 4),
        ] {
            let g = Depthwise {
                n: 2,
                c: 3,
                h,
                w,
                kernel,
                stride,
                pad,
            };
            let x = pseudo_random(g.n * g.c * h * w, 8);
            let wt = pseudo_random(g.c * kernel * kernel, 9);
            let bias = pseudo_random(g.c, 10);
            let y = depthwise_forward(&x, &wt, Some(&bias), g);
            let mut want = dw_reference(&x, &wt, g);
            let plane = g.out_h() * g.out_w();
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[(i / plane) % g.c];
            }
            close(&y, &want, 1e-5, "depthwise forward");

            // <dy, conv(x)> is linear in x and w: its gradients are the adjoints.
            let dy = pseudo_random(y.len(), 11);
            let dx = depthwise_backward_input(&dy, &wt, g);
            for i in 0..x.len() {
                let mut e = vec![0.0; x.len()];
                e[i] = 1.0;
                let want: f32 = dw_reference(&e, &wt, g)
                    .iter()
                    .zip(&dy)
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (dx[i] - want).abs() < 1e-4,
                    "dx[{i}] {kernel}/{stride}: {} vs {want}",
                    dx[i]
                );
            }
            let (dw, db) = depthwise_backward_params(&x, &dy, g);
            for i in 0..wt.len() {
                let mut e = vec![0.0; wt.len()];
                e[i] = 1.0;
                let want: f32 = dw_reference(&x, &e, g)
                    .iter()
                    .zip(&dy)
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (dw[i] - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "dw[{i}]: {} vs {want}",
                    dw[i]
                );
            }
            for (c, &got) in db.iter().enumerate() {
                let want: f32 = dy.chunks(plane).skip(c).step_by(g.c).flatten().sum();
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "db[{c}]");
            }
        }
    }

    #[test]
    fn zpool_and_triplet_match_the_permuted_definitions() {
        let d = Dims {
            n: 2,
            c: 3,
            h: 4,
            w: 5,
        };
        let x = pseudo_random(d.n * d.sample(), 12);
        let at = |n: usize, c: usize, h: usize, w: usize| x[((n * d.c + c) * d.h + h) * d.w + w];
        for axis in [Axis::Channel, Axis::Height, Axis::Width] {
            let (a, b) = axis.pooled(d);
            let (pooled, argmax) = zpool_forward(&x, d, axis);
            for n in 0..d.n {
                for i in 0..a {
                    for j in 0..b {
                        let along: Vec<f32> = (0..axis.size(d))
                            .map(|k| match axis {
                                Axis::Channel => at(n, k, i, j),
                                Axis::Height => at(n, i, k, j),
                                Axis::Width => at(n, j, i, k),
                            })
                            .collect();
                        let max = along.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        let mean = along.iter().sum::<f32>() / along.len() as f32;
                        let o = (n * 2 * a + i) * b + j;
                        assert_eq!(pooled[o], max, "{axis:?} max");
                        assert!((pooled[o + a * b] - mean).abs() < 1e-6, "{axis:?} mean");
                        assert_eq!(along[argmax[(n * a + i) * b + j] as usize], max);
                    }
                }
            }
            // The backward pass is the adjoint of the forward on the mean channel and routes
            // the max channel to the arg-max.
            let g = pseudo_random(pooled.len(), 13);
            let dx = zpool_backward(&g, &argmax, d, axis);
            let lhs: f32 = pooled.iter().zip(&g).map(|(p, g)| p * g).sum();
            let rhs: f32 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
                "{axis:?} adjoint: {lhs} vs {rhs}"
            );
        }
        let g_cw = pseudo_random(d.n * d.c * d.w, 14);
        let g_hc = pseudo_random(d.n * d.h * d.c, 15);
        let g_hw = pseudo_random(d.n * d.h * d.w, 16);
        let y = triplet_forward(&x, &g_cw, &g_hc, &g_hw, d);
        let dy = pseudo_random(y.len(), 17);
        let (dx, d_cw, d_hc, d_hw) = triplet_backward(&x, &g_cw, &g_hc, &g_hw, &dy, d);
        for n in 0..d.n {
            for c in 0..d.c {
                for h in 0..d.h {
                    for w in 0..d.w {
                        let i = ((n * d.c + c) * d.h + h) * d.w + w;
                        let gates = g_cw[(n * d.c + c) * d.w + w]
                            + g_hc[(n * d.h + h) * d.c + c]
                            + g_hw[(n * d.h + h) * d.w + w];
                        assert!((y[i] - x[i] * gates / 3.0).abs() < 1e-5);
                        assert!((dx[i] - dy[i] * gates / 3.0).abs() < 1e-5);
                    }
                }
            }
        }
        // Each gate gradient: the sum of dy * x / 3 over the broadcast dimension.
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let total = dot(&dy, &x) / 3.0;
        for grads in [&d_cw, &d_hc, &d_hw] {
            assert!((grads.iter().sum::<f32>() - total).abs() < 1e-3 * (1.0 + total.abs()));
        }
        let w0: f32 = (0..d.h).map(|h| dy[h * d.w] * x[h * d.w] / 3.0).sum();
        assert!((d_cw[0] - w0).abs() < 1e-5);
        let h0: f32 = (0..d.w).map(|w| dy[w] * x[w] / 3.0).sum();
        assert!((d_hc[0] - h0).abs() < 1e-5);
        let c0: f32 = (0..d.c)
            .map(|c| dy[c * d.h * d.w] * x[c * d.h * d.w] / 3.0)
            .sum();
        assert!((d_hw[0] - c0).abs() < 1e-5);
    }
}
