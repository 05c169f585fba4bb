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
//!
//! One file per operation: this module routes tensors and wraps the results; each operation's
//! file registers its backward pass; [`cpu`] holds the arithmetic of each on plain slices.

pub mod cpu;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, NodeGuard, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{
    Autodiff, AutodiffBackend, DispatchAutodiffContext, DispatchTensorKind, Flex,
    GradientCheckpointingStrategy,
};
use burn::tensor::{Bytes, DType, Shape, Tensor};

pub use cpu::Act;
pub use cpu::Axis;
pub use cpu::SubspaceEval;

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

/// Makes the calling thread worker 0 of rayon's global pool, which then has
/// `RAYON_NUM_THREADS` threads (default: one per core) with this one among them. For programs
/// whose main thread does the arithmetic (training, `efea-bench`): every parallel operation
/// it calls splits by work stealing as on any worker, and a 2-core machine runs 2 threads
/// instead of the 2 workers plus a main thread that holds a core while it hands work over.
/// Training full 48x48 batch 64 (`efea-bench train`, AMD EPYC with 2 cores, three
/// alternations): 73-87 img/s outside the pool, 89-93 in it.
///
/// The thread is not a pool worker between parallel operations: work handed to the pool by
/// other threads meanwhile goes to the other workers only. So a program whose main thread
/// waits on threads of its own (a server, data-parallel training over several devices)
/// should not call it, and with a single thread (`RAYON_NUM_THREADS=1`) it does nothing,
/// since a pool of the waiting main thread alone would run nothing handed to it. Batch
/// norm's running statistics, which Burn keeps per thread, stay on this one thread. `false`
/// if the pool was left as it was (one thread, or the global pool already existed).
pub fn join_global_pool() -> bool {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    threads >= 2
        && rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global()
            .is_ok()
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

/// The values of `tensor` for a result of the same length to be written over (an incoming
/// gradient is ours alone as a rule): `Some` when it holds exactly `len` contiguous `f32`
/// values from the start of a buffer that no other tensor shares.
fn overwritable(tensor: &mut FlexTensor, len: usize) -> Option<&mut [f32]> {
    if tensor.layout().contiguous_offsets() != Some((0, len)) {
        return None;
    }
    tensor
        .try_storage_mut::<f32>()
        .filter(|values| values.len() == len)
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

/// `output` as a node of the autodiff graph whose parents are `nodes`: with `backward` and its
/// `state` when some parent needs a gradient, untracked (and `state` dropped) otherwise.
fn record<B: Backward<Flex, N>, const N: usize>(
    backward: B,
    nodes: [NodeGuard; N],
    state: B::State,
    output: FlexTensor,
) -> AdTensor {
    match backward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// A convolution of `x` by `weight` (+ `bias`) whose forward pass `run` computes from contiguous
/// values, returning its output and the state of its backward pass; on `Autodiff<Flex>` it is
/// recorded with `without_bias` or `with_bias` (the backward pass for two or three parents).
/// `None` when `x` does not route to the kernels.
fn conv_op<S, B2, B3>(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    run: impl FnOnce(&FlexTensor, &FlexTensor, Option<&FlexTensor>) -> (FlexTensor, S),
    without_bias: B2,
    with_bias: B3,
) -> Option<Tensor<4>>
where
    B2: Backward<Flex, 2, State = S>,
    B3: Backward<Flex, 3, State = S>,
{
    match route(&x) {
        Route::Flex => {
            let (x, w) = (contiguous(flex(x)), contiguous(flex(weight)));
            let b = bias.map(|b| contiguous(flex(b)));
            Some(from_flex(run(&x, &w, b.as_ref()).0))
        }
        Route::AutodiffFlex => {
            let (x, w) = (ad(x), ad(weight));
            let b = bias.map(ad);
            let xp = contiguous(x.primitive().clone());
            let wp = contiguous(w.primitive().clone());
            let bp = b.as_ref().map(|b| contiguous(b.primitive().clone()));
            let (y, state) = run(&xp, &wp, bp.as_ref());
            let output = match b {
                None => record(without_bias, [x.node(), w.node()], state, y),
                Some(b) => record(with_bias, [x.node(), w.node(), b.node()], state, y),
            };
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}

fn dims4(tensor: &FlexTensor) -> [usize; 4] {
    let shape = tensor.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

mod batch_norm;
mod depthwise;
mod eval;
mod pointwise;
#[cfg(test)]
mod test_support;
mod triplet;

pub use batch_norm::{BatchNormActTrain, batch_norm_act_train};
pub use depthwise::depthwise_conv2d;
pub use eval::{
    BnParams, ConvGeometry, conv_bn_act_eval, fold_batch_norm, host, subspace_attention_eval,
};
pub use pointwise::pointwise_conv2d;
pub use triplet::{triplet_combine, zpool};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::random;
    use burn::tensor::Device;

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

    #[test]
    fn routes() {
        let x = random([1, 1, 2, 2], &Device::flex());
        assert_eq!(route(&x), Route::Flex);
        let x = random([1, 1, 2, 2], &Device::flex().autodiff());
        assert_eq!(route(&x), Route::AutodiffFlex);
    }
}
