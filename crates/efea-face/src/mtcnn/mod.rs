//! MTCNN face detection (Zhang et al. 2016) as facenet-pytorch 2.6.0 implements it: the
//! three nets of [`nets`], the cascade of [`cascade`], and the weights facenet-pytorch ships
//! (converted by `reference/mtcnn_convert.py`, compiled in; see `assets/MTCNN.LICENSE`).

pub mod cascade;
pub mod fused;
pub mod nets;

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use crate::FaceError;
use cascade::{Candidate, Region, Window};
use fused::FusedConv;
use nets::{ONet, ONetConfig, PNet, PNetConfig, RNet, RNetConfig};

/// The converted weights, compiled in (about 2 MB together).
const PNET_WEIGHTS: &[u8] = include_bytes!("../../assets/mtcnn_pnet.safetensors");
const RNET_WEIGHTS: &[u8] = include_bytes!("../../assets/mtcnn_rnet.safetensors");
const ONET_WEIGHTS: &[u8] = include_bytes!("../../assets/mtcnn_onet.safetensors");

/// Side of R-Net's and O-Net's input crops.
const RNET_SIZE: usize = 24;
const ONET_SIZE: usize = 48;

/// facenet-pytorch runs R-Net and O-Net in batches of 512 (`fixed_batch_process`); this also
/// bounds the memory of a stage (R-Net's first activation is 54 KB per crop).
const BATCH: usize = 512;

/// IoU thresholds of `detect_face`: per pyramid level, across levels, after R-Net; and the
/// intersection-over-minimum threshold after O-Net.
const NMS_LEVEL: f64 = 0.5;
const NMS_PYRAMID: f64 = 0.7;
const NMS_RNET: f64 = 0.7;
const NMS_ONET_MIN: f32 = 0.7;

/// Detection settings; the defaults are facenet-pytorch's `MTCNN()` defaults.
#[derive(Config, Debug, PartialEq)]
pub struct MtcnnConfig {
    /// Smallest face searched for, in pixels: the first pyramid level scales by `12 / this`.
    #[config(default = 20.0)]
    pub min_face_size: f64,
    /// Face-probability thresholds of P-Net (`>=`), R-Net and O-Net (`>`).
    #[config(default = "[0.6, 0.7, 0.7]")]
    pub thresholds: [f32; 3],
    /// Scale between consecutive pyramid levels.
    #[config(default = 0.709)]
    pub factor: f64,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// One detected face, in the pixel coordinates of the input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedFace {
    /// `x1, y1, x2, y2` as facenet-pytorch returns them (not clamped to the image).
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// `[x, y]` of the left eye, right eye, nose, left and right mouth corner (left and right
    /// in the image), facenet-pytorch's order.
    pub landmarks: [[f32; 2]; 5],
}

/// The MTCNN detector: three small nets on one device. `detect` takes `&self`, so one
/// detector serves many threads.
#[derive(Debug)]
pub struct Mtcnn {
    config: MtcnnConfig,
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    /// P-Net's, R-Net's and O-Net's convolutions with their PReLUs and pools, fused
    /// (`fused.rs`), three each: all the layers before the heads but O-Net's `conv4`.
    fused: [[FusedConv; 3]; 3],
    device: Device,
}

/// Loads Burn-layout safetensors into `module`, insisting that every tensor fits.
fn load_weights<M: Module>(mut module: M, bytes: Vec<u8>, origin: &str) -> Result<M, FaceError> {
    let weights_error = |message: String| FaceError::Weights {
        origin: origin.to_string(),
        message,
    };
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).map_indices_contiguous(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| weights_error(e.to_string()))?;
    if let Some(error) = result.errors.first() {
        return Err(weights_error(format!("{error}")));
    }
    if !result.missing.is_empty() || !result.unused.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(weights_error(format!(
            "missing {missing:?}, unused {:?}",
            result.unused
        )));
    }
    Ok(module)
}

impl Mtcnn {
    /// The detector with facenet-pytorch's weights (compiled in), on `device` (a plain,
    /// non-autodiff device: detection never needs gradients).
    pub fn new(config: MtcnnConfig, device: &Device) -> Self {
        Self::from_bytes(config, device, [PNET_WEIGHTS, RNET_WEIGHTS, ONET_WEIGHTS])
            .expect("the compiled-in weights were written for these nets (tests/nets.rs)")
    }

    /// The detector with weights read from Burn-layout safetensors files (as
    /// `reference/mtcnn_convert.py` writes them).
    pub fn from_files(
        config: MtcnnConfig,
        device: &Device,
        pnet: &Path,
        rnet: &Path,
        onet: &Path,
    ) -> Result<Self, FaceError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| FaceError::Weights {
                origin: path.display().to_string(),
                message: e.to_string(),
            })
        };
        Ok(Self::assemble(
            config,
            device,
            load_weights(
                PNetConfig::new().init(device),
                read(pnet)?,
                &pnet.display().to_string(),
            )?,
            load_weights(
                RNetConfig::new().init(device),
                read(rnet)?,
                &rnet.display().to_string(),
            )?,
            load_weights(
                ONetConfig::new().init(device),
                read(onet)?,
                &onet.display().to_string(),
            )?,
        ))
    }

    fn from_bytes(
        config: MtcnnConfig,
        device: &Device,
        weights: [&[u8]; 3],
    ) -> Result<Self, FaceError> {
        let [pnet, rnet, onet] = weights;
        Ok(Self::assemble(
            config,
            device,
            load_weights(
                PNetConfig::new().init(device),
                pnet.to_vec(),
                "mtcnn_pnet.safetensors",
            )?,
            load_weights(
                RNetConfig::new().init(device),
                rnet.to_vec(),
                "mtcnn_rnet.safetensors",
            )?,
            load_weights(
                ONetConfig::new().init(device),
                onet.to_vec(),
                "mtcnn_onet.safetensors",
            )?,
        ))
    }

    fn assemble(config: MtcnnConfig, device: &Device, pnet: PNet, rnet: RNet, onet: ONet) -> Self {
        let fused = [
            [
                FusedConv::new(&pnet.conv1, &pnet.prelu1, Some(&pnet.pool1)),
                FusedConv::new(&pnet.conv2, &pnet.prelu2, None),
                FusedConv::new(&pnet.conv3, &pnet.prelu3, None),
            ],
            [
                FusedConv::new(&rnet.conv1, &rnet.prelu1, Some(&rnet.pool1)),
                FusedConv::new(&rnet.conv2, &rnet.prelu2, Some(&rnet.pool2)),
                FusedConv::new(&rnet.conv3, &rnet.prelu3, None),
            ],
            [
                FusedConv::new(&onet.conv1, &onet.prelu1, Some(&onet.pool1)),
                FusedConv::new(&onet.conv2, &onet.prelu2, Some(&onet.pool2)),
                FusedConv::new(&onet.conv3, &onet.prelu3, Some(&onet.pool3)),
            ],
        ];
        Self {
            config,
            pnet,
            rnet,
            onet,
            fused,
            device: device.clone(),
        }
    }

    /// A net's fused layers on `[n, 3, height, width]` input values, in turn on the host;
    /// the last one's output as a tensor on the device, for the net's head.
    fn fused(
        &self,
        net: usize,
        input: Vec<f32>,
        n: usize,
        height: usize,
        width: usize,
    ) -> Tensor<4> {
        let (mut values, mut dims) = (input, [n, 3, height, width]);
        for layer in &self.fused[net] {
            let [_, _, h, w] = dims;
            values = layer.forward(&values, n, h, w);
            dims = layer.output_dims(n, h, w);
        }
        Tensor::from_data(TensorData::new(values, dims), &self.device)
    }

    pub fn config(&self) -> &MtcnnConfig {
        &self.config
    }

    pub fn pnet(&self) -> &PNet {
        &self.pnet
    }

    pub fn rnet(&self) -> &RNet {
        &self.rnet
    }

    pub fn onet(&self) -> &ONet {
        &self.onet
    }

    /// Every face in `image`, highest score first (facenet-pytorch's `detect(img,
    /// landmarks=True)` with `keep_all=True`, which orders them by box area instead).
    pub fn detect(&self, image: &RgbImage) -> Vec<DetectedFace> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        if width == 0 || height == 0 {
            return Vec::new();
        }
        let pixels = image.as_raw();
        let mut scratch = Vec::new();
        let boxes = self.propose(pixels, width, height);
        let boxes = self.refine(pixels, width, height, &boxes, &mut scratch);
        self.output(pixels, width, height, &boxes, &mut scratch)
    }

    /// [`Mtcnn::detect`] on a gray image, its value replicated into the three channels (what
    /// PIL's `convert("RGB")` does).
    pub fn detect_gray(&self, image: &GrayImage) -> Vec<DetectedFace> {
        let rgb = RgbImage::from_fn(image.width(), image.height(), |x, y| {
            let v = image.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        });
        self.detect(&rgb)
    }

    /// Stage 1: P-Net on every pyramid level; NMS per level and across levels; P-Net's
    /// regression; squares.
    fn propose(&self, pixels: &[u8], width: usize, height: usize) -> Vec<Candidate> {
        let whole = Region::whole(pixels, width, height);
        let scales =
            cascade::pyramid_scales(width, height, self.config.min_face_size, self.config.factor);
        // The levels are independent: one rayon task each (the small ones leave Burn's own
        // parallelism idle), gathered in the pyramid's order.
        let levels: Vec<Vec<Candidate>> = scales
            .par_iter()
            .map_init(Vec::new, |scratch, &scale| {
                let (level_width, level_height) = cascade::level_size(width, height, scale);
                let mut input = vec![0.0; 3 * level_width * level_height];
                cascade::area_resize_normalised(
                    whole,
                    level_width,
                    level_height,
                    &mut input,
                    scratch,
                );
                let features = self.fused(0, input, 1, level_height, level_width);
                let out = self.pnet.forward_head(features);
                let [_, _, map_height, map_width] = out.prob.dims();
                let prob = to_vec(out.prob.into_data());
                let reg = to_vec(out.reg.into_data());
                let plane = map_width * map_height;
                let level = cascade::generate_bounding_boxes(
                    &reg,
                    // Channel 1 of the softmax: the face probability.
                    &prob[plane..],
                    map_width,
                    map_height,
                    scale,
                    self.config.thresholds[0],
                );
                cascade::nms(&level, NMS_LEVEL)
                    .into_iter()
                    .map(|i| level[i])
                    .collect()
            })
            .collect();
        let candidates: Vec<Candidate> = levels.into_iter().flatten().collect();
        cascade::nms(&candidates, NMS_PYRAMID)
            .into_iter()
            .map(|i| cascade::rerec(&cascade::apply_pnet_regression(&candidates[i])))
            .collect()
    }

    /// Stage 2: R-Net on 24x24 crops; threshold; NMS; R-Net's regression; squares.
    fn refine(
        &self,
        pixels: &[u8],
        width: usize,
        height: usize,
        boxes: &[Candidate],
        scratch: &mut Vec<u32>,
    ) -> Vec<Candidate> {
        let (boxes, crops) = crops_of(boxes, width, height);
        let mut passed = Vec::new();
        for (chunk, windows) in boxes.chunks(BATCH).zip(crops.chunks(BATCH)) {
            let input = crop_batch(pixels, width, windows, RNET_SIZE, scratch);
            let features = self.fused(1, input, windows.len(), RNET_SIZE, RNET_SIZE);
            let out = self.rnet.forward_head(features);
            let prob = to_vec(out.prob.into_data());
            let reg = to_vec(out.reg.into_data());
            for (k, b) in chunk.iter().enumerate() {
                let score = prob[2 * k + 1];
                if score > self.config.thresholds[1] {
                    passed.push(Candidate {
                        score,
                        reg: [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]],
                        ..*b
                    });
                }
            }
        }
        cascade::nms(&passed, NMS_RNET)
            .into_iter()
            .map(|i| cascade::rerec(&cascade::bbreg(&passed[i], passed[i].reg)))
            .collect()
    }

    /// Stage 3: O-Net on 48x48 crops; threshold; landmarks; O-Net's regression; NMS by the
    /// intersection over the smaller box.
    fn output(
        &self,
        pixels: &[u8],
        width: usize,
        height: usize,
        boxes: &[Candidate],
        scratch: &mut Vec<u32>,
    ) -> Vec<DetectedFace> {
        let (boxes, crops) = crops_of(boxes, width, height);
        let mut passed = Vec::new();
        let mut landmarks = Vec::new();
        for (chunk, windows) in boxes.chunks(BATCH).zip(crops.chunks(BATCH)) {
            let input = crop_batch(pixels, width, windows, ONET_SIZE, scratch);
            let features = self.fused(2, input, windows.len(), ONET_SIZE, ONET_SIZE);
            let out = self.onet.forward_head(features);
            let prob = to_vec(out.prob.into_data());
            let reg = to_vec(out.reg.into_data());
            let points = to_vec(out.landmarks.into_data());
            for (k, b) in chunk.iter().enumerate() {
                let score = prob[2 * k + 1];
                if score <= self.config.thresholds[2] {
                    continue;
                }
                // Landmarks relative to the box O-Net saw, before its regression moves it.
                let w = b.x2 - b.x1 + 1.0;
                let h = b.y2 - b.y1 + 1.0;
                let p = &points[10 * k..10 * k + 10];
                landmarks.push(std::array::from_fn::<_, 5, _>(|i| {
                    [w * p[i] + b.x1 - 1.0, h * p[5 + i] + b.y1 - 1.0]
                }));
                let scored = Candidate { score, ..*b };
                let reg = [reg[4 * k], reg[4 * k + 1], reg[4 * k + 2], reg[4 * k + 3]];
                passed.push(cascade::bbreg(&scored, reg));
            }
        }
        cascade::nms_min(&passed, NMS_ONET_MIN)
            .into_iter()
            .map(|i| {
                let b = &passed[i];
                DetectedFace {
                    bbox: [b.x1, b.y1, b.x2, b.y2],
                    score: b.score,
                    landmarks: landmarks[i],
                }
            })
            .collect()
    }
}

/// The boxes that have a crop in the image, with their crop windows.
fn crops_of(boxes: &[Candidate], width: usize, height: usize) -> (Vec<Candidate>, Vec<Window>) {
    boxes
        .iter()
        .filter_map(|b| cascade::crop_window(b, width, height).map(|window| (*b, window)))
        .unzip()
}

/// The crops, each area-resized to `side` x `side` and normalised, as one `[N, 3, side,
/// side]` batch (one allocation for the batch).
fn crop_batch(
    pixels: &[u8],
    width: usize,
    windows: &[Window],
    side: usize,
    scratch: &mut Vec<u32>,
) -> Vec<f32> {
    let per_crop = 3 * side * side;
    let mut input = vec![0.0; windows.len() * per_crop];
    for (&window, out) in windows.iter().zip(input.chunks_exact_mut(per_crop)) {
        let region = Region {
            pixels,
            stride: width,
            window,
        };
        cascade::area_resize_normalised(region, side, side, out, scratch);
    }
    input
}

fn to_vec(data: TensorData) -> Vec<f32> {
    data.try_into_vec()
        .expect("the nets compute in f32 on every backend this crate builds")
}
