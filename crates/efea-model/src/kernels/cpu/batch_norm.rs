//! Batch norm with the batch's statistics, fused with its activation, and the eval-mode
//! scale and shift it folds into.

use rayon::prelude::*;

use super::{
    Act, Activation, Identity, Nchw, Relu, Relu6, channel_sum, channel_sum2x2, min_items, planes,
    vectorized,
};

/// Batch statistics of each channel: mean and biased variance (two passes over each channel,
/// as PyTorch, so that a large mean does not eat the variance's digits).
pub fn channel_stats(x: &[f32], shape: Nchw) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        shape.len(),
        "channel_stats: buffer and shape disagree"
    );
    let stats: Vec<(f32, f32)> = (0..shape.c)
        .into_par_iter()
        .with_min_len(min_items(shape.n * shape.hw))
        .map(|c| {
            vectorized(|| {
                let channel = || planes(x, shape.c, shape.hw, c);
                let mean = channel_sum(channel(), shape.hw, |v| v) / shape.count();
                let m = mean as f32;
                let var = channel_sum(channel(), shape.hw, |v| (v - m) * (v - m)) / shape.count();
                (m, var as f32)
            })
        })
        .collect();
    stats.into_iter().unzip()
}

/// Per-channel `(scale, shift)` of a batch norm: `y = x * scale + shift`.
fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) -> Vec<(f32, f32)> {
    (0..gamma.len())
        .map(|c| {
            let scale = gamma[c] / (var[c] + eps).sqrt();
            (scale, beta[c] - mean[c] * scale)
        })
        .collect()
}

/// `y = act(x * scale[c] + shift[c])` over every plane.
fn scale_shift_act(x: &[f32], y: &mut [f32], shape: Nchw, coef: &[(f32, f32)], act: Act) {
    with_act!(act, A => y
    .par_chunks_mut(shape.hw)
    .zip(x.par_chunks(shape.hw))
    .enumerate()
    .for_each(|(i, (out, inp))| vectorized(|| {
        let (scale, shift) = coef[i % shape.c];
        for (o, &v) in out.iter_mut().zip(inp) {
            *o = A::apply(v * scale + shift);
        }
    })))
}

/// `out = act(out * scale[c] + bias[c])` over every plane, in place.
pub fn scale_bias_act_in_place(
    out: &mut [f32],
    plane: usize,
    scale: &[f32],
    bias: &[f32],
    act: Act,
) {
    let channels = bias.len();
    with_act!(act, A => out
    .par_chunks_mut(plane.max(1))
    .enumerate()
    .for_each(|(i, p)| vectorized(|| {
        let (s, b) = (scale[i % channels], bias[i % channels]);
        for v in p.iter_mut() {
            *v = A::apply(*v * s + b);
        }
    })))
}

/// Batch norm with the batch's statistics, then `act`: `(output, mean, biased variance)`.
pub fn bn_act_train_forward(
    x: &[f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var) = channel_stats(x, shape);
    let coef = affine(gamma, beta, &mean, &var, eps);
    let mut y = vec![0.0; x.len()];
    scale_shift_act(x, &mut y, shape, &coef, act);
    (y, mean, var)
}

/// Gradients of [`bn_act_train_forward`]: `(dx, dgamma, dbeta)`. The activation's input is
/// recomputed from `x`, so the forward output need not be kept.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_train_backward(
    x: &[f32],
    dy: &[f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = dy.to_vec();
    let (dgamma, dbeta) =
        bn_act_train_backward_in_place(x, &mut dx, shape, gamma, beta, mean, var, eps, act);
    (dx, dgamma, dbeta)
}

/// [`bn_act_train_backward`] writing `dx` over `dy` (each element of `dx` depends only on the
/// same element of `dy` once the channel sums are known): no new buffer to allocate and zero.
/// Returns `(dgamma, dbeta)`.
#[allow(clippy::too_many_arguments)]
pub fn bn_act_train_backward_in_place(
    x: &[f32],
    dy: &mut [f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "bn backward: x and shape disagree");
    assert_eq!(dy.len(), shape.len(), "bn backward: dy and shape disagree");
    with_act!(act, A => bn_act_backward_typed::<A>(x, dy, shape, gamma, beta, mean, var, eps))
}

#[allow(clippy::too_many_arguments)]
fn bn_act_backward_typed<A: Activation>(
    x: &[f32],
    dy: &mut [f32],
    shape: Nchw,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let dy_read: &[f32] = dy;
    let count = shape.count();
    // dz = dy where the activation passes; sums of dz and dz * (x - mean) per channel.
    let sums: Vec<(f64, f64)> = (0..shape.c)
        .into_par_iter()
        .with_min_len(min_items(shape.n * shape.hw))
        .map(|c| {
            vectorized(|| {
                let inv_std = 1.0 / (var[c] + eps).sqrt();
                let scale = gamma[c] * inv_std;
                let shift = beta[c] - mean[c] * scale;
                let m = mean[c];
                let pairs =
                    planes(x, shape.c, shape.hw, c).zip(planes(dy_read, shape.c, shape.hw, c));
                let (sum_dz, sum_dz_xc) = channel_sum2x2(pairs, shape.hw, |v, g| {
                    let dz = if A::passes(v * scale + shift) { g } else { 0.0 };
                    (dz, dz * (v - m))
                });
                (sum_dz, sum_dz_xc * inv_std as f64)
            })
        })
        .collect();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    // dx = a * dz + b + k * x, per channel:
    //   a = gamma * inv_std, k = -a * inv_std * dgamma / M,
    //   b = -a * dbeta / M - k * mean.
    let coef: Vec<[f32; 4]> = (0..shape.c)
        .map(|c| {
            let inv_std = 1.0 / (var[c] as f64 + eps as f64).sqrt();
            let a = gamma[c] as f64 * inv_std;
            let k = -a * inv_std * sums[c].1 / count;
            let b = -a * sums[c].0 / count - k * mean[c] as f64;
            let shift = beta[c] as f64 - mean[c] as f64 * a;
            [a as f32, b as f32, k as f32, shift as f32]
        })
        .collect();
    dy.par_chunks_mut(shape.hw)
        .zip(x.par_chunks(shape.hw))
        .with_min_len(min_items(shape.hw))
        .enumerate()
        .for_each(|(i, (out, px))| {
            vectorized(|| {
                let [a, b, k, shift] = coef[i % shape.c];
                for (o, &v) in out.iter_mut().zip(px) {
                    let dz = if A::passes(v * a + shift) { *o } else { 0.0 };
                    *o = a * dz + b + k * v;
                }
            })
        });
    (dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::cpu::testing::{close, pseudo_random};

    /// The batch norm + activation, straight from its definition, in f64.
    fn bn_reference(x: &[f32], s: Nchw, gamma: &[f32], beta: &[f32], act: Act) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for c in 0..s.c {
            let idx: Vec<usize> = (0..s.n)
                .flat_map(|n| (0..s.hw).map(move |p| (n * s.c + c) * s.hw + p))
                .collect();
            let m = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / idx.len() as f64;
            let v = idx.iter().map(|&i| (x[i] as f64 - m).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let z = (x[i] as f64 - m) / (v + 1e-5).sqrt() * gamma[c] as f64 + beta[c] as f64;
                y[i] = match act {
                    Act::Identity => z,
                    Act::Relu => z.max(0.0),
                    Act::Relu6 => z.clamp(0.0, 6.0),
                };
            }
        }
        y
    }

    #[test]
    fn bn_act_forward_matches_the_definition() {
        // Planes summed position by position (37 values) and one by one (130).
        for hw in [37, 130] {
            bn_act_forward_case(Nchw { n: 3, c: 5, hw });
        }
    }

    fn bn_act_forward_case(s: Nchw) {
        let x = pseudo_random(s.len(), 1);
        let gamma = pseudo_random(s.c, 2);
        let beta = pseudo_random(s.c, 3);
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let (y, _, _) = bn_act_train_forward(&x, s, &gamma, &beta, 1e-5, act);
            let want: Vec<f32> = bn_reference(&x, s, &gamma, &beta, act)
                .iter()
                .map(|&v| v as f32)
                .collect();
            close(&y, &want, 1e-5, "bn forward");
        }
    }

    #[test]
    fn bn_act_backward_matches_finite_differences() {
        for hw in [19, 70] {
            bn_act_backward_case(Nchw { n: 2, c: 3, hw });
        }
    }

    fn bn_act_backward_case(s: Nchw) {
        let x = pseudo_random(s.len(), 4);
        let gamma: Vec<f32> = pseudo_random(s.c, 5).iter().map(|g| g + 2.5).collect();
        let beta = pseudo_random(s.c, 6);
        let dy = pseudo_random(s.len(), 7);
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let (mean, var) = channel_stats(&x, s);
            let (dx, dgamma, dbeta) =
                bn_act_train_backward(&x, &dy, s, &gamma, &beta, &mean, &var, 1e-5, act);
            // loss = sum(dy * y), differentiated numerically in f64.
            let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
                bn_reference(x, s, gamma, beta, act)
                    .iter()
                    .zip(&dy)
                    .map(|(y, g)| y * *g as f64)
                    .sum()
            };
            // A step small enough that few pre-activations cross a kink (each that does moves
            // the difference by about h * |dy|), the reference all in f64.
            let h = 1e-3f32;
            let numeric = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
            for i in [0, 5, 20, 57, s.len() - 1] {
                let num = numeric(&|d| {
                    let mut xp = x.clone();
                    xp[i] += d;
                    loss(&xp, &gamma, &beta)
                });
                assert!(
                    (dx[i] as f64 - num).abs() < 2e-2 * (1.0 + num.abs()),
                    "{act:?} dx[{i}]: {} vs {num}",
                    dx[i]
                );
            }
            for c in 0..s.c {
                let num_g = numeric(&|d| {
                    let mut gp = gamma.clone();
                    gp[c] += d;
                    loss(&x, &gp, &beta)
                });
                let num_b = numeric(&|d| {
                    let mut bp = beta.clone();
                    bp[c] += d;
                    loss(&x, &gamma, &bp)
                });
                assert!(
                    (dgamma[c] as f64 - num_g).abs() < 2e-2 * (1.0 + num_g.abs()),
                    "{act:?} dgamma[{c}]"
                );
                assert!(
                    (dbeta[c] as f64 - num_b).abs() < 2e-2 * (1.0 + num_b.abs()),
                    "{act:?} dbeta[{c}]: {} vs {num_b}",
                    dbeta[c]
                );
            }
        }
    }
}
