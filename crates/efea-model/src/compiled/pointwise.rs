//! 1x1 convolutions (and the stem, as im2col + this) as matrix products over channels-last
//! activations: `out[p, :] = act(in[p, :] W + b) (+ residual[p, :])` for every pixel `p` of
//! the batch, with the batch norm folded into `W` and `b`.
//!
//! The weights are packed once into panels of 16 output channels (the last panel 8 when the
//! padded width is not a multiple of 16), each panel `[k][16]`, so the inner loop reads two
//! contiguous vectors per input channel; a tile of [`ROWS`] pixels x 16 channels keeps twelve
//! accumulators in registers (the classic 6 x 16 AVX2 tile: 12 accumulators, 2 weight vectors,
//! 1 broadcast).

use super::simd::{Act, LANES, Lanes, SimdOp, dispatch};

/// Pixels of a register tile.
const ROWS: usize = 6;
/// Output channels of a full panel: two vectors.
const PANEL: usize = 2 * LANES;
/// Pixels handled per pass over the panels, so that their inputs stay in cache while every
/// panel streams past them.
const ROW_BLOCK: usize = 192;

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
    /// channels of `input` must be finite (they meet zero weights).
    pub fn forward(&self, input: &[f32], out: &mut [f32], residual: Option<&[f32]>) {
        let pixels = input.len() / self.k;
        assert_eq!(input.len(), pixels * self.k, "input is [pixels, k]");
        assert_eq!(out.len(), pixels * self.n, "output is [pixels, n]");
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len(), "residual is [pixels, n]");
        }
        dispatch(Run {
            layer: self,
            input,
            out,
            residual,
        });
    }

    #[inline(always)]
    fn run<L: Lanes>(&self, l: L, input: &[f32], out: &mut [f32], residual: Option<&[f32]>) {
        let pixels = input.len() / self.k;
        for block in (0..pixels).step_by(ROW_BLOCK) {
            let block_end = (block + ROW_BLOCK).min(pixels);
            let mut offset = 0;
            for start in (0..self.n).step_by(PANEL) {
                let width = PANEL.min(self.n - start);
                let panel = &self.packed[offset..offset + width * self.k];
                offset += width * self.k;
                let bias = &self.bias[start..start + width];
                let mut p = block;
                while p < block_end {
                    let rows = ROWS.min(block_end - p);
                    let tile = Tile {
                        input: &input[p * self.k..],
                        k: self.k,
                        panel,
                        bias,
                        out: &mut out[p * self.n + start..],
                        ldc: self.n,
                        residual: residual.map(|r| &r[p * self.n + start..]),
                        act: self.act,
                    };
                    match (rows, width) {
                        (6, PANEL) => tile.run::<L, 6, 2>(l),
                        (5, PANEL) => tile.run::<L, 5, 2>(l),
                        (4, PANEL) => tile.run::<L, 4, 2>(l),
                        (3, PANEL) => tile.run::<L, 3, 2>(l),
                        (2, PANEL) => tile.run::<L, 2, 2>(l),
                        (1, PANEL) => tile.run::<L, 1, 2>(l),
                        (6, _) => tile.run::<L, 6, 1>(l),
                        (5, _) => tile.run::<L, 5, 1>(l),
                        (4, _) => tile.run::<L, 4, 1>(l),
                        (3, _) => tile.run::<L, 3, 1>(l),
                        (2, _) => tile.run::<L, 2, 1>(l),
                        _ => tile.run::<L, 1, 1>(l),
                    }
                    p += rows;
                }
            }
        }
    }
}

struct Run<'a> {
    layer: &'a Pointwise,
    input: &'a [f32],
    out: &'a mut [f32],
    residual: Option<&'a [f32]>,
}

impl SimdOp for Run<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        self.layer.run(l, self.input, self.out, self.residual);
    }
}

/// One register tile: `R` pixels from `input` (row stride `k`) by `V` vectors of output
/// channels.
struct Tile<'a> {
    input: &'a [f32],
    k: usize,
    panel: &'a [f32],
    bias: &'a [f32],
    out: &'a mut [f32],
    ldc: usize,
    residual: Option<&'a [f32]>,
    act: Act,
}

impl Tile<'_> {
    #[inline(always)]
    fn run<L: Lanes, const R: usize, const V: usize>(self, l: L) {
        let k = self.k;
        let rows: [&[f32]; R] = std::array::from_fn(|r| &self.input[r * k..][..k]);
        let mut acc = [[l.splat(0.0); V]; R];
        for v in 0..V {
            let b = l.load(&self.bias[v * LANES..]);
            for a in acc.iter_mut() {
                a[v] = b;
            }
        }
        for (kk, w) in self.panel.chunks_exact(V * LANES).enumerate().take(k) {
            // A loop, not `array::from_fn`: a closure would not get the kernel's instruction
            // set, and its vector operations would become calls.
            let mut wv = [l.splat(0.0); V];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = l.load(&w[v * LANES..]);
            }
            let w = wv;
            for r in 0..R {
                let x = l.splat(rows[r][kk]);
                for v in 0..V {
                    acc[r][v] = l.mul_add(x, w[v], acc[r][v]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (v, &a) in a.iter().enumerate() {
                let at = r * self.ldc + v * LANES;
                let mut y = self.act.apply(l, a);
                if let Some(res) = self.residual {
                    y = l.add(y, l.load(&res[at..]));
                }
                l.store(&mut self.out[at..], y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_equals_the_definition() {
        for (pixels, c_in, c_out) in [(13, 16, 24), (7, 5, 3), (20, 32, 40), (1, 8, 16)] {
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
            layer.forward(&input, &mut out, Some(&residual));
            for p in 0..pixels {
                for co in 0..c_out {
                    let sum: f32 = (0..c_in)
                        .map(|ci| input[p * k + ci] * weight[co * c_in + ci])
                        .sum();
                    let want = (sum * scale[co] + shift[co]).clamp(0.0, 6.0) + residual[p * n + co];
                    let got = out[p * n + co];
                    assert!((got - want).abs() < 1e-5, "{p} {co}: {got} vs {want}");
                }
            }
        }
    }
}
