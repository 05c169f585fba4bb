//! Triplet attention: ZPool along one axis, and the gated average of the three branches,
//! read and written in NCHW instead of through permuted copies.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;

use super::{
    Route, ad, contiguous, dims4, flex, from_ad, from_flex, new_tensor, record, route, values,
};

use super::cpu::{self, Axis, Dims};

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
            let output = record(
                ZPoolBackward,
                [x.node()],
                ZPoolState { argmax, dims, axis },
                pooled,
            );
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
            let output = record(TripletBackward, nodes, TripletState { x: xp, gates }, y);
            Some(from_ad(output))
        }
        Route::Other => None,
    }
}
