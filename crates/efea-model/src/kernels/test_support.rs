//! Random inputs and comparisons shared by the kernels' tests.

use burn::backend::ops::ConvOptions;
use burn::tensor::module::conv2d;
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

use super::{depthwise_conv2d, pointwise_conv2d};

pub fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

pub fn assert_close<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, what: &str) {
    let (a, b): (TensorData, TensorData) = (a.to_data(), b.to_data());
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    a.assert_approx_eq::<f32>(&b, Tolerance::absolute(2e-4).set_relative(2e-4));
}

fn conv_grads(
    fused: bool,
    x: &Tensor<4>,
    w: &Tensor<4>,
    b: &Tensor<1>,
    weights: &Tensor<4>,
    options: ConvOptions<2>,
) -> [TensorData; 4] {
    let (x, w, b) = (
        x.clone().detach().require_grad(),
        w.clone().detach().require_grad(),
        b.clone().detach().require_grad(),
    );
    let y = if !fused {
        conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone())
    } else if options.groups == 1 {
        pointwise_conv2d(x.clone(), w.clone(), Some(b.clone())).expect("routes")
    } else {
        depthwise_conv2d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            options.stride[0],
            options.padding[0].0,
        )
        .expect("routes")
    };
    let grads = (y.clone() * weights.clone()).sum().backward();
    [
        y.to_data(),
        x.grad(&grads).expect("x grad").to_data(),
        w.grad(&grads).expect("w grad").to_data(),
        b.grad(&grads).expect("b grad").to_data(),
    ]
}

/// Asserts that the kernel's output and its three gradients equal Burn's `conv2d` for each
/// `(C_in, C_out, k, stride, pad, groups, H)`, on a batch of 3.
pub fn assert_conv_equals_the_plain_path(
    cases: &[(usize, usize, usize, usize, usize, usize, usize)],
) {
    let device = Device::flex().autodiff();
    for &(c_in, c_out, k, stride, pad, groups, h) in cases {
        let x = random([3, c_in, h, h], &device);
        let w = random([c_out, c_in / groups, k, k], &device);
        let b = random([c_out], &device);
        let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], groups);
        let out = (h + 2 * pad - k) / stride + 1;
        let weights = random([3, c_out, out, out], &device);
        let fused = conv_grads(true, &x, &w, &b, &weights, options.clone());
        let plain = conv_grads(false, &x, &w, &b, &weights, options);
        for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
            assert_eq!(
                f.shape(),
                p.shape(),
                "case {c_in}/{c_out}/{k}/{stride}: tensor {i}"
            );
            f.assert_approx_eq::<f32>(p, Tolerance::absolute(1e-4).set_relative(1e-4));
        }
    }
}
