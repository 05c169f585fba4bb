//! Fused operations for Burn's CPU backend `flex`, as backend extensions: each runs one
//! hand-written kernel ([`cpu`]) on `flex` tensors and, on `Autodiff<Flex>`, registers its own
//! backward pass, instead of the dozens of generic tensor operations (and as many passes over
//! memory) that Burn 0.22 records for them. Profiles of a training step on `flex` are dominated by
//! exactly these (see `bench/RESULTS.md`):
//!
//! - [`batch_norm_act_train`]: batch norm with batch statistics fused with its activation,
//!   forward in two passes over the input, backward in two passes; the activation's input is
//!   recomputed instead of stored.
//! - [`depthwise_conv2d`]: a direct depthwise convolution and its two gradients (Burn's
//!   generic weight gradient runs one convolution per channel).
//! - [`pointwise_conv2d`]: a 1x1 convolution as one batched matrix multiply each way.
//! - [`zpool`] and [`triplet_combine`]: triplet attention's pooling along one axis and the
//!   gated average of its three branches, read and written in NCHW instead of through
//!   permuted copies.
//! - [`conv_bn_act_eval`]: inference with the batch norm folded into the convolution.
//!
//! Every function takes high-level tensors and returns `None` when they are not `f32` tensors
//! of `flex` (or of `Autodiff<Flex>` without gradient checkpointing): the caller then runs the
//! plain Burn operations, which stay the definition; tests hold the two paths equal.

pub mod cpu;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::{
    Autodiff, AutodiffBackend, DispatchAutodiffContext, DispatchTensorKind, Flex,
    GradientCheckpointingStrategy,
};
use burn::tensor::{Bytes, DType, Shape, Tensor};

pub use cpu::Act;
pub use cpu::Axis;
pub use cpu::SubspaceEval;
use cpu::{Depthwise, Dims, Nchw};

/// `Autodiff<Flex>` as Burn's dispatch builds it for a device without gradient checkpointing.
type AdFlex = Autodiff<Flex, NoCheckpointing>;
/// The float primitive of `Autodiff<Flex>`.
type AdTensor = <AdFlex as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// Where a tensor lives, as far as these kernels care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An `f32` tensor of `flex`.
    Flex,
    /// An `f32` tensor of `Autodiff<Flex>` without gradient checkpointing.
    AutodiffFlex,
    /// Anything else: use Burn's own operations.
    Other,
}

/// Runs `f` on a thread of rayon's pool, or right here if this already is one.
///
/// `flex` and these kernels split each operation over rayon's pool. Called from a thread
/// outside the pool, every parallel operation hands its work to the pool and sleeps on a lock
/// until it is done: a wake-up and a sleep per operation, which over the few hundred
/// operations of a batch-1 forward pass cost as much as the arithmetic (`efea-bench infer
/// --batch 1`: 17-19 ms outside the pool, 10 ms inside). From a thread of the pool the same
/// operations split by work stealing, with no hand-over.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Whether the fused kernels are in use (read once from `EFEA_KERNELS`).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("EFEA_KERNELS").map_or(true, |v| v != "off"))
}

/// Which kernels can run `tensor`.
///
/// `EFEA_KERNELS=off` in the environment routes everything to Burn's own operations: the
/// "before" of every benchmark, and a way to rule the kernels out when hunting a bug.
pub fn route<const D: usize>(tensor: &Tensor<D>) -> Route {
    if !enabled() || tensor.dtype() != DType::F32 {
        return Route::Other;
    }
    let dispatch = tensor.clone().into_dispatch();
    match (&dispatch.kind, dispatch.autodiff) {
        (DispatchTensorKind::Flex(_), DispatchAutodiffContext::Disabled) => Route::Flex,
        (
            DispatchTensorKind::Autodiff(inner),
            DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Disabled),
        ) if matches!(**inner, DispatchTensorKind::Flex(_)) => Route::AutodiffFlex,
        _ => Route::Other,
    }
}

fn flex<const D: usize>(tensor: Tensor<D>) -> FlexTensor {
    tensor
        .try_into_primitive::<Flex>()
        .expect("routed as a flex tensor")
}

/// An autodiff primitive; a plain `flex` tensor (a constant) is wrapped as one.
fn ad<const D: usize>(tensor: Tensor<D>) -> AdTensor {
    match route(&tensor) {
        Route::Flex => AdFlex::from_inner(flex(tensor)),
        _ => tensor
            .try_into_primitive::<AdFlex>()
            .expect("routed as an autodiff flex tensor"),
    }
}

fn from_flex<const D: usize>(tensor: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(tensor)
}

fn from_ad<const D: usize>(tensor: AdTensor) -> Tensor<D> {
    Tensor::from_primitive::<AdFlex>(tensor)
}

/// A contiguous `f32` view of `tensor`, copying only when it is strided.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().contiguous_offsets().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("made contiguous f32 before reading")
}

fn new_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

fn dims4(tensor: &FlexTensor) -> [usize; 4] {
    let shape = tensor.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

// ---------------------------------------------------------------------------------------------
// Batch norm (batch statistics) + activation
// ---------------------------------------------------------------------------------------------

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
        // The incoming gradient is ours alone as a rule: dx overwrites it.
        let dense = grad.layout().contiguous_offsets() == Some((0, n * c * h * w));
        let (dx, dgamma, dbeta) = match grad.try_storage_mut::<f32>() {
            Some(dy) if dense && dy.len() == n * c * h * w => {
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
            let output = match BnActBackward
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
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
                ),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            Some(BatchNormActTrain {
                output: from_ad(output),
                mean: stats.0,
                variance: stats.1,
            })
        }
        Route::Other => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Depthwise convolution
// ---------------------------------------------------------------------------------------------

/// The forward pass is flex's own depthwise fast path (a direct convolution per plane, faster
/// than [`cpu::depthwise_forward`] on the small planes of the deep stages); the backward
/// passes are ours.
fn depthwise_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    g: Depthwise,
) -> FlexTensor {
    let options = ConvOptions::new([g.stride; 2], [g.pad; 2], [1, 1], g.c);
    contiguous(Flex::conv2d(x, weight, bias, options))
}

#[derive(Debug, Clone)]
struct DepthwiseState {
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Depthwise,
}

impl DepthwiseState {
    fn grads(&self, grad: &FlexTensor, want_x: bool, want_params: bool) -> DepthwiseGrads {
        let g = self.geometry;
        let dx = want_x.then(|| {
            new_tensor(
                cpu::depthwise_backward_input(values(grad), values(&self.weight), g),
                &[g.n, g.c, g.h, g.w],
            )
        });
        let params = want_params.then(|| {
            let (dw, db) = cpu::depthwise_backward_params(values(&self.x), values(grad), g);
            (
                new_tensor(dw, &[g.c, 1, g.kernel, g.kernel]),
                new_tensor(db, &[g.c]),
            )
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
        let out = ops.state.grads(&grad, node_x.is_some(), node_w.is_some());
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
        let out = ops.state.grads(&grad, node_x.is_some(), want_params);
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
    match route(&x) {
        Route::Flex => {
            let (x, w) = (contiguous(flex(x)), contiguous(flex(weight)));
            let b = bias.map(|b| contiguous(flex(b)));
            let g = geometry(&x, &w);
            Some(from_flex(depthwise_forward(x, w, b, g)))
        }
        Route::AutodiffFlex => {
            let (x, w) = (ad(x), ad(weight));
            let b = bias.map(ad);
            let xp = contiguous(x.primitive().clone());
            let wp = contiguous(w.primitive().clone());
            let bp = b.as_ref().map(|b| contiguous(b.primitive().clone()));
            let g = geometry(&xp, &wp);
            let y = depthwise_forward(xp.clone(), wp.clone(), bp, g);
            let state = DepthwiseState {
                x: xp,
                weight: wp,
                geometry: g,
            };
            let output = match b {
                None => match DepthwiseBackward
                    .prepare::<NoCheckpointing>([x.node(), w.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
                Some(b) => match DepthwiseBiasBackward
                    .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
            };
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Pointwise (1x1) convolution
// ---------------------------------------------------------------------------------------------

/// Planes smaller than this (the 3x3 maps of the last stage at 48x48) make per-sample products
/// too thin for the matmul kernel (`320 -> 1280` at 3x3 ran at half a plain matmul's rate): one
/// product over the whole batch, channels first, pays for its two small copies.
const THIN_PLANE: usize = 16;

/// `y[n] = W x[n]`: `[C_out, C_in] x [N, C_in, HW] -> [N, C_out, HW]`. Flex's own 1x1 path (one
/// matmul per sample, measured faster than one broadcast batched matmul) for large planes; one
/// matmul over the batch, channels first, for small ones.
fn pointwise_forward(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
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
    match route(&x) {
        Route::Flex => {
            let (x, w) = (contiguous(flex(x)), contiguous(flex(weight)));
            let b = bias.map(|b| contiguous(flex(b)));
            Some(from_flex(pointwise_forward(&x, &w, b.as_ref())))
        }
        Route::AutodiffFlex => {
            let (x, w) = (ad(x), ad(weight));
            let b = bias.map(ad);
            let xp = contiguous(x.primitive().clone());
            let wp = contiguous(w.primitive().clone());
            let bp = b.as_ref().map(|b| contiguous(b.primitive().clone()));
            let y = pointwise_forward(&xp, &wp, bp.as_ref());
            let state = PointwiseState { x: xp, weight: wp };
            let output = match b {
                None => match PointwiseBackward
                    .prepare::<NoCheckpointing>([x.node(), w.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
                Some(b) => match PointwiseBiasBackward
                    .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
            };
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Triplet attention: ZPool along one axis, and the gated average of the three branches
// ---------------------------------------------------------------------------------------------

fn dims(t: &FlexTensor) -> Dims {
    let [n, c, h, w] = dims4(t);
    Dims { n, c, h, w }
}

#[derive(Debug, Clone)]
struct ZPoolState {
    argmax: Vec<u32>,
    dims: Dims,
    axis: Axis,
}

#[derive(Debug)]
struct ZPoolBackward;

impl Backward<Flex, 1> for ZPoolBackward {
    type State = ZPoolState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node_x {
            let s = ops.state;
            let dx = cpu::zpool_backward(values(&grad), &s.argmax, s.dims, s.axis);
            let d = s.dims;
            grads.register::<Flex>(node.id, new_tensor(dx, &[d.n, d.c, d.h, d.w]));
        }
    }
}

/// Triplet attention's ZPool (`cat(max, mean)` over `axis`) straight from NCHW, differentiable
/// on `Autodiff<Flex>`; `None` when `x` does not route to the kernels.
///
/// # Shapes
/// `[N, C, H, W] -> [N, 2, A, B]` with `(A, B)` as [`Axis::pooled`] says.
pub fn zpool(x: Tensor<4>, axis: Axis) -> Option<Tensor<4>> {
    let run = |x: &FlexTensor| {
        let d = dims(x);
        let (a, b) = axis.pooled(d);
        let (pooled, argmax) = cpu::zpool_forward(values(x), d, axis);
        (new_tensor(pooled, &[d.n, 2, a, b]), argmax, d)
    };
    match route(&x) {
        Route::Flex => Some(from_flex(run(&contiguous(flex(x))).0)),
        Route::AutodiffFlex => {
            let x = ad(x);
            let xp = contiguous(x.primitive().clone());
            let (pooled, argmax, dims) = run(&xp);
            let output = match ZPoolBackward
                .prepare::<NoCheckpointing>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(ZPoolState { argmax, dims, axis }, pooled),
                OpsKind::UnTracked(prep) => prep.finish(pooled),
            };
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}

#[derive(Debug, Clone)]
struct TripletState {
    x: FlexTensor,
    gates: [FlexTensor; 3],
}

#[derive(Debug)]
struct TripletBackward;

impl Backward<Flex, 4> for TripletBackward {
    type State = TripletState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = dims(&s.x);
        let [g_cw, g_hc, g_hw] = &s.gates;
        let (dx, d_cw, d_hc, d_hw) = cpu::triplet_backward(
            values(&s.x),
            values(g_cw),
            values(g_hc),
            values(g_hw),
            values(&grad),
            d,
        );
        let shapes = [
            [d.n, d.c, d.h, d.w],
            [d.n, 1, d.c, d.w],
            [d.n, 1, d.h, d.c],
            [d.n, 1, d.h, d.w],
        ];
        for ((node, g), shape) in ops
            .parents
            .into_iter()
            .zip([dx, d_cw, d_hc, d_hw])
            .zip(shapes)
        {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, new_tensor(g, &shape));
            }
        }
    }
}

/// `T(x) = (x * g_cw + x * g_hc + x * g_hw) / 3` of triplet attention in one pass, each gate
/// broadcast over the dimension its ZPool reduced; differentiable on `Autodiff<Flex>`; `None`
/// when `x` does not route to the kernels.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `g_cw`: `[N, 1, C, W]`, `g_hc`: `[N, 1, H, C]`, `g_hw`: `[N, 1, H, W]`
pub fn triplet_combine(
    x: Tensor<4>,
    g_cw: Tensor<4>,
    g_hc: Tensor<4>,
    g_hw: Tensor<4>,
) -> Option<Tensor<4>> {
    let run = |x: &FlexTensor, g: &[FlexTensor; 3]| {
        let d = dims(x);
        let y = cpu::triplet_forward(values(x), values(&g[0]), values(&g[1]), values(&g[2]), d);
        new_tensor(y, &[d.n, d.c, d.h, d.w])
    };
    match route(&x) {
        Route::Flex => {
            let x = contiguous(flex(x));
            let gates = [g_cw, g_hc, g_hw].map(|g| contiguous(flex(g)));
            Some(from_flex(run(&x, &gates)))
        }
        Route::AutodiffFlex => {
            let [x, g_cw, g_hc, g_hw] = [x, g_cw, g_hc, g_hw].map(ad);
            let nodes = [x.node(), g_cw.node(), g_hc.node(), g_hw.node()];
            let xp = contiguous(x.into_primitive());
            let gates = [g_cw, g_hc, g_hw].map(|g| contiguous(g.into_primitive()));
            let y = run(&xp, &gates);
            let output = match TripletBackward
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(TripletState { x: xp, gates }, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Inference: convolution with the batch norm folded in, then the activation
// ---------------------------------------------------------------------------------------------

/// The convolution of a conv + BN + activation unit, as [`conv_bn_act_eval`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

/// The running statistics and affine parameters of a batch norm.
#[derive(Debug, Clone)]
pub struct BnParams {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub mean: Tensor<1>,
    pub variance: Tensor<1>,
    pub epsilon: f64,
}

/// An eval-mode batch norm after a convolution with `bias`, as `y * scale + shift` per output
/// channel of the convolution without its bias: `scale = gamma / sqrt(var + eps)`,
/// `shift = (bias - mean) * scale + beta`.
pub fn fold_batch_norm(bn: BnParams, bias: Option<Tensor<1>>) -> (Vec<f32>, Vec<f32>) {
    let (gamma, beta) = (host(bn.gamma), host(bn.beta));
    let (mean, var) = (host(bn.mean), host(bn.variance));
    let bias = bias.map(host);
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + bn.epsilon as f32).sqrt())
        .collect();
    let shift = (0..scale.len())
        .map(|c| (bias.as_ref().map_or(0.0, |b| b[c]) - mean[c]) * scale[c] + beta[c])
        .collect();
    (scale, shift)
}

/// A tensor's values on the host, as `f32`.
pub fn host<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32")
}

/// `act(BN(conv(x)))` in eval mode with the batch norm folded into a per-channel scale and
/// shift of the convolution's output (`y = conv(x) * s + (b - mean) * s + beta`,
/// `s = gamma / sqrt(var + eps)`), applied in place with the activation; `None` unless `x`
/// routes to [`Route::Flex`].
///
/// # Shapes
/// `x`: `[N, C_in, H, W]`, `weight`: `[C_out, C_in / groups, k, k]` -> `[N, C_out, H', W']`
pub fn conv_bn_act_eval(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    geometry: ConvGeometry,
    bn: BnParams,
    act: Act,
) -> Option<Tensor<4>> {
    if route(&x) != Route::Flex {
        return None;
    }
    let x = contiguous(flex(x));
    let w = contiguous(flex(weight));
    let [c_out, _, k, _] = dims4(&w);
    // The batch norm scales each output channel: applied to the convolution's output rather
    // than to a copy of the weights, which at batch 1 costs more than the convolution itself.
    let (scale, shift) = fold_batch_norm(bn, bias);
    let n = dims4(&x)[0];
    let mut y = if k == 1 && geometry.stride == 1 && geometry.padding == 0 && geometry.groups == 1 {
        pointwise_forward(&x, &w, None)
    } else {
        // Flex's own convolution; its depthwise fast path is a direct convolution.
        let options = ConvOptions::new(
            [geometry.stride; 2],
            [geometry.padding; 2],
            [1, 1],
            geometry.groups,
        );
        contiguous(Flex::conv2d(x, w, None, options))
    };
    let [_, _, oh, ow] = dims4(&y);
    let plane = oh * ow;
    let apply = |out: &mut [f32]| cpu::scale_bias_act_in_place(out, plane, &scale, &shift, act);
    let dense = y.layout().contiguous_offsets() == Some((0, n * c_out * plane));
    match y.try_storage_mut::<f32>() {
        Some(out) if dense && out.len() == n * c_out * plane => apply(out),
        _ => {
            let mut owned = values(&y).to_vec();
            apply(&mut owned);
            y = new_tensor(owned, &[n, c_out, oh, ow]);
        }
    }
    Some(from_flex(y))
}

/// ULSAM in eval mode by [`cpu::subspace_eval_forward`]; `None` unless `x` routes to
/// [`Route::Flex`].
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H, W]`, `C = groups.len() * groups[i].scale.len()`
pub fn subspace_attention_eval(x: Tensor<4>, groups: &[SubspaceEval]) -> Option<Tensor<4>> {
    if route(&x) != Route::Flex {
        return None;
    }
    let x = contiguous(flex(x));
    let [n, c, h, w] = dims4(&x);
    let y = cpu::subspace_eval_forward(values(&x), h, w, groups);
    Some(from_flex(new_tensor(y, &[n, c, h, w])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::activation::{relu, relu6};
    use burn::tensor::module::conv2d;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    #[test]
    fn on_pool_runs_on_a_pool_thread_and_stays_there_when_nested() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "test threads are not rayon's"
        );
        let (outer, inner) = on_pool(|| {
            let outer = rayon::current_thread_index();
            (outer, on_pool(rayon::current_thread_index))
        });
        assert!(outer.is_some());
        assert_eq!(outer, inner);
    }

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    fn assert_close<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, what: &str) {
        let (a, b): (TensorData, TensorData) = (a.to_data(), b.to_data());
        assert_eq!(a.shape(), b.shape(), "{what}: shapes");
        a.assert_approx_eq::<f32>(&b, Tolerance::absolute(2e-4).set_relative(2e-4));
    }

    fn plain_bn_act(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, act: Act) -> Tensor<4> {
        let out = burn::tensor::module::batch_norm_train(x, gamma, beta, 1e-5).output;
        match act {
            Act::Identity => out,
            Act::Relu => relu(out),
            Act::Relu6 => relu6(out),
        }
    }

    #[test]
    fn routes() {
        let x = random([1, 1, 2, 2], &Device::flex());
        assert_eq!(route(&x), Route::Flex);
        let x = random([1, 1, 2, 2], &Device::flex().autodiff());
        assert_eq!(route(&x), Route::AutodiffFlex);
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

    #[test]
    fn depthwise_and_pointwise_equal_the_plain_path_with_gradients() {
        let device = Device::flex().autodiff();
        // (C_in, C_out, k, stride, pad, groups, H)
        let cases = [
            (6, 6, 3, 1, 1, 6, 9),
            (6, 6, 3, 2, 1, 6, 9),
            (6, 6, 3, 2, 1, 6, 8),
            (4, 4, 1, 1, 0, 4, 5),
            (5, 7, 1, 1, 0, 1, 6),
            (40, 3, 1, 1, 0, 1, 2),
        ];
        for (c_in, c_out, k, stride, pad, groups, h) in cases {
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

    #[test]
    fn folded_inference_equals_conv_then_batch_norm() {
        let device = Device::flex();
        // (C_in, C_out, k, stride, pad, groups)
        for (c_in, c_out, k, stride, pad, groups) in [
            (3, 8, 3, 2, 1, 1),
            (8, 8, 3, 1, 1, 8),
            (8, 8, 3, 2, 1, 8),
            (8, 12, 1, 1, 0, 1),
            (2, 1, 7, 1, 3, 1),
        ] {
            let x = random([2, c_in, 10, 10], &device);
            let w = random([c_out, c_in / groups, k, k], &device);
            let b = random([c_out], &device);
            let bn = BnParams {
                gamma: random([c_out], &device),
                beta: random([c_out], &device),
                mean: random([c_out], &device),
                variance: random([c_out], &device).abs().add_scalar(0.1),
                epsilon: 1e-5,
            };
            for act in [Act::Identity, Act::Relu6] {
                let geometry = ConvGeometry {
                    stride,
                    padding: pad,
                    groups,
                };
                let fused = conv_bn_act_eval(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    geometry,
                    bn.clone(),
                    act,
                )
                .expect("flex routes");
                let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], groups);
                let plain = burn::tensor::module::batch_norm(
                    conv2d(x.clone(), w.clone(), Some(b.clone()), options),
                    bn.gamma.clone(),
                    bn.beta.clone(),
                    bn.mean.clone(),
                    bn.variance.clone(),
                    1e-5,
                );
                let plain = if act == Act::Relu6 {
                    relu6(plain)
                } else {
                    plain
                };
                assert_close(&fused, &plain, "folded conv + bn");
            }
        }
    }
}
