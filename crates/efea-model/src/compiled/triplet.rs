//! Triplet attention (MODEL.md `T`) on one channels-last sample `[H, W, C]`: the three ZPools
//! read straight from the activation into zero-bordered maps, each 7x7 gate convolution (its
//! batch norm folded, then a sigmoid) is computed eight outputs at a time along the map's
//! contiguous axis, and one pass writes `x * (g_cw + g_hc + g_hw) / 3`.
//!
//! Each map is laid out with its longer axis contiguous: the (channel, width) map of the
//! first gate as `[W][C]` (its kernel transposed to match), the (height, channel) map as
//! `[H][C]`, the spatial one as `[H][W]`; the gates come out in the layout the final pass reads.

use super::simd::{LANES, Lanes, SimdOp, dispatch, sigmoid};

/// The gate convolution's kernel side and padding (MODEL.md: 7x7, pad 3).
const K: usize = 7;
const PAD: usize = 3;

/// One gate: `sigmoid(BN(conv7x7(ZPool)))` with the batch norm folded in.
#[derive(Debug, Clone)]
pub struct Gate {
    /// `[2][7][7]` (max map, then mean map), rows along the map's first axis as laid out here.
    weight: [f32; 2 * K * K],
    bias: f32,
}

impl Gate {
    /// From the convolution's `[1, 2, 7, 7]` weight, the folded batch norm, and whether the
    /// map is laid out transposed with respect to PyTorch's (then the kernel is too).
    pub fn new(weight: &[f32], scale: f32, shift: f32, transposed: bool) -> Self {
        assert_eq!(weight.len(), 2 * K * K, "a [1, 2, 7, 7] kernel");
        let mut packed = [0.0; 2 * K * K];
        for ch in 0..2 {
            for a in 0..K {
                for b in 0..K {
                    let (r, c) = if transposed { (b, a) } else { (a, b) };
                    packed[(ch * K + r) * K + c] = weight[(ch * K + a) * K + b] * scale;
                }
            }
        }
        Self {
            weight: packed,
            bias: shift,
        }
    }
}

/// The three gates of triplet attention.
#[derive(Debug, Clone)]
pub struct Triplet {
    /// Channels meet width: pooled over the height, laid out `[W][C]`.
    pub cw: Gate,
    /// Height meets channels: pooled over the width, `[H][C]`.
    pub hc: Gate,
    /// The spatial gate: pooled over the channels, `[H][W]`.
    pub hw: Gate,
}

/// Scratch buffers of [`Triplet::forward`].
#[derive(Debug, Default)]
pub struct TripletScratch {
    map: Vec<f32>,
    g_cw: Vec<f32>,
    g_hc: Vec<f32>,
    g_hw: Vec<f32>,
}

/// A zero-bordered two-channel map of `rows x cols`: the row stride leaves room for the
/// border and for a full vector read at the last column block.
fn map_stride(cols: usize) -> usize {
    cols.div_ceil(LANES) * LANES + 2 * LANES
}

fn map_len(rows: usize, cols: usize) -> usize {
    2 * (rows + 2 * PAD) * map_stride(cols)
}

impl Triplet {
    /// `out = x * (g_cw + g_hc + g_hw) / 3` for one sample `x` `[h, w, c]`.
    pub fn forward(
        &self,
        x: &[f32],
        [h, w, c]: [usize; 3],
        out: &mut [f32],
        scratch: &mut TripletScratch,
    ) {
        assert_eq!(x.len(), h * w * c);
        assert_eq!(out.len(), x.len());
        assert!(c.is_multiple_of(LANES), "whole vectors of channels");
        let TripletScratch {
            map,
            g_cw,
            g_hc,
            g_hw,
        } = scratch;
        for (buffer, len) in [
            (&mut *g_cw, w * map_stride(c)),
            (&mut *g_hc, h * map_stride(c)),
            (&mut *g_hw, h * map_stride(w)),
        ] {
            buffer.resize(buffer.len().max(len), 0.0);
        }
        let longest = map_len(w, c).max(map_len(h, c)).max(map_len(h, w));
        map.resize(map.len().max(longest), 0.0);
        dispatch(Run {
            triplet: self,
            x,
            dims: [h, w, c],
            out,
            map,
            g_cw,
            g_hc,
            g_hw,
        });
    }
}

struct Run<'a> {
    triplet: &'a Triplet,
    x: &'a [f32],
    dims: [usize; 3],
    out: &'a mut [f32],
    map: &'a mut [f32],
    g_cw: &'a mut [f32],
    g_hc: &'a mut [f32],
    g_hw: &'a mut [f32],
}

/// Which ZPool fills the map.
#[derive(Clone, Copy)]
enum Pool {
    /// Over the height: `[W][C]`.
    Height,
    /// Over the width: `[H][C]`.
    Width,
    /// Over the channels: `[H][W]`.
    Channel,
}

impl SimdOp for Run<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let [h, w, c] = self.dims;
        let t = self.triplet;
        pool_and_gate(
            l,
            self.x,
            self.dims,
            Pool::Height,
            &t.cw,
            self.map,
            self.g_cw,
        );
        pool_and_gate(
            l,
            self.x,
            self.dims,
            Pool::Width,
            &t.hc,
            self.map,
            self.g_hc,
        );
        pool_and_gate(
            l,
            self.x,
            self.dims,
            Pool::Channel,
            &t.hw,
            self.map,
            self.g_hw,
        );
        let (sc, sw) = (map_stride(c), map_stride(w));
        let third = l.splat(1.0 / 3.0);
        for y in 0..h {
            for xx in 0..w {
                let g = l.splat(self.g_hw[y * sw + xx]);
                let at = (y * w + xx) * c;
                for cb in (0..c).step_by(LANES) {
                    let sum = l.add(
                        l.add(
                            l.load(&self.g_cw[xx * sc + cb..]),
                            l.load(&self.g_hc[y * sc + cb..]),
                        ),
                        g,
                    );
                    let v = l.mul(l.load(&self.x[at + cb..]), l.mul(sum, third));
                    l.store(&mut self.out[at + cb..], v);
                }
            }
        }
    }
}

/// Fills the zero-bordered map with `[max, mean]` of `pool`, then writes
/// `sigmoid(conv(map) + bias)` into `gate` (`[rows][map_stride(cols)]`).
#[inline(always)]
fn pool_and_gate<L: Lanes>(
    l: L,
    x: &[f32],
    [h, w, c]: [usize; 3],
    pool: Pool,
    gate: &Gate,
    map: &mut [f32],
    out: &mut [f32],
) {
    let (rows, cols) = match pool {
        Pool::Height => (w, c),
        Pool::Width => (h, c),
        Pool::Channel => (h, w),
    };
    let stride = map_stride(cols);
    let plane = (rows + 2 * PAD) * stride;
    let map = &mut map[..2 * plane];
    map.fill(0.0);
    let (max_map, mean_map) = map.split_at_mut(plane);
    let at = |r: usize, col: usize| (r + PAD) * stride + PAD + col;
    match pool {
        Pool::Height | Pool::Width => {
            let count = if matches!(pool, Pool::Height) { h } else { w };
            let inv = l.splat(1.0 / count as f32);
            for r in 0..rows {
                for cb in (0..c).step_by(LANES) {
                    let mut max = l.splat(f32::NEG_INFINITY);
                    let mut sum = l.splat(0.0);
                    for i in 0..count {
                        // (y, x) of the i-th element pooled into row r.
                        let (y, xx) = if matches!(pool, Pool::Height) {
                            (i, r)
                        } else {
                            (r, i)
                        };
                        let v = l.load(&x[(y * w + xx) * c + cb..]);
                        max = l.max(max, v);
                        sum = l.add(sum, v);
                    }
                    // Unaligned stores into the bordered row: the border lanes stay zero
                    // because the map's columns are whole vectors of real channels.
                    l.store(&mut max_map[at(r, cb)..], max);
                    l.store(&mut mean_map[at(r, cb)..], l.mul(sum, inv));
                }
            }
        }
        Pool::Channel => {
            let inv = 1.0 / c as f32;
            for y in 0..h {
                for xx in 0..w {
                    let pixel = &x[(y * w + xx) * c..][..c];
                    let mut max = l.splat(f32::NEG_INFINITY);
                    let mut sum = l.splat(0.0);
                    for cb in (0..c).step_by(LANES) {
                        let v = l.load(&pixel[cb..]);
                        max = l.max(max, v);
                        sum = l.add(sum, v);
                    }
                    let (max, sum) = (l.to_array(max), l.to_array(sum));
                    max_map[at(y, xx)] = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    mean_map[at(y, xx)] = sum.iter().sum::<f32>() * inv;
                }
            }
        }
    }
    // The 7x7 convolution, eight output columns at a time.
    let bias = l.splat(gate.bias);
    for r in 0..rows {
        for cb in (0..cols).step_by(LANES) {
            let mut acc = bias;
            for (ch, plane) in [&*max_map, &*mean_map].into_iter().enumerate() {
                for ky in 0..K {
                    let line = &plane[(r + ky) * stride + cb..][..K - 1 + LANES];
                    for kx in 0..K {
                        let wv = l.splat(gate.weight[(ch * K + ky) * K + kx]);
                        acc = l.mul_add(l.load(&line[kx..]), wv, acc);
                    }
                }
            }
            l.store(&mut out[r * stride + cb..], acc);
        }
        for v in &mut out[r * stride..r * stride + cols] {
            *v = sigmoid(*v);
        }
    }
}
