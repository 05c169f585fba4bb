//! The two attention ideas of EFEA-MSM (MODEL.md): the cross-dimensional space modulator
//! (CDSM = subspace attention after triplet attention), embedded in backbone blocks, and the
//! multi-scale channel aggregator (MSCA) over three backbone taps.

mod cdsm;
mod msca;
mod subspace;
mod triplet;

pub use cdsm::{Cdsm, CdsmConfig};
pub use msca::{Aff, AffConfig, AttentionBranch, Lateral, Msca, MscaConfig, global_avg_pool};
pub use subspace::{SubspaceAttention, SubspaceAttentionConfig, SubspaceGroup, subspace_groups};
pub use triplet::{AttentionGate, TripletAttention, TripletAttentionConfig};
