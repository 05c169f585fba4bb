//! The EFEA-MSM network of `docs/MODEL.md` on Burn: MobileNetV2 with the cross-dimensional space
//! modulator (CDSM) and the multi-scale channel aggregator (MSCA).
//!
//! ```no_run
//! use burn::tensor::{Device, Tensor};
//! use efea_model::{EfeaNetConfig, Preset};
//!
//! let device = Device::flex();
//! let model = EfeaNetConfig::preset(Preset::Full).init(&device);
//! let logits = model.forward(Tensor::zeros([2, 1, 48, 48], &device));
//! assert_eq!(logits.dims(), [2, 7]);
//!
//! // Inference on the CPU: the same logits, several times faster (see `compiled`).
//! let compiled = model.compile().expect("a network of EfeaNetConfig compiles");
//! let logits = compiled.forward(&vec![0.0; 2 * 48 * 48], 2, 48, 48);
//! assert_eq!(logits.len(), 2 * 7);
//! ```

pub mod attention;
pub mod backbone;
pub mod checkpoint;
pub mod compiled;
pub mod device;
mod efea_net;
pub mod kernels;
pub mod layers;
pub mod mini_xception;
pub mod summary;
pub mod weights;

pub use compiled::{CompileError, InferenceNet};
pub use efea_net::{EfeaNet, EfeaNetConfig, FeatureMaps, MSCA_TAP_STAGES, Preset};
pub use mini_xception::{
    FER_CLASSES, FER_INPUT_SIZE, MiniXception, MiniXceptionConfig, normalise_fer,
};
pub use weights::{ImportReport, WeightsError};
