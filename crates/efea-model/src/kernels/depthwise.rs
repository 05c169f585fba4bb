//! Depthwise convolution: forward and both backward passes on the phase layout of
//! [`cpu::depthwise_forward`].

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;

use super::{contiguous, conv_op, dims4, new_tensor, overwritable, values};

use super::cpu::{self, Depthwise};

fn depthwise_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    g: Depthwise,
) -> FlexTensor {
    let y = cpu::depthwise_forward(values(x), values(weight), bias.map(values), g);
    new_tensor(y, &[g.n, g.c, g.out_h(), g.out_w()])
}

#[derive(Debug, Clone)]
struct DepthwiseState {
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Depthwise,
}

impl DepthwiseState {
    /// The gradients from the incoming `grad`, which the input gradient overwrites where it
    /// can (stride 1, "same" padding, `grad` not shared): the parameters' gradients are read
    /// from it first.
    fn grads(&self, mut grad: FlexTensor, want_x: bool, want_params: bool) -> DepthwiseGrads {
        let g = self.geometry;
        let weight = values(&self.weight);
        let params = want_params.then(|| {
            let (dw, db) = cpu::depthwise_backward_params(values(&self.x), values(&grad), g);
            (
                new_tensor(dw, &[g.c, 1, g.kernel, g.kernel]),
                new_tensor(db, &[g.c]),
            )
        });
        let dx = want_x.then(|| {
            let in_place = overwritable(&mut grad, g.n * g.c * g.h * g.w)
                .is_some_and(|dy| cpu::depthwise_backward_input_in_place(dy, weight, g));
            if in_place {
                grad
            } else {
                new_tensor(
                    cpu::depthwise_backward_input(values(&grad), weight, g),
                    &[g.n, g.c, g.h, g.w],
                )
            }
        });
        DepthwiseGrads { dx, params }
    }
}

struct DepthwiseGrads {
    dx: Option<FlexTensor>,
    params: Option<(FlexTensor, FlexTensor)>,
}

#[derive(Debug)]
struct DepthwiseBackward;

impl Backward<Flex, 2> for DepthwiseBackward {
    type State = DepthwiseState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let out = ops.state.grads(grad, node_x.is_some(), node_w.is_some());
        if let (Some(node), Some(dx)) = (node_x, out.dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some((dw, _))) = (node_w, out.params) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

#[derive(Debug)]
struct DepthwiseBiasBackward;

impl Backward<Flex, 3> for DepthwiseBiasBackward {
    type State = DepthwiseState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let want_params = node_w.is_some() || node_b.is_some();
        let out = ops.state.grads(grad, node_x.is_some(), want_params);
        if let (Some(node), Some(dx)) = (node_x, out.dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some((dw, db)) = out.params {
            if let Some(node) = node_w {
                grads.register::<Flex>(node.id, dw);
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, db);
            }
        }
    }
}

/// A depthwise convolution (`groups == C_in == C_out`, square kernel, symmetric padding),
/// differentiable on `Autodiff<Flex>`; `None` when `x` does not route to the kernels.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `weight`: `[C, 1, k, k]`, `bias`: `[C]` -> `[N, C, H', W']`
pub fn depthwise_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<4>> {
    let geometry = |x: &FlexTensor, w: &FlexTensor| {
        let [n, c, h, wd] = dims4(x);
        let [_, _, kernel, _] = dims4(w);
        Depthwise {
            n,
            c,
            h,
            w: wd,
            kernel,
            stride,
            pad: padding,
        }
    };
    let run = |x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>| {
        let g = geometry(x, w);
        let y = depthwise_forward(x, w, b, g);
        let state = DepthwiseState {
            x: x.clone(),
            weight: w.clone(),
            geometry: g,
        };
        (y, state)
    };
    conv_op(
        x,
        weight,
        bias,
        run,
        DepthwiseBackward,
        DepthwiseBiasBackward,
    )
}

#[cfg(test)]
mod tests {
    use crate::kernels::test_support::assert_conv_equals_the_plain_path;

    #[test]
    fn depthwise_equals_the_plain_path_with_gradients() {
        // (C_in, C_out, k, stride, pad, groups, H): stride 2 on even and odd sizes.
        assert_conv_equals_the_plain_path(&[
            (6, 6, 3, 1, 1, 6, 9),
            (6, 6, 3, 2, 1, 6, 9),
            (6, 6, 3, 2, 1, 6, 8),
            (4, 4, 1, 1, 0, 4, 5),
        ]);
    }
}
