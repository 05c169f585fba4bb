//! Per-layer summary of an [`EfeaNetConfig`]: output shapes, parameters and multiply-adds.
//!
//! Multiply-adds count convolutions and linear layers only (the convention of thop and
//! ptflops, and of the reference's `count_params_and_macs`): a conv costs
//! `C_out * H_out * W_out * (C_in / groups) * k * k`, a linear `in * out`.
//! Parameters are what PyTorch's `parameters()` yields (BN running statistics excluded).

use crate::EfeaNetConfig;
use crate::attention::subspace_groups;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSummary {
    /// PyTorch name of the layer (`features.3`, `features.3.cdsm`, `msca`, `classifier`).
    pub name: String,
    pub kind: String,
    /// `[C, H, W]` or `[F]` per sample.
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub macs: u64,
}

/// The table and its totals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelSummary {
    pub layers: Vec<LayerSummary>,
    pub total_params: u64,
    pub total_macs: u64,
}

/// Cost of a square convolution with `padding = k / 2`; returns `(params, macs, out_size)`.
#[allow(clippy::too_many_arguments)]
fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    bias: bool,
    h: usize,
    w: usize,
) -> (u64, u64, [usize; 2]) {
    let pad = k / 2;
    let out = |s: usize| (s + 2 * pad - k) / stride + 1;
    let (ho, wo) = (out(h), out(w));
    let weights = (c_out * (c_in / groups) * k * k) as u64;
    let params = weights + if bias { c_out as u64 } else { 0 };
    let macs = weights * (ho * wo) as u64;
    (params, macs, [ho, wo])
}

/// Trainable parameters of a batch norm over `c` channels.
fn bn(c: usize) -> u64 {
    2 * c as u64
}

/// `(params, macs)` of a CDSM on a `[c, h, w]` map.
fn cdsm_cost(c: usize, groups: usize, h: usize, w: usize) -> (u64, u64) {
    // Triplet attention: three 2->1 7x7 gates on (C, W), (H, C) and (H, W) planes.
    let mut params = 0;
    let mut macs = 0;
    for (a, b) in [(c, w), (h, c), (h, w)] {
        let (p, m, _) = conv(2, 1, 7, 1, 1, false, a, b);
        params += p + bn(1);
        macs += m;
    }
    // Subspace attention: per group a depthwise 1x1 (bias) and a 1x1 to one map (bias).
    let g = subspace_groups(c, groups);
    let width = c / g;
    for _ in 0..g {
        let (p1, m1, _) = conv(width, width, 1, 1, width, true, h, w);
        let (p2, m2, _) = conv(width, 1, 1, 1, 1, true, h, w);
        params += p1 + bn(width) + p2 + bn(1);
        macs += m1 + m2;
    }
    (params, macs)
}

/// `(params, macs)` of one AFF at `d` channels on an `h x w` grid.
fn aff_cost(d: usize, r: usize, h: usize, w: usize) -> (u64, u64) {
    let hidden = (d / r).max(1);
    let (p1, m1, _) = conv(d, hidden, 1, 1, 1, true, h, w);
    let (p2, m2, _) = conv(hidden, d, 1, 1, 1, true, h, w);
    let (g1, gm1, _) = conv(d, hidden, 1, 1, 1, true, 1, 1);
    let (g2, gm2, _) = conv(hidden, d, 1, 1, 1, true, 1, 1);
    (
        p1 + p2 + g1 + g2 + 2 * (bn(hidden) + bn(d)),
        m1 + m2 + gm1 + gm2,
    )
}

impl EfeaNetConfig {
    /// The per-layer table for one `input_size x input_size` sample.
    pub fn summary(&self) -> ModelSummary {
        let mut layers = Vec::new();
        let mut push = |name: String, kind: &str, shape: Vec<usize>, params: u64, macs: u64| {
            layers.push(LayerSummary {
                name,
                kind: kind.to_string(),
                output_shape: shape,
                params,
                macs,
            })
        };
        let s = self.input_size;
        let stem = self.stem_channels();
        let (p, m, [mut h, mut w]) = conv(
            self.in_channels,
            stem,
            3,
            self.resolved_stem_stride(),
            1,
            false,
            s,
            s,
        );
        push(
            "features.0".into(),
            "conv3x3+bn+relu6",
            vec![stem, h, w],
            p + bn(stem),
            m,
        );

        let cdsm_blocks = self.resolved_cdsm_blocks();
        let taps = self.msca_taps();
        let mut tap_shapes = Vec::new();
        for block in self.blocks() {
            let hidden = block.in_channels * block.expansion;
            let (mut params, mut macs) = (0, 0);
            if block.expansion != 1 {
                let (p, m, _) = conv(block.in_channels, hidden, 1, 1, 1, false, h, w);
                params += p + bn(hidden);
                macs += m;
            }
            let (p, m, [ho, wo]) = conv(hidden, hidden, 3, block.stride, hidden, false, h, w);
            params += p + bn(hidden);
            macs += m;
            let (p, m, _) = conv(hidden, block.out_channels, 1, 1, 1, false, ho, wo);
            params += p + bn(block.out_channels);
            macs += m;
            (h, w) = (ho, wo);
            let shape = vec![block.out_channels, h, w];
            push(
                format!("features.{}", block.index),
                "inverted residual",
                shape.clone(),
                params,
                macs,
            );
            if cdsm_blocks.contains(&block.index) {
                let (p, m) = cdsm_cost(block.out_channels, self.cdsm_groups, h, w);
                push(
                    format!("features.{}.cdsm", block.index),
                    "cdsm",
                    shape.clone(),
                    p,
                    m,
                );
            }
            if taps.contains(&block.index) {
                tap_shapes.push(shape);
            }
        }
        let last = self.last_channels();
        let (p, m, _) = conv(self.blocks()[16].out_channels, last, 1, 1, 1, false, h, w);
        push(
            "features.18".into(),
            "conv1x1+bn+relu6",
            vec![last, h, w],
            p + bn(last),
            m,
        );

        if self.msca {
            let d = self.msca_channels;
            let (mut params, mut macs) = (0, 0);
            for shape in &tap_shapes {
                let (p, m, _) = conv(shape[0], d, 1, 1, 1, false, shape[1], shape[2]);
                params += p + bn(d);
                macs += m;
            }
            for _ in 0..2 {
                let (p, m) = aff_cost(d, self.msca_reduction, h, w);
                params += p;
                macs += m;
            }
            push("msca".into(), "msca", vec![d], params, macs);
        }
        let features = self.head_features();
        let k = self.num_classes;
        push(
            "classifier".into(),
            "linear",
            vec![k],
            (features * k + k) as u64,
            (features * k) as u64,
        );

        let total_params = layers.iter().map(|l| l.params).sum();
        let total_macs = layers.iter().map(|l| l.macs).sum();
        ModelSummary {
            layers,
            total_params,
            total_macs,
        }
    }
}
