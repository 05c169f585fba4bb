//! The network compiled for inference on the CPU: [`EfeaNet::compile`] reads a network's
//! weights once, folds every eval-mode batch norm into the convolution before it, packs the
//! weights in the layouts of the kernels here, and returns an [`InferenceNet`] whose forward
//! pass runs a few fused kernels per block on channels-last (`NHWC`) activations, in scratch
//! buffers reused from call to call, with no tensor operation, allocation or dispatch per
//! layer (`bench/RESULTS.md`, "The goals: where this stands": the per-operation overhead of
//! eval-mode `EfeaNet::forward` was most of a batch-1 pass).
//!
//! It computes what `EfeaNet::forward` computes in eval mode (`model.valid()`, dropout off,
//! running statistics), up to float32 round-off; `tests/compiled.rs` holds them equal.
//!
//! One file per operation: [`pointwise`] (1x1 convolutions, and the stem through im2col, as
//! packed matrix products with bias, activation and residual), [`depthwise`] (3x3, stride 1
//! and 2), [`triplet`] and [`subspace`] (CDSM), [`msca`]; [`simd`] holds the eight-lane
//! vector type they are written in.

mod depthwise;
mod msca;
mod pointwise;
mod simd;
mod subspace;
mod triplet;

use std::sync::Mutex;

use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::attention::{Aff as AffModule, AttentionBranch, Cdsm, Msca as MscaModule};
use crate::efea_net::EfeaNet;
use crate::kernels::{fold_batch_norm, host};
use crate::layers::{BatchNorm, ConvBnAct, square_geometry};

use depthwise::{Depthwise, output_len};
use msca::{Aff, Msca, MscaScratch, mean_positions};
use pointwise::{Pointwise, padded};
use simd::{Act, LANES};
use subspace::{Subspace, SubspaceScratch};
use triplet::{Gate, Triplet, TripletScratch};

/// Samples one task runs through the whole network at a time: enough to share each weight
/// load of the deep 1x1 products, few enough that a block's activations stay in cache.
const MICRO_BATCH: usize = 4;

/// Why a network cannot be compiled: a layer whose geometry the kernels do not implement.
/// Networks that `EfeaNetConfig::init` builds always compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{layer}: {reason}")]
    Unsupported { layer: String, reason: String },
}

fn unsupported(layer: impl Into<String>, reason: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        layer: layer.into(),
        reason: reason.into(),
    }
}

/// An inverted residual block: expand (1x1 + ReLU6), depthwise (3x3 + ReLU6), project (1x1),
/// the CDSM, the residual.
#[derive(Debug, Clone)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    cdsm: Option<(Triplet, Subspace)>,
    residual: bool,
}

/// [`EfeaNet`] compiled for inference on the CPU (see the module documentation).
#[derive(Debug)]
pub struct InferenceNet {
    in_channels: usize,
    num_classes: usize,
    stem_stride: usize,
    /// The stem as a product over im2col rows `(c_in, ky, kx)`.
    stem: Pointwise,
    blocks: Vec<Block>,
    last: Pointwise,
    msca: Option<Msca>,
    /// Blocks (`features.N`, 1-based) whose outputs are P3, P5, P7.
    taps: [usize; 3],
    /// `[head_features, num_classes]`, as Burn's `Linear` stores it.
    classifier: Vec<f32>,
    classifier_bias: Vec<f32>,
    /// Scratch buffers of finished passes, for the next ones.
    workspaces: Mutex<Vec<Workspace>>,
}

/// The buffers of one pass over a micro-batch. They grow to the largest size asked for and
/// are then reused.
#[derive(Debug, Default)]
struct Workspace {
    columns: Vec<f32>,
    x: Vec<f32>,
    y: Vec<f32>,
    hidden: Vec<f32>,
    depth: Vec<f32>,
    attended: Vec<f32>,
    taps: [Vec<f32>; 3],
    last: Vec<f32>,
    pooled: Vec<f32>,
    multi_scale: Vec<f32>,
    triplet: TripletScratch,
    subspace: SubspaceScratch,
    msca: MscaScratch,
}

fn grow(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// A convolution's weight with its batch norm folded: `(weight, scale, shift)` per output
/// channel, the weight as stored (`[c_out, c_in / groups, k, k]` row-major).
fn fold(conv: &Conv2d, bn: &BatchNorm) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let weight = conv.weight.val();
    let device = weight.device();
    let (scale, shift) =
        fold_batch_norm(bn.eval_params(&device), conv.bias.as_ref().map(|b| b.val()));
    (host(weight), scale, shift)
}

/// Checks a convolution's geometry: kernel `k`, `stride`, padding `k / 2`, `groups`.
fn check_conv(
    name: &str,
    conv: &Conv2d,
    k: usize,
    stride: Option<usize>,
    groups: usize,
) -> Result<[usize; 4], CompileError> {
    let dims = conv.weight.dims();
    let geometry = square_geometry(conv)
        .ok_or_else(|| unsupported(name, "not a square, undilated convolution"))?;
    if dims[2] != k || dims[3] != k {
        return Err(unsupported(
            name,
            format!("kernel {}x{}, expected {k}x{k}", dims[2], dims[3]),
        ));
    }
    if geometry.padding != k / 2 {
        return Err(unsupported(
            name,
            format!("padding {}, expected {}", geometry.padding, k / 2),
        ));
    }
    if stride.is_some_and(|s| s != geometry.stride) || !matches!(geometry.stride, 1 | 2) {
        return Err(unsupported(name, format!("stride {}", geometry.stride)));
    }
    if geometry.groups != groups {
        return Err(unsupported(
            name,
            format!("groups {}, expected {groups}", geometry.groups),
        ));
    }
    Ok(dims)
}

/// A 1x1 conv + BN + activation as a packed product.
fn pointwise(
    name: &str,
    conv: &Conv2d,
    bn: &BatchNorm,
    act: Act,
) -> Result<Pointwise, CompileError> {
    let [c_out, c_in, _, _] = check_conv(name, conv, 1, Some(1), 1)?;
    let (weight, scale, shift) = fold(conv, bn);
    Ok(Pointwise::new(&weight, c_out, c_in, &scale, &shift, act))
}

fn act_of(activation: crate::layers::Activation) -> Act {
    match activation {
        crate::layers::Activation::Relu6 => Act::Relu6,
        crate::layers::Activation::Relu => Act::Relu,
        crate::layers::Activation::Identity => Act::Identity,
    }
}

fn conv_bn_act(name: &str, unit: &ConvBnAct) -> Result<Pointwise, CompileError> {
    pointwise(name, &unit.conv, &unit.bn, act_of(unit.activation))
}

fn whole_vectors(name: &str, channels: usize) -> Result<(), CompileError> {
    if channels.is_multiple_of(LANES) {
        Ok(())
    } else {
        Err(unsupported(
            name,
            format!("{channels} channels, not a multiple of {LANES}"),
        ))
    }
}

fn compile_cdsm(
    name: &str,
    cdsm: &Cdsm,
    channels: usize,
) -> Result<(Triplet, Subspace), CompileError> {
    let gate = |gate: &crate::attention::AttentionGate, which: &str, transposed: bool| {
        let layer = format!("{name}.cdsm.triplet.{which}");
        check_conv(&layer, &gate.conv, 7, Some(1), 1)?;
        let (weight, scale, shift) = fold(&gate.conv, &gate.bn);
        Ok::<_, CompileError>(Gate::new(&weight, scale[0], shift[0], transposed))
    };
    let triplet = Triplet {
        // The (C, W) map is laid out [W][C]: its kernel is transposed.
        cw: gate(&cdsm.triplet.cw, "cw", true)?,
        hc: gate(&cdsm.triplet.hc, "hc", false)?,
        hw: gate(&cdsm.triplet.hw, "hw", false)?,
    };
    let groups = cdsm
        .subspace
        .eval_params(&cdsm.triplet.cw.conv.weight.val().device());
    let width = groups[0].scale.len();
    if width * groups.len() != channels {
        return Err(unsupported(
            format!("{name}.cdsm.subspace"),
            "subspaces do not cover the channels",
        ));
    }
    let concat = |f: fn(&crate::kernels::SubspaceEval) -> &[f32]| -> Vec<f32> {
        groups.iter().flat_map(|g| f(g).iter().copied()).collect()
    };
    let subspace = Subspace::new(
        concat(|g| &g.scale),
        concat(|g| &g.shift),
        concat(|g| &g.weight),
        groups.iter().map(|g| g.bias).collect(),
    );
    Ok((triplet, subspace))
}

fn compile_branch(name: &str, branch: &AttentionBranch) -> Result<[Pointwise; 2], CompileError> {
    Ok([
        pointwise(
            &format!("{name}.conv1"),
            &branch.conv1,
            &branch.bn1,
            Act::Relu,
        )?,
        pointwise(
            &format!("{name}.conv2"),
            &branch.conv2,
            &branch.bn2,
            Act::Identity,
        )?,
    ])
}

fn compile_aff(name: &str, aff: &AffModule) -> Result<Aff, CompileError> {
    Ok(Aff {
        local: compile_branch(&format!("{name}.local_att"), &aff.local_att)?,
        global: compile_branch(&format!("{name}.global_att"), &aff.global_att)?,
    })
}

fn compile_msca(msca: &MscaModule) -> Result<Msca, CompileError> {
    if msca.lateral.len() != 3 || msca.fuse.len() != 2 {
        return Err(unsupported(
            "msca",
            "three laterals and two fusions expected",
        ));
    }
    let lateral = [0, 1, 2].map(|i| conv_bn_act(&format!("msca.lateral.{i}"), &msca.lateral[i]));
    let [l3, l5, l7] = lateral;
    let lateral = [l3?, l5?, l7?];
    let channels = lateral[0].c_out;
    Ok(Msca {
        lateral,
        fuse: [
            compile_aff("msca.fuse.0", &msca.fuse[0])?,
            compile_aff("msca.fuse.1", &msca.fuse[1])?,
        ],
        channels,
    })
}

impl EfeaNet {
    /// This network's inference form for the CPU, from its current weights and batch-norm
    /// running statistics (see [`InferenceNet`]). Compile again after changing the weights.
    pub fn compile(&self) -> Result<InferenceNet, CompileError> {
        InferenceNet::new(self)
    }
}

impl InferenceNet {
    fn new(net: &EfeaNet) -> Result<Self, CompileError> {
        let [stem_channels, in_channels, _, _] = check_conv("stem", &net.stem.conv, 3, None, 1)?;
        let stem_stride = net.stem.conv.stride[0];
        whole_vectors("stem", stem_channels)?;
        let (weight, scale, shift) = fold(&net.stem.conv, &net.stem.bn);
        // im2col rows are (c_in, ky, kx), the order of the weight's inner dimensions.
        let stem = Pointwise::new(
            &weight,
            stem_channels,
            in_channels * 9,
            &scale,
            &shift,
            act_of(net.stem.activation),
        );
        let mut channels = stem_channels;
        let mut blocks = Vec::with_capacity(net.blocks.len());
        for (i, block) in net.blocks.iter().enumerate() {
            let name = format!("blocks.{i}");
            let expand = block
                .expand
                .as_ref()
                .map(|e| conv_bn_act(&format!("{name}.expand"), e))
                .transpose()?;
            let hidden = expand.as_ref().map_or(channels, |e| e.c_out);
            if expand.as_ref().is_some_and(|e| e.c_in != channels) {
                return Err(unsupported(
                    &name,
                    "expansion input does not match the previous block",
                ));
            }
            whole_vectors(&name, hidden)?;
            let dw = &block.depthwise;
            let dims = check_conv(&format!("{name}.depthwise"), &dw.conv, 3, None, hidden)?;
            if dims[0] != hidden || dw.activation != crate::layers::Activation::Relu6 {
                return Err(unsupported(
                    format!("{name}.depthwise"),
                    "a depthwise 3x3 + ReLU6 expected",
                ));
            }
            let (weight, scale, shift) = fold(&dw.conv, &dw.bn);
            let depthwise = Depthwise::new(&weight, hidden, dw.conv.stride[0], &scale, &shift);
            let project = pointwise(
                &format!("{name}.project"),
                &block.project,
                &block.project_bn,
                Act::Identity,
            )?;
            if project.c_in != hidden {
                return Err(unsupported(
                    &name,
                    "projection input does not match the depthwise",
                ));
            }
            let out = project.c_out;
            whole_vectors(&name, out)?;
            let cdsm = block
                .cdsm
                .as_ref()
                .map(|c| compile_cdsm(&name, c, out))
                .transpose()?;
            if block.residual && (channels != out || depthwise.stride != 1) {
                return Err(unsupported(
                    &name,
                    "a residual needs stride 1 and equal widths",
                ));
            }
            blocks.push(Block {
                expand,
                depthwise,
                project,
                cdsm,
                residual: block.residual,
            });
            channels = out;
        }
        let last = conv_bn_act("last", &net.last)?;
        let msca = net.msca.as_ref().map(compile_msca).transpose()?;
        let taps: [usize; 3] = match net.taps.as_slice() {
            &[a, b, c] => [a, b, c],
            _ if msca.is_none() => [0; 3],
            _ => return Err(unsupported("taps", "three MSCA taps expected")),
        };
        let classifier = host(net.classifier.weight.val());
        let [features, num_classes] = net.classifier.weight.dims();
        let head = last.c_out + msca.as_ref().map_or(0, |m| m.channels);
        if features != head {
            return Err(unsupported(
                "classifier",
                format!("{features} inputs, the head gives {head}"),
            ));
        }
        let classifier_bias = net
            .classifier
            .bias
            .as_ref()
            .map_or_else(|| vec![0.0; num_classes], |b| host(b.val()));
        Ok(Self {
            in_channels,
            num_classes,
            stem_stride,
            stem,
            blocks,
            last,
            msca,
            taps,
            classifier,
            classifier_bias,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Logits `[batch, K]` (row-major) of normalised pixels `[batch, C_in, height, width]`
    /// (row-major, NCHW).
    ///
    /// # Panics
    /// When `pixels` does not hold `batch * C_in * height * width` values, or the image is
    /// smaller than the network's five stride-2 stages (and stem stride) allow.
    pub fn forward(&self, pixels: &[f32], batch: usize, height: usize, width: usize) -> Vec<f32> {
        let image = self.in_channels * height * width;
        assert_eq!(
            pixels.len(),
            batch * image,
            "pixels are [batch, {}, {height}, {width}]",
            self.in_channels
        );
        assert!(height >= 1 && width >= 1, "a non-empty image");
        let k = self.num_classes;
        let mut logits = vec![0.0f32; batch * k];
        if batch == 0 {
            return logits;
        }
        // One task per micro-batch; a single micro-batch splits its larger operations over
        // the pool instead. Either way on a pool thread: a parallel operation called from
        // outside the pool hands its work over and sleeps until it is done (see
        // `kernels::on_pool`).
        let run = |(input, out): (&[f32], &mut [f32]), parallel: bool| {
            let mut workspace = self
                .workspaces
                .lock()
                .map(|mut pool| pool.pop())
                .unwrap_or_default()
                .unwrap_or_default();
            self.forward_micro_batch(
                input,
                out.len() / k,
                [height, width],
                parallel,
                &mut workspace,
                out,
            );
            if let Ok(mut pool) = self.workspaces.lock() {
                pool.push(workspace);
            }
        };
        crate::kernels::on_pool(|| {
            if batch <= MICRO_BATCH {
                run((pixels, &mut logits), true);
            } else {
                pixels
                    .par_chunks(MICRO_BATCH * image)
                    .zip(logits.par_chunks_mut(MICRO_BATCH * k))
                    .with_max_len(1)
                    .for_each(|chunk| run(chunk, false));
            }
        });
        logits
    }

    /// [`Self::forward`] on a Burn tensor: `[N, C_in, H, W]` -> logits `[N, K]` on the same
    /// device.
    pub fn forward_tensor(&self, x: Tensor<4>) -> Tensor<2> {
        let device = x.device();
        let [n, _, h, w] = x.dims();
        let logits = self.forward(&host(x), n, h, w);
        Tensor::from_data(TensorData::new(logits, [n, self.num_classes]), &device)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_micro_batch(
        &self,
        input: &[f32],
        n: usize,
        [height, width]: [usize; 2],
        parallel: bool,
        ws: &mut Workspace,
        logits: &mut [f32],
    ) {
        let Workspace {
            columns,
            x,
            y,
            hidden,
            depth,
            attended,
            taps,
            last,
            pooled,
            multi_scale,
            triplet,
            subspace,
            msca,
        } = ws;
        // Stem: im2col, then the product.
        let s = self.stem_stride;
        let (mut h, mut w) = (output_len(height, s), output_len(width, s));
        let k = self.stem.k;
        let cols = grow(columns, n * h * w * k);
        im2col(input, [self.in_channels, height, width], s, [h, w], k, cols);
        let mut c = self.stem.n;
        self.stem
            .forward(cols, grow(x, n * h * w * c), None, parallel);
        let mut tap_dims = [[0usize; 3]; 3];
        for (i, block) in self.blocks.iter().enumerate() {
            let input_len = n * h * w * c;
            let expanded: &[f32] = match &block.expand {
                Some(expand) => {
                    let out = grow(hidden, n * h * w * expand.n);
                    expand.forward(&x[..input_len], out, None, parallel);
                    out
                }
                None => &x[..input_len],
            };
            let hc = block.depthwise.channels;
            let stride = block.depthwise.stride;
            let (oh, ow) = (output_len(h, stride), output_len(w, stride));
            let depth = grow(depth, n * oh * ow * hc);
            for (sample, out) in expanded
                .chunks_exact(h * w * hc)
                .zip(depth.chunks_exact_mut(oh * ow * hc))
            {
                block.depthwise.forward(sample, h, w, out, parallel);
            }
            let co = block.project.n;
            let out_len = n * oh * ow * co;
            let residual = block.residual.then_some(&x[..input_len]);
            let out = grow(y, out_len);
            match &block.cdsm {
                None => block.project.forward(depth, out, residual, parallel),
                Some((t, u)) => {
                    block.project.forward(depth, out, None, parallel);
                    let attended = grow(attended, out_len);
                    let sample = oh * ow * co;
                    for (src, dst) in out
                        .chunks_exact(sample)
                        .zip(attended.chunks_exact_mut(sample))
                    {
                        t.forward(src, [oh, ow, co], dst, triplet);
                    }
                    for (j, (src, dst)) in attended
                        .chunks_exact(sample)
                        .zip(out.chunks_exact_mut(sample))
                        .enumerate()
                    {
                        let res = residual.map(|r| &r[j * sample..(j + 1) * sample]);
                        u.forward(src, [oh, ow], res, dst, subspace);
                    }
                }
            }
            std::mem::swap(x, y);
            (h, w, c) = (oh, ow, co);
            if self.msca.is_some()
                && let Some(t) = self.taps.iter().position(|&t| t == i + 1)
            {
                grow(&mut taps[t], out_len).copy_from_slice(&x[..out_len]);
                tap_dims[t] = [h, w, c];
            }
        }
        // Last 1x1, global average.
        let l = self.last.n;
        let last_out = grow(last, n * h * w * l);
        self.last
            .forward(&x[..n * h * w * c], last_out, None, parallel);
        let pooled = grow(pooled, n * l);
        mean_positions(last_out, n, l, pooled);
        let ms_width = self.msca.as_ref().map_or(0, |m| padded(m.channels));
        let multi_scale = grow(multi_scale, n * ms_width);
        if let Some(m) = &self.msca {
            let lens = tap_dims.map(|[h, w, c]| n * h * w * c);
            let [t3, t5, t7] = &*taps;
            m.forward(
                [&t3[..lens[0]], &t5[..lens[1]], &t7[..lens[2]]],
                tap_dims,
                n,
                parallel,
                multi_scale,
                msca,
            );
        }
        // Head: concat(pooled[..L], f_ms[..D]) x W + b (dropout is off in eval mode).
        let k = self.num_classes;
        let (real_l, real_d) = (
            self.last.c_out,
            self.msca.as_ref().map_or(0, |m| m.channels),
        );
        for (sample, out) in logits.chunks_exact_mut(k).enumerate() {
            out.copy_from_slice(&self.classifier_bias);
            let multi_scale = &multi_scale[sample * ms_width..(sample + 1) * ms_width];
            let features = pooled[sample * l..][..real_l]
                .iter()
                .chain(&multi_scale[..real_d]);
            for (f, row) in features.zip(self.classifier.chunks_exact(k)) {
                for (o, wgt) in out.iter_mut().zip(row) {
                    *o += f * wgt;
                }
            }
        }
    }
}

/// Rows `(c_in, ky, kx)` of a 3x3, padding 1 convolution with `stride`, one row per output
/// pixel of each sample, `k` (padded) values each.
fn im2col(
    input: &[f32],
    [c_in, h, w]: [usize; 3],
    stride: usize,
    [oh, ow]: [usize; 2],
    k: usize,
    out: &mut [f32],
) {
    for (p, row) in out.chunks_exact_mut(k).enumerate() {
        let (sample, oy, ox) = (p / (oh * ow), p / ow % oh, p % ow);
        row.fill(0.0);
        for ci in 0..c_in {
            let plane = &input[(sample * c_in + ci) * h * w..][..h * w];
            for ky in 0..3 {
                let Some(iy) = (oy * stride + ky).checked_sub(1).filter(|&iy| iy < h) else {
                    continue;
                };
                for kx in 0..3 {
                    if let Some(ix) = (ox * stride + kx).checked_sub(1).filter(|&ix| ix < w) {
                        row[ci * 9 + ky * 3 + kx] = plane[iy * w + ix];
                    }
                }
            }
        }
    }
}
