//! The gradients of a plain (dense, 3x3) convolution such as the stem's, against a direct
//! double-precision computation on the host: the one convolution of the network that the
//! fused kernels do not take, so every backend runs its own. `EFEA_TEST_DEVICE=wgpu` checks
//! Burn's wgpu convolution the same way.

mod common;

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Tensor, TensorData};

/// One convolution case: input `[n, c_in, side, side]`, weight `[c_out, c_in, 3, 3]`.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c_in: usize,
    c_out: usize,
    side: usize,
    stride: usize,
    /// Whether the input is tracked (a block's input is; the network's image is not, and a
    /// backend may then take another path to the weight's gradient alone).
    input_grad: bool,
}

/// A smooth, sign-changing pattern: values of order 1 that differ from index to index.
fn pattern(len: usize, seed: f64) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f64 * 0.7311 + seed).sin() * 1.3 + (i as f64 * 0.0173).cos() * 0.4) as f32)
        .collect()
}

/// `(d loss / d weight, d loss / d input)` of `loss = sum(conv(x, w) * g)`, in f64.
fn direct(case: Case, x: &[f32], w: &[f32], g: &[f32], out_side: usize) -> (Vec<f64>, Vec<f64>) {
    let Case {
        n,
        c_in,
        c_out,
        side,
        stride,
        ..
    } = case;
    let mut dw = vec![0.0f64; c_out * c_in * 9];
    let mut dx = vec![0.0f64; n * c_in * side * side];
    for b in 0..n {
        for o in 0..c_out {
            for oy in 0..out_side {
                for ox in 0..out_side {
                    let grad = g[((b * c_out + o) * out_side + oy) * out_side + ox] as f64;
                    for c in 0..c_in {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                // Padding 1: input row oy * stride + ky - 1.
                                let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                                if iy == 0 || ix == 0 || iy > side || ix > side {
                                    continue;
                                }
                                let xi = ((b * c_in + c) * side + iy - 1) * side + ix - 1;
                                let wi = ((o * c_in + c) * 3 + ky) * 3 + kx;
                                dw[wi] += grad * x[xi] as f64;
                                dx[xi] += grad * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (dw, dx)
}

fn largest_relative_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

fn check(case: Case) {
    let device = common::device().autodiff();
    let Case {
        n,
        c_in,
        c_out,
        side,
        stride,
        input_grad,
    } = case;
    let out_side = (side + 2 - 3) / stride + 1;
    let x = pattern(n * c_in * side * side, 0.3);
    let w = pattern(c_out * c_in * 9, 1.7);
    let g = pattern(n * c_out * out_side * out_side, 2.9);

    let mut conv = Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [c_out, c_in, 3, 3]),
        &device,
    ));
    let mut input =
        Tensor::<4>::from_data(TensorData::new(x.clone(), [n, c_in, side, side]), &device);
    if input_grad {
        input = input.require_grad();
    }
    let upstream = Tensor::<4>::from_data(
        TensorData::new(g.clone(), [n, c_out, out_side, out_side]),
        &device,
    );
    let loss = (conv.forward(input.clone()) * upstream).sum();
    let grads = loss.backward();
    let weight_grad: Vec<f32> = conv
        .weight
        .grad(&grads)
        .expect("the weight has a gradient")
        .into_data()
        .try_to_vec()
        .unwrap();
    let (want_dw, want_dx) = direct(case, &x, &w, &g, out_side);
    let dw_error = largest_relative_error(&weight_grad, &want_dw);
    let dx_error = match input.grad(&grads) {
        Some(got) => largest_relative_error(&got.into_data().try_to_vec().unwrap(), &want_dx),
        None => {
            assert!(!input_grad, "{case:?}: the tracked input has no gradient");
            0.0
        }
    };
    assert!(
        dw_error < 1e-4 && dx_error < 1e-4,
        "{case:?}: weight gradient off by {dw_error:.2e}, input gradient by {dx_error:.2e} \
         (relative to the largest value)"
    );
    let _ = conv.into_record();
}

#[test]
fn the_stem_convolution_at_48x48() {
    check(Case {
        n: 8,
        c_in: 1,
        c_out: 32,
        side: 48,
        stride: 2,
        input_grad: true,
    });
}

#[test]
fn one_input_channel_at_stride_one() {
    check(Case {
        n: 4,
        c_in: 1,
        c_out: 8,
        side: 24,
        stride: 1,
        input_grad: true,
    });
}

#[test]
fn three_input_channels_at_stride_two() {
    check(Case {
        n: 4,
        c_in: 3,
        c_out: 16,
        side: 32,
        stride: 2,
        input_grad: true,
    });
}

#[test]
fn a_small_case() {
    check(Case {
        n: 2,
        c_in: 1,
        c_out: 4,
        side: 8,
        stride: 2,
        input_grad: true,
    });
}

#[test]
fn the_stem_convolution_of_an_untracked_image() {
    for n in [4, 16] {
        check(Case {
            n,
            c_in: 1,
            c_out: 32,
            side: 48,
            stride: 2,
            input_grad: false,
        });
    }
}
