//! The predictor: an image in, its faces with a box, landmarks where the detector gives them,
//! and the probability of every expression out. Faces are found by efea-face's detectors,
//! framed by the model's own face config (detector, margin, eye alignment: what its training
//! data saw), made gray and preprocessed by [`efea_data::preprocess`] (the function training
//! uses), then classified in batches; with many images, the faces of all of them share the
//! batches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use efea_data::preprocess::{preprocess_into, to_gray};
use efea_face::{Detector, DetectorKind, FaceBox, FaceConfig, Frame, Landmarks};
use efea_model::checkpoint::{self, ModelSpec};
use efea_model::kernels::{self, Route};
use efea_model::mini_xception::{FER_CLASSES, FER_INPUT_SIZE, MiniXception};
use efea_model::{EfeaNet, EfeaNetConfig, InferenceNet};
use image::DynamicImage;
use image::imageops::FilterType;
use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::decode::{self, DEFAULT_MAX_PIXELS};
use crate::error::{InferError, Result};
use crate::gradcam::{self, CamMap, LAST_LAYER};

/// A training report that `efea train` leaves in a run directory; shown by the server.
pub const REPORT_FILE: &str = "report.json";

/// How images become network inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorConfig {
    /// Find faces with the detector; `false`: each image is already one face crop (as in
    /// FER2013), classified whole (its centred square).
    pub detect: bool,
    /// The detector, margin and alignment to use instead of the model's own (its training
    /// framing); `None` keeps the model's.
    pub detector: Option<DetectorKind>,
    pub margin: Option<f32>,
    pub align: Option<bool>,
    /// Smallest face searched, in pixels (at least 20).
    pub min_face_size: u32,
    /// Images with more pixels are refused from their header, before decoding.
    pub max_pixels: u64,
    /// Faces per forward pass.
    pub batch_size: usize,
    /// Images whose longer side exceeds this are searched for faces at this size (boxes are
    /// mapped back): detection time grows with the pixel count, and faces in a 12-megapixel
    /// photo are far above the detector's 20-pixel minimum.
    pub detect_max_side: u32,
    /// Grad-CAM target, `features.N` (1..=18); 18 is the last backbone convolution.
    pub cam_layer: usize,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        Self {
            detect: true,
            detector: None,
            margin: None,
            align: None,
            min_face_size: 20,
            max_pixels: DEFAULT_MAX_PIXELS,
            batch_size: 32,
            detect_max_side: 2048,
            cam_layer: LAST_LAYER,
        }
    }
}

/// A rectangle in pixels of the image; may extend past its border (crops near the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// One face and what the network thinks of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Face {
    /// Where the face is (the detector's box; the centred square without detection).
    #[serde(rename = "box")]
    pub bbox: Rect,
    /// The square the network saw: the box grown by the margin (before any rotation).
    pub crop: Rect,
    /// The rotation of the crop in degrees, clockwise: the tilt of the eye line, when the
    /// crop was aligned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub angle: Option<f32>,
    /// The detector's score (higher is surer; a probability for MTCNN); absent without
    /// detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Five landmarks in pixels (left eye, right eye, nose, mouth left, mouth right), when
    /// the detector gives them.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "landmark_map"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, [f32; 2]>>))]
    pub landmarks: Option<Landmarks>,
    /// The most probable class.
    pub label: String,
    /// Index of `label` in the class order.
    #[serde(skip)]
    pub class: usize,
    /// Probability of every class, in the model's class order.
    #[serde(serialize_with = "ordered_map")]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, f32>))]
    pub probabilities: Vec<(String, f32)>,
}

impl Face {
    /// The probability of the label.
    pub fn confidence(&self) -> f32 {
        self.probabilities[self.class].1
    }
}

fn landmark_map<S: Serializer>(
    landmarks: &Option<Landmarks>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let points = landmarks.as_ref().map(|l| l.points).unwrap_or_default();
    serializer.collect_map(Landmarks::NAMES.iter().zip(points))
}

fn ordered_map<S: Serializer>(pairs: &[(String, f32)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Where the time of one image went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub decode: Duration,
    /// Gray conversion, detection, cropping and preprocessing.
    pub detect: Duration,
    /// This image's share of the forward passes (by its number of faces).
    pub classify: Duration,
}

impl Timing {
    pub fn total(&self) -> Duration {
        self.decode + self.detect + self.classify
    }
}

impl std::ops::AddAssign for Timing {
    fn add_assign(&mut self, other: Self) {
        self.decode += other.decode;
        self.detect += other.detect;
        self.classify += other.classify;
    }
}

/// The result for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    /// Size of the (upright) image.
    pub width: u32,
    pub height: u32,
    /// Highest detector score first.
    pub faces: Vec<Face>,
    #[serde(skip)]
    pub timing: Timing,
}

/// One input of [`Predictor::predict_sources`].
#[derive(Debug, Clone)]
pub enum ImageSource<'a> {
    /// The bytes of an image file (decoded as [`Predictor::predict_bytes`] decodes them).
    Encoded(&'a [u8]),
    /// Pixels already decoded, upright.
    Decoded(DynamicImage),
}

/// An image with its prediction and the network inputs of its faces (kept for Grad-CAM).
#[derive(Debug, Clone)]
pub struct Analysed {
    /// The decoded image, upright.
    pub image: DynamicImage,
    pub prediction: Prediction,
    inputs: Vec<f32>,
}

/// What the server says about the loaded model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// The run directory's name (or the checkpoint's file stem; the bundled model's name).
    pub name: String,
    /// `efea-msm` (the network of docs/MODEL.md) or `mini-xception` (the bundled FER2013
    /// baseline).
    pub architecture: String,
    /// One line on what the model is and how good it is known to be.
    pub description: String,
    /// How faces are found and framed for this model (its training framing unless
    /// overridden).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub face: FaceConfig,
    pub classes: Vec<String>,
    /// Faces are resized to `input_size x input_size`.
    pub input_size: usize,
    pub in_channels: usize,
    /// `plain`, `cdsm`, `msca` or `full` when the network is one of MODEL.md's ablations.
    pub preset: Option<String>,
    /// EFEA-MSM's width multiplier (absent for other architectures).
    pub width_mult: Option<f64>,
    /// The run's `report.json`, when training left one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub training: Option<serde_json::Value>,
}

/// A trained network with its face detector, ready for images. Cheap to share between
/// threads (`&self` everywhere).
#[derive(Debug)]
pub struct Predictor {
    network: Network,
    device: Device,
    /// The model's face config with the overrides of [`PredictorConfig`] applied.
    face: FaceConfig,
    detector: Detector,
    config: PredictorConfig,
    name: String,
    description: String,
    training: Option<serde_json::Value>,
}

/// A face found in an image, before classification.
#[derive(Debug)]
struct Found {
    bbox: Rect,
    frame: Frame,
    score: Option<f64>,
    landmarks: Option<Landmarks>,
}

/// An image decoded and cut into network inputs, waiting for the classifier.
#[derive(Debug)]
struct Staged {
    image: DynamicImage,
    found: Vec<Found>,
    inputs: Vec<f32>,
    timing: Timing,
}

impl Predictor {
    /// Loads a run directory or checkpoint (see [`efea_model::checkpoint::resolve`]).
    pub fn load(path: &Path, device: &Device, config: PredictorConfig) -> Result<Self> {
        let (spec, model) = checkpoint::load_model(path, device)?;
        let (weights, config_file) = checkpoint::resolve(path)?;
        let run_dir = config_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = if path.is_dir() {
            dir_name(&run_dir)
        } else {
            weights
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let training = std::fs::read_to_string(run_dir.join(REPORT_FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let mut predictor = Self::new(spec, model, device.clone(), config);
        predictor.name = name;
        predictor.training = training;
        Ok(predictor)
    }

    /// A predictor around a network already in memory (in eval mode: `model.valid()`).
    ///
    /// # Panics
    /// If the class names do not match the network's outputs.
    pub fn new(spec: ModelSpec, model: EfeaNet, device: Device, config: PredictorConfig) -> Self {
        assert_eq!(
            spec.classes.len(),
            spec.model.num_classes,
            "one class name per network output"
        );
        let model = gradcam::eval_mode(model);
        // On the CPU the no-gradient forward pass runs the compiled network (several times
        // faster than Burn's eval mode, same logits to float32 round-off); Grad-CAM, and
        // other devices, keep the Burn network. A network that does not compile (none that
        // `EfeaNetConfig` builds) stays on Burn.
        let on_cpu = kernels::route(&Tensor::<1>::zeros([1], &device)) == Route::Flex;
        let compiled = on_cpu.then(|| model.compile().ok()).flatten().map(Box::new);
        let network = Network::EfeaMsm {
            spec,
            model: Box::new(model),
            compiled,
        };
        let mut predictor = Self::with_network(network, device, config);
        predictor.description = "EFEA-MSM (docs/MODEL.md), trained with efea".into();
        predictor
    }

    /// The model that ships inside efea: fer's FER2013 mini-XCEPTION (see
    /// [`efea_model::mini_xception`]), framed as fer frames faces.
    pub fn bundled(device: &Device, config: PredictorConfig) -> Self {
        let network = Network::MiniXception {
            model: MiniXception::bundled(device),
            classes: FER_CLASSES.iter().map(|c| c.to_string()).collect(),
        };
        let mut predictor = Self::with_network(network, device.clone(), config);
        predictor.name = BUNDLED_NAME.into();
        predictor.description = BUNDLED_DESCRIPTION.into();
        predictor
    }

    fn with_network(network: Network, device: Device, config: PredictorConfig) -> Self {
        let spec_face = *network.face();
        let face = FaceConfig {
            detector: config.detector.unwrap_or(spec_face.detector),
            margin: config.margin.unwrap_or(spec_face.margin),
            align: config.align.unwrap_or(spec_face.align),
        };
        let detector = Detector::new(face.detector, config.min_face_size);
        Self {
            network,
            device,
            face,
            detector,
            config,
            name: "efea".into(),
            description: String::new(),
            training: None,
        }
    }

    /// The model's own face config (how its training faces were framed), before overrides.
    pub fn model_face(&self) -> &FaceConfig {
        self.network.face()
    }

    /// The face config in use.
    pub fn face(&self) -> &FaceConfig {
        &self.face
    }

    pub fn classes(&self) -> &[String] {
        self.network.classes()
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn input_size(&self) -> u32 {
        self.network.input_size() as u32
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            architecture: self.network.architecture().into(),
            description: self.description.clone(),
            face: self.face,
            classes: self.classes().to_vec(),
            input_size: self.network.input_size(),
            in_channels: self.network.in_channels(),
            preset: self
                .network
                .efea_config()
                .and_then(|c| c.preset_name())
                .map(|p| p.to_string()),
            width_mult: self.network.efea_config().map(|c| c.width_mult),
            training: self.training.clone(),
        }
    }

    /// Decodes and analyses one image file's bytes.
    pub fn predict_bytes(&self, bytes: &[u8]) -> Result<Analysed> {
        let staged = self.stage_bytes(bytes)?;
        Ok(self
            .finish(vec![staged], self.config.batch_size)
            .pop()
            .expect("one image in, one out"))
    }

    /// Finds and classifies the faces of a decoded image.
    pub fn predict_image(&self, image: DynamicImage) -> Analysed {
        let staged = self.stage(image, Duration::ZERO);
        self.finish(vec![staged], self.config.batch_size)
            .pop()
            .expect("one image in, one out")
    }

    /// Analyses many images' bytes: decoding and detection run in parallel, and the faces of
    /// all images are classified together in batches of [`PredictorConfig::batch_size`].
    /// One result per input, in order; a bad input fails alone.
    pub fn predict_many<B: AsRef<[u8]> + Sync>(&self, inputs: &[B]) -> Vec<Result<Analysed>> {
        let sources: Vec<ImageSource<'_>> = inputs
            .iter()
            .map(|bytes| ImageSource::Encoded(bytes.as_ref()))
            .collect();
        self.predict_sources(sources)
    }

    /// [`Predictor::predict_many`] for inputs of which some are already decoded (the Python
    /// package's arrays and PIL images beside its paths and bytes): their faces share the
    /// batches all the same.
    pub fn predict_sources(&self, sources: Vec<ImageSource<'_>>) -> Vec<Result<Analysed>> {
        self.predict_sources_in(sources, self.config.batch_size)
    }

    /// [`Predictor::predict_sources`] with `batch_size` faces per forward pass instead of
    /// [`PredictorConfig::batch_size`].
    pub fn predict_sources_in(
        &self,
        sources: Vec<ImageSource<'_>>,
        batch_size: usize,
    ) -> Vec<Result<Analysed>> {
        let staged: Vec<Result<Staged>> = sources
            .into_par_iter()
            .map(|source| {
                isolated(|| match source {
                    ImageSource::Encoded(bytes) => self.stage_bytes(bytes),
                    ImageSource::Decoded(image) => Ok(self.stage(image, Duration::ZERO)),
                })
            })
            .collect();
        let mut ok = Vec::with_capacity(staged.len());
        let mut errors = Vec::with_capacity(staged.len());
        for result in staged {
            match result {
                Ok(staged) => {
                    ok.push(staged);
                    errors.push(None);
                }
                Err(e) => errors.push(Some(e)),
            }
        }
        let mut done = self.finish(ok, batch_size).into_iter();
        errors
            .into_iter()
            .map(|error| match error {
                Some(e) => Err(e),
                None => Ok(done.next().expect("one analysis per staged image")),
            })
            .collect()
    }

    /// Class probabilities of preprocessed inputs (`n * S * S` values, as
    /// [`efea_data::preprocess`] writes them), `n` rows of one probability per class.
    pub fn classify(&self, inputs: &[f32]) -> Vec<Vec<f32>> {
        self.classify_in(inputs, self.config.batch_size)
    }

    /// [`Predictor::classify`] with `batch_size` inputs per forward pass.
    pub fn classify_in(&self, inputs: &[f32], batch_size: usize) -> Vec<Vec<f32>> {
        let size = self.input_size() as usize;
        let per_input = size * size;
        let num_classes = self.classes().len();
        let mut rows = Vec::with_capacity(inputs.len() / per_input);
        for chunk in inputs.chunks(batch_size.max(1) * per_input) {
            let probabilities = softmax(self.network.forward(self.tensor(chunk)), 1)
                .into_data()
                .try_into_vec::<f32>()
                .expect("the network outputs f32");
            rows.extend(probabilities.chunks(num_classes).map(<[f32]>::to_vec));
        }
        rows
    }

    /// Grad-CAM of each face of `analysed` for its predicted class, at
    /// [`PredictorConfig::cam_layer`].
    pub fn grad_cam(&self, analysed: &Analysed) -> Vec<CamMap> {
        let classes: Vec<usize> = analysed.prediction.faces.iter().map(|f| f.class).collect();
        self.grad_cam_of(&analysed.inputs, &classes)
    }

    /// Grad-CAM of preprocessed inputs for the given classes, in batches.
    pub fn grad_cam_of(&self, inputs: &[f32], classes: &[usize]) -> Vec<CamMap> {
        let size = self.input_size() as usize;
        let per_input = size * size;
        assert_eq!(
            inputs.len(),
            classes.len() * per_input,
            "one class per input"
        );
        let batch = self.config.batch_size.max(1);
        inputs
            .chunks(batch * per_input)
            .zip(classes.chunks(batch))
            .flat_map(|(chunk, classes)| {
                self.network
                    .grad_cam(self.tensor(chunk), classes, self.config.cam_layer)
            })
            .collect()
    }

    /// `[n, C, S, S]` from `n * S * S` gray values (repeated over 3 channels for an RGB net).
    fn tensor(&self, values: &[f32]) -> Tensor<4> {
        let size = self.input_size() as usize;
        let n = values.len() / (size * size);
        let x = Tensor::from_data(
            TensorData::new(values.to_vec(), [n, 1, size, size]),
            &self.device,
        );
        match self.network.in_channels() {
            1 => x,
            channels => x.repeat_dim(1, channels),
        }
    }

    fn stage_bytes(&self, bytes: &[u8]) -> Result<Staged> {
        let start = Instant::now();
        let image = decode::decode(bytes, self.config.max_pixels)?;
        Ok(self.stage(image, start.elapsed()))
    }

    /// Gray conversion, detection, crops and preprocessing of one image.
    fn stage(&self, image: DynamicImage, decode_time: Duration) -> Staged {
        let start = Instant::now();
        let size = self.input_size();
        let per_input = (size * size) as usize;
        let gray = to_gray(&image);
        let found: Vec<Found> = if self.config.detect {
            let framing = self.face.framing();
            self.detect(&image)
                .into_iter()
                .map(|face| Found {
                    bbox: Rect::around(&face),
                    frame: framing.frame(&face),
                    score: Some(face.score as f64),
                    landmarks: face.landmarks,
                })
                .collect()
        } else {
            let frame = Frame::centred(gray.width(), gray.height(), 1.0);
            vec![Found {
                bbox: Rect::of_frame(&frame),
                frame,
                score: None,
                landmarks: None,
            }]
        };
        let mut inputs = vec![0.0; found.len() * per_input];
        for (face, out) in found.iter().zip(inputs.chunks_mut(per_input)) {
            preprocess_into(&face.frame.cut(&gray, size), size, out);
        }
        Staged {
            image,
            found,
            inputs,
            timing: Timing {
                decode: decode_time,
                detect: start.elapsed(),
                classify: Duration::ZERO,
            },
        }
    }

    /// Faces of `image`, searched on a downscaled copy when it is larger than
    /// [`PredictorConfig::detect_max_side`].
    fn detect(&self, image: &DynamicImage) -> Vec<FaceBox> {
        let (width, height) = (image.width(), image.height());
        let longest = width.max(height);
        let max_side = self.config.detect_max_side.max(20);
        if longest <= max_side {
            return self.detector.detect(image);
        }
        let factor = longest as f32 / max_side as f32;
        let small = image.resize_exact(
            ((width as f32 / factor).round() as u32).max(1),
            ((height as f32 / factor).round() as u32).max(1),
            FilterType::Triangle,
        );
        self.detector
            .detect(&small)
            .into_iter()
            .map(|face| face.scaled(factor))
            .collect()
    }

    /// Classifies the faces of all `staged` images together and assembles the results.
    fn finish(&self, staged: Vec<Staged>, batch_size: usize) -> Vec<Analysed> {
        let all_inputs: Vec<f32> = staged
            .iter()
            .flat_map(|s| s.inputs.iter().copied())
            .collect();
        let total_faces: usize = staged.iter().map(|s| s.found.len()).sum();
        let start = Instant::now();
        let mut rows = self.classify_in(&all_inputs, batch_size).into_iter();
        let classify_time = start.elapsed();
        staged
            .into_iter()
            .map(|s| {
                let faces: Vec<Face> = s
                    .found
                    .iter()
                    .map(|found| {
                        let row = rows.next().expect("one row of probabilities per face");
                        self.face_of(found, row)
                    })
                    .collect();
                let mut timing = s.timing;
                if total_faces > 0 {
                    timing.classify =
                        classify_time.mul_f64(faces.len() as f64 / total_faces as f64);
                }
                Analysed {
                    prediction: Prediction {
                        width: s.image.width(),
                        height: s.image.height(),
                        faces,
                        timing,
                    },
                    image: s.image,
                    inputs: s.inputs,
                }
            })
            .collect()
    }

    fn face_of(&self, found: &Found, probabilities: Vec<f32>) -> Face {
        let class = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("at least two classes");
        Face {
            bbox: found.bbox,
            crop: Rect::of_frame(&found.frame),
            angle: (found.frame.angle != 0.0).then(|| found.frame.angle.to_degrees()),
            score: found.score,
            landmarks: found.landmarks,
            label: self.classes()[class].clone(),
            class,
            probabilities: self.classes().iter().cloned().zip(probabilities).collect(),
        }
    }
}

impl Rect {
    /// The detector's box, rounded to whole pixels.
    pub fn around(face: &FaceBox) -> Self {
        Self {
            x: face.x.round() as i32,
            y: face.y.round() as i32,
            width: face.width.round().max(1.0) as u32,
            height: face.height.round().max(1.0) as u32,
        }
    }

    /// The upright square of `frame` (what [`Frame::cut`] cuts when the frame is not
    /// rotated).
    pub fn of_frame(frame: &Frame) -> Self {
        let (x, y) = frame.origin();
        Self {
            x: x as i32,
            y: y as i32,
            width: frame.side,
            height: frame.side,
        }
    }
}

/// `work()` with a panic turned into an error: one image that hits a bug (in a decoder, say)
/// must not take the other images of its batch down with it.
fn isolated<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(InferError::Internal(panic_message(payload.as_ref()))))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The bundled model's name in every output.
pub const BUNDLED_NAME: &str = "fer-mini-xception";

const BUNDLED_DESCRIPTION: &str = "a small FER2013 baseline bundled with efea, not EFEA-MSM: \
    fer's mini-XCEPTION (Arriaga et al. 2017, 66 % on FER2013's test set as its authors report)";

/// The classifier behind a predictor.
#[derive(Debug)]
enum Network {
    /// A network of docs/MODEL.md from a run directory (boxed: some 1.6 KB of modules).
    EfeaMsm {
        spec: ModelSpec,
        model: Box<EfeaNet>,
        /// `model` compiled for the CPU ([`EfeaNet::compile`]), when the device is the CPU.
        compiled: Option<Box<InferenceNet>>,
    },
    /// The bundled FER2013 baseline.
    MiniXception {
        model: MiniXception,
        classes: Vec<String>,
    },
}

/// fer frames faces as the MTCNN box made square plus 10 pixels on each side, which for the
/// 60-150 pixel faces of its examples is a margin of about 0.1 of the side.
const BUNDLED_FACE: FaceConfig = FaceConfig {
    detector: DetectorKind::Mtcnn,
    margin: 0.1,
    align: false,
};

impl Network {
    fn architecture(&self) -> &'static str {
        match self {
            Self::EfeaMsm { .. } => "efea-msm",
            Self::MiniXception { .. } => "mini-xception",
        }
    }

    fn classes(&self) -> &[String] {
        match self {
            Self::EfeaMsm { spec, .. } => &spec.classes,
            Self::MiniXception { classes, .. } => classes,
        }
    }

    fn face(&self) -> &FaceConfig {
        match self {
            Self::EfeaMsm { spec, .. } => &spec.face,
            Self::MiniXception { .. } => &BUNDLED_FACE,
        }
    }

    fn efea_config(&self) -> Option<&EfeaNetConfig> {
        match self {
            Self::EfeaMsm { spec, .. } => Some(&spec.model),
            Self::MiniXception { .. } => None,
        }
    }

    fn input_size(&self) -> usize {
        match self {
            Self::EfeaMsm { spec, .. } => spec.model.input_size,
            Self::MiniXception { .. } => FER_INPUT_SIZE,
        }
    }

    fn in_channels(&self) -> usize {
        match self {
            Self::EfeaMsm { spec, .. } => spec.model.in_channels,
            Self::MiniXception { .. } => 1,
        }
    }

    /// Logits, `[N, classes]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::EfeaMsm {
                compiled: Some(compiled),
                ..
            } => compiled.forward_tensor(x),
            Self::EfeaMsm { model, .. } => model.forward(x),
            Self::MiniXception { model, .. } => model.forward(x),
        }
    }

    fn grad_cam(&self, x: Tensor<4>, classes: &[usize], layer: usize) -> Vec<CamMap> {
        match self {
            Self::EfeaMsm { model, .. } => gradcam::grad_cam(model, x, classes, layer),
            Self::MiniXception { model, .. } => gradcam::grad_cam_mini_xception(model, x, classes),
        }
    }
}

fn dir_name(dir: &Path) -> String {
    let dir: PathBuf = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "efea".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::crop_clamped;
    use efea_data::preprocess::resize_square;
    use efea_face::Framing;
    use image::GrayImage;

    #[test]
    fn a_panic_while_analysing_one_image_is_that_image_s_error() {
        let results: Vec<Result<u32>> = [1u32, 0, 2]
            .into_par_iter()
            .map(|n| {
                isolated(|| match 10u32.checked_div(n) {
                    Some(quotient) => Ok(quotient),
                    None => panic!("decoder bug"),
                })
            })
            .collect();
        assert_eq!(results[0].as_ref().ok(), Some(&10));
        assert_eq!(results[2].as_ref().ok(), Some(&5));
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("decoder bug"), "{error}");
    }

    /// On the CPU the predictor classifies with the compiled network, and its probabilities
    /// are the Burn network's.
    #[test]
    fn the_compiled_network_gives_the_burn_network_s_probabilities() {
        use burn::module::Module;
        let device = Device::flex();
        let config = EfeaNetConfig::new().with_width_mult(0.35);
        let classes: Vec<String> = (0..config.num_classes).map(|i| format!("c{i}")).collect();
        let model = config.init(&device).valid();
        let predictor = Predictor::new(
            ModelSpec::new(config.clone(), classes),
            model.clone(),
            device.clone(),
            PredictorConfig::default(),
        );
        assert!(
            matches!(
                &predictor.network,
                Network::EfeaMsm {
                    compiled: Some(_),
                    ..
                }
            ),
            "a CPU predictor compiles its network"
        );
        let size = config.input_size;
        let inputs: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let got = predictor.classify(&inputs);
        let x = Tensor::from_data(TensorData::new(inputs, [3, 1, size, size]), &device);
        let want = softmax(model.forward(x), 1)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32");
        for (row, want) in got.iter().zip(want.chunks(config.num_classes)) {
            for (g, w) in row.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{row:?} vs {want:?}");
            }
        }
    }

    /// The crop rectangle reported for a face is the square the network's input was cut from.
    #[test]
    fn the_reported_crop_is_the_square_that_was_cut() {
        let gray = GrayImage::from_fn(90, 70, |x, y| image::Luma([(x * 3 + y * 5) as u8]));
        let faces = [(30.0, 20.0, 21.0, 23.0), (-4.0, 50.0, 30.0, 30.0)];
        for (x, y, width, height) in faces {
            let face = FaceBox {
                x,
                y,
                width,
                height,
                score: 3.0,
                landmarks: None,
            };
            let frame = Framing::default().frame(&face);
            let got = resize_square(&crop_clamped(&gray, Rect::of_frame(&frame)), 48);
            assert_eq!(got, frame.cut(&gray, 48), "{face:?}");
        }
    }
}
