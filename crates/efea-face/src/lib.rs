//! Face detection for EFEA: facenet-pytorch's MTCNN (Zhang et al., "Joint Face Detection and
//! Alignment Using Multitask Cascaded Convolutional Networks", IEEE SPL 2016) on Burn, number
//! for number, with its pretrained weights compiled in.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use efea_face::{Mtcnn, MtcnnConfig};
//!
//! let detector = Mtcnn::new(MtcnnConfig::default(), &Device::flex());
//! let image = image::open("group.png").unwrap().to_rgb8();
//! for face in detector.detect(&image) {
//!     println!("{:?} {:.3} {:?}", face.bbox, face.score, face.landmarks);
//! }
//! ```

pub mod mtcnn;

pub use mtcnn::{DetectedFace, Mtcnn, MtcnnConfig};

/// Why a detector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// `origin` names the file (or the compiled-in asset).
    #[error("{origin}: cannot load MTCNN weights: {message}")]
    Weights { origin: String, message: String },
}
