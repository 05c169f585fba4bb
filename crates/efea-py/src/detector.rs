//! `efea.Detector`: efea-infer's `Predictor` (faces found, framed and classified), with the
//! options of `efea predict`.
#![allow(unsafe_code)] // `#[pyclass]` / `#[pymethods]` generate the FFI glue

use std::path::PathBuf;

use burn::tensor::Device;
use efea_face::{DetectorKind, MAX_MARGIN};
use efea_infer::{
    Analysed, DEFAULT_MAX_PIXELS, ImageSource, InferError, LAST_LAYER, Predictor, PredictorConfig,
};
use image::{DynamicImage, GrayImage, RgbImage};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::errors::{infer_error, one_line, value_error};

/// Images analysed together, as `efea predict` does: their faces share the classifier's
/// batches, and Ctrl-C is checked between rounds.
const IMAGES_PER_ROUND: usize = 16;

/// A device by name, as `efea --device` spells it (`efea_model::device`); a backend this
/// build lacks (the package is built with the CPU backend) is a `ValueError` saying so.
pub fn parse_device(name: &str) -> PyResult<Device> {
    efea_model::device::parse_device(name).map_err(|e| value_error(e.to_string()))
}

/// One input as the Python half hands it over.
enum Input {
    /// A file to read (its errors name the path, as the CLI's do).
    Path(PathBuf),
    /// The bytes of an image file.
    Encoded(Vec<u8>),
    /// Pixels already decoded (NumPy arrays, PIL images), upright.
    Decoded(DynamicImage),
}

impl Input {
    /// `str` (a path), `bytes` (an encoded image) or `(pixels, height, width, channels)`:
    /// `bytes` of `uint8`, row-major, 1 (gray) or 3 (RGB) channels.
    fn extract(item: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = item.cast::<PyBytes>() {
            return Ok(Self::Encoded(bytes.as_bytes().to_vec()));
        }
        if let Ok(path) = item.cast::<PyString>() {
            return Ok(Self::Path(PathBuf::from(path.to_cow()?.into_owned())));
        }
        if let Ok(tuple) = item.cast::<PyTuple>() {
            // `bytes` as such: extracting a `Vec<u8>` would go through the sequence protocol,
            // one Python int per pixel value.
            let (pixels, height, width, channels): (Bound<'_, PyBytes>, u32, u32, u32) =
                tuple.extract()?;
            let pixels = pixels.as_bytes().to_vec();
            let expected = height as usize * width as usize * channels as usize;
            if pixels.len() != expected || height == 0 || width == 0 {
                return Err(value_error(format!(
                    "{} pixel values for a {height}x{width}x{channels} image",
                    pixels.len()
                )));
            }
            let image = match channels {
                1 => GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
                3 => RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
                _ => None,
            };
            return image
                .map(Self::Decoded)
                .ok_or_else(|| value_error(format!("{channels} channels, expected 1 or 3")));
        }
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "an image is a path, bytes, a PIL image or a NumPy array, not {}",
            item.get_type().name()?
        )))
    }
}

/// Finds faces in images and classifies their expressions. See `efea.Detector`.
#[derive(Debug)]
#[pyclass(module = "efea._efea", frozen)]
pub struct Detector {
    /// Boxed: the predictor holds 64-byte-aligned (cache-padded) parts, and a Python object's
    /// memory is only 16-byte aligned, so it cannot live inline in the object.
    predictor: Box<Predictor>,
}

impl Detector {
    /// Reads the paths and analyses one round of inputs, without the GIL.
    fn analyse(&self, inputs: Vec<Input>, batch_size: usize) -> Vec<Result<Analysed, InferError>> {
        let mut read: Vec<Result<Input, InferError>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            read.push(match input {
                Input::Path(path) => std::fs::read(&path)
                    .map(Input::Encoded)
                    .map_err(|source| InferError::Io { path, source }),
                other => Ok(other),
            });
        }
        let sources: Vec<ImageSource<'_>> = read
            .iter_mut()
            .filter_map(|r| r.as_mut().ok())
            .map(|input| match input {
                Input::Encoded(bytes) => ImageSource::Encoded(bytes),
                // Moved out, not copied: the input is not needed again.
                Input::Decoded(image) => {
                    ImageSource::Decoded(std::mem::replace(image, DynamicImage::new_luma8(0, 0)))
                }
                Input::Path(_) => unreachable!("paths were read above"),
            })
            .collect();
        let mut analysed = self
            .predictor
            .predict_sources_in(sources, batch_size)
            .into_iter();
        read.into_iter()
            .map(|r| match r {
                Ok(_) => analysed.next().expect("one result per image read"),
                Err(e) => Err(e),
            })
            .collect()
    }
}

/// One Grad-CAM map for Python: `(class, height, width, float32 little-endian bytes)`.
type CamBytes = (usize, usize, usize, Py<PyBytes>);

/// `efea predict --format json`'s entry for one image, less its path and model name.
fn prediction_json(analysed: &Analysed) -> String {
    serde_json::to_string(&analysed.prediction).expect("a prediction is plain data")
}

#[pymethods]
impl Detector {
    #[new]
    #[pyo3(signature = (
        model=None, detector=None, device="cpu", *, margin=None, align=None, min_face=20,
        batch_size=32, max_pixels=DEFAULT_MAX_PIXELS, no_detect=false, cam_layer=LAST_LAYER
    ))]
    #[allow(clippy::too_many_arguments)] // the flags of `efea predict`, by keyword
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        detector: Option<&str>,
        device: &str,
        margin: Option<f32>,
        align: Option<bool>,
        min_face: u32,
        batch_size: usize,
        max_pixels: u64,
        no_detect: bool,
        cam_layer: usize,
    ) -> PyResult<Self> {
        let device = parse_device(device)?;
        let detector = detector
            .map(|name| name.parse::<DetectorKind>().map_err(value_error))
            .transpose()?;
        if let Some(margin) = margin
            && !(0.0..=MAX_MARGIN).contains(&margin)
        {
            return Err(value_error(format!(
                "margin {margin}: expected a fraction of the face side between 0 and {MAX_MARGIN}"
            )));
        }
        if !(1..=LAST_LAYER).contains(&cam_layer) {
            return Err(value_error(format!(
                "cam_layer {cam_layer}: expected 1-{LAST_LAYER}"
            )));
        }
        let config = PredictorConfig {
            detect: !no_detect,
            detector,
            margin,
            align,
            min_face_size: min_face.max(20),
            max_pixels,
            batch_size: batch_size.max(1),
            cam_layer,
            ..PredictorConfig::default()
        };
        let predictor = py.detach(|| match &model {
            Some(path) => Predictor::load(path, &device, config).map_err(|e| {
                format!(
                    "loading the model from {}: {}",
                    path.display(),
                    one_line(&e)
                )
            }),
            None => Ok(Predictor::bundled(&device, config)),
        });
        let predictor = predictor.map_err(crate::errors::ModelError::new_err)?;
        Ok(Self {
            predictor: Box::new(predictor),
        })
    }

    /// The model: name, architecture, classes, input size, face framing, training report.
    fn info_json(&self) -> String {
        serde_json::to_string(&self.predictor.info()).expect("model info is plain data")
    }

    #[getter]
    fn classes(&self) -> Vec<String> {
        self.predictor.classes().to_vec()
    }

    /// Analyses `images` in rounds, without the GIL, checking for Ctrl-C between rounds.
    /// One `(True, json)` or `(False, exception)` per image, in order; `batch_size` faces
    /// per forward pass (`None`: the detector's).
    #[pyo3(signature = (images, batch_size=None))]
    fn detect_many<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyList>,
        batch_size: Option<usize>,
    ) -> PyResult<Vec<(bool, Py<PyAny>)>> {
        let batch_size = batch_size
            .unwrap_or(self.predictor.config().batch_size)
            .max(1);
        let mut out = Vec::with_capacity(images.len());
        let items: Vec<Bound<'py, PyAny>> = images.iter().collect();
        for round in items.chunks(IMAGES_PER_ROUND) {
            py.check_signals()?;
            let inputs = round
                .iter()
                .map(Input::extract)
                .collect::<PyResult<Vec<_>>>()?;
            let results: Vec<Result<String, InferError>> = py.detach(|| {
                self.analyse(inputs, batch_size)
                    .into_iter()
                    .map(|r| r.map(|analysed| prediction_json(&analysed)))
                    .collect()
            });
            for result in results {
                out.push(match result {
                    Ok(json) => (true, PyString::new(py, &json).into_any().unbind()),
                    Err(error) => (false, infer_error(error).into_value(py).into_any()),
                });
            }
        }
        Ok(out)
    }

    /// The prediction of one image and the Grad-CAM map of each of its faces for its
    /// predicted class: `(json, [(class, height, width, float32 bytes)])`.
    fn grad_cam<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
    ) -> PyResult<(String, Vec<CamBytes>)> {
        let input = Input::extract(image)?;
        let result = py.detach(|| {
            self.analyse(vec![input], self.predictor.config().batch_size)
                .pop()
                .expect("one image in, one out")
                .map(|analysed| {
                    let cams = self.predictor.grad_cam(&analysed);
                    (prediction_json(&analysed), cams)
                })
        });
        let (json, cams) = result.map_err(infer_error)?;
        let maps = cams
            .into_iter()
            .map(|cam| {
                let bytes: Vec<u8> = cam.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (
                    cam.class,
                    cam.height,
                    cam.width,
                    PyBytes::new(py, &bytes).unbind(),
                )
            })
            .collect();
        Ok((json, maps))
    }
}
