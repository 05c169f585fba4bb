//! 1x1 convolutions (and the stem, as im2col + this) as matrix products over channels-last
//! activations: `out[p, :] = act(in[p, :] W + b) (+ residual[p, :])` for every pixel `p` of
//! the batch, with the batch norm folded into `W` and `b`.
//!
//! The weights are packed once into panels of 16 output channels (the last panel 8 when the
//! padded width is not a multiple of 16), each panel `[k][16]`, so the inner loop reads two
//! contiguous vectors per input channel; a tile of [`ROWS`] pixels x 16 channels keeps twelve
//! accumulators in registers (the classic 6 x 16 AVX2 tile: 12 accumulators, 2 weight vectors,
//! 1 broadcast).

use std::ops::Range;

use rayon::prelude::*;

use super::simd::{Act, LANES, Lanes, SimdOp, dispatch};

/// Pixels of a register tile.
const ROWS: usize = 6;
/// Output channels of a full panel: two vectors.
const PANEL: usize = 2 * LANES;
/// Pixels handled per pass over the panels, so that their inputs stay in cache while every
/// panel streams past them.
const ROW_BLOCK: usize = 192;
/// Multiply-adds below which a product is not split over threads (a rayon fork and join
/// costs a few microseconds).
const PARALLEL_MACS: usize = 1 << 17;

/// `c` rounded up to whole vectors: the row stride of a channels-last activation.
pub fn padded(c: usize) -> usize {
    c.div_ceil(LANES) * LANES
}

/// A 1x1 convolution with its batch norm folded in, packed for [`Pointwise::run`].
#[derive(Debug, Clone)]
pub struct Pointwise {
    pub c_in: usize,
    pub c_out: usize,
    /// `c_in` padded: the row stride of the input.
    pub k: usize,
    /// `c_out` padded: the row stride of the output.
    pub n: usize,
    /// Panels of `PANEL` (the last maybe `LANES`) output channels, each `[k][width]`.
    packed: Vec<f32>,
    /// `[n]`, zero past `c_out`.
    bias: Vec<f32>,
    pub act: Act,
}

impl Pointwise {
    /// From `weight` `[c_out, c_in]` row-major, scaled per output channel by `scale`, plus
    /// `shift` (the folded batch norm).
    pub fn new(
        weight: &[f32],
        c_out: usize,
        c_in: usize,
        scale: &[f32],
        shift: &[f32],
        act: Act,
    ) -> Self {
        assert_eq!(weight.len(), c_out * c_in, "weight is [c_out, c_in]");
        let (k, n) = (padded(c_in), padded(c_out));
        let mut packed = Vec::with_capacity(k * n);
        for start in (0..n).step_by(PANEL) {
            let width = PANEL.min(n - start);
            for ci in 0..k {
                for co in start..start + width {
                    packed.push(if co < c_out && ci < c_in {
                        weight[co * c_in + ci] * scale[co]
                    } else {
                        0.0
                    });
                }
            }
        }
        let bias = (0..n)
            .map(|co| if co < c_out { shift[co] } else { 0.0 })
            .collect();
        Self {
            c_in,
            c_out,
            k,
            n,
            packed,
            bias,
            act,
        }
    }

    /// `out = act(input W + b) (+ residual)` for `input.len() / k` pixels; the padding
    /// channels of `input` must be finite (they meet zero weights). With `parallel`, a large
    /// enough product is split over rayon's pool: by pixels when there are many, else by
    /// panels of output channels (the deep layers of a batch-1 pass have 9 or 36 pixels and
    /// up to 1280 channels).
    pub fn forward(
        &self,
        input: &[f32],
        out: &mut [f32],
        residual: Option<&[f32]>,
        parallel: bool,
    ) {
        let pixels = input.len() / self.k;
        assert_eq!(input.len(), pixels * self.k, "input is [pixels, k]");
        assert_eq!(out.len(), pixels * self.n, "output is [pixels, n]");
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len(), "residual is [pixels, n]");
        }
        let threads = if parallel && pixels * self.k * self.n >= PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        let panels = self.n.div_ceil(PANEL);
        if threads > 1 && pixels >= threads * 4 * ROWS {
            // Whole tiles of pixels per task.
            let per_task = pixels.div_ceil(threads).div_ceil(ROWS) * ROWS;
            input
                .par_chunks(per_task * self.k)
                .zip(out.par_chunks_mut(per_task * self.n))
                .enumerate()
                .for_each(|(i, (input, out))| {
                    let residual = residual.map(|r| &r[i * per_task * self.n..][..out.len()]);
                    self.run_rows(input, out, residual);
                });
        } else if threads > 1 && panels > 1 {
            // Each task writes its panels' columns of every pixel.
            let split = panels.div_ceil(2) * PANEL;
            let (mut left, mut right): (Vec<&mut [f32]>, Vec<&mut [f32]>) = out
                .chunks_exact_mut(self.n)
                .map(|row| row.split_at_mut(split))
                .unzip();
            rayon::join(
                || self.run_columns(input, &mut left, 0..split, residual),
                || self.run_columns(input, &mut right, split..self.n, residual),
            );
        } else {
            self.run_rows(input, out, residual);
        }
    }

    /// Every column of the pixels of `input`, into the contiguous `out`.
    fn run_rows(&self, input: &[f32], out: &mut [f32], residual: Option<&[f32]>) {
        dispatch(Run {
            layer: self,
            input,
            out: Out::Contiguous(out),
            columns: 0..self.n,
            residual,
        });
    }

    /// Columns `columns` (whole panels) of every pixel, each pixel's into its row of `rows`
    /// (which starts at `columns.start`).
    fn run_columns(
        &self,
        input: &[f32],
        rows: &mut [&mut [f32]],
        columns: Range<usize>,
        residual: Option<&[f32]>,
    ) {
        dispatch(Run {
            layer: self,
            input,
            out: Out::Rows(rows),
            columns,
            residual,
        });
    }
}

/// Where a product writes: the whole `[pixels, n]` output, or one slice per pixel holding
/// some of its columns.
enum Out<'a, 'b> {
    Contiguous(&'a mut [f32]),
    Rows(&'a mut [&'b mut [f32]]),
}

struct Run<'a, 'b> {
    layer: &'a Pointwise,
    input: &'a [f32],
    out: Out<'a, 'b>,
    /// Output channels to compute, whole panels.
    columns: Range<usize>,
    residual: Option<&'a [f32]>,
}

impl SimdOp for Run<'_, '_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Run {
            layer,
            input,
            mut out,
            columns,
            residual,
        } = self;
        let (k, n) = (layer.k, layer.n);
        let pixels = input.len() / k;
        for block in (0..pixels).step_by(ROW_BLOCK) {
            let block_end = (block + ROW_BLOCK).min(pixels);
            for start in columns.clone().step_by(PANEL) {
                let width = PANEL.min(columns.end - start);
                let panel = &layer.packed[start * k..(start + width) * k];
                let bias = &layer.bias[start..start + width];
                let column = start - columns.start;
                let mut p = block;
                while p < block_end {
                    let rows = ROWS.min(block_end - p);
                    let tile = Tile {
                        input: &input[p * k..],
                        k,
                        panel,
                        bias,
                        residual: residual.map(|r| &r[p * n + start..]),
                        ldc: n,
                        act: layer.act,
                    };
                    macro_rules! go {
                        ($r:literal, $v:literal) => {{
                            let mut dst: [&mut [f32]; $r] = match &mut out {
                                Out::Contiguous(out) => {
                                    let mut it = out[p * n..(p + $r) * n].chunks_exact_mut(n);
                                    std::array::from_fn(|_| {
                                        &mut it.next().expect("R rows")[column..column + width]
                                    })
                                }
                                Out::Rows(out) => {
                                    let mut it = out[p..p + $r].iter_mut();
                                    std::array::from_fn(|_| {
                                        &mut it.next().expect("R rows")[column..column + width]
                                    })
                                }
                            };
                            tile.run::<L, $r, $v>(l, &mut dst);
                        }};
                    }
                    match (rows, width) {
                        (6, PANEL) => go!(6, 2),
                        (5, PANEL) => go!(5, 2),
                        (4, PANEL) => go!(4, 2),
                        (3, PANEL) => go!(3, 2),
                        (2, PANEL) => go!(2, 2),
                        (1, PANEL) => go!(1, 2),
                        (6, _) => go!(6, 1),
                        (5, _) => go!(5, 1),
                        (4, _) => go!(4, 1),
                        (3, _) => go!(3, 1),
                        (2, _) => go!(2, 1),
                        _ => go!(1, 1),
                    }
                    p += rows;
                }
            }
        }
    }
}

/// One register tile: `R` pixels from `input` (row stride `k`) by `V` vectors of output
/// channels.
struct Tile<'a> {
    input: &'a [f32],
    k: usize,
    panel: &'a [f32],
    bias: &'a [f32],
    /// From the tile's first pixel and column, row stride `ldc`.
    residual: Option<&'a [f32]>,
    ldc: usize,
    act: Act,
}

impl Tile<'_> {
    #[inline(always)]
    fn run<L: Lanes, const R: usize, const V: usize>(&self, l: L, out: &mut [&mut [f32]; R]) {
        let k = self.k;
        let rows: [&[f32]; R] = std::array::from_fn(|r| &self.input[r * k..][..k]);
        let mut acc = [[l.splat(0.0); V]; R];
        for v in 0..V {
            let b = l.load(&self.bias[v * LANES..]);
            for a in acc.iter_mut() {
                a[v] = b;
            }
        }
        let panel = &self.panel[..k * V * LANES];
        for kk in 0..k {
            // A loop, not `array::from_fn`: a closure would not get the kernel's instruction
            // set, and its vector operations would become calls.
            let mut w = [l.splat(0.0); V];
            for (v, w) in w.iter_mut().enumerate() {
                *w = l.load(&panel[(kk * V + v) * LANES..]);
            }
            for r in 0..R {
                let x = l.splat(rows[r][kk]);
                for v in 0..V {
                    acc[r][v] = l.mul_add(x, w[v], acc[r][v]);
                }
            }
        }
        for (r, (a, dst)) in acc.iter().zip(out.iter_mut()).enumerate() {
            for (v, &a) in a.iter().enumerate() {
                let mut y = self.act.apply_lanes(l, a);
                if let Some(res) = self.residual {
                    y = l.add(y, l.load(&res[r * self.ldc + v * LANES..]));
                }
                l.store(&mut dst[v * LANES..], y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_equals_the_definition() {
        // The last two are large enough to be split over threads, by pixels and by panels.
        for (pixels, c_in, c_out) in [
            (13, 16, 24),
            (7, 5, 3),
            (20, 32, 40),
            (1, 8, 16),
            (200, 64, 96),
            (9, 160, 200),
        ] {
            let weight: Vec<f32> = (0..c_out * c_in)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let scale: Vec<f32> = (0..c_out).map(|c| 0.5 + c as f32 * 0.1).collect();
            let shift: Vec<f32> = (0..c_out).map(|c| c as f32 * 0.01 - 0.1).collect();
            let layer = Pointwise::new(&weight, c_out, c_in, &scale, &shift, Act::Relu6);
            let (k, n) = (layer.k, layer.n);
            let input: Vec<f32> = (0..pixels * k)
                .map(|i| {
                    if i % k < c_in {
                        ((i * 13 % 17) as f32 - 8.0) * 0.2
                    } else {
                        0.0
                    }
                })
                .collect();
            let residual: Vec<f32> = (0..pixels * n).map(|i| i as f32 * 0.001).collect();
            let mut out = vec![f32::NAN; pixels * n];
            layer.forward(&input, &mut out, Some(&residual), false);
            let mut split = vec![f32::NAN; pixels * n];
            layer.forward(&input, &mut split, Some(&residual), true);
            assert_eq!(out, split, "split over threads, the same sums");
            for p in 0..pixels {
                for co in 0..c_out {
                    let sum: f32 = (0..c_in)
                        .map(|ci| input[p * k + ci] * weight[co * c_in + ci])
                        .sum();
                    let want = (sum * scale[co] + shift[co]).clamp(0.0, 6.0) + residual[p * n + co];
                    let got = out[p * n + co];
                    // Round-off of a sum in another order: relative to the terms' size.
                    let size: f32 = (0..c_in)
                        .map(|ci| (input[p * k + ci] * weight[co * c_in + ci] * scale[co]).abs())
                        .sum();
                    let tolerance = 1e-6 * (1.0 + size);
                    assert!((got - want).abs() < tolerance, "{p} {co}: {got} vs {want}");
                }
            }
        }
    }
}
