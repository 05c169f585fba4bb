//! The arithmetic of the fused operations on plain `f32` slices in NCHW order, free of any
//! tensor type so that it can be tested against a direct evaluation of the definitions.
//!
//! Loops are written so that LLVM vectorises them: fixed-width accumulator arrays for
//! reductions (a plain `iter().sum()` of floats cannot be reordered, so it stays scalar), and
//! per-channel constants hoisted out of the element loops. Work is split over channels (for
//! reductions) or over `(n, c)` planes (for element-wise writes) with rayon.

/// Elements below which a rayon task is not worth its scheduling (a few microseconds of work):
/// at batch 1 most planes are tiny, and one task per plane costs more than the arithmetic.
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// The least number of items of `len` elements each that make one rayon task.
fn min_items(len: usize) -> usize {
    MIN_TASK_ELEMENTS.div_ceil(len.max(1))
}

/// Lanes of the partial sums: two AVX registers, enough to hide the latency of the adds.
const LANES: usize = 16;

/// Runs `f` compiled for the widest vector instructions this CPU has, picked at run time by
/// [`pulp`] (AVX2 + FMA where present; the x86-64 baseline is SSE2, four lanes). The loops of
/// these kernels are written for LLVM to vectorise; everything inlined into `f` gets the
/// wider registers. Each rayon task calls it around its own loop, since the instruction set is
/// a property of the function the loop is compiled into. Results do not change: the partial
/// sums have a fixed width ([`LANES`]) whatever the register width, and Rust never contracts
/// `a * b + c` into a fused multiply-add on its own.
#[inline(always)]
fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// The activation fused after a batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    Relu,
    Relu6,
}

/// An activation as a type, so that each kernel is compiled once per activation with the
/// choice hoisted out of its loops (a runtime `match` inside them keeps LLVM from vectorising).
trait Activation: Copy + Send + Sync {
    fn apply(z: f32) -> f32;
    /// Whether the gradient passes at `z`: PyTorch's `relu` (z > 0) and `hardtanh` (0 < z < 6).
    /// Non-short-circuit `&` so that the comparison stays a branch-free mask.
    fn passes(z: f32) -> bool;
}

#[derive(Clone, Copy)]
struct Identity;
#[derive(Clone, Copy)]
struct Relu;
#[derive(Clone, Copy)]
struct Relu6;

impl Activation for Identity {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z
    }
    #[inline(always)]
    fn passes(_: f32) -> bool {
        true
    }
}

impl Activation for Relu {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z.max(0.0)
    }
    #[inline(always)]
    fn passes(z: f32) -> bool {
        z > 0.0
    }
}

impl Activation for Relu6 {
    #[inline(always)]
    fn apply(z: f32) -> f32 {
        z.clamp(0.0, 6.0)
    }
    #[inline(always)]
    fn passes(z: f32) -> bool {
        (z > 0.0) & (z < 6.0)
    }
}

/// Runs `$body` with `$A` bound to the activation type of `$act`.
macro_rules! with_act {
    ($act:expr, $A:ident => $body:expr) => {
        match $act {
            Act::Identity => {
                type $A = Identity;
                $body
            }
            Act::Relu => {
                type $A = Relu;
                $body
            }
            Act::Relu6 => {
                type $A = Relu6;
                $body
            }
        }
    };
}

/// `(sum(f(a[i], b[i])), sum(g(a[i], b[i])))` with `LANES` independent partial sums each.
#[inline(always)]
fn sum2x2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let mut acc0 = [0.0f32; LANES];
    let mut acc1 = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            let (u, v) = f(ca[i], cb[i]);
            acc0[i] += u;
            acc1[i] += v;
        }
    }
    let mut total0: f64 = acc0.iter().map(|&v| v as f64).sum();
    let mut total1: f64 = acc1.iter().map(|&v| v as f64).sum();
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        let (u, v) = f(x, y);
        total0 += u as f64;
        total1 += v as f64;
    }
    (total0, total1)
}

/// `sum(f(a[i], b[i]))` with `LANES` independent partial sums, accumulated in `f64` per call.
#[inline(always)]
fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    let mut total: f64 = acc.iter().map(|&v| v as f64).sum();
    for (&x, &y) in a_tail.iter().zip(b_tail) {
        total += f(x, y) as f64;
    }
    total
}

#[inline(always)]
fn sum1(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum2(a, a, |x, _| f(x))
}

/// Planes up to this many values are summed position by position over the batch.
const SMALL_PLANE: usize = 64;

/// `(sum(f(a[i], b[i])), sum(g(a[i], b[i])))` over the pairs of planes of one channel.
///
/// Large planes go through [`sum2x2`] one by one. The deep stages' planes are small (36 or 9
/// values at 48x48), where [`sum2x2`] would be all tail and `f64` conversions: there the
/// planes are summed into `hw` partial sums, one per position, and those once in `f64`.
#[inline(always)]
fn channel_sum2x2<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    hw: usize,
    f: impl Fn(f32, f32) -> (f32, f32),
) -> (f64, f64) {
    if hw > SMALL_PLANE {
        return pairs
            .map(|(a, b)| sum2x2(a, b, &f))
            .fold((0.0, 0.0), |(s0, s1), (u, v)| (s0 + u, s1 + v));
    }
    let mut acc0 = [0.0f32; SMALL_PLANE];
    let mut acc1 = [0.0f32; SMALL_PLANE];
    for (a, b) in pairs {
        for (((s0, s1), &x), &y) in acc0[..hw].iter_mut().zip(&mut acc1[..hw]).zip(a).zip(b) {
            let (u, v) = f(x, y);
            *s0 += u;
            *s1 += v;
        }
    }
    let total = |acc: &[f32]| acc.iter().map(|&v| v as f64).sum::<f64>();
    (total(&acc0[..hw]), total(&acc1[..hw]))
}

/// `sum(f(a[i]))` over the planes of one channel (see [`channel_sum2x2`]).
#[inline(always)]
fn channel_sum<'a>(
    planes: impl Iterator<Item = &'a [f32]>,
    hw: usize,
    f: impl Fn(f32) -> f32,
) -> f64 {
    channel_sum2x2(planes.map(|p| (p, p)), hw, |v, _| (f(v), 0.0)).0
}

/// The `(n, c)` planes of channel `c` in an NCHW buffer.
fn planes(data: &[f32], channels: usize, plane: usize, c: usize) -> impl Iterator<Item = &[f32]> {
    data.chunks_exact(plane).skip(c).step_by(channels)
}

/// Shape of an NCHW activation: batch, channels and `H * W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl Nchw {
    fn len(self) -> usize {
        self.n * self.c * self.hw
    }

    fn count(self) -> f64 {
        (self.n * self.hw) as f64
    }
}

mod batch_norm;
mod depthwise;
mod subspace;
mod triplet;

pub use batch_norm::{
    bn_act_train_backward, bn_act_train_backward_in_place, bn_act_train_forward, channel_stats,
    scale_bias_act_in_place,
};
pub use depthwise::{
    Depthwise, depthwise_backward_input, depthwise_backward_input_in_place,
    depthwise_backward_params, depthwise_forward,
};
pub use subspace::{SubspaceEval, subspace_eval_forward};
pub use triplet::{Axis, Dims, triplet_backward, triplet_forward, zpool_backward, zpool_forward};

/// Inputs and comparisons shared by the kernels' unit tests.
#[cfg(test)]
mod testing {
    pub fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    pub fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }
}
