//! Depthwise convolution: the two gradients (and, for the tests, the forward pass they are
//! the adjoints of).

use rayon::prelude::*;

use super::{min_items, sum1, vectorized};

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
}

/// The zero-padded input plane of a depthwise convolution, split into its `stride x stride`
/// phases (phase `(a, b)` holds the padded plane's rows `a, a + s, ...` and columns
/// `b, b + s, ...`), each stored with row stride `wq` and room for the taps to reach past the
/// last output row.
///
/// In this layout every tap of the convolution is one shift of one phase: output `(r, q)`
/// reads tap `(kh, kw)` at `phase(kh % s, kw % s)[(r + kh / s) * wq + q + kw / s]`. An output
/// plane stored with the same row stride `wq` (its columns past `out_w` are padding) is
/// therefore a sum of `k * k` shifted copies of the phases, and each gradient is a product of
/// two such contiguous runs: every inner loop is one long vector loop over the plane instead
/// of a short one per row, whatever the stride, and no row is clipped at the border.
#[derive(Debug, Clone)]
struct Phases {
    g: Depthwise,
    /// Row stride of a phase.
    wq: usize,
    /// Length of a phase buffer.
    len: usize,
    /// Length of an output plane in this layout: `out_h * wq`.
    wide: usize,
    /// Each tap's `(first value of its phase + shift)`, row by row of the kernel.
    taps: Vec<usize>,
    /// The phase rows that hold input values (the rest of the phases stay zero).
    rows: Vec<PhaseRow>,
}

/// A row of a phase that holds input values: its columns `cols` hold input row `row`'s
/// columns `first, first + stride, ...`.
#[derive(Debug, Clone)]
struct PhaseRow {
    /// Index of the row's first value in the phases' buffer.
    start: usize,
    /// Input row.
    row: usize,
    /// Phase columns holding input values.
    cols: std::ops::Range<usize>,
    /// Input column of `cols.start`.
    first: usize,
}

impl Phases {
    fn new(g: Depthwise) -> Self {
        let (s, p, k) = (g.stride, g.pad, g.kernel);
        let hq = (g.h + 2 * p).div_ceil(s);
        let wq = (g.w + 2 * p).div_ceil(s);
        let reach = (k - 1) / s;
        let wide = g.out_h() * wq;
        let len = (hq * wq).max(wide + reach * wq + reach);
        let taps = (0..k * k)
            .map(|t| {
                let (kh, kw) = (t / k, t % k);
                let phase = (kh % s) * s + kw % s;
                phase * len + (kh / s) * wq + kw / s
            })
            .collect();
        let mut rows = Vec::new();
        for a in 0..s {
            for i in 0..hq {
                // Padded row i * s + a is input row i * s + a - pad.
                let r = i * s + a;
                if r < p || r - p >= g.h {
                    continue;
                }
                for b in 0..s {
                    // Phase column j holds input column j * s + b - pad: within 0..w for j in
                    // lo..hi.
                    let lo = p.saturating_sub(b).div_ceil(s);
                    let hi = (g.w + p).saturating_sub(b).div_ceil(s).min(wq);
                    if lo < hi {
                        rows.push(PhaseRow {
                            start: (a * s + b) * len + i * wq,
                            row: r - p,
                            cols: lo..hi,
                            first: lo * s + b - p,
                        });
                    }
                }
            }
        }
        Phases {
            g,
            wq,
            len,
            wide,
            taps,
            rows,
        }
    }

    /// The phases' buffer: `stride^2` phases of `len` values.
    fn buffer(&self) -> Vec<f32> {
        vec![0.0; self.g.stride * self.g.stride * self.len]
    }

    /// Writes `plane` (`h x w`) into the phases (whose padding must already be zero).
    fn split(&self, plane: &[f32], phases: &mut [f32]) {
        let (s, w) = (self.g.stride, self.g.w);
        for r in &self.rows {
            let src = &plane[r.row * w + r.first..(r.row + 1) * w];
            let dst = &mut phases[r.start + r.cols.start..r.start + r.cols.end];
            if s == 1 {
                dst.copy_from_slice(&src[..dst.len()]);
            } else {
                for (d, &v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                    *d = v;
                }
            }
        }
    }

    /// Reads `plane` (`h x w`) back out of the phases: the adjoint of [`Self::split`] (each
    /// input value lies in exactly one phase).
    fn merge(&self, phases: &[f32], plane: &mut [f32]) {
        let (s, w) = (self.g.stride, self.g.w);
        for r in &self.rows {
            let src = &phases[r.start + r.cols.start..r.start + r.cols.end];
            let dst = &mut plane[r.row * w + r.first..(r.row + 1) * w];
            if s == 1 {
                dst[..src.len()].copy_from_slice(src);
            } else {
                for (d, &v) in dst.iter_mut().step_by(s).zip(src) {
                    *d = v;
                }
            }
        }
    }

    /// Writes an output plane (`out_h x out_w`) into `wide` with row stride `wq`, zeros past
    /// `out_w`.
    fn widen(&self, plane: &[f32], wide: &mut [f32]) {
        let ow = self.g.out_w();
        for (dst, src) in wide.chunks_exact_mut(self.wq).zip(plane.chunks_exact(ow)) {
            dst[..ow].copy_from_slice(src);
            dst[ow..].fill(0.0);
        }
    }

    /// Reads an output plane back out of its wide form.
    fn narrow(&self, wide: &[f32], plane: &mut [f32]) {
        let ow = self.g.out_w();
        for (dst, src) in plane.chunks_exact_mut(ow).zip(wide.chunks_exact(self.wq)) {
            dst.copy_from_slice(&src[..ow]);
        }
    }
}

/// Forward depthwise convolution: `y[n,c] = sum_k w[c,k] * x[n,c,shifted by k] (+ bias[c])`.
pub fn depthwise_forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: Depthwise,
) -> Vec<f32> {
    let layout = Phases::new(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let k = g.kernel;
    let mut y = vec![0.0; g.n * g.c * oh * ow];
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(g.h * g.w))
        .with_min_len(min_items(g.h * g.w))
        .enumerate()
        .for_each_init(
            || (layout.buffer(), vec![0.0; layout.wide]),
            |(phases, wide), (i, (out, inp))| {
                vectorized(|| {
                    let c = i % g.c;
                    let filter = &weight[c * k * k..(c + 1) * k * k];
                    layout.split(inp, phases);
                    wide.fill(bias.map_or(0.0, |b| b[c]));
                    for (&tap, &wv) in layout.taps.iter().zip(filter) {
                        let src = &phases[tap..tap + layout.wide];
                        for (d, &v) in wide.iter_mut().zip(src) {
                            *d += wv * v;
                        }
                    }
                    layout.narrow(wide, out);
                })
            },
        );
    y
}

/// Gradient of [`depthwise_forward`] with respect to its input.
pub fn depthwise_backward_input(dy: &[f32], weight: &[f32], g: Depthwise) -> Vec<f32> {
    let layout = Phases::new(g);
    let mut dx = vec![0.0; g.n * g.c * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(dy.par_chunks(g.out_h() * g.out_w()))
        .with_min_len(min_items(g.h * g.w))
        .enumerate()
        .for_each_init(
            || (layout.buffer(), vec![0.0; layout.wide]),
            |(phases, wide), (i, (out, grad))| {
                vectorized(|| {
                    layout.widen(grad, wide);
                    input_gradient(&layout, weight, i % g.c, wide, phases, out);
                })
            },
        );
    dx
}

/// [`depthwise_backward_input`] written over `dy`, for a convolution whose output has its
/// input's shape (stride 1, "same" padding): each plane is copied out before its gradient
/// is written back, so no new buffer is allocated. `false` (and `dy` untouched) otherwise.
pub fn depthwise_backward_input_in_place(dy: &mut [f32], weight: &[f32], g: Depthwise) -> bool {
    if (g.out_h(), g.out_w()) != (g.h, g.w) || dy.len() != g.n * g.c * g.h * g.w {
        return false;
    }
    let layout = Phases::new(g);
    dy.par_chunks_mut(g.h * g.w)
        .with_min_len(min_items(g.h * g.w))
        .enumerate()
        .for_each_init(
            || (layout.buffer(), vec![0.0; layout.wide]),
            |(phases, wide), (i, plane)| {
                vectorized(|| {
                    layout.widen(plane, wide);
                    input_gradient(&layout, weight, i % g.c, wide, phases, plane);
                })
            },
        );
    true
}

/// The input gradient of one plane of channel `c` from its output gradient `wide` (in the wide
/// layout): every tap adds its weight times `wide` to its shifted phase, and the phases are
/// read back into `out`.
#[inline(always)]
fn input_gradient(
    layout: &Phases,
    weight: &[f32],
    c: usize,
    wide: &[f32],
    phases: &mut [f32],
    out: &mut [f32],
) {
    let kk = layout.taps.len();
    phases.fill(0.0);
    for (&tap, &wv) in layout.taps.iter().zip(&weight[c * kk..(c + 1) * kk]) {
        let dst = &mut phases[tap..tap + layout.wide];
        for (d, &v) in dst.iter_mut().zip(wide) {
            *d += wv * v;
        }
    }
    layout.merge(phases, out);
}

/// Gradients of [`depthwise_forward`] with respect to its weight `[C, 1, k, k]` and bias `[C]`.
///
/// Each tap's products are summed position by position over the batch in `f32` (a run of
/// `out_h * wq` partial sums), then each run in `f64`.
pub fn depthwise_backward_params(x: &[f32], dy: &[f32], g: Depthwise) -> (Vec<f32>, Vec<f32>) {
    let layout = Phases::new(g);
    let (oh, ow) = (g.out_h(), g.out_w());
    let (kk, len) = (g.kernel * g.kernel, layout.wide);
    let per_channel: Vec<(Vec<f32>, f32)> = (0..g.c)
        .into_par_iter()
        .with_min_len(min_items(g.n * g.h * g.w))
        .map_init(
            || (layout.buffer(), vec![0.0; len], vec![0.0; (kk + 1) * len]),
            |(phases, wide, acc), c| {
                vectorized(|| {
                    acc.fill(0.0);
                    let (acc_w, acc_b) = acc.split_at_mut(kk * len);
                    for n in 0..g.n {
                        let plane = n * g.c + c;
                        layout.split(&x[plane * g.h * g.w..(plane + 1) * g.h * g.w], phases);
                        layout.widen(&dy[plane * oh * ow..(plane + 1) * oh * ow], wide);
                        for (b, &v) in acc_b.iter_mut().zip(wide.iter()) {
                            *b += v;
                        }
                        for (&tap, run) in layout.taps.iter().zip(acc_w.chunks_exact_mut(len)) {
                            let src = &phases[tap..tap + len];
                            for ((a, &d), &v) in run.iter_mut().zip(wide.iter()).zip(src) {
                                *a += d * v;
                            }
                        }
                    }
                    let total = |run: &[f32]| sum1(run, |v| v) as f32;
                    let dw = acc_w.chunks_exact(len).map(total).collect();
                    (dw, total(acc_b))
                })
            },
        )
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
        // Both strides on even and odd sizes, planes down to one pixel, a kernel that reaches
        // two rows past its phase (5 at stride 2) and strides that leave phases empty.
        for (kernel, stride, pad, h, w) in [
            (3, 1, 1, 7, 6),
            (3, 2, 1, 7, 8),
            (3, 2, 1, 6, 6),
            (3, 2, 1, 3, 3),
            (3, 2, 1, 2, 2),
            (3, 1, 1, 1, 1),
            (3, 2, 1, 1, 1),
            (3, 2, 0, 7, 5),
            (5, 1, 2, 6, 7),
            (5, 2, 2, 9, 6),
            (3, 3, 1, 8, 7),
            (7, 1, 3, 4, 5),
            (1, 1, 0, 5, 4),
            (1, 2, 0, 5, 4),
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
            let mut in_place = dy.clone();
            if depthwise_backward_input_in_place(&mut in_place, &wt, g) {
                assert_eq!(in_place, dx, "in place {kernel}/{stride}");
            } else {
                assert_ne!((g.out_h(), g.out_w()), (h, w), "same shape, not in place");
                assert_eq!(in_place, dy, "left as it was");
            }
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
