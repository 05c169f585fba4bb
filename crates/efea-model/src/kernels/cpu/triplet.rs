//! Triplet attention: ZPool along one axis, and the gated average of the three branches.

use rayon::prelude::*;

use super::vectorized;

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

/// Folds `line`, the values at index `at` along the pooled axis, into the running maxima (with
/// the index of the first of each) and sums.
#[inline(always)]
fn fold_max_sum(max: &mut [f32], sum: &mut [f32], idx: &mut [u32], line: &[f32], at: u32) {
    for (((m, s), i), &v) in max.iter_mut().zip(sum.iter_mut()).zip(idx).zip(line) {
        if v > *m {
            *m = v;
            *i = at;
        }
        *s += v;
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
            vectorized(|| {
                let (max, mean) = out.split_at_mut(a * b);
                max.fill(f32::NEG_INFINITY);
                match axis {
                    Axis::Channel => {
                        for (c, plane) in xs.chunks_exact(d.h * d.w).enumerate() {
                            fold_max_sum(max, mean, idx, plane, c as u32);
                        }
                    }
                    Axis::Height => {
                        for (c, plane) in xs.chunks_exact(d.h * d.w).enumerate() {
                            let row = c * d.w..(c + 1) * d.w;
                            let (m_row, s_row, i_row) =
                                (&mut max[row.clone()], &mut mean[row.clone()], &mut idx[row]);
                            for (h, line) in plane.chunks_exact(d.w).enumerate() {
                                fold_max_sum(m_row, s_row, i_row, line, h as u32);
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
            })
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
            vectorized(|| {
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
            })
        });
    dx
}

/// `(x * g_cw + x * g_hc + x * g_hw) / 3`, each gate broadcast over the dimension its ZPool
/// reduced: `g_cw [N, C, W]`, `g_hc [N, H, C]`, `g_hw [N, H, W]`.
pub fn triplet_forward(x: &[f32], g_cw: &[f32], g_hc: &[f32], g_hw: &[f32], d: Dims) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(d.sample())
        .zip(x.par_chunks(d.sample()))
        .enumerate()
        .for_each(|(n, (out, xs))| {
            vectorized(|| {
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
                        for (((o, &v), &g1), &g3) in line.iter_mut().zip(xl).zip(cw_row).zip(hw_row)
                        {
                            *o = v * (g1 + g2 + g3) * (1.0 / 3.0);
                        }
                    }
                }
            })
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
            vectorized(|| {
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
            })
        });
    (dx, d_cw, d_hc, d_hw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::testing::pseudo_random;

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
