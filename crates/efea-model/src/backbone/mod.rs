//! The MobileNetV2 backbone (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
//! Bottlenecks", CVPR 2018) as torchvision builds it, with MODEL.md's stem-stride rule.

mod inverted_residual;

pub use inverted_residual::{InvertedResidual, InvertedResidualConfig};

/// The seven stages `(t, c, n, s)`: expansion, output channels, blocks, first stride
/// (MobileNetV2 paper, Table 2; torchvision's `inverted_residual_setting`).
#[rustfmt::skip]
pub const STAGES: [(usize, usize, usize, usize); 7] = [
    // t,   c,  n,  s
    (1,  16, 1, 1),
    (6,  24, 2, 2),
    (6,  32, 3, 2),
    (6,  64, 4, 2),
    (6,  96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Channels of the stem convolution before width scaling.
pub const STEM_CHANNELS: usize = 32;
/// Channels of the last 1x1 convolution before width scaling (scaled only when alpha > 1).
pub const LAST_CHANNELS: usize = 1280;
/// Channel counts are multiples of this (torchvision's `round_nearest`).
pub const CHANNEL_DIVISOR: usize = 8;

/// torchvision's `_make_divisible`: round to the nearest multiple of `divisor`, never more
/// than 10 % down.
pub fn make_divisible(value: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((value + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * value {
        rounded += divisor;
    }
    rounded
}

/// One inverted residual block of the plan, numbered as torchvision's `features.N` (1..=17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlan {
    pub index: usize,
    /// 1-based stage of [`STAGES`].
    pub stage: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    pub expansion: usize,
}

/// The 17 blocks for a width multiplier, in order.
pub fn block_plan(width_mult: f64) -> Vec<BlockPlan> {
    let mut in_channels = make_divisible(STEM_CHANNELS as f64 * width_mult, CHANNEL_DIVISOR);
    let mut plan = Vec::new();
    for (stage, &(t, c, n, s)) in STAGES.iter().enumerate() {
        let out_channels = make_divisible(c as f64 * width_mult, CHANNEL_DIVISOR);
        for i in 0..n {
            plan.push(BlockPlan {
                index: plan.len() + 1,
                stage: stage + 1,
                in_channels,
                out_channels,
                stride: if i == 0 { s } else { 1 },
                expansion: t,
            });
            in_channels = out_channels;
        }
    }
    plan
}

/// Index (`features.N`) of the last block of each stage, stage 1 first.
pub fn last_block_of_stages(width_mult: f64) -> [usize; 7] {
    let plan = block_plan(width_mult);
    std::array::from_fn(|stage| {
        plan.iter()
            .filter(|b| b.stage == stage + 1)
            .map(|b| b.index)
            .max()
            .expect("every stage has a block")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        // Values from torchvision's _make_divisible.
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
        assert_eq!(make_divisible(24.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(96.0 * 0.35, 8), 32);
        assert_eq!(make_divisible(160.0 * 0.75, 8), 120);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
    }

    #[test]
    fn plan_has_torchvision_numbering() {
        let plan = block_plan(1.0);
        assert_eq!(plan.len(), 17);
        assert_eq!(plan[0].index, 1);
        assert_eq!(plan[16].out_channels, 320);
        assert_eq!(last_block_of_stages(1.0), [1, 3, 6, 10, 13, 16, 17]);
        let strides: Vec<_> = plan.iter().map(|b| b.stride).collect();
        assert_eq!(strides, [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]);
    }
}
