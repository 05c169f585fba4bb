//! Depthwise convolution: the two gradients (and, for the tests, the forward pass they are
//! the adjoints of).

use rayon::prelude::*;

use super::{min_items, sum1, sum2};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::testing::{close, pseudo_random};

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
}
