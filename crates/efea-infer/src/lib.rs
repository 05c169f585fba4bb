//! Inference for efea: an image in, its faces with the probability of every expression out,
//! plus Grad-CAM maps and annotated pictures. The CLI's `efea predict` and the server's
//! `POST /v1/predict` both go through [`Predictor`].
//!
//! ```no_run
//! use burn::tensor::Device;
//! use efea_infer::{Predictor, PredictorConfig};
//!
//! let predictor = Predictor::load("runs/fer2013".as_ref(), &Device::flex(), PredictorConfig::default())?;
//! let analysed = predictor.predict_bytes(&std::fs::read("group.jpg")?)?;
//! for face in &analysed.prediction.faces {
//!     println!("{:?} {} {:.2}", face.bbox, face.label, face.confidence());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod decode;
pub mod draw;
mod error;
pub mod gradcam;
pub mod inputs;
mod predictor;
pub mod run_dir;

pub use decode::{DEFAULT_MAX_PIXELS, decode};
pub use error::{ErrorKind, InferError, Result};
pub use gradcam::{CamMap, LAST_LAYER};
pub use predictor::{
    Analysed, Face, ImageSource, ModelInfo, Prediction, Predictor, PredictorConfig, REPORT_FILE,
    Rect, Timing,
};
