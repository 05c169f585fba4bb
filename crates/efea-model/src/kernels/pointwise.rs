//! The 1x1 convolution as one batched matrix multiply each way.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;

use super::{contiguous, conv_op, dims4, new_tensor, values};
use burn::backend::ops::{ConvOptions, FloatTensorOps, ModuleOps};
use burn::tensor::Shape;

/// Planes smaller than this (the 3x3 maps of the last stage at 48x48) make per-sample products
/// too thin for the matmul kernel (`320 -> 1280` at 3x3 ran at half a plain matmul's rate): one
/// product over the whole batch, channels first, pays for its two small copies.
const THIN_PLANE: usize = 16;

/// `y[n] = W x[n]`: `[C_out, C_in] x [N, C_in, HW] -> [N, C_out, HW]`. Flex's own 1x1 path (one
/// matmul per sample, measured faster than one broadcast batched matmul) for large planes; one
/// matmul over the batch, channels first, for small ones.
pub(super) fn pointwise_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> FlexTensor {
    let [n, c_in, h, w] = dims4(x);
    let c_out = weight.layout().shape()[0];
    if h * w >= THIN_PLANE || n == 1 {
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        return contiguous(Flex::conv2d(
            x.clone(),
            weight.clone(),
            bias.cloned(),
            options,
        ));
    }
    let hw = h * w;
    let x = x
        .reshape(Shape::new([n, c_in, hw]))
        .permute(&[1, 0, 2])
        .to_contiguous()
        .reshape(Shape::new([c_in, n * hw]));
    let y = Flex::float_matmul(weight.reshape(Shape::new([c_out, c_in])), x);
    let y = match bias {
        Some(b) => Flex::float_add(y, b.reshape(Shape::new([c_out, 1]))),
        None => y,
    };
    y.reshape(Shape::new([c_out, n, hw]))
        .permute(&[1, 0, 2])
        .to_contiguous()
        .reshape(Shape::new([n, c_out, h, w]))
}

#[derive(Debug, Clone)]
struct PointwiseState {
    x: FlexTensor,
    weight: FlexTensor,
}

impl PointwiseState {
    /// `dx[n] = W^T dy[n]`.
    fn grad_x(&self, grad: &FlexTensor) -> FlexTensor {
        let [n, c_in, h, w] = dims4(&self.x);
        let c_out = self.weight.layout().shape()[0];
        let wt = self
            .weight
            .reshape(Shape::new([1, c_out, c_in]))
            .transpose(1, 2);
        let dy = grad.reshape(Shape::new([n, c_out, h * w]));
        Flex::float_matmul(wt, dy).reshape(Shape::new([n, c_in, h, w]))
    }

    /// `dW = sum_n dy[n] x[n]^T`: per-sample products summed when they are small, else one
    /// product over the batch after moving channels first.
    fn grad_weight(&self, grad: &FlexTensor) -> FlexTensor {
        let [n, c_in, h, w] = dims4(&self.x);
        let c_out = self.weight.layout().shape()[0];
        let hw = h * w;
        let dw = if c_out * c_in <= (c_out + c_in) * hw {
            let dy = grad.reshape(Shape::new([n, c_out, hw]));
            let xt = self.x.reshape(Shape::new([n, c_in, hw])).transpose(1, 2);
            let per_sample = Flex::float_matmul(dy, xt);
            Flex::float_sum_dim(per_sample, 0)
        } else {
            let dy = grad
                .reshape(Shape::new([n, c_out, hw]))
                .permute(&[1, 0, 2])
                .to_contiguous()
                .reshape(Shape::new([c_out, n * hw]));
            let x = self
                .x
                .reshape(Shape::new([n, c_in, hw]))
                .permute(&[1, 0, 2])
                .to_contiguous()
                .reshape(Shape::new([c_in, n * hw]));
            Flex::float_matmul(dy, x.transpose(0, 1))
        };
        dw.reshape(Shape::new([c_out, c_in, 1, 1]))
    }
}

/// `sum over n, h, w` of an NCHW gradient: the gradient of a bias.
fn channel_sums(grad: &FlexTensor) -> FlexTensor {
    let [_, c, h, w] = dims4(grad);
    let mut sums = vec![0.0f64; c];
    for (i, plane) in values(grad).chunks_exact(h * w).enumerate() {
        sums[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>();
    }
    new_tensor(sums.into_iter().map(|v| v as f32).collect(), &[c])
}

#[derive(Debug)]
struct PointwiseBackward;

impl Backward<Flex, 2> for PointwiseBackward {
    type State = PointwiseState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, ops.state.grad_x(&grad));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, ops.state.grad_weight(&grad));
        }
    }
}

#[derive(Debug)]
struct PointwiseBiasBackward;

impl Backward<Flex, 3> for PointwiseBiasBackward {
    type State = PointwiseState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, ops.state.grad_x(&grad));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, ops.state.grad_weight(&grad));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, channel_sums(&grad));
        }
    }
}

/// A 1x1 convolution (stride 1, no padding, one group) as a batched matrix multiply,
/// differentiable on `Autodiff<Flex>`; `None` when `x` does not route to the kernels.
///
/// # Shapes
/// `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in, 1, 1]`, `bias`: `[C_out]` ->
/// `[N, C_out, H, W]`
pub fn pointwise_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
) -> Option<Tensor<4>> {
    let run = |x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>| {
        let state = PointwiseState {
            x: x.clone(),
            weight: w.clone(),
        };
        (pointwise_forward(x, w, b), state)
    };
    conv_op(
        x,
        weight,
        bias,
        run,
        PointwiseBackward,
        PointwiseBiasBackward,
    )
}

#[cfg(test)]
mod tests {
    use crate::kernels::test_support::assert_conv_equals_the_plain_path;

    #[test]
    fn pointwise_equals_the_plain_path_with_gradients() {
        // (C_in, C_out, k, stride, pad, groups, H): a large plane, and a thin one (2x2 < 16)
        // that takes the product over the whole batch.
        assert_conv_equals_the_plain_path(&[(5, 7, 1, 1, 0, 1, 6), (40, 3, 1, 1, 0, 1, 2)]);
    }
}
