//! The depthwise 3x3 convolution of an inverted residual block (padding 1, stride 1 or 2),
//! its batch norm folded in and ReLU6 applied, on one channels-last sample.
//!
//! Channels-last makes every tap a contiguous vector of eight channels whatever the stride or
//! the width of the map, so the short rows of the deep stages and the stride-2 blocks
//! vectorise like the rest. For each output row and vector of channels the nine weight
//! vectors stay in registers while the row is swept.

use rayon::prelude::*;

use super::simd::{LANES, Lanes, SimdOp, dispatch};

/// Multiply-adds below which a map is not split over threads.
const PARALLEL_MACS: usize = 1 << 16;

/// A depthwise 3x3 convolution (padding 1) + folded batch norm + ReLU6.
#[derive(Debug, Clone)]
pub struct Depthwise {
    pub channels: usize,
    pub stride: usize,
    /// `[9][channels]`: tap `ky * 3 + kx`, scaled by the batch norm.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Output length of a 3x3, padding 1 convolution with `stride`.
pub fn output_len(len: usize, stride: usize) -> usize {
    (len - 1) / stride + 1
}

impl Depthwise {
    /// From `weight` `[channels, 1, 3, 3]` row-major and the folded batch norm.
    pub fn new(
        weight: &[f32],
        channels: usize,
        stride: usize,
        scale: &[f32],
        shift: &[f32],
    ) -> Self {
        assert_eq!(weight.len(), channels * 9, "weight is [C, 1, 3, 3]");
        assert!(channels.is_multiple_of(LANES), "whole vectors of channels");
        let mut packed = vec![0.0; 9 * channels];
        for c in 0..channels {
            for t in 0..9 {
                packed[t * channels + c] = weight[c * 9 + t] * scale[c];
            }
        }
        Self {
            channels,
            stride,
            weight: packed,
            bias: shift.to_vec(),
        }
    }

    /// `input` `[h, w, C]` -> `out` `[h', w', C]`; with `parallel`, bands of output rows
    /// over rayon's pool when the map is large enough.
    pub fn forward(&self, input: &[f32], h: usize, w: usize, out: &mut [f32], parallel: bool) {
        assert_eq!(input.len(), h * w * self.channels);
        let (oh, ow) = (output_len(h, self.stride), output_len(w, self.stride));
        let row = ow * self.channels;
        assert_eq!(out.len(), oh * row);
        let threads = if parallel && out.len() * 9 >= PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        let band = oh.div_ceil(threads);
        out.par_chunks_mut(band * row)
            .enumerate()
            .for_each(|(i, out)| {
                dispatch(Run {
                    layer: self,
                    input,
                    h,
                    w,
                    first_row: i * band,
                    out,
                })
            });
    }
}

struct Run<'a> {
    layer: &'a Depthwise,
    input: &'a [f32],
    h: usize,
    w: usize,
    /// The output row `out` starts at; it holds whole rows.
    first_row: usize,
    out: &'a mut [f32],
}

impl SimdOp for Run<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Run {
            layer,
            input,
            h,
            w,
            first_row,
            out,
        } = self;
        let (c, s) = (layer.channels, layer.stride);
        let ow = output_len(w, s);
        let rows_out = out.len() / (ow * c);
        // Output columns whose three taps are all inside the input.
        let x_lo = 1.min(ow);
        let x_hi = if w >= 2 { ((w - 2) / s + 1).min(ow) } else { 0 }.max(x_lo);
        let zero = l.splat(0.0);
        let six = l.splat(6.0);
        for (r, out_row) in out.chunks_exact_mut(ow * c).enumerate().take(rows_out) {
            let oy = first_row + r;
            let rows: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
                let iy = (oy * s + ky).checked_sub(1)?;
                (iy < h).then(|| &input[iy * w * c..(iy + 1) * w * c])
            });
            for cb in (0..c).step_by(LANES) {
                // No closures around vector operations: a closure is compiled without the
                // kernel's instruction set, and each operation inside it becomes a call.
                let mut taps = [zero; 9];
                for (t, tap) in taps.iter_mut().enumerate() {
                    *tap = l.load(&layer.weight[t * c + cb..]);
                }
                let bias = l.load(&layer.bias[cb..]);
                for ox in (0..x_lo).chain(x_hi..ow) {
                    let acc = border(l, &rows, ox * s, w, c, cb, &taps, bias);
                    l.store(&mut out_row[ox * c + cb..], l.min(l.max(acc, zero), six));
                }
                if let [Some(r0), Some(r1), Some(r2)] = rows {
                    // All three input rows inside: nine taps, no checks.
                    for ox in x_lo..x_hi {
                        let at = (ox * s - 1) * c + cb;
                        let (a, b, d) = (
                            &r0[at..at + 2 * c + LANES],
                            &r1[at..at + 2 * c + LANES],
                            &r2[at..at + 2 * c + LANES],
                        );
                        let mut acc = l.mul_add(l.load(a), taps[0], bias);
                        acc = l.mul_add(l.load(&a[c..]), taps[1], acc);
                        acc = l.mul_add(l.load(&a[2 * c..]), taps[2], acc);
                        acc = l.mul_add(l.load(b), taps[3], acc);
                        acc = l.mul_add(l.load(&b[c..]), taps[4], acc);
                        acc = l.mul_add(l.load(&b[2 * c..]), taps[5], acc);
                        acc = l.mul_add(l.load(d), taps[6], acc);
                        acc = l.mul_add(l.load(&d[c..]), taps[7], acc);
                        acc = l.mul_add(l.load(&d[2 * c..]), taps[8], acc);
                        l.store(&mut out_row[ox * c + cb..], l.min(l.max(acc, zero), six));
                    }
                    continue;
                }
                for ox in x_lo..x_hi {
                    let mut acc = bias;
                    let at = (ox * s - 1) * c + cb;
                    for (ky, row) in rows.iter().enumerate() {
                        let Some(row) = row else { continue };
                        let row = &row[at..at + 2 * c + LANES];
                        acc = l.mul_add(l.load(row), taps[ky * 3], acc);
                        acc = l.mul_add(l.load(&row[c..]), taps[ky * 3 + 1], acc);
                        acc = l.mul_add(l.load(&row[2 * c..]), taps[ky * 3 + 2], acc);
                    }
                    l.store(&mut out_row[ox * c + cb..], l.min(l.max(acc, zero), six));
                }
            }
        }
    }
}

/// One output pixel at a border: the taps checked one by one (`x0 = ox * stride`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn border<L: Lanes>(
    l: L,
    rows: &[Option<&[f32]>; 3],
    x0: usize,
    w: usize,
    c: usize,
    cb: usize,
    taps: &[L::V; 9],
    bias: L::V,
) -> L::V {
    let mut acc = bias;
    for (ky, row) in rows.iter().enumerate() {
        let Some(row) = row else { continue };
        for kx in 0..3 {
            let Some(ix) = (x0 + kx).checked_sub(1) else {
                continue;
            };
            if ix < w {
                acc = l.mul_add(l.load(&row[ix * c + cb..]), taps[ky * 3 + kx], acc);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_direct_convolution() {
        for (h, w, stride) in [
            (7, 5, 1),
            (7, 5, 2),
            (6, 6, 2),
            (1, 1, 1),
            (2, 3, 2),
            (3, 3, 1),
        ] {
            let c = 16;
            let weight: Vec<f32> = (0..c * 9)
                .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.1)
                .collect();
            let scale: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.05).collect();
            let shift: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.5).collect();
            let layer = Depthwise::new(&weight, c, stride, &scale, &shift);
            let input: Vec<f32> = (0..h * w * c)
                .map(|i| ((i * 7 % 19) as f32 - 9.0) * 0.3)
                .collect();
            let (oh, ow) = (output_len(h, stride), output_len(w, stride));
            let mut out = vec![f32::NAN; oh * ow * c];
            layer.forward(&input, h, w, &mut out, false);
            let mut split = vec![f32::NAN; oh * ow * c];
            layer.forward(&input, h, w, &mut split, true);
            assert_eq!(out, split, "bands over threads, the same sums");
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut sum = 0.0;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (
                                    (oy * stride + ky) as isize - 1,
                                    (ox * stride + kx) as isize - 1,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    sum += input[((iy as usize) * w + ix as usize) * c + ch]
                                        * weight[ch * 9 + ky * 3 + kx];
                                }
                            }
                        }
                        let want = (sum * scale[ch] + shift[ch]).clamp(0.0, 6.0);
                        let got = out[(oy * ow + ox) * c + ch];
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{h}x{w}/{stride} at {oy},{ox},{ch}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
