//! The cross-dimensional space modulator of EFEA-MSM (MODEL.md "CDSM"): `CDSM(x) = U(T(x))`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{SubspaceAttention, SubspaceAttentionConfig, TripletAttention, TripletAttentionConfig};

/// Configuration of [`Cdsm`].
#[derive(Config, Debug)]
pub struct CdsmConfig {
    pub channels: usize,
    /// Subspaces of the subspace attention (MODEL.md `cdsm_groups`).
    #[config(default = 4)]
    pub groups: usize,
}

impl CdsmConfig {
    pub fn init(&self, device: &Device) -> Cdsm {
        Cdsm {
            triplet: TripletAttentionConfig::new().init(device),
            subspace: SubspaceAttentionConfig::new(self.channels)
                .with_groups(self.groups)
                .init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct Cdsm {
    pub triplet: TripletAttention,
    pub subspace: SubspaceAttention,
}

impl Cdsm {
    /// # Shapes
    /// `[N, C, H, W] -> [N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.subspace.forward(self.triplet.forward(x))
    }
}
