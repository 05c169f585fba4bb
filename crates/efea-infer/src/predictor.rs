//! The predictor: an image in, its faces with a box and the probability of every expression
//! out. Faces are found by efea-data's SeetaFace detector, cropped square with a margin, made
//! gray and preprocessed by [`efea_data::preprocess`] (the function training uses), then
//! classified in batches; with many images, the faces of all of them share the batches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use efea_data::GrayImage;
use efea_data::face::{self, DetectorConfig, FaceBox, FaceDetector};
use efea_data::preprocess::{preprocess_into, to_gray};
use efea_model::EfeaNet;
use efea_model::checkpoint::{self, ModelSpec};
use image::DynamicImage;
use image::imageops::{self, FilterType};
use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::decode::{self, DEFAULT_MAX_PIXELS};
use crate::error::Result;
use crate::gradcam::{self, CamMap, LAST_LAYER};

/// A training report that `efea train` leaves in a run directory; shown by the server.
pub const REPORT_FILE: &str = "report.json";

/// How images become network inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorConfig {
    /// Find faces with the detector; `false`: each image is already one face crop (as in
    /// FER2013), classified whole (its centred square).
    pub detect: bool,
    pub detector: DetectorConfig,
    /// Margin added around a detected face on each side, as a fraction of its side.
    pub margin: f32,
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
            detector: DetectorConfig::default(),
            margin: face::DEFAULT_MARGIN,
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
    /// The square the network saw: the box grown by the margin.
    pub crop: Rect,
    /// The detector's score (higher is surer); absent without detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
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
    /// The run directory's name (or the checkpoint's file stem).
    pub name: String,
    pub classes: Vec<String>,
    /// Faces are resized to `input_size x input_size`.
    pub input_size: usize,
    pub in_channels: usize,
    /// `plain`, `cdsm`, `msca` or `full` when the network is one of MODEL.md's ablations.
    pub preset: Option<String>,
    pub width_mult: f64,
    /// The run's `report.json`, when training left one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub training: Option<serde_json::Value>,
}

/// A trained network with its face detector, ready for images. Cheap to share between
/// threads (`&self` everywhere).
#[derive(Debug)]
pub struct Predictor {
    spec: ModelSpec,
    model: EfeaNet,
    device: Device,
    detector: FaceDetector,
    config: PredictorConfig,
    name: String,
    training: Option<serde_json::Value>,
}

/// A face found in an image, before classification.
#[derive(Debug)]
struct Found {
    bbox: Rect,
    crop: Rect,
    score: Option<f64>,
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
        let detector = FaceDetector::new(config.detector.clone());
        Self {
            spec,
            model: gradcam::eval_mode(model),
            device,
            detector,
            config,
            name: "efea".into(),
            training: None,
        }
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn classes(&self) -> &[String] {
        &self.spec.classes
    }

    pub fn config(&self) -> &PredictorConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn input_size(&self) -> u32 {
        self.spec.model.input_size as u32
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            classes: self.spec.classes.clone(),
            input_size: self.spec.model.input_size,
            in_channels: self.spec.model.in_channels,
            preset: self.spec.model.preset_name().map(|p| p.to_string()),
            width_mult: self.spec.model.width_mult,
            training: self.training.clone(),
        }
    }

    /// Decodes and analyses one image file's bytes.
    pub fn predict_bytes(&self, bytes: &[u8]) -> Result<Analysed> {
        let staged = self.stage_bytes(bytes)?;
        Ok(self
            .finish(vec![staged])
            .pop()
            .expect("one image in, one out"))
    }

    /// Finds and classifies the faces of a decoded image.
    pub fn predict_image(&self, image: DynamicImage) -> Analysed {
        let staged = self.stage(image, Duration::ZERO);
        self.finish(vec![staged])
            .pop()
            .expect("one image in, one out")
    }

    /// Analyses many images' bytes: decoding and detection run in parallel, and the faces of
    /// all images are classified together in batches of [`PredictorConfig::batch_size`].
    /// One result per input, in order; a bad input fails alone.
    pub fn predict_many<B: AsRef<[u8]> + Sync>(&self, inputs: &[B]) -> Vec<Result<Analysed>> {
        let staged: Vec<Result<Staged>> = inputs
            .par_iter()
            .map(|bytes| self.stage_bytes(bytes.as_ref()))
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
        let mut done = self.finish(ok).into_iter();
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
        let size = self.input_size() as usize;
        let per_input = size * size;
        let num_classes = self.spec.classes.len();
        let mut rows = Vec::with_capacity(inputs.len() / per_input);
        for chunk in inputs.chunks(self.config.batch_size.max(1) * per_input) {
            let probabilities = softmax(self.model.forward(self.tensor(chunk)), 1)
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
                gradcam::grad_cam(
                    &self.model,
                    self.tensor(chunk),
                    classes,
                    self.config.cam_layer,
                )
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
        match self.spec.model.in_channels {
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
        let found = if self.config.detect {
            self.detect(&gray)
                .into_iter()
                .map(|face| Found {
                    bbox: Rect {
                        x: face.x,
                        y: face.y,
                        width: face.width,
                        height: face.height,
                    },
                    crop: crop_rect(&face, self.config.margin),
                    score: Some(face.score),
                })
                .collect()
        } else {
            let square = centred_square(gray.width(), gray.height());
            vec![Found {
                bbox: square,
                crop: square,
                score: None,
            }]
        };
        let mut inputs = vec![0.0; found.len() * per_input];
        for (face, out) in found.iter().zip(inputs.chunks_mut(per_input)) {
            if self.config.detect {
                let face_box = FaceBox {
                    x: face.bbox.x,
                    y: face.bbox.y,
                    width: face.bbox.width,
                    height: face.bbox.height,
                    score: face.score.unwrap_or_default(),
                };
                let crop = face::crop_face(&gray, &face_box, self.config.margin, size);
                preprocess_into(&crop, size, out);
            } else {
                preprocess_into(&gray, size, out);
            }
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

    /// Faces of `gray`, searched on a downscaled copy when it is larger than
    /// [`PredictorConfig::detect_max_side`].
    fn detect(&self, gray: &GrayImage) -> Vec<FaceBox> {
        let (width, height) = gray.dimensions();
        let longest = width.max(height);
        let max_side = self.config.detect_max_side.max(20);
        if longest <= max_side {
            return self.detector.detect(gray);
        }
        let factor = longest as f32 / max_side as f32;
        let small = imageops::resize(
            gray,
            ((width as f32 / factor).round() as u32).max(1),
            ((height as f32 / factor).round() as u32).max(1),
            FilterType::Triangle,
        );
        self.detector
            .detect(&small)
            .into_iter()
            .map(|f| FaceBox {
                x: (f.x as f32 * factor).round() as i32,
                y: (f.y as f32 * factor).round() as i32,
                width: (f.width as f32 * factor).round() as u32,
                height: (f.height as f32 * factor).round() as u32,
                score: f.score,
            })
            .collect()
    }

    /// Classifies the faces of all `staged` images together and assembles the results.
    fn finish(&self, staged: Vec<Staged>) -> Vec<Analysed> {
        let all_inputs: Vec<f32> = staged
            .iter()
            .flat_map(|s| s.inputs.iter().copied())
            .collect();
        let total_faces: usize = staged.iter().map(|s| s.found.len()).sum();
        let start = Instant::now();
        let mut rows = self.classify(&all_inputs).into_iter();
        let classify_time = start.elapsed();
        staged
            .into_iter()
            .map(|s| {
                let faces: Vec<Face> = s
                    .found
                    .iter()
                    .map(|found| {
                        let row = rows.next().expect("one row of probabilities per face");
                        self.face(found, row)
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

    fn face(&self, found: &Found, probabilities: Vec<f32>) -> Face {
        let class = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("at least two classes");
        Face {
            bbox: found.bbox,
            crop: found.crop,
            score: found.score,
            label: self.spec.classes[class].clone(),
            class,
            probabilities: self
                .spec
                .classes
                .iter()
                .cloned()
                .zip(probabilities)
                .collect(),
        }
    }
}

/// The square that [`efea_data::face::crop_face`] cuts around `face` with `margin` (same
/// arithmetic; a test holds them together).
pub fn crop_rect(face: &FaceBox, margin: f32) -> Rect {
    let side = (face.width.max(face.height) as f32 * (1.0 + 2.0 * margin.max(0.0)))
        .round()
        .max(1.0) as u32;
    let centre_x = face.x as f32 + face.width as f32 / 2.0;
    let centre_y = face.y as f32 + face.height as f32 / 2.0;
    Rect {
        x: (centre_x - side as f32 / 2.0).round() as i32,
        y: (centre_y - side as f32 / 2.0).round() as i32,
        width: side,
        height: side,
    }
}

/// The largest centred square, the part [`efea_data::preprocess`] keeps of a non-square image.
pub fn centred_square(width: u32, height: u32) -> Rect {
    let side = width.min(height);
    Rect {
        x: ((width - side) / 2) as i32,
        y: ((height - side) / 2) as i32,
        width: side,
        height: side,
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

    #[test]
    fn crop_rect_is_the_square_that_crop_face_cuts() {
        let gray = GrayImage::from_fn(90, 70, |x, y| image::Luma([(x * 3 + y * 5) as u8]));
        let faces = [
            FaceBox {
                x: 30,
                y: 20,
                width: 21,
                height: 23,
                score: 3.0,
            },
            FaceBox {
                x: -4,
                y: 50,
                width: 30,
                height: 30,
                score: 3.0,
            },
        ];
        for face in faces {
            let expected = face::crop_face(&gray, &face, 0.2, 48);
            let rect = crop_rect(&face, 0.2);
            let got = resize_square(&crop_clamped(&gray, rect), 48);
            assert_eq!(got, expected, "{face:?}");
        }
    }

    #[test]
    fn centred_square_of_a_landscape_image() {
        assert_eq!(
            centred_square(100, 60),
            Rect {
                x: 20,
                y: 0,
                width: 60,
                height: 60
            }
        );
    }
}
