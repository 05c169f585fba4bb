//! ULSAM subspace attention (MODEL.md `U`) on one channels-last sample, its batch norms
//! folded: `a = relu(scale * y + shift)` per channel, a 3x3 max pool (stride 1, the border
//! ignored, as PyTorch's `-inf` padding does), one map per subspace
//! `m_k = softmax_hw(relu(sum_c weight[c] * pooled[c] + bias_k))`, and `y * m_k + y`, with the
//! block's residual added in the same pass.

use super::simd::{LANES, Lanes, SimdOp, dispatch};

/// ULSAM with every subspace's parameters concatenated along the channels.
#[derive(Debug, Clone)]
pub struct Subspace {
    pub channels: usize,
    pub groups: usize,
    /// The depthwise 1x1 convolution and its batch norm, per channel.
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// The pointwise convolution to one map, with its batch norm's scale, per channel.
    weight: Vec<f32>,
    /// Per subspace.
    bias: Vec<f32>,
}

/// Scratch buffers of [`Subspace::forward`].
#[derive(Debug, Default)]
pub struct SubspaceScratch {
    activated: Vec<f32>,
    rows: Vec<f32>,
    maps: Vec<f32>,
    weighted: Vec<f32>,
    factor: Vec<f32>,
}

impl Subspace {
    pub fn new(scale: Vec<f32>, shift: Vec<f32>, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let channels = scale.len();
        assert!(channels.is_multiple_of(LANES), "whole vectors of channels");
        assert!(shift.len() == channels && weight.len() == channels);
        let groups = bias.len();
        assert!(channels.is_multiple_of(groups), "equal subspaces");
        Self {
            channels,
            groups,
            scale,
            shift,
            weight,
            bias,
        }
    }

    /// `out = y * m + y (+ residual)` for one sample `y` `[h, w, C]`.
    pub fn forward(
        &self,
        y: &[f32],
        [h, w]: [usize; 2],
        residual: Option<&[f32]>,
        out: &mut [f32],
        scratch: &mut SubspaceScratch,
    ) {
        let c = self.channels;
        let len = h * w * c;
        assert!(y.len() == len && out.len() == len);
        for (buffer, want) in [
            (&mut scratch.activated, len),
            (&mut scratch.rows, len),
            (&mut scratch.maps, self.groups * h * w),
            (&mut scratch.weighted, c),
            (&mut scratch.factor, c),
        ] {
            buffer.resize(buffer.len().max(want), 0.0);
        }
        dispatch(Run {
            layer: self,
            y,
            hw: [h, w],
            residual,
            out,
            scratch,
        });
    }
}

struct Run<'a> {
    layer: &'a Subspace,
    y: &'a [f32],
    hw: [usize; 2],
    residual: Option<&'a [f32]>,
    out: &'a mut [f32],
    scratch: &'a mut SubspaceScratch,
}

impl SimdOp for Run<'_> {
    type Output = ();
    #[inline(always)]
    fn run<L: Lanes>(self, l: L) {
        let Run {
            layer,
            y,
            hw: [h, w],
            residual,
            out,
            scratch,
        } = self;
        let c = layer.channels;
        let pixels = h * w;
        let width = c / layer.groups;
        let activated = &mut scratch.activated[..pixels * c];
        let rows = &mut scratch.rows[..pixels * c];
        let maps = &mut scratch.maps[..layer.groups * pixels];
        let zero = l.splat(0.0);
        // a = relu(scale * y + shift)
        for (a, v) in activated.chunks_exact_mut(c).zip(y.chunks_exact(c)) {
            for cb in (0..c).step_by(LANES) {
                let z = l.mul_add(
                    l.load(&v[cb..]),
                    l.load(&layer.scale[cb..]),
                    l.load(&layer.shift[cb..]),
                );
                l.store(&mut a[cb..], l.max(z, zero));
            }
        }
        // 3x3 max pool, separably: along each row, then along each column.
        for yy in 0..h {
            for xx in 0..w {
                let (lo, hi) = (xx.saturating_sub(1), (xx + 2).min(w));
                let dst = (yy * w + xx) * c;
                for cb in (0..c).step_by(LANES) {
                    let mut m = l.load(&activated[(yy * w + lo) * c + cb..]);
                    for x2 in lo + 1..hi {
                        m = l.max(m, l.load(&activated[(yy * w + x2) * c + cb..]));
                    }
                    l.store(&mut rows[dst + cb..], m);
                }
            }
        }
        let weighted = &mut scratch.weighted[..c];
        for yy in 0..h {
            let (lo, hi) = (yy.saturating_sub(1), (yy + 2).min(h));
            for xx in 0..w {
                for cb in (0..c).step_by(LANES) {
                    let mut m = l.load(&rows[(lo * w + xx) * c + cb..]);
                    for y2 in lo + 1..hi {
                        m = l.max(m, l.load(&rows[(y2 * w + xx) * c + cb..]));
                    }
                    l.store(&mut weighted[cb..], l.mul(m, l.load(&layer.weight[cb..])));
                }
                let p = yy * w + xx;
                for (k, part) in weighted.chunks_exact(width).enumerate() {
                    let z: f32 = part.iter().sum::<f32>() + layer.bias[k];
                    maps[k * pixels + p] = z.max(0.0);
                }
            }
        }
        // Softmax over the positions, per subspace.
        for map in maps.chunks_exact_mut(pixels) {
            let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in map.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in map.iter_mut() {
                *v *= inv;
            }
        }
        // y * m + y (+ residual), the factor 1 + m laid out along the channels.
        let factor = &mut scratch.factor[..c];
        for p in 0..pixels {
            for (k, part) in factor.chunks_exact_mut(width).enumerate() {
                part.fill(maps[k * pixels + p]);
            }
            let at = p * c;
            for cb in (0..c).step_by(LANES) {
                let v = l.load(&y[at + cb..]);
                let mut r = l.mul_add(v, l.load(&factor[cb..]), v);
                if let Some(res) = residual {
                    r = l.add(r, l.load(&res[at + cb..]));
                }
                l.store(&mut out[at + cb..], r);
            }
        }
    }
}
