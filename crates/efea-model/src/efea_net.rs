//! EFEA-MSM ("Enhanced Facial Expression Analysis via Multi-Scale Polymerization and
//! Cross-Dimensional Modulation"): MobileNetV2 with CDSM in chosen blocks and MSCA over three
//! taps, fused by one linear layer. The single definition is `docs/MODEL.md`.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::attention::global_avg_pool;
use crate::attention::{Msca, MscaConfig};
use crate::backbone::{
    BlockPlan, CHANNEL_DIVISOR, InvertedResidual, InvertedResidualConfig, LAST_CHANNELS,
    STEM_CHANNELS, block_plan, last_block_of_stages, make_divisible,
};
use crate::layers::{ConvBnAct, ConvBnActConfig, linear};

/// Inputs at least this large get a stride-2 stem (MODEL.md: a 48x48 face keeps its resolution).
pub const STRIDE_2_STEM_FROM: usize = 96;

/// Stages whose outputs feed MSCA (P3, P5, P7), 1-based.
pub const MSCA_TAP_STAGES: [usize; 3] = [3, 5, 7];

/// The ablations of MODEL.md, as config values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Plain MobileNetV2: no CDSM, no MSCA.
    Plain,
    /// CDSM only.
    Cdsm,
    /// MSCA only.
    Msca,
    /// Both (the paper's network).
    #[default]
    Full,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Plain, Preset::Cdsm, Preset::Msca, Preset::Full];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Plain => "plain",
            Preset::Cdsm => "cdsm",
            Preset::Msca => "msca",
            Preset::Full => "full",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown preset `{s}` (expected plain, cdsm, msca or full)"))
    }
}

/// Every hyper-parameter of MODEL.md, with its default.
#[derive(Config, Debug, PartialEq)]
pub struct EfeaNetConfig {
    /// 1 (grayscale) or 3.
    #[config(default = 1)]
    pub in_channels: usize,
    /// 7 for FER2013 and CK+, 8 for CK+ with neutral.
    #[config(default = 7)]
    pub num_classes: usize,
    /// `S`: inputs are `S x S`.
    #[config(default = 48)]
    pub input_size: usize,
    /// `alpha`, MobileNetV2's width multiplier.
    #[config(default = 1.0)]
    pub width_mult: f64,
    /// `None`: 1 below 96 pixels, else 2.
    #[config(default = "None")]
    pub stem_stride: Option<usize>,
    /// Blocks (`features.N`, 1..=17) that carry a CDSM; `None`: the last block of stages 2..7.
    #[config(default = "None")]
    pub cdsm_blocks: Option<Vec<usize>>,
    #[config(default = 4)]
    pub cdsm_groups: usize,
    #[config(default = true)]
    pub msca: bool,
    /// `D`.
    #[config(default = 128)]
    pub msca_channels: usize,
    /// `r`.
    #[config(default = 4)]
    pub msca_reduction: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
}

impl EfeaNetConfig {
    /// The default network with one of the ablations of MODEL.md applied.
    pub fn preset(preset: Preset) -> Self {
        let config = Self::new();
        match preset {
            Preset::Full => config,
            Preset::Cdsm => config.with_msca(false),
            Preset::Msca => config.with_cdsm_blocks(Some(vec![])),
            Preset::Plain => config.with_msca(false).with_cdsm_blocks(Some(vec![])),
        }
    }

    /// Which ablation this config is, if any.
    pub fn preset_name(&self) -> Option<Preset> {
        let cdsm = !self.resolved_cdsm_blocks().is_empty();
        let default_cdsm = self.resolved_cdsm_blocks() == default_cdsm_blocks(self.width_mult);
        match (cdsm, self.msca) {
            (false, false) => Some(Preset::Plain),
            (true, false) if default_cdsm => Some(Preset::Cdsm),
            (false, true) => Some(Preset::Msca),
            (true, true) if default_cdsm => Some(Preset::Full),
            _ => None,
        }
    }

    pub fn resolved_stem_stride(&self) -> usize {
        self.stem_stride
            .unwrap_or(if self.input_size < STRIDE_2_STEM_FROM {
                1
            } else {
                2
            })
    }

    pub fn resolved_cdsm_blocks(&self) -> Vec<usize> {
        self.cdsm_blocks
            .clone()
            .unwrap_or_else(|| default_cdsm_blocks(self.width_mult))
    }

    pub fn stem_channels(&self) -> usize {
        make_divisible(STEM_CHANNELS as f64 * self.width_mult, CHANNEL_DIVISOR)
    }

    pub fn last_channels(&self) -> usize {
        make_divisible(
            LAST_CHANNELS as f64 * self.width_mult.max(1.0),
            CHANNEL_DIVISOR,
        )
    }

    pub fn blocks(&self) -> Vec<BlockPlan> {
        block_plan(self.width_mult)
    }

    /// Indices (`features.N`) of the blocks whose outputs are P3, P5, P7.
    pub fn msca_taps(&self) -> [usize; 3] {
        let last = last_block_of_stages(self.width_mult);
        MSCA_TAP_STAGES.map(|stage| last[stage - 1])
    }

    /// Width of the vector the classifier sees.
    pub fn head_features(&self) -> usize {
        self.last_channels() + if self.msca { self.msca_channels } else { 0 }
    }

    /// Checks what `init` would otherwise panic on.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.in_channels, 1 | 3) {
            return Err(format!(
                "in_channels must be 1 or 3, got {}",
                self.in_channels
            ));
        }
        if self.num_classes < 2 {
            return Err(format!(
                "num_classes must be at least 2, got {}",
                self.num_classes
            ));
        }
        if !(self.width_mult > 0.0 && self.width_mult.is_finite()) {
            return Err(format!(
                "width_mult must be positive, got {}",
                self.width_mult
            ));
        }
        if !matches!(self.resolved_stem_stride(), 1 | 2) {
            return Err("stem_stride must be 1 or 2".into());
        }
        // Five stride-2 stages after the stem: the input must survive them.
        let min_size = 16 * self.resolved_stem_stride();
        if self.input_size < min_size {
            return Err(format!(
                "input_size must be at least {min_size}, got {}",
                self.input_size
            ));
        }
        if let Some(bad) = self
            .resolved_cdsm_blocks()
            .iter()
            .find(|&&b| !(1..=17).contains(&b))
        {
            return Err(format!(
                "cdsm_blocks holds {bad}; blocks are numbered 1..=17"
            ));
        }
        if self.cdsm_groups == 0 || self.msca_reduction == 0 || self.msca_channels == 0 {
            return Err("cdsm_groups, msca_channels and msca_reduction must be positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Builds the network with MODEL.md's initialisation.
    ///
    /// # Panics
    /// On a config that [`Self::validate`] rejects.
    pub fn init(&self, device: &Device) -> EfeaNet {
        if let Err(message) = self.validate() {
            panic!("invalid EfeaNetConfig: {message}");
        }
        let cdsm_blocks = self.resolved_cdsm_blocks();
        let plan = self.blocks();
        let blocks = plan
            .iter()
            .map(|b| {
                InvertedResidualConfig::new(b.in_channels, b.out_channels)
                    .with_stride(b.stride)
                    .with_expansion(b.expansion)
                    .with_cdsm_groups(cdsm_blocks.contains(&b.index).then_some(self.cdsm_groups))
                    .init(device)
            })
            .collect();
        let taps = self.msca_taps();
        let msca = self.msca.then(|| {
            MscaConfig::new(taps.map(|t| plan[t - 1].out_channels))
                .with_channels(self.msca_channels)
                .with_reduction(self.msca_reduction)
                .init(device)
        });
        EfeaNet {
            stem: ConvBnActConfig::new(self.in_channels, self.stem_channels())
                .with_kernel_size(3)
                .with_stride(self.resolved_stem_stride())
                .init(device),
            blocks,
            last: ConvBnActConfig::new(plan[16].out_channels, self.last_channels()).init(device),
            msca,
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: linear(self.head_features(), self.num_classes, device),
            taps: taps.to_vec(),
        }
    }
}

fn default_cdsm_blocks(width_mult: f64) -> Vec<usize> {
    last_block_of_stages(width_mult)[1..].to_vec()
}

/// The network. torchvision's `features.0` is `stem`, `features.1..=17` are `blocks[0..17]`,
/// `features.18` is `last`.
#[derive(Module, Debug)]
pub struct EfeaNet {
    pub stem: ConvBnAct,
    pub blocks: Vec<InvertedResidual>,
    pub last: ConvBnAct,
    pub msca: Option<Msca>,
    pub dropout: Dropout,
    pub classifier: Linear,
    /// `features.N` indices of P3, P5, P7.
    #[module(skip)]
    pub taps: Vec<usize>,
}

/// What the backbone hands to the head.
#[derive(Debug, Clone)]
pub struct FeatureMaps {
    /// Output of the last 1x1 conv (`features.18`), `[N, 1280, h, w]`.
    pub last: Tensor<4>,
    /// P3, P5, P7 when MSCA is on.
    pub taps: Option<[Tensor<4>; 3]>,
}

impl EfeaNet {
    /// # Shapes
    /// `[N, C_in, S, S]` -> `last: [N, 1280, S/16 or S/32, ..]`, taps as the stages emit them.
    pub fn forward_features(&self, x: Tensor<4>) -> FeatureMaps {
        let mut x = self.stem.forward(x);
        let want_taps = self.msca.is_some();
        let mut taps = Vec::with_capacity(3);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if want_taps && self.taps.contains(&(i + 1)) {
                taps.push(x.clone());
            }
        }
        let taps = want_taps.then(|| {
            taps.try_into()
                .expect("the three tap indices are distinct blocks of the plan")
        });
        FeatureMaps {
            last: self.last.forward(x),
            taps,
        }
    }

    /// # Shapes
    /// `features` -> logits `[N, K]`
    pub fn forward_head(&self, features: FeatureMaps) -> Tensor<2> {
        let mut pooled = global_avg_pool(features.last);
        if let (Some(msca), Some([p3, p5, p7])) = (&self.msca, features.taps) {
            pooled = Tensor::cat(vec![pooled, msca.forward(p3, p5, p7)], 1);
        }
        self.classifier.forward(self.dropout.forward(pooled))
    }

    /// Inference (a device without autodiff) runs on rayon's pool
    /// ([`crate::kernels::on_pool`]). Training stays on the calling thread: Burn's
    /// `RunningState` keeps one batch-norm estimate per thread and averages them, so steps
    /// taken on whichever pool thread is free would make the running statistics depend on
    /// scheduling.
    ///
    /// # Shapes
    /// `[N, C_in, S, S]` -> logits `[N, K]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if x.device().is_autodiff() {
            return self.forward_head(self.forward_features(x));
        }
        crate::kernels::on_pool(|| self.forward_head(self.forward_features(x)))
    }
}
