//! ULSAM (the subspace attention of CDSM) in eval mode, its batch norms folded.

use rayon::prelude::*;

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
