//! Eight `f32` lanes, written once and compiled twice: with AVX2 + FMA through [`pulp`]'s
//! `V3` when the CPU has them (checked at run time), else as plain arrays that the compiler
//! vectorises as it can. Every kernel of [`super`] is generic over [`Lanes`] and runs through
//! [`dispatch`], which enables the instruction set for the whole kernel (its loops inlined
//! into one function compiled with those target features).

/// Lanes of a vector: one AVX register. Channel counts of the backbone are multiples of 8
/// (torchvision's `make_divisible`), so a pixel's channels are whole vectors.
pub const LANES: usize = 8;

/// The operations the kernels use on eight lanes.
pub trait Lanes: Copy + Send + Sync {
    type V: Copy;
    fn splat(self, value: f32) -> Self::V;
    /// The first eight values of `values`.
    fn load(self, values: &[f32]) -> Self::V;
    /// Into the first eight values of `out`.
    fn store(self, out: &mut [f32], v: Self::V);
    /// `a * b + c` (fused where the hardware has it).
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn to_array(self, v: Self::V) -> [f32; LANES];
}

/// A kernel to run with the best [`Lanes`] this CPU has.
pub trait SimdOp {
    type Output;
    fn run<L: Lanes>(self, lanes: L) -> Self::Output;
}

/// Runs `op` with AVX2 + FMA when the CPU has them, else portably.
#[inline]
pub fn dispatch<Op: SimdOp>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, WithLanes(op, Avx2(simd)));
    }
    op.run(Portable)
}

/// `op` with its lanes, as pulp's `WithSimd`, so that `vectorize` compiles it with the
/// instruction set enabled.
struct WithLanes<Op, L>(Op, L);

impl<Op: SimdOp, L: Lanes> pulp::WithSimd for WithLanes<Op, L> {
    type Output = Op::Output;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        self.0.run(self.1)
    }
}

/// Plain arrays, for machines without AVX2.
#[derive(Debug, Clone, Copy)]
pub struct Portable;

impl Lanes for Portable {
    type V = [f32; LANES];
    #[inline(always)]
    fn splat(self, value: f32) -> Self::V {
        [value; LANES]
    }
    #[inline(always)]
    fn load(self, values: &[f32]) -> Self::V {
        values[..LANES].try_into().expect("eight values")
    }
    #[inline(always)]
    fn store(self, out: &mut [f32], v: Self::V) {
        out[..LANES].copy_from_slice(&v);
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn max(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].max(b[i]))
    }
    #[inline(always)]
    fn min(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].min(b[i]))
    }
    #[inline(always)]
    fn to_array(self, v: Self::V) -> [f32; LANES] {
        v
    }
}

/// AVX2 + FMA: a vector is one `ymm` register.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Avx2(pulp::x86::V3);

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    type V = pulp::f32x8;
    #[inline(always)]
    fn splat(self, value: f32) -> Self::V {
        self.0.splat_f32x8(value)
    }
    #[inline(always)]
    fn load(self, values: &[f32]) -> Self::V {
        let array: [f32; LANES] = values[..LANES].try_into().expect("eight values");
        pulp::cast(array)
    }
    #[inline(always)]
    fn store(self, out: &mut [f32], v: Self::V) {
        let array: [f32; LANES] = pulp::cast(v);
        out[..LANES].copy_from_slice(&array);
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        self.0.mul_add_f32x8(a, b, c)
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        self.0.add_f32x8(a, b)
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        self.0.mul_f32x8(a, b)
    }
    #[inline(always)]
    fn max(self, a: Self::V, b: Self::V) -> Self::V {
        self.0.max_f32x8(a, b)
    }
    #[inline(always)]
    fn min(self, a: Self::V, b: Self::V) -> Self::V {
        self.0.min_f32x8(a, b)
    }
    #[inline(always)]
    fn to_array(self, v: Self::V) -> [f32; LANES] {
        pulp::cast(v)
    }
}

/// The activation after a folded convolution: the training kernels' [`Act`], applied here to
/// a vector.
pub use crate::kernels::Act;

impl Act {
    #[inline(always)]
    pub fn apply_lanes<L: Lanes>(self, lanes: L, v: L::V) -> L::V {
        match self {
            Act::Identity => v,
            Act::Relu => lanes.max(v, lanes.splat(0.0)),
            Act::Relu6 => lanes.min(lanes.max(v, lanes.splat(0.0)), lanes.splat(6.0)),
        }
    }
}

/// `1 / (1 + e^-x)`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sum(Vec<f32>, Vec<f32>);

    impl SimdOp for Sum {
        type Output = Vec<f32>;
        fn run<L: Lanes>(self, l: L) -> Vec<f32> {
            let mut out = vec![0.0; self.0.len()];
            for ((o, a), b) in out
                .chunks_exact_mut(LANES)
                .zip(self.0.chunks_exact(LANES))
                .zip(self.1.chunks_exact(LANES))
            {
                let v = l.mul_add(l.load(a), l.load(b), l.splat(1.0));
                l.store(o, Act::Relu6.apply_lanes(l, v));
            }
            out
        }
    }

    #[test]
    fn dispatched_and_portable_lanes_agree() {
        let a: Vec<f32> = (0..32).map(|i| i as f32 * 0.37 - 4.0).collect();
        let b: Vec<f32> = (0..32).map(|i| 1.5 - i as f32 * 0.11).collect();
        let fast = dispatch(Sum(a.clone(), b.clone()));
        let portable = Sum(a.clone(), b.clone()).run(Portable);
        for i in 0..32 {
            let want = (a[i] * b[i] + 1.0).clamp(0.0, 6.0);
            assert!((fast[i] - want).abs() < 1e-5 && (portable[i] - want).abs() < 1e-5);
        }
    }
}
