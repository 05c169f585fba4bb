//! The multi-scale channel aggregator (MODEL.md "MSCA") on channels-last taps of a batch:
//! laterals as folded 1x1 products, PyTorch's adaptive average pool to P7's grid, two
//! attentional feature fusions, the global average.

use super::pointwise::{Pointwise, padded};
use super::simd::sigmoid;

/// One attentional feature fusion: `2 x w + 2 y (1 - w)`, `w = sigmoid(L(z) + G(mean z))`.
#[derive(Debug, Clone)]
pub struct Aff {
    /// Local branch: `D -> D/r` (ReLU), `D/r -> D`.
    pub local: [Pointwise; 2],
    /// Global branch, the same on the per-sample mean of `z`.
    pub global: [Pointwise; 2],
}

/// MSCA with folded, packed weights.
#[derive(Debug, Clone)]
pub struct Msca {
    /// Laterals of P3, P5, P7 (ReLU).
    pub lateral: [Pointwise; 3],
    pub fuse: [Aff; 2],
    /// `D`.
    pub channels: usize,
}

/// Scratch buffers of [`Msca::forward`].
#[derive(Debug, Default)]
pub struct MscaScratch {
    lateral: Vec<f32>,
    p: [Vec<f32>; 3],
    fused: Vec<f32>,
    z: Vec<f32>,
    hidden: Vec<f32>,
    local: Vec<f32>,
    mean: Vec<f32>,
    global_hidden: Vec<f32>,
    global: Vec<f32>,
}

fn grow(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// PyTorch's adaptive pooling bins: `[floor(i * len / out), ceil((i + 1) * len / out))`.
fn bin(i: usize, len: usize, out: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
}

/// Adaptive average pool of `n` channels-last maps `[h, w, c]` to `[oh, ow, c]`.
fn adaptive_avg_pool(
    x: &[f32],
    n: usize,
    [h, w, c]: [usize; 3],
    [oh, ow]: [usize; 2],
    out: &mut [f32],
) {
    for s in 0..n {
        let image = &x[s * h * w * c..][..h * w * c];
        for oy in 0..oh {
            let (y0, y1) = bin(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = bin(ox, w, ow);
                let dst = &mut out[((s * oh + oy) * ow + ox) * c..][..c];
                dst.fill(0.0);
                for y in y0..y1 {
                    for xx in x0..x1 {
                        for (d, v) in dst.iter_mut().zip(&image[(y * w + xx) * c..][..c]) {
                            *d += v;
                        }
                    }
                }
                let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            }
        }
    }
}

/// Per-sample mean over the positions of `[n, positions, c]`.
pub fn mean_positions(x: &[f32], n: usize, c: usize, out: &mut [f32]) {
    let positions = x.len() / (n * c);
    let inv = 1.0 / positions as f32;
    for (dst, image) in out.chunks_exact_mut(c).zip(x.chunks_exact(positions * c)) {
        dst.fill(0.0);
        for pixel in image.chunks_exact(c) {
            for (d, v) in dst.iter_mut().zip(pixel) {
                *d += v;
            }
        }
        for d in dst.iter_mut() {
            *d *= inv;
        }
    }
}

impl Msca {
    /// `f_ms` `[n, padded(D)]` of the taps `[n, h_i, w_i, c_i]`.
    pub fn forward(
        &self,
        taps: [&[f32]; 3],
        dims: [[usize; 3]; 3],
        n: usize,
        parallel: bool,
        out: &mut [f32],
        scratch: &mut MscaScratch,
    ) {
        let d = padded(self.channels);
        let [_, _, [h7, w7, _]] = dims;
        let positions = n * h7 * w7;
        for i in 0..3 {
            let [h, w, _] = dims[i];
            let lateral = grow(&mut scratch.lateral, n * h * w * d);
            self.lateral[i].forward(taps[i], lateral, None, parallel);
            let p = grow(&mut scratch.p[i], positions * d);
            if [h, w] == [h7, w7] {
                p.copy_from_slice(lateral);
            } else {
                adaptive_avg_pool(lateral, n, [h, w, d], [h7, w7], p);
            }
        }
        // F = AFF_2(AFF_1(P7, P5), P3); P5's buffer is free for F once AFF_1 has read it.
        let len = positions * d;
        let mut first = std::mem::take(&mut scratch.fused);
        grow(&mut first, len);
        let [p3, mut p5, p7] = std::mem::take(&mut scratch.p);
        self.fuse[0].forward(&p7[..len], &p5[..len], n, &mut first[..len], scratch);
        self.fuse[1].forward(&first[..len], &p3[..len], n, &mut p5[..len], scratch);
        mean_positions(&p5[..len], n, d, out);
        scratch.p = [p3, p5, p7];
        scratch.fused = first;
    }
}

impl Aff {
    fn forward(&self, x: &[f32], y: &[f32], n: usize, out: &mut [f32], scratch: &mut MscaScratch) {
        let d = self.local[1].n;
        let hidden = self.local[0].n;
        let positions = x.len() / d;
        let z = grow(&mut scratch.z, positions * d);
        for ((z, a), b) in z.iter_mut().zip(x).zip(y) {
            *z = a + b;
        }
        let z = &scratch.z[..positions * d];
        let h = grow(&mut scratch.hidden, positions * hidden);
        self.local[0].forward(z, h, None, false);
        let local = grow(&mut scratch.local, positions * d);
        self.local[1].forward(&scratch.hidden[..positions * hidden], local, None, false);
        let mean = grow(&mut scratch.mean, n * d);
        mean_positions(z, n, d, mean);
        let gh = grow(&mut scratch.global_hidden, n * hidden);
        self.global[0].forward(&scratch.mean[..n * d], gh, None, false);
        let global = grow(&mut scratch.global, n * d);
        self.global[1].forward(&scratch.global_hidden[..n * hidden], global, None, false);
        let local = &scratch.local[..positions * d];
        let per_sample = positions / n;
        for (p, ((o, (a, b)), l)) in out
            .chunks_exact_mut(d)
            .zip(x.chunks_exact(d).zip(y.chunks_exact(d)))
            .zip(local.chunks_exact(d))
            .enumerate()
        {
            let g = &scratch.global[(p / per_sample) * d..][..d];
            for i in 0..d {
                let w = sigmoid(l[i] + g[i]);
                o[i] = 2.0 * a[i] * w + 2.0 * b[i] * (1.0 - w);
            }
        }
    }
}
