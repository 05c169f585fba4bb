//! Batch norm with the batch's statistics fused with its activation, differentiable.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::{AutodiffBackend, Flex};
use burn::tensor::Tensor;

use super::cpu::{self, Act, Nchw};
use super::{
    AdFlex, Route, ad, contiguous, dims4, flex, from_ad, from_flex, new_tensor, overwritable,
    record, route, values,
};

/// What [`batch_norm_act_train`] returns: the activated output and the batch statistics
/// (mean and biased variance, detached) that feed the running estimates.
#[derive(Debug)]
pub struct BatchNormActTrain {
    pub output: Tensor<4>,
    pub mean: Tensor<1>,
    pub variance: Tensor<1>,
}

#[derive(Debug, Clone)]
struct BnActState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: Vec<f32>,
    variance: Vec<f32>,
    epsilon: f32,
    act: Act,
}

#[derive(Debug)]
struct BnActBackward;

impl Backward<Flex, 3> for BnActBackward {
    type State = BnActState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let mut grad = contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let [n, c, h, w] = dims4(&s.x);
        let shape = Nchw { n, c, hw: h * w };
        let (x, gamma, beta) = (values(&s.x), values(&s.gamma), values(&s.beta));
        let (mean, var) = (&s.mean, &s.variance);
        // dx overwrites the incoming gradient where it can.
        let (dx, dgamma, dbeta) = match overwritable(&mut grad, n * c * h * w) {
            Some(dy) => {
                let (dgamma, dbeta) = cpu::bn_act_train_backward_in_place(
                    x, dy, shape, gamma, beta, mean, var, s.epsilon, s.act,
                );
                (grad, dgamma, dbeta)
            }
            _ => {
                let (dx, dgamma, dbeta) = cpu::bn_act_train_backward(
                    x,
                    values(&grad),
                    shape,
                    gamma,
                    beta,
                    mean,
                    var,
                    s.epsilon,
                    s.act,
                );
                (new_tensor(dx, &[n, c, h, w]), dgamma, dbeta)
            }
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, new_tensor(dgamma, &[c]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, new_tensor(dbeta, &[c]));
        }
    }
}

/// `act(batch_norm(x))` with the batch's statistics, differentiable on `Autodiff<Flex>`;
/// `None` unless `x` routes to [`Route::AutodiffFlex`] or [`Route::Flex`].
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `gamma`, `beta`: `[C]`.
pub fn batch_norm_act_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    act: Act,
) -> Option<BatchNormActTrain> {
    let run = |x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor| {
        let [n, c, h, w] = dims4(x);
        let (y, mean, var) = cpu::bn_act_train_forward(
            values(x),
            Nchw { n, c, hw: h * w },
            values(gamma),
            values(beta),
            epsilon as f32,
            act,
        );
        (new_tensor(y, &[n, c, h, w]), mean, var)
    };
    match route(&x) {
        Route::Flex => {
            let (x, gamma, beta) = (
                contiguous(flex(x)),
                contiguous(flex(gamma)),
                contiguous(flex(beta)),
            );
            let (y, mean, var) = run(&x, &gamma, &beta);
            let c = mean.len();
            Some(BatchNormActTrain {
                output: from_flex(y),
                mean: from_flex(new_tensor(mean, &[c])),
                variance: from_flex(new_tensor(var, &[c])),
            })
        }
        Route::AutodiffFlex => {
            let (x, gamma, beta) = (ad(x), ad(gamma), ad(beta));
            let nodes = [x.node(), gamma.node(), beta.node()];
            let xp = contiguous(x.into_primitive());
            let gp = contiguous(gamma.into_primitive());
            let bp = contiguous(beta.into_primitive());
            let (y, mean, var) = run(&xp, &gp, &bp);
            let c = mean.len();
            let stats = (
                from_ad(AdFlex::from_inner(new_tensor(mean.clone(), &[c]))),
                from_ad(AdFlex::from_inner(new_tensor(var.clone(), &[c]))),
            );
            let output = record(
                BnActBackward,
                nodes,
                BnActState {
                    x: xp,
                    gamma: gp,
                    beta: bp,
                    mean,
                    variance: var,
                    epsilon: epsilon as f32,
                    act,
                },
                y,
            );
            Some(BatchNormActTrain {
                output: from_ad(output),
                mean: stats.0,
                variance: stats.1,
            })
        }
        Route::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{assert_close, random};
    use burn::tensor::Device;
    use burn::tensor::activation::{relu, relu6};

    fn plain_bn_act(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, act: Act) -> Tensor<4> {
        let out = burn::tensor::module::batch_norm_train(x, gamma, beta, 1e-5).output;
        match act {
            Act::Identity => out,
            Act::Relu => relu(out),
            Act::Relu6 => relu6(out),
        }
    }

    /// Forward value and gradients of input, gamma and beta equal Burn's own operations.
    #[test]
    fn batch_norm_act_equals_the_plain_path_with_gradients() {
        let device = Device::flex().autodiff();
        for act in [Act::Identity, Act::Relu, Act::Relu6] {
            let x = random([4, 6, 5, 7], &device)
                .mul_scalar(2.0)
                .add_scalar(1.0);
            let gamma = random([6], &device).add_scalar(1.0);
            let beta = random([6], &device);
            let weights = random([4, 6, 5, 7], &device);
            let grads_of = |fused: bool| {
                let (x, g, b) = (
                    x.clone().detach().require_grad(),
                    gamma.clone().detach().require_grad(),
                    beta.clone().detach().require_grad(),
                );
                let y = if fused {
                    batch_norm_act_train(x.clone(), g.clone(), b.clone(), 1e-5, act)
                        .expect("autodiff flex routes to the kernel")
                        .output
                } else {
                    plain_bn_act(x.clone(), g.clone(), b.clone(), act)
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).expect("x grad"),
                    g.grad(&grads).expect("gamma grad"),
                    b.grad(&grads).expect("beta grad"),
                )
            };
            let fused = grads_of(true);
            let plain = grads_of(false);
            assert_close(&fused.0, &plain.0, "output");
            assert_close(&fused.1, &plain.1, "x grad");
            assert_close(&fused.2, &plain.2, "gamma grad");
            assert_close(&fused.3, &plain.3, "beta grad");
        }
    }
}
